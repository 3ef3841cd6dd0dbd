//! The acceptance kernels at their default configurations, read from Tile IR text snapshots so
//! that this crate's tests need not depend on the runtime and examples crates (which depend on
//! it). `gemm` and `gemm_bf16_out` are the IR builder's GEMM, kept up to date by
//! `tests/tests/text_examples.rs`; the other six are fixed Tile IR of builder-made kernels that
//! `examples/` no longer has (the library's DSL kernels, in [`DSL_KERNELS`], replaced them), kept
//! as inputs whose text no test rewrites.
#![allow(dead_code)]

use std::path::Path;

use tilekit_ir::Module;

/// Snapshot name, kernel name.
pub const KERNELS: [(&str, &str); 8] = [
    ("gemm", "gemm"),
    ("gemm_bf16_out", "gemm"),
    ("attention", "attention_fwd"),
    ("attention_causal", "attention_fwd"),
    ("softmax", "softmax_rows"),
    ("adamw", "adamw_step"),
    ("moe", "moe_expert_proj"),
    ("ws_gemm", "ws_gemm"),
];

/// The kernel library's DSL kernels (`runtime/src/kernels/`) at the configurations of their
/// Tile IR snapshots in `tests/tests/dsl_*.rs`: snapshot file stem, kernel name.
pub const DSL_KERNELS: [(&str, &str); 7] = [
    ("dsl_gemm__dsl_gemm_tile_ir", "gemm"),
    ("dsl_attention__dsl_attention", "attention_fwd"),
    ("dsl_attention__dsl_attention_causal", "attention_fwd"),
    ("dsl_softmax__dsl_softmax_tile_ir", "softmax_rows"),
    ("dsl_adamw__dsl_adamw_tile_ir", "adamw_step"),
    ("dsl_moe__dsl_moe_tile_ir", "moe_expert_proj"),
    ("dsl_ws_gemm__dsl_ws_gemm_tile_ir", "ws_gemm"),
];

/// Library kernels for sm_90a only (wgmma, TMA, `setmaxnreg`), from their Tile IR snapshots in
/// `tests/tests/dsl_*.rs`: snapshot file stem, kernel name.
pub const SM90A_DSL_KERNELS: [(&str, &str); 1] =
    [("dsl_ws_gemm__dsl_gemm_ws_wg_tile_ir", "gemm_ws_wg")];

/// Parses `tests/tests/snapshots/all__text_examples__<name>.snap` (an insta snapshot: a `---`
/// header, then the module's text).
pub fn module(name: &str) -> Module {
    snapshot_module(&format!("text_examples__{name}"))
}

/// Parses the Tile IR module of insta snapshot `tests/tests/snapshots/all__<stem>.snap` (the
/// snapshotting tests are modules of the `all` test binary, whose name insta puts first).
pub fn snapshot_module(stem: &str) -> Module {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/tests/snapshots")
        .join(format!("all__{stem}.snap"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let body = text
        .splitn(3, "---\n")
        .nth(2)
        .unwrap_or_else(|| panic!("{} has no insta header", path.display()));
    let m = tilekit_ir::parse_module(body)
        .unwrap_or_else(|e| panic!("parsing {}: {e:?}", path.display()));
    tilekit_ir::verify(&m).expect("acceptance kernel verifies");
    m
}
