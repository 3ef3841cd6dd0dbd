//! Attention rows of the benchmark (see the [module documentation](super)): forward and
//! backward TFLOP/s at `B·S = 16k` tokens and 2048 model width, and decode GB/s over a paged
//! KV cache.
//!
//! [`forward`](crate::kernels::attention::forward) and
//! [`backward`](crate::kernels::attention_bwd::backward) take host tensors (each call copies
//! them over and back), so the rows launch the kernels those functions choose for plain
//! attention (no window, no cap, causal or not with `seq_q = seq_kv`) on device tensors: the
//! same variants, without the copies. Decode goes through
//! [`decode`], which takes device tensors.

use super::{random, Bench};
use crate::dsl::bf16;
use crate::ir::ScalarType;
use crate::kernels::attention::attention_fwd;
use crate::kernels::attention_bwd::{
    attention_bwd_dkdv, attention_bwd_dq, attention_bwd_preprocess,
};
use crate::kernels::attention_decode::{decode, DecodeOptions};
use crate::kernels::check::Rng;
use crate::{Device, Error, ScalarArg, Tensor};

/// The rows (each group noted and skipped if it fails).
pub(crate) fn rows(b: &mut Bench<'_>) {
    for d in [64, 128, 256] {
        b.group(&format!("attention forward hd{d}"), |b| forward_rows(b, d));
    }
    for d in [64, 128] {
        b.group(&format!("attention backward hd{d}"), |b| {
            backward_rows(b, d)
        });
    }
    b.group("attention decode", decode_rows);
}

/// `(batch, heads, seq)` of the forward and backward rows at head dim `d`: `B·S` tokens of
/// `H·d` width (16k and 2048 at full size, as FlashAttention's benchmarks).
fn shapes(b: &Bench<'_>, d: usize) -> Vec<(usize, usize, usize)> {
    let (tokens, width, seqs): (usize, usize, &[usize]) = if b.full {
        (16384, 2048, &[512, 1024, 2048, 4096, 8192, 16384])
    } else {
        (128, d, &[64, 128])
    };
    seqs.iter().map(|&s| (tokens / s, width / d, s)).collect()
}

/// FLOPs of attention's forward from the math: `QKᵀ` and `PV`, `2·S²·d` each per head, halved
/// when causal (FlashAttention's count).
pub(crate) fn forward_flops(bh: usize, s: usize, d: usize, causal: bool) -> f64 {
    4.0 * (bh * s * s * d) as f64 / if causal { 2.0 } else { 1.0 }
}

/// The forward kernel [`forward`](crate::kernels::attention::forward) runs for plain attention
/// at head dim `d`.
#[allow(clippy::too_many_arguments)]
fn launch_forward(
    device: &Device,
    d: usize,
    causal: bool,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    o: &mut Tensor,
    lse: &mut Tensor,
    scale: f32,
) -> Result<(), Error> {
    let s = ScalarArg::from(scale);
    macro_rules! plain {
        ($d:literal, $kv:literal, $warps:literal, $causal:literal) => {
            attention_fwd::<bf16, $d, 16, $kv, $warps, $causal>::launch_auto(
                device, q, k, v, o, lse, s,
            )
        };
    }
    match (d, causal) {
        (64, false) => plain!(64, 64, 8, false),
        (64, true) => plain!(64, 64, 8, true),
        (128, false) => plain!(128, 32, 8, false),
        (128, true) => plain!(128, 32, 8, true),
        (_, false) => plain!(256, 16, 4, false),
        (_, true) => plain!(256, 16, 4, true),
    }
}

fn forward_rows(b: &mut Bench<'_>, d: usize) -> Result<(), Error> {
    let device = b.device;
    for (batch, heads, s) in shapes(b, d) {
        let bh = batch * heads;
        let shape = [bh, s, d];
        let q = random(ScalarType::BF16, &shape, device, 3)?;
        let k = random(ScalarType::BF16, &shape, device, 4)?;
        let v = random(ScalarType::BF16, &shape, device, 5)?;
        let mut o = Tensor::zeros(ScalarType::BF16, &shape, device)?;
        let mut lse = Tensor::zeros(ScalarType::F32, &[bh, s], device)?;
        let scale = 1.0 / (d as f32).sqrt();
        for causal in [false, true] {
            let ms =
                b.time(|| launch_forward(device, d, causal, &q, &k, &v, &mut o, &mut lse, scale))?;
            b.flops_row(
                format!("attention fwd hd{d}{}", if causal { " causal" } else { "" }),
                format!("B{batch} H{heads} S{s}"),
                ms,
                forward_flops(bh, s, d, causal),
                None,
            );
        }
    }
    Ok(())
}

