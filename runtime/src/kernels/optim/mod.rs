//! Optimizers over lists of parameter [`Tensor`]s of mixed shapes, with hyper-parameters named
//! as torch names them:
//!
//! | optimizer | definition followed | launches per step |
//! |---|---|---|
//! | [`AdamW`] | `torch.optim.AdamW` | 1 per dtype in the list ([`adamw_multi`](super::optim_multi::adamw_multi) for f32, [`adamw_bf16_multi`](super::optim_multi::adamw_bf16_multi) for bf16), or 1 ([`adamw_mixed_multi`](super::optim_multi::adamw_mixed_multi)) with a bf16 model copy |
//! | [`Lion`] | Chen et al. 2023, Algorithm 2 (as `lion-pytorch`) | 1 per dtype in the list ([`lion_multi`](super::optim_multi::lion_multi) for f32, [`lion_bf16_multi`](super::optim_multi::lion_bf16_multi) for bf16), or 1 ([`lion_mixed_multi`](super::optim_multi::lion_mixed_multi)) with a bf16 model copy |
//! | [`AdamMini`] | Zhang et al. 2024 (`adam-mini` 1.1): one `v` per block of the caller's [`Partition`] | 1 ([`adam_mini_multi`](super::optim_multi::adam_mini_multi), or [`adam_mini_mixed_multi`](super::optim_multi::adam_mini_mixed_multi) with a bf16 model copy) |
//! | [`Adam8bit`] | bitsandbytes 0.45 `AdamW8bit`, blockwise ([`optim8`]) | 1 ([`adam8bit_multi`](optim8::adam8bit_multi), or [`adam8bit_mixed_multi`](optim8::adam8bit_mixed_multi) with a bf16 model copy) |
//! | [`Muon`] | `torch.optim.Muon` ([`muon`]); f32 weights, or f32 master weights with bf16 gradients and a bf16 model copy | `3·ns_steps + 2` per matrix |
//! | [`Shampoo`] | Distributed Shampoo v1.0 (`DistributedShampoo`, [`shampoo`]): EMA statistics, coupled Newton inverse 4th roots in f32, Adam grafting, blocking; f32 weights, or f32 master weights with bf16 gradients and a bf16 model copy | 1 per vector; per matrix block 4, or 8 once preconditioned, plus the roots' Newton iterations when due |
//!
//! ```
//! use tilekit::kernels::optim::{AdamW, AdamWConfig};
//! use tilekit::{Device, Tensor};
//!
//! let device = Device::Cpu;
//! let weight = Tensor::from_slice(&[0.5f32; 6], &[2, 3], &device)?;
//! let bias = Tensor::from_slice(&[0.1f32, -0.1], &[2], &device)?;
//! let grads = [
//!     Tensor::from_slice(&[1.0f32; 6], &[2, 3], &device)?,
//!     Tensor::from_slice(&[1.0f32, -1.0], &[2], &device)?,
//! ];
//! let params = [weight, bias];
//! let mut opt = AdamW::new(AdamWConfig { lr: 1e-2, ..AdamWConfig::default() })?;
//! opt.step(&device, &params, &grads)?; // updates the tensors in place
//! assert!(params[0].to_vec::<f32>()?[0] < 0.5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Each optimizer allocates its state on the device at its first step (as torch does) and
//! refuses a later step over a different list of shapes. Parameters are contiguous and f32
//! (AdamW and Lion: f32 or bf16, grouped by dtype); gradients have their parameter's shape (and, for
//! the bf16 parameters, its dtype). What torch offers and these do not (`amsgrad`,
//! `maximize`) is refused with an error naming it, never ignored.
//!
//!
//! The kernels: [`adamw`] holds the first AdamW kernel ([`adamw_step`], one flat buffer) and the
//! chunk step every AdamW kernel shares ([`adamw_chunk`]); [`mod@reference`] the f64 steps.

pub mod adamw;
pub mod reference;

pub use super::muon::MuonConfig;
pub use super::optim_family::LionHyper;
use super::optim_multi::{
    adam_mini_mixed_multi_step, adam_mini_multi_step, adamw_bf16_multi_step,
    adamw_mixed_multi_step, adamw_multi_step, lion_bf16_multi_step, lion_mixed_multi_step,
    lion_multi_step,
};
pub use super::shampoo::{RootReport, ShampooConfig, ShampooError};
use super::{muon, optim8, shampoo};
use crate::device::{DeviceView, LaunchArg, TableError};
use crate::ir::ScalarType;
use crate::tensor::TensorArg;
use crate::tensor_list::TensorList;
use crate::{Device, Tensor};
pub use adamw::{adamw_chunk, adamw_step, adamw_update, step, widen_to_f32, AdamwScalars, Hyper};

