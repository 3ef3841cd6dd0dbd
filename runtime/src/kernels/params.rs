//! What the library kernels' shape rules read from their launch arguments.
//!
//! A shape rule (`check = …` on `#[kernel]`) is public (`check_args`, the registry's
//! [`Variant::check`](crate::Variant)) and may be handed any argument list, so it never indexes
//! one blindly: it asks [`tensor_shapes`] for the tensors it reads, which answers with their
//! shapes or an error naming the arguments it expected.

use crate::LaunchArg;

/// The shapes of the first `N` arguments, which must be tensors of the given ranks, named as in
/// `params` (`[("x", 2), ("y", 2)]`); an error naming every expected argument otherwise (too
/// few arguments, a scalar, or a tensor of another rank).
pub fn tensor_shapes<'a, const N: usize>(
    args: &'a [LaunchArg],
    params: [(&str, usize); N],
) -> Result<[&'a [usize]; N], String> {
    let expected = || {
        params
            .iter()
            .map(|(name, rank)| format!("{name}: a tensor of rank {rank}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if args.len() < N {
        return Err(format!(
            "expected at least {N} arguments ({}), got {}",
            expected(),
            args.len()
        ));
    }
    let mut shapes: [&[usize]; N] = [&[]; N];
    for (i, ((name, rank), arg)) in params.iter().zip(args).enumerate() {
        if arg.tensor_dtype().is_none() || arg.shape().len() != *rank {
            return Err(format!(
                "argument {i} (`{name}`) must be a tensor of rank {rank}, got {}; expected ({})",
                arg.describe(),
                expected()
            ));
        }
        shapes[i] = arg.shape();
    }
    Ok(shapes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::interp::HostTensor;
    use crate::ir::ScalarType::F32;

    fn tensor(shape: &[usize]) -> LaunchArg {
        LaunchArg::Host(HostTensor::zeros(F32, shape))
    }

    #[test]
    fn tensor_shapes_returns_the_shapes_of_matching_tensors() {
        let args = [tensor(&[2, 3]), tensor(&[4]), LaunchArg::scalar::<f32>(1.0)];
        let [a, b] = tensor_shapes(&args, [("a", 2), ("b", 1)]).unwrap();
        assert_eq!((a, b), (&[2, 3][..], &[4][..]));
    }

    #[test]
    fn tensor_shapes_names_the_expected_arguments_of_a_short_list() {
        let err = tensor_shapes(&[tensor(&[2, 3])], [("a", 2), ("b", 1)]).unwrap_err();
        assert!(
            err.contains("expected at least 2 arguments (a: a tensor of rank 2, b: a tensor of rank 1), got 1"),
            "{err}"
        );
        let err = tensor_shapes(&[], [("a", 2)]).unwrap_err();
        assert!(err.contains("got 0"), "{err}");
    }

    #[test]
    fn tensor_shapes_rejects_a_scalar_or_another_rank() {
        let args = [tensor(&[2, 3]), LaunchArg::scalar::<f32>(1.0)];
        let err = tensor_shapes(&args, [("a", 2), ("b", 1)]).unwrap_err();
        assert!(
            err.contains("argument 1 (`b`) must be a tensor of rank 1, got a f32 scalar"),
            "{err}"
        );
        let err = tensor_shapes(&args[..1], [("a", 3)]).unwrap_err();
        assert!(
            err.contains("argument 0 (`a`) must be a tensor of rank 3"),
            "{err}"
        );
    }

    /// Every registered kernel's shape rule, called as a user may call `check_args`: with no
    /// arguments, one tensor, or one scalar. Each answers with an error naming what it expected,
    /// never a panic.
    #[test]
    fn every_registered_shape_rule_rejects_short_argument_lists() {
        let short: [Vec<LaunchArg>; 3] = [
            vec![],
            vec![tensor(&[4, 4])],
            vec![LaunchArg::scalar::<f32>(1.0)],
        ];
        let mut checked = 0;
        for k in crate::registry::kernels() {
            for v in k.variants {
                for args in &short {
                    let r = std::panic::catch_unwind(|| (v.check)(args));
                    let Ok(r) = r else {
                        panic!(
                            "{}{}: the shape rule panicked on {} arguments",
                            k.name,
                            v.args,
                            args.len()
                        );
                    };
                    // Kernels without a shape rule accept anything here (the launch checks
                    // the signature); the library's all declare one.
                    if k.file.contains("kernels/") {
                        let err = r.expect_err(&format!(
                            "{}{} accepted {} arguments",
                            k.name,
                            v.args,
                            args.len()
                        ));
                        assert!(err.contains("expected"), "{}{}: {err}", k.name, v.args);
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked >= 3 * 6, "only {checked} library shape rules ran");
    }
}
