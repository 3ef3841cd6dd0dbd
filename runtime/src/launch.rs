//! Launching: the typed launchers' argument conversion and checks, the signature check of
//! [`Device::launch_module`], and building kernel modules from the DSL.
//!
//! This layer sits above devices and tensors and below the registry, the bundles and the kernel
//! library. The grid, argument and error types are defined lower (in [`device`](crate::device)
//! and [`error`](crate::error)) and re-exported here under their old paths.

use crate::dsl::dtype::{Dtype, Literal};
use crate::dsl::handles::{Gl, GlMut, Handle, Scalar};
use crate::dsl::trace::{self, rec};
use crate::ir::{Const, FuncBuilder, Module};

pub use crate::device::{Device, DeviceView, Grid, LaunchArg};
pub use crate::error::Error;
#[doc(hidden)]
pub use crate::module_cache::__cached;
pub use crate::tensor::TensorArg;

impl LaunchArg {
    /// A scalar argument: `LaunchArg::scalar::<f32>(0.5)`.
    pub fn scalar<T: Dtype>(v: impl Literal<T>) -> LaunchArg {
        let ScalarArg(x) = ScalarArg::of::<T>(v);
        LaunchArg::Scalar(T::SCALAR, x)
    }
}

/// A kernel parameter type and what its launcher takes for it.
pub trait Param: Handle {
    /// What the typed launcher takes: `&dyn TensorArg` for [`Gl`] (`&HostTensor` or `&Tensor`),
    /// `&mut dyn TensorArg` for [`GlMut`], a Rust number for [`Scalar`].
    type Host<'a>;
    /// The launch argument, or what was wrong (the expected and found descriptions).
    fn to_arg(host: &Self::Host<'_>) -> Result<LaunchArg, (String, String)>;
    /// Copies the kernel's writes back (for writable views in host memory).
    fn write_back(host: &mut Self::Host<'_>, arg: LaunchArg);
}

fn tensor_arg<T: Dtype>(t: &dyn TensorArg, rank: usize) -> Result<LaunchArg, (String, String)> {
    if t.dtype() != T::SCALAR || t.shape().len() != rank {
        return Err((
            format!("a {} tensor of rank {rank}", T::SCALAR),
            format!("a {} tensor of shape {:?}", t.dtype(), t.shape()),
        ));
    }
    // Kernels index views with i32 (and shape checks multiply dimensions): larger dimensions
    // are refused here, before a kernel's shape check sees them.
    if t.shape().iter().any(|&n| n > i32::MAX as usize) {
        return Err((
            format!(
                "a {} tensor of rank {rank} with dimensions of at most {} elements",
                T::SCALAR,
                i32::MAX
            ),
            format!("a {} tensor of shape {:?}", t.dtype(), t.shape()),
        ));
    }
    Ok(t.launch_arg())
}

impl<T: Dtype, const RANK: usize> Param for Gl<T, RANK> {
    type Host<'a> = &'a dyn TensorArg;
    fn to_arg(host: &&dyn TensorArg) -> Result<LaunchArg, (String, String)> {
        tensor_arg::<T>(*host, RANK)
    }
    fn write_back(_: &mut &dyn TensorArg, _: LaunchArg) {}
}

impl<T: Dtype, const RANK: usize> Param for GlMut<T, RANK> {
    type Host<'a> = &'a mut dyn TensorArg;
    fn to_arg(host: &&mut dyn TensorArg) -> Result<LaunchArg, (String, String)> {
        tensor_arg::<T>(&**host, RANK)
    }
    fn write_back(host: &mut &mut dyn TensorArg, arg: LaunchArg) {
        host.take_back(arg);
    }
}

/// A Rust number passed for a `Scalar<T>` parameter (rounded to T).
#[derive(Clone, Copy, Debug)]
pub struct ScalarArg(f64);

impl<T: Dtype> Param for Scalar<T> {
    type Host<'a> = ScalarArg;
    fn to_arg(host: &ScalarArg) -> Result<LaunchArg, (String, String)> {
        Ok(LaunchArg::Scalar(T::SCALAR, host.0))
    }
    fn write_back(_: &mut ScalarArg, _: LaunchArg) {}
}

impl ScalarArg {
    /// A launcher argument for a `Scalar<T>` parameter from a Rust value: `ScalarArg::of::<f32>(0.5)`.
    pub fn of<T: Dtype>(v: impl Literal<T>) -> ScalarArg {
        ScalarArg(match v.konst() {
            Const::Float(x) => x,
            Const::Int(i) => i as f64,
            Const::Bool(b) => f64::from(u8::from(b)),
        })
    }
}

macro_rules! scalar_arg_from {
    ($($t:ty),*) => {$(
        impl From<$t> for ScalarArg {
            fn from(v: $t) -> ScalarArg { ScalarArg(f64::from(v)) }
        }
    )*};
}
scalar_arg_from!(f32, f64, i32, u32, i8);

/// Runs a built kernel on `device` with checked arguments. Used by generated launchers.
#[doc(hidden)]
pub fn __run(
    device: &Device,
    module: &Module,
    kernel: &str,
    grid: Grid,
    args: &mut [LaunchArg],
) -> Result<(), Error> {
    if grid.0.contains(&0) {
        return Err(Error::EmptyGrid {
            kernel: kernel.to_string(),
            grid: grid.0,
        });
    }
    device.run(module, kernel, grid, args)
}

/// Runs a kernel's shape check on its arguments. Used by generated launchers.
#[doc(hidden)]
pub fn __check(
    kernel: &str,
    args: &[LaunchArg],
    check: fn(&[LaunchArg]) -> Result<(), String>,
) -> Result<(), Error> {
    check(args).map_err(|message| Error::Shape {
        kernel: kernel.to_string(),
        message,
    })
}

/// The shape of tensor argument `i` (empty for a scalar or a missing argument), for shape
/// checks.
pub fn shape_of(args: &[LaunchArg], i: usize) -> &[usize] {
    args.get(i).map(LaunchArg::shape).unwrap_or(&[])
}

impl Device {
    /// Launches kernel `kernel` of any module — one built with the IR builder or parsed from
    /// the text form, say — with its arguments checked against the kernel's parameters (count,
    /// kind, dtype, rank). Host tensors passed for writable parameters receive the results.
    pub fn launch_module(
        &self,
        module: &Module,
        kernel: &str,
        grid: impl Into<Grid>,
        args: &mut [LaunchArg],
    ) -> Result<(), Error> {
        check_signature(module, kernel, args)?;
        __run(self, module, kernel, grid.into(), args)
    }
}

/// Checks `args` against the parameters of kernel `name` in `module`: count, kind, dtype, rank
/// and dimensions that kernels can index (i32).
pub(crate) fn check_signature(
    module: &Module,
    name: &str,
    args: &[LaunchArg],
) -> Result<(), Error> {
    let func = module.kernel(name).ok_or_else(|| Error::NotInModule {
        name: name.into(),
        available: module.kernel_names(),
    })?;
    let bad = |param: String, expected: String, found: String| Error::Argument {
        kernel: name.into(),
        param,
        expected,
        found,
    };
    if args.len() != func.params.len() {
        let names: Vec<String> = func
            .params
            .iter()
            .map(|p| func.value_names[p.index()].clone().unwrap_or_default())
            .collect();
        return Err(bad(
            "(all)".into(),
            format!("{} arguments ({})", func.params.len(), names.join(", ")),
            format!("{}", args.len()),
        ));
    }
    for (p, a) in func.params.iter().zip(args.iter()) {
        let pname = func.value_names[p.index()].clone().unwrap_or_default();
        match (&func.value_types[p.index()], a) {
            (crate::ir::Type::Global { dtype, rank, .. }, a)
                if a.tensor_dtype() == Some(*dtype) && a.shape().len() == *rank as usize =>
            {
                if a.shape().iter().any(|&n| n > i32::MAX as usize) {
                    return Err(bad(
                        pname,
                        format!("dimensions of at most {}", i32::MAX),
                        a.describe(),
                    ));
                }
            }
            (crate::ir::Type::Global { dtype, rank, .. }, a) => {
                return Err(bad(
                    pname,
                    format!("a {dtype} tensor of rank {rank}"),
                    a.describe(),
                ))
            }
            (t, LaunchArg::Scalar(s, _)) if t.as_scalar() == Some(*s) => {}
            (t, a) => return Err(bad(pname, format!("a {t} scalar"), a.describe())),
        }
    }
    Ok(())
}

/// Converts one launcher argument. Used by generated launchers.
#[doc(hidden)]
pub fn __arg<P: Param>(kernel: &str, param: &str, host: &P::Host<'_>) -> Result<LaunchArg, Error> {
    P::to_arg(host).map_err(|(expected, found)| Error::Argument {
        kernel: kernel.to_string(),
        param: param.to_string(),
        expected,
        found,
    })
}

/// Builds a kernel: installs a builder, runs the traced body, returns the module (which the
/// interpreter verifies before running it).
#[doc(hidden)]
#[track_caller]
pub fn __build_kernel(name: &str, warps: u32, body: impl FnOnce()) -> Module {
    /// Restores the enclosing build's state even when the body panics (a failed `assert!`).
    struct Restore(Option<(Option<FuncBuilder>, crate::dsl::call::Helpers)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some((builder, helpers)) = self.0.take() {
                crate::dsl::call::end_build(helpers);
                trace::swap_in(builder);
            }
        }
    }
    let mut restore = Restore(Some((trace::swap_out(), crate::dsl::call::begin_build())));
    trace::put(FuncBuilder::kernel(name, warps));
    body();
    let b = trace::take();
    let (builder, helpers) = restore.0.take().unwrap_or_default();
    let helper_funcs = crate::dsl::call::end_build(helpers);
    trace::swap_in(builder);
    let mut m = Module::new();
    m.push(b.finish());
    helper_funcs.into_iter().for_each(|f| m.push(f));
    m
}

/// Declares a kernel parameter while building.
#[doc(hidden)]
pub fn __param<P: Handle>(name: &str) -> P {
    P::from_value(rec!(|b| b.param(name, P::ir_type())))
}
