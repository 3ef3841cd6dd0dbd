//! The FP8 mixture-of-experts path with DeepSeek-V3's block scaling (`kernels::moe_fp8`): the
//! 128×128 weight quantization against its definition, and the grouped GEMM over a device
//! permutation of top-k routings against the f64 product of operands quantized by references
//! written here (1×128 per token group for activations, 128×128 for weights), on the
//! interpreter and the sm_90a emulator (sanitizer on); small DeepSeek-like shapes with an
//! expert that receives no token, one that receives every token, token counts that are not
//! multiples of the tile. Targets without fp8 and malformed arguments are refused by name.
#![cfg(feature = "jit")]

use crate::fp8::{act_quant_reference, ocp_encode, same};
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{self, BF16, F32, F8E4M3, I32};
use tilekit::kernels::check::Rng;
use tilekit::kernels::moe_fp8::{
    grouped_gemm_fp8, quantize_activations, quantize_weights, Quantized, AMAX_FLOOR, E4M3_MAX,
    GROUP, TILE_ROWS,
};
use tilekit::kernels::moe_routing::{permute, Layout};
use tilekit::{Device, Tensor};

/// The f64 reference of 128×128 block weight quantization from its definition: per expert
/// and block of 128 rows (fewer at the end) × 128 columns, `s = max(amax, 1e-4) / 448` in f32
/// and `q = e4m3(w / s)` with the quotient in f32. `w` `[e, n, k]`; returns q `[e, n, k]` and
/// the scales `[e, ⌈n/128⌉, k/128]`.
pub(crate) fn weight_quant_reference(
    w: &[f64],
    e: usize,
    n: usize,
    k: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (nb, kb) = (n.div_ceil(GROUP), k / GROUP);
    let (mut q, mut s) = (vec![0.0; e * n * k], vec![0.0; e * nb * kb]);
    for x in 0..e {
        for i in 0..nb {
            let rows = i * GROUP..((i + 1) * GROUP).min(n);
            for j in 0..kb {
                let cols = j * GROUP..(j + 1) * GROUP;
                let at = |r: usize, c: usize| (x * n + r) * k + c;
                let amax = rows
                    .clone()
                    .flat_map(|r| cols.clone().map(move |c| w[at(r, c)].abs()))
                    .fold(0.0, f64::max);
                // f64 quotients of f32 operands rounded once to f32 are the f32 quotients.
                let scale = f64::from((amax.max(AMAX_FLOOR) / E4M3_MAX) as f32);
                s[(x * nb + i) * kb + j] = scale;
                for r in rows.clone() {
                    for c in cols.clone() {
                        q[at(r, c)] = ocp_encode(F8E4M3, f64::from((w[at(r, c)] / scale) as f32));
                    }
                }
            }
        }
    }
    (q, s)
}

/// Asserts that `got` holds exactly the values `want` (NaN equal to NaN), naming `what`.
fn assert_same(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(same(*g, *w), "{what}[{i}]: {g} vs {w}");
    }
}

fn host(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().unwrap_or_else(|e| panic!("{e}"))
}

/// Weights whose 128×128 blocks differ in magnitude (so their scales differ), with one block
/// of zeros per expert.
pub(crate) fn weights(rng: &mut Rng, e: usize, n: usize, k: usize) -> Vec<f64> {
    let mut w = Vec::with_capacity(e * n * k);
    for x in 0..e {
        for r in 0..n {
            for c in 0..k {
                let block = (r / GROUP, c / GROUP);
                let mag = 2f64.powi(((x + 2 * block.0 + 3 * block.1) % 7) as i32 - 5);
                let zero = block == (0, (x + 1) % (k / GROUP));
                w.push(if zero { 0.0 } else { rng.uniform(-mag, mag) });
            }
        }
    }
    w
}

