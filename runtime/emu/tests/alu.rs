//! Floating-point, conversion and shuffle instructions against plain-Rust statements of the PTX
//! ISA's rules, on random inputs mixed with the special values (NaN, ±inf, ±0, subnormals).

use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tilekit_emu::{Emulator, GlobalMemory, LaunchConfig};

/// Runs `body` once per thread over 4 input words (`%r2..%r5`) per thread and returns the two
/// output words (`%r6`, `%r7`) per thread.
fn run(body: &str, inputs: &[[u32; 4]]) -> Vec<[u32; 2]> {
    let ptx = format!(
        ".version 8.0\n.target sm_80\n.address_size 64\n\
         .visible .entry k(.param .u64 pin, .param .u64 pout)\n{{\n\
         .reg .pred %p<4>;\n.reg .b16 %h<4>;\n.reg .b32 %r<10>;\n.reg .b64 %rd<8>;\n\
         ld.param.u64 %rd1, [pin];\nld.param.u64 %rd2, [pout];\nmov.u32 %r1, %tid.x;\n\
         mul.wide.u32 %rd3, %r1, 16;\nadd.s64 %rd4, %rd1, %rd3;\nmul.wide.u32 %rd6, %r1, 8;\nadd.s64 %rd5, %rd2, %rd6;\n\
         ld.global.v4.u32 {{%r2, %r3, %r4, %r5}}, [%rd4];\nmov.u32 %r6, 0;\nmov.u32 %r7, 0;\n\
         {body}\nst.global.v2.u32 [%rd5], {{%r6, %r7}};\nret;\n}}\n"
    );
    let emu = Emulator::new(&ptx).unwrap_or_else(|e| panic!("{body}: {e}"));
    let mut g = GlobalMemory::new();
    let bytes: Vec<u8> = inputs
        .iter()
        .flatten()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    let pin = g.alloc("in", bytes);
    let pout = g.alloc("out", vec![0; inputs.len() * 8]);
    let params = emu
        .param_buffer(
            "k",
            &[pin.to_le_bytes().to_vec(), pout.to_le_bytes().to_vec()],
        )
        .unwrap();
    let n = inputs.len() as u32;
    assert!(n % 32 == 0);
    emu.launch(
        "k",
        &LaunchConfig::new([1, 1, 1], [n, 1, 1]),
        &params,
        &mut g,
    )
    .unwrap_or_else(|e| panic!("{body}: {e}"));
    g.get(pout)
        .unwrap()
        .data
        .chunks_exact(8)
        .map(|c| {
            [
                u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            ]
        })
        .collect()
}

fn rng() -> StdRng {
    let s = rand::random::<u64>();
    eprintln!("seed {s}");
    StdRng::seed_from_u64(s)
}

const SPECIAL: [f32; 10] = [
    0.0,
    -0.0,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    1.0e-40,
    -3.0e-39,
    f32::MAX,
    1.5,
    -2.5,
];

fn random_f32(rng: &mut StdRng) -> f32 {
    match rng.gen_range(0..4) {
        0 => SPECIAL[rng.gen_range(0..SPECIAL.len())],
        1 => f32::from_bits(rng.gen()),
        _ => rng.gen_range(-100.0f32..100.0),
    }
}

fn inputs_f32(rng: &mut StdRng, n: usize) -> Vec<[u32; 4]> {
    (0..n)
        .map(|_| [0; 4].map(|_| random_f32(rng).to_bits()))
        .collect()
}

fn same_f32(got: u32, want: f32) -> bool {
    let g = f32::from_bits(got);
    (g.is_nan() && want.is_nan()) || got == want.to_bits()
}

