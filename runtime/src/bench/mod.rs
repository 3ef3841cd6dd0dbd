//! The GPU benchmark (`tilekit bench`, `tilekit-gpucheck --bench`): the kernel library at
//! realistic shapes against the device's measured ceilings.
//!
//! Each row is the median of `runs` timed runs after 3 warm-ups, each run timed with device
//! events around the call (host work inside a call, such as building a tensor table or a
//! convergence check that reads a scalar back, is part of its time). FLOPs and bytes are counted
//! from the math, never from what a kernel happens to execute. Ceilings are measured in the same
//! run: a 1 GiB device-to-device copy (bytes read plus written) for bandwidth, cuBLAS's bf16 GEMM
//! (loaded at run time, [`cublas`]) for compute. The last column compares a row with a baseline
//! named beside the ratio (`1.05× cuBLAS`: 1.05 times the baseline's rate).
//!
//! The rows:
//!
//! - copy (the bandwidth ceiling), cuBLAS bf16 GEMM, the library's `gemm` and `ws_gemm` at three
//!   square shapes (`2mnk` FLOPs); `softmax_rows` and `adamw_step` by the bytes they must move.
//! - Attention ([`attention`]): forward TFLOP/s at `B·S = 16k` tokens and 2048 model width
//!   (`H = 2048 / hd` heads), head dims 64, 128 and 256, `S` 512 … 16k, causal and not
//!   (`4·B·H·S²·hd` FLOPs, halved when causal, as FlashAttention counts); backward likewise
//!   at head dims 64 and 128 (`2.5×` the forward's: five `S²·hd` products against two); decode
//!   over a paged KV cache in GB/s (the K/V cache it must read, plus Q and O) against the copy.
//! - Optimizers and losses ([`optim`]): GB/s per kernel against the copy (bytes per parameter
//!   from each update's reads and writes): AdamW on one flat tensor and multi-tensor over the
//!   parameter list of a 1.2B-parameter Llama-style model, AdamW with bf16 gradients and a bf16
//!   model copy, Lion, Adam-mini, 8-bit AdamW, clip_grad_norm over the model's list,
//!   cross-entropy forward + backward at V = 32000 and 128256; TFLOP/s of the fused linear
//!   cross-entropy (`6·T·V·H`), a Muon step (5 Newton–Schulz steps, `5·(4m²n + 2m³)` per
//!   `m×n` matrix, `m ≤ n`) and a Shampoo step that recomputes both inverse 4th roots
//!   (`8d³` per Newton iteration, iterations as run), each against the library GEMM of equal
//!   FLOPs (the full products counted, so Muon's one-triangle Gram may pass 1×).
//! - Mixture of experts ([`moe`]): at DeepSeek-V3, Qwen3-30B-A3B and Mixtral shapes with 4k and
//!   16k tokens, routing + permutation time, the grouped gate/up (SwiGLU) and down GEMMs'
//!   TFLOP/s over the `T·k` routed rows (padding not counted) with their ratio to the library's
//!   dense GEMM with `M = T·k` and the same N, K (`N = 2F` for gate/up), and the whole layer.
//!
//! A row that fails prints `FAILED` with the error and the run goes on. The same figures from
//! PyTorch (SDPA's cuDNN and flash backends, fused AdamW, a Muon step, cross-entropy,
//! `torch._grouped_mm`) come from `scripts/bench-torch.py`, which `scripts/gpu-check.sh` stages
//! beside the checker so that one run prints both.

pub mod attention;
pub mod cublas;
pub mod moe;
pub mod optim;

use std::fmt::Write as _;

use crate::dsl::bf16;
use crate::ir::ScalarType;
use crate::kernels::check::tiles;
use crate::kernels::gemm::gemm;
use crate::kernels::gemm_wg::gemm_wg;
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

