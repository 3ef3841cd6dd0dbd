//! The returning atomics (`atomic_max`, `atomic_min`, `atomic_exch`, `atomic_cas`) on the
//! interpreter and the PTX emulator against plain Rust: extrema of many blocks' tiles (f32, u32,
//! i32; an output smaller than the tile), an exchange chain whose old values every lane sees, an
//! argmax by a compare-and-swap loop, and a tile compare-and-swap; compiled for the AMD targets.
#![cfg(feature = "jit")]

use tilekit::codegen::Target;
use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{F32, I32, U32};
use tilekit::kernels::check::Rng;
use tilekit::Device;

/// Rows and columns of the extrema outputs: smaller than a tile, so its updates are masked.
const OR: usize = 13;
const OC: usize = 11;

#[tilekit::kernel]
fn extrema(
    x: Gl<f32, 2>,
    u: Gl<u32, 2>,
    i: Gl<i32, 2>,
    mx: GlMut<f32, 2>,
    mn: GlMut<f32, 2>,
    umx: GlMut<u32, 2>,
    imn: GlMut<i32, 2>,
    olds: GlMut<f32, 2>,
) {
    let b = block_idx_x();
    let t: Rt<f32, 16, 16> = load(x.tile(b, 0));
    let old = atomic_max(mx.tile(0, 0), t);
    store(olds.tile(b, 0), old);
    let _ = atomic_min(mn.tile(0, 0), t);
    let ut: Rt<u32, 16, 16> = load(u.tile(b, 0));
    let _ = atomic_max(umx.tile(0, 0), ut);
    let it: Rt<i32, 16, 16, Col> = load(i.tile(b, 0));
    let _ = atomic_min(imn.tile(0, 0), it);
}

fn extrema_on(device: &Device) {
    let mut rng = Rng::fresh();
    let what = format!("{}, seed {}", device.name(), rng.seed);
    for blocks in [1usize, 3, 7] {
        let m = 16 * blocks;
        let x = rng.tensor(F32, &[m, 16], -100.0, 100.0);
        // Above 2³¹ too: an unsigned comparison differs from a signed one there.
        let u = rng.tensor(U32, &[m, 16], 0.0, 4.2e9);
        let i = rng.tensor(I32, &[m, 16], -2e9, 2e9);
        let init = rng.tensor(F32, &[OR, OC], -50.0, 50.0);
        let (mut mx, mut mn) = (init.clone(), init.clone());
        let uinit = rng.tensor(U32, &[OR, OC], 0.0, 4.2e9);
        let iinit = rng.tensor(I32, &[OR, OC], -2e9, 2e9);
        let (mut umx, mut imn) = (uinit.clone(), iinit.clone());
        let mut olds = HostTensor::full(F32, &[m, 16], 12345.0);
        extrema::launch(
            device,
            blocks as u32,
            &x,
            &u,
            &i,
            &mut mx,
            &mut mn,
            &mut umx,
            &mut imn,
            &mut olds,
        )
        .unwrap_or_else(|e| panic!("{what}, {blocks} blocks: {e}"));
        let (xv, uv, iv, ov) = (x.to_vec(), u.to_vec(), i.to_vec(), olds.to_vec());
        let at = |v: &[f64], b: usize, r: usize, c: usize| v[(16 * b + r) * 16 + c];
        for r in 0..OR {
            for c in 0..OC {
                let all = |v: &[f64]| (0..blocks).map(move |b| at(v, b, r, c)).collect::<Vec<_>>();
                let e = [r, c];
                let base = init.get(&e).unwrap();
                let want_max = all(&xv).into_iter().fold(base, f64::max);
                let want_min = all(&xv).into_iter().fold(base, f64::min);
                assert_eq!(mx.get(&e), Some(want_max), "max at {e:?}: {what}");
                assert_eq!(mn.get(&e), Some(want_min), "min at {e:?}: {what}");
                let want_u = all(&uv).into_iter().fold(uinit.get(&e).unwrap(), f64::max);
                let want_i = all(&iv).into_iter().fold(iinit.get(&e).unwrap(), f64::min);
                assert_eq!(umx.get(&e), Some(want_u), "u32 max at {e:?}: {what}");
                assert_eq!(imn.get(&e), Some(want_i), "i32 min at {e:?}: {what}");
                // Each block saw the initial value or another block's contribution, never
                // more than the final maximum; some block saw the initial value.
                let seen = all(&ov);
                for (b, &o) in seen.iter().enumerate() {
                    let from_other = (0..blocks).any(|k| k != b && at(&xv, k, r, c) == o);
                    assert!(
                        (o == base || from_other) && o <= want_max,
                        "old value {o} of block {b} at {e:?}: {what}"
                    );
                }
                assert!(
                    seen.contains(&base),
                    "no block saw the initial {base} at {e:?}: {what}"
                );
            }
        }
        // Elements of the tile outside the output: nothing written, old value 0.
        for b in 0..blocks {
            for r in 0..16 {
                for c in 0..16 {
                    if r >= OR || c >= OC {
                        assert_eq!(at(&ov, b, r, c), 0.0, "masked old ({r}, {c}): {what}");
                    }
                }
            }
        }
    }
}

