//! The fuzz runner: `fuzz --seconds N` runs every harness (`tilekit_tests::fuzz`) for a share of
//! N seconds of wall-clock time, two at a time, each in a child process, and prints per harness
//! the inputs tried, those that reached verification and those that ran, and every failure with
//! its reproducer. Exit code 1 when anything failed.
//!
//! ```text
//! fuzz [--seconds N] [--jobs J] [--seed S] [--timeout SECS] [--out DIR] [--harness NAME]…
//! fuzz --replay HARNESS FILE        run one reproducer again (panics not caught)
//! ```

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use tilekit_tests::fuzz::{engine, supervise, HARNESSES};

/// Address space of a child: an input that makes the code under test allocate without bound
/// ends the child (an abort, reported) instead of the machine's memory.
const CHILD_ADDRESS_SPACE: u64 = 6 << 30;

fn limit_memory() {
    let lim = libc::rlimit {
        rlim_cur: CHILD_ADDRESS_SPACE,
        rlim_max: CHILD_ADDRESS_SPACE,
    };
    // SAFETY: setrlimit reads the struct it is given, which lives across the call.
    unsafe {
        libc::setrlimit(libc::RLIMIT_AS, &lim);
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut seconds = 60.0;
    let mut jobs = 2;
    let mut seed = None;
    let mut timeout = 5.0;
    let mut out = supervise::default_out();
    let mut harnesses = Vec::new();
    let mut child = None;
    let mut last_input = None;
    let mut replay = None;
    while let Some(a) = args.next() {
        let mut value = |what: &str| args.next().with_context(|| format!("{a} needs {what}"));
        match a.as_str() {
            "--seconds" => seconds = value("a number of seconds")?.parse()?,
            "--jobs" => jobs = value("a number of processes")?.parse()?,
            "--seed" => seed = Some(value("a number")?.parse()?),
            "--timeout" => timeout = value("seconds")?.parse()?,
            "--out" => out = PathBuf::from(value("a folder")?),
            "--harness" => harnesses.push(value("a harness name")?),
            "--child" => child = Some(value("a harness name")?),
            "--last-input" => last_input = Some(PathBuf::from(value("a file")?)),
            "--replay" => {
                replay = Some((value("a harness name")?, PathBuf::from(value("a file")?)))
            }
            "-h" | "--help" => {
                println!(
                    "fuzz [--seconds N] [--jobs J] [--seed S] [--timeout SECS] [--out DIR] [--harness NAME]...\n\
                     fuzz --replay HARNESS FILE\nharnesses: {}",
                    HARNESSES.join(", ")
                );
                return Ok(());
            }
            _ => bail!("unknown argument `{a}` (try --help)"),
        }
    }
    if let Some((harness, file)) = replay {
        let input = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        match engine::replay(&harness, &input) {
            Ok(stage) => println!("{harness}: no failure; the input got as far as {stage:?}"),
            Err(message) => {
                println!("{harness}: FAILURE: {message}");
                std::process::exit(1);
            }
        }
        return Ok(());
    }
    let seed = seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed)
    });
    let timeout = Duration::from_secs_f64(timeout);
    if let Some(harness) = child {
        limit_memory();
        let cfg = engine::ChildConfig {
            last_input: last_input.unwrap_or_else(|| out.join(format!(".running/{harness}.input"))),
            harness,
            seconds,
            seed,
            out,
            timeout,
        };
        std::process::exit(engine::run_child(&cfg));
    }
    for h in &harnesses {
        if !HARNESSES.contains(&h.as_str()) {
            bail!("no harness `{h}`; harnesses: {}", HARNESSES.join(", "));
        }
    }
    if harnesses.is_empty() {
        harnesses = HARNESSES.iter().map(|s| s.to_string()).collect();
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out = std::fs::canonicalize(&out)?;
    println!(
        "fuzz: seed {seed}; {} for {seconds} s in all, {jobs} at a time; reproducers in {}",
        harnesses.join(", "),
        out.display()
    );
    let plan = supervise::Plan {
        harnesses,
        seconds,
        jobs,
        seed,
        out,
        timeout,
        exe: std::env::current_exe()?,
    };
    let reports = supervise::run(&plan);
    print!("{}", supervise::render(&reports));
    println!("fuzz: seed {seed} (rerun with --seed {seed})");
    if reports.iter().any(|r| r.failed() > 0) {
        std::process::exit(1);
    }
    Ok(())
}
