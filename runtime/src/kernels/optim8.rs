//! 8-bit AdamW: the two moments stored as one byte per parameter, quantized blockwise with a
//! dynamic map, as bitsandbytes 0.45 implements it (`optimizer_update_8bit_blockwise`, kernel
//! `kOptimizerStatic8bit2StateBlockwise`; Dettmers et al., "8-bit Optimizers via Block-wise
//! Quantization", ICLR 2022).
//!
//! State, for `n` parameters in blocks of [`BLOCK`] = 256 consecutive elements:
//! - `m`: one code per parameter into the *signed* dynamic map ([`dynamic_map`]`(true)`), and one
//!   f32 absmax per block; `m[i] = map₁[code₁[i]] · absmax₁[i / 256]`.
//! - `v`: likewise with the *unsigned* map ([`dynamic_map`]`(false)`).
//!
//! so the state costs 2 bytes per parameter plus 8 bytes per block (2.03 bytes per parameter,
//! against 8 for f32 moments). One step, per element, with `g` the gradient and `t ≥ 1`:
//!
//! ```text
//! m ← β1·deq(m) + (1 − β1)·g        v ← β2·deq(v) + (1 − β2)·g²          (f32)
//! p ← p − lr·√(1 − β2^t)/(1 − β1^t) · m / (√v + √(1 − β2^t)·ε)
//! p ← p·(1 − lr·λ)                                      (decay after the update, as bitsandbytes)
//! absmax₁ = max |m| over the block, absmax₂ = max v over the block
//! code₁ = nearest(map₁, m / absmax₁), code₂ = nearest(map₂, v / absmax₂)
//! ```
//!
//! The bias-corrected form is the one bitsandbytes computes; it equals torch's
//! `lr·m̂/(√v̂ + ε)`. Unlike `torch.optim.AdamW` (decay, then update) bitsandbytes multiplies the
//! *updated* weight by `1 − lr·λ`; this kernel does the same.
//!
//! `nearest` is a binary search over the sorted map (8 halvings find the last code ≤ x, then the
//! nearer of it and the next code; an exact tie takes the lower code) — bitsandbytes searches
//! the same sorted map with a pivot walk and a midpoint compare, which agrees but for exact ties.
//! A first moment that is negative and whose nearest code is the map's 0 takes the code below it
//! (the smallest negative value), so `m` keeps its sign after quantization, as bitsandbytes
//! does. A block whose absmax is 0 (all moments zero) quantizes to the zero code.
//!
//! Not here: bitsandbytes' `gnorm_scale`, `skip_zeros` and its rule that a non-finite gradient
//! leaves that weight unchanged (a NaN gradient here makes the weight NaN); the maps are built
//! in f64 and rounded to f32 once, where bitsandbytes builds the boundaries in f32 (entries may
//! differ in the last bit); codes are read through the L1 cache rather than staged in shared
//! memory.

use crate::dsl::*;
use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;
use crate::kernels::check::{large, record, record_bounded, Rng};
use crate::kernels::optim::{widen_to_f32, Hyper};
use crate::kernels::optim_multi::{block_starts, entry_and_unit, lengths, lengths_like};
use crate::tensor_list::TensorList;
use crate::{Device, ScalarArg, Tensor, TensorArg};

/// Elements per quantization block (one absmax each), as bitsandbytes' blockwise two-state
/// optimizers use.
pub const BLOCK: usize = 256;
/// Warps per thread block of [`adam8bit_step`]; each warp updates one quantization block.
pub const WARPS: usize = 4;
/// Entries of a dynamic map (one per 8-bit code).
pub const CODES: usize = 256;

/// The dynamic quantization map (Dettmers, "8-Bit Approximations for Parallelism in Deep
/// Learning", 2016; the "dynamic tree" variant of the 8-bit optimizers paper), sorted
/// ascending, with 7 exponent bits, as bitsandbytes' `create_dynamic_map(signed)`:
///
/// a code is a sign (signed map only), then an exponent written as a run of zero bits, a `1`
/// indicator bit, and the remaining bits as a linear fraction. For exponent `e = 0 … 6` the
/// value is `10^(e − 6)` times one of the midpoints of `k` equal sub-intervals of `[0.1, 1]`,
/// where `k = 2^e` in the signed map (each with both signs) and `k = 2^(e+1)` in the unsigned
/// one. With `0` and `1` added that is 2·127 + 2 = 256 signed values (from −0.993 to 1; there
/// is no −1) and 254 + 2 = 256 unsigned ones. Values are computed in f64 and rounded to f32.
pub fn dynamic_map(signed: bool) -> [f32; CODES] {
    let mut values: Vec<f64> = vec![0.0, 1.0];
    for e in 0..7i32 {
        let k = if signed {
            1usize << e
        } else {
            1usize << (e + 1)
        };
        let scale = 10f64.powi(e - 6);
        let width = 0.9 / k as f64;
        for j in 0..k {
            let mid = 0.1 + width * (j as f64 + 0.5);
            values.push(scale * mid);
            if signed {
                values.push(-scale * mid);
            }
        }
    }
    values.sort_by(f64::total_cmp);
    let mut map = [0f32; CODES];
    for (slot, v) in map.iter_mut().zip(&values) {
        *slot = *v as f32;
    }
    map
}

/// The code of 0 in the signed map (127 negative values lie below it).
pub const SIGNED_ZERO_CODE: i32 = 127;
/// The code of 0 in the unsigned map.
pub const UNSIGNED_ZERO_CODE: i32 = 0;

