//! The warp-specialized GEMM on the interpreter: results, schedule independence, and the
//! interpreter catching broken synchronization.

use tilekit::ir::interp::{self, Arg, HostTensor, InterpError, Schedule};
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit_examples::ws_gemm::{self, WsFault, WsGemmConfig};
use tilekit_tests::compare::normalized_max_error;
use tilekit_tests::random::TestRng;

/// As for the plain GEMM: with f32 output the only error is f32 accumulation over K ≤ 130
/// (a few ulps, 6e-8, relative); a bf16 output adds one rounding (2⁻⁸ ≈ 4e-3 relative).
fn tolerance(cfg: &WsGemmConfig) -> f64 {
    if cfg.out == F32 {
        1e-5
    } else {
        1e-2
    }
}

/// (M, N, K): exact tiles, then partial tiles everywhere; K of 64–130 is 2–5 K steps, so the
/// 2-stage ring wraps around and both parities of every semaphore are used.
const SHAPES: [(usize, usize, usize); 3] = [(64, 64, 64), (100, 72, 96), (17, 129, 130)];

fn check(cfg: &WsGemmConfig) {
    let mut rng = TestRng::fresh();
    for (m, n, k) in SHAPES {
        let a = rng.tensor(BF16, &[m, k], -1.0, 1.0);
        let b = rng.tensor(BF16, &[k, n], -1.0, 1.0);
        let c = ws_gemm::run(cfg, &a, &b).unwrap_or_else(|e| panic!("seed {}: {e}", rng.seed));
        let want = ws_gemm::reference(&a.to_vec(), &b.to_vec(), m, k, n);
        let err = normalized_max_error(&c.to_vec(), &want);
        let what = format!(
            "ws_gemm {m}×{n}×{k} ({} consumers, {} stages, out {})",
            cfg.consumers, cfg.stages, cfg.out
        );
        eprintln!("{what}: normalized max error {err:.3e}");
        let tol = tolerance(cfg);
        assert!(
            err <= tol,
            "{what}: max|C − ref| / max|ref| = {err:.3e} > {tol:.0e}; seed {}",
            rng.seed
        );
    }
}

#[test]
fn ws_gemm_with_two_consumers_matches_the_reference() {
    check(&WsGemmConfig::default());
}

#[test]
fn ws_gemm_with_four_consumers_and_bf16_output_matches_the_reference() {
    check(&WsGemmConfig {
        consumers: 4,
        out: BF16,
        ..WsGemmConfig::default()
    });
}

#[test]
fn ws_gemm_with_three_stages_matches_the_reference() {
    check(&WsGemmConfig {
        stages: 3,
        block_k: 16,
        ..WsGemmConfig::default()
    });
}

#[test]
fn ws_gemm_gives_the_same_bits_under_every_schedule() {
    let mut rng = TestRng::fresh();
    let a = rng.tensor(BF16, &[100, 130], -1.0, 1.0);
    let b = rng.tensor(BF16, &[130, 72], -1.0, 1.0);
    for consumers in [2, 4] {
        let cfg = WsGemmConfig {
            consumers,
            ..WsGemmConfig::default()
        };
        let base = ws_gemm::run(&cfg, &a, &b).unwrap();
        for quantum in [1, 7] {
            let c = ws_gemm::run_scheduled(&cfg, Schedule::RoundRobin { quantum }, &a, &b)
                .unwrap_or_else(|e| panic!("quantum {quantum}: {e}"));
            assert!(
                c == base,
                "{consumers} consumers, quantum {quantum}: bits differ from the default schedule; seed {}",
                rng.seed
            );
        }
    }
}

