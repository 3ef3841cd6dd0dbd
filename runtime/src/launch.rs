//! Devices, launch grids, kernel arguments and the typed launchers' checks.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::dsl::dtype::{Dtype, Literal};
use crate::dsl::handles::{Gl, GlMut, Handle, Scalar};
use crate::dsl::trace::{self, rec};
use crate::ir::interp::{self, Arg, HostTensor, InterpError};
use crate::ir::{Const, FuncBuilder, Module, ScalarType};
use crate::tensor::Storage;

pub use crate::device::Device;

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
    #[error("unknown device `{name}` (devices: cpu, cuda, cuda:N, hip, hip:N)")]
    UnknownDevice { name: String },
    #[error("no {what} found (could not load {library}); the cpu device works without it")]
    NoDriver { what: String, library: String },
    #[error("no device {device}: the driver sees {count}")]
    NoSuchDevice { device: String, count: usize },
    #[error("{device}: {message}")]
    UnsupportedDevice { device: String, message: String },
    #[error("{device}: {call} failed: {message}")]
    Driver {
        device: String,
        call: String,
        message: String,
    },
    #[error("@{kernel}: the driver of {device} rejected its code: {log}")]
    Jit {
        kernel: String,
        device: String,
        log: String,
    },
    #[error("@{kernel}: no code for {device}: {message}")]
    NoCode {
        kernel: String,
        device: String,
        message: String,
    },
    #[error("@{kernel} on {device} ({config}) failed: {message}")]
    Launch {
        kernel: String,
        device: String,
        config: String,
        message: String,
    },
    #[error(
        "@{kernel}: argument `{param}` lives on {tensor}, but the launch is on {launch}; \
         copy it with `Tensor::to`"
    )]
    WrongDevice {
        kernel: String,
        param: String,
        tensor: String,
        launch: String,
    },
    #[error("no registered kernel `{name}{variant}`; registered: {available}")]
    UnknownKernel {
        name: String,
        variant: String,
        available: String,
    },
    #[error("the module has no kernel `{name}`; its kernels: {available}")]
    NotInModule { name: String, available: String },
    #[error("tensor: {message}")]
    Tensor { message: String },
    #[error(transparent)]
    Interp(#[from] InterpError),
}

/// A tensor memory a kernel argument points at, as a launch sees it.
#[derive(Clone, Debug)]
pub struct DeviceView {
    pub dtype: ScalarType,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
    /// Elements from the start of the memory to the view's first element.
    pub offset: usize,
    pub(crate) storage: Storage,
}

impl DeviceView {
    /// The device the memory is on.
    pub fn device_name(&self) -> String {
        self.storage.device_name()
    }
}

/// One kernel argument on its way to a launch.
#[derive(Clone, Debug)]
pub enum LaunchArg {
    /// A host tensor: the interpreter reads it directly; a GPU launch copies it to the device
    /// and back (writable parameters).
    Host(HostTensor),
    /// A tensor in GPU memory.
    Device(DeviceView),
    /// A scalar of the given dtype.
    Scalar(ScalarType, f64),
}

impl LaunchArg {
    /// A scalar argument: `LaunchArg::scalar::<f32>(0.5)`.
    pub fn scalar<T: Dtype>(v: impl Literal<T>) -> LaunchArg {
        let ScalarArg(x) = ScalarArg::of::<T>(v);
        LaunchArg::Scalar(T::SCALAR, x)
    }

    /// The tensor's shape (empty for a scalar).
    pub fn shape(&self) -> &[usize] {
        match self {
            LaunchArg::Host(t) => t.shape(),
            LaunchArg::Device(v) => &v.shape,
            LaunchArg::Scalar(..) => &[],
        }
    }

    /// The tensor's element strides (empty for a scalar).
    pub fn strides(&self) -> &[usize] {
        match self {
            LaunchArg::Host(t) => t.strides(),
            LaunchArg::Device(v) => &v.strides,
            LaunchArg::Scalar(..) => &[],
        }
    }

    /// The tensor's dtype (`None` for a scalar).
    pub fn tensor_dtype(&self) -> Option<ScalarType> {
        match self {
            LaunchArg::Host(t) => Some(t.dtype()),
            LaunchArg::Device(v) => Some(v.dtype),
            LaunchArg::Scalar(..) => None,
        }
    }