/// The last code whose value is ≤ `x` (0 when `x` is below every code, or NaN), then the nearer
/// of it and the next one; ties take the lower. 8 halvings of the 256 sorted codes, each a
/// gather from the map (1 KiB, cached after the first warp reads it).
#[track_caller]
fn nearest_code<const N: usize>(map: Gl<f32, 1>, x: Rv<f32, N>) -> Rv<i32, N> {
    let mut lo: Rv<i32, N> = zeros();
    for half in [128i32, 64, 32, 16, 8, 4, 2, 1] {
        let probe = lo + half;
        let at = gather(map, probe);
        lo = select(at.le(x), probe, lo);
    }
    let hi = (lo + 1i32).min(CODES as i32 - 1);
    let below = gather(map, lo);
    let above = gather(map, hi);
    select((above - x).lt(x - below), hi, lo)
}

/// A block's moments from its codes and absmax.
#[track_caller]
fn dequantize<const N: usize>(
    map: Gl<f32, 1>,
    codes: GlMut<i8, 1>,
    absmax: GlMut<f32, 1>,
    block: Scalar<i32>,
) -> Rv<f32, N> {
    let c: Rv<i8, N> = load(codes.chunk(block));
    // Codes are bytes 0…255 held as i8: the low 8 bits of the sign-extended value.
    let index = c.cast::<i32>() & 255i32;
    let scale: Scalar<f32> = load(absmax.at(block));
    gather(map, index) * scale
}

/// Codes 0…255 as the i8 of the same bits.
#[track_caller]
fn as_byte<const N: usize>(code: Rv<i32, N>) -> Rv<i8, N> {
    select(code.ge(128i32), code - 256i32, code).cast::<i8>()
}

/// The per-step scalars of an 8-bit AdamW kernel (its parameters of those names, from
/// [`Scalars::of`] and the hyper-parameters), carried together into [`adam8bit_block`].
#[derive(Clone, Copy, Debug)]
pub struct Adam8bitScalars {
    pub beta1: Scalar<f32>,
    pub beta2: Scalar<f32>,
    pub step_size: Scalar<f32>,
    pub eps_hat: Scalar<f32>,
    pub decay: Scalar<f32>,
}

/// Quantization block `block` of `N` = [`BLOCK`] elements of one tensor: dequantizes its
/// moments, steps them with the gradient (f32, or a narrower float widened to f32), stores the
/// weights (and, given a `model` view, the weights rounded to bf16 there), the new absmax and
/// codes. Elements past the tensor's end count as zeros in the absmax and are not written.
/// Every 8-bit AdamW kernel of the library, one tensor or a list, steps a block through it, so
/// they agree bit for bit.
#[crate::func]
#[allow(clippy::too_many_arguments)]
pub fn adam8bit_block<G: RegDtype, const N: usize>(
    p: GlMut<f32, 1>,
    g: Gl<G, 1>,
    m_codes: GlMut<i8, 1>,
    v_codes: GlMut<i8, 1>,
    m_absmax: GlMut<f32, 1>,
    v_absmax: GlMut<f32, 1>,
    m_map: Gl<f32, 1>,
    v_map: Gl<f32, 1>,
    model: Option<GlMut<bf16, 1>>,
    block: Scalar<i32>,
    s: Adam8bitScalars,
) {
    let one = lit::<f32>(1.0);
    let pos: Rv<i32, N> = iota_rows();
    // `block·N < L` for every block that holds elements, so the sum does not wrap there.
    let live = (pos + block * N as i32).lt(p.len());

    let gv = widen_to_f32::<G, N>(load(g.chunk(block)));
    let m_old = dequantize(m_map, m_codes, m_absmax, block);
    let v_old = dequantize(v_map, v_codes, v_absmax, block);
    let m_new = select(live, m_old * s.beta1 + gv * (one - s.beta1), 0.0);
    let v_new = select(live, v_old * s.beta2 + gv * gv * (one - s.beta2), 0.0);

    let pv: Rv<f32, N> = load(p.chunk(block));
    let p_new = (pv + m_new / (v_new.sqrt() + s.eps_hat) * s.step_size) * s.decay;
    store(p.chunk(block), p_new);
    // Stored at once, so the weights are not live through the quantization below.
    if let Some(model) = model {
        store(model.chunk(block), p_new.cast::<bf16>());
    }

    let m_max = reduce_all(Red::Max, m_new.abs());
    let v_max = reduce_all(Red::Max, v_new.abs());
    store(m_absmax.at(block), m_max);
    store(v_absmax.at(block), v_max);
    // A zero absmax means an all-zero block: dividing by 1 keeps its zeros.
    let m_div = select(m_max.gt(0.0), m_max, one);
    let v_div = select(v_max.gt(0.0), v_max, one);
    let m_code = nearest_code(m_map, m_new / m_div);
    let v_code = nearest_code(v_map, v_new / v_div);
    // A negative first moment never rounds to +0 (bitsandbytes keeps its sign).
    let below_zero = select(m_code.eq(SIGNED_ZERO_CODE), m_code - 1i32, m_code);
    let m_code = select(m_new.lt(0.0), below_zero, m_code);
    store(m_codes.chunk(block), as_byte(m_code));
    store(v_codes.chunk(block), as_byte(v_code));
}

