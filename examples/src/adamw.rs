//! One AdamW step over a flat f32 parameter buffer (decoupled weight decay, Loshchilov & Hutter;
//! what `torch.optim.AdamW` computes). For each element, with step `t ≥ 1`:
//!
//! ```text
//! m ← β1·m + (1 − β1)·g
//! v ← β2·v + (1 − β2)·g²
//! m̂ = m / (1 − β1^t)          v̂ = v / (1 − β2^t)
//! p ← p − lr·( m̂ / (√v̂ + ε) + λ·p )
//! ```
//!
//! where λ is the weight decay and `p` on the right is the parameter before the step.
//!
//! The kernel takes the bias corrections `1 − β1^t` and `1 − β2^t` as f32 scalars computed on
//! the host ([`AdamWHyper::bias_corrections`]) rather than `t`: they change once per step for the
//! whole buffer, so computing two powers per element would be waste.
//!
//! Each warp updates one chunk of `chunk` elements (register vectors); a block has `warps` warps
//! and the grid covers the buffer. The last chunk is masked by the views' length, so any `n`
//! works.

use tilekit::ir::interp::{Arg, HostTensor, InterpError, Launch};
use tilekit::ir::{Dim3, FuncBuilder, Module, ScalarType, Type, UnaryFn, VecAxis};

use crate::tiling::tiles;
use crate::{bad_input, expect_tensor, output};

/// The kernel's name in its module.
pub const KERNEL: &str = "adamw_step";

/// Vector length and warps of [`build`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdamWConfig {
    /// Elements per warp (a multiple of 16).
    pub chunk: u32,
    /// Warps per block.
    pub warps: u32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            chunk: 256,
            warps: 4,
        }
    }
}

impl AdamWConfig {
    /// The launch grid for `n` parameters.
    pub fn grid(&self, n: usize) -> [u32; 3] {
        [tiles(n, self.chunk * self.warps), 1, 1]
    }
}

/// The hyperparameters of one step (the kernel library's, shared with its DSL AdamW).
pub use tilekit::kernels::optim::Hyper as AdamWHyper;

/// The optimizer state the step updates in place.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamWState {
    /// Parameters.
    pub p: HostTensor,
    /// First moment.
    pub m: HostTensor,
    /// Second moment.
    pub v: HostTensor,
}

/// Builds `@adamw_step(%p: gl<f32, 1, mut>, %g: gl<f32, 1>, %m: gl<f32, 1, mut>,
/// %v: gl<f32, 1, mut>, %lr, %beta1, %beta2, %eps, %weight_decay, %bias_correction1,
/// %bias_correction2: f32)`.
///
/// # Panics
/// When `chunk` is not a multiple of 16 or there are no warps.
pub fn build(cfg: &AdamWConfig) -> Module {
    assert!(
        cfg.chunk % 16 == 0 && cfg.chunk > 0 && cfg.warps >= 1,
        "adamw: chunk ({}) must be a positive multiple of 16",
        cfg.chunk
    );
    let f32 = ScalarType::F32;
    let mut b = FuncBuilder::kernel(KERNEL, cfg.warps);
    let p = b.param("p", Type::global(f32, 1, true));
    let g = b.param("g", Type::global(f32, 1, false));
    let m = b.param("m", Type::global(f32, 1, true));
    let v = b.param("v", Type::global(f32, 1, true));
    let [lr, beta1, beta2, eps, wd, bc1, bc2] = [
        "lr",
        "beta1",
        "beta2",
        "eps",
        "weight_decay",
        "bias_correction1",
        "bias_correction2",
    ]
    .map(|name| b.param(name, Type::scalar(f32)));

    let block = b.block_idx(Dim3::X);
    let warps = b.const_i32(cfg.warps as i32);
    let warp = b.warp_idx();
    let chunk = b.mul(block, warps);
    let chunk = b.add(chunk, warp);
    b.name(chunk, "chunk");

    // Per-step scalars, once per warp.
    let one = b.const_f32(1.0);
    let one_minus_b1 = b.sub(one, beta1);
    let one_minus_b2 = b.sub(one, beta2);

    let vec = Type::vector(f32, cfg.chunk, VecAxis::Rows);
    let pv = b.load(vec.clone(), p, &[chunk]);
    let gv = b.load(vec.clone(), g, &[chunk]);
    let mv = b.load(vec.clone(), m, &[chunk]);
    let vv = b.load(vec, v, &[chunk]);

    let m_old = b.mul(mv, beta1);
    let m_in = b.mul(gv, one_minus_b1);
    let m_new = b.add(m_old, m_in);
    let v_old = b.mul(vv, beta2);
    let g2 = b.mul(gv, gv);
    let v_in = b.mul(g2, one_minus_b2);
    let v_new = b.add(v_old, v_in);

    let m_hat = b.div(m_new, bc1);
    let v_hat = b.div(v_new, bc2);
    let denom = b.unary(UnaryFn::Sqrt, v_hat);
    let denom = b.add(denom, eps);
    let adam = b.div(m_hat, denom);
    let decay = b.mul(pv, wd);
    let update = b.add(adam, decay);
    let step = b.mul(update, lr);
    let p_new = b.sub(pv, step);

    b.store(p, p_new, &[chunk]);
    b.store(m, m_new, &[chunk]);
    b.store(v, v_new, &[chunk]);

    let mut module = Module::new();
    module.push(b.finish());
    module
}

