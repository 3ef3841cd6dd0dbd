//! Snapshots (insta) of the MLIR as generated, the LLVM IR after O3 and the PTX of small kernels:
//! a change to a lowering rule shows up as a reviewable diff in `codegen/tests/snapshots/`. The
//! MLIR and LLVM stages do not depend on the NVIDIA target yet, so they are kept for sm_80; the
//! PTX for both targets.

mod kernels;

use tilekit_codegen::{compile, Stage, Target};
use tilekit_ir::ScalarType::BF16;
use tilekit_ir::{MmaVariant, Module, Swizzle};

fn snapshot(name: &str, m: &Module, kernel: &str, stages: &[Stage]) {
    for t in [Target::Sm80, Target::Sm90a] {
        let c = compile(m, kernel, t).unwrap_or_else(|e| panic!("{name} {t}: {e}"));
        for &s in stages {
            if t == Target::Sm80 || s == Stage::Ptx {
                insta::assert_snapshot!(format!("{name}.{t}.{}", s.name()), c.stage(s));
            }
        }
    }
}

const ALL: [Stage; 4] = [Stage::Mlir, Stage::MlirLowered, Stage::LlvmOpt, Stage::Ptx];

#[test]
fn scale_tile_by_scalar() {
    snapshot("scale", &kernels::scale(), "scale", &ALL);
}

#[test]
fn mma_from_global_memory() {
    let m = kernels::mma_global(1, 1, MmaVariant::AB);
    snapshot(
        "mma_global_ab",
        &m,
        "mma_global",
        &[Stage::Mlir, Stage::LlvmOpt, Stage::Ptx],
    );
}

#[test]
fn softmax_rows_with_shuffles_and_ex2() {
    let m = kernels::softmax_rows();
    snapshot(
        "softmax_rows",
        &m,
        "softmax_rows",
        &[Stage::Mlir, Stage::Ptx],
    );
}

#[test]
fn gemm_through_swizzled_shared_memory() {
    let m = kernels::gemm_shared(BF16, Swizzle::B128);
    snapshot("gemm_shared", &m, "gemm_shared", &[Stage::Mlir, Stage::Ptx]);
}

#[test]
fn masks_iota_and_if() {
    snapshot("masks", &kernels::masks(), "masks", &[Stage::Ptx]);
}

#[test]
fn elementwise_vectors_spread_over_lanes() {
    snapshot(
        "vector_map",
        &kernels::vector_map(),
        "vector_map",
        &[Stage::Ptx],
    );
}
