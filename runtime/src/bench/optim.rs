//! Optimizer and loss rows of the benchmark (see the [module documentation](super)): GB/s of
//! the element-wise optimizers, gradient clipping and cross-entropy against the measured copy
//! bandwidth, and TFLOP/s of the fused linear cross-entropy, Muon and Shampoo against the
//! library GEMM of equal FLOPs. Every row calls the user-facing API
//! ([`kernels::optim`](crate::kernels::optim), [`kernels::loss`](crate::kernels::loss),
//! [`muon::Muon`], [`Shampoo`]).

use super::{random, Bench};
use crate::ir::ScalarType;
use crate::kernels::check::Rng;
use crate::kernels::loss::{
    cross_entropy, linear_cross_entropy, CrossEntropyOptions, CrossEntropyOutputs,
    LinearCrossEntropyOptions, LinearCrossEntropyOutputs, STATS,
};
use crate::kernels::muon::{self, MuonConfig};
use crate::kernels::optim::{
    Adam8bit, Adam8bitConfig, AdamMini, AdamMiniConfig, AdamW, AdamWConfig, Lion, LionConfig,
    Partition,
};
use crate::kernels::optim_multi::clip_grad_norm_multi;
use crate::kernels::shampoo::{Shampoo, ShampooConfig};
use crate::tensor_list::TensorList;
use crate::{Error, Tensor, TensorArg};

/// The rows (each group noted and skipped if it fails).
pub(crate) fn rows(b: &mut Bench<'_>) {
    b.group("multi-tensor AdamW and clip_grad_norm", model_rows);
    b.group("optimizers on one tensor", flat_rows);
    b.group("cross-entropy", cross_entropy_rows);
    b.group("linear cross-entropy", linear_ce_rows);
    b.group("Muon", muon_rows);
    b.group("Shampoo", shampoo_rows);
}

fn error(e: impl std::fmt::Display) -> Error {
    Error::Tensor {
        message: e.to_string(),
    }
}

/// The parameter shapes of a Llama-style model: the embedding `[vocab, h]`, then per layer two
/// norms `[h]`, Q and O `[h, h]`, K and V `[kv, h]`, gate and up `[f, h]`, down `[h, f]`, and the
/// final norm. At full size Llama 3.2 1B's (h 2048, 16 layers, 8 K/V heads of 64, f 8192,
/// vocab 128256): 1.24 G parameters in 147 tensors.
pub(crate) fn model_shapes(full: bool) -> Vec<Vec<usize>> {
    let (h, kv, f, layers, vocab) = if full {
        (2048, 512, 8192, 16, 128256)
    } else {
        (32, 8, 48, 2, 77)
    };
    let mut shapes = vec![vec![vocab, h]];
    for _ in 0..layers {
        shapes.extend([
            vec![h],
            vec![h, h],
            vec![kv, h],
            vec![kv, h],
            vec![h, h],
            vec![h],
            vec![f, h],
            vec![f, h],
            vec![h, f],
        ]);
    }
    shapes.push(vec![h]);
    shapes
}

fn tensors(b: &Bench<'_>, shapes: &[Vec<usize>], seed: u64) -> Result<Vec<Tensor>, Error> {
    shapes
        .iter()
        .enumerate()
        .map(|(i, s)| random(ScalarType::F32, s, b.device, seed + i as u64))
        .collect()
}