/// The backward kernels [`backward`](crate::kernels::attention_bwd::backward) runs for plain
/// attention at head dim `d` with bf16 gradients: Δ, then dK/dV per key block, then dQ.
#[allow(clippy::too_many_arguments)]
fn launch_backward(
    device: &Device,
    d: usize,
    causal: bool,
    (q, k, v): (&Tensor, &Tensor, &Tensor),
    (o, lse, d_o): (&Tensor, &Tensor, &Tensor),
    delta: &mut Tensor,
    (dq, dk, dv): (&mut Tensor, &mut Tensor, &mut Tensor),
    scale: f32,
) -> Result<(), Error> {
    let s = ScalarArg::from(scale);
    if d == 64 {
        attention_bwd_preprocess::<bf16, 64, 16, 4>::launch_auto(device, o, d_o, &mut *delta)?;
    } else {
        attention_bwd_preprocess::<bf16, 128, 16, 4>::launch_auto(device, o, d_o, &mut *delta)?;
    }
    let delta = &*delta;
    macro_rules! plain {
        ($d:literal, $qt:literal, $kv:literal, $causal:literal) => {{
            attention_bwd_dkdv::<bf16, $d, $qt, 4, $causal>::launch_auto(
                device, q, k, v, d_o, lse, delta, dk, dv, s,
            )?;
            attention_bwd_dq::<bf16, $d, 16, $kv, 4, $causal>::launch_auto(
                device, q, k, v, d_o, lse, delta, dq, s,
            )
        }};
    }
    match (d, causal) {
        (64, false) => plain!(64, 32, 32, false),
        (64, true) => plain!(64, 32, 32, true),
        (_, false) => plain!(128, 16, 16, false),
        (_, true) => plain!(128, 16, 16, true),
    }
}

fn backward_rows(b: &mut Bench<'_>, d: usize) -> Result<(), Error> {
    let device = b.device;
    for (batch, heads, s) in shapes(b, d) {
        let bh = batch * heads;
        let shape = [bh, s, d];
        let bf = ScalarType::BF16;
        let q = random(bf, &shape, device, 3)?;
        let k = random(bf, &shape, device, 4)?;
        let v = random(bf, &shape, device, 5)?;
        let d_o = random(bf, &shape, device, 6)?;
        let mut o = Tensor::zeros(bf, &shape, device)?;
        let mut lse = Tensor::zeros(ScalarType::F32, &[bh, s], device)?;
        let mut delta = Tensor::zeros(ScalarType::F32, &[bh, s], device)?;
        let mut dq = Tensor::zeros(bf, &shape, device)?;
        let mut dk = Tensor::zeros(bf, &shape, device)?;
        let mut dv = Tensor::zeros(bf, &shape, device)?;
        let scale = 1.0 / (d as f32).sqrt();
        for causal in [false, true] {
            launch_forward(device, d, causal, &q, &k, &v, &mut o, &mut lse, scale)?;
            let ms = b.time(|| {
                launch_backward(
                    device,
                    d,
                    causal,
                    (&q, &k, &v),
                    (&o, &lse, &d_o),
                    &mut delta,
                    (&mut dq, &mut dk, &mut dv),
                    scale,
                )
            })?;
            // Five S²·d products (S = QKᵀ again, dP = dO·Vᵀ, dV = Pᵀ·dO, dQ = dS·K,
            // dK = dSᵀ·Q) against the forward's two.
            b.flops_row(
                format!("attention bwd hd{d}{}", if causal { " causal" } else { "" }),
                format!("B{batch} H{heads} S{s}"),
                ms,
                2.5 * forward_flops(bh, s, d, causal),
                None,
            );
        }
    }
    Ok(())
}

/// One decode problem: sequences, context per sequence, query heads, K/V heads, head dim, page
/// size (one query per sequence).
type DecodeShape = (usize, usize, usize, usize, usize, usize);

fn decode_rows(b: &mut Bench<'_>) -> Result<(), Error> {
    let device = b.device;
    let shapes: &[DecodeShape] = if b.full {
        &[
            (64, 4096, 32, 8, 128, 16),
            (8, 32768, 32, 8, 128, 64),
            (64, 4096, 32, 32, 64, 16),
            (128, 2048, 64, 8, 128, 32),
        ]
    } else {
        &[(2, 40, 4, 2, 64, 16), (1, 70, 2, 2, 128, 32)]
    };
    let bf = ScalarType::BF16;
    for &(batch, ctx, hq, hkv, d, page) in shapes {
        let per_seq = ctx.div_ceil(page);
        let pages = batch * per_seq;
        let q = random(bf, &[batch, 1, hq, d], device, 21)?;
        let k_cache = random(bf, &[pages, page, hkv, d], device, 22)?;
        let v_cache = random(bf, &[pages, page, hkv, d], device, 23)?;
        // Each sequence's pages at a random place in the cache (Fisher–Yates).
        let mut rng = Rng::new(24);
        let mut order: Vec<usize> = (0..pages).collect();
        for i in (1..pages).rev() {
            let j = (rng.uniform(0.0, (i + 1) as f64) as usize).min(i);
            order.swap(i, j);
        }
        let table: Vec<f64> = order.iter().map(|&p| p as f64).collect();
        let table = Tensor::from_f64(ScalarType::I32, &[batch, per_seq], &table, device)?;
        let lens = Tensor::from_f64(ScalarType::I32, &[batch], &vec![ctx as f64; batch], device)?;
        let opts = DecodeOptions::default();
        let ms = b.time(|| {
            decode(device, &q, &k_cache, &v_cache, &table, &lens, &opts)
                .map(drop)
                .map_err(|e| Error::Tensor {
                    message: e.to_string(),
                })
        })?;
        // The K and V of every context read once, Q read and O written (bf16).
        let bytes = 2 * 2 * batch * ctx * hkv * d + 2 * 2 * batch * hq * d;
        b.bytes_row(
            format!("attention decode hd{d} page{page}"),
            format!("B{batch} ctx{ctx} Hq{hq} Hkv{hkv}"),
            ms,
            bytes as f64,
        );
    }
    Ok(())
}
