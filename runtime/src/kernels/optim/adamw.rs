//! One AdamW step over a flat f32 parameter buffer (decoupled weight decay, as
//! `torch.optim.AdamW`). For each element, with step `t ≥ 1`:
//!
//! ```text
//! m ← β1·m + (1 − β1)·g          v ← β2·v + (1 − β2)·g²
//! m̂ = m / (1 − β1^t)             v̂ = v / (1 − β2^t)
//! p ← p − lr·( m̂ / (√v̂ + ε) + λ·p )
//! ```
//!
//! The bias corrections `1 − β^t` come from the host (they change once per step). Each warp
//! updates one chunk of `N` elements; the last chunk is masked by the views' length.
//! [`adamw_chunk`] is that chunk's step, shared by every AdamW kernel of the library.

use crate::dsl::*;
use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;
use crate::kernels::check::{large, record, tiles, Rng};
use crate::{Device, ScalarArg};

/// See the module documentation. Grid: `[⌈n / (WARPS·N)⌉, 1, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<256, 4>),
    selftest = selftest,
    shapes(p: [L], g: [L], m: [L], v: [L]),
    grid = [ceil_div(L, WARPS * N), 1, 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn adamw_step<const N: usize, const WARPS: usize>(
    p: GlMut<f32, 1>,
    g: Gl<f32, 1>,
    m: GlMut<f32, 1>,
    v: GlMut<f32, 1>,
    lr: Scalar<f32>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    eps: Scalar<f32>,
    weight_decay: Scalar<f32>,
    bias_correction1: Scalar<f32>,
    bias_correction2: Scalar<f32>,
) {
    let chunk = block_idx_x() * WARPS as i32 + warp_idx();
    let s = AdamwScalars {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        bias_correction1,
        bias_correction2,
    };
    adamw_chunk::<f32, N>(p, g, m, v, chunk, s);
}

/// The per-step scalars of an AdamW kernel (its parameters of those names), carried together
/// into [`adamw_chunk`].
#[derive(Clone, Copy, Debug)]
pub struct AdamwScalars {
    pub lr: Scalar<f32>,
    pub beta1: Scalar<f32>,
    pub beta2: Scalar<f32>,
    pub eps: Scalar<f32>,
    pub weight_decay: Scalar<f32>,
    pub bias_correction1: Scalar<f32>,
    pub bias_correction2: Scalar<f32>,
}

/// Chunk `chunk` of `N` elements of one AdamW tensor: loads the f32 weights and moments and the
/// gradient (f32, or a narrower float widened to f32), updates them by [`adamw_update`], stores
/// `p`, `m` and `v`, and returns the new weights (for a model copy). Every AdamW kernel of the
/// library, one tensor or a list, steps a chunk through it, so they agree bit for bit.
#[crate::func]
pub fn adamw_chunk<G: RegDtype, const N: usize>(
    p: GlMut<f32, 1>,
    g: Gl<G, 1>,
    m: GlMut<f32, 1>,
    v: GlMut<f32, 1>,
    chunk: Scalar<i32>,
    s: AdamwScalars,
) -> Rv<f32, N> {
    let pv: Rv<f32, N> = load(p.chunk(chunk));
    let gv = widen_to_f32::<G, N>(load(g.chunk(chunk)));
    let mv: Rv<f32, N> = load(m.chunk(chunk));
    let vv: Rv<f32, N> = load(v.chunk(chunk));

    let (m_new, v_new, p_new) = adamw_update(
        pv,
        gv,
        mv,
        vv,
        s.lr,
        s.beta1,
        s.beta2,
        s.eps,
        s.weight_decay,
        s.bias_correction1,
        s.bias_correction2,
    );

    store(p.chunk(chunk), p_new);
    store(m.chunk(chunk), m_new);
    store(v.chunk(chunk), v_new);
    p_new
}

/// `x` as f32: the value itself when it is f32 already (no conversion op), else converted.
#[track_caller]
pub fn widen_to_f32<G: RegDtype, const N: usize>(x: Rv<G, N>) -> Rv<f32, N> {
    if G::SCALAR == ScalarType::F32 {
        // Each dtype has one Rust type: this is the same type.
        Rv::from_value(x.value())
    } else {
        x.cast::<f32>()
    }
}

/// One AdamW update of `N` elements (the module documentation's formulas): `(m, v, p)` after
/// the step from `p`, the gradient `g` and the moments `m`, `v`. Every AdamW kernel of the
/// library updates through it.
#[crate::func]
#[allow(clippy::too_many_arguments)]
pub fn adamw_update<const N: usize>(
    pv: Rv<f32, N>,
    gv: Rv<f32, N>,
    mv: Rv<f32, N>,
    vv: Rv<f32, N>,
    lr: Scalar<f32>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    eps: Scalar<f32>,
    weight_decay: Scalar<f32>,
    bias_correction1: Scalar<f32>,
    bias_correction2: Scalar<f32>,
) -> (Rv<f32, N>, Rv<f32, N>, Rv<f32, N>) {
    let one = lit::<f32>(1.0);
    let m_new = mv * beta1 + gv * (one - beta1);
    let v_new = vv * beta2 + gv * gv * (one - beta2);
    let adam = (m_new / bias_correction1) / ((v_new / bias_correction2).sqrt() + eps);
    let p_new = pv - (adam + pv * weight_decay) * lr;
    (m_new, v_new, p_new)
}

/// Hyperparameters of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hyper {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// The step number, from 1.
    pub step: u32,
}

