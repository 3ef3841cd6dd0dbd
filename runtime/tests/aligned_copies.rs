//! Alignment specialization of global → shared copies (`tilekit::codegen::specialize`): a launch
//! whose views are 16-byte aligned runs a variant whose tile copies are whole 16-byte `cp.async`
//! chunks with no run-time alignment test and no element-wise fallback; any other launch (a
//! view at an odd element offset, an odd leading stride, a row of K elements that is not a whole
//! number of chunks) runs the general variant. Both agree with the f64 reference, on the PTX
//! emulator, which runs the same PTX a GPU would.
#![cfg(feature = "jit")]

use tilekit::codegen::{compile, compile_with, ptxas, Facts, Target};
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::check::Rng;
use tilekit::kernels::{attention, gemm};
use tilekit::Device;

/// Random multiples of 1/8 in [-2, 2]: exact in bf16, and every sum of their products over
/// K ≤ 128 exact in f32, so the kernel's result equals the f64 reference.
fn values(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| (rng.uniform(-16.0, 16.0).round()) / 8.0)
        .collect()
}

/// A `rows × cols` bf16 matrix holding `v` with leading stride `cols + pad`, as a host tensor:
/// a launch copies its storage to the start of a fresh (256-byte aligned) allocation and
/// passes the strides as they are. (The emulator's own tensors are compacted into such a copy
/// when they are views, so a view's offset cannot reach it; odd strides can.)
fn matrix(v: &[f64], rows: usize, cols: usize, pad: usize) -> HostTensor {
    let stride = cols + pad;
    let mut storage = vec![0.5; rows * stride];
    for r in 0..rows {
        storage[r * stride..r * stride + cols].copy_from_slice(&v[r * cols..(r + 1) * cols]);
    }
    HostTensor::strided(BF16, &[rows, cols], &[stride, 1], &storage).unwrap()
}

/// One GEMM on `device`: A `m × k` with leading stride `k + a_pad`, B `k × n` with `n + b_pad`;
/// checks C against the f64 reference and returns whether the launch executed any element-wise
/// global load (the general variant's fallback copy; the aligned variant copies with
/// `cp.async` only, and the GEMM reads global memory only to copy).
fn gemm_case(
    device: &Device,
    rng: &mut Rng,
    (m, n, k): (usize, usize, usize),
    a_pad: usize,
    b_pad: usize,
) -> bool {
    let av = values(rng, m * k);
    let bv = values(rng, k * n);
    let a = matrix(&av, m, k, a_pad);
    let b = matrix(&bv, k, n, b_pad);
    let mut c = HostTensor::zeros(F32, &[m, n]);
    gemm::gemm::<f32, 64, 64, 32, 32, 32>::launch(device, gemm::grid(m, n, 64, 64), &a, &b, &mut c)
        .unwrap();
    let element_loads = device
        .emulator_report()
        .unwrap()
        .profile
        .counts
        .get("ld.global")
        .copied()
        .unwrap_or(0);
    let want = gemm::reference(&av, &bv, m, k, n);
    let got = c.to_vec();
    let case = format!(
        "{m}×{n}×{k}, A stride {}, B stride {} (seed {})",
        k + a_pad,
        n + b_pad,
        rng.seed
    );
    assert_eq!(got.len(), want.len(), "{case}");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "{case}: C[{}, {}]", i / n, i % n);
    }
    element_loads > 0
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

#[test]
fn aligned_gemm_launches_take_the_fast_variant_and_others_the_general_one() {
    for target in ["sm_80", "sm_90a"] {
        let device = Device::emulator(target).unwrap();
        let mut rng = Rng::new(seed());
        // Aligned views with ragged M and N (a tile straddles the edge: whole chunks out of
        // the view are zero-filled) and a padded leading stride that stays a multiple of 16 B.
        assert!(!gemm_case(&device, &mut rng, (50, 48, 64), 0, 0));
        assert!(!gemm_case(&device, &mut rng, (64, 40, 96), 8, 8));
        // A with an odd leading stride (65 elements): most rows start off a 16-byte boundary.
        assert!(gemm_case(&device, &mut rng, (50, 48, 64), 1, 0));
        // B with an odd leading stride (49 elements).
        assert!(gemm_case(&device, &mut rng, (64, 48, 32), 0, 1));
        // Ragged K: a row of A is 36 elements, not a whole number of 8-element chunks.
        assert!(gemm_case(&device, &mut rng, (33, 64, 36), 0, 0));
        // Ragged M, N and K together. A's rows of 44 elements are not whole chunks, so A is
        // not aligned: the launch takes a variant that copies A element by element (B, aligned,
        // still in chunks where the runtime compiles for the views that qualify).
        assert!(gemm_case(&device, &mut rng, (70, 72, 44), 4, 0));
    }
}

#[test]
fn the_aligned_variants_tile_copies_have_no_element_wise_fallback() {
    let module = gemm::gemm::<f32, 64, 64, 32, 32, 32>::module();
    let func = module.kernel("gemm").unwrap();
    let facts = Facts::all_aligned16(func);
    assert_eq!(facts.to_string(), "aligned16(a, b, c)");
    for target in [Target::Sm80, Target::Sm90a] {
        let fast = compile_with(module, "gemm", target, &facts).unwrap();
        let general = compile(module, "gemm", target).unwrap();
        assert_eq!(fast.facts, facts);
        assert!(general.facts.is_general());
        // The GEMM reads global memory only to stage A and B in shared memory: with cp.async
        // chunks on sm_80, with tensor-memory copies (TMA) on sm_90a.
        let chunked = match target {
            Target::Sm90a => "cp.async.bulk.tensor",
            _ => "cp.async.cg.shared.global",
        };
        assert!(fast.ptx().contains(chunked), "{target}");
        assert!(
            !fast.ptx().contains("ld.global"),
            "{target}: a fallback load"
        );
        // The general variant decides statically: views without the aligned fact are copied
        // element by element, with no `cp.async` path and no run-time alignment test beside it.
        assert!(
            !general.ptx().contains("cp.async.cg.shared.global"),
            "{target}: a chunked copy in the general variant"
        );
        assert!(
            general.ptx().contains("ld.global"),
            "{target}: no element copy"
        );
    }
    // Facts that name no view of the kernel are refused.
    let e = compile_with(module, "gemm", Target::Sm80, &Facts::aligned16(["z"])).unwrap_err();
    assert!(e.to_string().contains("`z`"), "{e}");
}

/// The opaque `mov` of the general variant's tile row exists because LLVM once turned every
/// element-wise copy's address into its own pointer induction variable and causal attention
/// spilled 552/696 bytes; the aligned variant copies in chunks and has no `mov`; neither may spill.
#[test]
fn causal_attentions_aligned_variant_does_not_spill() {
    let module = attention::attention_fwd::<tilekit::dsl::bf16, 64, 16, 64, 4, true>::module();
    let facts = Facts::all_aligned16(module.kernel("attention_fwd").unwrap());
    for target in [Target::Sm80, Target::Sm90a] {
        for f in [Facts::general(), facts.clone()] {
            let c = compile_with(module, "attention_fwd", target, &f).unwrap();
            let r = ptxas::assemble(c.ptx(), target).unwrap().report;
            assert_eq!(
                r.spill_store_bytes + r.spill_load_bytes,
                0,
                "{target} assuming {f}: {} registers, {} B spill stores, {} B spill loads",
                r.registers,
                r.spill_store_bytes,
                r.spill_load_bytes
            );
        }
    }
}
