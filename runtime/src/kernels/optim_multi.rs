//! Multi-tensor optimizer launches: one launch updates a whole list of tensors of different
//! sizes through pointer tables ([`GlTable`]), the way torch's `_foreach` / fused multi-tensor
//! kernels do, so a model's many small tensors cost one launch instead of one each.
//!
//! Blocks are laid out over the list by a prefix table `starts` of block counts (host-built by
//! [`block_starts`]): entry e owns blocks `starts[e] .. starts[e + 1]`, so an empty tensor owns
//! none and a large one many. A block finds its entry by binary search over `starts`
//! ([`entry_of_block`]) and its chunk within the entry from the difference ([`entry_and_unit`]).
//!
//! - [`adamw_mixed_multi`]: [`adamw_mixed`](crate::kernels::optim_family::adamw_mixed) over
//!   lists (f32 master weights, bf16 gradients, f32 moments, bf16 model copy written in the same
//!   pass): per element the same [`adamw_update`], so its results equal the per-tensor kernel's
//!   bit for bit. [`adamw_mixed_multi_step`] checks the lists and launches it.
//! - [`adamw_multi`] (f32 weights) and [`adamw_bf16_multi`] (bf16 weights, f32 moments): the
//!   two dtype groups of a mixed list, one launch each ([`AdamW`](crate::kernels::optim::AdamW)
//!   groups a list by dtype, as torch's foreach does).
//! - [`lion_multi`], [`lion_bf16_multi`] and [`lion_mixed_multi`]: Lion over lists, the last
//!   with f32 master weights, bf16 gradients and a bf16 model copy written in the same pass.
//! - The global gradient L2 norm and clip over a list (`torch.nn.utils.clip_grad_norm_` over
//!   many parameters): [`sum_squares_multi`] writes one partial sum of squares per block (no
//!   atomics, so the result does not depend on the order blocks run in),
//!   [`norm_and_coef`] adds them in a fixed order and writes `[‖g‖, coef]`, and
//!   [`scale_by_coef_multi`] scales every gradient by the coefficient it reads from device
//!   memory: three launches, no host round trip. [`clip_grad_norm_multi`] runs them.

use crate::device::TableError;
use crate::dsl::*;
use crate::error::Error;
use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;
use crate::kernels::check::{moving_average_bound, record, record_bounded, Rng};
use crate::kernels::optim::reference::{self, Adam64};
use crate::kernels::optim::{adamw_chunk, adamw_update, AdamwScalars, Hyper};
use crate::kernels::optim_family::{
    adam_mini_rows, lion_chunk, lion_update, norm_and_coef, LionHyper,
};
use crate::tensor::TensorArg;
use crate::tensor_list::TensorList;
use crate::{Device, ScalarArg, Tensor};

/// Elements per warp of [`adamw_mixed_multi`] and [`scale_by_coef_multi`].
pub const CHUNK: usize = 256;
/// Warps per block of [`adamw_mixed_multi`] and [`scale_by_coef_multi`].
pub const WARPS: usize = 4;
/// Elements per block (one warp) of [`sum_squares_multi`].
pub const NORM_CHUNK: usize = 1024;

/// The entry that owns block `b`: the last e in `0..entries` with `starts[e] ≤ b` (binary
/// search; empty entries own no block and are skipped).
#[crate::func]
pub fn entry_of_block(starts: Gl<i32, 1>, entries: Scalar<i32>, b: Scalar<i32>) -> Scalar<i32> {
    let mut lo = lit::<i32>(0);
    let mut hi = entries;
    while (hi - lo).gt(1) {
        let mid = (lo + hi) / 2;
        let s: Scalar<i32> = load(starts.at(mid));
        if s.le(b) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The prelude of every multi-tensor kernel whose blocks hold `WARPS` warps: `(e, unit)`, the
/// entry that owns this block (of `entries`, by [`entry_of_block`]) and this warp's unit of
/// work within it (chunk, row group or quantization block, counted from the entry's first
/// block). The last block of an entry may hold warps whose unit lies past the entry's end: the
/// caller compares `unit` with the entry's size and skips them.
#[crate::func]
pub fn entry_and_unit<const WARPS: usize>(
    starts: Gl<i32, 1>,
    entries: Scalar<i32>,
) -> (Scalar<i32>, Scalar<i32>) {
    let b = block_idx_x();
    let e = entry_of_block(starts, entries, b);
    let first: Scalar<i32> = load(starts.at(e));
    (e, (b - first) * WARPS as i32 + warp_idx())
}

/// [`adamw_mixed`](crate::kernels::optim_family::adamw_mixed) over lists of tensors: entry e of
/// every list is one parameter tensor (all five of one length). Grid: `[starts[E], 1, 1]` with
/// `starts` from [`block_starts`] over the lengths with `WARPS·N` elements per block.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<256, 4>),
    selftest = selftest_adamw_mixed_multi,
    shapes(p: [E, 2], g: [E, 2], m: [E, 2], v: [E, 2], p_model: [E, 2], starts: [S], S == E + 1)
)]
#[allow(clippy::too_many_arguments)]
pub fn adamw_mixed_multi<const N: usize, const WARPS: usize>(
    p: GlTableMut<f32, 1>,
    g: GlTable<bf16, 1>,
    m: GlTableMut<f32, 1>,
    v: GlTableMut<f32, 1>,
    p_model: GlTableMut<bf16, 1>,
    starts: Gl<i32, 1>,
    lr: Scalar<f32>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    eps: Scalar<f32>,
    weight_decay: Scalar<f32>,
    bias_correction1: Scalar<f32>,
    bias_correction2: Scalar<f32>,
) {
    let (e, chunk) = entry_and_unit::<WARPS>(starts, p.len());
    let (pe, ge, me, ve, we) = (p.view(e), g.view(e), m.view(e), v.view(e), p_model.view(e));
    // The last block of an entry may have warps past its end (the chunk index comes from
    // `starts`, so the interpreter's index check would take a chunk wholly outside for a bad
    // index): they skip the update.
    if (chunk * N as i32).lt(pe.len()) {
        let s = AdamwScalars {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            bias_correction1,
            bias_correction2,
        };
        let p_new = adamw_chunk::<bf16, N>(pe, ge, me, ve, chunk, s);
        store(we.chunk(chunk), p_new.cast::<bf16>());
    }
}