/// Why an optimizer refused.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    #[error("{optimizer}: option `{name}` must be {expected}, got {value}")]
    Option {
        optimizer: &'static str,
        name: &'static str,
        expected: &'static str,
        value: String,
    },
    #[error("{optimizer}: `{name} = true` is not supported ({why})")]
    Unsupported {
        optimizer: &'static str,
        name: &'static str,
        why: &'static str,
    },
    #[error("{optimizer}: {what} entry {entry}: expected {expected}, got {found}")]
    Entry {
        optimizer: &'static str,
        what: &'static str,
        entry: usize,
        expected: String,
        found: String,
    },
    #[error("{optimizer}: {what} holds {found} tensors, expected {expected}")]
    Count {
        optimizer: &'static str,
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error(transparent)]
    Table(#[from] TableError),
    #[error(transparent)]
    Muon(#[from] muon::MuonError),
    #[error(transparent)]
    Shampoo(#[from] ShampooError),
    #[error(transparent)]
    Launch(#[from] crate::Error),
}

/// A contiguous tensor seen with another shape of as many elements (the kernels read a
/// parameter of any rank as one flat row, or as Adam-mini's `[blocks, block_len]`).
struct Reshaped<'a> {
    tensor: &'a Tensor,
    shape: Vec<usize>,
}

impl TensorArg for Reshaped<'_> {
    fn dtype(&self) -> ScalarType {
        self.tensor.dtype()
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn launch_arg(&self) -> LaunchArg {
        let mut strides = vec![1; self.shape.len()];
        for d in (0..self.shape.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * self.shape[d + 1];
        }
        LaunchArg::Device(DeviceView {
            dtype: self.tensor.dtype(),
            shape: self.shape.clone(),
            strides,
            offset: self.tensor.offset(),
            storage: self.tensor.storage.clone(),
        })
    }
    /// The launch wrote the tensor's memory in place.
    fn take_back(&mut self, _: LaunchArg) {}
}

/// A list of `tensors`, each seen with the shape `shape_of` gives it.
fn list_of(
    dtype: ScalarType,
    rank: usize,
    tensors: &[&Tensor],
    shape_of: impl Fn(usize, &Tensor) -> Vec<usize>,
) -> Result<TensorList, TableError> {
    let views: Vec<Reshaped<'_>> = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| Reshaped {
            tensor: t,
            shape: shape_of(i, t),
        })
        .collect();
    let refs: Vec<&dyn TensorArg> = views.iter().map(|v| v as &dyn TensorArg).collect();
    TensorList::of(dtype, rank, &refs)
}

/// Flat `[n]` views of `tensors`.
fn flat(dtype: ScalarType, tensors: &[&Tensor]) -> Result<TensorList, TableError> {
    list_of(dtype, 1, tensors, |_, t| vec![t.len()])
}

/// Checks a step's lists against each other and against the optimizer's state (`known`, the
/// shapes of the first step; empty before it). Without a `model` copy each parameter is a
/// contiguous tensor of one of `plain` and its gradient a contiguous tensor of its dtype and
/// shape; with one (a mixed-precision step) the parameters are f32 master weights and each
/// gradient and model copy a contiguous bf16 tensor of its parameter's shape.
fn check_step(
    optimizer: &'static str,
    plain: &[ScalarType],
    params: &[Tensor],
    grads: &[Tensor],
    model: Option<&[Tensor]>,
    known: &[Vec<usize>],
) -> Result<(), OptimError> {
    let (f, b) = (ScalarType::F32, ScalarType::BF16);
    match model {
        None => check_list(optimizer, params, ("grads", grads), plain, None, known),
        Some(model) => {
            check_list(optimizer, params, ("grads", grads), &[f], Some(b), known)?;
            check_list(
                optimizer,
                params,
                ("model copy", model),
                &[f],
                Some(b),
                known,
            )
        }
    }
}

/// [`check_step`] for one list that goes with the parameters entry by entry (`what`, named in
/// errors): as many tensors as parameters, each parameter a contiguous tensor of one of
/// `param_dtypes` with the state's shape, each tensor of the list a contiguous one of `dtype`
/// (the parameter's dtype when `None`) and of its parameter's shape.
fn check_list(
    optimizer: &'static str,
    params: &[Tensor],
    (what, list): (&'static str, &[Tensor]),
    param_dtypes: &[ScalarType],
    dtype: Option<ScalarType>,
    known: &[Vec<usize>],
) -> Result<(), OptimError> {
    if list.len() != params.len() {
        return Err(OptimError::Count {
            optimizer,
            what,
            expected: params.len(),
            found: list.len(),
        });
    }
    if !known.is_empty() && known.len() != params.len() {
        return Err(OptimError::Count {
            optimizer,
            what: "params (the state was made at the first step for another list)",
            expected: known.len(),
            found: params.len(),
        });
    }
    let describe = |t: &Tensor| {
        format!(
            "a {} tensor of shape {:?}{}",
            t.dtype(),
            t.shape(),
            if t.is_contiguous() { "" } else { ", strided" }
        )
    };
    for (entry, (p, t)) in params.iter().zip(list).enumerate() {
        if !param_dtypes.contains(&p.dtype()) || !p.is_contiguous() {
            let names: Vec<String> = param_dtypes.iter().map(|d| d.to_string()).collect();
            return Err(OptimError::Entry {
                optimizer,
                what: "params",
                entry,
                expected: format!("a contiguous {} tensor", names.join(" or ")),
                found: describe(p),
            });
        }
        if let Some(shape) = known.get(entry) {
            if p.shape() != shape.as_slice() {
                return Err(OptimError::Entry {
                    optimizer,
                    what: "params",
                    entry,
                    expected: format!("shape {shape:?} (the state's, from the first step)"),
                    found: describe(p),
                });
            }
        }
        let dtype = dtype.unwrap_or(p.dtype());
        if t.dtype() != dtype || !t.is_contiguous() || t.shape() != p.shape() {
            return Err(OptimError::Entry {
                optimizer,
                what,
                entry,
                expected: format!(
                    "a contiguous {dtype} tensor of shape {:?} (its parameter's)",
                    p.shape()
                ),
                found: describe(t),
            });
        }
    }
    Ok(())
}

fn shapes(params: &[Tensor]) -> Vec<Vec<usize>> {
    params.iter().map(|p| p.shape().to_vec()).collect()
}

/// Refuses what the f32 hyper-parameters of an Adam-like step cannot be.
fn check_adam_options(
    optimizer: &'static str,
    lr: f32,
    betas: (f32, f32),
    eps: Option<f32>,
    weight_decay: f32,
) -> Result<(), OptimError> {
    let bad = |name, expected, value: f32| OptimError::Option {
        optimizer,
        name,
        expected,
        value: value.to_string(),
    };
    if !(lr.is_finite() && lr >= 0.0) {
        return Err(bad("lr", "finite and at least 0", lr));
    }
    if !(0.0..1.0).contains(&betas.0) {
        return Err(bad("betas.0", "in [0, 1)", betas.0));
    }
    if !(0.0..1.0).contains(&betas.1) {
        return Err(bad("betas.1", "in [0, 1)", betas.1));
    }
    if let Some(eps) = eps {
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(bad("eps", "finite and at least 0", eps));
        }
    }
    if !(weight_decay.is_finite() && weight_decay >= 0.0) {
        return Err(bad("weight_decay", "finite and at least 0", weight_decay));
    }
    Ok(())
}

