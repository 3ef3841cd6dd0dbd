//! Devices: where kernels run.
//!
//! - [`Device::Cpu`]: the Tile IR interpreter, exact and slow, the definition of what a kernel
//!   means; always present. [`Device::cpu_with`] is the same device with the caller's op and
//!   memory budgets and cancel token ([`CpuOptions`]).
//! - [`Device::cuda`]: an NVIDIA GPU through the driver API (`cudarc`, `libcuda` loaded at run
//!   time). Kernels reach it compiled on first launch for the device's architecture (feature
//!   `jit`; `sm_90a` on compute capability 9.0, `sm_80` PTX elsewhere) and kept per device, or
//!   from an AOT [`Bundle`] attached with [`Device::attach_bundle`] (found by the hash of the
//!   kernel's Tile IR, so a bundle built from other source is never launched by mistake).
//! - [`Device::hip`]: an AMD GPU through the HIP runtime (`libamdhip64` loaded at run time) —
//!   written from the HIP documentation and never run on AMD hardware.
//!
//! [`Device::best`] picks the first CUDA device, else the first HIP device, else the cpu.
//! Launches through a kernel's typed launcher or [`Device::launch_by_name`] accept host tensors
//! (copied to the device and back around a synchronous launch: convenient, and how the
//! self-tests run everywhere) and device [`Tensor`](crate::Tensor)s (no copies; the launch is
//! asynchronous on the device's stream, ordered with the stream's other work).
//!
//! Every device refuses, before anything runs, a grid outside the GPUs' limits and a writable
//! tensor argument that shares elements with another argument ([`checks`]): what such a kernel
//! computes would differ between the interpreter (copy in, copy out) and a GPU (in place).

mod args;
pub mod checks;
pub mod codec;
mod cpu;
pub mod cuda;
pub mod emu;
pub mod hip;
mod memory;
mod table;

use std::fmt;
use std::sync::{Arc, Mutex};

pub use crate::abi::ir_hash;
use crate::abi::{is_amd, AbiArg, Bundle, BundleKernel, ParamKind};
pub use crate::error::Error;
use crate::ir::assert_record::AssertRecord;
use crate::ir::interp::HostTensor;
use crate::ir::{Module, ScalarType};

pub use args::{DeviceView, Grid, LaunchArg};
use checks::check_grid;
pub use cpu::CpuOptions;
use memory::HostViews;
pub(crate) use memory::{positions, Storage};
pub use table::{TableArg, TableError};

/// Where kernels run. `Device::Cpu` is the default.
#[derive(Clone, Default)]
pub enum Device {
    /// The Tile IR interpreter on the host.
    #[default]
    Cpu,
    /// The Tile IR interpreter with budgets and a cancel token of the caller's
    /// ([`Device::cpu_with`]); otherwise the same device as [`Device::Cpu`].
    CpuWith(CpuOptions),
    /// An NVIDIA GPU.
    Cuda(Gpu<cuda::Context, cuda::Stream>),
    /// An AMD GPU.
    Hip(Gpu<hip::Context, hip::Stream>),
    /// The PTX emulator (`emu:sm_80`, `emu:sm_90a`): kernels compiled for an NVIDIA target run
    /// on the host under `tilekit-emu`'s sanitizer.
    Emu(emu::Emu),
}

/// A GPU device handle: its context, the stream its launches go to, and the bundles attached to
/// it. Clones share all three.
pub struct Gpu<C, S> {
    pub(crate) ctx: Arc<C>,
    pub(crate) stream: Arc<S>,
    bundles: Arc<Mutex<Vec<Arc<Bundle>>>>,
}

impl<C: fmt::Debug, S> fmt::Debug for Gpu<C, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.ctx.fmt(f)
    }
}

impl<C, S> Clone for Gpu<C, S> {
    fn clone(&self) -> Self {
        Gpu {
            ctx: self.ctx.clone(),
            stream: self.stream.clone(),
            bundles: self.bundles.clone(),
        }
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu | Device::CpuWith(_) => f.write_str("cpu"),
            Device::Cuda(g) => write!(f, "{:?}", g.ctx),
            Device::Hip(g) => write!(f, "{:?}", g.ctx),
            Device::Emu(e) => write!(f, "{e:?}"),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl PartialEq for Device {
    /// Two handles are equal when they name the same device (streams and bundles aside).
    fn eq(&self, other: &Device) -> bool {
        self.name() == other.name()
    }
}

impl Device {
    /// `cpu`, `cuda`, `cuda:N`, `hip` or `hip:N`. A GPU name opens the device (and fails when
    /// there is no driver or no such device).
    pub fn from_name(name: &str) -> Result<Device, Error> {
        if let Some(target) = name.strip_prefix("emu:") {
            return Device::emulator(target);
        }
        if name == "emu" {
            return Device::emulator("sm_80");
        }
        let (kind, ordinal) = match name.split_once(':') {
            Some((k, n)) => match n.parse::<usize>() {
                Ok(n) => (k, n),
                Err(_) => {
                    return Err(Error::UnknownDevice {
                        name: name.to_string(),
                    })
                }
            },
            None => (name, 0),
        };
        match kind {
            "cpu" if !name.contains(':') => Ok(Device::Cpu),
            "cuda" => Device::cuda(ordinal),
            "hip" => Device::hip(ordinal),
            _ => Err(Error::UnknownDevice {
                name: name.to_string(),
            }),
        }
    }

    /// CUDA device `ordinal`. Without the NVIDIA driver: [`Error::NoDriver`] ("no CUDA driver
    /// found").
    pub fn cuda(ordinal: usize) -> Result<Device, Error> {
        let ctx = shared_context(&CUDA, ordinal, cuda::Context::open)?;
        let stream = Arc::new(cuda::Stream::default_of(&ctx));
        Ok(Device::Cuda(Gpu {
            ctx,
            stream,
            bundles: Default::default(),
        }))
    }

    /// HIP device `ordinal`. Without ROCm: [`Error::NoDriver`] ("no HIP runtime found").
    pub fn hip(ordinal: usize) -> Result<Device, Error> {
        let ctx = shared_context(&HIP, ordinal, hip::Context::open)?;
        let stream = Arc::new(hip::Stream::default_of(&ctx));
        Ok(Device::Hip(Gpu {
            ctx,
            stream,
            bundles: Default::default(),
        }))
    }

    /// The PTX emulator for `target` (`sm_80` or `sm_90a`): launches compile the kernel to PTX
    /// as for a CUDA device and run it on the host with the sanitizer on.
    pub fn emulator(target: &str) -> Result<Device, Error> {
        Ok(Device::Emu(emu::Emu::new(target)?))
    }

    /// The cpu device (the interpreter) with the caller's op and memory budgets and cancel
    /// token (see [`CpuOptions`]); [`Device::Cpu`] runs with the interpreter's defaults.
    pub fn cpu_with(options: CpuOptions) -> Device {
        Device::CpuWith(options)
    }

    /// Whether this is the cpu device ([`Device::Cpu`] or one made by [`Device::cpu_with`]).
    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu | Device::CpuWith(_))
    }