fn weight_quant_on(device: &Device) {
    let mut rng = Rng::fresh();
    // N below, at and past one block (not a multiple of 128 or of the 16 rows of a tile).
    for (dtype, e, n, k) in [(BF16, 3, 130, 256), (F32, 2, 17, 128), (BF16, 1, 256, 384)] {
        let what = format!(
            "{}, {dtype} [{e}, {n}, {k}], seed {}",
            device.name(),
            rng.seed
        );
        let w = HostTensor::new(dtype, &[e, n, k], &weights(&mut rng, e, n, k)).expect("w");
        let wv = w.to_vec();
        let wt = Tensor::from_host(&w, device).expect("w on the device");
        let got = quantize_weights(device, &wt).unwrap_or_else(|err| panic!("{what}: {err}"));
        assert_eq!(got.scales.shape(), &[e, n.div_ceil(128), k / 128], "{what}");
        let (q, s) = weight_quant_reference(&wv, e, n, k);
        assert_same(&host(&got.q), &q, &format!("q, {what}"));
        assert_same(&host(&got.scales), &s, &format!("scales, {what}"));
    }
}

#[test]
fn weight_quant_matches_the_128x128_definition_on_the_interpreter() {
    weight_quant_on(&Device::Cpu);
}

#[test]
fn weight_quant_matches_the_128x128_definition_on_the_sm_90a_emulator() {
    weight_quant_on(&Device::emulator("sm_90a").unwrap());
}

/// One routing case: tokens, hidden size (K), output columns (NO), experts, top-k.
struct Case {
    t: usize,
    h: usize,
    no: usize,
    e: usize,
    k: usize,
}

/// Each token's `k` distinct experts: expert 0 takes every token, expert 1 none, the others
/// a random choice among experts 2.. (so experts vary in load, some getting a partial tile).
fn routing(rng: &mut Rng, c: &Case) -> Vec<f64> {
    let mut ids = Vec::with_capacity(c.t * c.k);
    for _ in 0..c.t {
        let mut chosen = vec![0usize];
        while chosen.len() < c.k {
            let x = 2 + (rng.uniform(0.0, (c.e - 2) as f64) as usize).min(c.e - 3);
            if !chosen.contains(&x) {
                chosen.push(x);
            }
        }
        ids.extend(chosen.iter().map(|&x| x as f64));
    }
    ids
}

