//! Compare (bool masks) and select on register tiles and vectors, and scalar-on-the-left
//! arithmetic: a kernel using every predicate, both tile layouts, vectors, scalar and literal
//! operands, runs on the interpreter and the PTX emulator (sm_80, sm_90a) against a plain-Rust
//! reference, and compiles for the AMD targets. The cross-entropy of
//! `tests/tests/cross_entropy` runs on the emulator too.
#![cfg(feature = "jit")]

#[path = "../../tests/tests/cross_entropy/mod.rs"]
mod cross_entropy;

use tilekit::codegen::Target;
use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{F32, I32};
use tilekit::kernels::check::Rng;
use tilekit::Device;

/// Output tiles (16×16 each) of [`masks`], in order.
const OUTS: usize = 10;

#[tilekit::kernel]
fn masks(x: Gl<f32, 2>, y: Gl<f32, 2>, lim: Scalar<f32>, out: GlMut<f32, 2>, vout: GlMut<f32, 1>) {
    let a: Rt<f32, 16, 16> = load(x.tile(0, 0));
    let b: Rt<f32, 16, 16> = load(y.tile(0, 0));
    store(out.tile(0, 0), select(a.lt(b), a, b));
    store(out.tile(0, 1), select(a.le(lim), 1.0 - a, 2.0 * b));
    store(out.tile(0, 2), select(a.gt(0.0), a, 0.0));
    // By reference, as `t.lt(&u)` reads.
    #[allow(clippy::needless_borrows_for_generic_args)]
    let a_ge_b = a.ge(&b);
    store(out.tile(0, 3), select(a_ge_b, b, lim));
    store(out.tile(0, 4), select(a.eq(b), lim - a, a / 4.0));
    store(out.tile(0, 5), select(a.ne(b), a - b, 7.0));
    // Masks combine with & and |; i32 tiles compare too.
    let cols: Rt<i32, 16, 16> = iota_cols();
    let rows: Rt<i32, 16, 16> = iota_rows();
    let m = (a.gt(0.0) & b.lt(0.0)) | cols.lt(rows);
    store(out.tile(0, 6), select(m, a, b));
    let k = select(cols.ge(rows), 3 - cols, rows * 2);
    store(out.tile(0, 7), k.cast::<f32>());
    // Column layout: the mask is in the same layout as the values it came from.
    let ac: Rt<f32, 16, 16, Col> = load(x.tile(0, 0));
    let bc: Rt<f32, 16, 16, Col> = load(y.tile(0, 0));
    let pick: Rt<f32, 16, 16, Col> = select(ac.gt(bc), ac * 3.0, bc);
    store(out.tile(0, 8), pick.relayout::<Row>());
    // A bool scalar still selects the whole value.
    store(out.tile(0, 9), select(lim.gt(0.0), b, a));
    // Vectors: row statistics compared and selected.
    let va = row_max(a);
    let vb = row_sum(b);
    store(vout.chunk(0), select(va.lt(vb), 1.0 - va, vb * 0.5));
}

/// Element (r, c) of each output tile, from the inputs' elements.
fn expected(a: f64, b: f64, lim: f64, r: usize, c: usize) -> [f64; OUTS] {
    let (ri, ci) = (r as f64, c as f64);
    [
        if a < b { a } else { b },
        if a <= lim { 1.0 - a } else { 2.0 * b },
        if a > 0.0 { a } else { 0.0 },
        if a >= b { b } else { lim },
        if a == b { lim - a } else { a / 4.0 },
        if a != b { a - b } else { 7.0 },
        if (a > 0.0 && b < 0.0) || c < r { a } else { b },
        if c >= r { 3.0 - ci } else { 2.0 * ri },
        if a > b { a * 3.0 } else { b },
        if lim > 0.0 { b } else { a },
    ]
}

/// Inputs with NaN, ties (`y = x`) and signed zeros among uniform values.
fn inputs(rng: &mut Rng) -> (HostTensor, HostTensor) {
    let mut xs: Vec<f64> = (0..256).map(|_| rng.uniform(-4.0, 4.0)).collect();
    let mut ys: Vec<f64> = (0..256).map(|_| rng.uniform(-4.0, 4.0)).collect();
    for k in (0..256).step_by(7) {
        ys[k] = xs[k];
    }
    xs[5] = f64::NAN;
    ys[40] = f64::NAN;
    (xs[77], ys[77]) = (0.0, -0.0);
    let x = HostTensor::new(F32, &[16, 16], &xs).unwrap();
    let y = HostTensor::new(F32, &[16, 16], &ys).unwrap();
    (x, y)
}

