//! Kernels register themselves here (the `#[kernel]` macro submits a [`KernelInfo`]); `tilekit
//! list` and `tilekit selftest` read the registry, so there is no hand-kept list.

use crate::ir::Module;
use crate::launch::{__run, Device, Error, Grid, LaunchArg};

/// One comptime instantiation of a kernel.
#[derive(Debug)]
pub struct Variant {
    /// Its comptime arguments as written, e.g. `<64, 64>` (empty for a non-generic kernel).
    pub args: &'static str,
    /// The kernel's parameters with this variant's generics substituted, e.g.
    /// `a: Gl<bf16, 2>, c: GlMut<f32, 2>` (what `tilekit list` prints).
    pub params: &'static str,
    /// Its module (built on first use and cached).
    pub module: fn() -> &'static Module,
    /// The kernel's shape rule (its contract, `shapes(…)` on the macro, then its `check = …`;
    /// always `Ok` without either), run on the arguments of every launch.
    pub check: fn(&[LaunchArg]) -> Result<(), String>,
    /// The kernel's launch contract: the grid it declares for the arguments (`grid = […]` on
    /// the macro; `Ok(None)` without one), the least a launch's grid may be on each axis.
    pub contract: crate::contract::ContractFn,
}

/// Runs a kernel's variants against its reference on `device`; `Ok` describes what was checked.
pub type SelfTest = fn(&Device) -> Result<String, String>;

/// A registered kernel.
#[derive(Debug)]
pub struct KernelInfo {
    pub name: &'static str,
    /// The Rust signature's parameters as written, e.g. `a: Gl<T, 2>, c: GlMut<O, 2>` (each
    /// [`Variant`] has them with its generics substituted).
    pub params: &'static str,
    /// Where the kernel is defined (`file:line`).
    pub file: &'static str,
    pub line: u32,
    /// The instantiations to list, check and self-test.
    pub variants: &'static [Variant],
    /// Runs every variant against its reference on fresh inputs; `Ok` describes what was checked.
    pub selftest: Option<SelfTest>,
}

inventory::collect!(KernelInfo);

/// Every registered kernel, sorted by name.
pub fn kernels() -> Vec<&'static KernelInfo> {
    let mut v: Vec<&'static KernelInfo> = inventory::iter::<KernelInfo>.into_iter().collect();
    v.sort_by_key(|k| (k.name, k.file, k.line));
    v
}

impl Device {
    /// Launches registered kernel `name` at comptime arguments `variant` (as `tilekit list`
    /// prints them, e.g. `<bf16, 64, 64, 32, 32, 32>`; empty for a non-generic kernel). The
    /// arguments are checked against the kernel's signature (count, kind, dtype, rank, dimension
    /// range) and its shape rule before anything runs; host tensors passed for writable
    /// parameters receive the results. As for every launch, the grid must be within the GPUs'
    /// limits and no writable tensor may share elements with another argument
    /// ([`Error::Overlap`]).
    pub fn launch_by_name(
        &self,
        name: &str,
        variant: &str,
        grid: impl Into<Grid>,
        args: &mut [LaunchArg],
    ) -> Result<(), Error> {
        let normalize = |s: &str| s.split_whitespace().collect::<String>();
        let kernels = kernels();
        let found = kernels.iter().find_map(|k| {
            (k.name == name)
                .then(|| {
                    k.variants
                        .iter()
                        .find(|v| normalize(v.args) == normalize(variant))
                })
                .flatten()
        });
        let Some(v) = found else {
            return Err(Error::UnknownKernel {
                name: name.into(),
                variant: variant.into(),
                available: kernels
                    .iter()
                    .flat_map(|k| {
                        k.variants
                            .iter()
                            .map(move |v| format!("{}{}", k.name, v.args))
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let module = (v.module)();
        crate::launch::check_signature(module, name, args)?;
        let grid = crate::contract::__launch_grid(
            name,
            args,
            Some(grid.into()),
            v.check,
            v.contract,
            "the grid of the kernel's contract",
        )?;
        __run(self, module, name, grid, args)
    }
}
