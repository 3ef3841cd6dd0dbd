//! The emulator device (`emu:sm_80`, `emu:sm_90a`): a kernel is compiled to PTX for the target
//! exactly as for a CUDA device (or taken from an attached bundle), its arguments are checked and
//! staged the same way, and `tilekit-emu` runs the PTX on the host with its sanitizer on: an
//! out-of-bounds access, a shared-memory race, an asynchronous-copy hazard or a deadlock fails
//! the launch with a message naming the PTX instruction. Tensors of this device live in host
//! memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tilekit_emu::{EmuError, Emulator, GlobalMemory, LaunchConfig, Report};

use super::{
    abi_values, args, cached, check_args, check_grid, codec, config, cuda, dynamic_shared,
    find_code, launch_hash, Device, Error, Grid, LaunchArg, Loaded, Storage,
};
use crate::abi::Bundle;
use crate::ir::interp::HostTensor;
use crate::ir::{assert_record, Module};

/// The code targets the emulator runs.
pub const TARGETS: [&str; 2] = ["sm_80", "sm_90a"];

/// An emulator device handle. Clones share the attached bundles, the parsed kernels and the last
/// launch's report.
#[derive(Clone)]
pub struct Emu {
    pub(crate) target: &'static str,
    pub(crate) bundles: Arc<Mutex<Vec<Arc<Bundle>>>>,
    loaded: Arc<Mutex<HashMap<String, Arc<Loaded<Emulator>>>>>,
    last: Arc<Mutex<Option<Report>>>,
}

impl std::fmt::Debug for Emu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "emu:{}", self.target)
    }
}

impl Emu {
    /// An emulator for `target` (`sm_80` or `sm_90a`).
    pub(crate) fn new(target: &str) -> Result<Emu, Error> {
        let target =
            TARGETS
                .into_iter()
                .find(|t| *t == target)
                .ok_or_else(|| Error::UnknownDevice {
                    name: format!("emu:{target} (the emulator runs emu:sm_80 and emu:sm_90a)"),
                })?;
        Ok(Emu {
            target,
            bundles: Default::default(),
            loaded: Default::default(),
            last: Default::default(),
        })
    }