fn refuse(
    optimizer: &'static str,
    amsgrad: bool,
    maximize: bool,
    amsgrad_why: &'static str,
) -> Result<(), OptimError> {
    if amsgrad {
        return Err(OptimError::Unsupported {
            optimizer,
            name: "amsgrad",
            why: amsgrad_why,
        });
    }
    if maximize {
        return Err(OptimError::Unsupported {
            optimizer,
            name: "maximize",
            why: "negate the gradients instead",
        });
    }
    Ok(())
}

/// `torch.optim.AdamW`'s hyper-parameters (same names and defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub lr: f32,
    pub betas: (f32, f32),
    pub eps: f32,
    pub weight_decay: f32,
    /// Not supported: `true` is refused.
    pub amsgrad: bool,
    /// Not supported: `true` is refused.
    pub maximize: bool,
}

impl Default for AdamWConfig {
    /// torch's: `lr` 1e-3, `betas` (0.9, 0.999), `eps` 1e-8, `weight_decay` 1e-2.
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
            amsgrad: false,
            maximize: false,
        }
    }
}

impl AdamWConfig {
    fn check(&self) -> Result<(), OptimError> {
        refuse(
            "AdamW",
            self.amsgrad,
            self.maximize,
            "the kernels keep no running maximum of v",
        )?;
        check_adam_options(
            "AdamW",
            self.lr,
            self.betas,
            Some(self.eps),
            self.weight_decay,
        )
    }

    fn hyper(&self, step: u32) -> Hyper {
        adam_hyper(self.lr, self.betas, self.eps, self.weight_decay, step)
    }
}

/// The kernels' hyper-parameters of step `step` of an Adam-like optimizer from its options.
fn adam_hyper(lr: f32, betas: (f32, f32), eps: f32, weight_decay: f32, step: u32) -> Hyper {
    Hyper {
        lr,
        beta1: betas.0,
        beta2: betas.1,
        eps,
        weight_decay,
        step,
    }
}

/// AdamW over a list of f32 and bf16 parameters (see the module documentation). State per
/// parameter: `exp_avg` and `exp_avg_sq`, as torch names them, of its shape and in f32 for
/// either dtype (torch keeps them in the parameter's dtype; a bf16 `exp_avg_sq` would stop
/// decaying, `0.999·v` rounding back to `v`).
///
/// A step groups the list by dtype, as torch's foreach implementation does, and updates each
/// group in one launch: [`adamw_multi`](super::optim_multi::adamw_multi) for f32 weights,
/// [`adamw_bf16_multi`](super::optim_multi::adamw_bf16_multi) for bf16 ones (computed in f32,
/// the weights stored rounded to nearest even).
#[derive(Debug)]
pub struct AdamW {
    /// The hyper-parameters of the next step (may change between steps, as a schedule does).
    pub config: AdamWConfig,
    steps: u32,
    shapes: Vec<Vec<usize>>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    groups: Vec<(ScalarType, Vec<usize>)>,
}

/// The parameters of each dtype (indices into `params`, in order), the dtypes in order of
/// first appearance.
fn dtype_groups(params: &[Tensor]) -> Vec<(ScalarType, Vec<usize>)> {
    let mut groups: Vec<(ScalarType, Vec<usize>)> = Vec::new();
    for (i, p) in params.iter().enumerate() {
        match groups.iter_mut().find(|(d, _)| *d == p.dtype()) {
            Some((_, members)) => members.push(i),
            None => groups.push((p.dtype(), vec![i])),
        }
    }
    groups
}

impl AdamW {
    /// An optimizer with no state yet; refuses options it does not support.
    pub fn new(config: AdamWConfig) -> Result<AdamW, OptimError> {
        config.check()?;
        Ok(AdamW {
            config,
            steps: 0,
            shapes: Vec::new(),
            exp_avg: Vec::new(),
            exp_avg_sq: Vec::new(),
            groups: Vec::new(),
        })
    }

    /// Steps taken.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// The dtype groups of the last step, each updated by one launch, with the indices of
    /// the parameters it held.
    pub fn last_groups(&self) -> &[(ScalarType, Vec<usize>)] {
        &self.groups
    }

    /// The first moments, one per parameter (empty before the first step).
    pub fn exp_avg(&self) -> &[Tensor] {
        &self.exp_avg
    }

    /// The second moments, one per parameter (empty before the first step).
    pub fn exp_avg_sq(&self) -> &[Tensor] {
        &self.exp_avg_sq
    }

    fn prepare(&mut self, device: &Device, params: &[Tensor]) -> Result<Hyper, OptimError> {
        self.config.check()?;
        if self.steps == 0 {
            self.shapes = shapes(params);
            self.exp_avg = zeros_like(params, device)?;
            self.exp_avg_sq = zeros_like(params, device)?;
        }
        Ok(self.config.hyper(self.steps + 1))
    }

    /// One step: updates `params` (f32 or bf16, mixed in any order) in place from `grads`
    /// (each its parameter's shape and dtype), one launch per dtype present.
    pub fn step(
        &mut self,
        device: &Device,
        params: &[Tensor],
        grads: &[Tensor],
    ) -> Result<(), OptimError> {
        self.run(device, params, grads, None)
    }

