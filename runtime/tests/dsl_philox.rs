//! Philox-4x32-10 (`philox`, `rand_uniform`, `rand_normal`): a plain-Rust Philox written here
//! from the paper (Salmon, Moraes, Dror, Shaw, SC'11) is checked against Random123's
//! known-answer vectors; the kernels are checked against it bit for bit (raw words and uniform
//! floats) on the interpreter and the PTX emulator, the normals against f64 Box–Muller on its
//! words; compiled for the AMD targets.
#![cfg(feature = "jit")]

use tilekit::codegen::Target;
use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{F32, U32};
use tilekit::kernels::check::Rng;
use tilekit::Device;

/// Philox-4x32-10 from the paper: the round maps (c0, c1, c2, c3) to
/// (hi(M1·c2) ⊕ c1 ⊕ k0, lo(M1·c2), hi(M0·c0) ⊕ c3 ⊕ k1, lo(M0·c0)); the key is bumped by the
/// Weyl constants between rounds.
fn reference(key: [u32; 2], ctr: [u32; 4]) -> [u32; 4] {
    let (mut k, mut c) = (key, ctr);
    for r in 0..10 {
        if r > 0 {
            k[0] = k[0].wrapping_add(0x9E37_79B9);
            k[1] = k[1].wrapping_add(0xBB67_AE85);
        }
        let a = u64::from(c[0]) * 0xD251_1F53;
        let b = u64::from(c[2]) * 0xCD9E_8D57;
        let (hi_a, lo_a) = ((a >> 32) as u32, a as u32);
        let (hi_b, lo_b) = ((b >> 32) as u32, b as u32);
        c = [hi_b ^ c[1] ^ k[0], lo_b, hi_a ^ c[3] ^ k[1], lo_a];
    }
    c
}

/// Random123's kat_vectors for philox4x32-10: (counter, key, output).
const KAT: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
    (
        [0; 4],
        [0; 2],
        [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8],
    ),
    (
        [0xffff_ffff; 4],
        [0xffff_ffff; 2],
        [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd],
    ),
    (
        [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
        [0xa409_3822, 0x299f_31d0],
        [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1],
    ),
];

#[test]
fn the_reference_reproduces_random123_known_answers() {
    for (ctr, key, out) in KAT {
        assert_eq!(reference(key, ctr), out, "counter {ctr:x?}, key {key:x?}");
    }
}

/// One scalar draw: the four words at `out[0..4]`.
#[tilekit::kernel]
fn philox_scalar(
    k0: Scalar<u32>,
    k1: Scalar<u32>,
    c0: Scalar<u32>,
    c1: Scalar<u32>,
    c2: Scalar<u32>,
    c3: Scalar<u32>,
    out: GlMut<u32, 1>,
) {
    let w = philox((k0, k1), [c0, c1, c2, c3]);
    for (k, x) in w.into_iter().enumerate() {
        store(out.at(k as i32), x);
    }
}