/// One 8-bit AdamW step (see the module documentation). Warp `w` of block `b` owns
/// quantization block `b·WARPS + w` of `N` = [`BLOCK`] elements ([`adam8bit_block`]).
/// Scalars from the host: `step_size = −lr·√(1 − β2^t)/(1 − β1^t)`, `eps_hat = √(1 − β2^t)·ε`,
/// `decay = 1 − lr·λ`. Grid: `[⌈n / (WARPS·N)⌉, 1, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<256, 4>),
    selftest = selftest,
    shapes(p: [L], g: [L], m_codes: [L], v_codes: [L], m_absmax: [B], v_absmax: [B],
           m_map: [256], v_map: [256], B == ceil_div(L, N)),
    grid = [ceil_div(L, WARPS * N), 1, 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn adam8bit_step<const N: usize, const WARPS: usize>(
    p: GlMut<f32, 1>,
    g: Gl<f32, 1>,
    m_codes: GlMut<i8, 1>,
    v_codes: GlMut<i8, 1>,
    m_absmax: GlMut<f32, 1>,
    v_absmax: GlMut<f32, 1>,
    m_map: Gl<f32, 1>,
    v_map: Gl<f32, 1>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    step_size: Scalar<f32>,
    eps_hat: Scalar<f32>,
    decay: Scalar<f32>,
) {
    let block = block_idx_x() * WARPS as i32 + warp_idx();
    // The last thread block's spare warps own no quantization block (no absmax to read).
    if block.lt(m_absmax.len()) {
        let s = Adam8bitScalars {
            beta1,
            beta2,
            step_size,
            eps_hat,
            decay,
        };
        adam8bit_block::<f32, N>(
            p, g, m_codes, v_codes, m_absmax, v_absmax, m_map, v_map, None, block, s,
        );
    }
}

/// [`adam8bit_step`] over lists of tensors in one launch: entry e of `p`, `g`, `m_codes`,
/// `v_codes` is one parameter tensor of `n_e` elements and entry e of `m_absmax`, `v_absmax`
/// its `⌈n_e / N⌉` block scales, so a quantization block never straddles two tensors. Warp `w`
/// of thread block `b` owns quantization block `(b − starts[e])·WARPS + w` of the entry `e`
/// that owns `b`. Grid: `[starts[E], 1, 1]` with `starts` from
/// [`block_starts`] over the lengths with `WARPS·N` elements
/// per block.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<256, 4>),
    selftest = selftest_multi,
    shapes(p: [E, 2], g: [E, 2], m_codes: [E, 2], v_codes: [E, 2], m_absmax: [E, 2],
           v_absmax: [E, 2], m_map: [256], v_map: [256], starts: [S], S == E + 1)
)]
#[allow(clippy::too_many_arguments)]
pub fn adam8bit_multi<const N: usize, const WARPS: usize>(
    p: GlTableMut<f32, 1>,
    g: GlTable<f32, 1>,
    m_codes: GlTableMut<i8, 1>,
    v_codes: GlTableMut<i8, 1>,
    m_absmax: GlTableMut<f32, 1>,
    v_absmax: GlTableMut<f32, 1>,
    m_map: Gl<f32, 1>,
    v_map: Gl<f32, 1>,
    starts: Gl<i32, 1>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    step_size: Scalar<f32>,
    eps_hat: Scalar<f32>,
    decay: Scalar<f32>,
) {
    let (e, block) = entry_and_unit::<WARPS>(starts, p.len());
    let ma = m_absmax.view(e);
    // The entry's last thread block may have warps past its last quantization block.
    if block.lt(ma.len()) {
        let s = Adam8bitScalars {
            beta1,
            beta2,
            step_size,
            eps_hat,
            decay,
        };
        adam8bit_block::<f32, N>(
            p.view(e),
            g.view(e),
            m_codes.view(e),
            v_codes.view(e),
            ma,
            v_absmax.view(e),
            m_map,
            v_map,
            None,
            block,
            s,
        );
    }
}

/// [`adam8bit_multi`] with f32 master weights `p`, bf16 gradients and a bf16 model copy
/// `p_model` (entry e of the length of `p`'s) written in the same pass: `p_model = bf16(p)`
/// after the step, rounded to nearest even. The master weights and state step exactly as
/// [`adam8bit_multi`]'s do from the widened gradients. Grid as [`adam8bit_multi`].
#[crate::kernel(
    warps = WARPS as u32,
    variants(<256, 4>),
    selftest = selftest_mixed_multi,
    shapes(p: [E, 2], g: [E, 2], m_codes: [E, 2], v_codes: [E, 2], m_absmax: [E, 2],
           v_absmax: [E, 2], p_model: [E, 2], m_map: [256], v_map: [256], starts: [S],
           S == E + 1)
)]
#[allow(clippy::too_many_arguments)]
pub fn adam8bit_mixed_multi<const N: usize, const WARPS: usize>(
    p: GlTableMut<f32, 1>,
    g: GlTable<bf16, 1>,
    m_codes: GlTableMut<i8, 1>,
    v_codes: GlTableMut<i8, 1>,
    m_absmax: GlTableMut<f32, 1>,
    v_absmax: GlTableMut<f32, 1>,
    p_model: GlTableMut<bf16, 1>,
    m_map: Gl<f32, 1>,
    v_map: Gl<f32, 1>,
    starts: Gl<i32, 1>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    step_size: Scalar<f32>,
    eps_hat: Scalar<f32>,
    decay: Scalar<f32>,
) {
    let (e, block) = entry_and_unit::<WARPS>(starts, p.len());
    let ma = m_absmax.view(e);
    // Warps past the entry's last quantization block skip (as in `adam8bit_multi`).
    if block.lt(ma.len()) {
        let s = Adam8bitScalars {
            beta1,
            beta2,
            step_size,
            eps_hat,
            decay,
        };
        adam8bit_block::<bf16, N>(
            p.view(e),
            g.view(e),
            m_codes.view(e),
            v_codes.view(e),
            ma,
            v_absmax.view(e),
            m_map,
            v_map,
            Some(p_model.view(e)),
            block,
            s,
        );
    }
}