    /// One mixed-precision step: updates the f32 master weights `params` in place from bf16
    /// `grads` and writes `model[i] = bf16(params[i])` (round to nearest even) in the same
    /// launch, so the model's bf16 copy never needs a second pass.
    pub fn step_with_model_copy(
        &mut self,
        device: &Device,
        params: &[Tensor],
        grads: &[Tensor],
        model: &[Tensor],
    ) -> Result<(), OptimError> {
        self.run(device, params, grads, Some(model))
    }

    /// The step over the lists, with a model copy to write when `model` is given (then the
    /// parameters are all f32: one group).
    fn run(
        &mut self,
        device: &Device,
        params: &[Tensor],
        grads: &[Tensor],
        model: Option<&[Tensor]>,
    ) -> Result<(), OptimError> {
        let (f, b) = (ScalarType::F32, ScalarType::BF16);
        check_step("AdamW", &[f, b], params, grads, model, &self.shapes)?;
        let h = self.prepare(device, params)?;
        let groups = dtype_groups(params);
        for (dtype, members) in &groups {
            let mut p = flat(*dtype, &pick(params, members))?;
            let g = flat(grad_dtype(*dtype, model), &pick(grads, members))?;
            let mut m = flat(f, &pick(&self.exp_avg, members))?;
            let mut v = flat(f, &pick(&self.exp_avg_sq, members))?;
            match model {
                Some(model) => {
                    let mut w = flat(b, &pick(model, members))?;
                    adamw_mixed_multi_step(device, &mut p, &g, &mut m, &mut v, &mut w, &h)?
                }
                None if *dtype == b => {
                    adamw_bf16_multi_step(device, &mut p, &g, &mut m, &mut v, &h)?
                }
                None => adamw_multi_step(device, &mut p, &g, &mut m, &mut v, &h)?,
            }
        }
        self.groups = groups;
        self.steps += 1;
        Ok(())
    }
}

/// The gradients' dtype for parameters of `dtype`: theirs, or bf16 in a step with a `model`
/// copy.
fn grad_dtype(dtype: ScalarType, model: Option<&[Tensor]>) -> ScalarType {
    match model {
        Some(_) => ScalarType::BF16,
        None => dtype,
    }
}

fn refs(ts: &[Tensor]) -> Vec<&Tensor> {
    ts.iter().collect()
}

/// The `members` of `ts`, in order.
fn pick<'a>(ts: &'a [Tensor], members: &[usize]) -> Vec<&'a Tensor> {
    members.iter().map(|&i| &ts[i]).collect()
}

fn zeros_like(params: &[Tensor], device: &Device) -> Result<Vec<Tensor>, crate::Error> {
    params
        .iter()
        .map(|p| Tensor::zeros(ScalarType::F32, p.shape(), device))
        .collect()
}

/// Lion's hyper-parameters, named as `lion-pytorch` names them (torch has no Lion), with its
/// defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LionConfig {
    pub lr: f32,
    pub betas: (f32, f32),
    pub weight_decay: f32,
    /// Not supported: `true` is refused.
    pub maximize: bool,
}

impl Default for LionConfig {
    /// `lr` 1e-4, `betas` (0.9, 0.99), `weight_decay` 0.
    fn default() -> Self {
        LionConfig {
            lr: 1e-4,
            betas: (0.9, 0.99),
            weight_decay: 0.0,
            maximize: false,
        }
    }
}

impl LionConfig {
    fn check(&self) -> Result<(), OptimError> {
        refuse("Lion", false, self.maximize, "")?;
        check_adam_options("Lion", self.lr, self.betas, None, self.weight_decay)
    }
}

/// Lion over a list of f32 and bf16 parameters, grouped by dtype as [`AdamW`] groups them
/// (one launch per dtype), or (with [`Lion::step_with_model_copy`]) f32 master weights of a
/// bf16 model in one launch. State per parameter: `exp_avg` (f32, its shape).
#[derive(Debug)]
pub struct Lion {
    /// The hyper-parameters of the next step.
    pub config: LionConfig,
    steps: u32,
    shapes: Vec<Vec<usize>>,
    exp_avg: Vec<Tensor>,
    groups: Vec<(ScalarType, Vec<usize>)>,
}

impl Lion {
    /// An optimizer with no state yet; refuses options it does not support.
    pub fn new(config: LionConfig) -> Result<Lion, OptimError> {
        config.check()?;
        Ok(Lion {
            config,
            steps: 0,
            shapes: Vec::new(),
            exp_avg: Vec::new(),
            groups: Vec::new(),
        })
    }

    /// Steps taken.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// The dtype groups of the last step, each updated by one launch, with the indices of
    /// the parameters it held.
    pub fn last_groups(&self) -> &[(ScalarType, Vec<usize>)] {
        &self.groups
    }

    /// The momentum, one per parameter (empty before the first step).
    pub fn exp_avg(&self) -> &[Tensor] {
        &self.exp_avg
    }

    /// One step: updates `params` (f32 or bf16, mixed in any order) in place from `grads`
    /// (each its parameter's shape and dtype), one launch per dtype present.
    pub fn step(
        &mut self,
        device: &Device,
        params: &[Tensor],
        grads: &[Tensor],
    ) -> Result<(), OptimError> {
        self.run(device, params, grads, None)
    }

    /// One mixed-precision step, as [`AdamW::step_with_model_copy`]: updates the f32 master
    /// weights `params` in place from bf16 `grads` and writes `model[i] = bf16(params[i])`
    /// (round to nearest even) in the same launch
    /// ([`lion_mixed_multi`](super::optim_multi::lion_mixed_multi)).
    pub fn step_with_model_copy(
        &mut self,
        device: &Device,
        params: &[Tensor],
        grads: &[Tensor],
        model: &[Tensor],
    ) -> Result<(), OptimError> {
        self.run(device, params, grads, Some(model))
    }

