//! 05 · Flash attention: `O = softmax(scale · Q·Kᵀ) · V` without ever holding the whole score
//! matrix, for head dimension 64.
//!
//! Each warp owns 16 query rows and walks the keys 64 at a time. For one key tile it computes
//! the scores `S = Q·Kᵀ` on the tensor cores (`mma_abt`: B transposed, so K is read as it lies
//! in memory), and keeps per row a running maximum `m` and a running sum `l` of the
//! exponentials (the online softmax of Milakov & Gimelshein, 2018, as FlashAttention uses it):
//! when a tile raises a row's maximum from `m` to `m'`, everything accumulated so far was
//! scaled by `2^(m − m')` too little, so the accumulator and the sum are multiplied by that
//! factor (`alpha`) before the tile's contribution is added. At the end `O = acc / l`. The
//! exponentials are `exp2` of scores pre-multiplied by `scale · log2 e`.
//!
//! New here: `mma_abt`, register vectors carried through a loop, row broadcasts (`sub_row`,
//! `mul_row`, `div_row`), a tile feeding the next `mma` after a dtype cast (P in bf16), and a
//! three-dimensional view (`[batch·heads, seq, 64]`). Keys past the end are masked to −∞ in the
//! last tile; queries past the end compute garbage that the store drops.
//! `tilekit::kernels::attention` is the library's version: pipelined K/V copies, causal masks,
//! 128-row blocks, LSE output.
//!
//! ```sh
//! cargo run -p tilekit-examples --example 05_flash_attention
//! ```

use anyhow::{ensure, Result};
use std::f32::consts::LOG2_E;
use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::check::{normalized_max_error, Rng};
use tilekit::Device;

/// Attention for `[bh, seq, 64]` tensors: 64 query rows per block of four warps (block x), one
/// head per block row (block y).
#[tilekit::kernel(
    warps = 4,
    shapes(q: [BH, SQ, 64], k: [BH, SK, 64], v: [BH, SK, 64], o: [BH, SQ, 64], SK >= 1),
    grid = [ceil_div(SQ, 64), BH, 1]
)]
fn flash_attention(
    q: Gl<bf16, 3>,
    k: Gl<bf16, 3>,
    v: Gl<bf16, 3>,
    o: GlMut<f32, 3>,
    sm_scale: Scalar<f32>,
) {
    let k_s: St<bf16, 64, 64> = alloc_shared();
    let v_s: St<bf16, 64, 64> = alloc_shared();
    let head = block_idx_y();
    let q_tile = block_idx_x() * 4 + warp_idx();
    let q_frag: Rt<bf16, 16, 64> = load(q.tile(head, q_tile, 0));
    let seq_kv = k.dim(1);
    let scale_log2 = sm_scale * LOG2_E;

    let mut m: Rv<f32, 16> = fill(f64::NEG_INFINITY);
    let mut l: Rv<f32, 16> = zeros();
    let mut acc: Rt<f32, 16, 64> = zeros();
    for kt in range(0, ceil_div(seq_kv, 64)) {
        copy_block(k_s, k.tile(head, kt, 0));
        copy_block(v_s, v.tile(head, kt, 0));
        barrier();
        let k_frag: Rt<bf16, 64, 64> = load(k_s);
        let s = mma_abt(zeros(), q_frag, k_frag) * scale_log2;
        // Keys past seq_kv (only in the last tile) must not take part: −∞ gives exp2 = 0.
        let s = mask_cols(s, kt * 64, seq_kv, f64::NEG_INFINITY);
        // The first tile has key 0, so m_new is finite from then on and alpha = 2^(−∞) = 0
        // for the empty start.
        let m_new = m.max(row_max(s));
        let p = sub_row(s, m_new).exp2();
        let alpha = (m - m_new).exp2();
        l = l * alpha + row_sum(p);
        m = m_new;
        let v_frag: Rt<bf16, 64, 64, Col> = load(v_s);
        acc = mma_ab(mul_row(acc, alpha), p.cast::<bf16>(), v_frag);
        // Every warp is done with this tile before the next copy overwrites it.
        barrier();
    }
    store(o.tile(head, q_tile, 0), div_row(acc, l));
}

/// Attention in f64 from the definition, for `[bh, seq, d]` row-major tensors.
fn reference(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    bh: usize,
    sq: usize,
    sk: usize,
    scale: f64,
) -> Vec<f64> {
    const D: usize = 64;
    let mut o = vec![0.0; bh * sq * D];
    for h in 0..bh {
        for i in 0..sq {
            let qi = &q[(h * sq + i) * D..][..D];
            let s: Vec<f64> = (0..sk)
                .map(|j| {
                    let kj = &k[(h * sk + j) * D..][..D];
                    scale * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>()
                })
                .collect();
            let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            for d in 0..D {
                let out: f64 = (0..sk).map(|j| e[j] * v[(h * sk + j) * D + d]).sum();
                o[(h * sq + i) * D + d] = out / sum;
            }
        }
    }
    o
}

fn main() -> Result<()> {
    let device = if cfg!(feature = "jit") {
        Device::best()
    } else {
        Device::Cpu
    };
    let mut rng = Rng::fresh();
    let scale = 1.0 / 8.0; // 1/√64
    for (bh, sq, sk) in [(1, 64, 64), (2, 70, 130), (3, 1, 17)] {
        let q = rng.tensor(BF16, &[bh, sq, 64], -1.0, 1.0);
        let k = rng.tensor(BF16, &[bh, sk, 64], -1.0, 1.0);
        let v = rng.tensor(BF16, &[bh, sk, 64], -1.0, 1.0);
        let mut o = HostTensor::new(F32, &[bh, sq, 64], &vec![f64::NAN; bh * sq * 64])?;
        flash_attention::launch_auto(&device, &q, &k, &v, &mut o, (scale as f32).into())?;
        let want = reference(&q.to_vec(), &k.to_vec(), &v.to_vec(), bh, sq, sk, scale);
        let err = normalized_max_error(&o.to_vec(), &want);
        println!(
            "bh {bh}, seq_q {sq}, seq_kv {sk} on {}: max error {err:.1e}",
            device.name()
        );
        // P is rounded to bf16 (8 bits of mantissa) before P·V.
        ensure!(
            err < 1e-2,
            "bh {bh}, {sq}×{sk}: error {err:.2e} (seed {})",
            rng.seed
        );
    }
    println!("05_flash_attention: ok");
    Ok(())
}

#[test]
fn tutorial_runs() {
    main().unwrap();
}
