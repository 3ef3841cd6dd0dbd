//! 09 · Tile IR without the DSL: the tiled GEMM built op by op with `FuncBuilder`.
//!
//! For tools that generate kernels themselves (another front end, a schedule search, a code
//! generator): `tilekit_examples::gemm::build` (this crate's library, `examples/src/gemm.rs`)
//! makes the same kind of module the `#[tilekit::kernel]` macro traces — parameters, shared
//! tiles, a `for` over the runtime K, `copy @block`, barriers, `mma.ab`, a masked store —
//! with tile sizes and warp counts as plain Rust values. The module is verified, printed as
//! Tile IR text, launched with `Device::launch_module` (the interpreter, or a GPU with `--features
//! jit`: the same module is compiled on first launch) and checked against `C = A·B` in f64.
//!
//! ```sh
//! cargo run -p tilekit-examples --example 09_ir_builder
//! cargo run -p tilekit-examples --features jit --example 09_ir_builder  # a GPU, if present
//! ```

use anyhow::{bail, ensure, Result};
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::ir::{print_module, verify};
use tilekit::kernels::check::{normalized_max_error, Rng};
use tilekit::{Device, LaunchArg};
use tilekit_examples::gemm::{self, GemmConfig};

fn main() -> Result<()> {
    let device = if cfg!(feature = "jit") {
        Device::best()
    } else {
        Device::Cpu
    };
    // A 64×64 block tile of 4 warps (2×2, 32×32 each), K steps of 32, f32 output.
    let cfg = GemmConfig::default();
    let module = gemm::build(&cfg);
    // The verifier checks what the builder cannot: types, layouts, shared-memory use.
    if let Err(errors) = verify(&module) {
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        bail!("the built GEMM does not verify:\n{}", text.join("\n"));
    }
    let text = print_module(&module);
    println!(
        "the built module ({} lines of Tile IR):",
        text.lines().count()
    );
    for line in text.lines().take(12) {
        println!("  {line}");
    }
    println!("  …\n");

    let mut rng = Rng::fresh();
    // Whole tiles, then partial tiles in M, N and K.
    for (m, n, k) in [(64, 64, 64), (100, 70, 45)] {
        let a = rng.tensor(BF16, &[m, k], -1.0, 1.0);
        let b = rng.tensor(BF16, &[k, n], -1.0, 1.0);
        // NaN first: an element the kernel fails to write would show.
        let c = HostTensor::new(F32, &[m, n], &vec![f64::NAN; m * n])?;
        let mut args = [
            LaunchArg::Host(a.clone()),
            LaunchArg::Host(b.clone()),
            LaunchArg::Host(c),
        ];
        device.launch_module(&module, gemm::KERNEL, cfg.grid(m, n), &mut args)?;
        let LaunchArg::Host(c) = &args[2] else {
            bail!("the output came back as something other than a host tensor");
        };
        let want = gemm::reference(&a.to_vec(), &b.to_vec(), m, k, n);
        let err = normalized_max_error(&c.to_vec(), &want);
        println!("{m}×{n}×{k} on {}: max error {err:.1e}", device.name());
        // f32 accumulation of exact bf16 products over K ≤ 64: a few f32 ulps.
        ensure!(
            err < 1e-5,
            "{m}×{n}×{k}: error {err:.2e} (seed {})",
            rng.seed
        );
    }
    println!("09_ir_builder: ok");
    Ok(())
}

#[test]
fn tutorial_runs() {
    main().unwrap();
}
