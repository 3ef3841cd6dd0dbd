//! Compile time Tile IR → PTX (ptxas excluded) or → linked AMD code object per kernel and
//! target, split by stage (`llvm` is O3 plus PTX, or on AMD O3 plus assembly and object
//! emission; `link` is ld.lld). Prints a table; asserts nothing. The first compile of the
//! process also pays for registering MLIR's dialects and passes and initializing the NVPTX
//! target; the median is over later runs.
//!
//! Run with `cargo bench -p tilekit-codegen --bench compile`.

#[path = "../tests/acceptance/mod.rs"]
mod acceptance;

use std::time::Instant;

use tilekit_codegen::{compile, compile_with, Facts, Target, Timings};

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn ms(x: f64) -> String {
    format!("{:8.1}", x * 1e3)
}

fn main() {
    let runs = 5;
    let t0 = Instant::now();
    let first = compile(&acceptance::module("gemm"), "gemm", Target::Sm80);
    println!(
        "first compile of the process (gemm, sm_80): {} ms{}",
        ms(t0.elapsed().as_secs_f64()).trim(),
        if first.is_ok() { "" } else { " (failed)" }
    );
    println!(
        "{:<18} {:<7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "kernel", "target", "total", "lower", "parse", "passes", "transl", "llvm", "link", "wall"
    );
    let kernels = acceptance::KERNELS.iter().map(|&(snap, kernel)| {
        let m = acceptance::module(snap);
        (
            snap.to_string(),
            kernel,
            m,
            Facts::general(),
            &Target::ALL[..],
        )
    });
    // The sm_90a GEMM (issue target: < 200 ms to PTX) compiles for sm_90a only, as the general
    // variant and as the aligned one launches with 16-byte aligned views take.
    let sm90a = acceptance::SM90A_DSL_KERNELS
        .iter()
        .flat_map(|&(stem, kernel)| {
            let m = acceptance::snapshot_module(stem);
            let aligned = Facts::all_aligned16(m.kernel(kernel).expect("the snapshot's kernel"));
            [
                (kernel.to_string(), Facts::general()),
                (format!("{kernel} aligned"), aligned),
            ]
            .map(|(label, facts)| (label, kernel, m.clone(), facts, &[Target::Sm90a][..]))
        });
    for (snap, kernel, m, facts, targets) in kernels.chain(sm90a) {
        for &t in targets {
            let mut timings: Vec<Timings> = Vec::new();
            let mut walls = Vec::new();
            let mut err = None;
            for _ in 0..runs {
                let t0 = Instant::now();
                match compile_with(&m, kernel, t, &facts) {
                    Ok(c) => {
                        walls.push(t0.elapsed().as_secs_f64());
                        timings.push(c.timings);
                    }
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = err {
                println!("{snap:<18} {t:<7} not lowered: {e}");
                continue;
            }
            let col = |f: fn(&Timings) -> f64| median(timings.iter().map(f).collect());
            println!(
                "{snap:<18} {:<7} {} {} {} {} {} {} {} {}",
                t.name(),
                ms(col(Timings::total)),
                ms(col(|x| x.lower)),
                ms(col(|x| x.parse)),
                ms(col(|x| x.passes)),
                ms(col(|x| x.translate)),
                ms(col(|x| x.llvm)),
                ms(col(|x| x.link)),
                ms(median(walls)),
            );
        }
    }
}