/// A tensor of uniform values in [−1, 1) on `device`. Large tensors repeat a random block of
/// about 4M elements along their first dimension, copied on the device, so that filling
/// gigabytes costs no host time.
pub(crate) fn random(
    dtype: ScalarType,
    shape: &[usize],
    device: &Device,
    seed: u64,
) -> Result<Tensor, Error> {
    const BLOCK: usize = 1 << 22;
    let n: usize = shape.iter().product();
    let row: usize = shape.iter().skip(1).product::<usize>().max(1);
    let rows_per = (BLOCK / row).max(1);
    if n <= BLOCK || shape.is_empty() || rows_per >= shape[0] {
        let mut rng = crate::kernels::check::Rng::new(seed);
        let v: Vec<f64> = (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        return Tensor::from_f64(dtype, shape, &v, device);
    }
    let mut block_shape = shape.to_vec();
    block_shape[0] = rows_per;
    let block = random(dtype, &block_shape, device, seed)?;
    let t = Tensor::zeros(dtype, shape, device)?;
    let mut at = 0;
    while at < shape[0] {
        let len = rows_per.min(shape[0] - at);
        t.narrow(0, at, len)?
            .copy_from(&block.narrow(0, 0, len)?, device)?;
        at += len;
    }
    Ok(t)
}

/// One line of the table.
pub(crate) struct Row {
    kernel: String,
    shape: String,
    ms: f64,
    /// Achieved TFLOP/s (compute-bound kernels), GB/s (memory-bound ones) or µs (latency).
    rate: f64,
    unit: &'static str,
    /// The rate as a fraction of the measured ceiling (copy bandwidth or cuBLAS's peak).
    ceiling: Option<f64>,
    /// The rate over a baseline's, and the baseline's name.
    vs: Option<(f64, String)>,
}

/// The problem sizes of a benchmark run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sizes {
    /// The sizes the figures are reported for.
    Full,
    /// Tiny problems, for checking that the harness runs end to end (its tests).
    Smoke,
}

