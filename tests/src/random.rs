//! Fresh random test inputs, reproducible from a printed seed.
//!
//! Every run draws a new seed (from the clock) unless `TILEKIT_SEED` is set; tests put the seed
//! in their failure messages, so `TILEKIT_SEED=<seed> cargo test …` replays a failure.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType;

/// A seeded generator; `seed` is what to print on failure.
#[derive(Debug)]
pub struct TestRng {
    pub seed: u64,
    pub rng: SmallRng,
}

impl TestRng {
    /// A generator seeded from `TILEKIT_SEED`, or from the clock.
    pub fn fresh() -> TestRng {
        let seed = std::env::var("TILEKIT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0x5eed)
            });
        TestRng {
            seed,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// `n` values uniform in `[lo, hi)`.
    pub fn uniform(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| self.rng.gen_range(lo..hi)).collect()
    }

    /// A row-major tensor of `dtype` with values uniform in `[lo, hi)` (then rounded to `dtype`:
    /// read the values back from the tensor for references).
    pub fn tensor(&mut self, dtype: ScalarType, shape: &[usize], lo: f64, hi: f64) -> HostTensor {
        let n = shape.iter().product();
        let values = self.uniform(n, lo, hi);
        HostTensor::new(dtype, shape, &values).expect("the value count matches the shape")
    }
}
