//! Row sorts and top-k (`sort_row.*`, `topk_row`) against plain-Rust sorts written here, on
//! random rows full of ties, with NaN, ±∞ and −0 among them, on the interpreter and the sm_80
//! and sm_90a PTX emulators; the AMD targets compile them.
//!
//! The order under test: keys descending (ascending), equal keys by the lower payload; NaN
//! above every number and equal to every NaN; −0 equal to +0.

#![cfg(feature = "jit")]

use std::cmp::Ordering;

use tilekit::codegen::Target;
use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{F32, I32};
use tilekit::kernels::check::Rng;
use tilekit::Device;

/// Columns of the sorted tiles: a power of two, and one that the lowering pads.
const C: usize = 64;
const C2: usize = 48;
/// Experts of the routing kernel: four tiles of 16.
const E: usize = 64;
/// How many the routing kernel picks from all experts, from one 32-wide tile, and from a merge.
const K_ALL: usize = 8;
const K_TILE: usize = 5;
const K_MERGE: usize = 16;

#[tilekit::kernel]
fn sorts(
    x: Gl<f32, 2>,
    y: Gl<f32, 2>,
    z: Gl<i32, 2>,
    keys: GlMut<f32, 2>,
    idx: GlMut<i32, 2>,
    keys2: GlMut<f32, 2>,
    idx2: GlMut<i32, 2>,
    ints: GlMut<i32, 2>,
) {
    let t: Rt<f32, 16, C> = load(x.tile(0, 0));
    let (k, i) = sort_row_desc(t, iota_cols());
    store(keys.tile(0, 0), k);
    store(idx.tile(0, 0), i);
    let (k, i) = sort_row_asc(t, iota_cols());
    store(keys.tile(0, 1), k);
    store(idx.tile(0, 1), i);
    // 48 columns in the column layout: the lowering pads each row to 64.
    let u: Rt<f32, 16, C2, Col> = load(y.tile(0, 0));
    let (k, i) = sort_row_desc(u, iota_cols());
    store(keys2.tile(0, 0), k.relayout::<Row>());
    store(idx2.tile(0, 0), i.relayout::<Row>());
    let (k, i) = sort_row_asc(u, iota_cols());
    store(keys2.tile(0, 1), k.relayout::<Row>());
    store(idx2.tile(0, 1), i.relayout::<Row>());
    // Integer keys with a payload counting down: ties go to the higher column.
    let n: Rt<i32, 16, C> = load(z.tile(0, 0));
    let down: Rt<i32, 16, C> = 1000 - iota_cols();
    let (k, i) = sort_row_desc(n, down);
    store(ints.tile(0, 0), k);
    store(ints.tile(0, 1), i);
}

#[tilekit::kernel]
fn route(scores: Gl<f32, 2>, top: GlMut<f32, 2>, experts: GlMut<i32, 2>) {
    // The top K_ALL of E experts, 16 at a time.
    let mut best = topk_empty::<f32, 16, Row>();
    for j in 0..E / 16 {
        let s: Rt<f32, 16, 16> = load(scores.tile(0, j));
        let ids: Rt<i32, 16, 16> = iota_cols() + (16 * j) as i32;
        best = topk_row_merge(K_ALL as u32, s, ids, best);
    }
    store(top.tile(0, 0), best.0);
    store(experts.tile(0, 0), best.1);
}

/// Kept apart from [`route`] so that each kernel stays within sm_80's registers.
#[tilekit::kernel]
fn pick(scores: Gl<f32, 2>, top: GlMut<f32, 2>, experts: GlMut<i32, 2>) {
    // The top K_TILE of the first 32 experts in one op, in the column layout.
    let s: Rt<f32, 16, 32, Col> = load(scores.tile(0, 0));
    let (v, i) = topk_row(K_TILE as u32, s, iota_cols());
    store(top.tile(0, 1), v.relayout::<Row>());
    store(experts.tile(0, 1), i.relayout::<Row>());
    // Two top-16 lists (experts 0..16 and 48..64) merged.
    let a: Rt<f32, 16, 16> = load(scores.tile(0, 0));
    let b: Rt<f32, 16, 16> = load(scores.tile(0, 3));
    let la = topk_row(K_MERGE as u32, a, iota_cols());
    let lb = topk_row(K_MERGE as u32, b, iota_cols() + 48);
    let m = topk_merge(K_MERGE as u32, la, lb);
    store(top.tile(0, 2), m.0);
    store(experts.tile(0, 2), m.1);
}