/// The state of one benchmark run: the device, the measured ceilings and the rows so far.
pub(crate) struct Bench<'a> {
    pub(crate) device: &'a Device,
    pub(crate) runs: usize,
    /// Full sizes (else smoke sizes).
    pub(crate) full: bool,
    pub(crate) copy_gbs: f64,
    pub(crate) peak_tflops: Option<f64>,
    rows: Vec<Row>,
    /// Lines printed above the table (unavailable baselines, failed rows).
    notes: String,
    /// The library GEMM's timings, by shape: (median ms, variant).
    gemms: Vec<((usize, usize, usize), (f64, &'static str))>,
}

impl Bench<'_> {
    /// Median milliseconds of `f` (see [`time`]).
    pub(crate) fn time(&self, f: impl FnMut() -> Result<(), Error>) -> Result<f64, Error> {
        time(self.device, self.runs, f)
    }

    /// Adds a compute-bound row: `flops` in `ms`, against cuBLAS's measured peak.
    pub(crate) fn flops_row(
        &mut self,
        kernel: impl Into<String>,
        shape: impl Into<String>,
        ms: f64,
        flops: f64,
        vs: Option<(f64, String)>,
    ) -> f64 {
        let tf = flops / (ms * 1e-3) / 1e12;
        self.rows.push(Row {
            kernel: kernel.into(),
            shape: shape.into(),
            ms,
            rate: tf,
            unit: "TFLOP/s",
            ceiling: self.peak_tflops.map(|p| tf / p),
            vs,
        });
        tf
    }

    /// Adds a memory-bound row: `bytes` moved in `ms`, against the measured copy bandwidth.
    pub(crate) fn bytes_row(
        &mut self,
        kernel: impl Into<String>,
        shape: impl Into<String>,
        ms: f64,
        bytes: f64,
    ) {
        let gbs = bytes / (ms * 1e-3) / 1e9;
        self.rows.push(Row {
            kernel: kernel.into(),
            shape: shape.into(),
            ms,
            rate: gbs,
            unit: "GB/s",
            ceiling: Some(gbs / self.copy_gbs),
            vs: None,
        });
    }

    /// Adds a latency row (the time in µs is the figure).
    pub(crate) fn latency_row(
        &mut self,
        kernel: impl Into<String>,
        shape: impl Into<String>,
        ms: f64,
    ) {
        self.rows.push(Row {
            kernel: kernel.into(),
            shape: shape.into(),
            ms,
            rate: ms * 1e3,
            unit: "µs",
            ceiling: None,
            vs: None,
        });
    }

    /// Runs one group of rows; a failure is noted (and printed in the table's place) rather
    /// than ending the benchmark.
    pub(crate) fn group(&mut self, name: &str, f: impl FnOnce(&mut Self) -> Result<(), Error>) {
        if let Err(e) = f(self) {
            let _ = writeln!(self.notes, "FAILED {name}: {e}");
        }
    }

    /// The library's dense GEMM (bf16 A `[m, k]` and B `[k, n]`, f32 C) at `m×n×k`: the best
    /// median ms of its registered large-tile variants (with `gemm_wg`'s on sm_90a), and the
    /// variant's name. Measured once per shape.
    pub(crate) fn library_gemm(
        &mut self,
        m: usize,
        n: usize,
        k: usize,
    ) -> Result<(f64, &'static str), Error> {
        if let Some((_, r)) = self.gemms.iter().find(|(s, _)| *s == (m, n, k)) {
            return Ok(*r);
        }
        let device = self.device;
        let a = random(ScalarType::BF16, &[m, k], device, 11)?;
        let b = random(ScalarType::BF16, &[k, n], device, 12)?;
        let mut c = Tensor::zeros(ScalarType::F32, &[m, n], device)?;
        let mut best = (
            self.time(|| {
                gemm::<f32, 128, 128, 32, 64, 32>::launch(
                    device,
                    crate::kernels::gemm::grid(m, n, 128, 128),
                    &a,
                    &b,
                    &mut c,
                )
            })?,
            "gemm <f32,128,128,32,64,32>",
        );
        let ms = self.time(|| {
            gemm::<f32, 128, 256, 32, 64, 64>::launch(
                device,
                crate::kernels::gemm::grid(m, n, 128, 256),
                &a,
                &b,
                &mut c,
            )
        })?;
        if ms < best.0 {
            best = (ms, "gemm <f32,128,256,32,64,64>");
        }
        if device.target()? == Some("sm_90a") {
            // Absent from a bundle built for sm_80: then the other two decide.
            let wg = self.time(|| {
                gemm_wg::<f32, 128, 256, 64, 3>::launch(
                    device,
                    crate::kernels::gemm::grid(m, n, 128, 256),
                    &a,
                    &b,
                    &mut c,
                )
            });
            if let Ok(ms) = wg {
                if ms < best.0 {
                    best = (ms, "gemm_wg <f32,128,256,64,3>");
                }
            }
        }
        self.gemms.push(((m, n, k), best));
        Ok(best)
    }

    /// `tflops` (a row's rate) over the library GEMM's rate at `m×n×k`, named for the last
    /// column; `k` is rounded up to a multiple of 64 (the rates, not the times, are compared).
    pub(crate) fn vs_gemm(
        &mut self,
        tflops: f64,
        (m, n, k): (usize, usize, usize),
    ) -> Result<(f64, String), Error> {
        let k = k.max(1).next_multiple_of(64);
        let (ms, _) = self.library_gemm(m, n, k)?;
        let gemm_tf = 2.0 * (m * n) as f64 * k as f64 / (ms * 1e-3) / 1e12;
        Ok((tflops / gemm_tf, format!("gemm {m}×{n}×{k}")))
    }

    /// Sets the last row's comparison.
    pub(crate) fn set_vs(&mut self, vs: (f64, String)) {
        if let Some(r) = self.rows.last_mut() {
            r.vs = Some(vs);
        }
    }
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
    let mut b = Bench {
        device,
        runs,
        full,
        copy_gbs: 0.0,
        peak_tflops: None,
        rows: Vec::new(),
        notes: String::new(),
        gemms: Vec::new(),
    };
    // The memory ceiling: a 1 GiB device-to-device copy (bytes read plus written).
    let n = if full { 1usize << 28 } else { 1 << 12 };
    let src = random(ScalarType::F32, &[n], device, 0)?;
    let mut dst = Tensor::zeros(ScalarType::F32, &[n], device)?;
    let ms = b.time(|| dst.copy_from(&src, device))?;
    b.copy_gbs = 2.0 * (n * 4) as f64 / (ms * 1e-3) / 1e9;
    b.rows.push(Row {
        kernel: "copy (ceiling)".into(),
        shape: if full {
            "1 GiB d2d".into()
        } else {
            format!("{} KiB d2d", (n * 4) >> 10)
        },
        ms,
        rate: b.copy_gbs,
        unit: "GB/s",
        ceiling: None,
        vs: None,
    });
    drop((src, dst));

    b.group("GEMM", gemm_rows);
    b.group("softmax", softmax_rows_);
    b.group("adamw_step", adamw_rows);
    attention::rows(&mut b);
    optim::rows(&mut b);
    moe::rows(&mut b);

    let mut out = std::mem::take(&mut b.notes);
    let _ = writeln!(
        out,
        "\n{:<40} {:>26} {:>10} {:>16} {:>9} {:>28}",
        "kernel", "shape", "median ms", "rate", "% ceiling", "vs baseline"
    );
    for r in &b.rows {
        let _ = writeln!(
            out,
            "{:<40} {:>26} {:>10.3} {:>9.1} {:<7} {:>9} {:>28}",
            r.kernel,
            r.shape,
            r.ms,
            r.rate,
            r.unit,
            r.ceiling
                .map_or("-".to_string(), |c| format!("{:.1}%", 100.0 * c)),
            r.vs.as_ref()
                .map_or("-".to_string(), |(v, name)| format!("{v:.2}× {name}"))
        );
    }
    if !b.gemms.is_empty() {
        let _ = writeln!(
            out,
            "\nlibrary GEMM baselines (the fastest variant per shape):"
        );
        for ((m, n, k), (ms, variant)) in &b.gemms {
            let tf = 2.0 * (m * n) as f64 * *k as f64 / (ms * 1e-3) / 1e12;
            let _ = writeln!(
                out,
                "  {m}×{n}×{k}: {variant}, {tf:.1} TFLOP/s ({ms:.3} ms)"
            );
        }
    }
    let _ = writeln!(
        out,
        "\n(median of {runs} runs after 3 warm-ups, device events; ceilings measured above: copy \
         {:.0} GB/s{})",
        b.copy_gbs,
        b.peak_tflops
            .map_or(String::new(), |p| format!(", cuBLAS bf16 {p:.0} TFLOP/s"))
    );
    Ok(out)
}

