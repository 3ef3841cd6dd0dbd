//! 07 · Inspecting the compiler: every stage of a kernel, its resources and its hot loop.
//!
//! A kernel is a Rust function that builds Tile IR when it is traced; the compiler lowers that
//! through MLIR and LLVM IR to PTX (then SASS, through ptxas) or to AMDGPU assembly. Each stage
//! can be printed, by the `tilekit` command for any kernel linked into it
//! (`tilekit::cli_main!`, see the README) or from code through `tilekit::cli::run`, which is
//! what this tutorial does for its own kernel:
//!
//! - `list` shows the kernel with its instantiations;
//! - `emit NAME --target T --stage S` prints a stage: `tile`, `mlir`, `mlir-lowered`, `llvm`,
//!   `llvm-opt`, `ptx` or `asm`, `sass`;
//! - `check NAME --target T` prints registers, spills, shared memory and the **hot loop**: the
//!   loop of the machine code with the most tensor-core instructions, its instruction count per
//!   iteration and the figure (non-tensor instructions per 1k tensor-core FLOPs) that the
//!   project steers its code generation by. `--assume aligned` shows the variant a launch with
//!   16-byte aligned views takes.
//!
//! The Tile IR needs no compiler and is printed always; the other stages need the compiler
//! (`--features jit`, LLVM/MLIR 22 as `scripts/install-deps.sh` installs them). `TILEKIT_DUMP=dir`
//! writes every stage of every kernel a program compiles; `tilekit::testing` snapshots them.
//!
//! ```sh
//! cargo run -p tilekit-examples --features jit --example 07_inspecting_the_compiler
//! ```

use anyhow::{ensure, Result};
use tilekit::dsl::*;

/// `C = A·B` for one 32×32 tile of C per single-warp block, K in steps of 16 — small enough to
/// read its PTX whole.
#[tilekit::kernel(
    shapes(a: [M, K], b: [K, N], c: [M, N]),
    grid = [ceil_div(N, 32), ceil_div(M, 32), 1]
)]
fn small_gemm(a: Gl<bf16, 2>, b: Gl<bf16, 2>, c: GlMut<f32, 2>) {
    let (i, j) = (block_idx_y(), block_idx_x());
    let mut acc: Rt<f32, 32, 32> = zeros();
    for kt in range(0, ceil_div(a.cols(), 16)) {
        let a_frag: Rt<bf16, 32, 16> = load(a.tile(i, kt));
        let b_frag: Rt<bf16, 16, 32, Col> = load(b.tile(kt, j));
        acc = mma_ab(acc, a_frag, b_frag);
    }
    store(c.tile(i, j), acc);
}

/// Runs a `tilekit` command and returns its output, or why it could not run.
fn tilekit(args: &[&str]) -> Result<String, String> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tilekit::cli::run(&args)
        .map(|(text, _)| text)
        .map_err(|e| e.to_string())
}

fn main() -> Result<()> {
    // The Tile IR, as the kernel traced it.
    let ir = tilekit::ir::print_module(small_gemm::module());
    println!("── Tile IR ──\n{ir}");
    ensure!(ir.contains("mma"), "the Tile IR has no mma:\n{ir}");

    let listed = tilekit(&["list"]).map_err(anyhow::Error::msg)?;
    ensure!(
        listed.contains("small_gemm"),
        "`list` misses the kernel:\n{listed}"
    );

    match tilekit(&["emit", "small_gemm", "--target", "sm_80", "--stage", "ptx"]) {
        Ok(ptx) => {
            println!("── PTX for sm_80 ──\n{ptx}");
            ensure!(
                ptx.contains("mma.sync.aligned.m16n8k16"),
                "no mma in the PTX"
            );
            let check = tilekit(&["check", "small_gemm", "--target", "sm_80"])
                .map_err(anyhow::Error::msg)?;
            println!("── check, sm_80 ──\n{check}");
            ensure!(check.contains("hot loop"), "no hot-loop line:\n{check}");
            let amd = tilekit(&["check", "small_gemm", "--target", "gfx942"])
                .map_err(anyhow::Error::msg)?;
            println!("── check, gfx942 ──\n{amd}");
        }
        // Built without the compiler: say so, as the command itself does. Any other error is
        // a failure.
        Err(why) if why.contains("without the `jit` feature") => {
            println!("(the other stages need the compiler: {why})")
        }
        Err(why) => anyhow::bail!("`tilekit emit` failed: {why}"),
    }
    println!("07_inspecting_the_compiler: ok");
    Ok(())
}

#[test]
fn tutorial_runs() {
    main().unwrap();
}
