//! Harness `interp`: mutated modules that verify, run by the interpreter on small random
//! arguments matching the kernel's parameter types and small grids, with the interpreter's
//! budgets on. The input is a header line (`# fuzz-interp seed=S grid=X,Y,Z`: the seed of the
//! argument values and the grid) followed by the module text.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tilekit::ir::interp::{self, Arg, CancelToken, HostTensor, Launch};
use tilekit::ir::{parse_module, verify, ScalarType, Type};

use super::mutate::{hash, pick, INTERESTING_INTS};
use super::{corpus, tile_text, Harness, Pool, Stage, Watchdog};

/// The most elements of one argument tensor (the interpreter holds each as an f64).
const MAX_TENSOR_ELEMENTS: usize = 1 << 13;

/// Ops one run may execute: far more than the seeds need at their small shapes (thousands),
/// few enough that an endless loop of tile ops ends within a second or so (an op on a 16×64
/// tile takes microseconds).
const OP_BUDGET: u64 = 200_000;
/// A run still going after this long is cancelled through its token (ops on big tiles cost
/// more than the op budget assumes).
const CANCEL_AFTER: Duration = Duration::from_secs(2);
/// Bytes the interpreter may hold for one run.
const MEMORY_BUDGET: u64 = 256 << 20;

/// See the module documentation.
#[derive(Debug)]
pub struct InterpHarness {
    /// Seeds that verify (the interpreter runs only those).
    seeds: Vec<String>,
    pool: Pool,
    rng: SmallRng,
    watchdog: Watchdog,
}

impl InterpHarness {
    pub fn new() -> InterpHarness {
        let seeds: Vec<String> = corpus::tile_texts()
            .into_iter()
            .filter(|t| {
                parse_module(t).is_ok_and(|m| verify(&m).is_ok() && m.kernels().next().is_some())
            })
            .collect();
        InterpHarness {
            seeds,
            pool: Pool::new(256, 32 << 10),
            rng: SmallRng::seed_from_u64(2),
            watchdog: Watchdog::new(),
        }
    }
}

impl Default for InterpHarness {
    fn default() -> Self {
        InterpHarness::new()
    }
}

/// A small dimension, often a multiple of 16, sometimes 0 or 1 or awkward.
fn dim(rng: &mut SmallRng) -> usize {
    const DIMS: [usize; 12] = [0, 1, 15, 16, 16, 17, 32, 32, 33, 64, 64, 100];
    DIMS[rng.gen_range(0..DIMS.len())]
}

fn value(rng: &mut SmallRng, dtype: ScalarType) -> f64 {
    if dtype.is_int() || dtype == ScalarType::Bool {
        // Small, so that index tensors (gather rows, expert ids) mostly hit.
        return f64::from(rng.gen_range(-2..40));
    }
    match rng.gen_range(0..200) {
        0 => f64::NEG_INFINITY,
        1 => f64::INFINITY,
        2 => f64::NAN,
        _ => {
            // Never 0: a wrong answer hides behind zeros.
            let v: f64 = rng.gen_range(0.1..2.0);
            if rng.gen_bool(0.5) {
                -v
            } else {
                v
            }
        }
    }
}

/// Arguments for a kernel with parameters `types`, from `rng`.
fn arguments(rng: &mut SmallRng, types: &[Type]) -> Vec<Arg> {
    types
        .iter()
        .map(|t| match t {
            Type::Global { dtype, rank, .. } => {
                let mut shape: Vec<usize> = (0..*rank).map(|_| dim(rng)).collect();
                while shape.iter().product::<usize>() > MAX_TENSOR_ELEMENTS {
                    let i = rng.gen_range(0..shape.len());
                    shape[i] /= 2;
                }
                let n = shape.iter().product();
                let values: Vec<f64> = (0..n).map(|_| value(rng, *dtype)).collect();
                Arg::Tensor(
                    HostTensor::new(*dtype, &shape, &values)
                        .unwrap_or_else(|_| HostTensor::zeros(*dtype, &[0])),
                )
            }
            Type::Scalar(s) => {
                let v = if s.is_int() {
                    if rng.gen_bool(0.9) {
                        f64::from(rng.gen_range(0..5))
                    } else {
                        pick(rng, INTERESTING_INTS).parse().unwrap_or(0.0)
                    }
                } else if *s == ScalarType::Bool {
                    f64::from(u8::from(rng.gen_bool(0.5)))
                } else {
                    value(rng, *s)
                };
                Arg::Scalar(*s, v)
            }
            // Not a launchable parameter: pass something so the interpreter's argument check
            // sees it.
            _ => Arg::Scalar(ScalarType::I32, 0.0),
        })
        .collect()
}