#[test]
fn f32_arithmetic_rounds_to_nearest_like_ieee() {
    let mut rng = rng();
    let ins = inputs_f32(&mut rng, 256);
    type Ternary = fn(f32, f32, f32) -> f32;
    let cases: [(&str, Ternary); 6] = [
        ("add.rn.f32 %r6, %r2, %r3;", |a, b, _| a + b),
        ("sub.f32 %r6, %r2, %r3;", |a, b, _| a - b),
        ("mul.rn.f32 %r6, %r2, %r3;", |a, b, _| a * b),
        ("div.rn.f32 %r6, %r2, %r3;", |a, b, _| a / b),
        ("sqrt.rn.f32 %r6, %r2;", |a, _, _| a.sqrt()),
        ("fma.rn.f32 %r6, %r2, %r3, %r4;", |a, b, c| a.mul_add(b, c)),
    ];
    for (body, f) in cases {
        let out = run(body, &ins);
        for (i, o) in ins.iter().zip(&out) {
            let [a, b, c, _] = i.map(f32::from_bits);
            assert!(
                same_f32(o[0], f(a, b, c)),
                "{body} a={a:e} b={b:e} c={c:e}: got {:e}, expected {:e}",
                f32::from_bits(o[0]),
                f(a, b, c)
            );
        }
    }
}

#[test]
fn f32_ftz_flushes_subnormal_inputs_and_results() {
    let ins: Vec<[u32; 4]> = (0..32)
        .map(|i| {
            [
                (1.0e-40f32 * (i as f32 + 1.0)).to_bits(),
                1.0f32.to_bits(),
                0,
                0,
            ]
        })
        .collect();
    let out = run("mul.ftz.f32 %r6, %r2, %r3;\nmul.f32 %r7, %r2, %r3;", &ins);
    for (i, o) in ins.iter().zip(&out) {
        assert_eq!(f32::from_bits(o[0]), 0.0, "ftz keeps no subnormal");
        assert_eq!(o[1], i[0], "without ftz the subnormal survives");
    }
}

#[test]
fn directed_rounding_of_products_and_sums() {
    let mut rng = rng();
    let ins: Vec<[u32; 4]> = (0..256)
        .map(|_| {
            [
                rng.gen_range(-1e6f32..1e6).to_bits(),
                rng.gen_range(-1e6f32..1e6).to_bits(),
                0,
                0,
            ]
        })
        .collect();
    let out = run("mul.rz.f32 %r6, %r2, %r3;\nadd.rm.f32 %r7, %r2, %r3;", &ins);
    for (i, o) in ins.iter().zip(&out) {
        let (a, b) = (
            f64::from(f32::from_bits(i[0])),
            f64::from(f32::from_bits(i[1])),
        );
        // The f64 product and sum of two f32 are exact; the f32 result must bracket them.
        let (p, s) = (a * b, a + b);
        let (rz, rm) = (
            f64::from(f32::from_bits(o[0])),
            f64::from(f32::from_bits(o[1])),
        );
        assert!(
            rz.abs() <= p.abs() && (p - rz).abs() < f64::from(f32::EPSILON) * p.abs().max(1e-30),
            "rz {a}*{b}: {rz} vs {p}"
        );
        assert!(
            rm <= s && s - rm < f64::from(f32::EPSILON) * s.abs().max(1e-30) * 2.0,
            "rm {a}+{b}: {rm} vs {s}"
        );
    }
}

#[test]
fn min_max_return_the_number_when_one_input_is_nan() {
    let mut rng = rng();
    let ins = inputs_f32(&mut rng, 256);
    let out = run("min.f32 %r6, %r2, %r3;\nmax.f32 %r7, %r2, %r3;", &ins);
    for (i, o) in ins.iter().zip(&out) {
        let (a, b) = (f32::from_bits(i[0]), f32::from_bits(i[1]));
        // IEEE minNum/maxNum, with -0 below +0 (PTX ISA "min", "max").
        let want_min = if a.is_nan() {
            b
        } else if b.is_nan() {
            a
        } else if a == b {
            if a.is_sign_negative() {
                a
            } else {
                b
            }
        } else {
            a.min(b)
        };
        let want_max = if a.is_nan() {
            b
        } else if b.is_nan() {
            a
        } else if a == b {
            if a.is_sign_positive() {
                a
            } else {
                b
            }
        } else {
            a.max(b)
        };
        assert!(
            same_f32(o[0], want_min),
            "min({a}, {b}) = {}",
            f32::from_bits(o[0])
        );
        assert!(
            same_f32(o[1], want_max),
            "max({a}, {b}) = {}",
            f32::from_bits(o[1])
        );
    }
}

