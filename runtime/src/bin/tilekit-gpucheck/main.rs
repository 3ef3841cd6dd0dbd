//! `tilekit-gpucheck`: runs the kernel library on a GPU from an AOT bundle, against CPU
//! references, and with `--bench` times it against the device's measured ceilings.
//!
//! ```text
//! tilekit-gpucheck [--bundle DIR] [--device cuda:0] [--bench] [--runs N]
//! tilekit-gpucheck --bundle DIR --inspect
//! ```
//!
//! `--inspect` needs no GPU: it says, for every kernel variant linked into this binary, whether
//! the bundle holds code for it (same Tile IR hash), and exits 1 when one is missing.
//!
//! - The check runs every registered kernel's self-test on the device: fresh random inputs at
//!   several shapes (larger ones than the interpreter runs), outputs poisoned with NaN before each
//!   run so an element the kernel never writes fails, f64 references computed on the CPU. It
//!   prints each case's max absolute and relative error and exits 1 on any mismatch.
//! - `--bench` then prints, per kernel and shape, the median time of `--runs` (≥ 20) timed runs
//!   after warm-up (device events around each run), the achieved TFLOP/s or GB/s, the percentage
//!   of the ceiling measured in the same run (device-to-device copy bandwidth; a cuBLAS bf16
//!   GEMM for the compute ceiling) and, for GEMMs, the ratio to cuBLAS at the same shape.
//!
//! It is built without `jit` by `scripts/gpu-check.sh` (no LLVM, no MLIR): kernels come from the
//! bundle only, matched by their Tile IR hash.

use std::process::ExitCode;

use tilekit::kernels::check::case_table;
use tilekit::{Bundle, Device};

const USAGE: &str =
    "usage: tilekit-gpucheck [--bundle DIR] [--device cuda|cuda:N|hip|cpu] [--bench] [--runs N]";

struct Options {
    bundle: Option<String>,
    device: String,
    bench: bool,
    inspect: bool,
    runs: usize,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        bundle: None,
        device: "cuda".into(),
        bench: false,
        inspect: false,
        runs: 30,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} wants a value\n{USAGE}"));
        match a.as_str() {
            "--bundle" => o.bundle = Some(value("--bundle")?),
            "--device" => o.device = value("--device")?,
            "--runs" => {
                let v = value("--runs")?;
                o.runs = v
                    .parse()
                    .ok()
                    .filter(|&n| n >= 20)
                    .ok_or(format!("--runs wants a number ≥ 20, got `{v}`"))?
            }
            "--bench" => o.bench = true,
            "--inspect" => o.inspect = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if o.inspect {
        return match &o.bundle {
            Some(dir) => inspect(dir),
            None => {
                eprintln!("--inspect wants --bundle DIR\n{USAGE}");
                ExitCode::from(2)
            }
        };
    }
    let device = match Device::from_name(&o.device) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("tilekit-gpucheck: {e}");
            return ExitCode::from(1);
        }
    };
    println!("device: {}", device.describe());
    if let Some(dir) = &o.bundle {
        match Bundle::load_dir(dir)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                let (t, n) = (b.target.clone(), b.kernels.len());
                device
                    .attach_bundle(b)
                    .map(|_| (t, n))
                    .map_err(|e| e.to_string())
            }) {
            Ok((t, n)) => println!("bundle: {dir} ({n} kernels for {t})"),
            Err(e) => {
                eprintln!("tilekit-gpucheck: {e}");
                return ExitCode::from(1);
            }
        }
    } else if !cfg!(feature = "jit") {
        eprintln!("tilekit-gpucheck: this build has no compiler; pass --bundle DIR");
        return ExitCode::from(2);
    }
    let failed = check(&device);
    if o.bench {
        match tilekit::bench::run(&device, o.runs) {
            Ok(table) => print!("{table}"),
            Err(e) => {
                eprintln!("benchmark: {e}");
                return ExitCode::from(1);
            }
        }
    }
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Whether the bundle holds every kernel variant of this binary, matched by Tile IR hash.
fn inspect(dir: &str) -> ExitCode {
    let bundle = match Bundle::load_dir(dir) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("tilekit-gpucheck: {e}");
            return ExitCode::from(1);
        }
    };
    let mut missing = 0;
    for k in tilekit::registry::kernels() {
        // A variant registered for other targets only is not expected in this bundle.
        for v in k.variants.iter().filter(|v| v.is_for(&bundle.target)) {
            let hash = tilekit::device::ir_hash((v.module)(), k.name);
            let found = bundle
                .kernels
                .iter()
                .any(|b| b.name == k.name && b.ir_hash == hash);
            println!(
                "{}{} {hash}: {}",
                k.name,
                v.args,
                if found { "in the bundle" } else { "MISSING" }
            );
            missing += usize::from(!found);
        }
    }
    println!("bundle {dir} for {}: {missing} missing", bundle.target);
    if missing > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs every self-test; returns the number of failed cases and kernels.
fn check(device: &Device) -> usize {
    let (table, failed) = case_table(device);
    print!("\n{table}");
    failed
}
