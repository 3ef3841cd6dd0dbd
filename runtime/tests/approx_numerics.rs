//! The interpreter's GPU numerics (`Numerics::Approx`, `tilekit_ir::numeric`) against the PTX
//! emulator (`tilekit-emu`, which executes `ex2.approx.ftz.f32` and the other approximate
//! instructions from the PTX ISA): a one-op kernel per approximate function, compiled for sm_80
//! as for a GPU, on random f32 inputs of every binade plus subnormals, ±0, ±inf, NaN and large
//! magnitudes. Both must flush and treat special values alike, and each must lie within the
//! function's documented bound of the exact value; the exact mode must not (it keeps
//! subnormals), so the test fails if the interpreter stops modelling the hardware.
#![cfg(feature = "jit")]

use tilekit::ir::interp::{self, Arg, HostTensor, Launch, Numerics};
use tilekit::ir::{parse_module, Module, ScalarType};
use tilekit::{Device, LaunchArg};

/// Elements per block (one register vector) and blocks per launch.
const CHUNK: usize = 16;
const BLOCKS: usize = 512;

fn one_op_kernel(f: &str) -> Module {
    parse_module(&format!(
        "kernel @approx(%x: gl<f32, 1>, %y: gl<f32, 1, mut>) warps(1) {{
           %0 = block_idx.x : i32
           %1 = load (%x, %0) : rv<f32, 16, rows>
           %2 = map.{f} (%1) : rv<f32, 16, rows>
           store (%y, %2, %0)
           return ()
         }}"
    ))
    .expect("the one-op kernel parses")
}

/// Inputs: the PTX ISA tables' special values, subnormals, values near the flush and overflow
/// edges, then random bit patterns (every binade) and random values in [-160, 160). Seeded by
/// the clock; the seed is printed on failure.
fn inputs(seed: u64) -> Vec<f64> {
    let sub = f32::from_bits(0x0000_0400);
    let mut v: Vec<f32> = vec![
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        sub,
        -sub,
        f32::from_bits(1),
        f32::from_bits(0x007f_ffff),
        f32::MIN_POSITIVE,
        f32::MAX,
        -f32::MAX,
        1.0,
        0.5,
        2.0,
        -1.0,
        127.5,
        128.5,
        -126.5,
        -149.0,
        -150.5,
        1e30,
        -1e30,
        88.0,
        -87.0,
    ];
    let mut s = seed | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    while v.len() < CHUNK * BLOCKS {
        let r = next();
        v.push(f32::from_bits(r as u32));
        v.push(((r >> 32) as u32 as f32 / u32::MAX as f32) * 320.0 - 160.0);
    }
    v.truncate(CHUNK * BLOCKS);
    v.into_iter().map(f64::from).collect()
}

fn tensor(values: &[f64]) -> HostTensor {
    HostTensor::new(ScalarType::F32, &[values.len()], values).expect("an f32 vector")
}

fn on_interpreter(m: &Module, x: &[f64], numerics: Numerics) -> Vec<f64> {
    let mut args = vec![Arg::from(tensor(x)), Arg::from(tensor(&vec![0.0; x.len()]))];
    let launch = Launch::grid([BLOCKS as u32, 1, 1]).numerics(numerics);
    interp::run_with(m, "approx", launch, &mut args).expect("the interpreter runs");
    args[1].tensor().expect("a tensor").to_vec()
}

fn on_emulator(m: &Module, x: &[f64]) -> Vec<f64> {
    let device = Device::emulator("sm_80").expect("the emulator opens");
    let mut args = vec![
        LaunchArg::from(tensor(x)),
        LaunchArg::from(tensor(&vec![0.0; x.len()])),
    ];
    device
        .launch_module(m, "approx", [BLOCKS as u32, 1, 1], &mut args)
        .expect("the emulator runs the compiled kernel");
    let LaunchArg::Host(y) = &args[1] else {
        panic!("the output is a host tensor")
    };
    y.to_vec()
}

fn is_subnormal(x: f64) -> bool {
    x != 0.0 && x.abs() < f64::from(f32::MIN_POSITIVE)
}

fn flush(x: f64) -> f64 {
    if is_subnormal(x) {
        0.0f64.copysign(x)
    } else {
        x
    }
}

/// The same special value (NaN, an infinity or a zero, with its sign), or both ordinary.
fn same_class(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() || a == 0.0 || b == 0.0 {
        return a == b && a.is_sign_negative() == b.is_sign_negative();
    }
    true
}

/// One approximate function: its IR name, whether it flushes subnormals, the exact value of
/// the hardware function at an f32 input, and its documented bound (`tilekit_ir::numeric`)
/// around that exact value.
struct Case {
    name: &'static str,
    flushes: bool,
    exact: fn(f64) -> f64,
    bound: fn(f64, f64) -> f64,
}

fn ulp32(y: f64) -> f64 {
    let e = (y.abs().log2().floor() as i32).max(-126);
    2f64.powi(e - 23)
}