/// Multi-tensor AdamW (one launch over the model's list) and the global clip over the same
/// sizes.
fn model_rows(b: &mut Bench<'_>) -> Result<(), Error> {
    let device = b.device;
    let shapes = model_shapes(b.full);
    let n: usize = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
    let label = format!("{} tensors, {:.3} G", shapes.len(), n as f64 / 1e9);
    {
        let params = tensors(b, &shapes, 100)?;
        let grads = tensors(b, &shapes, 300)?;
        let mut opt = AdamW::new(AdamWConfig::default()).map_err(error)?;
        let ms = b.time(|| opt.step(device, &params, &grads).map_err(error))?;
        // Reads p, g, m, v; writes p, m, v (f32).
        b.bytes_row("AdamW multi-tensor (model)", &label, ms, 28.0 * n as f64);
    }
    {
        let params = tensors(b, &shapes, 200)?;
        let grads = tensors(b, &shapes, 400)?;
        let mut opt = Adam8bit::new(Adam8bitConfig::default()).map_err(error)?;
        let ms = b.time(|| opt.step(device, &params, &grads).map_err(error))?;
        b.bytes_row(
            "8-bit AdamW multi-tensor (model)",
            &label,
            ms,
            ADAM8BIT_BYTES * n as f64,
        );
    }
    // The clip reads the gradients once for the norm, then reads and writes them to scale:
    // 12 bytes per element. Its list holds flat views of the same sizes (a tensor list has one
    // rank).
    let flat: Vec<Vec<usize>> = shapes
        .iter()
        .map(|s| vec![s.iter().product::<usize>()])
        .collect();
    let grads = tensors(b, &flat, 500)?;
    let refs: Vec<&dyn TensorArg> = grads.iter().map(|g| g as &dyn TensorArg).collect();
    let mut list = TensorList::new(&refs).map_err(error)?;
    let mut stats = Tensor::zeros(ScalarType::F32, &[2], device)?;
    // A bound above every norm these gradients reach, so that repeated runs scale by 1.
    let max_norm = 1e12;
    let ms = b.time(|| clip_grad_norm_multi(device, &mut list, max_norm, &mut stats))?;
    b.bytes_row(
        "clip_grad_norm multi-tensor (model)",
        label,
        ms,
        12.0 * n as f64,
    );
    Ok(())
}

/// The optimizers on one large tensor (`2²⁸` elements at full size).
fn flat_rows(b: &mut Bench<'_>) -> Result<(), Error> {
    let device = b.device;
    let (rows, cols) = if b.full {
        (1 << 14, 1 << 14)
    } else {
        (50, 100)
    };
    let n = rows * cols;
    let label = format!("{rows}×{cols}");
    let f = ScalarType::F32;
    let params = vec![random(f, &[rows, cols], device, 31)?];
    let grads = vec![random(f, &[rows, cols], device, 32)?];

    let mut adamw = AdamW::new(AdamWConfig::default()).map_err(error)?;
    let ms = b.time(|| adamw.step(device, &params, &grads).map_err(error))?;
    b.bytes_row("AdamW", &label, ms, 28.0 * n as f64);
    drop(adamw);

    {
        let grads16 = vec![random(ScalarType::BF16, &[rows, cols], device, 33)?];
        let model = vec![Tensor::zeros(ScalarType::BF16, &[rows, cols], device)?];
        let mut opt = AdamW::new(AdamWConfig::default()).map_err(error)?;
        let ms = b.time(|| {
            opt.step_with_model_copy(device, &params, &grads16, &model)
                .map_err(error)
        })?;
        // p, m, v read and written (f32), g read and the model copy written (bf16).
        b.bytes_row(
            "AdamW mixed (bf16 grads + model)",
            &label,
            ms,
            28.0 * n as f64,
        );
    }

    let mut lion = Lion::new(LionConfig::default()).map_err(error)?;
    let ms = b.time(|| lion.step(device, &params, &grads).map_err(error))?;
    // p and m read and written, g read.
    b.bytes_row("Lion", &label, ms, 20.0 * n as f64);
    drop(lion);

    let mut mini = AdamMini::new(AdamMiniConfig::default(), vec![Partition::PerOutputNeuron])
        .map_err(error)?;
    let ms = b.time(|| mini.step(device, &params, &grads).map_err(error))?;
    // p and m read and written, g read; one v per row read and written.
    b.bytes_row(
        "Adam-mini (per output neuron)",
        &label,
        ms,
        20.0 * n as f64 + 8.0 * rows as f64,
    );
    drop(mini);

    // The 8-bit state lives on the device (`optim8::DeviceState`), as the other rows' does;
    // the step is the multi-tensor launch (`adam8bit_multi`) over a list of one.
    let mut adam8 = Adam8bit::new(Adam8bitConfig::default()).map_err(error)?;
    let ms = b.time(|| adam8.step(device, &params, &grads).map_err(error))?;
    b.bytes_row(
        "8-bit AdamW (blockwise 256)",
        &label,
        ms,
        ADAM8BIT_BYTES * n as f64,
    );
    Ok(())
}