#[test]
fn ws_gemm_without_the_consumer_wait_is_caught() {
    // Consumers that do not wait for `full[s]` read a stage before its copies land: they see
    // uninitialized shared memory (NaN in the interpreter) or a stale tile, and they run ahead
    // arriving on `empty` out of turn, which leaves the producer waiting for a phase that never
    // completes. A wrong result, a read of shared memory nothing wrote, or a deadlock must come
    // out, under every schedule: K = 64 is 2 steps (the producer never has to wait), K = 160 is 5.
    let mut rng = TestRng::fresh();
    let cfg = WsGemmConfig {
        fault: WsFault::ConsumerSkipsFullWait,
        ..WsGemmConfig::default()
    };
    for (m, n, k) in [(64, 64, 64), (64, 64, 160)] {
        let a = rng.tensor(BF16, &[m, k], -1.0, 1.0);
        let b = rng.tensor(BF16, &[k, n], -1.0, 1.0);
        let want = ws_gemm::reference(&a.to_vec(), &b.to_vec(), m, k, n);
        for schedule in [
            Schedule::UntilBlocked,
            Schedule::RoundRobin { quantum: 1 },
            Schedule::RoundRobin { quantum: 7 },
        ] {
            let what = format!("K {k}, {schedule:?}");
            match ws_gemm::run_scheduled(&cfg, schedule, &a, &b) {
                Ok(c) => {
                    let err = normalized_max_error(&c.to_vec(), &want);
                    let nans = c.to_vec().iter().filter(|x| x.is_nan()).count();
                    eprintln!(
                        "no full wait, {what}: {nans} NaN outputs, normalized max error {err:.3e}"
                    );
                    assert!(
                        err > 0.1,
                        "{what}: a kernel without the wait matched the reference ({err:.3e}); seed {}",
                        rng.seed
                    );
                }
                Err(InterpError::Deadlock { waits, .. }) => {
                    eprintln!("no full wait, {what}: deadlock: {}", waits.join(" / "));
                }
                Err(e @ InterpError::Runtime { .. })
                    if e.to_string().contains("before anything wrote it") =>
                {
                    eprintln!("no full wait, {what}: {e}");
                }
                Err(e) => panic!(
                    "{what}: expected a wrong result, a read of unwritten shared memory or a deadlock, got {e}"
                ),
            }
        }
    }
}

#[test]
fn ws_gemm_whose_producer_never_arrives_deadlocks_naming_every_warp() {
    let mut rng = TestRng::fresh();
    let a = rng.tensor(BF16, &[64, 128], -1.0, 1.0);
    let b = rng.tensor(BF16, &[128, 64], -1.0, 1.0);
    let cfg = WsGemmConfig {
        fault: WsFault::ProducerNeverArrives,
        ..WsGemmConfig::default()
    };
    let err = ws_gemm::run(&cfg, &a, &b).unwrap_err();
    eprintln!("{err}");
    let InterpError::Deadlock { block, waits } = &err else {
        panic!("expected a deadlock, got {err}");
    };
    assert_eq!(*block, [0, 0, 0]);
    assert_eq!(waits.len(), 3, "{err}");
    // The producer filled both stages and waits for the consumers to free stage 0 (parity 0 of
    // `empty[0]`); the consumers wait for stage 0 to fill (parity 0 of `full[0]`).
    for (w, line) in waits.iter().enumerate() {
        assert!(
            line.contains(&format!("warp {w}: waits at @ws_gemm"))
                && line.contains("`sem.wait`")
                && line.contains("for parity 0 of semaphore")
                && line.contains("ws_gemm.rs"),
            "{err}"
        );
    }
    // The diagnosis is in the semaphore states: no consumer ever freed a stage, and stage 0 has
    // all its bytes but not the producer's arrival.
    assert!(waits[0].contains("phase 0 has 0/2 arrivals"), "{err}");
    for line in &waits[1..] {
        assert!(
            line.contains("phase 0 has 0/1 arrivals and 8192/8192 bytes"),
            "{err}"
        );
    }
}

#[test]
fn ws_gemm_rejects_a_call_without_the_output() {
    let cfg = WsGemmConfig::default();
    let module = ws_gemm::build(&cfg);
    let mut args = vec![
        Arg::Tensor(HostTensor::zeros(BF16, &[16, 16])),
        Arg::Tensor(HostTensor::zeros(BF16, &[16, 16])),
    ];
    let err = interp::run(&module, ws_gemm::KERNEL, cfg.grid(16, 16), &mut args).unwrap_err();
    let InterpError::Argument { message } = &err else {
        panic!("expected an argument error, got {err}");
    };
    assert!(
        message.contains("kernel @ws_gemm takes 3 arguments, got 2"),
        "{message}"
    );
}
