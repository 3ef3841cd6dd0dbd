//! How the `#[kernel]` macro traces a body: runtime loops, `if` and `while` become IR control
//! flow carrying the variables they assign; comptime ones run while building; ops record the
//! author's line; `#[func]` helpers inline; kernels register themselves for the CLI.

use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{F32, I32};
use tilekit::ir::{print_module, verify, Loc, OpKind};
use tilekit::Device;

/// `y[i] = x[i]` clamped to `[0, limit]` through a runtime `if` expression and a runtime `if`
/// statement assigning an outer variable, over 16-element chunks.
#[tilekit::kernel]
fn clamp(x: Gl<f32, 1>, limit: Scalar<f32>, y: GlMut<f32, 1>) {
    let i = block_idx_x();
    let v: Scalar<f32> = load(x.at(i));
    let mut out = if v.lt(0.0) { lit::<f32>(0.0) } else { v };
    if out.gt(limit) {
        out = limit;
    }
    store(y.at(i), out);
}

#[test]
fn runtime_if_yields_its_value_and_the_variables_it_assigns() {
    let x = HostTensor::new(F32, &[5], &[-1.0, 0.5, 2.0, 3.5, 1.0]).unwrap();
    let mut y = HostTensor::zeros(F32, &[5]);
    clamp::launch(&Device::Cpu, 5, &x, 2.0f32.into(), &mut y).unwrap();
    assert_eq!(y.to_vec(), vec![0.0, 0.5, 2.0, 2.0, 1.0]);
    let text = print_module(clamp::module());
    assert_eq!(text.matches("if (").count(), 2, "{text}");
}

/// Counts the halvings of `n` until it reaches 1 with a runtime `while`.
#[tilekit::kernel]
fn halvings(n: Scalar<i32>, out: GlMut<i32, 1>) {
    let mut x = n;
    let mut steps = lit::<i32>(0);
    while x.gt(1) {
        x /= 2;
        steps += 1;
    }
    store(out.at(0), steps);
}

#[test]
fn runtime_while_carries_what_its_body_assigns() {
    let mut out = HostTensor::zeros(I32, &[1]);
    halvings::launch(&Device::Cpu, 1, 1000.into(), &mut out).unwrap();
    assert_eq!(out.to_vec(), vec![9.0]);
    assert!(print_module(halvings::module()).contains("while ("));
}

/// Sums `N` comptime-unrolled tiles and `k` runtime steps of an array of two accumulators.
#[tilekit::kernel]
fn unrolled<const N: usize>(x: Gl<f32, 2>, y: GlMut<f32, 2>) {
    let mut accs: [Rt<f32, 16, 16>; 2] = [zeros(), zeros()];
    for j in 0..N {
        let t: Rt<f32, 16, 16> = load(x.tile(0, j));
        accs[j % 2] += t;
    }
    for _k in range(0, 3) {
        accs[0] += accs[1];
    }
    store(y.tile(0, 0), accs[0]);
}

#[test]
fn comptime_loops_unroll_and_runtime_loops_carry_arrays() {
    let module = unrolled::<4>::module();
    verify(module).unwrap();
    let mut loads = 0;
    let mut fors = 0;
    module.funcs[0].walk(|op| match op.kind {
        OpKind::Load => loads += 1,
        OpKind::For => fors += 1,
        _ => {}
    });
    assert_eq!((loads, fors), (4, 1));
    let x = HostTensor::new(
        F32,
        &[16, 64],
        &(0..1024).map(|i| f64::from(i % 3)).collect::<Vec<_>>(),
    )
    .unwrap();
    let mut y = HostTensor::zeros(F32, &[16, 16]);
    unrolled::<4>::launch(&Device::Cpu, 1, &x, &mut y).unwrap();
    // accs[0] = t0 + t2, accs[1] = t1 + t3, then accs[0] += 3·accs[1].
    let want = |r: usize, c: usize| {
        let t = |j: usize| ((r * 64 + j * 16 + c) % 3) as f64;
        t(0) + t(2) + 3.0 * (t(1) + t(3))
    };
    assert_eq!(y.get(&[5, 7]), Some(want(5, 7)));
}

/// A generic helper: inlined at each call, specialized by its const generics.
#[tilekit::func]
fn scaled_sum<const R: usize, const C: usize>(t: Rt<f32, R, C>, s: f32) -> Rv<f32, R> {
    row_sum(t * s)
}

#[tilekit::kernel]
fn uses_helper(x: Gl<f32, 2>, y: GlMut<f32, 2>) {
    let t: Rt<f32, 16, 32> = load(x.tile(0, 0));
    let v = scaled_sum(t, 2.0);
    store(y.chunk(0, 0), v);
}

#[test]
fn func_helpers_inline_into_the_kernel() {
    let x = HostTensor::new(F32, &[16, 32], &vec![1.0; 512]).unwrap();
    let mut y = HostTensor::zeros(F32, &[1, 16]);
    uses_helper::launch(&Device::Cpu, 1, &x, &mut y).unwrap();
    assert_eq!(y.to_vec(), vec![64.0; 16]);
    assert!(!print_module(uses_helper::module()).contains("call"));
}

