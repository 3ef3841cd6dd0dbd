//! The interpreter's speed on the acceptance GEMM (bf16 in, f32 accumulate, f32 out).
//!
//! Prints GFLOP/s (2·M·N·K flops over the median wall time of several runs, one core). Run with
//! `make bench` or `cargo bench -p tilekit-tests --bench interp_gemm [-- M N K [RUNS]]`.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::BF16;
use tilekit_examples::gemm::{self, GemmConfig};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (m, n, k) = match args[..] {
        [m, n, k, ..] => (m, n, k),
        _ => (512, 512, 512),
    };
    let runs = args.get(3).copied().unwrap_or(5);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x5eed);
    let mut random =
        |len: usize| -> Vec<f64> { (0..len).map(|_| rng.gen_range(-1.0..1.0)).collect() };
    let a = HostTensor::new(BF16, &[m, k], &random(m * k)).expect("shape matches data");
    let b = HostTensor::new(BF16, &[k, n], &random(k * n)).expect("shape matches data");
    let cfg = GemmConfig::default();

    let mut times = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let c = gemm::run(&cfg, &a, &b).expect("the GEMM runs");
        times.push(t0.elapsed().as_secs_f64());
        std::hint::black_box(c);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let flops = 2.0 * (m * n * k) as f64;
    println!(
        "interpreter gemm {m}x{n}x{k} (bf16 -> f32, block {}x{}x{}, {} warps): median {:.1} ms over {runs} runs, {:.2} GFLOP/s (min {:.1} ms, max {:.1} ms)",
        cfg.block_m,
        cfg.block_n,
        cfg.block_k,
        cfg.warps_m * cfg.warps_n,
        median * 1e3,
        flops / median / 1e9,
        times[0] * 1e3,
        times[times.len() - 1] * 1e3,
    );
}
