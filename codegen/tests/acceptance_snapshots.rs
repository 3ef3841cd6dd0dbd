//! Snapshots (insta) of the MLIR as generated, the LLVM IR as translated from it and the PTX of
//! the acceptance kernels (GEMM, attention forward, softmax, AdamW, MoE expert projection) at
//! their default configurations, on both NVIDIA targets: a change to a lowering rule, the pass
//! pipeline or the LLVM version shows up as a reviewable diff in `codegen/tests/snapshots/`.
//! The kernels are read from the Tile IR snapshots of `tests/tests/text_examples.rs`.
//!
//! Until the Hopper paths (wgmma, TMA) land, the lowering does not look at the NVIDIA target:
//! MLIR and LLVM IR are the same for sm_80 and sm_90a, which the tests assert, and are kept
//! once (`<kernel>.mlir`, `<kernel>.llvm`); the PTX is kept per target. When a lowering starts
//! to depend on the target, snapshot those stages per target as well.

mod acceptance;

use tilekit_codegen::{compile, Stage, Target};

fn snapshot_stages(snapshot: &str, kernel: &str) {
    let compile_for = |t: Target| {
        compile(&acceptance::module(snapshot), kernel, t)
            .unwrap_or_else(|e| panic!("{snapshot} {t}: {e}"))
    };
    let (sm80, sm90a) = (compile_for(Target::Sm80), compile_for(Target::Sm90a));
    for s in [Stage::Mlir, Stage::Llvm] {
        assert!(
            sm80.stage(s) == sm90a.stage(s),
            "{snapshot}: the {} differs between sm_80 and sm_90a; snapshot it per target",
            s.name()
        );
        insta::assert_snapshot!(format!("{snapshot}.{}", s.name()), sm80.stage(s));
    }
    for c in [&sm80, &sm90a] {
        insta::assert_snapshot!(format!("{snapshot}.{}.ptx", c.target), c.ptx());
    }
}

#[test]
fn gemm_stages() {
    snapshot_stages("gemm", "gemm");
}

#[test]
fn attention_forward_stages() {
    snapshot_stages("attention", "attention_fwd");
}

#[test]
fn softmax_stages() {
    snapshot_stages("softmax", "softmax_rows");
}

#[test]
fn adamw_stages() {
    snapshot_stages("adamw", "adamw_step");
}

#[test]
fn moe_expert_projection_stages() {
    snapshot_stages("moe", "moe_expert_proj");
}
