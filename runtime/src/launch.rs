//! Devices, launch grids, kernel arguments and the typed launchers' checks.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::dsl::dtype::{Dtype, Literal};
use crate::dsl::handles::{Gl, GlMut, Handle, Scalar};
use crate::dsl::trace::{self, rec};
use crate::ir::interp::{self, Arg, HostTensor, InterpError};
use crate::ir::{Const, FuncBuilder, Module};

/// Where kernels run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Device {
    /// The Tile IR interpreter on the host: slow, exact, and the definition of what a kernel means.
    #[default]
    Cpu,
}

impl Device {
    /// The device named `cpu` (the only one until the GPU runtime lands).
    pub fn from_name(name: &str) -> Result<Device, Error> {
        match name {
            "cpu" => Ok(Device::Cpu),
            other => Err(Error::UnknownDevice {
                name: other.to_string(),
            }),
        }
    }
}

/// A launch grid: blocks along x, y and z. `4`, `(4, 2)`, `(4, 2, 1)` and `[4, 2, 1]` convert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid(pub [u32; 3]);

impl From<u32> for Grid {
    fn from(x: u32) -> Grid {
        Grid([x, 1, 1])
    }
}
impl From<(u32, u32)> for Grid {
    fn from((x, y): (u32, u32)) -> Grid {
        Grid([x, y, 1])
    }
}
impl From<(u32, u32, u32)> for Grid {
    fn from((x, y, z): (u32, u32, u32)) -> Grid {
        Grid([x, y, z])
    }
}
impl From<[u32; 3]> for Grid {
    fn from(g: [u32; 3]) -> Grid {
        Grid(g)
    }
}

/// Why a launch failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("@{kernel}: argument `{param}` must be {expected}, got {found}")]
    Argument {
        kernel: String,
        param: String,
        expected: String,
        found: String,
    },
    #[error("@{kernel}: {message}")]
    Shape { kernel: String, message: String },
    #[error("@{kernel}: building the kernel failed: {message}")]
    Build { kernel: String, message: String },
    #[error("@{kernel}: the grid {grid:?} is empty: every dimension needs at least one block")]
    EmptyGrid { kernel: String, grid: [u32; 3] },
    #[error("unknown device `{name}` (devices: cpu)")]
    UnknownDevice { name: String },
    #[error(transparent)]
    Interp(#[from] InterpError),
}

/// A kernel parameter type and what its launcher takes for it.
pub trait Param: Handle {
    /// What the typed launcher takes: `&HostTensor` for [`Gl`], `&mut HostTensor` for [`GlMut`],
    /// a Rust number for [`Scalar`].
    type Host<'a>;
    /// The interpreter argument, or what was wrong (the expected and found descriptions).
    fn to_arg(host: &Self::Host<'_>) -> Result<Arg, (String, String)>;
    /// Copies the kernel's writes back (for writable views).
    fn write_back(host: &mut Self::Host<'_>, arg: Arg);
}

fn tensor_arg<T: Dtype>(t: &HostTensor, rank: usize) -> Result<Arg, (String, String)> {
    if t.dtype() != T::SCALAR || t.rank() != rank {
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
    Ok(Arg::Tensor(t.clone()))
}

impl<T: Dtype, const RANK: usize> Param for Gl<T, RANK> {
    type Host<'a> = &'a HostTensor;
    fn to_arg(host: &&HostTensor) -> Result<Arg, (String, String)> {
        tensor_arg::<T>(host, RANK)
    }
    fn write_back(_: &mut &HostTensor, _: Arg) {}
}

impl<T: Dtype, const RANK: usize> Param for GlMut<T, RANK> {
    type Host<'a> = &'a mut HostTensor;
    fn to_arg(host: &&mut HostTensor) -> Result<Arg, (String, String)> {
        tensor_arg::<T>(host, RANK)
    }
    fn write_back(host: &mut &mut HostTensor, arg: Arg) {
        if let Arg::Tensor(t) = arg {
            **host = t;
        }
    }
}

/// A Rust number passed for a `Scalar<T>` parameter (rounded to T).
#[derive(Clone, Copy, Debug)]
pub struct ScalarArg(f64);

impl<T: Dtype> Param for Scalar<T> {
    type Host<'a> = ScalarArg;
    fn to_arg(host: &ScalarArg) -> Result<Arg, (String, String)> {
        Ok(Arg::Scalar(T::SCALAR, host.0))
    }
    fn write_back(_: &mut ScalarArg, _: Arg) {}
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
    args: &mut [Arg],
) -> Result<(), Error> {
    if grid.0.contains(&0) {
        return Err(Error::EmptyGrid {
            kernel: kernel.to_string(),
            grid: grid.0,
        });
    }
    match device {
        Device::Cpu => {
            interp::run(module, kernel, grid.0, args)?;
            Ok(())
        }
    }
}

/// Runs a kernel's shape check on its arguments. Used by generated launchers.
#[doc(hidden)]
pub fn __check(
    kernel: &str,
    args: &[Arg],
    check: fn(&[Arg]) -> Result<(), String>,
) -> Result<(), Error> {
    check(args).map_err(|message| Error::Shape {
        kernel: kernel.to_string(),
        message,
    })
}

/// The shape of tensor argument `i` (empty for a scalar or a missing argument), for shape
/// checks.
pub fn shape_of(args: &[Arg], i: usize) -> &[usize] {
    args.get(i)
        .and_then(Arg::tensor)
        .map(HostTensor::shape)
        .unwrap_or(&[])
}

/// Converts one launcher argument. Used by generated launchers.
#[doc(hidden)]
pub fn __arg<P: Param>(kernel: &str, param: &str, host: &P::Host<'_>) -> Result<Arg, Error> {
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

/// The module of one kernel instantiation, built once per process and kept; a build that
/// panics (a kernel's `assert!` on its comptime parameters) is an error naming the kernel.
#[doc(hidden)]
pub fn __cached(
    kernel: &str,
    id: TypeId,
    build: impl FnOnce() -> Module,
) -> Result<&'static Module, Error> {
    static CACHE: OnceLock<Mutex<HashMap<TypeId, &'static Module>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let lookup = || {
        cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .copied()
    };
    if let Some(m) = lookup() {
        return Ok(m);
    }
    // Built without the lock held: a kernel's build may build another kernel.
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(build)).map_err(|p| {
        let message = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the build panicked".into());
        Error::Build {
            kernel: kernel.to_string(),
            message,
        }
    })?;
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    Ok(map.entry(id).or_insert_with(|| Box::leak(Box::new(built))))
}