#[tilekit::kernel]
fn exchange_chain(slot: GlMut<i32, 1>, seen: GlMut<i32, 2>) {
    let b = block_idx_x();
    let old = atomic_exch(slot.at(0), b + 1000);
    // Every lane holds the old value: a whole tile of it.
    let t: Rt<i32, 16, 16> = splat(old);
    store(seen.tile(b, 0), t);
}

fn exchange_on(device: &Device) {
    let mut rng = Rng::fresh();
    let what = format!("{}, seed {}", device.name(), rng.seed);
    for blocks in [1usize, 5, 12] {
        let init = rng.uniform(-1e6, -1.0).round();
        let mut slot = HostTensor::new(I32, &[1], &[init]).unwrap();
        let mut seen = HostTensor::full(I32, &[16 * blocks, 16], 7.0);
        exchange_chain::launch(device, blocks as u32, &mut slot, &mut seen)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let sv = seen.to_vec();
        let mut values = Vec::new();
        for b in 0..blocks {
            let tile = &sv[b * 256..(b + 1) * 256];
            assert!(
                tile.iter().all(|&v| v == tile[0]),
                "block {b}: lanes disagree on the old value: {what}"
            );
            values.push(tile[0]);
        }
        values.push(slot.get(&[0]).unwrap());
        values.sort_by(f64::total_cmp);
        let mut want: Vec<f64> = (0..blocks).map(|b| (b + 1000) as f64).collect();
        want.push(init);
        want.sort_by(f64::total_cmp);
        assert_eq!(values, want, "old values and the final one: {what}");
    }
}

/// Whether candidate (v, i) beats the element at index `cur` (none when negative): a larger
/// value, or the same value at a smaller index.
#[tilekit::func]
fn improves(x: Gl<f32, 1>, v: Scalar<f32>, i: Scalar<i32>, cur: Scalar<i32>) -> Scalar<bool> {
    let held: Scalar<f32> = load(x.at(cur.max(0)));
    cur.lt(0) | v.gt(held) | (v.eq(held) & i.lt(cur))
}

/// Block b offers element b; the index of the first maximum wins through compare-and-swap.
#[tilekit::kernel]
fn argmax_cas(x: Gl<f32, 1>, best: GlMut<i32, 1>) {
    let i = block_idx_x();
    let v: Scalar<f32> = load(x.at(i));
    let mut cur: Scalar<i32> = load(best.at(0));
    let mut go = improves(x, v, i, cur);
    while go {
        let prev = atomic_cas(best.at(0), cur, i);
        let won = prev.eq(cur);
        cur = prev;
        go = !won & improves(x, v, i, prev);
    }
}

fn argmax_on(device: &Device) {
    let mut rng = Rng::fresh();
    let what = format!("{}, seed {}", device.name(), rng.seed);
    for n in [1usize, 9, 40] {
        let mut xs: Vec<f64> = (0..n)
            .map(|_| (rng.uniform(-1e3, 1e3) as f32) as f64)
            .collect();
        // A tie for the maximum: the first index must win.
        if n > 4 {
            let top = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            xs[n / 2] = top;
            xs[n - 1] = top;
        }
        let x = HostTensor::new(F32, &[n], &xs).unwrap();
        let mut best = HostTensor::new(I32, &[1], &[-1.0]).unwrap();
        argmax_cas::launch(device, n as u32, &x, &mut best)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let top = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let want = xs.iter().position(|&v| v == top).unwrap();
        assert_eq!(
            best.get(&[0]),
            Some(want as f64),
            "argmax of {xs:?}: {what}"
        );
    }
}