/// [`adamw_step`](crate::kernels::optim::adamw_step) over lists of tensors (f32 weights,
/// gradients and moments): entry e of every list is one parameter tensor, all four of one
/// length. Grid: `[starts[E], 1, 1]` with `starts` from [`block_starts`] over the lengths with
/// `WARPS·N` elements per block.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<256, 4>),
    selftest = selftest_adamw_multi,
    shapes(p: [E, 2], g: [E, 2], m: [E, 2], v: [E, 2], starts: [S], S == E + 1)
)]
#[allow(clippy::too_many_arguments)]
pub fn adamw_multi<const N: usize, const WARPS: usize>(
    p: GlTableMut<f32, 1>,
    g: GlTable<f32, 1>,
    m: GlTableMut<f32, 1>,
    v: GlTableMut<f32, 1>,
    starts: Gl<i32, 1>,
    lr: Scalar<f32>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    eps: Scalar<f32>,
    weight_decay: Scalar<f32>,
    bias_correction1: Scalar<f32>,
    bias_correction2: Scalar<f32>,
) {
    let (e, chunk) = entry_and_unit::<WARPS>(starts, p.len());
    let pe = p.view(e);
    // Warps past the entry's end (see `adamw_mixed_multi`) skip.
    if (chunk * N as i32).lt(pe.len()) {
        let s = AdamwScalars {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            bias_correction1,
            bias_correction2,
        };
        adamw_chunk::<f32, N>(pe, g.view(e), m.view(e), v.view(e), chunk, s);
    }
}

/// [`adamw_multi`] for bf16 weights (the bf16 group of a list, as torch's foreach groups a
/// list by dtype): weights and gradients bf16, moments f32. Each chunk widens the weights and
/// gradients to f32, updates through the same
/// [`adamw_update`] and stores the weights rounded to the nearest bf16 (ties to even). Grid as [`adamw_multi`].
#[crate::kernel(
    warps = WARPS as u32,
    variants(<256, 4>),
    selftest = selftest_adamw_bf16_multi,
    shapes(p: [E, 2], g: [E, 2], m: [E, 2], v: [E, 2], starts: [S], S == E + 1)
)]
#[allow(clippy::too_many_arguments)]
pub fn adamw_bf16_multi<const N: usize, const WARPS: usize>(
    p: GlTableMut<bf16, 1>,
    g: GlTable<bf16, 1>,
    m: GlTableMut<f32, 1>,
    v: GlTableMut<f32, 1>,
    starts: Gl<i32, 1>,
    lr: Scalar<f32>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    eps: Scalar<f32>,
    weight_decay: Scalar<f32>,
    bias_correction1: Scalar<f32>,
    bias_correction2: Scalar<f32>,
) {
    let (e, chunk) = entry_and_unit::<WARPS>(starts, p.len());
    let (pe, ge, me, ve) = (p.view(e), g.view(e), m.view(e), v.view(e));
    // Warps past the entry's end (see `adamw_mixed_multi`) skip.
    if (chunk * N as i32).lt(pe.len()) {
        let pb: Rv<bf16, N> = load(pe.chunk(chunk));
        let gb: Rv<bf16, N> = load(ge.chunk(chunk));
        let mv: Rv<f32, N> = load(me.chunk(chunk));
        let vv: Rv<f32, N> = load(ve.chunk(chunk));
        let (m_new, v_new, p_new) = adamw_update(
            pb.cast::<f32>(),
            gb.cast::<f32>(),
            mv,
            vv,
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            bias_correction1,
            bias_correction2,
        );
        store(pe.chunk(chunk), p_new.cast::<bf16>());
        store(me.chunk(chunk), m_new);
        store(ve.chunk(chunk), v_new);
    }
}

/// [`lion_step`](crate::kernels::optim_family::lion_step) over lists of f32 tensors (weights,
/// gradients, momentum; entry e of each of one length). Grid: `[starts[E], 1, 1]` with
/// `WARPS·N` elements per block.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<256, 4>),
    selftest = selftest_lion_multi,
    shapes(p: [E, 2], g: [E, 2], m: [E, 2], starts: [S], S == E + 1)
)]
#[allow(clippy::too_many_arguments)]
pub fn lion_multi<const N: usize, const WARPS: usize>(
    p: GlTableMut<f32, 1>,
    g: GlTable<f32, 1>,
    m: GlTableMut<f32, 1>,
    starts: Gl<i32, 1>,
    lr: Scalar<f32>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    weight_decay: Scalar<f32>,
) {
    let (e, chunk) = entry_and_unit::<WARPS>(starts, p.len());
    let pe = p.view(e);
    // Warps past the entry's end (see `adamw_mixed_multi`) skip.
    if (chunk * N as i32).lt(pe.len()) {
        lion_chunk::<f32, N>(
            pe,
            g.view(e),
            m.view(e),
            chunk,
            lr,
            beta1,
            beta2,
            weight_decay,
        );
    }
}

/// [`lion_multi`] with f32 master weights `p`, bf16 gradients and a bf16 model copy `p_model`
/// (entry e of the length of `p`'s) written in the same pass: `p_model = bf16(p)` after the
/// step, rounded to nearest even. The master weights and momentum step exactly as
/// [`lion_multi`]'s do from the widened gradients. Grid as [`lion_multi`].
#[crate::kernel(
    warps = WARPS as u32,
    variants(<256, 4>),
    selftest = selftest_lion_mixed_multi,
    shapes(p: [E, 2], g: [E, 2], m: [E, 2], p_model: [E, 2], starts: [S], S == E + 1)
)]
#[allow(clippy::too_many_arguments)]
pub fn lion_mixed_multi<const N: usize, const WARPS: usize>(
    p: GlTableMut<f32, 1>,
    g: GlTable<bf16, 1>,
    m: GlTableMut<f32, 1>,
    p_model: GlTableMut<bf16, 1>,
    starts: Gl<i32, 1>,
    lr: Scalar<f32>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    weight_decay: Scalar<f32>,
) {
    let (e, chunk) = entry_and_unit::<WARPS>(starts, p.len());
    let pe = p.view(e);
    // Warps past the entry's end (see `adamw_mixed_multi`) skip.
    if (chunk * N as i32).lt(pe.len()) {
        let p_new = lion_chunk::<bf16, N>(
            pe,
            g.view(e),
            m.view(e),
            chunk,
            lr,
            beta1,
            beta2,
            weight_decay,
        );
        store(p_model.view(e).chunk(chunk), p_new.cast::<bf16>());
    }
}

