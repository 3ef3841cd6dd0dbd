//! Prints the Tile IR of the acceptance kernels in their default configurations:
//! `cargo run -p tilekit-examples [gemm|attention|softmax|adamw|moe|ws_gemm]…` (all when none is
//! named).

use anyhow::bail;
use tilekit::ir::{print_module, verify, Module};
use tilekit_examples::{adamw, attention, gemm, moe, softmax, ws_gemm};

/// Builds a kernel's module in its default configuration.
type Build = fn() -> Module;

fn main() -> anyhow::Result<()> {
    let kernels: [(&str, Build); 6] = [
        ("gemm", || gemm::build(&Default::default())),
        ("attention", || attention::build(&Default::default())),
        ("softmax", || softmax::build(&Default::default())),
        ("adamw", || adamw::build(&Default::default())),
        ("moe", || moe::build(&Default::default())),
        ("ws_gemm", || ws_gemm::build(&Default::default())),
    ];
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    for w in &wanted {
        if !kernels.iter().any(|(name, _)| name == w) {
            let names: Vec<&str> = kernels.iter().map(|(n, _)| *n).collect();
            bail!("no example kernel `{w}` (there are: {})", names.join(", "));
        }
    }
    for (name, build) in kernels {
        if wanted.is_empty() || wanted.iter().any(|w| w == name) {
            let module = build();
            if let Err(errors) = verify(&module) {
                for e in errors {
                    eprintln!("{e}");
                }
                bail!("the {name} kernel does not verify");
            }
            println!("{}", print_module(&module));
        }
    }
    Ok(())
}