/// Bytes an 8-bit AdamW step moves per parameter: p read and written and g read (f32), the
/// 8-bit codes of m and v read and written, and their f32 absmax per 256-element block read
/// and written.
const ADAM8BIT_BYTES: f64 = 16.0 + 16.0 / 256.0;

/// Targets in `0 .. vocab` with every 17th token ignored (−100).
fn targets(b: &Bench<'_>, t: usize, vocab: usize) -> Result<Tensor, Error> {
    let mut rng = Rng::new(41);
    let v: Vec<f64> = (0..t)
        .map(|i| {
            if i % 17 == 5 {
                -100.0
            } else {
                (rng.uniform(0.0, vocab as f64) as usize).min(vocab - 1) as f64
            }
        })
        .collect();
    Tensor::from_f64(ScalarType::I32, &[t], &v, b.device)
}

/// Cross-entropy forward and backward over bf16 logits (the gradient written in place).
fn cross_entropy_rows(b: &mut Bench<'_>) -> Result<(), Error> {
    let device = b.device;
    let (t, vocabs): (usize, &[usize]) = if b.full {
        (8192, &[32000, 128256])
    } else {
        (33, &[100, 257])
    };
    for &vocab in vocabs {
        let mut logits = random(ScalarType::BF16, &[t, vocab], device, 42)?;
        let tg = targets(b, t, vocab)?;
        let f = ScalarType::F32;
        let mut loss = Tensor::zeros(f, &[t], device)?;
        let mut nll = Tensor::zeros(f, &[t], device)?;
        let mut stats = Tensor::zeros(f, &[STATS], device)?;
        let cfg = CrossEntropyOptions::default();
        let ms = b.time(|| {
            cross_entropy(
                device,
                &mut logits,
                &tg,
                &cfg,
                CrossEntropyOutputs {
                    loss: &mut loss,
                    nll: &mut nll,
                    stats: &mut stats,
                },
            )
            .map_err(error)
        })?;
        // The logits read once and their gradient written (bf16).
        b.bytes_row(
            "cross-entropy fwd+bwd <bf16>",
            format!("T{t} V{vocab}"),
            ms,
            4.0 * (t * vocab) as f64,
        );
    }
    Ok(())
}

/// The fused linear cross-entropy with both gradients: `6·T·V·H` FLOPs (the logits, the hidden
/// states' gradient and the classifier's).
fn linear_ce_rows(b: &mut Bench<'_>) -> Result<(), Error> {
    let device = b.device;
    let (t, h, vocab) = if b.full {
        (8192, 4096, 128256)
    } else {
        (40, 32, 100)
    };
    let bf = ScalarType::BF16;
    let f = ScalarType::F32;
    let hidden = random(bf, &[t, h], device, 51)?;
    let weight = random(bf, &[vocab, h], device, 52)?;
    let tg = targets(b, t, vocab)?;
    let mut loss = Tensor::zeros(f, &[t], device)?;
    let mut nll = Tensor::zeros(f, &[t], device)?;
    let mut stats = Tensor::zeros(f, &[STATS], device)?;
    let mut gh = Tensor::zeros(f, &[t, h], device)?;
    let mut gw = Tensor::zeros(f, &[vocab, h], device)?;
    let opts = LinearCrossEntropyOptions::default();
    let ms = b.time(|| {
        linear_cross_entropy(
            device,
            &hidden,
            &weight,
            &tg,
            &opts,
            LinearCrossEntropyOutputs {
                loss: &mut loss,
                nll: &mut nll,
                stats: &mut stats,
                grad_hidden: Some(&mut gh),
                grad_weight: Some(&mut gw),
            },
        )
        .map_err(error)
    })?;
    let tf = b.flops_row(
        "linear cross-entropy fwd+bwd",
        format!("T{t} H{h} V{vocab}"),
        ms,
        6.0 * (t * h * vocab) as f64,
        None,
    );
    drop((hidden, weight, gh, gw));
    let vs = b.vs_gemm(tf, (t, vocab, 3 * h))?;
    b.set_vs(vs);
    Ok(())
}