/// [`lion_multi`] for bf16 weights (the bf16 group of a list): weights and gradients bf16,
/// momentum f32; the update in f32 through
/// [`lion_update`], the weights stored rounded to the nearest bf16. Grid as [`lion_multi`].
#[crate::kernel(
    warps = WARPS as u32,
    variants(<256, 4>),
    shapes(p: [E, 2], g: [E, 2], m: [E, 2], starts: [S], S == E + 1)
)]
#[allow(clippy::too_many_arguments)]
pub fn lion_bf16_multi<const N: usize, const WARPS: usize>(
    p: GlTableMut<bf16, 1>,
    g: GlTable<bf16, 1>,
    m: GlTableMut<f32, 1>,
    starts: Gl<i32, 1>,
    lr: Scalar<f32>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    weight_decay: Scalar<f32>,
) {
    let (e, chunk) = entry_and_unit::<WARPS>(starts, p.len());
    let (pe, ge, me) = (p.view(e), g.view(e), m.view(e));
    // Warps past the entry's end (see `adamw_mixed_multi`) skip.
    if (chunk * N as i32).lt(pe.len()) {
        let pb: Rv<bf16, N> = load(pe.chunk(chunk));
        let gb: Rv<bf16, N> = load(ge.chunk(chunk));
        let mv: Rv<f32, N> = load(me.chunk(chunk));
        let (p_new, m_new) = lion_update(
            pb.cast::<f32>(),
            gb.cast::<f32>(),
            mv,
            lr,
            beta1,
            beta2,
            weight_decay,
        );
        store(pe.chunk(chunk), p_new.cast::<bf16>());
        store(me.chunk(chunk), m_new);
    }
}

/// [`adam_mini_step`](crate::kernels::optim_family::adam_mini_step) over lists: entry e of `p`,
/// `g`, `m` is one parameter tensor viewed as `[blocks, block_len]` (the caller's partition:
/// one row per head, per output neuron, …) and entry e of `v` its `[blocks]` second moments.
/// Each warp owns 16 rows of one entry. Grid: `[starts[E], 1, 1]` with `starts` from
/// [`block_starts`] over the row counts with `16·WARPS` rows per block.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<32, 4>),
    selftest = selftest_adam_mini_multi,
    shapes(p: [E, 3], g: [E, 3], m: [E, 3], v: [E, 2], starts: [S], S == E + 1)
)]
#[allow(clippy::too_many_arguments)]
pub fn adam_mini_multi<const C: usize, const WARPS: usize>(
    p: GlTableMut<f32, 2>,
    g: GlTable<f32, 2>,
    m: GlTableMut<f32, 2>,
    v: GlTableMut<f32, 1>,
    starts: Gl<i32, 1>,
    lr: Scalar<f32>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    eps: Scalar<f32>,
    weight_decay: Scalar<f32>,
    bias_correction1: Scalar<f32>,
    bias_correction2: Scalar<f32>,
) {
    let (e, rows) = entry_and_unit::<WARPS>(starts, p.len());
    let ve = v.view(e);
    // Warps past the entry's last row skip (as in `adamw_mixed_multi`).
    if (rows * 16).lt(ve.len()) {
        let s = AdamwScalars {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            bias_correction1,
            bias_correction2,
        };
        adam_mini_rows::<f32, C>(p.view(e), g.view(e), m.view(e), ve, None, rows, s);
    }
}

/// [`adam_mini_multi`] with f32 master weights `p`, bf16 gradients and a bf16 model copy
/// `p_model` (entry e of `p`'s shape) written in the same pass: `p_model = bf16(p)` after the
/// step, rounded to nearest even. The master weights and moments step exactly as
/// [`adam_mini_multi`]'s do from the widened gradients. Grid as [`adam_mini_multi`].
#[crate::kernel(
    warps = WARPS as u32,
    variants(<32, 4>),
    selftest = selftest_adam_mini_mixed_multi,
    shapes(p: [E, 3], g: [E, 3], m: [E, 3], v: [E, 2], p_model: [E, 3], starts: [S], S == E + 1)
)]
#[allow(clippy::too_many_arguments)]
pub fn adam_mini_mixed_multi<const C: usize, const WARPS: usize>(
    p: GlTableMut<f32, 2>,
    g: GlTable<bf16, 2>,
    m: GlTableMut<f32, 2>,
    v: GlTableMut<f32, 1>,
    p_model: GlTableMut<bf16, 2>,
    starts: Gl<i32, 1>,
    lr: Scalar<f32>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    eps: Scalar<f32>,
    weight_decay: Scalar<f32>,
    bias_correction1: Scalar<f32>,
    bias_correction2: Scalar<f32>,
) {
    let (e, rows) = entry_and_unit::<WARPS>(starts, p.len());
    let ve = v.view(e);
    // Warps past the entry's last row skip (as in `adamw_mixed_multi`).
    if (rows * 16).lt(ve.len()) {
        let s = AdamwScalars {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            bias_correction1,
            bias_correction2,
        };
        let model = Some(p_model.view(e));
        adam_mini_rows::<bf16, C>(p.view(e), g.view(e), m.view(e), ve, model, rows, s);
    }
}

/// `partial[b]` = the sum of squares of block b's `N` elements of its entry, in f32, one warp
/// per block. Grid: `[starts[E], 1, 1]` with `N` elements per block; `partial` has one element
/// per block.
#[crate::kernel(
    warps = 1,
    variants(<1024>),
    shapes(g: [E, 2], starts: [S], S == E + 1, partial: [P])
)]
pub fn sum_squares_multi<const N: usize>(
    g: GlTable<f32, 1>,
    starts: Gl<i32, 1>,
    partial: GlMut<f32, 1>,
) {
    let b = block_idx_x();
    let e = entry_of_block(starts, g.len(), b);
    let first: Scalar<i32> = load(starts.at(e));
    let gv: Rv<f32, N> = load(g.view(e).chunk(b - first));
    store(partial.at(b), reduce_all(Red::Sum, gv * gv));
}