#[test]
fn ops_record_the_authors_line() {
    let m = clamp::module();
    let mut locs = Vec::new();
    m.funcs[0].walk(|op| {
        if matches!(op.kind, OpKind::Load | OpKind::Store | OpKind::If) {
            locs.push(op.loc);
        }
    });
    for loc in &locs {
        let Loc::Rust { file, line, .. } = loc else {
            panic!("{loc:?} is not a Rust location");
        };
        assert!(file.ends_with("dsl_tracing.rs"), "{file}");
        assert!((14..=24).contains(line), "line {line}");
    }
    // The first of them is the load, at the line that calls `load`.
    let src = include_str!("dsl_tracing.rs");
    let load_line = src
        .lines()
        .position(|l| l.contains("= load(x.at(i))"))
        .unwrap()
        + 1;
    assert!(
        matches!(locs[0], Loc::Rust { line, .. } if line as usize == load_line),
        "{:?}",
        locs[0]
    );
}

#[test]
fn the_cli_lists_and_selftests_every_registered_kernel() {
    let (list, code) = tilekit::cli::run(&["list".to_string()]).unwrap();
    assert_eq!(code, 0);
    for name in [
        "gemm<f32, 64, 64, 32, 32, 32>",
        "attention_fwd<bf16, 64, 16, 64, 4, true>",
        "softmax_rows",
        "adamw_step",
        "moe_expert_proj",
        "ws_gemm",
        "clamp",
    ] {
        assert!(list.contains(name), "{name} missing from:\n{list}");
    }
    let (out, code) =
        tilekit::cli::run(&["selftest".into(), "--device".into(), "cpu".into()]).unwrap();
    assert_eq!(code, 0, "{out}");
    // Every kernel with a self-test passed (one `ok` line each), and the library's are among
    // them.
    let passed = out.lines().filter(|l| l.starts_with("ok ")).count();
    assert!(passed >= 6, "{out}");
    assert!(
        out.trim_end()
            .ends_with(&format!("{passed} passed, 0 failed")),
        "{out}"
    );
    assert!(tilekit::cli::run(&["selftest".into(), "--device".into(), "tpu".into()]).is_err());
}

/// An IR helper: built once per kernel (per instantiation), called with `call`.
#[tilekit::func(call)]
fn softplus<const R: usize, const C: usize>(t: Rt<f32, R, C>) -> Rt<f32, R, C> {
    (t.exp() + 1.0).log()
}

#[tilekit::kernel]
fn calls_helper(x: Gl<f32, 2>, y: GlMut<f32, 2>) {
    let t: Rt<f32, 16, 16> = load(x.tile(0, 0));
    let u = softplus(softplus(t));
    let wide: Rt<f32, 16, 32> = load(x.tile(0, 0));
    store(y.tile(0, 0), u);
    store(y.tile(0, 1), softplus(wide).relayout::<Row>().cast::<f32>());
}

#[test]
fn call_helpers_become_ir_functions_built_once_per_instantiation() {
    let m = calls_helper::module();
    verify(m).unwrap();
    let names: Vec<&str> = m.funcs.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["calls_helper", "softplus", "softplus_1"]);
    let text = print_module(m);
    assert_eq!(text.matches("call[@softplus]").count(), 2, "{text}");
    let x = HostTensor::new(F32, &[16, 32], &vec![0.0; 512]).unwrap();
    let mut y = HostTensor::zeros(F32, &[16, 64]);
    calls_helper::launch(&Device::Cpu, 1, &x, &mut y).unwrap();
    let once = (2f64).ln();
    let twice = (1.0 + (once as f32 as f64).exp()).ln();
    assert!((y.get(&[3, 3]).unwrap() - twice).abs() < 1e-6);
    assert!((y.get(&[3, 40]).unwrap() - once).abs() < 1e-6);
}

/// A kernel whose comptime parameters must satisfy a rule.
#[tilekit::kernel]
fn picky<const N: usize>(y: GlMut<f32, 2>) {
    assert!(N % 32 == 0, "picky: N = {N} must be a multiple of 32");
    let t: Rt<f32, 16, N> = zeros();
    store(y.tile(0, 0), t);
}

#[test]
fn a_failed_build_is_a_launch_error_and_leaves_the_tracer_clean() {
    let mut y = HostTensor::zeros(F32, &[16, 32]);
    let err = picky::<16>::launch(&Device::Cpu, 1, &mut y).unwrap_err();
    assert!(matches!(err, tilekit::Error::Build { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("picky: N = 16 must be a multiple of 32"),
        "{err}"
    );
    // The next build on this thread starts from a clean tracer.
    picky::<32>::launch(&Device::Cpu, 1, &mut y).unwrap();
    verify(picky::<32>::module()).unwrap();
    assert_eq!(picky::<32>::module().funcs.len(), 1);
}