/// The 8-bit AdamW state of one flat f32 parameter tensor of `n` elements: one byte per
/// element for each moment (codes into the two dynamic maps, held as i8 tensors of the same
/// bits) and one f32 absmax per [`BLOCK`] elements for each.
#[derive(Clone, Debug)]
pub struct Adam8bit {
    /// Codes of the first moment into [`Adam8bit::m_map`] (i8, `[n]`).
    pub m_codes: HostTensor,
    /// Codes of the second moment into [`Adam8bit::v_map`] (i8, `[n]`).
    pub v_codes: HostTensor,
    /// Per-block scale of the first moment (f32, `[⌈n/256⌉]`).
    pub m_absmax: HostTensor,
    /// Per-block scale of the second moment (f32, `[⌈n/256⌉]`).
    pub v_absmax: HostTensor,
    /// The signed dynamic map (f32, `[256]`).
    pub m_map: HostTensor,
    /// The unsigned dynamic map (f32, `[256]`).
    pub v_map: HostTensor,
}

impl Adam8bit {
    /// Zero moments for `n` parameters (every code the map's zero, absmax 0).
    pub fn new(n: usize) -> Adam8bit {
        let blocks = n.div_ceil(BLOCK);
        let map = |signed| {
            let values: Vec<f64> = dynamic_map(signed).iter().map(|&x| f64::from(x)).collect();
            HostTensor::new(ScalarType::F32, &[CODES], &values)
                .unwrap_or_else(|_| HostTensor::zeros(ScalarType::F32, &[CODES]))
        };
        Adam8bit {
            m_codes: HostTensor::full(ScalarType::I8, &[n], f64::from(SIGNED_ZERO_CODE)),
            v_codes: HostTensor::full(ScalarType::I8, &[n], f64::from(UNSIGNED_ZERO_CODE)),
            m_absmax: HostTensor::zeros(ScalarType::F32, &[blocks]),
            v_absmax: HostTensor::zeros(ScalarType::F32, &[blocks]),
            m_map: map(true),
            v_map: map(false),
        }
    }

    /// Parameters this state is for.
    pub fn len(&self) -> usize {
        self.m_codes.len()
    }

    /// Whether it is for zero parameters.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of per-parameter state: codes and absmax of both moments (the two 1 KiB maps are
    /// shared by every tensor and not counted).
    pub fn state_bytes(&self) -> usize {
        2 * self.len() + 2 * 4 * self.m_absmax.len()
    }

    /// The first moment's codes as bytes.
    pub fn m_bytes(&self) -> Vec<u8> {
        codes_as_bytes(&self.m_codes)
    }

    /// The second moment's codes as bytes.
    pub fn v_bytes(&self) -> Vec<u8> {
        codes_as_bytes(&self.v_codes)
    }

    /// One step on `device`: updates `p` (f32, `[n]`: a host tensor or a tensor on `device`)
    /// from `g` (f32, `[n]`) and the state (host memory) in place. `h.step` counts from 1.
    pub fn step(
        &mut self,
        device: &Device,
        p: &mut dyn TensorArg,
        g: &dyn TensorArg,
        h: &Hyper,
    ) -> Result<(), crate::Error> {
        same_length(p, self.len())?;
        launch(
            device,
            p,
            g,
            [
                &mut self.m_codes,
                &mut self.v_codes,
                &mut self.m_absmax,
                &mut self.v_absmax,
            ],
            [&self.m_map, &self.v_map],
            h,
        )
    }
}

/// Refuses parameters whose element count is not the state's.
fn same_length(p: &dyn TensorArg, len: usize) -> Result<(), crate::Error> {
    let n: usize = p.shape().iter().product();
    if n == len {
        return Ok(());
    }
    Err(crate::Error::Shape {
        kernel: "adam8bit_step".into(),
        message: format!("the parameters have {n} elements, the 8-bit state was made for {len}"),
    })
}

/// One [`adam8bit_step`] launch over a state's four tensors (codes of m and v, absmax of m and
/// v) and the two maps.
fn launch(
    device: &Device,
    p: &mut dyn TensorArg,
    g: &dyn TensorArg,
    [m_codes, v_codes, m_absmax, v_absmax]: [&mut dyn TensorArg; 4],
    [m_map, v_map]: [&dyn TensorArg; 2],
    h: &Hyper,
) -> Result<(), crate::Error> {
    let [beta1, beta2, step_size, eps_hat, decay] = scalar_args("adam8bit_step", h)?;
    adam8bit_step::<BLOCK, WARPS>::launch_auto(
        device, p, g, m_codes, v_codes, m_absmax, v_absmax, m_map, v_map, beta1, beta2, step_size,
        eps_hat, decay,
    )
}

/// The per-step scalar arguments of the 8-bit kernels (β1, β2 and [`Scalars::of`] `h`); step 0
/// is refused (its bias correction `1 − β1⁰` is 0, the step size infinite).
fn scalar_args(kernel: &str, h: &Hyper) -> Result<[ScalarArg; 5], crate::Error> {
    h.checked_bias_corrections(kernel)?;
    let k = Scalars::of(h);
    Ok([h.beta1, h.beta2, k.step_size, k.eps_hat, k.decay].map(ScalarArg::from))
}

/// The 8-bit state of a list of tensors, entry by entry: codes of m and v (i8, each its
/// tensor's length) and absmax of m and v (f32, `⌈n / 256⌉` each), in that order.
pub type StateLists<'a> = [&'a mut TensorList; 4];