/// Every gradient of the list times `stats[1]` (the coefficient [`norm_and_coef`] wrote).
/// Grid: `[starts[E], 1, 1]` with `WARPS·N` elements per block.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<256, 4>),
    shapes(g: [E, 2], starts: [S], S == E + 1, stats: [2])
)]
pub fn scale_by_coef_multi<const N: usize, const WARPS: usize>(
    g: GlTableMut<f32, 1>,
    starts: Gl<i32, 1>,
    stats: Gl<f32, 1>,
) {
    let (e, chunk) = entry_and_unit::<WARPS>(starts, g.len());
    let coef: Scalar<f32> = load(stats.at(1));
    let ge = g.view(e);
    // Warps past the entry's end (see `adamw_mixed_multi`) skip.
    if (chunk * N as i32).lt(ge.len()) {
        let gv: Rv<f32, N> = load(ge.chunk(chunk));
        store(ge.chunk(chunk), gv * coef);
    }
}

/// The prefix table of blocks over tensors of `lengths` with `per_block` elements per block:
/// `starts[e]` is entry e's first block, `starts[len]` the grid. An error when the grid would
/// pass the blocks a launch may have along x.
pub fn block_starts(lengths: &[usize], per_block: usize) -> Result<(HostTensor, u32), Error> {
    let mut starts = Vec::with_capacity(lengths.len() + 1);
    let mut total: u64 = 0;
    for &n in lengths {
        starts.push(total as f64);
        total += n.div_ceil(per_block.max(1)) as u64;
    }
    starts.push(total as f64);
    let blocks = u32::try_from(total)
        .ok()
        .filter(|&b| b <= i32::MAX as u32)
        .ok_or_else(|| Error::Shape {
            kernel: "multi-tensor launch".into(),
            message: format!(
                "the tensors need {total} blocks of {per_block} elements; at most {} fit one launch",
                i32::MAX
            ),
        })?;
    let t = HostTensor::new(ScalarType::I32, &[starts.len()], &starts)?;
    Ok((t, blocks))
}

/// Entry lengths of `list`, checked against the first list's (`what` names the list).
pub(crate) fn lengths_like(
    kernel: &str,
    first: &[usize],
    list: &TensorList,
    what: &str,
) -> Result<(), Error> {
    let bad = |message: String| Error::Shape {
        kernel: kernel.into(),
        message,
    };
    if list.len() != first.len() {
        return Err(bad(format!(
            "`{what}` holds {} tensors, `p` holds {}",
            list.len(),
            first.len()
        )));
    }
    for (e, &n) in first.iter().enumerate() {
        let got: usize = list.shape(e).unwrap_or(&[]).iter().product();
        if got != n {
            return Err(bad(format!(
                "`{what}` entry {e} has {got} elements, `p` entry {e} has {n}"
            )));
        }
    }
    Ok(())
}

/// The block plan of an element-wise step over `p` and the lists that go with it entry by entry
/// (`others`, each with its name for errors): refuses a list whose lengths differ from `p`'s,
/// then gives the first block of each entry and the block count; `None` when there is nothing
/// to do (an empty list, or only empty tensors).
fn elementwise_plan(
    kernel: &str,
    p: &TensorList,
    others: &[(&TensorList, &str)],
) -> Result<Option<(HostTensor, u32)>, Error> {
    let n = lengths(p);
    for &(list, what) in others {
        lengths_like(kernel, &n, list, what)?;
    }
    let (starts, blocks) = block_starts(&n, CHUNK * WARPS)?;
    Ok((blocks > 0).then_some((starts, blocks)))
}

pub(crate) fn lengths(list: &TensorList) -> Vec<usize> {
    (0..list.len())
        .map(|e| list.shape(e).unwrap_or(&[]).iter().product())
        .collect()
}

/// One AdamW step over lists of tensors in one launch (see [`adamw_mixed_multi`]): `p`, `m`,
/// `v` f32, `g` and `p_model` bf16, entry e of each of one length. An empty list does nothing.
#[allow(clippy::too_many_arguments)]
pub fn adamw_mixed_multi_step(
    device: &Device,
    p: &mut TensorList,
    g: &TensorList,
    m: &mut TensorList,
    v: &mut TensorList,
    p_model: &mut TensorList,
    h: &Hyper,
) -> Result<(), Error> {
    const NAME: &str = "adamw_mixed_multi";
    let Some((starts, blocks)) = elementwise_plan(
        NAME,
        p,
        &[(g, "g"), (&*m, "m"), (&*v, "v"), (&*p_model, "p_model")],
    )?
    else {
        return Ok(());
    };
    let [lr, beta1, beta2, eps, decay, bc1, bc2] = adam_scalar_args(NAME, h)?;
    adamw_mixed_multi::<CHUNK, WARPS>::launch(
        device, blocks, p, g, m, v, p_model, &starts, lr, beta1, beta2, eps, decay, bc1, bc2,
    )
}

/// One AdamW step over lists of f32 tensors in one launch (see [`adamw_multi`]): entry e of
/// `p`, `g`, `m`, `v` of one length. An empty list does nothing.
pub fn adamw_multi_step(
    device: &Device,
    p: &mut TensorList,
    g: &TensorList,
    m: &mut TensorList,
    v: &mut TensorList,
    h: &Hyper,
) -> Result<(), Error> {
    const NAME: &str = "adamw_multi";
    let Some((starts, blocks)) = elementwise_plan(NAME, p, &[(g, "g"), (&*m, "m"), (&*v, "v")])?
    else {
        return Ok(());
    };
    let [lr, beta1, beta2, eps, decay, bc1, bc2] = adam_scalar_args(NAME, h)?;
    adamw_multi::<CHUNK, WARPS>::launch(
        device, blocks, p, g, m, v, &starts, lr, beta1, beta2, eps, decay, bc1, bc2,
    )
}

/// One AdamW step over lists of bf16 weights in one launch (see [`adamw_bf16_multi`]): `p`
/// and `g` bf16, `m` and `v` f32, entry e of each of one length. An empty list does nothing.
pub fn adamw_bf16_multi_step(
    device: &Device,
    p: &mut TensorList,
    g: &TensorList,
    m: &mut TensorList,
    v: &mut TensorList,
    h: &Hyper,
) -> Result<(), Error> {
    const NAME: &str = "adamw_bf16_multi";
    let Some((starts, blocks)) = elementwise_plan(NAME, p, &[(g, "g"), (&*m, "m"), (&*v, "v")])?
    else {
        return Ok(());
    };
    let [lr, beta1, beta2, eps, decay, bc1, bc2] = adam_scalar_args(NAME, h)?;
    adamw_bf16_multi::<CHUNK, WARPS>::launch(
        device, blocks, p, g, m, v, &starts, lr, beta1, beta2, eps, decay, bc1, bc2,
    )
}

