//! The GPU benchmark (`tilekit bench`, `tilekit-gpucheck --bench`): the kernel library at
//! realistic shapes against the device's measured ceilings.
//!
//! Each row is the median of `runs` timed runs after 3 warm-ups, each run timed with device
//! events; FLOPs and bytes are counted from the math (GEMM `2mnk`, attention `4·bh·s²·d`, halved
//! when causal; softmax and AdamW by the bytes they must move). Ceilings are measured in the same
//! run: a 1 GiB device-to-device copy (bytes read plus written) for bandwidth, cuBLAS's bf16 GEMM
//! (loaded at run time, [`cublas`]) for compute; GEMM rows also give the ratio to cuBLAS at the
//! same shape.

pub mod cublas;

use std::fmt::Write as _;

use crate::dsl::bf16;
use crate::ir::ScalarType;
use crate::kernels::attention::attention_fwd;
use crate::kernels::check::tiles;
use crate::kernels::gemm::gemm;
use crate::kernels::optim::adamw_step;
use crate::kernels::softmax::softmax_rows;
use crate::kernels::ws_gemm::ws_gemm;
use crate::{Device, Error, ScalarArg, Tensor};

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
    let mut rng = crate::kernels::check::Rng::new(seed);
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

/// The problem sizes of a benchmark run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sizes {
    /// The sizes the figures are reported for.
    Full,
    /// Tiny problems, for checking that the harness runs end to end (its tests).
    Smoke,
}

/// Runs the benchmark on `device` (a GPU) with `runs` timed runs per row (at least 20) and
/// returns the table.
pub fn run(device: &Device, runs: usize) -> Result<String, Error> {
    run_with(device, runs, Sizes::Full)
}

/// [`run`] at the given problem sizes.
pub fn run_with(device: &Device, runs: usize, sizes: Sizes) -> Result<String, Error> {
    let full = sizes == Sizes::Full;
    if *device == Device::Cpu {
        return Err(Error::UnsupportedDevice {
            device: "cpu".into(),
            message: "the benchmark measures GPUs; the interpreter's is `make bench`".into(),
        });
    }
    if runs < 20 {
        return Err(Error::UnsupportedDevice {
            device: device.name(),
            message: format!("the benchmark wants at least 20 timed runs per row, not {runs}"),
        });
    }
    let mut out = String::new();
    let mut rows = Vec::new();
    // The memory ceiling: a 1 GiB device-to-device copy (bytes read plus written).
    let n = if full { 1usize << 28 } else { 1 << 12 };
    let src = Tensor::zeros(ScalarType::F32, &[n], device)?;
    let mut dst = Tensor::zeros(ScalarType::F32, &[n], device)?;
    let ms = time(device, runs, || dst.copy_from(&src, device))?;
    let copy_gbs = 2.0 * (n * 4) as f64 / (ms * 1e-3) / 1e9;
    rows.push(Row {
        kernel: "copy (ceiling)".into(),
        shape: if full {
            "1 GiB d2d".into()
        } else {
            format!("{} KiB d2d", (n * 4) >> 10)
        },
        ms,
        rate: copy_gbs,
        unit: "GB/s",
        ceiling: None,
        vs_vendor: None,
    });
    drop((src, dst));

    let blas = cublas::Cublas::load();
    let mut peak_tflops: Option<f64> = None;
    let gemm_shapes = if full {
        [(8192, 8192, 8192), (4096, 4096, 4096), (2048, 2048, 2048)]
    } else {
        [(64, 64, 64), (96, 64, 32), (64, 128, 64)]
    };
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
        Err(e) => {
            let _ = writeln!(out, "cuBLAS baseline unavailable: {e}");
        }
    }

    let s = ScalarArg::from;
    for &(m, nn, k) in &gemm_shapes {
        let a = random(ScalarType::BF16, &[m, k], device, 1)?;
        let b = random(ScalarType::BF16, &[k, nn], device, 2)?;
        let mut c = Tensor::zeros(ScalarType::BF16, &[m, nn], device)?;
        let g = crate::kernels::gemm::grid(m, nn, 64, 64);
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

    let attention_shapes = if full {
        [(32, 2048), (16, 4096)]
    } else {
        [(2, 64), (1, 128)]
    };
    for (bh, seq) in attention_shapes {
        let d = 64;
        let q = random(ScalarType::BF16, &[bh, seq, d], device, 3)?;
        let kk = random(ScalarType::BF16, &[bh, seq, d], device, 4)?;
        let v = random(ScalarType::BF16, &[bh, seq, d], device, 5)?;
        let mut o = Tensor::zeros(ScalarType::BF16, &[bh, seq, d], device)?;
        let mut lse = Tensor::zeros(ScalarType::F32, &[bh, seq], device)?;
        let g = crate::kernels::attention::grid(bh, seq, 64);
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

    let softmax_shapes = if full {
        [(8192, 4096), (65536, 1024)]
    } else {
        [(64, 64), (128, 32)]
    };
    for (r, c) in softmax_shapes {
        let x = random(ScalarType::BF16, &[r, c], device, 6)?;
        let mut y = Tensor::zeros(ScalarType::F32, &[r, c], device)?;
        let g = crate::kernels::softmax::grid(r, 16, 4);
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

    let adamw_sizes = if full {
        [1usize << 24, 100_000_000]
    } else {
        [4096, 5000]
    };
    for n in adamw_sizes {
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

    let _ = writeln!(
        out,
        "\n{:<30} {:>16} {:>10} {:>14} {:>10} {:>10}",
        "kernel", "shape", "median ms", "rate", "% ceiling", "vs cuBLAS"
    );
    for r in &rows {
        let _ = writeln!(
            out,
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
    let _ = writeln!(
        out,
        "\n(median of {runs} runs after 3 warm-ups, device events; ceilings measured above: copy \
         {copy_gbs:.0} GB/s{})",
        peak_tflops.map_or(String::new(), |p| format!(", cuBLAS bf16 {p:.0} TFLOP/s"))
    );
    Ok(out)
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