    /// The first CUDA device, else the first HIP device, else the cpu.
    pub fn best() -> Device {
        Device::cuda(0)
            .or_else(|_| Device::hip(0))
            .unwrap_or(Device::Cpu)
    }

    /// `cpu`, `cuda:N` or `hip:N`.
    pub fn name(&self) -> String {
        match self {
            Device::Cpu | Device::CpuWith(_) => "cpu".into(),
            Device::Cuda(g) => format!("cuda:{}", g.ctx.ordinal),
            Device::Hip(g) => format!("hip:{}", g.ctx.ordinal),
            Device::Emu(e) => format!("emu:{}", e.target),
        }
    }

    /// What the device is: `cpu (Tile IR interpreter)`, or the GPU's name and architecture.
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu => "cpu (Tile IR interpreter)".into(),
            Device::CpuWith(o) => format!(
                "cpu (Tile IR interpreter, op budget {}, memory budget {} bytes{})",
                o.op_budget,
                o.memory_budget,
                if o.cancel.is_some() {
                    ", cancellable"
                } else {
                    ""
                }
            ),
            Device::Cuda(g) => format!(
                "cuda:{} {} (sm_{}{}, {} SMs, {:.1} GiB)",
                g.ctx.ordinal,
                g.ctx.name,
                g.ctx.cc.0,
                g.ctx.cc.1,
                g.ctx.multiprocessors,
                g.ctx.total_memory as f64 / f64::from(1u32 << 30)
            ),
            Device::Hip(g) => format!("hip:{} {}", g.ctx.ordinal, g.ctx.name),
            Device::Emu(e) => format!("emu:{} (PTX emulator with sanitizer)", e.target),
        }
    }

    /// The code target kernels are compiled for on this device (`None` for the cpu).
    pub fn target(&self) -> Result<Option<&'static str>, Error> {
        match self {
            Device::Cpu | Device::CpuWith(_) => Ok(None),
            Device::Cuda(g) => g.ctx.target().map(Some),
            Device::Hip(_) => Ok(None),
            Device::Emu(e) => Ok(Some(e.target)),
        }
    }

    /// The number of streaming multiprocessors of a CUDA device (the block count of a
    /// persistent launch); `None` where the device does not say.
    pub fn multiprocessors(&self) -> Option<u32> {
        match self {
            Device::Cuda(g) => Some(g.ctx.multiprocessors),
            _ => None,
        }
    }

    /// Makes kernels of `bundle` available to launches on this device (and its clones). A
    /// launch takes a bundled kernel whose Tile IR hash matches the kernel being launched, before
    /// compiling anything.
    pub fn attach_bundle(&self, bundle: Bundle) -> Result<(), Error> {
        let target = self.target()?;
        let (bundles, fits) = match self {
            Device::Cpu | Device::CpuWith(_) => {
                return Err(Error::UnsupportedDevice {
                    device: "cpu".into(),
                    message: "the cpu device runs Tile IR, not bundled GPU code".into(),
                })
            }
            Device::Cuda(g) => (
                &g.bundles,
                // sm_80 PTX runs on every later architecture; sm_90a only on sm_90.
                bundle.target == "sm_80" || Some(bundle.target.as_str()) == target,
            ),
            Device::Emu(e) => (
                &e.bundles,
                bundle.target == "sm_80" || Some(bundle.target.as_str()) == target,
            ),
            Device::Hip(g) => (
                &g.bundles,
                is_amd(&bundle.target)
                    && std::env::var("TILEKIT_HIP_ARCH").map_or(true, |a| a == bundle.target),
            ),
        };
        if !fits {
            return Err(Error::UnsupportedDevice {
                device: self.describe(),
                message: format!(
                    "the bundle holds code for {}, which this device cannot run (it runs {})",
                    bundle.target,
                    target.map_or_else(
                        || std::env::var("TILEKIT_HIP_ARCH")
                            .unwrap_or_else(|_| "an AMD chip".into()),
                        String::from
                    )
                ),
            });
        }
        bundles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(bundle));
        Ok(())
    }

    /// The same device with launches going to a new stream of their own.
    pub fn with_new_stream(&self) -> Result<Device, Error> {
        Ok(match self {
            Device::Cpu | Device::CpuWith(_) => self.clone(),
            Device::Cuda(g) => Device::Cuda(Gpu {
                stream: Arc::new(cuda::Stream::create(&g.ctx)?),
                ..g.clone()
            }),
            Device::Hip(g) => Device::Hip(Gpu {
                stream: Arc::new(hip::Stream::create(&g.ctx)?),
                ..g.clone()
            }),
            Device::Emu(e) => Device::Emu(e.clone()),
        })
    }

    /// Waits for everything launched on this handle's stream; an asynchronous kernel fault
    /// shows here.
    pub fn synchronize(&self) -> Result<(), Error> {
        match self {
            Device::Cpu | Device::CpuWith(_) | Device::Emu(_) => Ok(()),
            Device::Cuda(g) => g
                .stream
                .synchronize()
                .and_then(|_| g.ctx.synchronize())
                .map_err(|e| with_failed_asserts(&g.ctx, e)),
            Device::Hip(g) => g.stream.synchronize().and_then(|_| g.ctx.synchronize()),
        }
    }

    /// An event recorded now on this handle's stream, for timing (see [`Event::elapsed_ms`]).
    pub fn record_event(&self) -> Result<Event, Error> {
        match self {
            Device::Cpu | Device::CpuWith(_) | Device::Emu(_) => {
                Ok(Event(EventKind::Cpu(std::time::Instant::now())))
            }
            Device::Cuda(g) => {
                let e = cuda::Event::create(&g.ctx)?;
                e.record(&g.stream)?;
                Ok(Event(EventKind::Cuda(e)))
            }
            Device::Hip(g) => {
                let e = hip::Event::create(&g.ctx)?;
                e.record(&g.stream)?;
                Ok(Event(EventKind::Hip(e)))
            }
        }
    }

    /// Runs kernel `kernel` of `module` (checked arguments). Used by the launchers.
    ///
    /// Every device first checks what no device may run: a grid outside the GPUs' limits
    /// ([`checks::check_grid`]) and a writable tensor argument that shares memory with another
    /// argument ([`Error::Overlap`]). Views of host memory (the cpu device's tensors) are copied
    /// in, and the writable ones copied back after a successful run.
    pub(crate) fn run(
        &self,
        module: &Module,
        kernel: &str,
        grid: Grid,
        args: &mut [LaunchArg],
    ) -> Result<(), Error> {
        check_grid(kernel, grid)?;
        checks::check_overlap(module, kernel, args)?;
        table::check_views(module, kernel, args)?;
        let host_views = HostViews::take(args)?;
        let table_views = table::TableHostViews::take(args)?;
        let result = match self {
            Device::Cpu => cpu::run_interp(&CpuOptions::default(), module, kernel, grid, args),
            Device::CpuWith(options) => cpu::run_interp(options, module, kernel, grid, args),
            Device::Cuda(g) => launch_cuda(self, g, module, kernel, grid, args),
            Device::Hip(g) => launch_hip(self, g, module, kernel, grid, args),
            Device::Emu(e) => emu::launch(self, e, module, kernel, grid, args),
        };
        let writable = checks::writable_params(module, kernel, args.len());
        host_views.give_back(args, &writable, result.is_ok());
        table_views.give_back(args, result.is_ok());
        result
    }
}

