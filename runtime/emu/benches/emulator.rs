//! Emulator speed: a bf16 GEMM compiled by tilekit (the acceptance snapshot's PTX, 64×64 block
//! tiles, 4 warps) at several sizes; prints the time, warp-instructions per second, and the
//! instruction profile by class with each class's warp-instructions per second. `cargo bench -p tilekit-emu` (sizes: `EMU_BENCH_SIZES=128,512`).

use std::time::Instant;

use half::bf16;
use tilekit_emu::{Emulator, GlobalMemory, LaunchConfig};

const GEMM: &str = include_str!("../tests/ptx/gemm.sm_80.ptx");

fn main() {
    let sizes: Vec<usize> = std::env::var("EMU_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![128, 256]);
    let emu = Emulator::new(GEMM).expect("the GEMM fixture parses");
    for n in sizes {
        let a: Vec<u8> = (0..n * n)
            .flat_map(|i| {
                bf16::from_f32(((i % 7) as f32 - 3.0) / 4.0)
                    .to_bits()
                    .to_le_bytes()
            })
            .collect();
        let b: Vec<u8> = (0..n * n)
            .flat_map(|i| {
                bf16::from_f32(((i % 5) as f32 - 2.0) / 4.0)
                    .to_bits()
                    .to_le_bytes()
            })
            .collect();
        let mut g = GlobalMemory::new();
        let pa = g.alloc("a", a);
        let pb = g.alloc("b", b);
        let pc = g.alloc("c", vec![0u8; n * n * 4]);
        let u = |v: usize| (v as u32).to_le_bytes().to_vec();
        let args = [
            pa.to_le_bytes().to_vec(),
            u(n),
            u(n),
            u(n),
            u(1),
            pb.to_le_bytes().to_vec(),
            u(n),
            u(n),
            u(n),
            u(1),
            pc.to_le_bytes().to_vec(),
            u(n),
            u(n),
            u(n),
            u(1),
        ];
        let params = emu.param_buffer("gemm", &args).expect("parameters");
        let tiles = n.div_ceil(64) as u32;
        let mut cfg = LaunchConfig::new([tiles, tiles, 1], [128, 1, 1]);
        cfg.time_classes = true;
        let t = Instant::now();
        let report = emu
            .launch("gemm", &cfg, &params, &mut g)
            .expect("the GEMM runs clean");
        let s = t.elapsed().as_secs_f64();
        println!(
            "gemm {n}×{n}×{n}: {s:.3} s, {} warp-instructions, {:.2} M warp-instructions/s",
            report.profile.total,
            report.profile.total as f64 / s / 1e6
        );
        print!("{}", report.profile_table());
    }
}
