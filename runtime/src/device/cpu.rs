//! The cpu device: the Tile IR interpreter runs the kernel on host tensors, within the budgets
//! of its [`CpuOptions`].

use crate::error::Error;
use crate::ir::interp::{self, Arg, CancelToken, HostTensor, Launch, Numerics, Schedule};
use crate::ir::Module;

use super::{Grid, LaunchArg};

/// How the cpu device runs kernels: the interpreter's op and memory budgets, and a token that
/// cancels runs. [`Device::Cpu`](super::Device::Cpu) runs with the defaults
/// ([`interp::DEFAULT_OP_BUDGET`] ops, [`interp::DEFAULT_MEMORY_BUDGET`] bytes, no token); a
/// device made with [`Device::cpu_with`](super::Device::cpu_with) runs with these.
///
/// A run that spends its op budget, would pass its memory budget, or is cancelled fails with
/// [`Error::Interp`] naming the kernel, the budget and the op it reached.
///
/// ```
/// use tilekit::device::CpuOptions;
/// use tilekit::ir::interp::CancelToken;
/// use tilekit::Device;
///
/// let cancel = CancelToken::new();
/// let device = Device::cpu_with(
///     CpuOptions::default()
///         .op_budget(10_000_000)
///         .memory_budget(64 << 20)
///         .cancel(cancel.clone()),
/// );
/// assert_eq!(device.name(), "cpu");
/// // Another thread may call `cancel.cancel()`: the device's runs then stop with an error.
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuOptions {
    /// Ops the interpreter executes per launch, summed over every warp of every block.
    pub op_budget: u64,
    /// Bytes the interpreter may hold for a launch beyond the caller's tensors.
    pub memory_budget: u64,
    /// Cancels the device's runs when another thread calls [`CancelToken::cancel`].
    pub cancel: Option<CancelToken>,
    /// How the warps of a block take turns ([`Schedule::UntilBlocked`] by default).
    pub schedule: Schedule,
    /// Whether runs check shared and global memory for races ([`Launch::race_check`]; on by
    /// default).
    pub race_check: bool,
    /// Whether runs check that every output the kernel only writes is written in full
    /// ([`Launch::check_unwritten`]; off by default).
    pub check_unwritten: bool,
    /// Whether runs refuse a tile addressed by an index from memory that lies wholly outside
    /// its view ([`Launch::index_check`]; on by default).
    pub index_check: bool,
    /// How the approximate float functions (`exp2`, `log2`, `rsqrt`, `tanh` and those built on
    /// them) are evaluated: correctly rounded ([`Numerics::Exact`], the default) or as the GPUs
    /// may compute them at their worst ([`Numerics::Approx`]: the error bounds and subnormal
    /// flushing that `tilekit::ir::numeric` documents per function). A tolerance that holds in
    /// both modes holds on every target.
    pub numerics: Numerics,
}

impl Default for CpuOptions {
    /// The interpreter's defaults, which every library kernel's self-test keeps well within.
    fn default() -> CpuOptions {
        CpuOptions {
            op_budget: interp::DEFAULT_OP_BUDGET,
            memory_budget: interp::DEFAULT_MEMORY_BUDGET,
            cancel: None,
            schedule: Schedule::UntilBlocked,
            race_check: true,
            check_unwritten: false,
            index_check: true,
            numerics: Numerics::Exact,
        }
    }
}

impl CpuOptions {
    /// The same options with an op budget of `ops` per launch.
    pub fn op_budget(mut self, ops: u64) -> CpuOptions {
        self.op_budget = ops;
        self
    }

    /// The same options with a memory budget of `bytes` per launch.
    pub fn memory_budget(mut self, bytes: u64) -> CpuOptions {
        self.memory_budget = bytes;
        self
    }

    /// The same options with runs stopped once `token` is cancelled.
    pub fn cancel(mut self, token: CancelToken) -> CpuOptions {
        self.cancel = Some(token);
        self
    }

    /// The same options with warps taking turns as `schedule` says.
    pub fn schedule(mut self, schedule: Schedule) -> CpuOptions {
        self.schedule = schedule;
        self
    }

    /// The same options with the race check (shared and global memory) on or off.
    pub fn race_check(mut self, on: bool) -> CpuOptions {
        self.race_check = on;
        self
    }

    /// The same options with the unwritten-output check on or off.
    pub fn check_unwritten(mut self, on: bool) -> CpuOptions {
        self.check_unwritten = on;
        self
    }

    /// The same options with the check of indices from memory on or off.
    pub fn index_check(mut self, on: bool) -> CpuOptions {
        self.index_check = on;
        self
    }

    /// The same options with the approximate float functions evaluated as `numerics` says
    /// (`Numerics::Approx`: the GPUs' documented worst case).
    pub fn numerics(mut self, numerics: Numerics) -> CpuOptions {
        self.numerics = numerics;
        self
    }

    /// The interpreter's launch over `grid` with these options.
    fn launch(&self, grid: Grid) -> Launch {
        let launch = Launch::grid(grid.0)
            .op_budget(self.op_budget)
            .memory_budget(self.memory_budget)
            .schedule(self.schedule)
            .race_check(self.race_check)
            .check_unwritten(self.check_unwritten)
            .index_check(self.index_check)
            .numerics(self.numerics);
        match &self.cancel {
            Some(token) => launch.cancel(token.clone()),
            None => launch,
        }
    }
}

/// The interpreter run: host tensors in, their final contents back.
pub(crate) fn run_interp(
    options: &CpuOptions,
    module: &Module,
    kernel: &str,
    grid: Grid,
    args: &mut [LaunchArg],
) -> Result<(), Error> {
    let params = module
        .kernel(kernel)
        .map(|f| {
            f.params
                .iter()
                .map(|p| {
                    f.value_names
                        .get(p.index())
                        .cloned()
                        .flatten()
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mut interp_args = Vec::with_capacity(args.len());
    for (i, a) in args.iter_mut().enumerate() {
        interp_args.push(match a {
            LaunchArg::Host(t) => {
                Arg::Tensor(std::mem::replace(t, HostTensor::zeros(t.dtype(), &[0])))
            }
            LaunchArg::Scalar(t, v) => Arg::Scalar(*t, *v),
            LaunchArg::Table(t) => {
                let param = params.get(i).cloned().unwrap_or_else(|| format!("#{i}"));
                let entries = super::table::host_entries(kernel, &param, t, "cpu")?;
                let table = interp::TensorTable::new(entries).map_err(|e| Error::Argument {
                    kernel: kernel.into(),
                    param,
                    expected: "a pointer table of tensors of one dtype and rank".into(),
                    found: e.to_string(),
                })?;
                Arg::Table(table)
            }
            LaunchArg::Device(v) => {
                return Err(Error::WrongDevice {
                    kernel: kernel.into(),
                    param: params.get(i).cloned().unwrap_or_else(|| format!("#{i}")),
                    tensor: v.device_name(),
                    launch: "cpu".into(),
                })
            }
        });
    }
    let result = interp::run_with(module, kernel, options.launch(grid), &mut interp_args);
    // Hand the tensors back whether or not the run succeeded.
    for (a, back) in args.iter_mut().zip(interp_args) {
        match (a, back) {
            (LaunchArg::Host(t), Arg::Tensor(b)) => *t = b,
            (LaunchArg::Table(t), Arg::Table(b)) => {
                for (e, b) in t.entries.iter_mut().zip(b.into_entries()) {
                    *e = LaunchArg::Host(b);
                }
            }
            _ => {}
        }
    }
    result?;
    Ok(())
}