/// The block plan of a multi-tensor 8-bit step: refuses state lists (and `others`) whose
/// entries do not match `p`'s lengths, then gives the first thread block of each entry and the
/// block count; `None` when there is nothing to do.
fn multi_plan(
    kernel: &str,
    p: &TensorList,
    state: &StateLists<'_>,
    others: &[(&TensorList, &str)],
) -> Result<Option<(HostTensor, u32)>, crate::Error> {
    let n = lengths(p);
    let blocks: Vec<usize> = n.iter().map(|n| n.div_ceil(BLOCK)).collect();
    let [m_codes, v_codes, m_absmax, v_absmax] = state;
    for (list, what, want) in [
        (&**m_codes, "m_codes", &n),
        (&**v_codes, "v_codes", &n),
        (&**m_absmax, "m_absmax (one per 256 elements)", &blocks),
        (&**v_absmax, "v_absmax (one per 256 elements)", &blocks),
    ] {
        lengths_like(kernel, want, list, what)?;
    }
    for &(list, what) in others {
        lengths_like(kernel, &n, list, what)?;
    }
    let (starts, grid) = block_starts(&n, BLOCK * WARPS)?;
    Ok((grid > 0).then_some((starts, grid)))
}

/// One 8-bit AdamW step over a list of tensors in one launch ([`adam8bit_multi`]): updates the
/// f32 weights `p` and the `state` in place from the f32 gradients `g`, reading the maps
/// (signed, unsigned; [`device_maps`]). Each tensor's result equals a [`DeviceState::step`] of
/// it, bit for bit. An empty list does nothing; `h.step` counts from 1.
pub fn adam8bit_multi_step(
    device: &Device,
    p: &mut TensorList,
    g: &TensorList,
    state: StateLists<'_>,
    [m_map, v_map]: [&dyn TensorArg; 2],
    h: &Hyper,
) -> Result<(), crate::Error> {
    const NAME: &str = "adam8bit_multi";
    let Some((starts, grid)) = multi_plan(NAME, p, &state, &[(g, "g")])? else {
        return Ok(());
    };
    let [beta1, beta2, step_size, eps_hat, decay] = scalar_args(NAME, h)?;
    let [m_codes, v_codes, m_absmax, v_absmax] = state;
    adam8bit_multi::<BLOCK, WARPS>::launch(
        device, grid, p, g, m_codes, v_codes, m_absmax, v_absmax, m_map, v_map, &starts, beta1,
        beta2, step_size, eps_hat, decay,
    )
}

/// [`adam8bit_multi_step`] with f32 master weights `p`, bf16 gradients `g` and a bf16 model
/// copy `p_model` written in the same launch ([`adam8bit_mixed_multi`]).
#[allow(clippy::too_many_arguments)]
pub fn adam8bit_mixed_multi_step(
    device: &Device,
    p: &mut TensorList,
    g: &TensorList,
    state: StateLists<'_>,
    p_model: &mut TensorList,
    [m_map, v_map]: [&dyn TensorArg; 2],
    h: &Hyper,
) -> Result<(), crate::Error> {
    const NAME: &str = "adam8bit_mixed_multi";
    let Some((starts, grid)) = multi_plan(NAME, p, &state, &[(g, "g"), (&*p_model, "p_model")])?
    else {
        return Ok(());
    };
    let [beta1, beta2, step_size, eps_hat, decay] = scalar_args(NAME, h)?;
    let [m_codes, v_codes, m_absmax, v_absmax] = state;
    adam8bit_mixed_multi::<BLOCK, WARPS>::launch(
        device, grid, p, g, m_codes, v_codes, m_absmax, v_absmax, p_model, m_map, v_map, &starts,
        beta1, beta2, step_size, eps_hat, decay,
    )
}

/// The two dynamic maps as f32 tensors on `device`: the signed one (for m) and the unsigned one
/// (for v). Every [`DeviceState`] on a device reads the same pair.
pub fn device_maps(device: &Device) -> Result<(Tensor, Tensor), crate::Error> {
    let map = |signed| {
        let values: Vec<f64> = dynamic_map(signed).iter().map(|&x| f64::from(x)).collect();
        Tensor::from_f64(ScalarType::F32, &[CODES], &values, device)
    };
    Ok((map(true)?, map(false)?))
}

/// The 8-bit state of one flat parameter tensor held on the device (what an optimizer keeps
/// between steps: nothing crosses to the host). [`Adam8bit`] is the same state in host memory,
/// which [`DeviceState::to_host`] reads back.
#[derive(Debug)]
pub struct DeviceState {
    /// Codes of the first moment into the signed map (i8, `[n]`).
    pub m_codes: Tensor,
    /// Codes of the second moment into the unsigned map (i8, `[n]`).
    pub v_codes: Tensor,
    /// Per-block scale of the first moment (f32, `[⌈n/256⌉]`).
    pub m_absmax: Tensor,
    /// Per-block scale of the second moment (f32, `[⌈n/256⌉]`).
    pub v_absmax: Tensor,
}

impl DeviceState {
    /// Zero moments for `n` parameters on `device` (every code the map's zero, absmax 0).
    pub fn new(n: usize, device: &Device) -> Result<DeviceState, crate::Error> {
        let blocks = n.div_ceil(BLOCK);
        Ok(DeviceState {
            m_codes: Tensor::full(ScalarType::I8, &[n], f64::from(SIGNED_ZERO_CODE), device)?,
            v_codes: Tensor::full(ScalarType::I8, &[n], f64::from(UNSIGNED_ZERO_CODE), device)?,
            m_absmax: Tensor::zeros(ScalarType::F32, &[blocks], device)?,
            v_absmax: Tensor::zeros(ScalarType::F32, &[blocks], device)?,
        })
    }

