//! `cvt.rna.tf32.f32` and `mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32` in a whole
//! kernel: one warp loads A (16×8) and B (8×8) by the PTX ISA's `.tf32` fragment figures, rounds
//! them to tf32 and multiplies. Compared with a rounding and a product written here in f64
//! from the definitions (nearest with 10 fraction bits, ties away from zero).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tilekit_emu::{Emulator, GlobalMemory, LaunchConfig};

/// One warp: D(16×8) = tf32(A)(16×8, row-major) · tf32(B)(8×8, row-major) + C, and the rounded
/// A elements written back (`ra`, same places as A).
const MMA: &str = r#"
.version 8.0
.target sm_80
.address_size 64
.visible .entry mma1688(.param .u64 pa, .param .u64 pb, .param .u64 pc, .param .u64 pd, .param .u64 pra)
{
    .reg .b32 %r<60>;
    .reg .f32 %f<20>;
    .reg .b64 %rd<20>;
    ld.param.u64 %rd1, [pa];
    ld.param.u64 %rd2, [pb];
    ld.param.u64 %rd3, [pd];
    ld.param.u64 %rd4, [pra];
    ld.param.u64 %rd5, [pc];
    mov.u32 %r1, %laneid;
    shr.u32 %r2, %r1, 2;        // g
    and.b32 %r3, %r1, 3;        // t
    // A offsets (elements): a0 = g*8 + t, a1 = a0 + 64, a2 = a0 + 4, a3 = a0 + 68.
    shl.b32 %r4, %r2, 3;
    add.s32 %r5, %r4, %r3;
    mul.wide.u32 %rd6, %r5, 4;
    add.s64 %rd7, %rd1, %rd6;
    add.s64 %rd8, %rd4, %rd6;
    ld.global.f32 %f1, [%rd7];
    ld.global.f32 %f2, [%rd7+256];
    ld.global.f32 %f3, [%rd7+16];
    ld.global.f32 %f4, [%rd7+272];
    cvt.rna.tf32.f32 %r10, %f1;
    cvt.rna.tf32.f32 %r11, %f2;
    cvt.rna.tf32.f32 %r12, %f3;
    cvt.rna.tf32.f32 %r13, %f4;
    st.global.b32 [%rd8], %r10;
    st.global.b32 [%rd8+256], %r11;
    st.global.b32 [%rd8+16], %r12;
    st.global.b32 [%rd8+272], %r13;
    // B offsets: b0 = t*8 + g, b1 = b0 + 32.
    shl.b32 %r6, %r3, 3;
    add.s32 %r7, %r6, %r2;
    mul.wide.u32 %rd9, %r7, 4;
    add.s64 %rd10, %rd2, %rd9;
    ld.global.f32 %f5, [%rd10];
    ld.global.f32 %f6, [%rd10+128];
    cvt.rna.tf32.f32 %r14, %f5;
    cvt.rna.tf32.f32 %r15, %f6;
    // C and D: row g, cols 2t, 2t+1; row g+8.
    shl.b32 %r8, %r3, 1;
    add.s32 %r9, %r4, %r8;
    mul.wide.u32 %rd11, %r9, 4;
    add.s64 %rd12, %rd5, %rd11;
    add.s64 %rd13, %rd3, %rd11;
    ld.global.v2.f32 {%f7, %f8}, [%rd12];
    ld.global.v2.f32 {%f9, %f10}, [%rd12+256];
    mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%f11, %f12, %f13, %f14}, {%r10, %r11, %r12, %r13}, {%r14, %r15}, {%f7, %f8, %f9, %f10};
    st.global.v2.f32 [%rd13], {%f11, %f12};
    st.global.v2.f32 [%rd13+256], {%f13, %f14};
    ret;
}
"#;