/// cuBLAS's bf16 GEMM (the compute ceiling) and the library's `gemm` and `ws_gemm` at three
/// shapes.
fn gemm_rows(b: &mut Bench<'_>) -> Result<(), Error> {
    let device = b.device;
    let blas = cublas::Cublas::load();
    let gemm_shapes = if b.full {
        [(8192, 8192, 8192), (4096, 4096, 4096), (2048, 2048, 2048)]
    } else {
        [(64, 64, 64), (96, 64, 32), (64, 128, 64)]
    };
    let mut vendor = Vec::new();
    match &blas {
        Ok(blas) => {
            for &(m, nn, k) in &gemm_shapes {
                let a = random(ScalarType::BF16, &[m, k], device, 1)?;
                let bt = random(ScalarType::BF16, &[k, nn], device, 2)?;
                let c = Tensor::zeros(ScalarType::BF16, &[m, nn], device)?;
                let (pa, pb, pc) = (
                    a.device_ptr().unwrap_or(0),
                    bt.device_ptr().unwrap_or(0),
                    c.device_ptr().unwrap_or(0),
                );
                let ms = b.time(|| {
                    blas.gemm(m, nn, k, pa, pb, pc, cublas::R_16BF)
                        .map_err(|message| Error::Tensor { message })
                })?;
                let tf = 2.0 * (m * nn * k) as f64 / (ms * 1e-3) / 1e12;
                b.peak_tflops = Some(b.peak_tflops.map_or(tf, |p: f64| p.max(tf)));
                vendor.push(((m, nn, k), tf));
                b.rows.push(Row {
                    kernel: "cuBLAS bf16 GEMM".into(),
                    shape: format!("{m}×{nn}×{k}"),
                    ms,
                    rate: tf,
                    unit: "TFLOP/s",
                    ceiling: None,
                    vs: None,
                });
            }
        }
        Err(e) => {
            let _ = writeln!(b.notes, "cuBLAS baseline unavailable: {e}");
        }
    }
    for &(m, nn, k) in &gemm_shapes {
        let a = random(ScalarType::BF16, &[m, k], device, 1)?;
        let bm = random(ScalarType::BF16, &[k, nn], device, 2)?;
        let mut c = Tensor::zeros(ScalarType::BF16, &[m, nn], device)?;
        let g = crate::kernels::gemm::grid(m, nn, 64, 64);
        let ms = b.time(|| gemm::<bf16, 64, 64, 32, 32, 32>::launch(device, g, &a, &bm, &mut c))?;
        let flops = 2.0 * (m * nn * k) as f64;
        let tf = flops / (ms * 1e-3) / 1e12;
        let vs = vendor
            .iter()
            .find(|(sh, _)| *sh == (m, nn, k))
            .map(|(_, v)| (tf / v, "cuBLAS".to_string()));
        let shape = format!("{m}×{nn}×{k}");
        b.flops_row("gemm <bf16,64,64,32,32,32>", &shape, ms, flops, vs);
        let mut c32 = Tensor::zeros(ScalarType::F32, &[m, nn], device)?;
        let ms =
            b.time(|| ws_gemm::<f32, 64, 64, 32, 32, 2>::launch(device, g, &a, &bm, &mut c32))?;
        b.flops_row("ws_gemm <f32,64,64,32,32,2>", shape, ms, flops, None);
    }
    Ok(())
}