    /// Parameters this state is for.
    pub fn len(&self) -> usize {
        self.m_codes.len()
    }

    /// Whether it is for zero parameters.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of device memory the state holds (the shared maps not counted).
    pub fn state_bytes(&self) -> usize {
        2 * self.len() + 2 * 4 * self.m_absmax.len()
    }

    /// A copy of the state in host memory, with the maps.
    pub fn to_host(&self) -> Result<Adam8bit, crate::Error> {
        let mut host = Adam8bit::new(0);
        host.m_codes = self.m_codes.to_host()?;
        host.v_codes = self.v_codes.to_host()?;
        host.m_absmax = self.m_absmax.to_host()?;
        host.v_absmax = self.v_absmax.to_host()?;
        Ok(host)
    }

    /// One step on `device`: updates `p` (f32, `[n]`, on `device`) from `g` (f32, `[n]`) and the
    /// state in place, reading the maps of [`device_maps`]. `h.step` counts from 1.
    pub fn step(
        &mut self,
        device: &Device,
        p: &mut dyn TensorArg,
        g: &dyn TensorArg,
        maps: &(Tensor, Tensor),
        h: &Hyper,
    ) -> Result<(), crate::Error> {
        same_length(p, self.len())?;
        launch(
            device,
            p,
            g,
            [
                &mut self.m_codes,
                &mut self.v_codes,
                &mut self.m_absmax,
                &mut self.v_absmax,
            ],
            [&maps.0, &maps.1],
            h,
        )
    }
}

fn codes_as_bytes(t: &HostTensor) -> Vec<u8> {
    t.to_vec().iter().map(|&x| x as i8 as u8).collect()
}

/// The per-step scalars of [`adam8bit_step`], from the hyperparameters (in f64, rounded once).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scalars {
    /// `−lr·√(1 − β2^t)/(1 − β1^t)`.
    pub step_size: f32,
    /// `√(1 − β2^t)·ε`.
    pub eps_hat: f32,
    /// `1 − lr·λ`.
    pub decay: f32,
}

impl Scalars {
    pub fn of(h: &Hyper) -> Scalars {
        let t = i32::try_from(h.step).unwrap_or(i32::MAX);
        let c1 = 1.0 - f64::from(h.beta1).powi(t);
        let c2 = (1.0 - f64::from(h.beta2).powi(t)).sqrt();
        Scalars {
            step_size: (-f64::from(h.lr) * c2 / c1) as f32,
            eps_hat: (c2 * f64::from(h.eps)) as f32,
            decay: (1.0 - f64::from(h.lr) * f64::from(h.weight_decay)) as f32,
        }
    }
}

/// The f64 reference of one step, written from the definition in the module documentation with
/// an exhaustive nearest-code search (not the kernel's binary search): from the state and
/// weights a step starts from, the new weights, codes and absmax.
pub mod reference {
    use super::{Scalars, CODES, SIGNED_ZERO_CODE};
    use crate::kernels::optim::Hyper;

    /// The outcome of one step in f64, and for each element how close its normalized moment
    /// came to a decision boundary between two codes (where f32 rounding may pick the
    /// neighbour).
    #[derive(Clone, Debug)]
    pub struct Step {
        pub p: Vec<f64>,
        pub m_codes: Vec<u8>,
        pub v_codes: Vec<u8>,
        pub m_absmax: Vec<f64>,
        pub v_absmax: Vec<f64>,
        /// `|x − midpoint|` of the nearest boundary, per element, for `m` and `v`.
        pub m_margin: Vec<f64>,
        pub v_margin: Vec<f64>,
        /// Per block, the largest `β₁·|m_old| + (1 − β₁)·|g|`: the magnitude against which the
        /// f32 sum of the new first moment rounds. Where the two terms cancel, `m` (and so the
        /// absmax of a block of few elements) is small beside it and its relative error large.
        pub m_scale: Vec<f64>,
    }

    /// The nearest code to `x` by scanning every code (ties to the lower), and the distance of
    /// `x` to the nearest midpoint between adjacent codes.
    pub fn nearest(map: &[f64], x: f64) -> (usize, f64) {
        let mut best = 0;
        for (i, &c) in map.iter().enumerate() {
            if (x - c).abs() < (x - map[best]).abs() {
                best = i;
            }
        }
        let margin = (0..CODES - 1)
            .map(|i| (x - (map[i] + map[i + 1]) / 2.0).abs())
            .fold(f64::INFINITY, f64::min);
        (best, margin)
    }

