//! What self-tests need: random host tensors and the normalized error against a reference.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;

/// A small deterministic generator (SplitMix64); self-tests seed it from the clock and print
/// the seed on failure.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
    /// The seed it started from.
    pub seed: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed, seed }
    }

    /// Seeded from the clock (`TILEKIT_SEED` overrides).
    pub fn fresh() -> Rng {
        let seed = std::env::var("TILEKIT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0)
            });
        Rng::new(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * u
    }

    /// A contiguous tensor of uniform values in `[lo, hi)` rounded to `dtype`.
    pub fn tensor(&mut self, dtype: ScalarType, shape: &[usize], lo: f64, hi: f64) -> HostTensor {
        let n: usize = shape.iter().product();
        let values: Vec<f64> = (0..n).map(|_| self.uniform(lo, hi)).collect();
        HostTensor::new(dtype, shape, &values).unwrap_or_else(|_| HostTensor::zeros(dtype, shape))
    }
}

/// `max |got − want| / max |want|` over the finite elements of `want` (0 when both are all
/// zeros; infinite on a length mismatch). Values that are not finite must match exactly: NaN
/// where `want` is NaN, the same infinity where `want` is infinite (the reference of a row of
/// `-inf` scores is NaN or `-inf`, as torch gives); anything else there is an infinite error.
pub fn normalized_max_error(got: &[f64], want: &[f64]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    let scale = want
        .iter()
        .filter(|w| w.is_finite())
        .fold(0.0f64, |m, x| m.max(x.abs()));
    let err = max_abs_error(got, want);
    if scale == 0.0 || err.is_infinite() {
        err
    } else {
        err / scale
    }
}

/// `max |got − want|`, with the rules of [`normalized_max_error`] for values that are not
/// finite.
fn max_abs_error(got: &[f64], want: &[f64]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    got.iter().zip(want).fold(0.0f64, |m, (&g, &w)| {
        let e = if w.is_finite() {
            // NaN and infinite results compare as infinitely wrong.
            let d = (g - w).abs();
            if d.is_finite() {
                d
            } else {
                f64::INFINITY
            }
        } else if w.is_nan() && g.is_nan() || g == w {
            0.0
        } else {
            f64::INFINITY
        };
        m.max(e)
    })
}

/// Blocks of `tile` that cover `n`.
pub fn tiles(n: usize, tile: usize) -> u32 {
    u32::try_from(n.div_ceil(tile)).unwrap_or(u32::MAX)
}

/// One comparison a self-test made against its reference.
#[derive(Clone, Debug)]
pub struct Case {
    /// What was compared: shape, dtype, output.
    pub case: String,
    /// `max |got − want|`.
    pub max_abs: f64,
    /// `max |got − want| / max |want|` (what the tolerance bounds).
    pub max_rel: f64,
    pub tolerance: f64,
}

impl Case {
    pub fn passed(&self) -> bool {
        self.max_rel <= self.tolerance
    }
}

thread_local! {
    static CASES: std::cell::RefCell<Option<Vec<Case>>> = const { std::cell::RefCell::new(None) };
}

/// Compares `got` with `want` as [`normalized_max_error`] does and records the case when a
/// [`collect`] is under way on this thread (the GPU check prints them).
pub fn record(case: impl Into<String>, got: &[f64], want: &[f64], tolerance: f64) -> f64 {
    let max_rel = normalized_max_error(got, want);
    let max_abs = max_abs_error(got, want);
    push_case(case.into(), max_abs, max_rel, tolerance);
    max_rel
}

/// Compares `got` with `want` element by element against a bound of its own (an error scale
/// derived from the computation, where one normalization would overstate the error of values
/// that cancel) and records the case with its error in units of the bound, tolerance 1. Returns
/// `max |got − want| / bound` (infinite on a length mismatch or a non-finite value).
pub fn record_bounded(case: impl Into<String>, got: &[f64], want: &[f64], bound: &[f64]) -> f64 {
    let ratio = if got.len() != want.len() || got.len() != bound.len() {
        f64::INFINITY
    } else {
        got.iter()
            .zip(want)
            .zip(bound)
            .fold(0.0f64, |m, ((g, w), b)| {
                let e = (g - w).abs();
                m.max(if e.is_finite() { e / b } else { f64::INFINITY })
            })
    };
    push_case(case.into(), max_abs_error(got, want), ratio, 1.0);
    ratio
}