/// Row softmax, by the bytes it moves (bf16 in, f32 out).
fn softmax_rows_(b: &mut Bench<'_>) -> Result<(), Error> {
    let device = b.device;
    let softmax_shapes = if b.full {
        [(8192, 4096), (65536, 1024)]
    } else {
        [(64, 64), (128, 32)]
    };
    for (r, c) in softmax_shapes {
        let x = random(ScalarType::BF16, &[r, c], device, 6)?;
        let mut y = Tensor::zeros(ScalarType::F32, &[r, c], device)?;
        let g = crate::kernels::softmax::grid(r, 16, 4);
        let ms = b.time(|| softmax_rows::<bf16, 16, 64, 4>::launch(device, g, &x, &mut y))?;
        b.bytes_row(
            "softmax_rows <bf16>",
            format!("{r}×{c}"),
            ms,
            (r * c * (2 + 4)) as f64,
        );
    }
    Ok(())
}

/// The single-buffer AdamW kernel, by the bytes it moves.
fn adamw_rows(b: &mut Bench<'_>) -> Result<(), Error> {
    let device = b.device;
    let s = ScalarArg::from;
    let adamw_sizes = if b.full {
        [1usize << 24, 100_000_000]
    } else {
        [4096, 5000]
    };
    for n in adamw_sizes {
        let mut p = random(ScalarType::F32, &[n], device, 7)?;
        let gr = random(ScalarType::F32, &[n], device, 8)?;
        let mut m = Tensor::zeros(ScalarType::F32, &[n], device)?;
        let mut v = Tensor::zeros(ScalarType::F32, &[n], device)?;
        let ms = b.time(|| {
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
        b.bytes_row("adamw_step <256,4>", format!("{n}"), ms, (n * 28) as f64);
    }
    Ok(())
}
