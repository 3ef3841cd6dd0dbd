//! A short fuzzing run inside `make test`: every harness of `tilekit_tests::fuzz` for a few
//! seconds (the fuzz binary, so that aborts are caught in its child processes). No panics,
//! aborts, hangs or wrong answers, and each harness must have driven enough inputs past its
//! first check that the run was not idle. `make fuzz SECONDS=…` is the long run.
//!
//! The seed is printed (and `TILEKIT_SEED` sets it); each failure's reproducer is listed with
//! the command that replays it.

use std::process::Command;

/// Seconds of wall-clock time for all harnesses together (two run at a time).
const SECONDS: u32 = 30;

/// Inputs per harness that must reach the verifier / validation / the shape rule. Far below
/// what a quiet machine does in the time (thousands to tens of thousands; random launches
/// interpret whole library kernels, tens per second), so that a loaded one passes too; a
/// harness that stops early or rejects everything still fails.
fn min_verified(harness: &str) -> u64 {
    if harness == "launch" {
        20
    } else {
        300
    }
}

#[test]
fn every_harness_runs_briefly_without_a_failure() {
    let seed: u64 = std::env::var("TILEKIT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    let out = std::env::temp_dir().join(format!("tilekit-fuzz-short-{}", std::process::id()));
    let result = Command::new(env!("CARGO_BIN_EXE_fuzz"))
        .args(["--seconds", &SECONDS.to_string(), "--jobs", "2"])
        .args(["--seed", &seed.to_string()])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("running the fuzz binary");
    let stdout = String::from_utf8_lossy(&result.stdout);
    println!("{stdout}");
    let context = format!("seed {seed} (TILEKIT_SEED={seed} replays it); output:\n{stdout}");
    let summaries: Vec<(&str, u64, u64)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("FUZZ-SUMMARY "))
        .map(|l| {
            let name = l.split(' ').next().unwrap_or("");
            let field = |k: &str| {
                l.split(' ')
                    .find_map(|f| f.strip_prefix(k))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            (name, field("verified="), field("failures="))
        })
        .collect();
    assert_eq!(
        summaries.len(),
        tilekit_tests::fuzz::HARNESSES.len(),
        "a summary per harness; {context}"
    );
    for (name, verified, failures) in &summaries {
        assert_eq!(*failures, 0, "harness {name} failed; {context}");
        assert!(
            *verified >= min_verified(name),
            "harness {name}: only {verified} inputs reached verification; {context}"
        );
    }
    assert!(result.status.success(), "{context}");
    let _ = std::fs::remove_dir_all(&out);
}