#[test]
fn ordered_and_unordered_comparisons() {
    let mut rng = rng();
    let ins = inputs_f32(&mut rng, 256);
    type Compare = fn(f32, f32) -> bool;
    let cases: [(&str, Compare); 6] = [
        ("lt", |a, b| a < b),
        ("ltu", |a, b| a.is_nan() || b.is_nan() || a < b),
        ("ne", |a, b| !a.is_nan() && !b.is_nan() && a != b),
        ("neu", |a, b| a.is_nan() || b.is_nan() || a != b),
        ("nan", |a, b| a.is_nan() || b.is_nan()),
        ("geu", |a, b| a.is_nan() || b.is_nan() || a >= b),
    ];
    for (cmp, f) in cases {
        let out = run(
            &format!("setp.{cmp}.f32 %p1, %r2, %r3;\nselp.u32 %r6, 1, 0, %p1;"),
            &ins,
        );
        for (i, o) in ins.iter().zip(&out) {
            let (a, b) = (f32::from_bits(i[0]), f32::from_bits(i[1]));
            assert_eq!(o[0] == 1, f(a, b), "setp.{cmp} {a} {b}");
        }
    }
}

#[test]
fn float_to_int_conversions_saturate_and_map_nan_to_zero() {
    let mut rng = rng();
    let mut ins = inputs_f32(&mut rng, 224);
    ins.extend((0..32).map(|k| [(k as f32 - 16.0 + 0.5).to_bits(), 0, 0, 0]));
    let out = run("cvt.rni.s32.f32 %r6, %r2;\ncvt.rzi.u32.f32 %r7, %r2;", &ins);
    for (i, o) in ins.iter().zip(&out) {
        let a = f32::from_bits(i[0]);
        let rni = if a.is_nan() {
            0
        } else {
            a.round_ties_even().clamp(i32::MIN as f32, i32::MAX as f32) as i32
        };
        let rzi = if a.is_nan() {
            0
        } else {
            a.trunc().clamp(0.0, u32::MAX as f32) as u32
        };
        assert_eq!(o[0] as i32, rni, "cvt.rni.s32 {a}");
        assert_eq!(o[1], rzi, "cvt.rzi.u32 {a}");
    }
}

#[test]
fn half_and_bfloat_conversions_and_packing_order() {
    let mut rng = rng();
    let ins = inputs_f32(&mut rng, 256);
    let out = run(
        "cvt.rn.f16.f32 %h1, %r2;\ncvt.u32.u16 %r6, %h1;\ncvt.rn.bf16x2.f32 %r7, %r2, %r3;",
        &ins,
    );
    for (i, o) in ins.iter().zip(&out) {
        let (a, b) = (f32::from_bits(i[0]), f32::from_bits(i[1]));
        let h = f16::from_f32(a);
        assert!(
            o[0] as u16 == h.to_bits() || (h.is_nan() && f16::from_bits(o[0] as u16).is_nan()),
            "f16 of {a}"
        );
        // `a` goes to the upper half (PTX ISA "cvt", packed forms).
        let (hi, lo) = (
            bf16::from_bits((o[1] >> 16) as u16),
            bf16::from_bits(o[1] as u16),
        );
        let (wa, wb) = (bf16::from_f32(a), bf16::from_f32(b));
        assert!(
            hi == wa || (hi.is_nan() && wa.is_nan()),
            "bf16 hi of {a}: {hi} vs {wa}"
        );
        assert!(
            lo == wb || (lo.is_nan() && wb.is_nan()),
            "bf16 lo of {b}: {lo} vs {wb}"
        );
    }
}