/// The grouped GEMM through the API on `device`: route (host choice) → permute (device) →
/// gather (host) → quantize activations and weights (device) → FP8 grouped GEMM, against the
/// f64 product of the reference quantizations of the same rows and weights.
fn grouped_gemm_on(device: &Device, out: ScalarType) {
    let mut rng = Rng::fresh();
    let cases = [
        Case {
            t: 37,
            h: 256,
            no: 200,
            e: 6,
            k: 3,
        },
        Case {
            t: 130,
            h: 128,
            no: 96,
            e: 4,
            k: 2,
        },
        Case {
            t: 1,
            h: 384,
            no: 130,
            e: 5,
            k: 2,
        },
    ];
    for c in &cases {
        let what = format!(
            "{}, T {} H {} NO {} E {} top-{}, out {out}, seed {}",
            device.name(),
            c.t,
            c.h,
            c.no,
            c.e,
            c.k,
            rng.seed
        );
        let experts = HostTensor::new(I32, &[c.t, c.k], &routing(&mut rng, c)).expect("ids");
        let p = permute(device, &experts, c.e, TILE_ROWS, Layout::Contiguous)
            .unwrap_or_else(|err| panic!("{what}: {err}"));
        let counts = p.counts.to_vec();
        assert_eq!((counts[0], counts[1]), (c.t as f64, 0.0), "{what}: loads");
        let sorted: Vec<f64> = p.sorted_token.to_vec();
        let n = sorted.len();
        let tile_expert = p.tile_expert.to_vec();
        // Activations of varied magnitude per token and 128-column group.
        let x: Vec<f64> = (0..c.t * c.h)
            .map(|i| {
                let mag = 2f64.powi(((i / c.h + 5 * (i % c.h / GROUP)) % 6) as i32 - 2);
                rng.uniform(-mag, mag)
            })
            .collect();
        let x = HostTensor::new(BF16, &[c.t, c.h], &x).expect("x").to_vec();
        let mut xp = vec![0.0; n * c.h];
        let mut expert_of = vec![-1i64; n];
        for r in 0..n {
            if sorted[r] >= 0.0 {
                let t = sorted[r] as usize;
                xp[r * c.h..(r + 1) * c.h].copy_from_slice(&x[t * c.h..(t + 1) * c.h]);
                expert_of[r] = tile_expert[r / TILE_ROWS] as i64;
            }
        }
        let w = weights(&mut rng, c.e, c.no, c.h);
        let w = HostTensor::new(BF16, &[c.e, c.no, c.h], &w).expect("w");
        let wv = w.to_vec();
        let on = |t: &HostTensor| Tensor::from_host(t, device).expect("to the device");
        let xp_t = on(&HostTensor::new(BF16, &[n, c.h], &xp).expect("xp"));
        let xq = quantize_activations(device, &xp_t).unwrap_or_else(|err| panic!("{what}: {err}"));
        let wq = quantize_weights(device, &on(&w)).unwrap_or_else(|err| panic!("{what}: {err}"));
        let (rq, rs) = act_quant_reference(&xp, n, c.h);
        assert_same(&host(&xq.q), &rq, &format!("activation q, {what}"));
        assert_same(
            &host(&xq.scales),
            &rs,
            &format!("activation scales, {what}"),
        );
        let (wq_ref, ws_ref) = weight_quant_reference(&wv, c.e, c.no, c.h);
        let (te, st) = (on(&p.tile_expert), on(&p.sorted_token));
        let y = grouped_gemm_fp8(device, &xq, &wq, &te, &st, out)
            .unwrap_or_else(|err| panic!("{what}: {err}"));
        assert_eq!(y.shape(), &[n, c.no], "{what}");
        let y = host(&y);
        let nb = c.no.div_ceil(GROUP);
        let kb = c.h / GROUP;
        // Sums of exact fp8 products: one f32 rounding per product in a block's tensor-core
        // sum, three in its promotion, one per block in the running sum, each at most 2⁻²⁴ of
        // Σ|terms|; bf16 output rounds once more (2⁻⁹ of the value, taken as 2⁻⁸).
        let units = (GROUP + 3 + kb) as f64 * 2f64.powi(-24);
        let out_rounding = if out == BF16 { 2f64.powi(-8) } else { 0.0 };
        for r in 0..n {
            for j in 0..c.no {
                let got = y[r * c.no + j];
                let Ok(e) = usize::try_from(expert_of[r]) else {
                    assert_eq!(got, 0.0, "padding row {r} written: {what}");
                    continue;
                };
                let (mut want, mut mag) = (0.0, 0.0);
                for b in 0..kb {
                    let s = rs[b * n + r] * ws_ref[(e * nb + j / GROUP) * kb + b];
                    for col in b * GROUP..(b + 1) * GROUP {
                        let term = s * rq[r * c.h + col] * wq_ref[(e * c.no + j) * c.h + col];
                        want += term;
                        mag += term.abs();
                    }
                }
                let tol = units * mag + out_rounding * want.abs();
                assert!(
                    (got - want).abs() <= tol,
                    "y[{r}][{j}] (expert {e}) {got} vs {want}, tolerance {tol:e}: {what}"
                );
            }
        }
        // The quantized product approximates the exact one: each operand is within 2⁻⁴ of
        // itself (relative) or of its block's scale, so the rows of the busiest expert agree
        // with the bf16 product to a few percent of Σ|x·w|.
        for r in (0..n).filter(|&r| expert_of[r] == 0) {
            let t = sorted[r] as usize;
            for j in 0..c.no {
                let terms = (0..c.h).map(|col| x[t * c.h + col] * wv[j * c.h + col]);
                let exact: f64 = terms.clone().sum();
                let mag: f64 = terms.map(f64::abs).sum();
                let got = y[r * c.no + j];
                assert!(
                    (got - exact).abs() <= 0.15 * mag + 1e-6,
                    "y[{r}][{j}] {got} vs unquantized {exact} (Σ|x·w| {mag}): {what}"
                );
            }
        }
    }
}

#[test]
fn grouped_gemm_fp8_matches_the_block_quantized_product_on_the_interpreter() {
    grouped_gemm_on(&Device::Cpu, F32);
    grouped_gemm_on(&Device::Cpu, BF16);
}

