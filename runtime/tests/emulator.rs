//! The emulator device: every registered library kernel, compiled to PTX for sm_80 and for
//! sm_90a exactly as for a GPU, runs its self-test under `tilekit-emu` with the sanitizer on and
//! agrees with its f64 reference.
#![cfg(feature = "jit")]

use std::sync::OnceLock;

use tilekit::{Device, Error, Tensor};

/// One run of every registered self-test on `emu:<target>` through the CLI's `selftest`: its
/// report and exit code, and the shared-memory statistics of every launch it made. This
/// module's tests check that the self-tests pass; `bank_conflicts` reads the statistics of the
/// same run (emulating the library twice would double the slowest tests of the suite).
pub(crate) struct SelftestRun {
    pub out: String,
    pub code: i32,
    pub shared: Vec<tilekit_emu::banks::KernelSharedAccesses>,
}

/// The run of [`SelftestRun`] on `emu:sm_80` or `emu:sm_90a`, made once per test binary.
pub(crate) fn library_selftests(target: &str) -> &'static SelftestRun {
    static SM80: OnceLock<SelftestRun> = OnceLock::new();
    static SM90A: OnceLock<SelftestRun> = OnceLock::new();
    let cell = match target {
        "sm_80" => &SM80,
        "sm_90a" => &SM90A,
        _ => panic!("no emulated self-test run for {target}"),
    };
    cell.get_or_init(|| {
        let device = Device::from_name(&format!("emu:{target}")).expect("the emulator opens");
        let start = std::time::Instant::now();
        let ((out, code), shared) = tilekit_emu::banks::collect(|| tilekit::cli::selftest(&device));
        eprintln!(
            "emu:{target} self-tests took {:.1} s",
            start.elapsed().as_secs_f64()
        );
        SelftestRun { out, code, shared }
    })
}

fn selftest_on(target: &str) {
    let SelftestRun { out, code, .. } = library_selftests(target);
    assert_eq!(*code, 0, "self-tests failed on emu:{target}:\n{out}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
}

#[test]
fn library_selftests_pass_on_the_sm_80_emulator() {
    selftest_on("sm_80");
}

#[test]
fn library_selftests_pass_on_the_sm_90a_emulator() {
    selftest_on("sm_90a");
}

#[test]
fn emulator_names_parse_and_unknown_targets_are_refused() {
    let d = Device::from_name("emu:sm_90a").unwrap();
    assert_eq!(d.name(), "emu:sm_90a");
    assert_eq!(d.target().unwrap(), Some("sm_90a"));
    assert!(matches!(
        Device::from_name("emu:sm_70"),
        Err(Error::UnknownDevice { .. })
    ));
}

#[test]
fn tensors_on_the_emulator_hold_their_values() {
    let d = Device::emulator("sm_80").unwrap();
    let values: Vec<f32> = (0..37).map(|i| i as f32 * 0.25 - 3.0).collect();
    let t = Tensor::from_slice(&values, &[37], &d).unwrap();
    assert_eq!(
        t.to_host().unwrap().to_vec(),
        values.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()
    );
}

/// The emulator's speed on real work, with the results checked: a 512³ GEMM and a 1k-token
/// attention head (d = 64) on emu:sm_80. Run with
/// `cargo test --release -p tilekit --test all -- emulator --ignored --nocapture`.
#[test]
#[ignore = "timing: a few seconds in release, longer in a test build"]
fn timed_gemm_512_and_attention_head_1k_match_their_references() {
    use tilekit::ir::interp::HostTensor;
    use tilekit::ir::ScalarType::{BF16, F32};
    use tilekit::kernels::check::{normalized_max_error, Rng};
    use tilekit::kernels::{attention, gemm};
    use tilekit::ScalarArg;

    let device = Device::emulator("sm_80").unwrap();
    let mut rng = Rng::fresh();
    let n = 512;
    let a = rng.tensor(BF16, &[n, n], -1.0, 1.0);
    let b = rng.tensor(BF16, &[n, n], -1.0, 1.0);
    let mut c = HostTensor::zeros(F32, &[n, n]);
    let t = std::time::Instant::now();
    gemm::gemm::<f32, 64, 64, 32, 32, 32>::launch(
        &device,
        gemm::grid(n, n, 64, 64),
        &a,
        &b,
        &mut c,
    )
    .unwrap();
    let secs = t.elapsed().as_secs_f64();
    let report = device.emulator_report().unwrap();
    eprintln!(
        "gemm 512³ on emu:sm_80: {secs:.2} s, {} warp-instructions",
        report.profile.total
    );
    let want = gemm::reference(&a.to_vec(), &b.to_vec(), n, n, n);
    let err = normalized_max_error(&c.to_vec(), &want);
    assert!(err < 1e-5, "gemm error {err:.2e} (seed {})", rng.seed);

    let (bh, seq, d) = (1, 1024, 64);
    let q = rng.tensor(BF16, &[bh, seq, d], -1.0, 1.0);
    let k = rng.tensor(BF16, &[bh, seq, d], -1.0, 1.0);
    let v = rng.tensor(BF16, &[bh, seq, d], -1.0, 1.0);
    let mut o = HostTensor::zeros(BF16, &[bh, seq, d]);
    let mut lse = HostTensor::zeros(F32, &[bh, seq]);
    let t = std::time::Instant::now();
    attention::attention_fwd::<tilekit::dsl::bf16, 64, 16, 64, 4, false>::launch(
        &device,
        attention::grid(bh, seq, 64),
        &q,
        &k,
        &v,
        &mut o,
        &mut lse,
        ScalarArg::from(0.125f32),
    )
    .unwrap();
    let secs = t.elapsed().as_secs_f64();
    let report = device.emulator_report().unwrap();
    eprintln!(
        "attention 1×1024×64 on emu:sm_80: {secs:.2} s, {} warp-instructions",
        report.profile.total
    );
    let (wo, _) = attention::reference(
        &q.to_vec(),
        &k.to_vec(),
        &v.to_vec(),
        (bh, seq, seq, d),
        0.125,
        false,
    );
    let err = normalized_max_error(&o.to_vec(), &wo);
    assert!(err < 1e-2, "attention error {err:.2e} (seed {})", rng.seed);
}

#[test]
fn kernels_take_the_emulators_own_tensors_and_write_their_results_back() {
    use tilekit::ir::ScalarType::{BF16, F32};
    use tilekit::kernels::gemm;
    let device = Device::emulator("sm_90a").unwrap();
    let (m, n, k) = (64, 48, 32);
    let av: Vec<f64> = (0..m * k).map(|i| ((i % 13) as f64 - 6.0) / 8.0).collect();
    let bv: Vec<f64> = (0..k * n).map(|i| ((i % 7) as f64 - 3.0) / 4.0).collect();
    let a = Tensor::from_f64(BF16, &[m, k], &av, &device).unwrap();
    let b = Tensor::from_f64(BF16, &[k, n], &bv, &device).unwrap();
    let mut c = Tensor::zeros(F32, &[m, n], &device).unwrap();
    gemm::gemm::<f32, 64, 64, 32, 32, 32>::launch(
        &device,
        gemm::grid(m, n, 64, 64),
        &a,
        &b,
        &mut c,
    )
    .unwrap();
    let want = gemm::reference(&av, &bv, m, k, n);
    let got = c.to_host().unwrap().to_vec();
    // Inputs are exact in bf16 and the sums exact in f32.
    assert_eq!(got, want);
}