/// The reference order: `a` before `b`, written from the documented rule.
fn reference_order(descending: bool, a: (f64, i64), b: (f64, i64)) -> Ordering {
    let key = |x: f64| if x.is_nan() { (1, 0.0) } else { (0, x) };
    let (ka, kb) = (key(a.0), key(b.0));
    let by_key =
        ka.0.cmp(&kb.0)
            .then(ka.1.partial_cmp(&kb.1).unwrap_or(Ordering::Equal));
    let by_key = if descending { by_key.reverse() } else { by_key };
    by_key.then(a.1.cmp(&b.1))
}

fn sorted(descending: bool, mut pairs: Vec<(f64, i64)>) -> Vec<(f64, i64)> {
    pairs.sort_by(|&a, &b| reference_order(descending, a, b));
    pairs
}

/// Keys drawn from a few values (so rows are full of ties), with NaN, ±∞, −0 and +0.
fn tie_heavy(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let u = rng.uniform(0.0, 1.0);
            match (u * 20.0) as u32 {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => f64::NEG_INFINITY,
                3 => -0.0,
                4 => 0.0,
                _ => (rng.uniform(-4.0, 4.0) * 2.0).round() / 2.0,
            }
        })
        .collect()
}

fn same_key(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b
}

/// Compares row `r` of a `cols`-wide window at column `c0` of (keys, idx) with `want`.
fn expect_row(
    what: &str,
    keys: &[f64],
    idx: &[f64],
    width: usize,
    c0: usize,
    r: usize,
    want: &[(f64, i64)],
) {
    for (c, &(k, i)) in want.iter().enumerate() {
        let (gk, gi) = (keys[r * width + c0 + c], idx[r * width + c0 + c]);
        assert!(
            same_key(gk, k) && gi == i as f64,
            "{what}: row {r}, position {c}: got ({gk}, {gi}), expected ({k}, {i})"
        );
    }
}

