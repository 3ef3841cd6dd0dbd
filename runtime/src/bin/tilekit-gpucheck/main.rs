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

mod cublas;

use std::process::ExitCode;

use tilekit::ir::ScalarType;
use tilekit::kernels::attention::attention_fwd;
use tilekit::kernels::check::{collect, tiles};
use tilekit::kernels::gemm::gemm;
use tilekit::kernels::optim::adamw_step;
use tilekit::kernels::softmax::softmax_rows;
use tilekit::kernels::ws_gemm::ws_gemm;
use tilekit::{Bundle, Device, Error, ScalarArg, Tensor};

use tilekit::dsl::bf16;

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
        if let Err(e) = bench(&device, o.runs) {
            eprintln!("benchmark: {e}");
            return ExitCode::from(1);
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
        for v in k.variants {
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
    println!(
        "\n{:<20} {:<40} {:>10} {:>10} {:>8}  result",
        "kernel", "case", "max abs", "max rel", "tol"
    );
    let mut failed = 0;
    let mut passed = 0;
    for k in tilekit::registry::kernels() {
        let Some(test) = k.selftest else { continue };
        let (r, cases) = collect(|| std::panic::catch_unwind(|| test(device)));
        for c in &cases {
            let ok = c.passed();
            println!(
                "{:<20} {:<40} {:>10.2e} {:>10.2e} {:>8.0e}  {}",
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
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                failed += 1;
                println!("{:<20} FAILED: {e}", k.name);
            }
            Err(_) => {
                failed += 1;
                println!("{:<20} FAILED: the self-test panicked", k.name);
            }
        }
    }
    println!("\n{passed} cases passed, {failed} failed");
    failed
}

/// Median milliseconds of `runs` timed calls of `f` after 3 warm-up calls, each timed with
/// device events.
fn time(
    device: &Device,
    runs: usize,
    mut f: impl FnMut() -> Result<(), Error>,
) -> Result<f64, Error> {
    for _ in 0..3 {
        f()?;
    }
    device.synchronize()?;
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = device.record_event()?;
        f()?;
        let end = device.record_event()?;
        ms.push(f64::from(start.elapsed_ms(&end)?));
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms[ms.len() / 2])
}

fn random(dtype: ScalarType, shape: &[usize], device: &Device, seed: u64) -> Result<Tensor, Error> {
    let mut rng = tilekit::kernels::check::Rng::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect();
    Tensor::from_f64(dtype, shape, &v, device)
}

struct Row {
    kernel: String,
    shape: String,
    ms: f64,
    /// Achieved TFLOP/s (compute-bound kernels) or GB/s (memory-bound ones).
    rate: f64,
    unit: &'static str,
    ceiling: Option<f64>,
    vs_vendor: Option<f64>,
}