/// One Lion step over lists of f32 tensors in one launch (see [`lion_multi`]): entry e of `p`,
/// `g`, `m` of one length. An empty list does nothing.
pub fn lion_multi_step(
    device: &Device,
    p: &mut TensorList,
    g: &TensorList,
    m: &mut TensorList,
    h: &LionHyper,
) -> Result<(), Error> {
    const NAME: &str = "lion_multi";
    let Some((starts, blocks)) = elementwise_plan(NAME, p, &[(g, "g"), (&*m, "m")])? else {
        return Ok(());
    };
    let [lr, beta1, beta2, decay] = lion_scalar_args(h);
    lion_multi::<CHUNK, WARPS>::launch(device, blocks, p, g, m, &starts, lr, beta1, beta2, decay)
}

/// One Lion step over lists in one launch with a bf16 model copy (see [`lion_mixed_multi`]):
/// `p` and `m` f32, `g` and `p_model` bf16, entry e of each of one length. An empty list does
/// nothing.
pub fn lion_mixed_multi_step(
    device: &Device,
    p: &mut TensorList,
    g: &TensorList,
    m: &mut TensorList,
    p_model: &mut TensorList,
    h: &LionHyper,
) -> Result<(), Error> {
    const NAME: &str = "lion_mixed_multi";
    let Some((starts, blocks)) =
        elementwise_plan(NAME, p, &[(g, "g"), (&*m, "m"), (&*p_model, "p_model")])?
    else {
        return Ok(());
    };
    let [lr, beta1, beta2, decay] = lion_scalar_args(h);
    lion_mixed_multi::<CHUNK, WARPS>::launch(
        device, blocks, p, g, m, p_model, &starts, lr, beta1, beta2, decay,
    )
}

/// One Lion step over lists of bf16 weights in one launch (see [`lion_bf16_multi`]): `p` and
/// `g` bf16, `m` f32, entry e of each of one length. An empty list does nothing.
pub fn lion_bf16_multi_step(
    device: &Device,
    p: &mut TensorList,
    g: &TensorList,
    m: &mut TensorList,
    h: &LionHyper,
) -> Result<(), Error> {
    const NAME: &str = "lion_bf16_multi";
    let Some((starts, blocks)) = elementwise_plan(NAME, p, &[(g, "g"), (&*m, "m")])? else {
        return Ok(());
    };
    let [lr, beta1, beta2, decay] = lion_scalar_args(h);
    lion_bf16_multi::<CHUNK, WARPS>::launch(
        device, blocks, p, g, m, &starts, lr, beta1, beta2, decay,
    )
}

/// Rows of 16 per warp and warps per block of [`adam_mini_multi`].
pub const MINI_ROWS_PER_BLOCK: usize = 16 * WARPS;
/// Columns per tile of [`adam_mini_multi`].
pub const MINI_COLS: usize = 32;

/// The block plan of an Adam-mini step over `p` (rank 2, `[blocks_e, len_e]` per entry), the
/// lists of its shape entry by entry (`others`, each with its name for errors) and `v` (one
/// element per block): refuses lists that do not match, then gives the first thread block of
/// each entry and the block count; `None` when there is nothing to do.
fn adam_mini_plan(
    kernel: &str,
    p: &TensorList,
    others: &[(&TensorList, &str)],
    v: &TensorList,
) -> Result<Option<(HostTensor, u32)>, Error> {
    for &(list, what) in others {
        if list.len() != p.len() {
            return Err(Error::Shape {
                kernel: kernel.into(),
                message: format!(
                    "`{what}` holds {} tensors, `p` holds {}",
                    list.len(),
                    p.len()
                ),
            });
        }
        for e in 0..p.len() {
            if list.shape(e) != p.shape(e) {
                return Err(Error::Shape {
                    kernel: kernel.into(),
                    message: format!(
                        "`{what}` entry {e} has shape {:?}, `p` entry {e} has {:?}",
                        list.shape(e).unwrap_or(&[]),
                        p.shape(e).unwrap_or(&[])
                    ),
                });
            }
        }
    }
    let rows: Vec<usize> = (0..p.len())
        .map(|e| p.shape(e).and_then(|s| s.first().copied()).unwrap_or(0))
        .collect();
    lengths_like(kernel, &rows, v, "v")?;
    let (starts, blocks) = block_starts(&rows, MINI_ROWS_PER_BLOCK)?;
    Ok((blocks > 0).then_some((starts, blocks)))
}

/// One Adam-mini step over lists in one launch (see [`adam_mini_multi`]): entry e of `p`, `g`,
/// `m` (f32, rank 2) is `[blocks_e, len_e]` and entry e of `v` (f32, rank 1) is `[blocks_e]`.
/// An empty list does nothing.
pub fn adam_mini_multi_step(
    device: &Device,
    p: &mut TensorList,
    g: &TensorList,
    m: &mut TensorList,
    v: &mut TensorList,
    h: &Hyper,
) -> Result<(), Error> {
    const NAME: &str = "adam_mini_multi";
    let Some((starts, blocks)) = adam_mini_plan(NAME, p, &[(g, "g"), (&*m, "m")], v)? else {
        return Ok(());
    };
    let [lr, beta1, beta2, eps, decay, bc1, bc2] = adam_scalar_args(NAME, h)?;
    adam_mini_multi::<MINI_COLS, WARPS>::launch(
        device, blocks, p, g, m, v, &starts, lr, beta1, beta2, eps, decay, bc1, bc2,
    )
}