    /// One step over `p` and `g` from the given state, with the maps as f64.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        h: &Hyper,
        p: &[f64],
        g: &[f64],
        m_codes: &[u8],
        v_codes: &[u8],
        m_absmax: &[f64],
        v_absmax: &[f64],
        m_map: &[f64],
        v_map: &[f64],
    ) -> Step {
        let n = p.len();
        let (b1, b2) = (f64::from(h.beta1), f64::from(h.beta2));
        // The kernel receives these three rounded to f32; so does the reference, so that the
        // comparison measures the kernel's arithmetic, not the rounding of its inputs.
        let k = Scalars::of(h);
        let (step_size, eps_hat, decay) = (
            f64::from(k.step_size),
            f64::from(k.eps_hat),
            f64::from(k.decay),
        );
        let mut out = Step {
            p: vec![0.0; n],
            m_codes: vec![0; n],
            v_codes: vec![0; n],
            m_absmax: Vec::new(),
            v_absmax: Vec::new(),
            m_margin: vec![0.0; n],
            v_margin: vec![0.0; n],
            m_scale: Vec::new(),
        };
        for (b, start) in (0..n).step_by(super::BLOCK).enumerate() {
            let end = (start + super::BLOCK).min(n);
            let mut m = Vec::new();
            let mut v = Vec::new();
            let mut scale = 0.0f64;
            for i in start..end {
                let m_old = m_map[usize::from(m_codes[i])] * m_absmax[b];
                scale = scale.max(b1 * m_old.abs() + (1.0 - b1) * g[i].abs());
                let mi = b1 * m_old + (1.0 - b1) * g[i];
                let vi =
                    b2 * v_map[usize::from(v_codes[i])] * v_absmax[b] + (1.0 - b2) * g[i] * g[i];
                out.p[i] = (p[i] + step_size * mi / (vi.sqrt() + eps_hat)) * decay;
                m.push(mi);
                v.push(vi);
            }
            let am = m.iter().fold(0.0f64, |a, x| a.max(x.abs()));
            let av = v.iter().fold(0.0f64, |a, x| a.max(x.abs()));
            out.m_absmax.push(am);
            out.v_absmax.push(av);
            out.m_scale.push(scale);
            for (k, i) in (start..end).enumerate() {
                let (mut cm, mm) = nearest(m_map, if am > 0.0 { m[k] / am } else { 0.0 });
                if m[k] < 0.0 && cm == SIGNED_ZERO_CODE as usize {
                    cm -= 1;
                }
                let (cv, mv) = nearest(v_map, if av > 0.0 { v[k] / av } else { 0.0 });
                out.m_codes[i] = cm as u8;
                out.v_codes[i] = cv as u8;
                out.m_margin[i] = mm;
                out.v_margin[i] = mv;
            }
        }
        out
    }
}

/// How far (absolute, on the normalized moment in [−1, 1]) from the midpoint of two codes an
/// f64 value may be and still round to either in f32: a few f32 ulps of 1, as the moment's f32
/// sum of two terms and its division by the absmax each round once.
pub const BOUNDARY_SLACK: f64 = 1e-6;

/// Roundings (units of 2⁻²⁴ of `β₁·|m_old| + (1 − β₁)·|g|`) the absmax of m may be off by: the
/// dequantizing product, the two products of the update and their sum, and β₁ and 1 − β₁ as f32,
/// each at most one, with headroom of two.
const M_ABSMAX_ULPS: f64 = 8.0;

/// A state for `n` parameters with random codes and absmax (m's in [0.01, 0.1], v's in
/// [1e-4, 1e-2]).
fn random_state(rng: &mut Rng, n: usize) -> Result<Adam8bit, String> {
    let mut state = Adam8bit::new(n);
    let blocks = n.div_ceil(BLOCK);
    let codes = |rng: &mut Rng| -> Result<HostTensor, String> {
        let bits: Vec<f64> = (0..n)
            .map(|_| f64::from(rng.uniform(0.0, 256.0).floor().min(255.0) as u8 as i8))
            .collect();
        HostTensor::new(ScalarType::I8, &[n], &bits).map_err(|e| e.to_string())
    };
    state.m_codes = codes(rng)?;
    state.v_codes = codes(rng)?;
    let f = ScalarType::F32;
    state.m_absmax = rng.tensor(f, &[blocks], 0.01, 0.1);
    state.v_absmax = rng.tensor(f, &[blocks], 1e-4, 1e-2);
    Ok(state)
}

/// Checks one step of `n` parameters from weights `p0`, gradients `g` and state `before`
/// against [`reference::step`]: the weights `p` and state `after` the kernel left, absmax and
/// weights within f32 rounding, codes equal but where the f64 normalized moment lies within
/// [`BOUNDARY_SLACK`] of a boundary between two codes (there the neighbour is as right as f32
/// arithmetic can tell). `what` names the case in errors.
fn check_step(
    what: &str,
    h: &Hyper,
    (p0, g): (&[f64], &[f64]),
    before: &Adam8bit,
    p: &[f64],
    after: &Adam8bit,
) -> Result<(), String> {
    let want = reference::step(
        h,
        p0,
        g,
        &before.m_bytes(),
        &before.v_bytes(),
        &before.m_absmax.to_vec(),
        &before.v_absmax.to_vec(),
        &before.m_map.to_vec(),
        &before.v_map.to_vec(),
    );
    let ep = record(format!("{what}: p"), p, &want.p, 1e-6);
    let eb = record(
        format!("{what}: absmax of v"),
        &after.v_absmax.to_vec(),
        &want.v_absmax,
        1e-6,
    );
    // The absmax of m is checked per block against the error its f32 sum can carry
    // (M_ABSMAX_ULPS roundings of the terms' magnitude), not relative to itself: with one
    // element per block, β₁·m_old and (1 − β₁)·g can cancel to a value far below either.
    let bound: Vec<f64> = want
        .m_scale
        .iter()
        .map(|s| M_ABSMAX_ULPS * f64::from(f32::EPSILON) / 2.0 * s)
        .collect();
    let ea = record_bounded(
        format!("{what}: absmax of m (in units of its bound)"),
        &after.m_absmax.to_vec(),
        &want.m_absmax,
        &bound,
    );
    if ep > 1e-6 || ea > 1.0 || eb > 1e-6 {
        return Err(format!(
            "{what}: p error {ep:.2e}, absmax of m {ea:.2} of its bound, of v {eb:.2e}"
        ));
    }
    for (moment, got, want, margin) in [
        ("m", after.m_bytes(), &want.m_codes, &want.m_margin),
        ("v", after.v_bytes(), &want.v_codes, &want.v_margin),
    ] {
        for i in 0..got.len() {
            let near_boundary = margin[i] <= BOUNDARY_SLACK;
            if got[i] != want[i] && !(near_boundary && got[i].abs_diff(want[i]) == 1) {
                return Err(format!(
                    "{what}: code of {moment} at {i} is {}, expected {}",
                    got[i], want[i]
                ));
            }
        }
    }
    Ok(())
}

