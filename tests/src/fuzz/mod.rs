//! Fuzzing on stable Rust: harnesses that feed mutated inputs to the text form, the verifier,
//! the interpreter, the bundle loader and the launch path, and a loop that runs them with panics
//! caught, hangs timed out and aborts (stack overflow, out of memory) caught by running each
//! harness in a child process.
//!
//! - [`text`]: Tile IR text → parse → verify → print → parse → print; the two printed texts must
//!   be equal and the verifier must say the same of both modules.
//! - [`interp`]: mutated modules that verify, run by the interpreter on small random arguments
//!   and grids.
//! - [`bundle`]: `Bundle::from_bytes` on mutated packs and `Bundle::load_dir` on mutated
//!   directories (names with `..` and separators, symlinks out of the directory, FIFOs, huge
//!   sparse files); an accepted bundle must round-trip, read nothing outside its directory and
//!   write nothing outside the directory it is written to.
//! - [`launch`]: random launches of registered kernels on the CPU device: shapes with 0, 1,
//!   awkward and huge-but-empty dimensions, wrong dtypes and ranks, narrowed and transposed views
//!   (empty ones at any offset), aliased arguments, grids with 0 and huge dimensions.
//!
//! Every input is bytes, so a failure's reproducer is a file: `fuzz --replay HARNESS FILE` runs it
//! again. Inputs come from a seeded generator (`--seed`), so a run is repeatable up to timing
//! (where a run stops).

pub mod bundle;
pub mod corpus;
pub mod engine;
pub mod interp;
pub mod launch;
pub mod mutate;
pub mod supervise;
pub mod text;
pub mod tile_text;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use tilekit::ir::interp::CancelToken;

/// How far an input got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Rejected by the first check (the parser, the unpacker, the argument checks).
    Tried,
    /// Reached the deeper checks: the verifier, bundle validation, the kernel's shape rule.
    Verified,
    /// Passed them: the verifier accepted the module, the interpreter ran, the bundle loaded,
    /// the launch ran.
    Ran,
}

/// A fuzz target: makes inputs and runs them.
pub trait Harness {
    /// The next input, usually a mutant of a seed or of an earlier input that got far.
    fn generate(&mut self, rng: &mut SmallRng) -> Vec<u8>;
    /// Runs one input. `Err` is a wrong answer that is not a panic (a round trip that differs,
    /// a read outside a bundle directory), described.
    fn execute(&mut self, input: &[u8]) -> Result<Stage, String>;
    /// Called after `execute` returned `Ok(stage)` for `input`: inputs that got far are worth
    /// mutating again.
    fn keep(&mut self, input: &[u8], stage: Stage) {
        let _ = (input, stage);
    }
}

/// The harnesses, in the order they run.
pub const HARNESSES: &[&str] = &["text", "interp", "bundle_pack", "bundle_dir", "launch"];

/// The harness called `name`, set up (`scratch` is a directory it may use for files).
pub fn make(name: &str, scratch: &std::path::Path) -> Option<Box<dyn Harness>> {
    Some(match name {
        "text" => Box::new(text::TextHarness::new()),
        "interp" => Box::new(interp::InterpHarness::new()),
        "bundle_pack" => Box::new(bundle::PackHarness::new(scratch)),
        "bundle_dir" => Box::new(bundle::DirHarness::new(scratch)),
        "launch" => Box::new(launch::LaunchHarness::new()),
        _ => return None,
    })
}

/// Cancels the interpreter run of the current input once its time is up, through the run's
/// [`CancelToken`]: the op budget bounds work (an op counts once per 16 elements of its largest
/// operand), not time.
#[derive(Debug)]
pub struct Watchdog {
    armed: Arc<Mutex<Option<(Instant, CancelToken)>>>,
}

impl Watchdog {
    pub fn new() -> Watchdog {
        let armed: Arc<Mutex<Option<(Instant, CancelToken)>>> = Arc::default();
        let weak = Arc::downgrade(&armed);
        // Ends when the watchdog is dropped.
        std::thread::spawn(move || {
            while let Some(armed) = weak.upgrade() {
                if let Ok(a) = armed.lock() {
                    if let Some((at, token)) = a.as_ref() {
                        if Instant::now() >= *at {
                            token.cancel();
                        }
                    }
                }
                drop(armed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Watchdog { armed }
    }

    /// A fresh token, cancelled `after` from now unless [`Watchdog::disarm`] comes first.
    pub fn arm(&self, after: Duration) -> CancelToken {
        let token = CancelToken::new();
        if let Ok(mut a) = self.armed.lock() {
            *a = Some((Instant::now() + after, token.clone()));
        }
        token
    }

    pub fn disarm(&self) {
        if let Ok(mut a) = self.armed.lock() {
            *a = None;
        }
    }
}

impl Default for Watchdog {
    fn default() -> Self {
        Watchdog::new()
    }
}

/// Inputs worth mutating again, at most `cap`, replaced at random once full.
#[derive(Debug)]
pub struct Pool {
    items: Vec<Vec<u8>>,
    cap: usize,
    /// Inputs longer than this are not kept (mutating them again is slow).
    max_len: usize,
}

impl Pool {
    pub fn new(cap: usize, max_len: usize) -> Pool {
        Pool {
            items: Vec::new(),
            cap,
            max_len,
        }
    }

    pub fn add(&mut self, rng: &mut SmallRng, input: &[u8]) {
        use rand::Rng;
        if input.len() > self.max_len {
            return;
        }
        if self.items.len() < self.cap {
            self.items.push(input.to_vec());
        } else {
            let i = rng.gen_range(0..self.cap);
            self.items[i] = input.to_vec();
        }
    }

    pub fn pick(&self, rng: &mut SmallRng) -> Option<&[u8]> {
        use rand::Rng;
        (!self.items.is_empty()).then(|| self.items[rng.gen_range(0..self.items.len())].as_slice())
    }
}
