//! The loop of one harness in one process: generate, record, run, count. Runs in the child
//! process the supervisor starts (`fuzz --child NAME …`) and prints what it finds as lines on
//! standard output:
//!
//! - `FUZZ-PROGRESS tried=N verified=N ran=N` about once a second and at the end,
//! - `FUZZ-FAILURE kind=panic|mismatch|hang path=FILE message=…` for each new failure,
//! - `FUZZ-DONE` when the time is up (exit code 0), or after a hang (exit code 3: the stuck
//!   thread cannot be stopped, so the process ends).
//!
//! Before each input runs it is written to the harness's last-input file, so that if the
//! process dies (an abort: stack overflow, out of memory) the supervisor can keep it as the
//! reproducer.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::mutate::hash;
use super::{make, Stage};

/// What one child run does.
#[derive(Clone, Debug)]
pub struct ChildConfig {
    pub harness: String,
    pub seconds: f64,
    pub seed: u64,
    /// Where reproducers go: `out/<harness>/<kind>-<hash>`.
    pub out: PathBuf,
    /// The file the current input is written to before it runs.
    pub last_input: PathBuf,
    /// How long one input may run before it counts as a hang.
    pub timeout: Duration,
}

#[derive(Debug, Default)]
struct Counters {
    tried: AtomicU64,
    verified: AtomicU64,
    ran: AtomicU64,
    /// Milliseconds since the start at which the running input started; 0 when none runs.
    running_since: AtomicU64,
    done: AtomicBool,
}

/// The last panic: its message and where it was raised (only the worker thread runs code
/// that may panic).
static LAST_PANIC: Mutex<Option<(String, String)>> = Mutex::new(None);

fn take_last_panic() -> (String, String) {
    LAST_PANIC
        .lock()
        .map(|mut p| p.take())
        .unwrap_or_default()
        .unwrap_or_default()
}

/// Keeps panics quiet (they are counted and reported as failures) and remembers the last one.
fn silence_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
            s.to_string()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "(a panic without a message)".to_string()
        };
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        if let Ok(mut p) = LAST_PANIC.lock() {
            *p = Some((message, location));
        }
    }));
}

/// The scratch folder of the child process `pid` running `harness` (the supervisor removes it
/// after a child that died). In memory (`/dev/shm`) where there is one: the bundle directory
/// harness creates and removes files for every input, ten times faster there than on disk.
pub fn scratch_dir(harness: &str, pid: u32) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("tilekit-fuzz-{harness}-{pid}"))
}

/// Writes a reproducer (once per distinct input) and returns its path.
pub fn save_reproducer(
    out: &Path,
    harness: &str,
    kind: &str,
    input: &[u8],
    message: &str,
) -> PathBuf {
    let dir = out.join(harness);
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{kind}-{:016x}", hash(input)));
    let _ = std::fs::write(&path, input);
    let _ = std::fs::write(path.with_extension("msg"), format!("{message}\n"));
    std::fs::canonicalize(&path).unwrap_or(path)
}

/// One line of text: newlines and control characters escaped, at most `max` characters.
pub fn one_line(s: &str, max: usize) -> String {
    let s: String = s.escape_debug().collect();
    if s.chars().count() > max {
        s.chars().take(max).collect::<String>() + "…"
    } else {
        s
    }
}