    /// The step over the lists, as [`AdamW`]'s.
    fn run(
        &mut self,
        device: &Device,
        params: &[Tensor],
        grads: &[Tensor],
        model: Option<&[Tensor]>,
    ) -> Result<(), OptimError> {
        let (f, b) = (ScalarType::F32, ScalarType::BF16);
        check_step("Lion", &[f, b], params, grads, model, &self.shapes)?;
        let h = self.prepare(device, params)?;
        let groups = dtype_groups(params);
        for (dtype, members) in &groups {
            let mut p = flat(*dtype, &pick(params, members))?;
            let g = flat(grad_dtype(*dtype, model), &pick(grads, members))?;
            let mut m = flat(f, &pick(&self.exp_avg, members))?;
            match model {
                Some(model) => {
                    let mut w = flat(b, &pick(model, members))?;
                    lion_mixed_multi_step(device, &mut p, &g, &mut m, &mut w, &h)?
                }
                None if *dtype == b => lion_bf16_multi_step(device, &mut p, &g, &mut m, &h)?,
                None => lion_multi_step(device, &mut p, &g, &mut m, &h)?,
            }
        }
        self.groups = groups;
        self.steps += 1;
        Ok(())
    }

    /// Checks the options, makes the state at the first step and gives the step's
    /// hyper-parameters.
    fn prepare(&mut self, device: &Device, params: &[Tensor]) -> Result<LionHyper, OptimError> {
        self.config.check()?;
        if self.steps == 0 {
            self.shapes = shapes(params);
            self.exp_avg = zeros_like(params, device)?;
        }
        Ok(LionHyper {
            lr: self.config.lr,
            beta1: self.config.betas.0,
            beta2: self.config.betas.1,
            weight_decay: self.config.weight_decay,
        })
    }
}

/// How Adam-mini splits one parameter into blocks that share a second moment (Zhang et al.
/// 2024, §2: by the Hessian's block structure). Blocks are equal runs of consecutive elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partition {
    /// One block: the whole tensor (the paper's choice for LayerNorm weights and the like).
    Whole,
    /// One block per output neuron: a row of a weight `[out, in]` (value, attention output and
    /// MLP projections; a 1-D tensor's elements).
    PerOutputNeuron,
    /// One block per attention head: `heads` equal groups of rows of a query or key projection
    /// `[heads·head_dim, in]`.
    PerHead(usize),
    /// One block per element: AdamW's per-parameter `v` (the paper's embedding and output
    /// layers).
    PerElement,
}

impl Partition {
    /// Blocks of a tensor of `shape`, or why the partition does not fit it.
    fn blocks(&self, shape: &[usize]) -> Result<usize, String> {
        let n: usize = shape.iter().product();
        if n == 0 {
            return Ok(0);
        }
        Ok(match *self {
            Partition::Whole => 1,
            Partition::PerOutputNeuron => shape.first().copied().unwrap_or(1),
            Partition::PerHead(heads) => {
                let rows = shape.first().copied().unwrap_or(1);
                if heads == 0 || rows % heads != 0 {
                    return Err(format!(
                        "{heads} heads, which must be at least 1 and divide the {rows} rows"
                    ));
                }
                heads
            }
            Partition::PerElement => n,
        })
    }
}

/// Adam-mini's hyper-parameters (`adam-mini` 1.1's names and defaults; torch has none).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamMiniConfig {
    pub lr: f32,
    pub betas: (f32, f32),
    pub eps: f32,
    pub weight_decay: f32,
    /// Not supported: `true` is refused.
    pub maximize: bool,
}

impl Default for AdamMiniConfig {
    /// `lr` 1e-3, `betas` (0.9, 0.999), `eps` 1e-8, `weight_decay` 0.
    fn default() -> Self {
        AdamMiniConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            maximize: false,
        }
    }
}