/// A Muon step over a batch of same-shape matrices: momentum, normalization and 5
/// Newton–Schulz steps on the `m×n` orientation (`m ≤ n`), each `A = X·Xᵀ` (`2m²n`),
/// `B = b·A + c·A·A` (`2m³`), `X ← a·X + B·X` (`2m²n`).
fn muon_rows(b: &mut Bench<'_>) -> Result<(), Error> {
    let device = b.device;
    let shapes: &[[usize; 3]] = if b.full {
        &[[4, 4096, 4096], [2, 14336, 4096]]
    } else {
        &[[2, 40, 72], [1, 96, 64]]
    };
    let cfg = MuonConfig::default();
    for &[batch, r, c] in shapes {
        let f = ScalarType::F32;
        let mut p = random(f, &[batch, r, c], device, 61)?;
        let g = random(f, &[batch, r, c], device, 62)?;
        let mut opt = muon::Muon::new(device, [batch, r, c], cfg).map_err(error)?;
        let ms = b.time(|| opt.step(device, &mut p, &g).map_err(error))?;
        let (m, n) = (r.min(c), r.max(c));
        let steps = cfg.ns_steps as f64;
        let per = steps * (4.0 * (m * m * n) as f64 + 2.0 * (m * m * m) as f64);
        let tf = b.flops_row(
            "Muon step (NS5, bf16)",
            format!("{batch}×{r}×{c}"),
            ms,
            batch as f64 * per,
            None,
        );
        drop((p, g, opt));
        // The GEMM of equal FLOPs: m×m outputs over K = batch·5·(2n + m).
        let k = batch * cfg.ns_steps * (2 * n + m);
        let vs = b.vs_gemm(tf, (m, m, k))?;
        b.set_vs(vs);
    }
    Ok(())
}

/// A Shampoo step on one `d×d` parameter that recomputes both inverse 4th roots (every step):
/// the statistics `G·Gᵀ` and `Gᵀ·G` (`2d³` each), the coupled Newton iterations (four `d³`
/// products each, as many as the step ran) and the preconditioned direction `L^{-1/4}·M·R^{-1/4}`
/// (`4d³`).
fn shampoo_rows(b: &mut Bench<'_>) -> Result<(), Error> {
    let device = b.device;
    let dims: &[usize] = if b.full { &[1024, 2048] } else { &[48] };
    for &d in dims {
        let cfg = ShampooConfig {
            max_preconditioner_dim: d,
            precondition_frequency: 1,
            ..ShampooConfig::default()
        };
        let f = ScalarType::F32;
        let mut params = vec![random(f, &[d, d], device, 71)?];
        let grads = vec![random(f, &[d, d], device, 72)?];
        let mut opt = Shampoo::new(device, &[vec![d, d]], cfg).map_err(error)?;
        let (mut calls, mut iterations) = (0usize, 0usize);
        let ms = b.time(|| {
            opt.step(device, &mut params, &grads).map_err(error)?;
            calls += 1;
            iterations += opt.last_roots.iter().map(|r| r.iterations).sum::<usize>();
            Ok(())
        })?;
        let d3 = (d * d * d) as f64;
        let iters = iterations as f64 / calls.max(1) as f64;
        let flops = 4.0 * d3 + 8.0 * d3 * iters + 4.0 * d3;
        let tf = b.flops_row(
            "Shampoo step (roots every step)",
            format!("{d}×{d}, {iters:.1} Newton it."),
            ms,
            flops,
            None,
        );
        drop((params, grads, opt));
        let k = (flops / (2.0 * (d * d) as f64)).ceil() as usize;
        let vs = b.vs_gemm(tf, (d, d, k))?;
        b.set_vs(vs);
    }
    Ok(())
}
