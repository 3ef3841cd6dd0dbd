//! `bitcast` (f32 ↔ i32, bf16 → f16, vectors and scalars) and product reductions (rows,
//! columns, everything) on the interpreter and the PTX emulator against plain Rust (bit patterns
//! from `f32::to_bits` and the `half` crate, products in f64), and compiled for the AMD targets.
#![cfg(feature = "jit")]

use tilekit::codegen::Target;
use tilekit::dsl::*;
use tilekit::half;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F16, F32, I32};
use tilekit::kernels::check::Rng;
use tilekit::Device;

#[tilekit::kernel]
fn bits_and_products(
    x: Gl<f32, 2>,
    h: Gl<bf16, 2>,
    ints: GlMut<i32, 2>,
    negated: GlMut<f32, 2>,
    halves: GlMut<f16, 2>,
    prods: GlMut<f32, 1>,
) {
    let t: Rt<f32, 16, 16> = load(x.tile(0, 0));
    let bits = t.bitcast::<i32>();
    store(ints.tile(0, 0), bits);
    // Flipping the sign bit negates exactly.
    store(negated.tile(0, 0), (bits ^ i32::MIN).bitcast::<f32>());
    let hb: Rt<bf16, 16, 16> = load(h.tile(0, 0));
    store(halves.tile(0, 0), hb.bitcast::<f16>());
    let rp = row_prod(t);
    // A round trip through i32 bits keeps every value.
    store(prods.chunk(0), rp.bitcast::<i32>().bitcast::<f32>());
    store(prods.chunk(1), col_prod(t));
    let all = reduce_all(Red::Prod, rp);
    store(prods.at(32), all.bitcast::<u32>().bitcast::<f32>());
}

fn check_on(device: &Device) {
    let mut rng = Rng::fresh();
    let what = format!("{}, seed {}", device.name(), rng.seed);
    // Factors near 1 keep the 256-element product in range.
    let x = rng.tensor(F32, &[16, 16], 0.5, 1.5);
    let h = rng.tensor(BF16, &[16, 16], -4.0, 4.0);
    let mut ints = HostTensor::zeros(I32, &[16, 16]);
    let mut negated = HostTensor::zeros(F32, &[16, 16]);
    let mut halves = HostTensor::zeros(F16, &[16, 16]);
    let mut prods = HostTensor::full(F32, &[48], 999.0);
    bits_and_products::launch(
        device,
        1,
        &x,
        &h,
        &mut ints,
        &mut negated,
        &mut halves,
        &mut prods,
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let (xs, hs) = (x.to_vec(), h.to_vec());
    for k in 0..256 {
        let xf = xs[k] as f32;
        assert_eq!(
            ints.to_vec()[k],
            f64::from(xf.to_bits() as i32),
            "bits {k}: {what}"
        );
        assert_eq!(negated.to_vec()[k], -xs[k], "negated {k}: {what}");
        let hb = half::bf16::from_f64(hs[k]).to_bits();
        let want = half::f16::from_bits(hb).to_f64();
        assert_eq!(halves.to_vec()[k], want, "bf16 {} as f16: {what}", hs[k]);
    }
    let p = prods.to_vec();
    let close = |got: f64, want: f64, n: f64| (got - want).abs() <= 1e-7 * n * want.abs();
    for i in 0..16 {
        let row: f64 = (0..16).map(|c| xs[i * 16 + c]).product();
        let col: f64 = (0..16).map(|r| xs[r * 16 + i]).product();
        assert!(close(p[i], row, 16.0), "row {i}: {} vs {row}: {what}", p[i]);
        assert!(
            close(p[16 + i], col, 16.0),
            "col {i}: {} vs {col}: {what}",
            p[16 + i]
        );
    }
    let all: f64 = xs.iter().product();
    assert!(close(p[32], all, 256.0), "all: {} vs {all}: {what}", p[32]);
}

#[test]
fn bitcasts_and_products_agree_with_rust_on_the_interpreter() {
    check_on(&Device::Cpu);
}

#[test]
fn bitcasts_and_products_agree_with_rust_on_the_sm_80_emulator() {
    check_on(&Device::emulator("sm_80").unwrap());
}

#[test]
fn bitcasts_and_products_agree_with_rust_on_the_sm_90a_emulator() {
    check_on(&Device::emulator("sm_90a").unwrap());
}

#[test]
fn bitcasts_and_products_compile_for_every_amd_target() {
    for t in [Target::Gfx90a, Target::Gfx942, Target::Gfx950] {
        let c = tilekit::codegen::compile(bits_and_products::module(), bits_and_products::NAME, t)
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        assert!(c.code_object().is_some_and(|o| !o.is_empty()), "{t}");
    }
}

#[test]
fn a_bitcast_to_another_width_is_a_verifier_error() {
    #[tilekit::kernel]
    fn narrowing(x: Gl<f32, 2>, y: GlMut<bf16, 2>) {
        let t: Rt<f32, 16, 16> = load(x.tile(0, 0));
        store(y.tile(0, 0), t.bitcast::<bf16>());
    }
    let e = tilekit::ir::verify(narrowing::module()).unwrap_err();
    let text = format!("{e:?}");
    assert!(
        text.contains("bitcast") || text.contains("4-byte"),
        "{text}"
    );
}