/// [`adam_mini_multi_step`] with f32 master weights `p`, bf16 gradients `g` and a bf16 model
/// copy `p_model` (entry e of `p`'s shape) written in the same launch
/// ([`adam_mini_mixed_multi`]).
#[allow(clippy::too_many_arguments)]
pub fn adam_mini_mixed_multi_step(
    device: &Device,
    p: &mut TensorList,
    g: &TensorList,
    m: &mut TensorList,
    v: &mut TensorList,
    p_model: &mut TensorList,
    h: &Hyper,
) -> Result<(), Error> {
    const NAME: &str = "adam_mini_mixed_multi";
    let Some((starts, blocks)) =
        adam_mini_plan(NAME, p, &[(g, "g"), (&*m, "m"), (&*p_model, "p_model")], v)?
    else {
        return Ok(());
    };
    let [lr, beta1, beta2, eps, decay, bc1, bc2] = adam_scalar_args(NAME, h)?;
    adam_mini_mixed_multi::<MINI_COLS, WARPS>::launch(
        device, blocks, p, g, m, v, p_model, &starts, lr, beta1, beta2, eps, decay, bc1, bc2,
    )
}

/// The scalar arguments of an Adam-style kernel in its parameters' order: `lr`, `beta1`,
/// `beta2`, `eps`, `weight_decay` and the two bias corrections (step 0 refused).
fn adam_scalar_args(kernel: &str, h: &Hyper) -> Result<[ScalarArg; 7], Error> {
    let (bc1, bc2) = h.checked_bias_corrections(kernel)?;
    Ok([h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, bc1, bc2].map(ScalarArg::from))
}

/// The scalar arguments of a Lion kernel in its parameters' order: `lr`, `beta1`, `beta2` and
/// `weight_decay`.
fn lion_scalar_args(h: &LionHyper) -> [ScalarArg; 4] {
    [h.lr, h.beta1, h.beta2, h.weight_decay].map(ScalarArg::from)
}

/// Clips the gradients of `g` (f32) in place to global L2 norm `max_norm` with three launches
/// and no host round trip; `stats` (2 f32 elements, on the device or the host) receives
/// `[‖g‖, coef]`, `coef = min(1, max_norm / (‖g‖ + 1e-6))`. An empty list has norm 0.
pub fn clip_grad_norm_multi(
    device: &Device,
    g: &mut TensorList,
    max_norm: f32,
    stats: &mut dyn TensorArg,
) -> Result<(), Error> {
    let n = lengths(g);
    let (starts, blocks) = block_starts(&n, NORM_CHUNK)?;
    // At least one partial (a zero) so the norm of an empty list is 0.
    let mut partial = Tensor::zeros(ScalarType::F32, &[blocks.max(1) as usize], device)?;
    if blocks > 0 {
        sum_squares_multi::<NORM_CHUNK>::launch(device, blocks, &*g, &starts, &mut partial)?;
    }
    norm_and_coef::<1024>::launch_auto(device, &partial, ScalarArg::from(max_norm), stats)?;
    let (starts, blocks) = block_starts(&n, CHUNK * WARPS)?;
    if blocks == 0 {
        return Ok(());
    }
    scale_by_coef_multi::<CHUNK, WARPS>::launch(device, blocks, g, &starts, &*stats)
}

/// A list of host tensors, or the error as text (self-tests report strings).
fn host_list(ts: &[HostTensor]) -> Result<TensorList, String> {
    let refs: Vec<&dyn TensorArg> = ts.iter().map(|t| t as &dyn TensorArg).collect();
    TensorList::new(&refs).map_err(|e: TableError| e.to_string())
}

/// Multi-tensor AdamW over awkward sizes against the f64 step and against the per-tensor
/// model copy rule (bf16 of the master weights).
fn selftest_adamw_mixed_multi(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let h = Hyper {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        step: 3,
    };
    let sizes = [1usize, 17, 0, 1000, 4099];
    let (f, b) = (ScalarType::F32, ScalarType::BF16);
    let p0: Vec<HostTensor> = sizes
        .iter()
        .map(|&n| rng.tensor(f, &[n], -1.0, 1.0))
        .collect();
    let g: Vec<HostTensor> = sizes
        .iter()
        .map(|&n| rng.tensor(b, &[n], -1.0, 1.0))
        .collect();
    let m0: Vec<HostTensor> = sizes
        .iter()
        .map(|&n| rng.tensor(f, &[n], -0.1, 0.1))
        .collect();
    let v0: Vec<HostTensor> = sizes
        .iter()
        .map(|&n| rng.tensor(f, &[n], 0.0, 0.01))
        .collect();
    let model0: Vec<HostTensor> = sizes
        .iter()
        .map(|&n| HostTensor::full(b, &[n], f64::NAN))
        .collect();
    let (mut p, gl) = (host_list(&p0)?, host_list(&g)?);
    let (mut m, mut v, mut model) = (host_list(&m0)?, host_list(&v0)?, host_list(&model0)?);
    adamw_mixed_multi_step(device, &mut p, &gl, &mut m, &mut v, &mut model, &h)
        .map_err(|e| e.to_string())?;
    let (b1, b2, t) = (f64::from(h.beta1), f64::from(h.beta2), h.step as i32);
    for (e, &n) in sizes.iter().enumerate() {
        let (gv, pv, mv, vv) = (
            g[e].to_vec(),
            p0[e].to_vec(),
            m0[e].to_vec(),
            v0[e].to_vec(),
        );
        let want: Vec<f64> = (0..n)
            .map(|i| {
                let mi = b1 * mv[i] + (1.0 - b1) * gv[i];
                let vi = b2 * vv[i] + (1.0 - b2) * gv[i] * gv[i];
                let upd = mi / (1.0 - b1.powi(t)) / ((vi / (1.0 - b2.powi(t))).sqrt() + 1e-8);
                pv[i] - f64::from(h.lr) * (upd + f64::from(h.weight_decay) * pv[i])
            })
            .collect();
        let got = p.host(e).ok_or("p entry not on the host")?.to_vec();
        let err = record(format!("entry {e} ({n}): p"), &got, &want, 1e-5);
        if err > 1e-5 {
            return Err(format!(
                "entry {e} ({n}): p error {err:.2e} (seed {})",
                rng.seed
            ));
        }
        let rounded = HostTensor::new(b, &[n], &got).map_err(|e| e.to_string())?;
        let got_model = model.host(e).ok_or("model entry not on the host")?.to_vec();
        if got_model
            .iter()
            .zip(rounded.to_vec())
            .any(|(x, y)| x.to_bits() != y.to_bits())
        {
            return Err(format!(
                "entry {e} ({n}): model copy is not bf16(p) (seed {})",
                rng.seed
            ));
        }
    }
    Ok("master weights of 5 tensors (sizes 1, 17, 0, 1000, 4099) against the f64 step in one launch; model copy = bf16(master)".into())
}