/// E4M3 (OCP FN) by its definition: every finite code's value, the nearest (ties to an even
/// code) of a finite input after saturating to ±448.
fn e4m3_reference(x: f32) -> u8 {
    let value = |c: u8| -> f64 {
        let e = i32::from((c >> 3) & 15);
        let m = f64::from(c & 7);
        let mag = if e == 0 {
            m / 8.0 * 2f64.powi(-6)
        } else {
            (1.0 + m / 8.0) * 2f64.powi(e - 7)
        };
        if c & 0x80 != 0 {
            -mag
        } else {
            mag
        }
    };
    if x.is_nan() {
        return 0x7f;
    }
    let x = f64::from(x).clamp(-448.0, 448.0);
    let sign = if x < 0.0 || (x == 0.0 && x.is_sign_negative()) {
        0x80
    } else {
        0
    };
    let mut best = 0u8;
    for c in 0u8..0x7f {
        let (d, db) = ((value(c) - x.abs()).abs(), (value(best) - x.abs()).abs());
        if d < db || (d == db && c % 2 == 0 && best % 2 == 1) {
            best = c;
        }
    }
    best | sign
}

#[test]
fn fp8_e4m3_packing_saturates_and_rounds_to_nearest_even() {
    let mut rng = rng();
    let ins: Vec<[u32; 4]> = (0..256)
        .map(|_| {
            let v = |rng: &mut StdRng| {
                if rng.gen_bool(0.2) {
                    random_f32(rng)
                } else {
                    rng.gen_range(-500.0f32..500.0) * 10f32.powi(rng.gen_range(-3..1))
                }
            };
            [v(&mut rng).to_bits(), v(&mut rng).to_bits(), 0, 0]
        })
        .collect();
    let out = run(
        "cvt.rn.satfinite.e4m3x2.f32 %h1, %r2, %r3;\ncvt.u32.u16 %r6, %h1;",
        &ins,
    );
    for (i, o) in ins.iter().zip(&out) {
        let (a, b) = (f32::from_bits(i[0]), f32::from_bits(i[1]));
        assert_eq!(
            (o[0] >> 8) as u8,
            e4m3_reference(a),
            "e4m3 of {a} (upper byte)"
        );
        assert_eq!(o[0] as u8, e4m3_reference(b), "e4m3 of {b} (lower byte)");
    }
}

#[test]
fn approximate_functions_are_within_the_documented_bounds() {
    let mut rng = rng();
    let ins: Vec<[u32; 4]> = (0..256)
        .map(|_| {
            [
                rng.gen_range(-20.0f32..20.0).to_bits(),
                rng.gen_range(0.01f32..100.0).to_bits(),
                0,
                0,
            ]
        })
        .collect();
    let out = run(
        "ex2.approx.ftz.f32 %r6, %r2;\nrsqrt.approx.f32 %r7, %r3;",
        &ins,
    );
    for (i, o) in ins.iter().zip(&out) {
        let (a, b) = (
            f64::from(f32::from_bits(i[0])),
            f64::from(f32::from_bits(i[1])),
        );
        // ex2.approx: max relative error 2^-22 (PTX ISA "ex2"); rsqrt.approx: 2^-22.9.
        let e = f64::from(f32::from_bits(o[0]));
        assert!(
            (e - a.exp2()).abs() <= a.exp2() * 2f64.powi(-22),
            "ex2({a}) = {e}"
        );
        let r = f64::from(f32::from_bits(o[1]));
        assert!(
            (r - 1.0 / b.sqrt()).abs() <= 2f64.powi(-22) / b.sqrt(),
            "rsqrt({b}) = {r}"
        );
    }
}

#[test]
fn packed_half_arithmetic_works_per_half() {
    let mut rng = rng();
    let ins: Vec<[u32; 4]> = (0..128)
        .map(|_| {
            [0; 4].map(|_| {
                u32::from(f16::from_f32(rng.gen_range(-8.0..8.0)).to_bits())
                    | u32::from(f16::from_f32(rng.gen_range(-8.0..8.0)).to_bits()) << 16
            })
        })
        .collect();
    let out = run(
        "fma.rn.f16x2 %r6, %r2, %r3, %r4;\nadd.f16x2 %r7, %r2, %r3;",
        &ins,
    );
    for (i, o) in ins.iter().zip(&out) {
        for half in 0..2 {
            let get = |w: u32| f16::from_bits((w >> (16 * half)) as u16).to_f64();
            let (a, b, c) = (get(i[0]), get(i[1]), get(i[2]));
            assert_eq!(
                (o[0] >> (16 * half)) as u16,
                f16::from_f64(a * b + c).to_bits(),
                "fma half {half}"
            );
            assert_eq!(
                (o[1] >> (16 * half)) as u16,
                f16::from_f64(a + b).to_bits(),
                "add half {half}"
            );
        }
    }
}