fn bench(device: &Device, runs: usize) -> Result<(), Error> {
    let mut rows = Vec::new();
    // The memory ceiling: a 1 GiB device-to-device copy (bytes read plus written).
    let n = 1usize << 28;
    let src = Tensor::zeros(ScalarType::F32, &[n], device)?;
    let mut dst = Tensor::zeros(ScalarType::F32, &[n], device)?;
    let ms = time(device, runs, || dst.copy_from(&src, device))?;
    let copy_gbs = 2.0 * (n * 4) as f64 / (ms * 1e-3) / 1e9;
    rows.push(Row {
        kernel: "copy (ceiling)".into(),
        shape: "1 GiB d2d".into(),
        ms,
        rate: copy_gbs,
        unit: "GB/s",
        ceiling: None,
        vs_vendor: None,
    });
    drop((src, dst));

    let blas = cublas::Cublas::load();
    let mut peak_tflops: Option<f64> = None;
    let gemm_shapes = [(8192, 8192, 8192), (4096, 4096, 4096), (2048, 2048, 2048)];
    let mut vendor = Vec::new();
    match &blas {
        Ok(b) => {
            for &(m, nn, k) in &gemm_shapes {
                let a = random(ScalarType::BF16, &[m, k], device, 1)?;
                let bt = random(ScalarType::BF16, &[k, nn], device, 2)?;
                let c = Tensor::zeros(ScalarType::BF16, &[m, nn], device)?;
                let (pa, pb, pc) = (
                    a.device_ptr().unwrap_or(0),
                    bt.device_ptr().unwrap_or(0),
                    c.device_ptr().unwrap_or(0),
                );
                let ms = time(device, runs, || {
                    b.gemm(m, nn, k, pa, pb, pc, cublas::R_16BF)
                        .map_err(|message| Error::Tensor { message })
                })?;
                let tf = 2.0 * (m * nn * k) as f64 / (ms * 1e-3) / 1e12;
                peak_tflops = Some(peak_tflops.map_or(tf, |p: f64| p.max(tf)));
                vendor.push(((m, nn, k), ms));
                rows.push(Row {
                    kernel: "cuBLAS bf16 GEMM".into(),
                    shape: format!("{m}×{nn}×{k}"),
                    ms,
                    rate: tf,
                    unit: "TFLOP/s",
                    ceiling: None,
                    vs_vendor: None,
                });
            }
        }
        Err(e) => println!("\ncuBLAS baseline unavailable: {e}"),
    }

    let s = ScalarArg::from;
    for &(m, nn, k) in &gemm_shapes {
        let a = random(ScalarType::BF16, &[m, k], device, 1)?;
        let b = random(ScalarType::BF16, &[k, nn], device, 2)?;
        let mut c = Tensor::zeros(ScalarType::BF16, &[m, nn], device)?;
        let g = tilekit::kernels::gemm::grid(m, nn, 64, 64);
        let ms = time(device, runs, || {
            gemm::<bf16, 64, 64, 32, 32, 32>::launch(device, g, &a, &b, &mut c)
        })?;
        let vs = vendor
            .iter()
            .find(|(sh, _)| *sh == (m, nn, k))
            .map(|(_, v)| v / ms);
        rows.push(flops_row(
            "gemm <bf16,64,64,32,32,32>",
            (m, nn, k),
            ms,
            peak_tflops,
            vs,
        ));
        let mut c32 = Tensor::zeros(ScalarType::F32, &[m, nn], device)?;
        let ms = time(device, runs, || {
            ws_gemm::<f32, 64, 64, 32, 32, 2>::launch(device, g, &a, &b, &mut c32)
        })?;
        rows.push(flops_row(
            "ws_gemm <f32,64,64,32,32,2>",
            (m, nn, k),
            ms,
            peak_tflops,
            None,
        ));
    }

    for (bh, seq) in [(32, 2048), (16, 4096)] {
        let d = 64;
        let q = random(ScalarType::BF16, &[bh, seq, d], device, 3)?;
        let kk = random(ScalarType::BF16, &[bh, seq, d], device, 4)?;
        let v = random(ScalarType::BF16, &[bh, seq, d], device, 5)?;
        let mut o = Tensor::zeros(ScalarType::BF16, &[bh, seq, d], device)?;
        let mut lse = Tensor::zeros(ScalarType::F32, &[bh, seq], device)?;
        let g = tilekit::kernels::attention::grid(bh, seq, 64);
        for causal in [false, true] {
            let ms = time(device, runs, || {
                if causal {
                    attention_fwd::<bf16, 64, 16, 64, 4, true>::launch(
                        device,
                        g,
                        &q,
                        &kk,
                        &v,
                        &mut o,
                        &mut lse,
                        s(0.125f32),
                    )
                } else {
                    attention_fwd::<bf16, 64, 16, 64, 4, false>::launch(
                        device,
                        g,
                        &q,
                        &kk,
                        &v,
                        &mut o,
                        &mut lse,
                        s(0.125f32),
                    )
                }
            })?;
            let flops = 4.0 * (bh * seq * seq * d) as f64 / if causal { 2.0 } else { 1.0 };
            let tf = flops / (ms * 1e-3) / 1e12;
            rows.push(Row {
                kernel: format!("attention_fwd causal={causal}"),
                shape: format!("{bh}×{seq}×{d}"),
                ms,
                rate: tf,
                unit: "TFLOP/s",
                ceiling: peak_tflops.map(|p| tf / p),
                vs_vendor: None,
            });
        }
    }

    for (r, c) in [(8192, 4096), (65536, 1024)] {
        let x = random(ScalarType::BF16, &[r, c], device, 6)?;
        let mut y = Tensor::zeros(ScalarType::F32, &[r, c], device)?;
        let g = tilekit::kernels::softmax::grid(r, 16, 4);
        let ms = time(device, runs, || {
            softmax_rows::<bf16, 16, 64, 4>::launch(device, g, &x, &mut y)
        })?;
        let gbs = (r * c * (2 + 4)) as f64 / (ms * 1e-3) / 1e9;
        rows.push(Row {
            kernel: "softmax_rows <bf16>".into(),
            shape: format!("{r}×{c}"),
            ms,
            rate: gbs,
            unit: "GB/s",
            ceiling: Some(gbs / copy_gbs),
            vs_vendor: None,
        });
    }

    for n in [1usize << 24, 100_000_000] {
        let mut p = random(ScalarType::F32, &[n], device, 7)?;
        let gr = random(ScalarType::F32, &[n], device, 8)?;
        let mut m = Tensor::zeros(ScalarType::F32, &[n], device)?;
        let mut v = Tensor::zeros(ScalarType::F32, &[n], device)?;
        let ms = time(device, runs, || {
            adamw_step::<256, 4>::launch(
                device,
                [tiles(n, 256 * 4), 1, 1],
                &mut p,
                &gr,
                &mut m,
                &mut v,
                s(1e-3f32),
                s(0.9f32),
                s(0.999f32),
                s(1e-8f32),
                s(0.01f32),
                s(0.1f32),
                s(0.001f32),
            )
        })?;
        // Reads p, g, m, v; writes p, m, v: 7 × 4 bytes per parameter.
        let gbs = (n * 28) as f64 / (ms * 1e-3) / 1e9;
        rows.push(Row {
            kernel: "adamw_step <256,4>".into(),
            shape: format!("{n}"),
            ms,
            rate: gbs,
            unit: "GB/s",
            ceiling: Some(gbs / copy_gbs),
            vs_vendor: None,
        });
    }

    println!(
        "\n{:<30} {:>16} {:>10} {:>14} {:>10} {:>10}",
        "kernel", "shape", "median ms", "rate", "% ceiling", "vs cuBLAS"
    );
    for r in &rows {
        println!(
            "{:<30} {:>16} {:>10.3} {:>9.1} {:<7} {:>10} {:>10}",
            r.kernel,
            r.shape,
            r.ms,
            r.rate,
            r.unit,
            r.ceiling
                .map_or("-".to_string(), |c| format!("{:.1}%", 100.0 * c)),
            r.vs_vendor.map_or("-".to_string(), |v| format!("{v:.2}×"))
        );
    }
    println!(
        "\n(median of {runs} runs after 3 warm-ups, device events; ceilings measured above: copy \
         {copy_gbs:.0} GB/s{})",
        peak_tflops.map_or(String::new(), |p| format!(", cuBLAS bf16 {p:.0} TFLOP/s"))
    );
    Ok(())
}

fn flops_row(
    kernel: &str,
    (m, n, k): (usize, usize, usize),
    ms: f64,
    peak: Option<f64>,
    vs: Option<f64>,
) -> Row {
    let tf = 2.0 * (m * n * k) as f64 / (ms * 1e-3) / 1e12;
    Row {
        kernel: kernel.into(),
        shape: format!("{m}×{n}×{k}"),
        ms,
        rate: tf,
        unit: "TFLOP/s",
        ceiling: peak.map(|p| tf / p),
        vs_vendor: vs,
    }
}