fn check_sorts(device: &Device) {
    let mut rng = Rng::fresh();
    let seed = rng.seed;
    let what = |s: &str| format!("{s} on {}, seed {seed}", device.name());
    let xs = tie_heavy(&mut rng, 16 * C);
    let ys = tie_heavy(&mut rng, 16 * C2);
    let zs: Vec<f64> = (0..16 * C)
        .map(|_| (rng.uniform(-3.0, 3.0)).round() * 1e8)
        .collect();
    let x = HostTensor::new(F32, &[16, C], &xs).unwrap();
    let y = HostTensor::new(F32, &[16, C2], &ys).unwrap();
    let z = HostTensor::new(I32, &[16, C], &zs).unwrap();
    let mut keys = HostTensor::full(F32, &[16, 2 * C], 999.0);
    let mut idx = HostTensor::full(I32, &[16, 2 * C], 999.0);
    let mut keys2 = HostTensor::full(F32, &[16, 2 * C2], 999.0);
    let mut idx2 = HostTensor::full(I32, &[16, 2 * C2], 999.0);
    let mut ints = HostTensor::full(I32, &[16, 2 * C], 999.0);
    sorts::launch(
        device, 1, &x, &y, &z, &mut keys, &mut idx, &mut keys2, &mut idx2, &mut ints,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", what("launch")));
    let (k, i, k2, i2, n) = (
        keys.to_vec(),
        idx.to_vec(),
        keys2.to_vec(),
        idx2.to_vec(),
        ints.to_vec(),
    );
    for r in 0..16 {
        let row = |v: &[f64], w: usize| -> Vec<(f64, i64)> {
            (0..w).map(|c| (v[r * w + c], c as i64)).collect()
        };
        expect_row(
            &what("f32 desc"),
            &k,
            &i,
            2 * C,
            0,
            r,
            &sorted(true, row(&xs, C)),
        );
        expect_row(
            &what("f32 asc"),
            &k,
            &i,
            2 * C,
            C,
            r,
            &sorted(false, row(&xs, C)),
        );
        let w2 = 2 * C2;
        expect_row(
            &what("f32 48 desc"),
            &k2,
            &i2,
            w2,
            0,
            r,
            &sorted(true, row(&ys, C2)),
        );
        expect_row(
            &what("f32 48 asc"),
            &k2,
            &i2,
            w2,
            C2,
            r,
            &sorted(false, row(&ys, C2)),
        );
        let int_row: Vec<(f64, i64)> = (0..C).map(|c| (zs[r * C + c], 1000 - c as i64)).collect();
        let want = sorted(true, int_row);
        let (nk, ni): (Vec<f64>, Vec<f64>) = (0..C)
            .map(|c| (n[r * 2 * C + c], n[r * 2 * C + C + c]))
            .unzip();
        expect_row(
            &what(&format!("i32 desc, row {r}")),
            &nk,
            &ni,
            C,
            0,
            0,
            &want,
        );
    }
}

fn check_route(device: &Device) {
    let mut rng = Rng::fresh();
    let seed = rng.seed;
    let what = |s: &str| format!("{s} on {}, seed {seed}", device.name());
    let s = tie_heavy(&mut rng, 16 * E);
    let scores = HostTensor::new(F32, &[16, E], &s).unwrap();
    let mut top = HostTensor::full(F32, &[16, 48], 999.0);
    let mut experts = HostTensor::full(I32, &[16, 48], 999.0);
    route::launch(device, 1, &scores, &mut top, &mut experts)
        .unwrap_or_else(|e| panic!("{}: {e}", what("launch route")));
    pick::launch(device, 1, &scores, &mut top, &mut experts)
        .unwrap_or_else(|e| panic!("{}: {e}", what("launch pick")));
    let (v, i) = (top.to_vec(), experts.to_vec());
    let empty = (f64::NEG_INFINITY, i64::from(i32::MAX));
    for r in 0..16 {
        let pairs = |cols: &mut dyn Iterator<Item = usize>| -> Vec<(f64, i64)> {
            cols.map(|c| (s[r * E + c], c as i64)).collect()
        };
        let mut all = sorted(true, pairs(&mut (0..E)));
        all.truncate(K_ALL);
        all.resize(16, empty);
        expect_row(&what("top 8 of 64"), &v, &i, 48, 0, r, &all);
        let mut tile = sorted(true, pairs(&mut (0..32)));
        tile.truncate(K_TILE);
        tile.resize(16, empty);
        expect_row(&what("top 5 of 32"), &v, &i, 48, 16, r, &tile);
        let mut merged = sorted(true, pairs(&mut (0..16).chain(48..64)));
        merged.truncate(K_MERGE);
        expect_row(&what("merged top 16"), &v, &i, 48, 32, r, &merged);
    }
}

#[test]
fn sorts_agree_with_rust_on_the_interpreter() {
    check_sorts(&Device::Cpu);
}

#[test]
fn topk_agrees_with_rust_on_the_interpreter() {
    check_route(&Device::Cpu);
}

#[test]
fn sorts_agree_with_rust_on_the_sm_80_emulator() {
    check_sorts(&Device::emulator("sm_80").unwrap());
}

#[test]
fn sorts_agree_with_rust_on_the_sm_90a_emulator() {
    check_sorts(&Device::emulator("sm_90a").unwrap());
}

#[test]
fn topk_agrees_with_rust_on_the_sm_80_emulator() {
    check_route(&Device::emulator("sm_80").unwrap());
}

#[test]
fn topk_agrees_with_rust_on_the_sm_90a_emulator() {
    check_route(&Device::emulator("sm_90a").unwrap());
}

#[test]
fn sorts_and_topk_compile_for_every_amd_target() {
    for t in [Target::Gfx90a, Target::Gfx942, Target::Gfx950] {
        for (m, name) in [
            (sorts::module(), sorts::NAME),
            (route::module(), route::NAME),
            (pick::module(), pick::NAME),
        ] {
            let c = tilekit::codegen::compile(m, name, t).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert!(c.code_object().is_some_and(|o| !o.is_empty()), "{t} {name}");
        }
    }
}

#[test]
fn sort_and_topk_ops_round_trip_through_the_text_form() {
    let mut all = String::new();
    for m in [sorts::module(), route::module(), pick::module()] {
        let text = tilekit::ir::print_module(m);
        let back = tilekit::ir::parse_module(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(tilekit::ir::print_module(&back), text);
        all += &text;
    }
    for op in [
        "sort_row.desc",
        "sort_row.asc",
        "topk_row[8]",
        "topk_row[5]",
        "topk_row[16]",
    ] {
        assert!(all.contains(op), "{op} missing from\n{all}");
    }
}

#[test]
fn topk_of_more_than_16_is_a_verifier_error() {
    let mut b = tilekit::ir::FuncBuilder::kernel("k17", 1);
    let ty = tilekit::ir::Type::tile(F32, 16, 16, tilekit::ir::Layout::Row);
    let it = tilekit::ir::Type::tile(I32, 16, 16, tilekit::ir::Layout::Row);
    let t = b.fill(ty.clone(), 1.0);
    let i = b.fill(it, 0.0);
    b.topk_row(17, t, i, t, i);
    let mut m = tilekit::ir::Module::new();
    m.push(b.finish());
    let err = tilekit::ir::verify(&m).unwrap_err();
    let text = format!("{err:?}");
    assert!(text.contains("17") && text.contains("1 to 16"), "{text}");
}
