//! Kernels register themselves here (the `#[kernel]` macro submits a [`KernelInfo`]); `tilekit
//! list` and `tilekit selftest` read the registry, so there is no hand-kept list.

use crate::ir::Module;
use crate::launch::Device;

/// One comptime instantiation of a kernel.
#[derive(Debug)]
pub struct Variant {
    /// Its comptime arguments as written, e.g. `<64, 64>` (empty for a non-generic kernel).
    pub args: &'static str,
    /// Its module (built on first use and cached).
    pub module: fn() -> &'static Module,
    /// The kernel's shape rule (`check = …` on the macro; always `Ok` without one), run on the
    /// arguments of every launch.
    pub check: fn(&[crate::launch::LaunchArg]) -> Result<(), String>,
}

/// Runs a kernel's variants against its reference on `device`; `Ok` describes what was checked.
pub type SelfTest = fn(&Device) -> Result<String, String>;

/// A registered kernel.
#[derive(Debug)]
pub struct KernelInfo {
    pub name: &'static str,
    /// The Rust signature's parameters, e.g. `a: Gl<bf16, 2>, c: GlMut<f32, 2>`.
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