/// A point on a device's timeline.
#[derive(Debug)]
pub struct Event(EventKind);

#[derive(Debug)]
enum EventKind {
    Cpu(std::time::Instant),
    Cuda(cuda::Event),
    Hip(hip::Event),
}

impl Event {
    /// Milliseconds from `self` to `end` (waiting for `end`), both recorded on one device.
    pub fn elapsed_ms(&self, end: &Event) -> Result<f32, Error> {
        match (&self.0, &end.0) {
            (EventKind::Cpu(a), EventKind::Cpu(b)) => {
                Ok(b.saturating_duration_since(*a).as_secs_f32() * 1e3)
            }
            (EventKind::Cuda(a), EventKind::Cuda(b)) => a.elapsed_ms(b),
            (EventKind::Hip(a), EventKind::Hip(b)) => a.elapsed_ms(b),
            _ => Err(Error::UnsupportedDevice {
                device: "events".into(),
                message: "the two events were recorded on different kinds of device".into(),
            }),
        }
    }
}

static CUDA: Mutex<Vec<(usize, Arc<cuda::Context>)>> = Mutex::new(Vec::new());
static HIP: Mutex<Vec<(usize, Arc<hip::Context>)>> = Mutex::new(Vec::new());

/// One context per device ordinal for the process (opening is expensive; kernels loaded into it
/// are shared by every handle).
fn shared_context<C>(
    table: &Mutex<Vec<(usize, Arc<C>)>>,
    ordinal: usize,
    open: fn(usize) -> Result<Arc<C>, Error>,
) -> Result<Arc<C>, Error> {
    let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, c)) = t.iter().find(|(o, _)| *o == ordinal) {
        return Ok(c.clone());
    }
    let c = open(ordinal)?;
    t.push((ordinal, c.clone()));
    Ok(c)
}

/// [`ir_hash`] for a launch. Printing and hashing a module costs tens of microseconds, which a
/// launch must not spend every time (the benchmark's events would time it): the hash of a module
/// the typed launchers keep for the process is computed once; any other module (one passed to
/// `launch_module`, which may be freed and its address reused) is hashed each time.
fn launch_hash(module: &Module, kernel: &str) -> String {
    if !crate::module_cache::built_once(module) {
        return ir_hash(module, kernel);
    }
    static HASHES: Mutex<Vec<(usize, String, String)>> = Mutex::new(Vec::new());
    let address = module as *const Module as usize;
    let mut memo = HASHES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((.., hash)) = memo.iter().find(|(a, k, _)| *a == address && k == kernel) {
        return hash.clone();
    }
    let hash = ir_hash(module, kernel);
    memo.push((address, kernel.to_string(), hash.clone()));
    hash
}

/// A kernel's code for one device: from an attached bundle, else compiled now (feature `jit`).
/// `aligned` names the launch's 16-byte aligned views ([`args::aligned16_views`]): a bundle
/// entry qualifies when they include every view it assumes aligned (the one assuming most
/// wins), and a compile assumes them all.
fn find_code(
    bundles: &Mutex<Vec<Arc<Bundle>>>,
    module: &Module,
    kernel: &str,
    hash: &str,
    aligned: &[String],
    target: Option<&'static str>,
    device: &Device,
) -> Result<BundleKernel, Error> {
    let attached = bundles.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for b in &attached {
        if let Some(k) = b
            .kernels
            .iter()
            .filter(|k| k.name == kernel && k.ir_hash == hash && k.runs_with(aligned))
            .max_by_key(|k| k.aligned16.len())
        {
            return Ok(k.clone());
        }
    }
    compile_for(module, kernel, hash, aligned, target, device, &attached)
}