/// The header and the module text of an input.
fn split(input: &[u8]) -> (u64, [u32; 3], String) {
    let text = String::from_utf8_lossy(input).into_owned();
    let (head, body) = match text.split_once('\n') {
        Some((h, b)) if h.starts_with("# fuzz-interp") => (h.to_string(), b.to_string()),
        _ => (String::new(), text.clone()),
    };
    let field = |key: &str| {
        head.split(' ')
            .find_map(|f| f.strip_prefix(key))
            .map(str::to_string)
    };
    let seed = field("seed=")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| hash(input));
    let mut grid = [1, 1, 1];
    if let Some(g) = field("grid=") {
        for (slot, v) in grid.iter_mut().zip(g.split(',')) {
            *slot = v.parse().unwrap_or(1);
        }
    }
    (seed, grid, body)
}

/// The interpreter's launch configuration for fuzzing: small budgets so that endless loops and
/// huge values end as errors.
fn launch(grid: [u32; 3], cancel: CancelToken) -> Launch {
    Launch::grid(grid)
        .op_budget(OP_BUDGET)
        .memory_budget(MEMORY_BUDGET)
        .cancel(cancel)
}

impl Harness for InterpHarness {
    fn generate(&mut self, rng: &mut SmallRng) -> Vec<u8> {
        let other = &self.seeds[rng.gen_range(0..self.seeds.len())];
        // The shorter of two seeds: small kernels run in microseconds, the library's in
        // milliseconds, and both kinds still come up.
        let a = &self.seeds[rng.gen_range(0..self.seeds.len())];
        let b = &self.seeds[rng.gen_range(0..self.seeds.len())];
        let base = match self.pool.pick(rng) {
            Some(p) if rng.gen_bool(0.5) => split(p).2,
            _ if a.len() <= b.len() => a.clone(),
            _ => b.clone(),
        };
        // Few mutations: the point is to run modules that still verify.
        let rounds = if rng.gen_bool(0.1) {
            0
        } else {
            1 + usize::from(rng.gen_bool(0.3))
        };
        let body = tile_text::mutate(rng, &base, other, rounds, 0.01);
        // Mostly one block: the seeds' blocks cost up to milliseconds each.
        let g = |rng: &mut SmallRng| match rng.gen_range(0..20) {
            0 => 0,
            1 => 3,
            2..=5 => 2,
            _ => 1,
        };
        let grid = [g(rng), g(rng), if rng.gen_bool(0.9) { 1 } else { 2 }];
        let mut out = format!(
            "# fuzz-interp seed={} grid={},{},{}\n",
            rng.gen::<u64>(),
            grid[0],
            grid[1],
            grid[2]
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out
    }

    fn execute(&mut self, input: &[u8]) -> Result<Stage, String> {
        let (seed, grid, text) = split(input);
        let Ok(m) = parse_module(&text) else {
            return Ok(Stage::Tried);
        };
        if verify(&m).is_err() {
            return Ok(Stage::Verified);
        }
        let mut rng = SmallRng::seed_from_u64(seed);
        let kernels: Vec<_> = m.kernels().collect();
        let Some(k) = (!kernels.is_empty()).then(|| kernels[rng.gen_range(0..kernels.len())])
        else {
            return Ok(Stage::Verified);
        };
        let mut args = arguments(&mut rng, &k.param_types());
        // Any result is fine (errors name what went wrong); panics, aborts and hangs are not.
        let token = self.watchdog.arm(CANCEL_AFTER);
        let _ = interp::run_with(&m, &k.name, launch(grid, token), &mut args);
        self.watchdog.disarm();
        Ok(Stage::Ran)
    }

    fn keep(&mut self, input: &[u8], stage: Stage) {
        if stage == Stage::Ran {
            self.pool.add(&mut self.rng, input);
        }
    }
}
