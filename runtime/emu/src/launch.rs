//! Launching a kernel: lay out parameters, shared and local memory, run every block, and report
//! the dynamic instruction profile and the sanitizer's findings.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::error::{EmuError, EmuResult};
use crate::exec::{profile_of, run_block, Limits, Profile, Program, SharedVar, SymAddr};
use crate::machine::Geometry;
use crate::memory::GlobalMemory;
use crate::ptx::{self, Function, Module, Param, Space};
use crate::sanitizer::Finding;

/// Most threads a block may have (PTX ISA: `%ntid` ≤ 1024 in total).
const MAX_THREADS: u32 = 1024;
/// Most shared memory per block the emulator accepts (sm_90's 227 KiB, plus static slack).
const MAX_SHARED: u64 = 256 * 1024;

/// How a launch runs.
#[derive(Clone, Debug)]
pub struct LaunchConfig {
    /// Blocks in x, y, z.
    pub grid: [u32; 3],
    /// Threads per block in x, y, z.
    pub block: [u32; 3],
    /// Dynamic shared memory bytes (the `.extern .shared` array).
    pub dynamic_shared: u32,
    /// Run the sanitizer (on by default).
    pub sanitize: bool,
    /// Whether sanitizer findings make the launch an error (on by default).
    pub findings_are_errors: bool,
    /// Most warp-instructions the whole launch may execute.
    pub budget: u64,
    /// Set from another thread to stop the launch.
    pub cancel: Option<Arc<AtomicBool>>,
    /// How fp8 `wgmma` sums its products: exact (the default) or the reduced-precision adder
    /// measured on H800 (`Accumulation::AlignedTruncation { kept_bits: 14 }`), so kernels that
    /// promote partial sums can be tested for it.
    pub fp8_accumulation: crate::tensor_core::Accumulation,
    /// Measure the time spent in each instruction class (for benchmarks: it costs two clock
    /// reads per warp-instruction).
    pub time_classes: bool,
    /// Starting bytes of module-scope `.global` variables, by name, for this launch (what a
    /// host writes at `cuModuleGetGlobal`'s address before launching); the others start from
    /// their declared initializers.
    pub variables: HashMap<String, Vec<u8>>,
}

impl LaunchConfig {
    /// A launch of `grid` blocks of `block` threads with the defaults: sanitizer on, findings
    /// are errors, no dynamic shared memory, a budget of 2^34 warp-instructions.
    pub fn new(grid: [u32; 3], block: [u32; 3]) -> LaunchConfig {
        LaunchConfig {
            grid,
            block,
            dynamic_shared: 0,
            sanitize: true,
            findings_are_errors: true,
            budget: 1 << 34,
            cancel: None,
            fp8_accumulation: crate::tensor_core::Accumulation::Exact,
            time_classes: false,
            variables: HashMap::new(),
        }
    }
}

/// What a launch did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Executed warp-instructions by class.
    pub profile: Profile,
    /// Sanitizer findings (empty unless `findings_are_errors` is off).
    pub findings: Vec<Finding>,
    /// Blocks run.
    pub blocks: u64,
    /// Every instruction that accessed shared memory, in PTX line order, with its wavefronts
    /// against the conflict-free ideal ([`crate::banks`]).
    pub shared_accesses: Vec<crate::banks::SharedAccessStats>,
}

impl Report {
    /// The shared-memory instructions that had a bank conflict in this launch.
    pub fn bank_conflicts(&self) -> impl Iterator<Item = &crate::banks::SharedAccessStats> {
        self.shared_accesses.iter().filter(|s| s.conflicted())
    }

    /// The profile as lines `count class`, most frequent first (with the class's
    /// warp-instructions per second when the launch timed classes).
    pub fn profile_table(&self) -> String {
        let mut rows: Vec<(&String, &u64)> = self.profile.counts.iter().collect();
        rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut s = String::new();
        for (k, v) in rows {
            match self.profile.nanos.get(k) {
                Some(ns) if *ns > 0 => {
                    let rate = *v as f64 / (*ns as f64 * 1e-9) / 1e6;
                    s.push_str(&format!("{v:>12}  {rate:>9.2} M/s  {k}\n"));
                }
                _ => s.push_str(&format!("{v:>12}  {k}\n")),
            }
        }
        s.push_str(&format!(
            "{:>12}  total warp-instructions\n",
            self.profile.total
        ));
        s
    }
}

/// A parsed PTX module ready to launch its kernels.
#[derive(Clone, Debug)]
pub struct Emulator {
    module: Module,
    sm: u32,
    /// A fingerprint of the PTX text (FNV-1a), naming the module in bank statistics.
    fingerprint: u64,
}