#[test]
fn grouped_gemm_fp8_matches_the_block_quantized_product_on_the_sm_90a_emulator() {
    let emu = Device::emulator("sm_90a").unwrap();
    grouped_gemm_on(&emu, F32);
    grouped_gemm_on(&emu, BF16);
}

/// Quantized operands of the given shapes on the interpreter (values do not matter here).
fn quantized(q: &[usize], scales: &[usize]) -> Quantized {
    Quantized {
        q: Tensor::zeros(F8E4M3, q, &Device::Cpu).unwrap(),
        scales: Tensor::zeros(F32, scales, &Device::Cpu).unwrap(),
    }
}

#[test]
fn malformed_arguments_and_targets_without_fp8_are_refused_by_name() {
    let cpu = Device::Cpu;
    let i32s = |shape: &[usize]| Tensor::zeros(I32, shape, &cpu).unwrap();
    let (te, st) = (i32s(&[2]), i32s(&[128, 1]));
    let x = quantized(&[128, 256], &[2, 128]);
    let w = quantized(&[3, 200, 256], &[3, 2, 2]);
    grouped_gemm_fp8(&cpu, &x, &w, &te, &st, F32).expect("well-formed");
    let refused = |r: Result<Tensor, tilekit::Error>, needle: &str| {
        let text = r.expect_err(needle).to_string();
        assert!(text.contains(needle), "{needle:?} not in: {text}");
    };
    // K not a multiple of 128.
    let x_k = quantized(&[128, 200], &[2, 128]);
    refused(
        grouped_gemm_fp8(&cpu, &x_k, &w, &te, &st, F32),
        "multiple of 128",
    );
    // Rows not padded to the tile.
    let x_n = quantized(&[100, 256], &[2, 100]);
    refused(
        grouped_gemm_fp8(&cpu, &x_n, &w, &te, &st, F32),
        "align = 64",
    );
    // Activation scales token-major instead of group-major.
    let x_s = quantized(&[128, 256], &[128, 2]);
    refused(
        grouped_gemm_fp8(&cpu, &x_s, &w, &te, &st, F32),
        "`x.scales` must be f32 [2, 128]",
    );
    // Weight scales for 128-row blocks of 200 rows: 2 blocks, not 1.
    let w_s = quantized(&[3, 200, 256], &[3, 1, 2]);
    refused(
        grouped_gemm_fp8(&cpu, &x, &w_s, &te, &st, F32),
        "`w.scales` must be f32 [3, 2, 2]",
    );
    refused(
        grouped_gemm_fp8(&cpu, &x, &w, &i32s(&[3]), &st, F32),
        "`tile_expert`",
    );
    refused(grouped_gemm_fp8(&cpu, &x, &w, &te, &st, I32), "f32 or bf16");
    let xb = Tensor::zeros(BF16, &[5, 130], &cpu).unwrap();
    let text = quantize_activations(&cpu, &xb).unwrap_err().to_string();
    assert!(text.contains("130 columns"), "{text}");
    // sm_80 has no fp8: refused before anything is compiled.
    let sm80 = Device::emulator("sm_80").unwrap();
    let xb = Tensor::zeros(BF16, &[5, 128], &sm80).unwrap();
    let text = quantize_activations(&sm80, &xb).unwrap_err().to_string();
    assert!(text.contains("sm_90a") && text.contains("sm_80"), "{text}");
}

/// The registered variants' self-test (the GEMM on the quantizers' outputs against the
/// dequantized f64 product) passes on the interpreter and the sm_90a emulator.
#[test]
fn the_registered_self_test_passes_on_the_interpreter_and_the_sm_90a_emulator() {
    let info = tilekit::registry::kernels()
        .into_iter()
        .find(|k| k.name == "moe_gemm_fp8")
        .expect("moe_gemm_fp8 is registered");
    let selftest = info.selftest.expect("a self-test");
    for device in [Device::Cpu, Device::emulator("sm_90a").unwrap()] {
        let summary = selftest(&device).unwrap_or_else(|e| panic!("{}: {e}", device.name()));
        assert!(summary.contains("4 runs"), "{}: {summary}", device.name());
    }
}