#[cfg(feature = "jit")]
fn compile_for(
    module: &Module,
    kernel: &str,
    _hash: &str,
    aligned: &[String],
    target: Option<&'static str>,
    device: &Device,
    _attached: &[Arc<Bundle>],
) -> Result<BundleKernel, Error> {
    let Some(target) = target else {
        return Err(Error::NoCode {
            kernel: kernel.into(),
            device: device.describe(),
            message: "this device's code target is not known to tilekit; attach a bundle built \
                      for it (`tilekit bundle --target <chip>`)"
                .into(),
        });
    };
    let t: tilekit_codegen::Target = target.parse().map_err(|e| Error::NoCode {
        kernel: kernel.into(),
        device: device.describe(),
        message: format!("{e}"),
    })?;
    let facts = tilekit_codegen::Facts::aligned16(aligned);
    let c = tilekit_codegen::compile_cached_with(module, kernel, t, &facts).map_err(|e| {
        Error::NoCode {
            kernel: kernel.into(),
            device: device.describe(),
            message: format!("compiling for {target} assuming {facts} failed: {e}"),
        }
    })?;
    crate::abi::compiled_kernel(module, kernel, "", String::new(), &c).ok_or_else(|| {
        Error::NoCode {
            kernel: kernel.into(),
            device: device.describe(),
            message: "the module has no such kernel".into(),
        }
    })
}

#[cfg(not(feature = "jit"))]
fn compile_for(
    _module: &Module,
    kernel: &str,
    hash: &str,
    _aligned: &[String],
    _target: Option<&'static str>,
    device: &Device,
    attached: &[Arc<Bundle>],
) -> Result<BundleKernel, Error> {
    Err(Error::NoCode {
        kernel: kernel.into(),
        device: device.describe(),
        message: format!(
            "no attached bundle holds this kernel (Tile IR hash {hash}; {} bundle(s) attached) \
             and this tilekit was built without `jit`, so it cannot compile it: build the bundle \
             from the same source with `tilekit bundle`",
            attached.len()
        ),
    })
}

/// Device memory as a launch stages it (both vendors' buffers).
trait Memory: Sized {
    type Ctx;
    fn alloc(ctx: &Arc<Self::Ctx>, bytes: usize) -> Result<Self, Error>;
    fn upload(&self, data: &[u8]) -> Result<(), Error>;
    fn download(&self) -> Result<Vec<u8>, Error>;
    fn address(&self) -> u64;
}

/// Both vendors' buffers have the same four operations; `address` says how a buffer's pointer
/// becomes a kernel argument.
macro_rules! memory {
    ($buffer:ty, $ctx:ty, |$b:ident| $address:expr) => {
        impl Memory for $buffer {
            type Ctx = $ctx;
            fn alloc(ctx: &Arc<$ctx>, bytes: usize) -> Result<Self, Error> {
                <$buffer>::alloc(ctx, bytes)
            }
            fn upload(&self, data: &[u8]) -> Result<(), Error> {
                <$buffer>::upload(self, data)
            }
            fn download(&self) -> Result<Vec<u8>, Error> {
                <$buffer>::download(self)
            }
            fn address(&self) -> u64 {
                let $b = self;
                $address
            }
        }
    };
}
memory!(cuda::Buffer, cuda::Context, |b| b.ptr);
memory!(hip::Buffer, hip::Context, |b| b.ptr as u64);

/// The arguments of one GPU launch in device memory: each view's address, and the copies made
/// of host tensors (written back after the launch).
struct Staged<B> {
    addresses: Vec<u64>,
    copies: Vec<Option<B>>,
}

impl<B: Memory> Staged<B> {
    /// `own` gives the address of a device tensor that lives on the launch's device.
    fn new(
        device: &Device,
        k: &BundleKernel,
        ctx: &Arc<B::Ctx>,
        args: &[LaunchArg],
        own: impl Fn(&Storage) -> Option<u64>,
    ) -> Result<Staged<B>, Error> {
        let mut s = Staged {
            addresses: vec![0; args.len()],
            copies: Vec::with_capacity(args.len()),
        };
        for (i, a) in args.iter().enumerate() {
            let mut copy = None;
            match a {
                LaunchArg::Device(view) => {
                    let at = (view.offset * view.dtype.size_bytes() as usize) as u64;
                    s.addresses[i] = own(&view.storage).map(|base| base + at).ok_or_else(|| {
                        Error::WrongDevice {
                            kernel: k.name.clone(),
                            param: k.params[i].name.clone(),
                            tensor: view.device_name(),
                            launch: device.name(),
                        }
                    })?;
                }
                LaunchArg::Host(t) => {
                    let bytes = codec::encode(t.dtype(), t.storage());
                    let b = B::alloc(ctx, bytes.len())?;
                    b.upload(&bytes)?;
                    s.addresses[i] = b.address();
                    copy = Some(b);
                }
                LaunchArg::Table(t) => {
                    // The rows hold the entries' addresses on this device; the buffer is kept
                    // as a copy, so the launch waits for the kernel before freeing it.
                    let param = &k.params[i].name;
                    let mut addresses = Vec::with_capacity(t.entries.len());
                    for (e, entry) in t.entries.iter().enumerate() {
                        let at = match entry {
                            LaunchArg::Device(v) => own(&v.storage)
                                .map(|base| {
                                    base + (v.offset * v.dtype.size_bytes() as usize) as u64
                                })
                                .ok_or_else(|| {
                                    table::wrong_device(&k.name, param, e, v, &device.name())
                                })?,
                            other => {
                                return Err(Error::Argument {
                                    kernel: k.name.clone(),
                                    param: format!("{param}[{e}]"),
                                    expected: format!(
                                    "a tensor on {} (a GPU launch reads table entries in place)",
                                    device.name()
                                ),
                                    found: other.describe(),
                                })
                            }
                        };
                        addresses.push(at);
                    }
                    let bytes = t.rows(&addresses);
                    let b = B::alloc(ctx, bytes.len().max(8))?;
                    b.upload(&bytes)?;
                    s.addresses[i] = b.address();
                    copy = Some(b);
                }
                LaunchArg::Scalar(..) => {}
            }
            s.copies.push(copy);
        }
        Ok(s)
    }