fn known_answers_on(device: &Device) {
    for (ctr, key, want) in KAT {
        let mut out = HostTensor::full(U32, &[4], 17.0);
        philox_scalar::launch(
            device,
            1,
            key[0].into(),
            key[1].into(),
            ctr[0].into(),
            ctr[1].into(),
            ctr[2].into(),
            ctr[3].into(),
            &mut out,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", device.name()));
        let got: Vec<u32> = out.to_vec().iter().map(|&v| v as u32).collect();
        assert_eq!(
            got,
            want,
            "{}: counter {ctr:x?}, key {key:x?}",
            device.name()
        );
    }
}

/// Per element of a 16×32 tile per block: counter (global linear index, offset, 0, 0); the four
/// words, a uniform and a normal.
#[tilekit::kernel]
fn philox_tiles(
    seed: Scalar<u32>,
    seed_hi: Scalar<u32>,
    offset: Scalar<u32>,
    words: GlMut<u32, 3>,
    uni: GlMut<f32, 2>,
    nrm: GlMut<f32, 2>,
) {
    let b = block_idx_x();
    let rows: Rt<u32, 16, 32> = iota_rows();
    let cols: Rt<u32, 16, 32> = iota_cols();
    let base: Scalar<u32> = convert(b * 512);
    let idx = rows * 32u32 + cols + base;
    let zero: Rt<u32, 16, 32> = zeros();
    let w = philox((seed, seed_hi), [idx, splat(offset), zero, zero]);
    for (k, x) in w.into_iter().enumerate() {
        store(words.tile(k as i32, b, 0), x);
    }
    store(uni.tile(b, 0), rand_uniform((seed, seed_hi), offset, idx));
    store(nrm.tile(b, 0), rand_normal((seed, seed_hi), offset, idx));
}

fn tiles_on(device: &Device) {
    let mut rng = Rng::fresh();
    let what = format!("{}, seed {}", device.name(), rng.seed);
    for blocks in [1usize, 3] {
        let key = [
            rng.uniform(0.0, 4.29e9) as u32,
            rng.uniform(0.0, 4.29e9) as u32,
        ];
        let offset = rng.uniform(0.0, 4.29e9) as u32;
        let m = 16 * blocks;
        let mut words = HostTensor::zeros(U32, &[4, m, 32]);
        let mut uni = HostTensor::full(F32, &[m, 32], -1.0);
        let mut nrm = HostTensor::full(F32, &[m, 32], 99.0);
        philox_tiles::launch(
            device,
            blocks as u32,
            key[0].into(),
            key[1].into(),
            offset.into(),
            &mut words,
            &mut uni,
            &mut nrm,
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        let (wv, uv, nv) = (words.to_vec(), uni.to_vec(), nrm.to_vec());
        let mut worst = 0.0f64;
        for e in 0..m * 32 {
            let want = reference(key, [e as u32, offset, 0, 0]);
            for (k, &w) in want.iter().enumerate() {
                assert_eq!(
                    wv[k * m * 32 + e],
                    f64::from(w),
                    "word {k} of element {e}: {what}"
                );
            }
            let u = |w: u32| f64::from(w >> 8) / 16_777_216.0;
            assert_eq!(uv[e], u(want[0]), "uniform of element {e}: {what}");
            assert!((0.0..1.0).contains(&uv[e]));
            let z = (-2.0 * (1.0 - u(want[0])).ln()).sqrt()
                * (std::f64::consts::TAU * u(want[1])).cos();
            worst = worst.max((nv[e] - z).abs());
        }
        // f32 arithmetic and the target's logarithm: a few ulps of values up to ~5.
        assert!(worst < 1e-4, "normal: max |error| {worst}: {what}");
    }
}

/// Per element of a 32-long column vector per block: counter (index, 0, index, offset).
#[tilekit::kernel]
fn philox_vectors(key0: Scalar<u32>, offset: Scalar<u32>, words: GlMut<u32, 2>) {
    let b = block_idx_x();
    let base: Scalar<u32> = convert(b * 32);
    let idx: Rv<u32, 32, Cols> = iota_rows::<Rv<u32, 32, Cols>>() + base;
    let zero: Rv<u32, 32, Cols> = zeros();
    let w = philox((key0, offset), [idx, zero, idx, splat(offset)]);
    for (k, x) in w.into_iter().enumerate() {
        store(words.chunk(k as i32, b), x);
    }
}

fn vectors_on(device: &Device) {
    let mut rng = Rng::fresh();
    let what = format!("{}, seed {}", device.name(), rng.seed);
    let blocks = 3usize;
    let key0 = rng.uniform(0.0, 4.29e9) as u32;
    let offset = rng.uniform(0.0, 4.29e9) as u32;
    let n = 32 * blocks;
    let mut words = HostTensor::zeros(U32, &[4, n]);
    philox_vectors::launch(
        device,
        blocks as u32,
        key0.into(),
        offset.into(),
        &mut words,
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let wv = words.to_vec();
    for e in 0..n {
        let want = reference([key0, offset], [e as u32, 0, e as u32, offset]);
        for (k, &w) in want.iter().enumerate() {
            assert_eq!(
                wv[k * n + e],
                f64::from(w),
                "word {k} of element {e}: {what}"
            );
        }
    }
}

#[test]
fn vector_draws_match_the_reference_on_the_interpreter_and_the_sm_80_emulator() {
    vectors_on(&Device::Cpu);
    vectors_on(&Device::emulator("sm_80").unwrap());
}

#[test]
fn scalar_draws_reproduce_known_answers_on_the_interpreter() {
    known_answers_on(&Device::Cpu);
}

#[test]
fn scalar_draws_reproduce_known_answers_on_the_sm_80_emulator() {
    known_answers_on(&Device::emulator("sm_80").unwrap());
}

#[test]
fn tile_draws_match_the_reference_bit_for_bit_on_the_interpreter() {
    tiles_on(&Device::Cpu);
}

#[test]
fn tile_draws_match_the_reference_bit_for_bit_on_the_sm_80_emulator() {
    tiles_on(&Device::emulator("sm_80").unwrap());
}

#[test]
fn philox_compiles_for_sm_90a_and_every_amd_target() {
    for t in [
        Target::Sm90a,
        Target::Gfx90a,
        Target::Gfx942,
        Target::Gfx950,
    ] {
        let c = tilekit::codegen::compile(philox_tiles::module(), philox_tiles::NAME, t)
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        if t.is_nvidia() {
            assert!(!c.ptx().is_empty());
        } else {
            assert!(c.code_object().is_some_and(|o| !o.is_empty()), "{t}");
        }
    }
}

#[test]
fn every_philox_check_passes_on_the_sm_90a_emulator() {
    let d = Device::emulator("sm_90a").unwrap();
    known_answers_on(&d);
    tiles_on(&d);
    vectors_on(&d);
}