#[tilekit::kernel]
fn tile_cas(g: GlMut<f32, 2>, cmp: Gl<f32, 2>, x: Gl<f32, 2>, olds: GlMut<f32, 2>) {
    let c: Rt<f32, 16, 16> = load(cmp.tile(0, 0));
    let t: Rt<f32, 16, 16> = load(x.tile(0, 0));
    store(olds.tile(0, 0), atomic_cas(g.tile(0, 0), c, t));
}

fn tile_cas_on(device: &Device) {
    let mut rng = Rng::fresh();
    let what = format!("{}, seed {}", device.name(), rng.seed);
    let g0 = rng.tensor(F32, &[16, 16], -10.0, 10.0);
    let x = rng.tensor(F32, &[16, 16], -10.0, 10.0);
    let mut cmpv = g0.to_vec();
    for (k, v) in cmpv.iter_mut().enumerate() {
        if (k * 7) % 3 == 0 {
            *v += 0.25;
        }
    }
    // Bits, not values, are compared: -0 does not match +0.
    let mut g0v = g0.to_vec();
    g0v[5] = 0.0;
    cmpv[5] = -0.0;
    let g0 = HostTensor::new(F32, &[16, 16], &g0v).unwrap();
    let cmp = HostTensor::new(F32, &[16, 16], &cmpv).unwrap();
    let mut g = g0.clone();
    let mut olds = HostTensor::full(F32, &[16, 16], 3.5);
    tile_cas::launch(device, 1, &mut g, &cmp, &x, &mut olds)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let (gv, xv, ov) = (g.to_vec(), x.to_vec(), olds.to_vec());
    for k in 0..256 {
        let same = (g0v[k] as f32).to_bits() == (cmpv[k] as f32).to_bits();
        let want = if same { xv[k] } else { g0v[k] };
        assert_eq!(gv[k].to_bits(), want.to_bits(), "element {k}: {what}");
        assert_eq!(ov[k].to_bits(), g0v[k].to_bits(), "old value {k}: {what}");
    }
}

fn emu() -> Device {
    Device::emulator("sm_80").unwrap()
}

#[test]
fn extrema_of_many_blocks_match_plain_rust_on_the_interpreter() {
    extrema_on(&Device::Cpu);
}

#[test]
fn extrema_of_many_blocks_match_plain_rust_on_the_sm_80_emulator() {
    extrema_on(&emu());
}

#[test]
fn every_lane_sees_the_exchanged_value_on_the_interpreter() {
    exchange_on(&Device::Cpu);
}

#[test]
fn every_lane_sees_the_exchanged_value_on_the_sm_80_emulator() {
    exchange_on(&emu());
}

#[test]
fn argmax_by_compare_and_swap_finds_the_first_maximum_on_the_interpreter() {
    argmax_on(&Device::Cpu);
}

#[test]
fn argmax_by_compare_and_swap_finds_the_first_maximum_on_the_sm_80_emulator() {
    argmax_on(&emu());
}

#[test]
fn tile_compare_and_swap_compares_bits_on_the_interpreter() {
    tile_cas_on(&Device::Cpu);
}

#[test]
fn tile_compare_and_swap_compares_bits_on_the_sm_80_emulator() {
    tile_cas_on(&emu());
}

#[test]
fn atomics_compile_for_sm_90a_and_every_amd_target() {
    let kernels = [
        (extrema::module(), extrema::NAME),
        (exchange_chain::module(), exchange_chain::NAME),
        (argmax_cas::module(), argmax_cas::NAME),
        (tile_cas::module(), tile_cas::NAME),
    ];
    for (m, name) in kernels {
        let c = tilekit::codegen::compile(m, name, Target::Sm90a)
            .unwrap_or_else(|e| panic!("{name} sm_90a: {e}"));
        assert!(
            c.ptx().contains("atom.") && c.ptx().contains(".global."),
            "{name}"
        );
        for t in [Target::Gfx90a, Target::Gfx942, Target::Gfx950] {
            let c =
                tilekit::codegen::compile(m, name, t).unwrap_or_else(|e| panic!("{name} {t}: {e}"));
            assert!(c.code_object().is_some_and(|o| !o.is_empty()), "{name} {t}");
        }
    }
}

#[test]
fn every_atomic_check_passes_on_the_sm_90a_emulator() {
    let d = Device::emulator("sm_90a").unwrap();
    extrema_on(&d);
    exchange_on(&d);
    argmax_on(&d);
    tile_cas_on(&d);
}