    /// Whether the launch must wait for the kernel: host tensors are copied back after it (and
    /// `TILEKIT_SYNC` asks for it).
    fn must_wait(&self) -> bool {
        self.copies.iter().any(Option::is_some) || sync_every_launch()
    }

    /// Copies the kernel's results back into the host tensors.
    fn write_back(self, args: &mut [LaunchArg]) -> Result<(), Error> {
        for (a, copy) in args.iter_mut().zip(self.copies) {
            if let (LaunchArg::Host(t), Some(b)) = (a, copy) {
                let values = codec::decode(t.dtype(), &b.download()?);
                *t = HostTensor::strided(t.dtype(), t.shape(), t.strides(), &values)?;
            }
        }
        Ok(())
    }
}

/// Dynamic shared memory the launch passes (0 for a static allocation).
fn dynamic_shared(k: &BundleKernel) -> u32 {
    if k.dynamic_shared {
        k.shared_bytes as u32
    } else {
        0
    }
}

/// Checks the arguments against the kernel's parameters, as the bundle or the compiler
/// describes them (the typed launchers have checked dtype and rank already; this is what guards
/// the dynamic API and bundles).
fn check_args(k: &BundleKernel, args: &[LaunchArg]) -> Result<(), Error> {
    let bad = |param: &str, expected: String, found: String| Error::Argument {
        kernel: k.name.clone(),
        param: param.into(),
        expected,
        found,
    };
    if args.len() != k.params.len() {
        return Err(bad(
            "(all)",
            format!("{} arguments", k.params.len()),
            format!("{}", args.len()),
        ));
    }
    for (p, a) in k.params.iter().zip(args) {
        match (p.kind, a) {
            (ParamKind::Scalar, LaunchArg::Scalar(t, _)) if *t == p.dtype => {}
            (ParamKind::Global { rank, .. }, a) if a.tensor_dtype() == Some(p.dtype) => {
                let shape = a.shape();
                if shape.len() != rank as usize {
                    return Err(bad(
                        &p.name,
                        format!("a {} tensor of rank {rank}", p.dtype),
                        format!("a tensor of shape {shape:?}"),
                    ));
                }
            }
            (ParamKind::Scalar, a) => {
                return Err(bad(&p.name, format!("a {} scalar", p.dtype), a.describe()))
            }
            (ParamKind::Global { rank, .. }, a) => {
                return Err(bad(
                    &p.name,
                    format!("a {} tensor of rank {rank}", p.dtype),
                    a.describe(),
                ))
            }
        }
    }
    Ok(())
}

/// The entry's argument values, in ABI order.
fn abi_values(
    device: &Device,
    k: &BundleKernel,
    args: &[LaunchArg],
    pointers: &[u64],
) -> Result<Vec<cuda::ParamValue>, Error> {
    use cuda::ParamValue as P;
    let i32_of = |param: usize, what: &str, v: usize| {
        i32::try_from(v).map_err(|_| Error::Argument {
            kernel: k.name.clone(),
            param: k.params[param].name.clone(),
            expected: format!("{what} of at most {}", i32::MAX),
            found: v.to_string(),
        })
    };
    k.abi()
        .into_iter()
        .map(|a| {
            Ok(match a {
                AbiArg::Pointer { param } => P::U64(pointers[param]),
                AbiArg::Size { param, dim } => {
                    P::I32(i32_of(param, "a size", args[param].shape()[dim as usize])?)
                }
                AbiArg::Stride { param, dim } => P::I32(i32_of(
                    param,
                    "a stride",
                    args[param].strides()[dim as usize],
                )?),
                AbiArg::Scalar { param } => {
                    let LaunchArg::Scalar(t, v) = args[param] else {
                        unreachable!("checked by check_args")
                    };
                    match t {
                        ScalarType::F32 => P::F32(v as f32),
                        ScalarType::F16 => P::U16(half::f16::from_f64(v).to_bits()),
                        ScalarType::BF16 => P::U16(half::bf16::from_f64(v).to_bits()),
                        ScalarType::F8E4M3 | ScalarType::F8E5M2 => {
                            P::U8(crate::ir::numeric::fp8_to_bits(t, v))
                        }
                        ScalarType::I8 => P::U8(v as i8 as u8),
                        ScalarType::I32 => P::I32(v as i32),
                        ScalarType::U32 => P::U32(v as u32),
                        ScalarType::I64 => P::I64(v as i64),
                        ScalarType::Bool => P::I32(i32::from(v != 0.0)),
                    }
                }
                AbiArg::TensorMap { map } => {
                    let m = &k.tensor_maps[map];
                    let image =
                        crate::tensor_map::launch_map(device, m, &args[m.view], pointers[m.view])
                            .map_err(|e| Error::Argument {
                            kernel: k.name.clone(),
                            param: k.params[m.view].name.clone(),
                            expected:
                                "a view a TMA tensor map describes (the code copies it with TMA)"
                                    .into(),
                            found: e.to_string(),
                        })?;
                    P::Map(image)
                }
            })
        })
        .collect()
}

fn config(k: &BundleKernel, grid: Grid, shared: u32) -> String {
    format!(
        "grid {:?} × {} threads, {shared} bytes of dynamic shared memory ({} in all)",
        grid.0, k.block_threads, k.shared_bytes
    )
}

/// The kernel loaded under `key` in a device's cache, loading it with `load` the first time.
fn cached<F>(
    cache: &Mutex<std::collections::HashMap<String, Arc<Loaded<F>>>>,
    key: String,
    load: impl FnOnce() -> Result<Loaded<F>, Error>,
) -> Result<Arc<Loaded<F>>, Error> {
    let hit = cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .cloned();
    if let Some(l) = hit {
        return Ok(l);
    }
    let l = Arc::new(load()?);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, l.clone());
    Ok(l)
}

/// A kernel loaded on a device and the description of its code (parameters, block size,
/// shared memory).
#[derive(Debug)]
pub(crate) struct Loaded<F> {
    pub func: F,
    pub code: BundleKernel,
}