impl Emulator {
    /// Parses `ptx`. The SM version comes from its `.target` (`sm_80` → 80; default 80).
    pub fn new(ptx: &str) -> EmuResult<Emulator> {
        let module = ptx::parse(ptx)?;
        let sm = module
            .target
            .as_deref()
            .and_then(|t| t.strip_prefix("sm_"))
            .map(|t| t.trim_end_matches(|c: char| c.is_ascii_alphabetic()))
            .and_then(|t| t.parse().ok())
            .unwrap_or(80);
        let fingerprint = ptx.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        Ok(Emulator {
            module,
            sm,
            fingerprint,
        })
    }

    /// The parsed module.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// The kernel `name`'s parameters (offsets and sizes in the parameter buffer).
    pub fn params(&self, name: &str) -> EmuResult<&[Param]> {
        Ok(&self.entry(name)?.params)
    }

    fn entry(&self, name: &str) -> EmuResult<&Function> {
        self.module
            .functions
            .iter()
            .find(|f| f.is_entry && f.name == name)
            .ok_or_else(|| EmuError::Launch {
                kernel: name.to_string(),
                message: format!(
                    "no such .entry; the module has {}",
                    self.module.kernels().collect::<Vec<_>>().join(", ")
                ),
            })
    }

    /// Builds the parameter buffer of kernel `name` from one byte string per parameter.
    pub fn param_buffer(&self, name: &str, args: &[Vec<u8>]) -> EmuResult<Vec<u8>> {
        let f = self.entry(name)?;
        if args.len() != f.params.len() {
            return Err(EmuError::Launch {
                kernel: name.into(),
                message: format!(
                    "{} arguments given, the kernel has {} parameters",
                    args.len(),
                    f.params.len()
                ),
            });
        }
        let size = f.params.last().map_or(0, |p| p.offset + p.size) as usize;
        let mut buf = vec![0u8; size];
        for (p, a) in f.params.iter().zip(args) {
            if a.len() != p.size as usize {
                return Err(EmuError::Launch {
                    kernel: name.into(),
                    message: format!(
                        "parameter `{}` is {} bytes, the argument {} bytes",
                        p.name,
                        p.size,
                        a.len()
                    ),
                });
            }
            buf[p.offset as usize..(p.offset + p.size) as usize].copy_from_slice(a);
        }
        Ok(buf)
    }