/// The hyper-parameters of the self-tests (step 3, so the bias corrections matter).
const SELFTEST_HYPER: Hyper = Hyper {
    lr: 1e-2,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weight_decay: 0.01,
    step: 3,
};

/// One step from a random state against [`reference::step`] ([`check_step`]).
fn selftest(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let h = SELFTEST_HYPER;
    let mut sizes = vec![1000, 1];
    if large(device) {
        sizes.push(1_000_003);
    }
    let f = ScalarType::F32;
    for n in sizes {
        let mut state = random_state(&mut rng, n)?;
        let before = state.clone();
        let p0 = rng.tensor(f, &[n], -1.0, 1.0);
        let g = rng.tensor(f, &[n], -1.0, 1.0);
        let mut p = p0.clone();
        state
            .step(device, &mut p, &g, &h)
            .map_err(|e| e.to_string())?;
        let what = format!("{n} parameters");
        check_step(
            &what,
            &h,
            (&p0.to_vec(), &g.to_vec()),
            &before,
            &p.to_vec(),
            &state,
        )
        .map_err(|e| format!("{e} (seed {})", rng.seed))?;
    }
    Ok("weights, absmax and codes against the f64 blockwise step".into())
}

/// Entry sizes of the multi-tensor self-tests: one element, an odd size within a block, an
/// empty tensor, a block and a tail, and a size whose last thread block has spare warps.
const MULTI_SIZES: [usize; 5] = [1, 17, 0, 257, 1000];

/// One multi-tensor step over [`MULTI_SIZES`] from random states, with f32 gradients or (with
/// `model`) bf16 gradients and a bf16 model copy, each entry checked by [`check_step`] (and the
/// copy equal to the master weights rounded to bf16).
fn multi_selftest(device: &Device, model: bool) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let h = SELFTEST_HYPER;
    let (f, b) = (ScalarType::F32, ScalarType::BF16);
    let mut before = Vec::new();
    let (mut p0, mut g) = (Vec::new(), Vec::new());
    for n in MULTI_SIZES {
        before.push(random_state(&mut rng, n)?);
        p0.push(rng.tensor(f, &[n], -1.0, 1.0));
        g.push(rng.tensor(if model { b } else { f }, &[n], -1.0, 1.0));
    }
    let list = |ts: Vec<&HostTensor>| -> Result<TensorList, String> {
        let refs: Vec<&dyn TensorArg> = ts.into_iter().map(|t| t as &dyn TensorArg).collect();
        TensorList::new(&refs).map_err(|e| e.to_string())
    };
    let field = |pick: fn(&Adam8bit) -> &HostTensor| list(before.iter().map(pick).collect());
    let (mut m_codes, mut v_codes) = (field(|s| &s.m_codes)?, field(|s| &s.v_codes)?);
    let (mut m_absmax, mut v_absmax) = (field(|s| &s.m_absmax)?, field(|s| &s.v_absmax)?);
    let (mut p, gl) = (list(p0.iter().collect())?, list(g.iter().collect())?);
    let copies: Vec<HostTensor> = MULTI_SIZES
        .iter()
        .map(|&n| HostTensor::full(b, &[n], f64::NAN))
        .collect();
    let mut copy = list(copies.iter().collect())?;
    let maps: [&dyn TensorArg; 2] = [&before[0].m_map, &before[0].v_map];
    let state = [&mut m_codes, &mut v_codes, &mut m_absmax, &mut v_absmax];
    if model {
        adam8bit_mixed_multi_step(device, &mut p, &gl, state, &mut copy, maps, &h)
    } else {
        adam8bit_multi_step(device, &mut p, &gl, state, maps, &h)
    }
    .map_err(|e| e.to_string())?;
    for (e, n) in MULTI_SIZES.into_iter().enumerate() {
        let host = |l: &TensorList| l.host(e).cloned().ok_or("entry not on the host");
        let mut after = before[e].clone();
        after.m_codes = host(&m_codes)?;
        after.v_codes = host(&v_codes)?;
        after.m_absmax = host(&m_absmax)?;
        after.v_absmax = host(&v_absmax)?;
        let got = host(&p)?.to_vec();
        let what = format!("entry {e} ({n} parameters)");
        check_step(
            &what,
            &h,
            (&p0[e].to_vec(), &g[e].to_vec()),
            &before[e],
            &got,
            &after,
        )
        .map_err(|err| format!("{err} (seed {})", rng.seed))?;
        if model {
            let rounded = HostTensor::new(b, &[n], &got).map_err(|e| e.to_string())?;
            let same = host(&copy)?
                .to_vec()
                .iter()
                .zip(rounded.to_vec())
                .all(|(x, y)| x.to_bits() == y.to_bits());
            if !same {
                return Err(format!(
                    "{what}: the model copy is not bf16 of the master weights (seed {})",
                    rng.seed
                ));
            }
        }
    }
    Ok(format!(
        "weights, absmax and codes of 5 tensors (sizes 1, 17, 0, 257, 1000) against the f64 \
         blockwise step in one launch{}",
        if model {
            "; model copy = bf16(master)"
        } else {
            ""
        }
    ))
}

fn selftest_multi(device: &Device) -> Result<String, String> {
    multi_selftest(device, false)
}

fn selftest_mixed_multi(device: &Device) -> Result<String, String> {
    multi_selftest(device, true)
}