/// What a launch needs from one vendor's device handle.
trait Vendor {
    type Buffer: Memory;
    type Func;
    fn context(&self) -> &Arc<<Self::Buffer as Memory>::Ctx>;
    /// The address of a tensor's memory when it lives on this device.
    fn own(&self, storage: &Storage) -> Option<u64>;
    /// Launches `f` on the handle's stream; the error is the driver's message.
    fn launch(
        &self,
        f: &Self::Func,
        grid: Grid,
        block: u32,
        shared: u32,
        values: &[cuda::ParamValue],
    ) -> Result<(), String>;
    /// Waits for the handle's stream.
    fn wait(&self) -> Result<(), Error>;
    /// What a failed `device_assert` of `f` recorded, where the vendor's code records one.
    fn failed_assert(&self, f: &Self::Func) -> Option<AssertRecord>;
}

impl Vendor for Gpu<cuda::Context, cuda::Stream> {
    type Buffer = cuda::Buffer;
    type Func = cuda::Function;
    fn context(&self) -> &Arc<cuda::Context> {
        &self.ctx
    }
    fn own(&self, storage: &Storage) -> Option<u64> {
        match storage {
            Storage::Cuda(b) if Arc::ptr_eq(&b.ctx, &self.ctx) => Some(b.ptr),
            _ => None,
        }
    }
    fn launch(
        &self,
        f: &cuda::Function,
        grid: Grid,
        block: u32,
        shared: u32,
        values: &[cuda::ParamValue],
    ) -> Result<(), String> {
        f.launch(&self.stream, grid.0, [block, 1, 1], shared, values)
            .map_err(cuda::describe_error)
    }
    fn wait(&self) -> Result<(), Error> {
        self.stream.synchronize()
    }
    fn failed_assert(&self, f: &cuda::Function) -> Option<AssertRecord> {
        f.failed_assert()
    }
}

impl Vendor for Gpu<hip::Context, hip::Stream> {
    type Buffer = hip::Buffer;
    type Func = hip::Function;
    fn context(&self) -> &Arc<hip::Context> {
        &self.ctx
    }
    fn own(&self, storage: &Storage) -> Option<u64> {
        match storage {
            Storage::Hip(b) if Arc::ptr_eq(&b.ctx, &self.ctx) => Some(b.ptr as u64),
            _ => None,
        }
    }
    fn launch(
        &self,
        f: &hip::Function,
        grid: Grid,
        block: u32,
        shared: u32,
        values: &[cuda::ParamValue],
    ) -> Result<(), String> {
        f.launch(&self.stream, grid.0, [block, 1, 1], shared, values)
            .map_err(|e| e.to_string())
    }
    fn wait(&self) -> Result<(), Error> {
        self.stream.synchronize()
    }
    fn failed_assert(&self, _: &hip::Function) -> Option<AssertRecord> {
        // The AMD lowering traps without a record.
        None
    }
}

/// The vendor-neutral part of a GPU launch: checks the arguments against the loaded kernel's
/// code, stages them in device memory, launches, waits when host tensors must be copied back
/// (or `TILEKIT_SYNC` asks), and copies them back.
fn launch_staged<V: Vendor>(
    device: &Device,
    gpu: &V,
    loaded: &Loaded<V::Func>,
    grid: Grid,
    args: &mut [LaunchArg],
) -> Result<(), Error> {
    let k = &loaded.code;
    check_args(k, args)?;
    let staged = Staged::<V::Buffer>::new(device, k, gpu.context(), args, |s| gpu.own(s))?;
    let values = abi_values(device, k, args, &staged.addresses)?;
    let shared = dynamic_shared(k);
    // A trap shows as the launch's or the wait's error; a failed assert's record names it.
    let launch_failed = |message: String| Error::Launch {
        kernel: k.name.clone(),
        device: device.describe(),
        config: config(k, grid, shared),
        message: match gpu.failed_assert(&loaded.func) {
            Some(record) => format!("{record} ({message})"),
            None => message,
        },
    };
    gpu.launch(&loaded.func, grid, k.block_threads, shared, &values)
        .map_err(launch_failed)?;
    if staged.must_wait() {
        gpu.wait().map_err(|e| launch_failed(e.to_string()))?;
    }
    staged.write_back(args)
}

fn launch_cuda(
    device: &Device,
    g: &Gpu<cuda::Context, cuda::Stream>,
    module: &Module,
    kernel: &str,
    grid: Grid,
    args: &mut [LaunchArg],
) -> Result<(), Error> {
    let target = g.ctx.target()?;
    let hash = launch_hash(module, kernel);
    let aligned = args::aligned16_views(module, kernel, args);
    let key = format!("{kernel}/{hash}/{}", crate::abi::facts_text(&aligned));
    let loaded = cached(&g.ctx.loaded, key, || {
        let code = find_code(
            &g.bundles,
            module,
            kernel,
            &hash,
            &aligned,
            Some(target),
            device,
        )?;
        if code.shared_bytes > u64::from(g.ctx.max_shared_optin) {
            return Err(Error::UnsupportedDevice {
                device: device.describe(),
                message: format!(
                    "@{kernel} needs {} bytes of shared memory per block; this device allows {}",
                    code.shared_bytes, g.ctx.max_shared_optin
                ),
            });
        }
        let func = cuda::Function::load(&g.ctx, kernel, &code.ptx, dynamic_shared(&code))?;
        Ok(Loaded { func, code })
    })?;
    launch_staged(device, g, &loaded, grid, args)
}

fn launch_hip(
    device: &Device,
    g: &Gpu<hip::Context, hip::Stream>,
    module: &Module,
    kernel: &str,
    grid: Grid,
    args: &mut [LaunchArg],
) -> Result<(), Error> {
    let hash = launch_hash(module, kernel);
    let aligned = args::aligned16_views(module, kernel, args);
    let key = format!("{kernel}/{hash}/{}", crate::abi::facts_text(&aligned));
    let loaded = cached(&g.ctx.loaded, key, || {
        let (code, object) = hip_code(device, g, module, kernel, &hash, &aligned)?;
        let func = hip::Function::load(&g.ctx, kernel, &object)?;
        Ok(Loaded { func, code })
    })?;
    launch_staged(device, g, &loaded, grid, args)
}