    /// What the argument is, for error messages.
    pub fn describe(&self) -> String {
        match self {
            LaunchArg::Host(t) => format!("a {} tensor of shape {:?}", t.dtype(), t.shape()),
            LaunchArg::Device(v) => format!(
                "a {} tensor of shape {:?} on {}",
                v.dtype,
                v.shape,
                v.device_name()
            ),
            LaunchArg::Scalar(t, _) => format!("a {t} scalar"),
        }
    }
}

impl From<HostTensor> for LaunchArg {
    fn from(t: HostTensor) -> LaunchArg {
        LaunchArg::Host(t)
    }
}

impl From<&crate::Tensor> for LaunchArg {
    fn from(t: &crate::Tensor) -> LaunchArg {
        t.launch_arg()
    }
}

/// What a kernel's tensor parameters accept: a [`HostTensor`] (any device; a GPU launch copies
/// it over and back) or a [`Tensor`](crate::Tensor) (on the launch's device).
pub trait TensorArg {
    fn dtype(&self) -> ScalarType;
    fn shape(&self) -> &[usize];
    /// The argument for a launch.
    fn launch_arg(&self) -> LaunchArg;
    /// Receives a writable argument after the launch (host memory only; device memory was
    /// written in place).
    fn take_back(&mut self, arg: LaunchArg);
}

impl TensorArg for HostTensor {
    fn dtype(&self) -> ScalarType {
        HostTensor::dtype(self)
    }
    fn shape(&self) -> &[usize] {
        HostTensor::shape(self)
    }
    fn launch_arg(&self) -> LaunchArg {
        LaunchArg::Host(self.clone())
    }
    fn take_back(&mut self, arg: LaunchArg) {
        if let LaunchArg::Host(t) = arg {
            *self = t;
        }
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

/// The interpreter run: host tensors in, their final contents back.
pub(crate) fn run_interp(
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
                .map(|p| f.value_names[p.index()].clone().unwrap_or_default())
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
    let result = interp::run(module, kernel, grid.0, &mut interp_args);
    // Hand the tensors back whether or not the run succeeded.
    for (a, back) in args.iter_mut().zip(interp_args) {
        if let (LaunchArg::Host(t), Arg::Tensor(b)) = (a, back) {
            *t = b;
        }
    }
    result?;
    Ok(())
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

/// [`Device::launch_by_name`]: the registry's kernel, its signature checked from the IR.
pub(crate) fn launch_by_name(
    device: &Device,
    name: &str,
    variant: &str,
    grid: Grid,
    args: &mut [LaunchArg],
) -> Result<(), Error> {
    let normalize = |s: &str| s.split_whitespace().collect::<String>();
    let kernels = crate::registry::kernels();
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
    check_signature(module, name, args)?;
    __check(name, args, v.check)?;
    __run(device, module, name, grid, args)
}

/// [`Device::launch_module`]: any verified module's kernel, its arguments checked against the
/// kernel's parameters.
pub(crate) fn launch_module(
    device: &Device,
    module: &Module,
    kernel: &str,
    grid: Grid,
    args: &mut [LaunchArg],
) -> Result<(), Error> {
    check_signature(module, kernel, args)?;
    __run(device, module, kernel, grid, args)
}

/// Checks `args` against the parameters of kernel `name` in `module`: count, kind, dtype, rank
/// and dimensions that kernels can index (i32).
fn check_signature(module: &Module, name: &str, args: &[LaunchArg]) -> Result<(), Error> {
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

/// The module of one kernel instantiation, built once per process and kept; a build that
/// panics (a kernel's `assert!` on its comptime parameters) is an error naming the kernel.
#[doc(hidden)]
/// The modules the typed launchers built, one per kernel instantiation, kept for the process.
static BUILT: OnceLock<Mutex<HashMap<TypeId, &'static Module>>> = OnceLock::new();

/// Whether `module` is one of the modules [`__cached`] built and keeps for the process: never
/// freed, so its address identifies it for good.
pub(crate) fn built_once(module: &Module) -> bool {
    BUILT.get().is_some_and(|b| {
        b.lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|m| std::ptr::eq(*m, module))
    })
}

pub fn __cached(
    kernel: &str,
    id: TypeId,
    build: impl FnOnce() -> Module,
) -> Result<&'static Module, Error> {
    let cache = BUILT.get_or_init(Default::default);
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