    /// The report of the last launch on this handle (or its clones): executed warp-instructions
    /// by class, and the sanitizer's findings.
    pub fn last_report(&self) -> Option<Report> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Device {
    /// The report of the last launch on an emulator device (executed warp-instructions by
    /// class, sanitizer findings); `None` on other devices or before the first launch.
    pub fn emulator_report(&self) -> Option<Report> {
        match self {
            Device::Emu(e) => e.last_report(),
            _ => None,
        }
    }
}

fn param_bytes(v: &cuda::ParamValue) -> Vec<u8> {
    use cuda::ParamValue as P;
    match v {
        P::U64(x) => x.to_le_bytes().to_vec(),
        P::I32(x) => x.to_le_bytes().to_vec(),
        P::U32(x) => x.to_le_bytes().to_vec(),
        P::I64(x) => x.to_le_bytes().to_vec(),
        P::F32(x) => x.to_le_bytes().to_vec(),
        P::U16(x) => x.to_le_bytes().to_vec(),
        P::U8(x) => vec![*x],
        P::Map(m) => m.0.to_vec(),
    }
}

/// Launches `kernel` of `module` on the emulator: compile (or find in a bundle) the variant the
/// arguments' alignment allows, as on a CUDA device, check and stage the arguments in the
/// emulator's global memory (256-byte aligned allocations, as CUDA's), run, copy results back.
pub(super) fn launch(
    device: &Device,
    e: &Emu,
    module: &Module,
    kernel: &str,
    grid: Grid,
    args: &mut [LaunchArg],
) -> Result<(), Error> {
    check_grid(kernel, grid)?;
    let hash = launch_hash(module, kernel);
    let aligned = args::aligned16_views(module, kernel, args);
    let key = format!("{kernel}/{hash}/{}", crate::abi::facts_text(&aligned));
    let loaded = cached(&e.loaded, key, || {
        let code = find_code(
            &e.bundles,
            module,
            kernel,
            &hash,
            &aligned,
            Some(e.target),
            device,
        )?;
        let func = Emulator::new(&code.ptx).map_err(|err| Error::NoCode {
            kernel: kernel.into(),
            device: device.describe(),
            message: format!("the emulator cannot read the PTX: {err}"),
        })?;
        Ok(Loaded { func, code })
    })?;
    let k = &loaded.code;
    check_args(k, args)?;
    let shared = dynamic_shared(k);
    let failed = |message: String| Error::Launch {
        kernel: k.name.clone(),
        device: device.describe(),
        config: config(k, grid, shared),
        message,
    };
    // Every tensor argument becomes one allocation of the emulator's global memory.
    let mut mem = GlobalMemory::new();
    let mut bases = vec![0u64; args.len()];
    // Each entry of a pointer table gets an allocation of exactly its elements, so the
    // sanitizer bounds every access through the table by the entry it reads.
    let mut entry_bases: Vec<Vec<u64>> = vec![Vec::new(); args.len()];
    for (i, a) in args.iter().enumerate() {
        let name = k
            .params
            .get(i)
            .map_or_else(|| format!("#{i}"), |p| p.name.clone());
        match a {
            LaunchArg::Host(t) => {
                bases[i] = mem.alloc(name, codec::encode(t.dtype(), t.storage()));
            }
            LaunchArg::Device(view) => match &view.storage {
                Storage::Host(values) => {
                    let values = values.lock().unwrap_or_else(|p| p.into_inner());
                    let base = mem.alloc(name, codec::encode(view.dtype, &values));
                    bases[i] = base + (view.offset * view.dtype.size_bytes() as usize) as u64;
                }
                _ => {
                    return Err(Error::WrongDevice {
                        kernel: k.name.clone(),
                        param: name,
                        tensor: view.device_name(),
                        launch: device.name(),
                    })
                }
            },
            LaunchArg::Table(t) => {
                let entries = super::table::host_entries(&k.name, &name, t, &device.name())?;
                for (e, h) in entries.iter().enumerate() {
                    let bytes = codec::encode(h.dtype(), &h.to_vec());
                    entry_bases[i].push(mem.alloc(format!("{name}[{e}]"), bytes));
                }
                bases[i] = mem.alloc(name, t.rows(&entry_bases[i]));
            }
            LaunchArg::Scalar(..) => {}
        }
    }
    let values = abi_values(device, k, args, &bases)?;
    let bytes: Vec<Vec<u8>> = values.iter().map(param_bytes).collect();
    let params = loaded
        .func
        .param_buffer(kernel, &bytes)
        .map_err(|err| failed(err.to_string()))?;
    let mut cfg = LaunchConfig::new(grid.0, [k.block_threads, 1, 1]);
    cfg.dynamic_shared = shared;
    // A kernel with a `device_assert` declares where its failure record goes; as a CUDA device
    // does with host-mapped memory, point it at a record the launch reads back after a trap.
    let declares_record = loaded
        .func
        .module()
        .globals
        .iter()
        .any(|v| v.name == assert_record::SYMBOL);
    let record = declares_record.then(|| {
        let at = mem.alloc("device_assert record", vec![0; assert_record::BYTES]);
        cfg.variables
            .insert(assert_record::SYMBOL.into(), at.to_le_bytes().to_vec());
        at
    });
    let launched = loaded.func.launch(kernel, &cfg, &params, &mut mem);
    let report = launched.map_err(|err| {
        let assert = match err {
            EmuError::Trap { .. } => record
                .and_then(|at| mem.get(at))
                .and_then(|a| assert_record::decode(&a.data)),
            _ => None,
        };
        failed(match assert {
            Some(r) => format!("{r} ({err})"),
            None => err.to_string(),
        })
    })?;
    // Results back into the arguments.
    for (i, a) in args.iter_mut().enumerate() {
        match a {
            LaunchArg::Host(t) => {
                let Some(alloc) = mem.get(bases[i]) else {
                    continue;
                };
                let values = codec::decode(t.dtype(), &alloc.data);
                *t = HostTensor::strided(t.dtype(), t.shape(), t.strides(), &values)?;
            }
            LaunchArg::Device(view) => {
                let base = bases[i] - (view.offset * view.dtype.size_bytes() as usize) as u64;
                if let (Storage::Host(values), Some(alloc)) = (&view.storage, mem.get(base)) {
                    let decoded = codec::decode(view.dtype, &alloc.data);
                    let mut v = values.lock().unwrap_or_else(|p| p.into_inner());
                    let n = v.len().min(decoded.len());
                    v[..n].copy_from_slice(&decoded[..n]);
                }
            }
            LaunchArg::Table(t) => {
                let dtype = t.dtype;
                for (entry, &base) in t.entries.iter_mut().zip(&entry_bases[i]) {
                    if let (LaunchArg::Host(h), Some(alloc)) = (&mut *entry, mem.get(base)) {
                        let values = codec::decode(dtype, &alloc.data);
                        *h = HostTensor::new(dtype, h.shape(), &values)?;
                    }
                }
            }
            LaunchArg::Scalar(..) => {}
        }
    }
    *e.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
    Ok(())
}
