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
    /// The code targets it is registered for (`<..> for [sm_90a]` or `targets = [..]` on the
    /// macro), by name as `tilekit_codegen::Target::name` spells them; empty: every target.
    /// Checks that go over every variant and target (spills, hot loops, bundles, `tilekit
    /// check`) skip the targets a variant does not list.
    pub targets: &'static [&'static str],
    /// Its module (built on first use and cached).
    pub module: fn() -> &'static Module,
    /// The kernel's shape rule (its contract, `shapes(…)` on the macro, then its `check = …`;
    /// always `Ok` without either), run on the arguments of every launch.
    pub check: fn(&[LaunchArg]) -> Result<(), String>,
    /// The kernel's launch contract: the grid it declares for the arguments (`grid = […]` on
    /// the macro; `Ok(None)` without one), the least a launch's grid may be on each axis.
    pub contract: crate::contract::ContractFn,
}

impl Variant {
    /// Whether the variant is registered for the code target named `target` (`sm_90a`).
    pub fn is_for(&self, target: &str) -> bool {
        self.targets.is_empty() || self.targets.contains(&target)
    }

    /// Whether a launch on `device` runs code the variant is registered for (see [`runs_on`]).
    pub fn runs_on(&self, device: &Device) -> bool {
        runs_on(self.targets, device)
    }

    /// The targets it is registered for, for messages: `sm_90a` or `every target`.
    pub fn targets_text(&self) -> String {
        if self.targets.is_empty() {
            "every target".to_string()
        } else {
            self.targets.join(", ")
        }
    }
}

/// Whether `device` runs code for one of `targets` (empty: every target): the interpreter
/// runs every variant; a GPU or emulator runs the variants registered for its target (a HIP
/// device, which does not name its chip here, those for some AMD target). A self-test calls it
/// before launching a variant registered for some targets only.
pub fn runs_on(targets: &[&str], device: &Device) -> bool {
    if targets.is_empty() {
        return true;
    }
    match device.target() {
        Ok(Some(t)) => targets.contains(&t),
        Ok(None) if device.is_cpu() => true,
        Ok(None) => targets.iter().any(|t| t.starts_with("gfx")),
        Err(_) => false,
    }
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