fn same(got: f64, want: f64) -> bool {
    got == want || (got.is_nan() && want.is_nan())
}

fn check_on(device: &Device) {
    let mut rng = Rng::fresh();
    for lim in [1.5, -0.5] {
        let (x, y) = inputs(&mut rng);
        let mut out = HostTensor::full(F32, &[16, 16 * OUTS], 999.0);
        let mut vout = HostTensor::full(F32, &[16], 999.0);
        masks::launch(device, 1, &x, &y, (lim as f32).into(), &mut out, &mut vout)
            .unwrap_or_else(|e| panic!("{}: {e}", device.name()));
        for r in 0..16 {
            for c in 0..16 {
                let (a, b) = (x.get(&[r, c]).unwrap(), y.get(&[r, c]).unwrap());
                let want = expected(a, b, lim, r, c);
                for (k, &w) in want.iter().enumerate() {
                    let w = f64::from(w as f32);
                    let got = out.get(&[r, 16 * k + c]).unwrap();
                    assert!(
                        same(got, w),
                        "{}: output {k} at ({r}, {c}) with x {a}, y {b}, lim {lim}: got {got}, expected {w}; seed {}",
                        device.name(),
                        rng.seed
                    );
                }
            }
            // The f32 row sum may round differently from an f64 sum: compare within its error.
            let row_a: Vec<f64> = (0..16).map(|c| x.get(&[r, c]).unwrap()).collect();
            let row_b: Vec<f64> = (0..16).map(|c| y.get(&[r, c]).unwrap()).collect();
            let va = row_a.iter().copied().fold(f64::NEG_INFINITY, |m, v| {
                if v.is_nan() || m.is_nan() {
                    f64::NAN
                } else {
                    m.max(v)
                }
            });
            let vb: f64 = row_b.iter().sum();
            let got = vout.get(&[r]).unwrap();
            if va.is_nan() || vb.is_nan() || (va - vb).abs() < 1e-4 {
                // NaN propagation through max differs by target, and a near tie may go either
                // way in f32: neither is what this tests.
                continue;
            }
            let want = if va < vb { 1.0 - va } else { vb * 0.5 };
            assert!(
                (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{}: vector row {r}: got {got}, expected {want} (max {va}, sum {vb}); seed {}",
                device.name(),
                rng.seed
            );
        }
    }
}

#[test]
fn compare_and_select_agree_with_rust_on_the_interpreter() {
    check_on(&Device::Cpu);
}

#[test]
fn compare_and_select_agree_with_rust_on_the_sm_80_emulator() {
    check_on(&Device::emulator("sm_80").unwrap());
}

#[test]
fn compare_and_select_agree_with_rust_on_the_sm_90a_emulator() {
    check_on(&Device::emulator("sm_90a").unwrap());
}

#[test]
fn compare_and_select_compile_for_every_amd_target() {
    for t in [Target::Gfx90a, Target::Gfx942, Target::Gfx950] {
        for (m, name) in [
            (masks::module(), masks::NAME),
            (
                cross_entropy::cross_entropy::module(),
                cross_entropy::cross_entropy::NAME,
            ),
            (
                cross_entropy::cross_entropy_gather::module(),
                cross_entropy::cross_entropy_gather::NAME,
            ),
        ] {
            let c = tilekit::codegen::compile(m, name, t).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert!(c.code_object().is_some_and(|o| !o.is_empty()), "{t}");
        }
    }
}

#[test]
fn cross_entropy_with_ignored_rows_agrees_with_f64_on_the_sm_80_emulator() {
    let device = Device::emulator("sm_80").unwrap();
    let mut rng = Rng::fresh();
    let (rows, vocab) = (20, 50257);
    let values: Vec<f64> = (0..rows * vocab)
        .map(|k| {
            if k / vocab == 2 && k % 1000 == 3 {
                f64::NAN
            } else {
                rng.uniform(-8.0, 8.0)
            }
        })
        .collect();
    let logits = HostTensor::new(F32, &[rows, vocab], &values).unwrap();
    let mut targets: Vec<i64> = (0..rows)
        .map(|_| (rng.uniform(0.0, vocab as f64) as i64).min(vocab as i64 - 1))
        .collect();
    (targets[0], targets[1], targets[2], targets[3]) = (0, vocab as i64 - 1, -100, -100);
    let t: Vec<f64> = targets.iter().map(|&t| t as f64).collect();
    let tt = HostTensor::new(I32, &[rows], &t).unwrap();
    let want = cross_entropy::reference(&logits, &targets, -100);
    for gathered in [false, true] {
        let mut loss = HostTensor::full(F32, &[rows], 12345.0);
        let ignore = (-100i32).into();
        if gathered {
            cross_entropy::cross_entropy_gather::launch(
                &device, 2u32, &logits, &tt, ignore, &mut loss,
            )
        } else {
            cross_entropy::cross_entropy::launch(&device, 2u32, &logits, &tt, ignore, &mut loss)
        }
        .unwrap();
        let got = loss.to_vec();
        assert_eq!(
            got[2], 0.0,
            "the ignored NaN row leaked (gathered {gathered}): seed {}",
            rng.seed
        );
        for (r, (g, w)) in got.iter().zip(&want).enumerate() {
            // ex2.approx.f32 (2 ulp) and f32 sums over the vocabulary.
            let err = (g - w).abs() / w.abs().max(1.0);
            assert!(
                err <= 1e-4,
                "row {r} (gathered {gathered}): got {g}, expected {w}; seed {}",
                rng.seed
            );
        }
    }
}

/// Widths of [`positions`]' outputs: `vals` holds six chunks of 16, `idxs` three.
#[tilekit::kernel]
#[allow(clippy::too_many_arguments)]
fn positions(
    x: Gl<f32, 2>,
    flat: Gl<f32, 1>,
    rows_at: Gl<i32, 1>,
    cols_at: Gl<i32, 1>,
    flat_at: Gl<i32, 1>,
    k: Scalar<i32>,
    s: Scalar<f32>,
    vals: GlMut<f32, 1>,
    idxs: GlMut<i32, 1>,
    flat_out: GlMut<f32, 1>,
) {
    let t: Rt<f32, 16, 32> = load(x.tile(0, 0));
    let (mx, ix) = row_argmax(t);
    let (mn, jn) = row_argmin(t);
    store(vals.chunk(0), mx);
    store(vals.chunk(1), mn);
    store(idxs.chunk(0), ix);
    store(idxs.chunk(1), jn);
    let tc: Rt<f32, 16, 32, Col> = load(x.tile(0, 0));
    let (_, ixc) = row_argmax(tc);
    store(idxs.chunk(2), ixc);
    // Rank 2, indices in the rows distribution (16 per vector).
    let r: Rv<i32, 16> = load(rows_at.chunk(0));
    let c: Rv<i32, 16> = load(cols_at.chunk(0));
    store(vals.chunk(2), gather(x, (r, c)));
    // Rank 1, 64 indices: one per lane (or two) in the lanes distribution.
    let i: Rv<i32, 64> = load(flat_at.chunk(0));
    store(flat_out.chunk(0), gather(flat, i));
    let sums = row_sum(t);
    store(vals.at(48), extract(sums, k));
    store(vals.at(49), extract(sums, 16));
    store(vals.chunk(4), insert(sums, k, s));
    store(vals.chunk(5), insert(sums, -1, s));
}

fn check_positions_on(device: &Device) {
    let mut rng = Rng::fresh();
    let seed = rng.seed;
    let mut xs: Vec<f64> = (0..16 * 32).map(|_| rng.uniform(-4.0, 4.0)).collect();
    // Ties: row 3's maximum at columns 5 and 20, row 4's minimum at 7 and 30.
    xs[3 * 32 + 5] = 9.0;
    xs[3 * 32 + 20] = 9.0;
    xs[4 * 32 + 7] = -9.0;
    xs[4 * 32 + 30] = -9.0;
    let x = HostTensor::new(F32, &[16, 32], &xs).unwrap();
    let xs = x.to_vec();
    let flat_v: Vec<f64> = (0..100).map(|_| rng.uniform(-4.0, 4.0)).collect();
    let flat = HostTensor::new(F32, &[100], &flat_v).unwrap();
    let flat_v = flat.to_vec();
    let pick = |lo: i64, hi: i64, rng: &mut Rng| rng.uniform(lo as f64, hi as f64).floor() as i64;
    // Some indices outside the view (negative or past the end) gather 0.
    let rows: Vec<i64> = (0..16).map(|_| pick(-2, 18, &mut rng)).collect();
    let cols: Vec<i64> = (0..16).map(|_| pick(-2, 34, &mut rng)).collect();
    let fi: Vec<i64> = (0..64).map(|_| pick(-3, 103, &mut rng)).collect();
    let k = pick(0, 16, &mut rng);
    let as_t = |v: &[i64]| {
        let f: Vec<f64> = v.iter().map(|&i| i as f64).collect();
        HostTensor::new(I32, &[v.len()], &f).unwrap()
    };
    let mut vals = HostTensor::full(F32, &[96], 999.0);
    let mut idxs = HostTensor::full(I32, &[48], 999.0);
    let mut flat_out = HostTensor::full(F32, &[64], 999.0);
    positions::launch(
        device,
        1,
        &x,
        &flat,
        &as_t(&rows),
        &as_t(&cols),
        &as_t(&fi),
        (k as i32).into(),
        2.5f32.into(),
        &mut vals,
        &mut idxs,
        &mut flat_out,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", device.name()));
    let (v, ix, fo) = (vals.to_vec(), idxs.to_vec(), flat_out.to_vec());
    let what = format!("{}, seed {seed}", device.name());
    let mut sums = Vec::new();
    for r in 0..16 {
        let row = &xs[r * 32..(r + 1) * 32];
        let mx = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mn = row.iter().copied().fold(f64::INFINITY, f64::min);
        let first = |m: f64| row.iter().position(|&z| z == m).unwrap() as f64;
        assert_eq!(
            (v[r], ix[r], ix[32 + r]),
            (mx, first(mx), first(mx)),
            "argmax row {r}: {what}"
        );
        assert_eq!(
            (v[16 + r], ix[16 + r]),
            (mn, first(mn)),
            "argmin row {r}: {what}"
        );
        let inside = (0..16).contains(&rows[r]) && (0..32).contains(&cols[r]);
        let g = if inside {
            xs[rows[r] as usize * 32 + cols[r] as usize]
        } else {
            0.0
        };
        assert_eq!(
            v[32 + r],
            g,
            "gather ({}, {}) at {r}: {what}",
            rows[r],
            cols[r]
        );
        sums.push(row.iter().sum::<f64>());
    }
    assert_eq!(ix[3], 5.0, "{what}");
    assert_eq!(ix[16 + 4], 7.0, "{what}");
    for (j, &i) in fi.iter().enumerate() {
        let want = if (0..100).contains(&i) {
            flat_v[i as usize]
        } else {
            0.0
        };
        assert_eq!(fo[j], want, "rank-1 gather at {j} (index {i}): {what}");
    }
    // Row sums in f32 may round unlike the f64 sum; extract and insert move them exactly.
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * b.abs().max(1.0);
    assert!(
        close(v[48], sums[k as usize]),
        "extract({k}): {} vs {}: {what}",
        v[48],
        sums[k as usize]
    );
    assert_eq!(v[49], f64::NEG_INFINITY, "extract past the end: {what}");
    for r in 0..16 {
        let want = if r as i64 == k { 2.5 } else { sums[r] };
        assert!(close(v[64 + r], want), "insert at {r}: {what}");
        assert!(
            close(v[80 + r], sums[r]),
            "insert at -1 changes nothing: {what}"
        );
    }
    assert_eq!(v[64 + k as usize], 2.5, "{what}");
    assert_eq!(v[48], v[80 + k as usize], "extract is exact: {what}");
}

#[test]
fn gather_argmax_extract_insert_agree_with_rust_on_the_interpreter() {
    check_positions_on(&Device::Cpu);
}

#[test]
fn gather_argmax_extract_insert_agree_with_rust_on_the_sm_80_emulator() {
    check_positions_on(&Device::emulator("sm_80").unwrap());
}

#[test]
fn gather_argmax_extract_insert_agree_with_rust_on_the_sm_90a_emulator() {
    check_positions_on(&Device::emulator("sm_90a").unwrap());
}

#[test]
fn gather_argmax_extract_insert_compile_for_every_amd_target() {
    for t in [Target::Gfx90a, Target::Gfx942, Target::Gfx950] {
        let c = tilekit::codegen::compile(positions::module(), positions::NAME, t)
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        assert!(c.code_object().is_some_and(|o| !o.is_empty()), "{t}");
    }
}
