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
    ///
    /// Before anything runs, every device refuses a grid outside the GPUs' limits
    /// ([`Error::EmptyGrid`], [`Error::GridTooLarge`]) and a writable tensor argument that
    /// shares elements with another tensor argument ([`Error::Overlap`], naming both).
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
    // A module made by hand may not hold what its parameters name (the verifier says so when
    // the device runs it): read its tables without indexing.
    let param_name = |p: &crate::ir::Value| {
        func.value_names
            .get(p.index())
            .cloned()
            .flatten()
            .unwrap_or_default()
    };
    if args.len() != func.params.len() {
        let names: Vec<String> = func.params.iter().map(param_name).collect();
        return Err(bad(
            "(all)".into(),
            format!("{} arguments ({})", func.params.len(), names.join(", ")),
            format!("{}", args.len()),
        ));
    }
    for (p, a) in func.params.iter().zip(args.iter()) {
        let pname = param_name(p);
        let Some(ty) = func.value_types.get(p.index()) else {
            return Err(bad(
                pname,
                "a parameter with a type".into(),
                "a module whose kernel has a parameter without one (verify it)".into(),
            ));
        };
        match (ty, a) {
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
/// interpreter verifies before running it). `allow_spills` is the kernel's
/// `#[kernel(allow_spills)]`: code generation then accepts register spills instead of refusing
/// the kernel.
#[doc(hidden)]
#[track_caller]
pub fn __build_kernel(name: &str, warps: u32, allow_spills: bool, body: impl FnOnce()) -> Module {
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
    let mut kernel = b.finish();
    kernel.allow_spills = allow_spills;
    m.push(kernel);
    helper_funcs.into_iter().for_each(|f| m.push(f));
    m
}

/// Declares a kernel parameter while building.
#[doc(hidden)]
pub fn __param<P: Handle>(name: &str) -> P {
    P::from_value(rec!(|b| b.param(name, P::ir_type())))
}

#[cfg(test)]
mod tests {
    use crate::device::{CpuOptions, Device};
    use crate::dsl::*;
    use crate::error::Error;
    use crate::ir::interp::{CancelToken, InterpError};
    use crate::ir::ScalarType::F32;
    use crate::tensor::Tensor;

    /// `y = 2·x` over 16-element chunks, one block per chunk.
    #[tilekit_macros::kernel(warps = 1)]
    fn double(x: Gl<f32, 1>, y: GlMut<f32, 1>) {
        let i = block_idx_x();
        let v: Rv<f32, 16> = load(x.chunk(i));
        store(y.chunk(i), v * 2.0);
    }

    /// `y = x + 1` over a 16×16 tile per block (rows along y, columns along x).
    #[tilekit_macros::kernel(warps = 1)]
    fn add_one(x: Gl<f32, 2>, y: GlMut<f32, 2>) {
        let (r, c) = (block_idx_y(), block_idx_x());
        let t: Rt<f32, 16, 16> = load(x.tile(r, c));
        store(y.tile(r, c), t + 1.0);
    }

    /// Distinct, non-zero values that are exact in f32 (a fresh pattern per call).
    fn values(n: usize, salt: u64) -> Vec<f64> {
        let mut s = salt.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s % 2001) as f64 - 1000.0) / 8.0
            })
            .collect()
    }

    fn salt() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    }

    /// Issue 11, "4. Launch": an empty view at an offset past its (empty) storage is a valid
    /// argument, as input and as output, through the typed launcher and `launch_module`.
    #[test]
    fn empty_views_at_any_offset_are_valid_arguments() -> Result<(), Error> {
        let cpu = Device::Cpu;
        let x = Tensor::zeros(F32, &[0, 64], &cpu)?.narrow(1, 8, 16)?;
        let mut y = Tensor::zeros(F32, &[0, 64], &cpu)?.narrow(1, 40, 16)?;
        assert_eq!(x.shape(), &[0, 16]);
        add_one::launch(&cpu, (1, 1), &x, &mut y)?;
        assert!(y.to_vec::<f32>()?.is_empty());
        assert!(x.contiguous(&cpu)?.is_empty());

        // An empty view as both arguments of `launch_module`: two views of nothing share
        // nothing.
        let e = Tensor::zeros(F32, &[3, 0], &cpu)?.narrow(0, 2, 1)?;
        let mut args = [(&e).into(), (&e).into()];
        cpu.launch_module(add_one::module(), "add_one", (1, 1), &mut args)?;
        // Zero-length windows of a non-empty tensor, at its end.
        let mut z = Tensor::from_f64(F32, &[16], &values(16, salt()), &cpu)?;
        let before = z.to_f64_vec()?;
        let mut end = z.narrow(0, 16, 0)?;
        double::launch(&cpu, 1, &z.narrow(0, 16, 0)?, &mut end)?;
        double::launch(&cpu, 1, &end, &mut z)?;
        // Reading an empty input, the kernel's masked loads give zeros: y = 2·0.
        assert_eq!(z.to_f64_vec()?, vec![0.0; 16]);
        assert_ne!(before, vec![0.0; 16]);
        Ok(())
    }

    /// Issue 11, item 7: an output that shares elements with another argument is refused on
    /// every device, naming both parameters; disjoint windows of one tensor are fine and give
    /// what the kernel means.
    #[test]
    fn outputs_that_overlap_another_argument_are_refused() -> Result<(), Error> {
        let cpu = Device::Cpu;
        let data = values(64, salt());
        let x = Tensor::from_f64(F32, &[64], &data, &cpu)?;
        // The same memory as input and output.
        let mut same = x.narrow(0, 0, 64)?;
        let e = double::launch(&cpu, 4, &x, &mut same).unwrap_err();
        assert!(matches!(e, Error::Overlap { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("@double") && text.contains("`y`") && text.contains("`x`"),
            "{text}"
        );
        // Overlapping by one chunk.
        let input = x.narrow(0, 0, 32)?;
        let mut output = x.narrow(0, 16, 32)?;
        let e = double::launch(&cpu, 2, &input, &mut output).unwrap_err();
        assert!(matches!(e, Error::Overlap { .. }), "{e}");
        assert_eq!(x.to_f64_vec()?, data, "a refused launch writes nothing");

        // Disjoint halves of one tensor: the second half becomes twice the first.
        let (first, mut second) = (x.narrow(0, 0, 32)?, x.narrow(0, 32, 32)?);
        double::launch(&cpu, 2, &first, &mut second)?;
        let mut want = data.clone();
        for i in 0..32 {
            want[32 + i] = 2.0 * data[i];
        }
        assert_eq!(x.to_f64_vec()?, want);

        // Column windows of one matrix interleave in memory but share no element.
        let m = Tensor::from_f64(F32, &[16, 48], &values(16 * 48, salt() + 1), &cpu)?;
        let before = m.to_f64_vec()?;
        let (left, mut right) = (m.narrow(1, 0, 16)?, m.narrow(1, 32, 16)?);
        add_one::launch(&cpu, (1, 1), &left, &mut right)?;
        let after = m.to_f64_vec()?;
        for r in 0..16 {
            for c in 0..48 {
                let want = if c >= 32 {
                    before[r * 48 + c - 32] + 1.0
                } else {
                    before[r * 48 + c]
                };
                assert_eq!(after[r * 48 + c], want, "({r}, {c})");
            }
        }
        // A transposed view of the same matrix as the output overlaps the input.
        let square = Tensor::from_f64(F32, &[16, 16], &values(256, salt() + 2), &cpu)?;
        let mut t = square.transpose(0, 1)?;
        let e = add_one::launch(&cpu, (1, 1), &square, &mut t).unwrap_err();
        assert!(matches!(e, Error::Overlap { .. }), "{e}");
        Ok(())
    }

    /// Grids outside the GPUs' limits are refused on the cpu device too, before anything runs.
    #[test]
    fn grids_beyond_the_hardware_limits_are_refused_on_the_cpu() -> Result<(), Error> {
        let cpu = Device::Cpu;
        let x = Tensor::zeros(F32, &[16], &cpu)?;
        let mut y = Tensor::zeros(F32, &[16], &cpu)?;
        for grid in [[1u32 << 31, 1, 1], [1, 65536, 1], [1, 1, 65536]] {
            let e = double::launch(&cpu, grid, &x, &mut y).unwrap_err();
            assert!(matches!(e, Error::GridTooLarge { .. }), "{e}");
            assert!(e.to_string().contains("@double"), "{e}");
        }
        let e = double::launch(&cpu, [1, 0, 1], &x, &mut y).unwrap_err();
        assert!(matches!(e, Error::EmptyGrid { .. }), "{e}");
        Ok(())
    }

    /// Issue 11, item 2: a grid of 2^31 − 1 blocks on the cpu device ends at once with the
    /// interpreter's op budget, naming the kernel, instead of running for days.
    #[test]
    fn the_largest_grid_ends_with_the_op_budget_on_the_cpu() -> Result<(), Error> {
        let cpu = Device::Cpu;
        let x = Tensor::zeros(F32, &[16], &cpu)?;
        let mut y = Tensor::zeros(F32, &[16], &cpu)?;
        let start = std::time::Instant::now();
        let e = double::launch(&cpu, [i32::MAX as u32, 1, 1], &x, &mut y).unwrap_err();
        assert!(start.elapsed().as_secs() < 5, "took {:?}", start.elapsed());
        let text = e.to_string();
        assert!(
            matches!(e, Error::Interp(InterpError::OpBudget { .. })),
            "{text}"
        );
        assert!(
            text.contains("@double") && text.contains("op budget"),
            "{text}"
        );
        Ok(())
    }

    /// `Device::cpu_with`: the caller's op budget, memory budget and cancel token bound every
    /// launch on the device; the defaults run the same launch to its answer.
    #[test]
    fn cpu_options_bound_and_cancel_runs() -> Result<(), Error> {
        let data = values(64, salt());
        let want: Vec<f64> = data.iter().map(|v| 2.0 * v).collect();
        let run = |device: &Device| -> Result<Vec<f64>, Error> {
            let x = Tensor::from_f64(F32, &[64], &data, device)?;
            let mut y = Tensor::zeros(F32, &[64], device)?;
            double::launch(device, 4, &x, &mut y)?;
            y.to_f64_vec()
        };
        assert_eq!(run(&Device::Cpu)?, want);
        assert_eq!(run(&Device::cpu_with(CpuOptions::default()))?, want);

        let tight = Device::cpu_with(CpuOptions::default().op_budget(3));
        assert_eq!(tight, Device::Cpu, "the same device");
        let e = run(&tight).unwrap_err();
        assert!(
            matches!(e, Error::Interp(InterpError::OpBudget { budget: 3, .. })),
            "{e}"
        );
        assert!(e.to_string().contains("@double"), "{e}");

        let small = Device::cpu_with(CpuOptions::default().memory_budget(64));
        let e = run(&small).unwrap_err();
        assert!(
            matches!(e, Error::Interp(InterpError::MemoryBudget { .. })),
            "{e}"
        );

        let cancel = CancelToken::new();
        let cancellable = Device::cpu_with(CpuOptions::default().cancel(cancel.clone()));
        assert_eq!(run(&cancellable)?, want, "not cancelled yet");
        cancel.cancel();
        let e = run(&cancellable).unwrap_err();
        assert!(
            matches!(e, Error::Interp(InterpError::Cancelled { .. })),
            "{e}"
        );
        assert!(e.to_string().contains("@double"), "{e}");
        Ok(())
    }
}