#[test]
fn shuffles_within_segments_follow_the_clamp_and_mask_rules() {
    let mut rng = rng();
    let ins: Vec<[u32; 4]> = (0..64)
        .map(|_| [rng.gen(), rng.gen_range(0..32), 0, 0])
        .collect();
    for width in [32u32, 16, 8, 4] {
        let c_up = (32 - width) << 8;
        let c_other = c_up | 31;
        let body = format!(
            "shfl.sync.up.b32 %r6|%p1, %r2, 3, {c_up}, -1;\nshfl.sync.idx.b32 %r7, %r2, %r3, {c_other}, -1;\n\
             selp.u32 %r8, 1, 0, %p1;\nshl.b32 %r8, %r8, 31;\nor.b32 %r6, %r6, 0;"
        );
        let out = run(&body, &ins);
        for warp in 0..2usize {
            for lane in 0..32u32 {
                let t = warp * 32 + lane as usize;
                let base = lane & !(width - 1);
                // CUDA's __shfl_up_sync / __shfl_sync with a width: stay in your segment.
                let up_src = if lane >= base + 3 { lane - 3 } else { lane };
                let idx_src = base + (ins[t][1] % width);
                assert_eq!(
                    out[t][0],
                    ins[warp * 32 + up_src as usize][0],
                    "up width {width} lane {lane}"
                );
                assert_eq!(
                    out[t][1],
                    ins[warp * 32 + idx_src as usize][0],
                    "idx width {width} lane {lane}"
                );
            }
        }
    }
}

#[test]
fn relu_clamps_negative_results_and_unknown_float_modifiers_are_refused() {
    let mut rng = rng();
    let ins = inputs_f32(&mut rng, 64);
    let out = run("max.relu.f32 %r6, %r2, %r3;", &ins);
    for (i, o) in ins.iter().zip(&out) {
        let (a, b) = (f32::from_bits(i[0]), f32::from_bits(i[1]));
        let m = if a.is_nan() {
            b
        } else if b.is_nan() {
            a
        } else {
            a.max(b)
        };
        let want = if m.is_nan() { m } else { m.max(0.0) };
        assert!(
            same_f32(o[0], want) || (want == 0.0 && f32::from_bits(o[0]) == 0.0),
            "max.relu({a}, {b}) = {}",
            f32::from_bits(o[0])
        );
    }
    let refused = std::panic::catch_unwind(|| run("add.rn.wobble.f32 %r6, %r2, %r3;", &ins));
    assert!(refused.is_err(), "an unknown modifier must fail the launch");
}

#[test]
fn mul24_uses_the_low_24_bits() {
    let mut rng = rng();
    let ins: Vec<[u32; 4]> = (0..64)
        .map(|_| [rng.gen(), rng.gen(), rng.gen(), 0])
        .collect();
    let out = run(
        "mul24.lo.s32 %r6, %r2, %r3;\nmad24.hi.u32 %r7, %r2, %r3, %r4;",
        &ins,
    );
    let s24 = |v: u32| i64::from(((v << 8) as i32) >> 8);
    let u24 = |v: u32| u64::from(v & 0xff_ffff);
    for (i, o) in ins.iter().zip(&out) {
        assert_eq!(
            o[0],
            (s24(i[0]) * s24(i[1])) as u32,
            "mul24.lo.s32 {:#x} {:#x}",
            i[0],
            i[1]
        );
        assert_eq!(
            o[1],
            (((u24(i[0]) * u24(i[1])) >> 16) as u32).wrapping_add(i[2]),
            "mad24.hi.u32"
        );
    }
}