/// The f64 form of `h`'s AdamW hyper-parameters (the f32 values the kernels receive).
fn adam64(h: &Hyper) -> Adam64 {
    Adam64 {
        lr: f64::from(h.lr),
        beta1: f64::from(h.beta1),
        beta2: f64::from(h.beta2),
        eps: f64::from(h.eps),
        weight_decay: f64::from(h.weight_decay),
    }
}

/// Entry sizes of the multi-tensor self-tests: one element, an odd small size, an empty
/// tensor, and sizes around a block's 1024 elements.
const SELFTEST_SIZES: [usize; 5] = [1, 17, 0, 1000, 4099];

fn random_list(rng: &mut Rng, lo: f64, hi: f64) -> Vec<HostTensor> {
    SELFTEST_SIZES
        .iter()
        .map(|&n| rng.tensor(ScalarType::F32, &[n], lo, hi))
        .collect()
}

/// One `adamw_multi` step over awkward sizes against the f64 step.
fn selftest_adamw_multi(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let h = Hyper {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        step: 3,
    };
    let (p0, g) = (
        random_list(&mut rng, -1.0, 1.0),
        random_list(&mut rng, -1.0, 1.0),
    );
    let (m0, v0) = (
        random_list(&mut rng, -0.1, 0.1),
        random_list(&mut rng, 0.0, 0.01),
    );
    let (mut p, gl) = (host_list(&p0)?, host_list(&g)?);
    let (mut m, mut v) = (host_list(&m0)?, host_list(&v0)?);
    adamw_multi_step(device, &mut p, &gl, &mut m, &mut v, &h).map_err(|e| e.to_string())?;
    for e in 0..SELFTEST_SIZES.len() {
        let (mut wp, mut wm, mut wv) = (p0[e].to_vec(), m0[e].to_vec(), v0[e].to_vec());
        reference::adamw(&mut wp, &g[e].to_vec(), &mut wm, &mut wv, &adam64(&h), 3);
        let got = p.host(e).ok_or("p entry not on the host")?.to_vec();
        let err = record(format!("entry {e}: p"), &got, &wp, 1e-5);
        if err > 1e-5 {
            return Err(format!("entry {e}: p error {err:.2e} (seed {})", rng.seed));
        }
    }
    Ok("p of 5 tensors (sizes 1, 17, 0, 1000, 4099) against the f64 step in one launch".into())
}

/// One `adamw_bf16_multi` step over awkward sizes: the bf16 weights within one bf16 rounding
/// (2⁻⁹ relative; 2⁻⁸ allowed for the f32 update's error) of the f64 step, the f32 moments
/// within f32 rounding. `tests/optim_api.rs` checks the rounding exactly.
fn selftest_adamw_bf16_multi(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let h = Hyper {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        step: 3,
    };
    let b = ScalarType::BF16;
    let bf16_list = |rng: &mut Rng| -> Vec<HostTensor> {
        SELFTEST_SIZES
            .iter()
            .map(|&n| rng.tensor(b, &[n], -1.0, 1.0))
            .collect()
    };
    let (p0, g) = (bf16_list(&mut rng), bf16_list(&mut rng));
    let (m0, v0) = (
        random_list(&mut rng, -0.1, 0.1),
        random_list(&mut rng, 0.0, 0.01),
    );
    let (mut p, gl) = (host_list(&p0)?, host_list(&g)?);
    let (mut m, mut v) = (host_list(&m0)?, host_list(&v0)?);
    adamw_bf16_multi_step(device, &mut p, &gl, &mut m, &mut v, &h).map_err(|e| e.to_string())?;
    for e in 0..SELFTEST_SIZES.len() {
        let (mut wp, mut wm, mut wv) = (p0[e].to_vec(), m0[e].to_vec(), v0[e].to_vec());
        reference::adamw(&mut wp, &g[e].to_vec(), &mut wm, &mut wv, &adam64(&h), 3);
        let got = p.host(e).ok_or("p entry not on the host")?.to_vec();
        // bf16 keeps 8 significant bits: rounding moves a value by at most 2⁻⁹ of it.
        let ep = record(format!("entry {e}: p"), &got, &wp, 1.0 / 256.0);
        let em = record_bounded(
            format!("entry {e}: m (in units of its bound)"),
            &m.host(e).ok_or("m entry not on the host")?.to_vec(),
            &wm,
            &moving_average_bound(&m0[e].to_vec(), &g[e].to_vec(), h.beta1.into()),
        );
        if ep > 1.0 / 256.0 || em > 1.0 {
            return Err(format!(
                "entry {e}: p error {ep:.2e}, m {em:.2e} (seed {})",
                rng.seed
            ));
        }
    }
    Ok("bf16 p and f32 m of 5 tensors (sizes 1, 17, 0, 1000, 4099) against the f64 step in one launch".into())
}