    /// Runs kernel `name` over the grid with the parameter buffer `params` (see
    /// [`Emulator::param_buffer`]) against `global`, whose allocations the parameters point into.
    pub fn launch(
        &self,
        name: &str,
        cfg: &LaunchConfig,
        params: &[u8],
        global: &mut GlobalMemory,
    ) -> EmuResult<Report> {
        let f = self.entry(name)?;
        let launch_err = |message: String| EmuError::Launch {
            kernel: name.to_string(),
            message,
        };
        let threads = cfg.block.iter().try_fold(1u32, |a, &b| a.checked_mul(b));
        match threads {
            Some(t) if (1..=MAX_THREADS).contains(&t) => {}
            _ => {
                return Err(launch_err(format!(
                    "block {:?}: expected 1..=1024 threads",
                    cfg.block
                )))
            }
        }
        if cfg.grid.contains(&0) {
            return Err(launch_err(format!(
                "grid {:?} has an empty dimension",
                cfg.grid
            )));
        }
        if let Some(m) = f.maxntid {
            if cfg.block.iter().zip(m.iter()).any(|(b, m)| b > m)
                && threads > Some(m.iter().product())
            {
                return Err(launch_err(format!(
                    "block {:?} exceeds the kernel's .maxntid {:?}",
                    cfg.block, m
                )));
            }
        }
        let need = f.params.last().map_or(0, |p| p.offset + p.size) as usize;
        if params.len() < need {
            return Err(launch_err(format!(
                "{} parameter bytes, the kernel needs {need}",
                params.len()
            )));
        }
        let mut syms = HashMap::new();
        for p in &f.params {
            syms.insert(p.name.clone(), SymAddr::Param(p.offset));
        }
        // Shared memory: static variables in declaration order, then the dynamic array.
        let mut shared_vars = Vec::new();
        let mut off = 0u64;
        let mut dyn_align = 16u64;
        let mut dyn_names = Vec::new();
        let statics = self
            .module
            .globals
            .iter()
            .chain(f.shared.iter())
            .filter(|v| v.space == Space::Shared);
        for v in statics {
            match v.size {
                Some(size) => {
                    off = off.next_multiple_of(u64::from(v.align.max(1)));
                    syms.insert(v.name.clone(), SymAddr::Shared(off as u32));
                    shared_vars.push(SharedVar {
                        name: v.name.clone(),
                        offset: off as u32,
                        size: size as u32,
                    });
                    off += size;
                    if off > MAX_SHARED {
                        return Err(launch_err(format!(
                            "static shared memory exceeds {MAX_SHARED} bytes"
                        )));
                    }
                }
                None => {
                    dyn_align = dyn_align.max(u64::from(v.align));
                    dyn_names.push(v.name.clone());
                }
            }
        }
        let static_bytes = off;
        let dyn_off = off.next_multiple_of(dyn_align);
        for n in dyn_names {
            syms.insert(n.clone(), SymAddr::Shared(dyn_off as u32));
            shared_vars.push(SharedVar {
                name: n,
                offset: dyn_off as u32,
                size: cfg.dynamic_shared,
            });
        }
        let shared_bytes = if cfg.dynamic_shared > 0 {
            dyn_off + u64::from(cfg.dynamic_shared)
        } else {
            static_bytes
        };
        if shared_bytes > MAX_SHARED {
            return Err(launch_err(format!(
                "{shared_bytes} bytes of shared memory, at most {MAX_SHARED}"
            )));
        }
        // Local memory per thread.
        let mut loff = 0u64;
        for v in &f.locals {
            loff = loff.next_multiple_of(u64::from(v.align.max(1)));
            syms.insert(v.name.clone(), SymAddr::Local(loff as u32));
            loff += v.size.unwrap_or(0);
            if loff > 1 << 20 {
                return Err(launch_err("local memory exceeds 1 MiB per thread".into()));
            }
        }
        // Module-scope global and constant variables live in global memory for this launch.
        let variables = || {
            self.module
                .globals
                .iter()
                .filter(|v| matches!(v.space, Space::Global | Space::Const))
        };
        for (name, bytes) in &cfg.variables {
            let Some(v) = variables().find(|v| &v.name == name && v.space == Space::Global) else {
                return Err(launch_err(format!(
                    "no module-scope .global variable `{name}` to set"
                )));
            };
            if bytes.len() as u64 > v.size.unwrap_or(0) {
                return Err(launch_err(format!(
                    "{} bytes for variable `{name}` of {} bytes",
                    bytes.len(),
                    v.size.unwrap_or(0)
                )));
            }
        }
        for v in variables() {
            let size = v.size.unwrap_or(0) as usize;
            let mut data = cfg.variables.get(&v.name).unwrap_or(&v.init).clone();
            data.resize(size, 0);
            let base = global.alloc(format!("variable {}", v.name), data);
            syms.insert(v.name.clone(), SymAddr::Global(base));
        }
        let prog = Program {
            kernel: f,
            syms,
            shared_vars,
            shared_bytes: shared_bytes as usize,
            local_bytes: loff as usize,
            params: params.to_vec(),
            sm: self.sm,
            sanitize: cfg.sanitize,
            fp8_accumulation: cfg.fp8_accumulation,
            priority: crate::exec::reconverge::priorities(f),
        };
        let mut findings = Vec::new();
        // Executed warp-instructions per instruction index; classes are named once at the end.
        let mut counts = vec![0u64; f.body.len()];
        let mut limits = Limits {
            budget: cfg.budget,
            budget_total: cfg.budget,
            cancel: cfg.cancel.as_deref(),
            nanos: if cfg.time_classes {
                vec![0; f.body.len()]
            } else {
                Vec::new()
            },
            register_files: Vec::new(),
            banks: Vec::new(),
        };
        let mut blocks = 0u64;
        for z in 0..cfg.grid[2] {
            for y in 0..cfg.grid[1] {
                for x in 0..cfg.grid[0] {
                    let geom = Geometry {
                        grid: cfg.grid,
                        block: cfg.block,
                        ctaid: [x, y, z],
                        dynamic_smem: cfg.dynamic_shared,
                        total_smem: shared_bytes as u32,
                        block_linear: blocks,
                    };
                    run_block(&prog, geom, global, &mut findings, &mut counts, &mut limits)?;
                    blocks += 1;
                }
            }
        }
        if cfg.findings_are_errors && !findings.is_empty() {
            return Err(EmuError::Sanitizer {
                kernel: name.to_string(),
                count: findings.len(),
                first: findings[0].to_string(),
                findings,
            });
        }
        let mut shared_accesses: Vec<crate::banks::SharedAccessStats> = limits
            .banks
            .into_iter()
            .filter(|s| s.executions > 0)
            .collect();
        shared_accesses.sort_by_key(|s| s.line);
        crate::banks::offer(name, self.fingerprint, &shared_accesses);
        Ok(Report {
            profile: profile_of(&f.body, &counts, &limits.nanos),
            findings,
            blocks,
            shared_accesses,
        })
    }
}