/// Runs one step on the interpreter: updates `state` in place from the gradient `g` (all four
/// f32 tensors of rank 1 and one length).
pub fn run(
    cfg: &AdamWConfig,
    state: &mut AdamWState,
    g: &HostTensor,
    hyper: &AdamWHyper,
) -> Result<(), InterpError> {
    for (name, t) in [("p", &state.p), ("g", g), ("m", &state.m), ("v", &state.v)] {
        expect_tensor(KERNEL, name, t, ScalarType::F32, 1)?;
        if t.len() != state.p.len() {
            return Err(bad_input(
                KERNEL,
                format_args!(
                    "`{name}` has {} elements but p has {}",
                    t.len(),
                    state.p.len()
                ),
            ));
        }
    }
    if hyper.step == 0 {
        return Err(bad_input(
            KERNEL,
            "the step number starts at 1 (step 0 has no bias correction)",
        ));
    }
    let (bc1, bc2) = hyper.bias_corrections();
    let mut args = vec![
        Arg::Tensor(state.p.clone()),
        Arg::Tensor(g.clone()),
        Arg::Tensor(state.m.clone()),
        Arg::Tensor(state.v.clone()),
        Arg::f32(hyper.lr),
        Arg::f32(hyper.beta1),
        Arg::f32(hyper.beta2),
        Arg::f32(hyper.eps),
        Arg::f32(hyper.weight_decay),
        Arg::f32(bc1),
        Arg::f32(bc2),
    ];
    crate::execute(
        &build(cfg),
        KERNEL,
        Launch::grid(cfg.grid(state.p.len())),
        &mut args,
    )?;
    state.p = output(&args, 0);
    state.m = output(&args, 2);
    state.v = output(&args, 3);
    Ok(())
}

/// The step in f64, element by element, from the formula in the module documentation (β^t
/// computed here, not taken from the kernel's inputs). Returns the new `(p, m, v)`.
pub fn reference(
    p: &[f64],
    g: &[f64],
    m: &[f64],
    v: &[f64],
    hyper: &AdamWHyper,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (lr, b1, b2) = (
        f64::from(hyper.lr),
        f64::from(hyper.beta1),
        f64::from(hyper.beta2),
    );
    let (eps, wd) = (f64::from(hyper.eps), f64::from(hyper.weight_decay));
    let t = hyper.step as i32;
    let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..p.len() {
        let mi = b1 * m[i] + (1.0 - b1) * g[i];
        let vi = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
        let (m_hat, v_hat) = (mi / bc1, vi / bc2);
        out.0
            .push(p[i] - lr * (m_hat / (v_hat.sqrt() + eps) + wd * p[i]));
        out.1.push(mi);
        out.2.push(vi);
    }
    out
}