/// Prints a protocol line and flushes (the supervisor reads them as they come).
fn emit(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn progress(c: &Counters) -> String {
    format!(
        "FUZZ-PROGRESS tried={} verified={} ran={}",
        c.tried.load(Ordering::Relaxed),
        c.verified.load(Ordering::Relaxed),
        c.ran.load(Ordering::Relaxed)
    )
}

/// Runs `cfg.harness` for `cfg.seconds`; returns the process exit code (0 done, 3 hang, 2 no
/// such harness).
pub fn run_child(cfg: &ChildConfig) -> i32 {
    let scratch = scratch_dir(&cfg.harness, std::process::id());
    let _ = std::fs::create_dir_all(&scratch);
    if !super::HARNESSES.contains(&cfg.harness.as_str()) {
        eprintln!(
            "no harness `{}`; harnesses: {}",
            cfg.harness,
            super::HARNESSES.join(", ")
        );
        return 2;
    }
    silence_panics();
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let worker = {
        let (cfg, counters, scratch) = (cfg.clone(), counters.clone(), scratch.clone());
        // The stack of a main thread (8 MiB), which is where users call the library from.
        std::thread::Builder::new()
            .name(format!("fuzz-{}", cfg.harness))
            .stack_size(8 << 20)
            .spawn(move || worker(&cfg, &counters, &scratch, start, &seen))
            .expect("spawning the fuzz worker thread")
    };
    let mut last_progress = Instant::now();
    let code = loop {
        std::thread::sleep(Duration::from_millis(20));
        if counters.done.load(Ordering::Acquire) {
            let _ = worker.join();
            break 0;
        }
        if worker.is_finished() {
            // The worker died outside the input it ran: the harness itself (its set-up or its
            // generator) panicked. A bug of the fuzzer, reported as a failure all the same.
            let (message, location) = take_last_panic();
            let _ = worker.join();
            emit(format!(
                "FUZZ-FAILURE kind=panic path=- message=the {} harness itself panicked at {location}: {}",
                cfg.harness,
                one_line(&message, 300)
            ));
            break 4;
        }
        let since = counters.running_since.load(Ordering::Acquire);
        let now = start.elapsed().as_millis() as u64;
        if since != 0 && now.saturating_sub(since) > cfg.timeout.as_millis() as u64 {
            let input = read_last_input(&cfg.last_input).unwrap_or_default();
            let message = format!("no result after {:?}", cfg.timeout);
            let path = save_reproducer(&cfg.out, &cfg.harness, "hang", &input, &message);
            emit(format!(
                "FUZZ-FAILURE kind=hang path={} message={message}",
                path.display()
            ));
            break 3;
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            emit(progress(&counters));
            last_progress = Instant::now();
        }
    };
    emit(progress(&counters));
    emit("FUZZ-DONE".to_string());
    let _ = std::fs::remove_dir_all(&scratch);
    code
}

fn worker(
    cfg: &ChildConfig,
    c: &Counters,
    scratch: &Path,
    start: Instant,
    seen: &Mutex<HashSet<String>>,
) {
    let mut harness = make(&cfg.harness, scratch).expect("checked by run_child");
    let mut rng = SmallRng::seed_from_u64(cfg.seed);
    let last = File::create(&cfg.last_input).ok();
    let deadline = start + Duration::from_secs_f64(cfg.seconds);
    while Instant::now() < deadline {
        let input = harness.generate(&mut rng);
        if let Some(f) = &last {
            // One write: the length, then the bytes (the file is never truncated).
            let mut rec = (input.len() as u64).to_le_bytes().to_vec();
            rec.extend_from_slice(&input);
            let _ = f.write_all_at(&rec, 0);
        }
        c.running_since
            .store(start.elapsed().as_millis().max(1) as u64, Ordering::Release);
        let result = catch_unwind(AssertUnwindSafe(|| harness.execute(&input)));
        c.running_since.store(0, Ordering::Release);
        c.tried.fetch_add(1, Ordering::Relaxed);
        let failure = match result {
            Ok(Ok(stage)) => {
                if stage >= Stage::Verified {
                    c.verified.fetch_add(1, Ordering::Relaxed);
                }
                if stage == Stage::Ran {
                    c.ran.fetch_add(1, Ordering::Relaxed);
                }
                harness.keep(&input, stage);
                None
            }
            Ok(Err(message)) => {
                // Mismatches of one kind share their first line.
                let key = message.lines().next().unwrap_or_default().to_string();
                Some(("mismatch", key, message))
            }
            Err(_) => {
                let (message, location) = take_last_panic();
                Some((
                    "panic",
                    location.clone(),
                    format!("panicked at {location}: {message}"),
                ))
            }
        };
        if let Some((kind, key, message)) = failure {
            // One reproducer per distinct place (panic location or mismatch kind); the rest
            // are counted.
            let new = seen
                .lock()
                .map(|mut s| s.insert(format!("{kind}:{key}")))
                .unwrap_or(true);
            let path = if new {
                save_reproducer(&cfg.out, &cfg.harness, kind, &input, &message)
                    .display()
                    .to_string()
            } else {
                "(same place as an earlier one)".to_string()
            };
            emit(format!(
                "FUZZ-FAILURE kind={kind} path={path} message={}",
                one_line(&message, 300)
            ));
        }
    }
    c.done.store(true, Ordering::Release);
}

/// The input the last-input file holds (its length, then its bytes).
pub fn read_last_input(path: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    let len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    bytes.get(8..8usize.checked_add(len)?).map(<[u8]>::to_vec)
}

/// Runs one input once, panics not caught (so the panic shows with its backtrace), and says
/// how far it got.
pub fn replay(harness: &str, input: &[u8]) -> Result<Stage, String> {
    let scratch = std::env::temp_dir().join(format!("tilekit-fuzz-replay-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&scratch);
    let mut h = make(harness, &scratch).ok_or_else(|| {
        format!(
            "no harness `{harness}`; harnesses: {}",
            super::HARNESSES.join(", ")
        )
    })?;
    let result = h.execute(input);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}