/// A kernel's AMD code object for this device: from an attached bundle (matched by Tile IR
/// hash), else compiled (feature `jit`) for the chip `TILEKIT_HIP_ARCH` names (`gfx90a`,
/// `gfx942`, `gfx950`). HIP's device-properties struct changes layout across ROCm versions, so
/// tilekit does not read the chip from it.
fn hip_code(
    device: &Device,
    g: &Gpu<hip::Context, hip::Stream>,
    module: &Module,
    kernel: &str,
    hash: &str,
    aligned: &[String],
) -> Result<(BundleKernel, Vec<u8>), Error> {
    let attached = g.bundles.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for b in &attached {
        if let Some(k) = b
            .kernels
            .iter()
            .filter(|k| k.name == kernel && k.ir_hash == hash && k.runs_with(aligned))
            .filter(|k| k.code_object.is_some())
            .max_by_key(|k| k.aligned16.len())
        {
            if let Some(object) = &k.code_object {
                return Ok((k.clone(), object.clone()));
            }
        }
    }
    hip_compile(device, module, kernel, hash, aligned, attached.len())
}

#[cfg(feature = "jit")]
fn hip_compile(
    device: &Device,
    module: &Module,
    kernel: &str,
    _hash: &str,
    aligned: &[String],
    _attached: usize,
) -> Result<(BundleKernel, Vec<u8>), Error> {
    let no_code = |message: String| Error::NoCode {
        kernel: kernel.into(),
        device: device.describe(),
        message,
    };
    let arch = std::env::var("TILEKIT_HIP_ARCH").map_err(|_| {
        no_code("set TILEKIT_HIP_ARCH to the GPU's chip (gfx90a, gfx942 or gfx950)".into())
    })?;
    let target: tilekit_codegen::Target = arch
        .parse()
        .map_err(|e| no_code(format!("TILEKIT_HIP_ARCH: {e}")))?;
    if target.is_nvidia() {
        return Err(no_code(format!(
            "TILEKIT_HIP_ARCH names {arch}, an NVIDIA target"
        )));
    }
    let facts = tilekit_codegen::Facts::aligned16(aligned);
    let c = tilekit_codegen::compile_cached_with(module, kernel, target, &facts)
        .map_err(|e| no_code(format!("compiling for {arch} assuming {facts} failed: {e}")))?;
    let object = c
        .code_object()
        .ok_or_else(|| no_code(format!("the compiler made no code object for {arch}")))?
        .to_vec();
    let meta = crate::abi::compiled_kernel(module, kernel, "", String::new(), &c)
        .ok_or_else(|| no_code("the module has no such kernel".into()))?;
    Ok((meta, object))
}

#[cfg(not(feature = "jit"))]
fn hip_compile(
    device: &Device,
    _module: &Module,
    kernel: &str,
    hash: &str,
    _aligned: &[String],
    attached: usize,
) -> Result<(BundleKernel, Vec<u8>), Error> {
    Err(Error::NoCode {
        kernel: kernel.into(),
        device: device.describe(),
        message: format!(
            "no attached bundle holds this kernel (Tile IR hash {hash}; {attached} bundle(s) \
             attached) and this tilekit was built without `jit`: build an AMD bundle from the \
             same source with `tilekit bundle --target <chip>`"
        ),
    })
}

/// A CUDA error seen after launches (a trap shows at the next synchronization), with the
/// records of the loaded kernels whose `device_assert` failed.
fn with_failed_asserts(ctx: &cuda::Context, e: Error) -> Error {
    let Error::Driver {
        device,
        call,
        mut message,
    } = e
    else {
        return e;
    };
    let loaded = ctx.loaded.lock().unwrap_or_else(|p| p.into_inner());
    for l in loaded.values() {
        if let Some(record) = l.func.failed_assert() {
            message.push_str(&format!("; @{}: {record}", l.code.name));
        }
    }
    Error::Driver {
        device,
        call,
        message,
    }
}