/// Adam-mini over a list of f32 parameters, each split by its [`Partition`] (with
/// [`AdamMini::step_with_model_copy`], f32 master weights of a bf16 model). State per
/// parameter: `exp_avg` (f32, its shape) and `v` (f32, one per block).
#[derive(Debug)]
pub struct AdamMini {
    /// The hyper-parameters of the next step.
    pub config: AdamMiniConfig,
    partition: Vec<Partition>,
    steps: u32,
    shapes: Vec<Vec<usize>>,
    blocks: Vec<usize>,
    exp_avg: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl AdamMini {
    /// An optimizer for parameters split by `partition` (one entry per parameter, in the order
    /// `step` receives them), with no state yet.
    pub fn new(config: AdamMiniConfig, partition: Vec<Partition>) -> Result<AdamMini, OptimError> {
        Self::check(&config)?;
        Ok(AdamMini {
            config,
            partition,
            steps: 0,
            shapes: Vec::new(),
            blocks: Vec::new(),
            exp_avg: Vec::new(),
            v: Vec::new(),
        })
    }

    fn check(c: &AdamMiniConfig) -> Result<(), OptimError> {
        refuse("AdamMini", false, c.maximize, "")?;
        check_adam_options("AdamMini", c.lr, c.betas, Some(c.eps), c.weight_decay)
    }

    /// Steps taken.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// The first moments, one per parameter (empty before the first step).
    pub fn exp_avg(&self) -> &[Tensor] {
        &self.exp_avg
    }

    /// The second moments, `[blocks]` per parameter (empty before the first step).
    pub fn v(&self) -> &[Tensor] {
        &self.v
    }

    /// Checks the options and the partition against `params`, makes the state at the first
    /// step; gives the hyper-parameters of the next step.
    fn prepare(&mut self, device: &Device, params: &[Tensor]) -> Result<Hyper, OptimError> {
        const NAME: &str = "AdamMini";
        Self::check(&self.config)?;
        if self.partition.len() != params.len() {
            return Err(OptimError::Count {
                optimizer: NAME,
                what: "params (one per entry of the partition)",
                expected: self.partition.len(),
                found: params.len(),
            });
        }
        if self.steps == 0 {
            let mut blocks = Vec::with_capacity(params.len());
            for (entry, (p, part)) in params.iter().zip(&self.partition).enumerate() {
                blocks.push(part.blocks(p.shape()).map_err(|why| OptimError::Entry {
                    optimizer: NAME,
                    what: "params",
                    entry,
                    expected: format!("a shape {part:?} divides: {why}"),
                    found: format!("shape {:?}", p.shape()),
                })?);
            }
            self.v = blocks
                .iter()
                .map(|&b| Tensor::zeros(ScalarType::F32, &[b], device))
                .collect::<Result<_, _>>()?;
            self.exp_avg = zeros_like(params, device)?;
            self.shapes = shapes(params);
            self.blocks = blocks;
        }
        let c = &self.config;
        Ok(adam_hyper(
            c.lr,
            c.betas,
            c.eps,
            c.weight_decay,
            self.steps + 1,
        ))
    }

    /// `tensors` (one per parameter) of `dtype`, each seen as its parameter's
    /// `[blocks, block_len]`.
    fn as_blocks(&self, dtype: ScalarType, tensors: &[Tensor]) -> Result<TensorList, TableError> {
        let blocks = &self.blocks;
        list_of(dtype, 2, &refs(tensors), |i, t| match blocks[i] {
            0 => vec![0, 1],
            b => vec![b, t.len() / b],
        })
    }

    /// One step: updates `params` (f32) in place from `grads` (f32) in one launch.
    pub fn step(
        &mut self,
        device: &Device,
        params: &[Tensor],
        grads: &[Tensor],
    ) -> Result<(), OptimError> {
        self.run(device, params, grads, None)
    }

    /// One mixed-precision step, as [`AdamW::step_with_model_copy`]: updates the f32 master
    /// weights `params` in place from bf16 `grads` and writes `model[i] = bf16(params[i])`
    /// (round to nearest even) in the same launch
    /// ([`adam_mini_mixed_multi`](super::optim_multi::adam_mini_mixed_multi)).
    pub fn step_with_model_copy(
        &mut self,
        device: &Device,
        params: &[Tensor],
        grads: &[Tensor],
        model: &[Tensor],
    ) -> Result<(), OptimError> {
        self.run(device, params, grads, Some(model))
    }

    /// The step over the lists, with a model copy to write when `model` is given.
    fn run(
        &mut self,
        device: &Device,
        params: &[Tensor],
        grads: &[Tensor],
        model: Option<&[Tensor]>,
    ) -> Result<(), OptimError> {
        let f = ScalarType::F32;
        check_step("AdamMini", &[f], params, grads, model, &self.shapes)?;
        let h = self.prepare(device, params)?;
        let mut p = self.as_blocks(f, params)?;
        let g = self.as_blocks(grad_dtype(f, model), grads)?;
        let mut m = self.as_blocks(f, &self.exp_avg)?;
        let mut v = flat(f, &refs(&self.v))?;
        match model {
            Some(model) => {
                let mut w = self.as_blocks(ScalarType::BF16, model)?;
                adam_mini_mixed_multi_step(device, &mut p, &g, &mut m, &mut v, &mut w, &h)?
            }
            None => adam_mini_multi_step(device, &mut p, &g, &mut m, &mut v, &h)?,
        }
        self.steps += 1;
        Ok(())
    }
}

/// bitsandbytes' `AdamW8bit` hyper-parameters (same names and defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam8bitConfig {
    pub lr: f32,
    pub betas: (f32, f32),
    pub eps: f32,
    pub weight_decay: f32,
    /// Not supported: `true` is refused.
    pub amsgrad: bool,
    /// Not supported: `true` is refused.
    pub maximize: bool,
}

impl Default for Adam8bitConfig {
    /// `lr` 1e-3, `betas` (0.9, 0.999), `eps` 1e-8, `weight_decay` 1e-2.
    fn default() -> Self {
        Adam8bitConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
            amsgrad: false,
            maximize: false,
        }
    }
}

/// 8-bit AdamW over a list of f32 parameters (with [`Adam8bit::step_with_model_copy`], f32
/// master weights of a bf16 model): blockwise-quantized moments
/// ([`optim8`]); each parameter's state ([`DeviceState`](optim8::DeviceState)) stays on the
/// device between steps, with one pair of dynamic maps for all of them.
/// Every parameter is quantized, however small (bitsandbytes keeps tensors under its
/// `min_8bit_size` of 4096 elements in 32-bit state; this does not).
#[derive(Debug)]
pub struct Adam8bit {
    /// The hyper-parameters of the next step.
    pub config: Adam8bitConfig,
    steps: u32,
    shapes: Vec<Vec<usize>>,
    states: Vec<optim8::DeviceState>,
    maps: Option<(Tensor, Tensor)>,
}

impl Adam8bit {
    /// An optimizer with no state yet; refuses options it does not support.
    pub fn new(config: Adam8bitConfig) -> Result<Adam8bit, OptimError> {
        Self::check(&config)?;
        Ok(Adam8bit {
            config,
            steps: 0,
            shapes: Vec::new(),
            states: Vec::new(),
            maps: None,
        })
    }

    fn check(c: &Adam8bitConfig) -> Result<(), OptimError> {
        refuse(
            "Adam8bit",
            c.amsgrad,
            c.maximize,
            "the 8-bit state keeps no running maximum of v",
        )?;
        check_adam_options("Adam8bit", c.lr, c.betas, Some(c.eps), c.weight_decay)
    }

    /// Steps taken.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// The 8-bit state of each parameter, on the device (empty before the first step).
    pub fn states(&self) -> &[optim8::DeviceState] {
        &self.states
    }