const CASES: &[Case] = &[
    Case {
        name: "exp2",
        flushes: true,
        exact: f64::exp2,
        // 2 ulp from the correctly rounded result, which is ½ ulp from the exact value.
        bound: |_, e| 2.5 * ulp32(e),
    },
    Case {
        name: "log2",
        flushes: true,
        exact: f64::log2,
        bound: |x, e| {
            if x > 0.5 && x < 2.0 {
                2f64.powi(-22)
            } else {
                2f64.powi(-22) * e.abs() + 0.5 * ulp32(e)
            }
        },
    },
    Case {
        name: "rsqrt",
        flushes: true,
        exact: |x| 1.0 / x.sqrt(),
        bound: |_, e| 2f64.powf(-22.9) * e.abs() + 0.5 * ulp32(e),
    },
    Case {
        name: "tanh",
        flushes: false,
        exact: f64::tanh,
        bound: |_, e| 2f64.powi(-11) * e.abs(),
    },
];

#[test]
fn approximate_functions_agree_with_the_emulator_within_their_documented_bounds() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let x = inputs(seed);
    for case in CASES {
        let m = one_op_kernel(case.name);
        let gpu = on_emulator(&m, &x);
        let approx = on_interpreter(&m, &x, Numerics::Approx);
        let exact_mode = on_interpreter(&m, &x, Numerics::Exact);
        for (i, &xi) in x.iter().enumerate() {
            let (g, a) = (gpu[i], approx[i]);
            let ctx = || {
                format!(
                    "{}({xi:e}): emulator {g:e}, interpreter (approx) {a:e} (seed {seed})",
                    case.name
                )
            };
            assert!(same_class(g, a), "{}", ctx());
            let xin = if case.flushes { flush(xi) } else { xi };
            let e = (case.exact)(xin);
            if !e.is_finite() || e == 0.0 || g.is_nan() || g.is_infinite() || g == 0.0 {
                continue;
            }
            if case.flushes && e.abs() < 2.0 * f64::from(f32::MIN_POSITIVE) {
                // Results at the flush edge: either side may be a zero or the smallest normals.
                continue;
            }
            if e.abs() > f64::from(f32::MAX) {
                continue;
            }
            let b = (case.bound)(xin, e);
            assert!(
                (g - e).abs() <= b,
                "{}: emulator off the exact {e:e} by more than {b:e}",
                ctx()
            );
            assert!(
                (a - e).abs() <= b,
                "{}: interpreter off the exact {e:e} by more than {b:e}",
                ctx()
            );
        }
        // Subnormal inputs and results reach the kernel: in exact mode the interpreter keeps
        // them where the GPU flushes (every case but tanh, which keeps subnormals on the GPU
        // too), so only the approx mode agrees with it.
        if case.flushes {
            let differs = x
                .iter()
                .enumerate()
                .filter(|&(i, _)| {
                    !same_class(gpu[i], exact_mode[i])
                        || (gpu[i] != exact_mode[i] && is_subnormal(exact_mode[i]))
                })
                .count();
            assert!(
                differs > 0,
                "{}: the exact mode never differs from the GPU's flushing",
                case.name
            );
        }
    }
}

/// The functions built from the hardware ones (`exp`, `log`, `sigmoid`, `silu`, `gelu_tanh`):
/// the same special values and flushes, and values within the tolerances below of each other,
/// which follow from the bounds of the hardware functions they are built from.
#[test]
fn composite_functions_agree_with_the_emulator() {
    let x: Vec<f64> = inputs(0x5eed)
        .into_iter()
        .map(|v| {
            if v.is_finite() && v.abs() > 1e4 {
                v.signum() * 1e4
            } else {
                v
            }
        })
        .collect();
    // (function, relative tolerance): log adds lg2's absolute 2^-22 (times ln 2) near 1, and
    // gelu_tanh tanh's relative 2^-11, which `1 + tanh` turns into an absolute 0.5·|x|·2^-11
    // (both sides may be off by that much).
    for (name, rel) in [
        ("exp", 2f64.powi(-15)),
        ("log", 2f64.powi(-20)),
        ("sigmoid", 2f64.powi(-18)),
        ("silu", 2f64.powi(-18)),
        ("gelu_tanh", 2f64.powi(-10)),
    ] {
        let m = one_op_kernel(name);
        let gpu = on_emulator(&m, &x);
        let approx = on_interpreter(&m, &x, Numerics::Approx);
        for (i, &xi) in x.iter().enumerate() {
            let (g, a) = (gpu[i], approx[i]);
            // NaN and the infinities agree exactly; a zero may stand for a tiny value (`1 +
            // tanh` rounding to 0, a flushed exponential), so zeros are compared by value.
            let special = |v: f64| v.is_nan() || v.is_infinite();
            assert!(
                (!special(g) && !special(a)) || same_class(g, a),
                "{name}({xi:e}): emulator {g:e}, interpreter (approx) {a:e}"
            );
            if g.is_finite() && a.is_finite() {
                let abs = match name {
                    "log" => 2f64.powi(-21),
                    "gelu_tanh" => 0.5 * xi.abs() * 2f64.powi(-10) + 2f64.powi(-20),
                    _ => 0.0,
                };
                let tol = rel * g.abs().max(a.abs()) + abs + f64::from(f32::MIN_POSITIVE);
                assert!((g - a).abs() <= tol, "{name}({xi:e}): emulator {g:e}, interpreter (approx) {a:e}, off by more than {tol:e}");
            }
        }
    }
}
