//! Every path that runs ptxas refuses code it serialized: a kernel whose wgmma ptxas
//! serializes (its C7515 advisory) fails the JIT compile of an sm_90a launch and `tilekit emit`
//! with an error naming the kernel, the advisory's code and ptxas's text, while `tilekit check`
//! prints the advisory in its report and exits with 1. sm_80, which has no wgmma, runs it.
#![cfg(feature = "jit")]

use tilekit::dsl::*;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::check::{poisoned, Rng};
use tilekit::Device;

/// `C = (n − 2)·A·B` for n > 2 (A 64×16, B 16×BN; one warpgroup): `n` steps, each of which
/// but the first two accumulates A·B with `mma_async`. On those two the accumulator passes
/// through the `if` unchanged, so a move defines its registers between a wgmma's issue and its
/// wait, and ptxas serializes every wgmma of the kernel.
#[tilekit::kernel(warps = 4, variants(<16>))]
fn wg_mma_after_two_steps<const BN: usize>(
    a: Gl<bf16, 2>,
    b: Gl<bf16, 2>,
    c: GlMut<f32, 2>,
    n: Scalar<i32>,
) {
    let a_s: St<bf16, 64, 16> = alloc_shared();
    let b_s: St<bf16, 16, BN> = alloc_shared();
    copy_block(a_s, a.tile(0, 0));
    copy_block(b_s, b.tile(0, 0));
    barrier();
    let mut acc: Rt<f32, 16, BN> = zeros();
    for step in range(0, n) {
        if step.gt(1) {
            acc = mma_async_ab_wg(acc, a_s, b_s);
        }
        mma_commit();
        mma_wait::<1>();
    }
    let acc = mma_wait_acc::<0, _>(acc);
    store(c.tile(warp_idx(), 0), acc);
}

fn run(args: &[&str]) -> Result<(String, i32), tilekit::cli::CliError> {
    tilekit::cli::run(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

#[test]
fn serialized_wgmma_fails_the_jit_compile_and_emit_and_check_report_it() {
    const NAME: &str = "wg_mma_after_two_steps<16>";
    let mut rng = Rng::fresh();
    let steps: i32 = 5;
    let a = rng.tensor(BF16, &[64, 16], -1.0, 1.0);
    let b = rng.tensor(BF16, &[16, 16], -1.0, 1.0);
    // The JIT compile of a launch on an sm_90a device.
    let device = Device::emulator("sm_90a").unwrap();
    let mut c = poisoned(F32, &[64, 16]);
    let e = wg_mma_after_two_steps::<16>::launch(&device, [1, 1, 1], &a, &b, &mut c, steps.into())
        .unwrap_err()
        .to_string();
    for part in [
        "wg_mma_after_two_steps",
        "sm_90a",
        "(C7515)",
        "wgmma.mma_async instructions are serialized",
        "TILEKIT_ALLOW_PTXAS_ADVISORIES",
    ] {
        assert!(e.contains(part), "{part} missing from: {e}");
    }
    // On sm_80 the mma is synchronous: it compiles and runs.
    let sm80 = Device::emulator("sm_80").unwrap();
    wg_mma_after_two_steps::<16>::launch(&sm80, [1, 1, 1], &a, &b, &mut c, steps.into())
        .unwrap_or_else(|e| panic!("sm_80: {e} (seed {})", rng.seed));
    let (av, bv, cv) = (a.to_vec(), b.to_vec(), c.to_vec());
    let times = f64::from(steps - 2);
    for i in 0..64 {
        for j in 0..16 {
            let terms = (0..16).map(|p| av[i * 16 + p] * bv[p * 16 + j]);
            let want = times * terms.clone().sum::<f64>();
            // bf16 products are exact in f32; each of the 3·16 additions rounds once.
            let bound = 48.0 * f64::from(f32::EPSILON) * times * terms.map(f64::abs).sum::<f64>();
            let got = cv[i * 16 + j];
            assert!(
                (got - want).abs() <= bound,
                "c[{i}][{j}] = {got}, expected {want} ± {bound:.1e} (seed {})",
                rng.seed
            );
        }
    }

    // `tilekit emit` refuses it, naming the variant.
    let e = run(&["emit", NAME, "--target", "sm_90a", "--stage", "ptx"]).unwrap_err();
    assert_eq!(e.code, 1, "{e}");
    for part in [NAME, "sm_90a", "(C7515)", "TILEKIT_ALLOW_PTXAS_ADVISORIES"] {
        assert!(e.message.contains(part), "{part} missing from: {e}");
    }
    // `tilekit check` reports it and fails after the report.
    let (out, code) = run(&["check", NAME, "--target", "sm_90a"]).unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ptxas advisory (C7515)"), "{out}");
    assert!(out.contains("HGMMA"), "{out}");
    assert!(
        out.contains("FAILED: ptxas gave 1 performance advisory"),
        "{out}"
    );
}