    /// Makes the state at the first step and the maps once; gives the hyper-parameters of the
    /// next step, the state as the four lists of a multi-tensor launch (codes of m and v,
    /// absmax of m and v) and the maps.
    #[allow(clippy::type_complexity)]
    fn prepare(
        &mut self,
        device: &Device,
        params: &[Tensor],
    ) -> Result<(Hyper, [TensorList; 4], [&dyn TensorArg; 2]), OptimError> {
        Self::check(&self.config)?;
        if self.steps == 0 {
            self.states = params
                .iter()
                .map(|p| optim8::DeviceState::new(p.len(), device))
                .collect::<Result<_, _>>()?;
            self.shapes = shapes(params);
        }
        let (m_map, v_map) = match &mut self.maps {
            Some(maps) => &*maps,
            empty => &*empty.insert(optim8::device_maps(device)?),
        };
        let states = &self.states;
        let list = |dtype, field: fn(&optim8::DeviceState) -> &Tensor| {
            flat(dtype, &states.iter().map(field).collect::<Vec<_>>())
        };
        let (i8, f) = (ScalarType::I8, ScalarType::F32);
        let lists = [
            list(i8, |s| &s.m_codes)?,
            list(i8, |s| &s.v_codes)?,
            list(f, |s| &s.m_absmax)?,
            list(f, |s| &s.v_absmax)?,
        ];
        let c = &self.config;
        let h = adam_hyper(c.lr, c.betas, c.eps, c.weight_decay, self.steps + 1);
        Ok((h, lists, [m_map, v_map]))
    }

    /// One step: updates `params` (f32) in place from `grads` (f32) in one launch
    /// ([`adam8bit_multi`](optim8::adam8bit_multi)).
    pub fn step(
        &mut self,
        device: &Device,
        params: &[Tensor],
        grads: &[Tensor],
    ) -> Result<(), OptimError> {
        self.run(device, params, grads, None)
    }

    /// One mixed-precision step, as [`AdamW::step_with_model_copy`]: updates the f32 master
    /// weights `params` in place from bf16 `grads` and writes `model[i] = bf16(params[i])`
    /// (round to nearest even) in the same launch
    /// ([`adam8bit_mixed_multi`](optim8::adam8bit_mixed_multi)).
    pub fn step_with_model_copy(
        &mut self,
        device: &Device,
        params: &[Tensor],
        grads: &[Tensor],
        model: &[Tensor],
    ) -> Result<(), OptimError> {
        self.run(device, params, grads, Some(model))
    }

    /// The step over the lists, with a model copy to write when `model` is given.
    fn run(
        &mut self,
        device: &Device,
        params: &[Tensor],
        grads: &[Tensor],
        model: Option<&[Tensor]>,
    ) -> Result<(), OptimError> {
        let f = ScalarType::F32;
        check_step("Adam8bit", &[f], params, grads, model, &self.shapes)?;
        let (h, [mut mc, mut vc, mut ma, mut va], maps) = self.prepare(device, params)?;
        let mut p = flat(f, &refs(params))?;
        let g = flat(grad_dtype(f, model), &refs(grads))?;
        let state = [&mut mc, &mut vc, &mut ma, &mut va];
        match model {
            Some(model) => {
                let mut w = flat(ScalarType::BF16, &refs(model))?;
                optim8::adam8bit_mixed_multi_step(device, &mut p, &g, state, &mut w, maps, &h)?
            }
            None => optim8::adam8bit_multi_step(device, &mut p, &g, state, maps, &h)?,
        }
        self.steps += 1;
        Ok(())
    }
}

/// Muon over a list of 2-D f32 parameters (`torch.optim.Muon`, which likewise takes only
/// matrices: give biases and embeddings to another optimizer), or (with
/// [`Muon::step_with_model_copy`]) f32 master weights of a bf16 model. Each matrix gets a
/// [`muon::Muon`] state of batch 1.
#[derive(Debug)]
pub struct Muon {
    /// The hyper-parameters of the next step.
    pub config: MuonConfig,
    steps: u32,
    shapes: Vec<Vec<usize>>,
    states: Vec<muon::Muon>,
}

impl Muon {
    /// An optimizer with no state yet.
    pub fn new(config: MuonConfig) -> Result<Muon, OptimError> {
        Ok(Muon {
            config,
            steps: 0,
            shapes: Vec::new(),
            states: Vec::new(),
        })
    }

    /// Steps taken.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// The state of each matrix (momentum buffer `[1, R, C]`; empty before the first step).
    pub fn states(&self) -> &[muon::Muon] {
        &self.states
    }

    /// One step: updates `params` (2-D f32) in place from `grads` (f32, each its parameter's
    /// shape).
    pub fn step(
        &mut self,
        device: &Device,
        params: &[Tensor],
        grads: &[Tensor],
    ) -> Result<(), OptimError> {
        self.run(device, params, grads, None)
    }

    /// One mixed-precision step, as [`AdamW::step_with_model_copy`]: updates the f32 master
    /// weights `params` (2-D) in place from bf16 `grads` and writes `model[i] = bf16(params[i])`
    /// (round to nearest even) in the update's pass ([`muon::Muon::step_with_model_copy`]:
    /// f32 momentum, Newton–Schulz on bf16 operands with f32 accumulation).
    pub fn step_with_model_copy(
        &mut self,
        device: &Device,
        params: &[Tensor],
        grads: &[Tensor],
        model: &[Tensor],
    ) -> Result<(), OptimError> {
        self.run(device, params, grads, Some(model))
    }