/// Per-element bound on an f32 moving average `β·m + (1 − β)·g` against its f64 value: eight
/// roundings (2⁻²⁴ each: β and 1 − β in f32, the two products, the sum, with room) of the terms'
/// magnitude `β·|m| + (1 − β)·|g|`, not of the result, which the terms can cancel to far below
/// either (a one-element tensor's moment then has no larger neighbour to be normalized by).
pub fn moving_average_bound(m: &[f64], g: &[f64], beta: f64) -> Vec<f64> {
    const ROUNDINGS: f64 = 8.0;
    let u = f64::from(f32::EPSILON) / 2.0;
    m.iter()
        .zip(g)
        .map(|(m, g)| {
            let scale = beta * m.abs() + (1.0 - beta) * g.abs();
            (ROUNDINGS * u * scale).max(f64::from(f32::MIN_POSITIVE))
        })
        .collect()
}

fn push_case(case: String, max_abs: f64, max_rel: f64, tolerance: f64) {
    CASES.with(|c| {
        if let Some(cases) = c.borrow_mut().as_mut() {
            cases.push(Case {
                case,
                max_abs,
                max_rel,
                tolerance,
            });
        }
    });
}

/// Runs `f` (a self-test) and returns what it returned with every case it [`record`]ed.
pub fn collect<R>(f: impl FnOnce() -> R) -> (R, Vec<Case>) {
    let outer = CASES.with(|c| c.borrow_mut().replace(Vec::new()));
    let r = f();
    let cases = CASES.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
    (r, cases.unwrap_or_default())
}

/// An output tensor filled with poison (NaN for floats, `i32::MIN`-like sentinels for integers),
/// so an element the kernel never writes fails the comparison instead of passing as a zero.
pub fn poisoned(dtype: ScalarType, shape: &[usize]) -> HostTensor {
    let value = if dtype.is_float() {
        f64::NAN
    } else {
        crate::ir::numeric::int_range(dtype).0
    };
    HostTensor::full(dtype, shape, value)
}

/// Whether self-tests should add the larger shapes only a GPU runs quickly.
pub fn large(device: &crate::Device) -> bool {
    !(device.is_cpu() || matches!(device, crate::Device::Emu(_)))
}

/// Runs every registered kernel's self-test on `device` and returns the table of its cases (max
/// absolute and relative error, tolerance, `ok` or `MISMATCH`; a self-test that fails or panics
/// is a `FAILED` line) with a summary line, and the number of failures.
pub fn case_table(device: &crate::Device) -> (String, usize) {
    use std::fmt::Write as _;
    let mut out = format!(
        "{:<20} {:<44} {:>10} {:>10} {:>8}  result\n",
        "kernel", "case", "max abs", "max rel", "tol"
    );
    let (mut passed, mut failed) = (0, 0);
    for k in crate::registry::kernels() {
        let Some(test) = k.selftest else { continue };
        // A failing kernel must not stop the others: a panic counts as a failure.
        let (r, cases) = collect(|| std::panic::catch_unwind(|| test(device)));
        for c in &cases {
            let ok = c.passed();
            let _ = writeln!(
                out,
                "{:<20} {:<44} {:>10.2e} {:>10.2e} {:>8.0e}  {}",
                k.name,
                c.case,
                c.max_abs,
                c.max_rel,
                c.tolerance,
                if ok { "ok" } else { "MISMATCH" }
            );
            if ok {
                passed += 1;
            } else {
                failed += 1;
            }
        }
        let failure = match r {
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => e,
            Err(_) => "the self-test panicked".to_string(),
        };
        failed += 1;
        let _ = writeln!(out, "{:<20} FAILED: {failure}", k.name);
    }
    let _ = writeln!(out, "\n{passed} cases passed, {failed} failed");
    (out, failed)
}