/// One Lion multi-tensor step over awkward sizes against the f64 step: `lion_multi` (f32
/// gradients), or with `model` `lion_mixed_multi` (bf16 gradients, the bf16 model copy equal to
/// the master weights rounded to nearest even). An element whose `c` lies within f32 rounding
/// of 0 may take either sign.
fn lion_selftest(device: &Device, model: bool) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let h = LionHyper {
        lr: 1e-4,
        beta1: 0.9,
        beta2: 0.99,
        weight_decay: 0.1,
    };
    let b = ScalarType::BF16;
    let p0 = random_list(&mut rng, -1.0, 1.0);
    let g: Vec<HostTensor> = SELFTEST_SIZES
        .iter()
        .map(|&n| {
            let dtype = if model { b } else { ScalarType::F32 };
            rng.tensor(dtype, &[n], -1.0, 1.0)
        })
        .collect();
    let m0 = random_list(&mut rng, -0.1, 0.1);
    let model0: Vec<HostTensor> = SELFTEST_SIZES
        .iter()
        .map(|&n| HostTensor::full(b, &[n], f64::NAN))
        .collect();
    let (mut p, gl, mut m) = (host_list(&p0)?, host_list(&g)?, host_list(&m0)?);
    let mut copy = host_list(&model0)?;
    let launched = if model {
        lion_mixed_multi_step(device, &mut p, &gl, &mut m, &mut copy, &h)
    } else {
        lion_multi_step(device, &mut p, &gl, &mut m, &h)
    };
    launched.map_err(|e| e.to_string())?;
    let (lr, b1, b2, wd) = h.as_f64();
    for (e, &n) in SELFTEST_SIZES.iter().enumerate() {
        let (mut wp, mut wm) = (p0[e].to_vec(), m0[e].to_vec());
        let cs = reference::lion(&mut wp, &g[e].to_vec(), &mut wm, lr, b1, b2, wd);
        let got = p.host(e).ok_or("p entry not on the host")?.to_vec();
        // Where |c| is within the f32 rounding of its two products and sum, the sign may
        // differ: take the reference's p with the kernel's sign there.
        let want: Vec<f64> = (0..wp.len())
            .map(|i| {
                if cs[i].abs() <= LionHyper::SIGN_SLACK {
                    got[i]
                } else {
                    wp[i]
                }
            })
            .collect();
        let ep = record(format!("entry {e}: p"), &got, &want, 1e-6);
        let em = record_bounded(
            format!("entry {e}: m (in units of its bound)"),
            &m.host(e).ok_or("m entry not on the host")?.to_vec(),
            &wm,
            &moving_average_bound(&m0[e].to_vec(), &g[e].to_vec(), b2),
        );
        if ep > 1e-6 || em > 1.0 {
            return Err(format!(
                "entry {e}: p error {ep:.2e}, m {em:.2e} (seed {})",
                rng.seed
            ));
        }
        if model {
            let rounded = HostTensor::new(b, &[n], &got).map_err(|e| e.to_string())?;
            let got_model = copy.host(e).ok_or("model entry not on the host")?.to_vec();
            if got_model
                .iter()
                .zip(rounded.to_vec())
                .any(|(x, y)| x.to_bits() != y.to_bits())
            {
                return Err(format!(
                    "entry {e} ({n}): model copy is not bf16(p) (seed {})",
                    rng.seed
                ));
            }
        }
    }
    let what = if model {
        "f32 p and m from bf16 g"
    } else {
        "p and m"
    };
    let copy_note = if model { "; model copy = bf16(p)" } else { "" };
    Ok(format!(
        "{what} of 5 tensors (sizes 1, 17, 0, 1000, 4099) against the f64 step in one launch{copy_note}"
    ))
}

fn selftest_lion_multi(device: &Device) -> Result<String, String> {
    lion_selftest(device, false)
}

fn selftest_lion_mixed_multi(device: &Device) -> Result<String, String> {
    lion_selftest(device, true)
}

/// One Adam-mini multi-tensor step over tensors of several partitions against the f64 step:
/// `adam_mini_multi` (f32 gradients), or with `model` `adam_mini_mixed_multi` (bf16 gradients,
/// the bf16 model copy equal to the master weights rounded to nearest even).
fn adam_mini_selftest(device: &Device, model: bool) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let h = Hyper {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        step: 4,
    };
    // [blocks, block length]: one block of a bias, per-neuron rows, per-head rows, no rows.
    let shapes = [[1usize, 17], [70, 130], [4, 96], [0, 8], [33, 1]];
    let (f, b) = (ScalarType::F32, ScalarType::BF16);
    let make = |rng: &mut Rng, dtype, lo, hi| -> Vec<HostTensor> {
        shapes
            .iter()
            .map(|s| rng.tensor(dtype, s, lo, hi))
            .collect()
    };
    let (p0, g, m0) = (
        make(&mut rng, f, -1.0, 1.0),
        make(&mut rng, if model { b } else { f }, -1.0, 1.0),
        make(&mut rng, f, -0.1, 0.1),
    );
    let v0: Vec<HostTensor> = shapes
        .iter()
        .map(|s| rng.tensor(f, &[s[0]], 0.0, 0.01))
        .collect();
    let copies: Vec<HostTensor> = shapes
        .iter()
        .map(|s| HostTensor::full(b, s, f64::NAN))
        .collect();
    let (mut p, gl) = (host_list(&p0)?, host_list(&g)?);
    let (mut m, mut v, mut copy) = (host_list(&m0)?, host_list(&v0)?, host_list(&copies)?);
    if model {
        adam_mini_mixed_multi_step(device, &mut p, &gl, &mut m, &mut v, &mut copy, &h)
    } else {
        adam_mini_multi_step(device, &mut p, &gl, &mut m, &mut v, &h)
    }
    .map_err(|e| e.to_string())?;
    for (e, shape) in shapes.iter().enumerate() {
        let (mut wp, mut wm, mut wv) = (p0[e].to_vec(), m0[e].to_vec(), v0[e].to_vec());
        reference::adam_mini(&mut wp, &g[e].to_vec(), &mut wm, &mut wv, &adam64(&h), 4);
        let host = |l: &TensorList| {
            l.host(e)
                .map(HostTensor::to_vec)
                .ok_or("entry not on the host")
        };
        let got = host(&p)?;
        let ep = record(format!("{shape:?}: p"), &got, &wp, 1e-5);
        let ev = record(format!("{shape:?}: v"), &host(&v)?, &wv, 1e-5);
        if ep > 1e-5 || ev > 1e-5 {
            return Err(format!(
                "{shape:?}: p error {ep:.2e}, v {ev:.2e} (seed {})",
                rng.seed
            ));
        }
        let rounded = HostTensor::new(b, shape, &got).map_err(|e| e.to_string())?;
        if model
            && host(&copy)?
                .iter()
                .zip(rounded.to_vec())
                .any(|(x, y)| x.to_bits() != y.to_bits())
        {
            return Err(format!(
                "{shape:?}: model copy is not bf16(p) (seed {})",
                rng.seed
            ));
        }
    }
    Ok(format!(
        "p and per-block v of 5 tensors (1×17, 70×130, 4×96, 0×8, 33×1) against the f64 step{}",
        if model {
            "; model copy = bf16(master)"
        } else {
            ""
        }
    ))
}

fn selftest_adam_mini_multi(device: &Device) -> Result<String, String> {
    adam_mini_selftest(device, false)
}

fn selftest_adam_mini_mixed_multi(device: &Device) -> Result<String, String> {
    adam_mini_selftest(device, true)
}