/// `x` rounded to 11 significant bits, ties away from zero, from the definition: the unit of
/// the 11th bit of |x| is 2^(floor(log2|x|) − 10) (2^-136 for subnormals, whose exponent is
/// fixed at −126); f64 holds every step exactly.
fn tf32_reference(x: f32) -> f64 {
    let x = f64::from(x);
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let e = x.abs().log2().floor().max(-126.0) as i32;
    let unit = 2f64.powi(e - 10);
    let q = x.abs() / unit;
    let r = if q - q.floor() >= 0.5 {
        q.floor() + 1.0
    } else {
        q.floor()
    };
    x.signum() * r * unit
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Random f32 of both signs and magnitudes 2^-20 .. 2^6; some exactly halfway between two tf32
/// values (the 13 low bits 0x1000), some just either side.
fn inputs(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let mag = 2f32.powf(rng.gen_range(-20.0..6.0));
            let x = if rng.gen_bool(0.5) { mag } else { -mag };
            let b = x.to_bits() & !0x1fff;
            match i % 5 {
                0 => f32::from_bits(b | 0x1000),
                1 => f32::from_bits(b | 0x0fff),
                2 => f32::from_bits(b | 0x1001),
                _ => x,
            }
        })
        .collect()
}

#[test]
fn cvt_rna_tf32_and_mma_m16n8k8_tf32_follow_the_isa() {
    let seed: u64 = rand::random();
    let mut rng = StdRng::seed_from_u64(seed);
    let (a, b) = (inputs(&mut rng, 128), inputs(&mut rng, 64));
    let c: Vec<f32> = (0..128).map(|_| rng.gen_range(-4.0..4.0)).collect();
    let emu = Emulator::new(MMA).expect("parse");
    let mut g = GlobalMemory::new();
    let pa = g.alloc("a", bytes(&a));
    let pb = g.alloc("b", bytes(&b));
    let pc = g.alloc("c", bytes(&c));
    let pd = g.alloc("d", vec![0u8; 128 * 4]);
    let pra = g.alloc("ra", vec![0u8; 128 * 4]);
    let params = emu
        .param_buffer(
            "mma1688",
            &[pa, pb, pc, pd, pra].map(|p| p.to_le_bytes().to_vec()),
        )
        .expect("params");
    emu.launch(
        "mma1688",
        &LaunchConfig::new([1, 1, 1], [32, 1, 1]),
        &params,
        &mut g,
    )
    .expect("launch");
    let ra = floats(&g.get(pra).expect("ra").data);
    for (x, r) in a.iter().zip(&ra) {
        assert_eq!(
            f64::from(*r),
            tf32_reference(*x),
            "cvt.rna.tf32 of {x:e} ({:#x}), seed {seed}",
            x.to_bits()
        );
    }
    let d = floats(&g.get(pd).expect("d").data);
    for i in 0..16 {
        for j in 0..8 {
            let (mut exact, mut rounded, mut mag) = (f64::from(c[i * 8 + j]), 0.0, 0.0);
            rounded += exact;
            for k in 0..8 {
                let (x, y) = (a[i * 8 + k], b[k * 8 + j]);
                exact += f64::from(x) * f64::from(y);
                rounded += tf32_reference(x) * tf32_reference(y);
                mag += (f64::from(x) * f64::from(y)).abs();
            }
            let got = f64::from(d[i * 8 + j]);
            // The emulator sums exactly and rounds once to f32.
            let tight = 2f64.powi(-23) * (mag + f64::from(c[i * 8 + j]).abs());
            assert!(
                (got - rounded).abs() <= tight,
                "D[{i}][{j}] = {got:e}, tf32 reference {rounded:e}, seed {seed}"
            );
            // Against the f32 inputs: each rounded operand is within 2^-11 relatively.
            let tf32 = (2.0 * 2f64.powi(-11) + 2f64.powi(-22)) * mag + tight;
            assert!(
                (got - exact).abs() <= tf32,
                "D[{i}][{j}] = {got:e}, exact {exact:e}, seed {seed}"
            );
        }
    }
}

#[test]
fn the_reference_rounding_matches_hand_worked_cases() {
    let ulp = 2f32.powi(-10);
    assert_eq!(tf32_reference(1.0 + ulp / 2.0), 1.0 + f64::from(ulp));
    assert_eq!(tf32_reference(-(1.0 + ulp / 2.0)), -(1.0 + f64::from(ulp)));
    assert_eq!(tf32_reference(1.0 + 1.5 * ulp), 1.0 + 2.0 * f64::from(ulp));
    assert_eq!(tf32_reference(1.0 + 0.49 * ulp), 1.0);
    assert_eq!(tf32_reference(3.0), 3.0);
}