    /// The step over the lists, with a model copy to write when `model` is given.
    fn run(
        &mut self,
        device: &Device,
        params: &[Tensor],
        grads: &[Tensor],
        model: Option<&[Tensor]>,
    ) -> Result<(), OptimError> {
        check_step(
            "Muon",
            &[ScalarType::F32],
            params,
            grads,
            model,
            &self.shapes,
        )?;
        if self.steps == 0 {
            let mut states = Vec::with_capacity(params.len());
            for (entry, p) in params.iter().enumerate() {
                let &[r, c] = p.shape() else {
                    return Err(OptimError::Entry {
                        optimizer: "Muon",
                        what: "params",
                        entry,
                        expected: "a matrix (Muon updates 2-D parameters only)".into(),
                        found: format!("shape {:?}", p.shape()),
                    });
                };
                states.push(muon::Muon::new(device, [1, r, c], self.config)?);
            }
            self.shapes = shapes(params);
            self.states = states;
        }
        for (e, ((p, g), state)) in params.iter().zip(grads).zip(&mut self.states).enumerate() {
            state.config = self.config;
            let (mut pv, gv) = (batch_of_one(p), batch_of_one(g));
            match model {
                Some(model) => {
                    let mut wv = batch_of_one(&model[e]);
                    state.step_with_model_copy(device, &mut pv, &gv, &mut wv)?
                }
                None => state.step(device, &mut pv, &gv)?,
            }
        }
        self.steps += 1;
        Ok(())
    }
}

/// `t` as the batch of one matrix a [`muon::Muon`] state holds: shape `[1, ...]`.
fn batch_of_one(t: &Tensor) -> Reshaped<'_> {
    Reshaped {
        tensor: t,
        shape: [&[1], t.shape()].concat(),
    }
}

/// Shampoo over a list of f32 parameters, 1-D (biases: the diagonal form, Adam's direction) or
/// 2-D (weights: Kronecker factors `L` and `R`, blocked by `max_preconditioner_dim`), with
/// Distributed Shampoo's option names ([`ShampooConfig`]: `lr`, `betas`, `epsilon`,
/// `precondition_frequency`, `start_preconditioning_step`, `max_preconditioner_dim`, Adam
/// grafting's `grafting_beta2` and `grafting_epsilon`, `weight_decay`, `momentum`,
/// `use_nesterov`); with [`Shampoo::step_with_model_copy`], f32 master weights of a bf16
/// model. The state ([`shampoo::Shampoo`]) is made at the first step for that list's shapes.
#[derive(Debug)]
pub struct Shampoo {
    /// The hyper-parameters of the next step (all but `max_preconditioner_dim` may change).
    pub config: ShampooConfig,
    shapes: Vec<Vec<usize>>,
    state: Option<shampoo::Shampoo>,
}

impl Shampoo {
    /// An optimizer with no state yet; refuses options out of range (by name).
    pub fn new(config: ShampooConfig) -> Result<Shampoo, OptimError> {
        config.check()?;
        Ok(Shampoo {
            config,
            shapes: Vec::new(),
            state: None,
        })
    }

    /// Steps taken.
    pub fn steps(&self) -> u32 {
        self.state.as_ref().map_or(0, |s| s.steps() as u32)
    }

    /// The state (statistics, roots), once the first step made it.
    pub fn state(&self) -> Option<&shampoo::Shampoo> {
        self.state.as_ref()
    }

    /// How each inverse root computed by the last step ended (empty when it computed none).
    pub fn last_roots(&self) -> &[RootReport] {
        self.state.as_ref().map_or(&[], |s| &s.last_roots)
    }

    /// One step: updates `params` (f32, each `[n]` or `[rows, cols]`, none empty) in place from
    /// `grads` (f32, each its parameter's shape).
    pub fn step(
        &mut self,
        device: &Device,
        params: &[Tensor],
        grads: &[Tensor],
    ) -> Result<(), OptimError> {
        self.run(device, params, grads, None)
    }

    /// One mixed-precision step, as [`AdamW::step_with_model_copy`]: updates the f32 master
    /// weights `params` in place from bf16 `grads` and writes `model[i] = bf16(params[i])`
    /// (round to nearest even) in the update's pass
    /// ([`shampoo::Shampoo::step_with_model_copy`]: statistics, roots and states in f32).
    pub fn step_with_model_copy(
        &mut self,
        device: &Device,
        params: &[Tensor],
        grads: &[Tensor],
        model: &[Tensor],
    ) -> Result<(), OptimError> {
        self.run(device, params, grads, Some(model))
    }

    /// The step over the lists, with a model copy to write when `model` is given.
    fn run(
        &mut self,
        device: &Device,
        params: &[Tensor],
        grads: &[Tensor],
        model: Option<&[Tensor]>,
    ) -> Result<(), OptimError> {
        const NAME: &str = "Shampoo";
        check_step(NAME, &[ScalarType::F32], params, grads, model, &self.shapes)?;
        self.config.check()?;
        let state = match &mut self.state {
            Some(state) => {
                let made = state.config.max_preconditioner_dim;
                if self.config.max_preconditioner_dim != made {
                    return Err(OptimError::Option {
                        optimizer: NAME,
                        name: "max_preconditioner_dim",
                        expected: "the value of the first step (the blocks are cut then)",
                        value: self.config.max_preconditioner_dim.to_string(),
                    });
                }
                state
            }
            None => {
                let shapes = shapes(params);
                for (entry, shape) in shapes.iter().enumerate() {
                    if !matches!(shape.len(), 1 | 2) || shape.contains(&0) {
                        return Err(OptimError::Entry {
                            optimizer: NAME,
                            what: "params",
                            entry,
                            expected: "a non-empty vector or matrix".into(),
                            found: format!("shape {shape:?}"),
                        });
                    }
                }
                let state = shampoo::Shampoo::new(device, &shapes, self.config)?;
                self.shapes = shapes;
                self.state.insert(state)
            }
        };
        state.config = self.config;
        match model {
            Some(model) => state.step_with_model_copy(device, params, grads, model)?,
            None => state.step(device, params, grads)?,
        }
        Ok(())
    }
}