impl Hyper {
    /// `(1 − β1^t, 1 − β2^t)`, computed in f64 and rounded to f32 once.
    pub fn bias_corrections(&self) -> (f32, f32) {
        let t = i32::try_from(self.step).unwrap_or(i32::MAX);
        (
            (1.0 - f64::from(self.beta1).powi(t)) as f32,
            (1.0 - f64::from(self.beta2).powi(t)) as f32,
        )
    }

    /// [`bias_corrections`](Self::bias_corrections) of a step a caller numbered: step 0 is
    /// refused (its corrections are 0, so the update would divide by zero and write NaN or ±∞
    /// weights).
    pub fn checked_bias_corrections(&self, kernel: &str) -> Result<(f32, f32), crate::Error> {
        if self.step == 0 {
            return Err(crate::Error::Argument {
                kernel: kernel.into(),
                param: "step".into(),
                expected: "at least 1 (steps count from 1, as torch's do)".into(),
                found: "0".into(),
            });
        }
        Ok(self.bias_corrections())
    }
}

/// One step on `device` with the default tiling: updates `p`, `m` and `v` in place.
pub fn step(
    device: &Device,
    p: &mut HostTensor,
    g: &HostTensor,
    m: &mut HostTensor,
    v: &mut HostTensor,
    h: &Hyper,
) -> Result<(), crate::Error> {
    let (bc1, bc2) = h.checked_bias_corrections("adamw_step")?;
    let s = |x: f32| ScalarArg::from(x);
    adamw_step::<256, 4>::launch(
        device,
        [tiles(p.len(), 256 * 4), 1, 1],
        p,
        g,
        m,
        v,
        s(h.lr),
        s(h.beta1),
        s(h.beta2),
        s(h.eps),
        s(h.weight_decay),
        s(bc1),
        s(bc2),
    )
}

fn selftest(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let h = Hyper {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        step: 3,
    };
    let mut sizes = vec![3000];
    if large(device) {
        sizes.extend([1 << 20, 1_000_003]);
    }
    let f = ScalarType::F32;
    for n in sizes {
        let (p0, g) = (
            rng.tensor(f, &[n], -1.0, 1.0),
            rng.tensor(f, &[n], -1.0, 1.0),
        );
        let (m0, v0) = (
            rng.tensor(f, &[n], -0.1, 0.1),
            rng.tensor(f, &[n], 0.0, 0.01),
        );
        let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
        step(device, &mut p, &g, &mut m, &mut v, &h).map_err(|e| e.to_string())?;
        let (b1, b2, t) = (f64::from(h.beta1), f64::from(h.beta2), h.step as i32);
        let (gv, pv, mv, vv) = (g.to_vec(), p0.to_vec(), m0.to_vec(), v0.to_vec());
        let mut want = Vec::new();
        for i in 0..n {
            let mi = b1 * mv[i] + (1.0 - b1) * gv[i];
            let vi = b2 * vv[i] + (1.0 - b2) * gv[i] * gv[i];
            let upd =
                mi / (1.0 - b1.powi(t)) / ((vi / (1.0 - b2.powi(t))).sqrt() + f64::from(h.eps));
            want.push(pv[i] - f64::from(h.lr) * (upd + f64::from(h.weight_decay) * pv[i]));
        }
        let err = record(format!("{n} parameters: p"), &p.to_vec(), &want, 1e-5);
        if err > 1e-5 {
            return Err(format!(
                "{n} parameters, p: error {err:.2e} (seed {})",
                rng.seed
            ));
        }
    }
    Ok("parameters against the f64 step".into())
}