/// `TILEKIT_SYNC=1`: wait after every launch, so a fault is reported by the launch that caused
/// it.
fn sync_every_launch() -> bool {
    std::env::var_os("TILEKIT_SYNC").is_some_and(|v| v != "0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::BundleParam;

    fn kernel(params: Vec<BundleParam>) -> BundleKernel {
        BundleKernel {
            name: "k".into(),
            variant: String::new(),
            code_file: "k.ptx".into(),
            ptx: String::new(),
            code_object: None,
            params,
            block_threads: 128,
            shared_bytes: 0,
            dynamic_shared: false,
            ir_hash: "0123456789abcdef".into(),
            aligned16: Vec::new(),
            tensor_maps: Vec::new(),
        }
    }

    fn global(name: &str, dtype: ScalarType, rank: u32) -> BundleParam {
        BundleParam {
            name: name.into(),
            dtype,
            kind: ParamKind::Global {
                rank,
                mutable: true,
            },
        }
    }

    fn scalar(name: &str, dtype: ScalarType) -> BundleParam {
        BundleParam {
            name: name.into(),
            dtype,
            kind: ParamKind::Scalar,
        }
    }

    /// The entry's values follow the ABI: pointer, sizes, strides per view; scalars in their
    /// own encoding (bool as a 32-bit 0/1, bf16 as its bits).
    #[test]
    fn abi_values_are_pointer_sizes_strides_then_scalars() {
        let k = kernel(vec![
            global("x", ScalarType::F32, 2),
            scalar("alpha", ScalarType::BF16),
            scalar("flag", ScalarType::Bool),
            scalar("n", ScalarType::I32),
        ]);
        let x = HostTensor::zeros(ScalarType::F32, &[3, 5]);
        let args = [
            LaunchArg::Host(x),
            LaunchArg::Scalar(ScalarType::BF16, -2.0),
            LaunchArg::Scalar(ScalarType::Bool, 1.0),
            LaunchArg::Scalar(ScalarType::I32, -7.0),
        ];
        check_args(&k, &args).unwrap();
        let v = abi_values(&Device::Cpu, &k, &args, &[0xdead_beef_0000, 0, 0, 0]).unwrap();
        let got: Vec<String> = v.iter().map(|p| format!("{p:?}")).collect();
        assert_eq!(
            got,
            [
                "U64(244837814042624)",
                "I32(3)",
                "I32(5)",
                "I32(5)",
                "I32(1)",
                "U16(49152)",
                "I32(1)",
                "I32(-7)"
            ]
        );
    }

    #[test]
    fn arguments_that_do_not_match_the_bundled_signature_are_refused() {
        let k = kernel(vec![
            global("x", ScalarType::BF16, 2),
            scalar("alpha", ScalarType::F32),
        ]);
        let x = LaunchArg::Host(HostTensor::zeros(ScalarType::BF16, &[2, 2]));
        let err = |args: &[LaunchArg]| check_args(&k, args).unwrap_err().to_string();
        let e = err(std::slice::from_ref(&x));
        assert!(e.contains("must be 2 arguments, got 1"), "{e}");
        let e = err(&[
            LaunchArg::Host(HostTensor::zeros(ScalarType::F32, &[2, 2])),
            LaunchArg::Scalar(ScalarType::F32, 1.0),
        ]);
        assert!(e.contains("`x` must be a bf16 tensor of rank 2"), "{e}");
        let e = err(&[
            LaunchArg::Host(HostTensor::zeros(ScalarType::BF16, &[4])),
            LaunchArg::Scalar(ScalarType::F32, 1.0),
        ]);
        assert!(e.contains("got a tensor of shape [4]"), "{e}");
        let e = err(&[x.clone(), LaunchArg::Scalar(ScalarType::I32, 1.0)]);
        assert!(
            e.contains("`alpha` must be a f32 scalar, got a i32 scalar"),
            "{e}"
        );
        let e = err(&[x.clone(), x]);
        assert!(e.contains("`alpha` must be a f32 scalar"), "{e}");
    }

    /// A one-kernel module `@k(%alpha: <dtype>)` from the text form: two dtypes give two
    /// modules that differ only in their Tile IR.
    fn scalar_kernel(dtype: &str) -> Module {
        let text = format!("kernel @k(%alpha: {dtype}) warps(1) {{\n  return ()\n}}\n");
        crate::ir::parse_module(&text).unwrap()
    }

    /// A launch hashes a module the launchers keep once (then remembers it) and any other module
    /// each time; both give `ir_hash`.
    #[test]
    fn launches_hash_kept_modules_once_and_others_every_time() {
        struct Kept;
        let kept = crate::module_cache::__cached("k", std::any::TypeId::of::<Kept>(), || {
            scalar_kernel("f32")
        })
        .unwrap();
        let fresh = scalar_kernel("f32");
        assert!(crate::module_cache::built_once(kept));
        assert!(!crate::module_cache::built_once(&fresh));
        let want = ir_hash(kept, "k");
        assert_eq!(launch_hash(kept, "k"), want);
        assert_eq!(launch_hash(kept, "k"), want, "remembered");
        assert_eq!(launch_hash(&fresh, "k"), want, "same IR, same hash");
    }

    /// Code is found in an attached bundle by the kernel's Tile IR hash; without a match it is
    /// compiled (with `jit`) or refused with what to do (without).
    #[test]
    fn bundled_code_is_found_by_tile_ir_hash() {
        let module = &scalar_kernel("f32");
        let name = "k";
        let hash = ir_hash(module, name);
        assert_eq!(hash.len(), 16);
        assert_eq!(hash, ir_hash(module, name), "the hash is deterministic");
        let other = &scalar_kernel("i32");
        assert_ne!(hash, ir_hash(other, name), "other IR hashes differently");

        let mut bundled = kernel(vec![]);
        bundled.name = name.into();
        bundled.ir_hash = hash.clone();
        bundled.ptx = "// bundled".into();
        let bundles = Mutex::new(vec![Arc::new(Bundle {
            target: "sm_80".into(),
            kernels: vec![bundled],
        })]);
        let found = find_code(
            &bundles,
            module,
            name,
            &hash,
            &[],
            Some("sm_80"),
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(found.ptx, "// bundled");

        let other_hash = ir_hash(other, name);
        let r = find_code(
            &bundles,
            other,
            name,
            &other_hash,
            &[],
            Some("sm_80"),
            &Device::Cpu,
        );
        if cfg!(feature = "jit") {
            let code = r.unwrap();
            assert!(code.ptx.contains(".entry k("), "compiled PTX");
            assert_eq!(code.ir_hash, other_hash);
        } else {
            let e = r.unwrap_err().to_string();
            assert!(e.contains("built without `jit`"), "{e}");
        }
    }

    /// A bundle with a general and an aligned entry of one kernel: a launch takes the aligned
    /// one only when every view it assumes aligned is, else the general one.
    #[test]
    fn bundled_code_is_chosen_by_the_launchs_aligned_views() {
        let module = &scalar_kernel("f32");
        let name = "k";
        let hash = ir_hash(module, name);
        let entry = |ptx: &str, aligned: &[&str]| {
            let mut k = kernel(vec![]);
            k.name = name.into();
            k.ir_hash = hash.clone();
            k.ptx = ptx.into();
            k.aligned16 = aligned.iter().map(|s| s.to_string()).collect();
            k
        };
        let bundles = Mutex::new(vec![Arc::new(Bundle {
            target: "sm_80".into(),
            kernels: vec![entry("// aligned", &["x", "y"]), entry("// general", &[])],
        })]);
        let pick = |aligned: &[&str]| {
            let aligned: Vec<String> = aligned.iter().map(|s| s.to_string()).collect();
            find_code(
                &bundles,
                module,
                name,
                &hash,
                &aligned,
                Some("sm_80"),
                &Device::Cpu,
            )
            .unwrap()
            .ptx
        };
        assert_eq!(pick(&["x", "y"]), "// aligned");
        assert_eq!(pick(&["w", "x", "y"]), "// aligned");
        assert_eq!(pick(&["x"]), "// general");
        assert_eq!(pick(&[]), "// general");
    }
}
