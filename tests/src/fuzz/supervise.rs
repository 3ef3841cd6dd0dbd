//! The parent side: runs each harness in a child process (the fuzz binary again, with
//! `--child`), a few at a time, restarts a child that hung or died while its time lasts, and
//! adds up what the children report. A child that dies without saying it is done aborted
//! (stack overflow, out of memory, a signal): its last input becomes the reproducer.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::engine::{one_line, read_last_input, save_reproducer};
use super::mutate::hash;

/// One failure, as the report lists it.
#[derive(Clone, Debug)]
pub struct Failure {
    pub kind: String,
    pub path: String,
    pub message: String,
}

/// What one harness did, over all its child processes.
#[derive(Clone, Debug, Default)]
pub struct HarnessReport {
    pub name: String,
    pub tried: u64,
    pub verified: u64,
    pub ran: u64,
    pub panics: u64,
    pub mismatches: u64,
    pub hangs: u64,
    pub aborts: u64,
    pub failures: Vec<Failure>,
    pub seconds: f64,
}

impl HarnessReport {
    /// Adds up another run of the same harness.
    fn merge(&mut self, r: HarnessReport) {
        self.tried += r.tried;
        self.verified += r.verified;
        self.ran += r.ran;
        self.panics += r.panics;
        self.mismatches += r.mismatches;
        self.hangs += r.hangs;
        self.aborts += r.aborts;
        self.failures.extend(r.failures);
        self.seconds += r.seconds;
    }

    pub fn failed(&self) -> u64 {
        self.panics + self.mismatches + self.hangs + self.aborts
    }
}

/// How to run the harnesses.
#[derive(Clone, Debug)]
pub struct Plan {
    pub harnesses: Vec<String>,
    /// Wall-clock seconds for all of them together.
    pub seconds: f64,
    /// Children at a time.
    pub jobs: usize,
    pub seed: u64,
    pub out: PathBuf,
    pub timeout: Duration,
    /// The binary to start as a child (the fuzz binary itself).
    pub exe: PathBuf,
}

/// Restarts after a hang or an abort, at most (each costs a timeout or a start-up).
const MAX_RESTARTS: u32 = 8;

