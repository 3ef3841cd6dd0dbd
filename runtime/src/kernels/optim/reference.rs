//! f64 references of the optimizer steps, written from their definitions (torch's
//! `torch.optim.AdamW`; Lion, Chen et al. 2023, Algorithm 2; Adam-mini, Zhang et al. 2024,
//! Algorithm 1 with the partition the caller gives). Each steps flat slices in place; the
//! hyper-parameters are the f32 values a kernel receives, widened to f64.

/// AdamW hyper-parameters in f64.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam64 {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// One AdamW step `t ≥ 1` (torch's definition, decoupled decay on the weight before the step):
/// `p ← p − lr·λ·p − lr·m̂/(√v̂ + ε)`, `m̂ = m/(1 − β1^t)`, `v̂ = v/(1 − β2^t)`.
pub fn adamw(p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64], h: &Adam64, t: i32) {
    let (bc1, bc2) = (1.0 - h.beta1.powi(t), 1.0 - h.beta2.powi(t));
    for i in 0..p.len() {
        m[i] = h.beta1 * m[i] + (1.0 - h.beta1) * g[i];
        v[i] = h.beta2 * v[i] + (1.0 - h.beta2) * g[i] * g[i];
        let update = (m[i] / bc1) / ((v[i] / bc2).sqrt() + h.eps);
        p[i] -= h.lr * (update + h.weight_decay * p[i]);
    }
}

/// `sign(x)` with `sign(0) = 0` and NaN kept.
pub fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x
    }
}

/// One Lion step: `c = β1·m + (1 − β1)·g`, `p ← p − lr·(sign(c) + λ·p)`,
/// `m ← β2·m + (1 − β2)·g`. Returns each element's `c` (its sign decided the update).
pub fn lion(
    p: &mut [f64],
    g: &[f64],
    m: &mut [f64],
    lr: f64,
    beta1: f64,
    beta2: f64,
    weight_decay: f64,
) -> Vec<f64> {
    let mut cs = Vec::with_capacity(p.len());
    for i in 0..p.len() {
        let c = beta1 * m[i] + (1.0 - beta1) * g[i];
        p[i] -= lr * (sign(c) + weight_decay * p[i]);
        m[i] = beta2 * m[i] + (1.0 - beta2) * g[i];
        cs.push(c);
    }
    cs
}

/// One Adam-mini step `t ≥ 1` on a tensor split into `v.len()` equal contiguous blocks: block
/// b's second moment is `v[b] ← β2·v[b] + (1 − β2)·mean(g²)` over the block, and every
/// element of the block steps as AdamW with `v̂ = v[b]/(1 − β2^t)`.
pub fn adam_mini(p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64], h: &Adam64, t: i32) {
    let (bc1, bc2) = (1.0 - h.beta1.powi(t), 1.0 - h.beta2.powi(t));
    let blocks = v.len().max(1);
    let len = p.len() / blocks;
    for (b, vb) in v.iter_mut().enumerate() {
        let range = b * len..(b + 1) * len;
        let mean_sq = g[range.clone()].iter().map(|x| x * x).sum::<f64>() / len as f64;
        *vb = h.beta2 * *vb + (1.0 - h.beta2) * mean_sq;
        let denom = (*vb / bc2).sqrt() + h.eps;
        for i in range {
            m[i] = h.beta1 * m[i] + (1.0 - h.beta1) * g[i];
            p[i] -= h.lr * ((m[i] / bc1) / denom + h.weight_decay * p[i]);
        }
    }
}
