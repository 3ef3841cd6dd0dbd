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

/// `max |got − want| / max |want|` (0 when both are all zeros; infinite on a length mismatch).
pub fn normalized_max_error(got: &[f64], want: &[f64]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let err = got.iter().zip(want).fold(0.0f64, |m, (g, w)| {
        if g.is_nan() != w.is_nan() {
            f64::INFINITY
        } else {
            m.max((g - w).abs())
        }
    });
    if scale == 0.0 {
        err
    } else {
        err / scale
    }
}

/// Blocks of `tile` that cover `n`.
pub fn tiles(n: usize, tile: usize) -> u32 {
    u32::try_from(n.div_ceil(tile)).unwrap_or(u32::MAX)
}