/// Runs every harness of `plan`; the reports come back in the plan's order.
///
/// Each harness gets an equal share of `jobs × seconds` of process time. The shares are laid
/// end to end and cut into `jobs` slots of `seconds` each (McNaughton's wrap-around rule), so
/// the run ends on time with every slot busy; a harness cut at a slot's end runs as two
/// children, one in each slot, and its report adds both up.
pub fn run(plan: &Plan) -> Vec<HarnessReport> {
    let n = plan.harnesses.len().max(1);
    let jobs = plan.jobs.clamp(1, n);
    let share = plan.seconds * jobs as f64 / n as f64;
    let mut slots: Vec<Vec<(usize, String, f64)>> = vec![Vec::new(); jobs];
    let (mut slot, mut used) = (0, 0.0);
    for (i, name) in plan.harnesses.iter().enumerate() {
        let mut left = share;
        while left > 1e-6 && slot < jobs {
            let piece = left.min(plan.seconds - used);
            slots[slot].push((i, name.clone(), piece));
            left -= piece;
            used += piece;
            if plan.seconds - used < 1e-6 {
                slot += 1;
                used = 0.0;
            }
        }
    }
    let reports: Arc<Mutex<Vec<HarnessReport>>> = Arc::new(Mutex::new(
        plan.harnesses
            .iter()
            .map(|h| HarnessReport {
                name: h.clone(),
                ..Default::default()
            })
            .collect(),
    ));
    let threads: Vec<_> = slots
        .into_iter()
        .enumerate()
        .map(|(s, tasks)| {
            let (reports, plan) = (reports.clone(), plan.clone());
            std::thread::spawn(move || {
                for (i, name, seconds) in tasks {
                    let r = run_harness(&plan, i, s, &name, seconds);
                    if let Ok(mut rs) = reports.lock() {
                        rs[i].merge(r);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let reports = reports.lock().map(|r| r.clone()).unwrap_or_default();
    reports
}

/// Counts from a `FUZZ-PROGRESS` line.
fn parse_progress(line: &str) -> Option<[u64; 3]> {
    let rest = line.strip_prefix("FUZZ-PROGRESS ")?;
    let mut out = [0; 3];
    for (i, key) in ["tried=", "verified=", "ran="].iter().enumerate() {
        let field = rest.split(' ').find_map(|f| f.strip_prefix(key))?;
        out[i] = field.parse().ok()?;
    }
    Some(out)
}

fn parse_failure(line: &str) -> Option<Failure> {
    let rest = line.strip_prefix("FUZZ-FAILURE kind=")?;
    let (kind, rest) = rest.split_once(" path=")?;
    let (path, message) = rest.split_once(" message=")?;
    Some(Failure {
        kind: kind.into(),
        path: path.into(),
        message: message.into(),
    })
}

/// Runs harness `name` for `seconds` in slot `slot`, restarting its child after a hang or an
/// abort while time is left.
fn run_harness(plan: &Plan, index: usize, slot: usize, name: &str, seconds: f64) -> HarnessReport {
    let mut report = HarnessReport {
        name: name.to_string(),
        ..Default::default()
    };
    let start = Instant::now();
    let running = plan.out.join(".running");
    let _ = std::fs::create_dir_all(&running);
    let last_input = running.join(format!("{name}-{slot}.input"));
    for restart in 0..=MAX_RESTARTS {
        let left = seconds - start.elapsed().as_secs_f64();
        if left < 0.5 {
            break;
        }
        let seed = hash(format!("{}:{index}:{slot}:{restart}", plan.seed).as_bytes());
        let mut child = match Command::new(&plan.exe)
            .args(["--child", name, "--seconds", &format!("{left:.2}")])
            .args([
                "--seed",
                &seed.to_string(),
                "--timeout",
                &plan.timeout.as_secs_f64().to_string(),
            ])
            .arg("--out")
            .arg(&plan.out)
            .arg("--last-input")
            .arg(&last_input)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                report.aborts += 1;
                report.failures.push(Failure {
                    kind: "abort".into(),
                    path: "-".into(),
                    message: format!("could not start {}: {e}", plan.exe.display()),
                });
                break;
            }
        };
        println!(
            "fuzz: {name}: child {} with seed {seed} for {left:.1} s",
            child.id()
        );
        // The last few KiB of the child's standard error say why it died.
        let stderr = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = e.read_to_end(&mut buf);
                let from = buf.len().saturating_sub(4096);
                String::from_utf8_lossy(&buf[from..]).into_owned()
            })
        });
        let mut counts = [0u64; 3];
        let mut done = false;
        let mut hung = false;
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(c) = parse_progress(&line) {
                    counts = c;
                } else if let Some(f) = parse_failure(&line) {
                    match f.kind.as_str() {
                        "panic" => report.panics += 1,
                        "hang" => {
                            report.hangs += 1;
                            hung = true;
                        }
                        _ => report.mismatches += 1,
                    }
                    if !f.path.starts_with('(') {
                        println!(
                            "fuzz: {name}: {} {}: {}",
                            f.kind,
                            f.path,
                            one_line(&f.message, 200)
                        );
                        report.failures.push(f);
                    }
                } else if line == "FUZZ-DONE" {
                    done = true;
                }
            }
        }
        let pid = child.id();
        let status = child.wait();
        // A child that died leaves its scratch folder behind.
        let _ = std::fs::remove_dir_all(super::engine::scratch_dir(name, pid));
        let err_tail = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
        report.tried += counts[0];
        report.verified += counts[1];
        report.ran += counts[2];
        let exited_cleanly = matches!(&status, Ok(s) if s.success());
        if done && exited_cleanly {
            break;
        }
        if !(done && hung) {
            // Died without finishing: an abort. Its last input is the reproducer.
            report.aborts += 1;
            let input = read_last_input(&last_input).unwrap_or_default();
            let why = err_tail
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .to_string();
            let message = format!(
                "the child process ended with {}: {why}",
                status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string())
            );
            let path = save_reproducer(&plan.out, name, "abort", &input, &message);
            println!(
                "fuzz: {name}: abort {}: {}",
                path.display(),
                one_line(&message, 200)
            );
            report.failures.push(Failure {
                kind: "abort".into(),
                path: path.display().to_string(),
                message,
            });
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    report
}

/// The table of counts and the list of failures.
pub fn render(reports: &[HarnessReport]) -> String {
    let mut s = format!(
        "{:<12} {:>10} {:>10} {:>10} {:>7} {:>7} {:>7} {:>7} {:>8}\n",
        "harness", "tried", "verified", "ran", "panics", "aborts", "hangs", "wrong", "cpu-s"
    );
    let mut total = HarnessReport {
        name: "total".into(),
        ..Default::default()
    };
    let row = |r: &HarnessReport| {
        format!(
            "{:<12} {:>10} {:>10} {:>10} {:>7} {:>7} {:>7} {:>7} {:>8.1}\n",
            r.name,
            r.tried,
            r.verified,
            r.ran,
            r.panics,
            r.aborts,
            r.hangs,
            r.mismatches,
            r.seconds
        )
    };
    for r in reports {
        s.push_str(&row(r));
        total.tried += r.tried;
        total.verified += r.verified;
        total.ran += r.ran;
        total.panics += r.panics;
        total.aborts += r.aborts;
        total.hangs += r.hangs;
        total.mismatches += r.mismatches;
        total.seconds += r.seconds;
    }
    s.push_str(&row(&total));
    s.push_str(
        "verified: reached the verifier / bundle validation / the kernel's shape rule; \
         ran: passed them (verified, interpreted, loaded, launched)\n",
    );
    for r in reports {
        for f in &r.failures {
            s.push_str(&format!(
                "FAILURE {} {}: {}\n  reproducer: {}\n  replay: cargo run --release -p tilekit-tests --bin fuzz -- --replay {} {}\n",
                r.name,
                f.kind,
                one_line(&f.message, 400),
                f.path,
                r.name,
                f.path
            ));
        }
    }
    for r in reports {
        s.push_str(&format!(
            "FUZZ-SUMMARY {} tried={} verified={} ran={} failures={}\n",
            r.name,
            r.tried,
            r.verified,
            r.ran,
            r.failed()
        ));
    }
    s
}

/// The default folder for reproducers: `target/fuzz-failures` of the workspace.
pub fn default_out() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("fuzz-failures")
}
