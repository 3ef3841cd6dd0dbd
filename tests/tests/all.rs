//! The cross-crate tests, one module per file.

// Each module was its own test binary; one binary links the compiler and the runtime once
// instead of once per file (each such binary is ~300 MB, and CI's disk is finite).

#[path = "dsl_adamw.rs"]
mod dsl_adamw;
#[path = "dsl_attention.rs"]
mod dsl_attention;
#[path = "dsl_attention_alibi.rs"]
mod dsl_attention_alibi;
#[path = "dsl_attention_bwd.rs"]
mod dsl_attention_bwd;
#[path = "dsl_attention_f16.rs"]
mod dsl_attention_f16;
#[path = "dsl_attention_long.rs"]
mod dsl_attention_long;
#[path = "dsl_attention_varlen.rs"]
mod dsl_attention_varlen;
#[path = "dsl_cross_entropy.rs"]
mod dsl_cross_entropy;
#[path = "dsl_gemm.rs"]
mod dsl_gemm;
#[path = "dsl_index_checks.rs"]
mod dsl_index_checks;
#[path = "dsl_moe.rs"]
mod dsl_moe;
#[path = "dsl_ops.rs"]
mod dsl_ops;
#[path = "dsl_races.rs"]
mod dsl_races;
#[path = "dsl_softmax.rs"]
mod dsl_softmax;
#[path = "dsl_ws_gemm.rs"]
mod dsl_ws_gemm;
#[path = "fuzz_short.rs"]
mod fuzz_short;
#[path = "interp_adamw.rs"]
mod interp_adamw;
#[path = "interp_gemm.rs"]
mod interp_gemm;
#[path = "interp_moe.rs"]
mod interp_moe;
#[path = "interp_numerics.rs"]
mod interp_numerics;
#[path = "interp_softmax.rs"]
mod interp_softmax;
#[path = "interp_ws_gemm.rs"]
mod interp_ws_gemm;
#[path = "kernel_index_limits.rs"]
mod kernel_index_limits;
#[path = "launch_contracts.rs"]
mod launch_contracts;
#[path = "review_dsl.rs"]
mod review_dsl;
#[path = "runtime_api.rs"]
mod runtime_api;
#[path = "text_examples.rs"]
mod text_examples;

/// The registered kernels a test in `file` may iterate: the library's and those `file` defines
/// itself. Every module's kernels register in this one binary, so a test over "every registered
/// kernel" would otherwise also meet the other modules' demonstration kernels.
#[allow(dead_code)]
pub(crate) fn library_kernels_and(file: &str) -> Vec<&'static tilekit::registry::KernelInfo> {
    tilekit::registry::kernels()
        .into_iter()
        .filter(|k| k.file.starts_with("runtime/src/") || k.file == file)
        .collect()
}

/// Every `tests/*.rs` file is a module here or a test target of its own in Cargo.toml
/// (`autotests = false`: a file that is neither would silently never run).
#[test]
fn every_test_file_is_compiled() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let root = include_str!("all.rs");
    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"),
    )
    .expect("Cargo.toml reads");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tests/ lists") {
        let name = entry
            .expect("an entry")
            .file_name()
            .into_string()
            .expect("a UTF-8 name");
        if !name.ends_with(".rs") || name == "all.rs" {
            continue;
        }
        let as_module = format!("#[path = \"{name}\"]");
        let as_target = format!("path = \"tests/{name}\"");
        if !root.contains(&as_module) && !manifest.contains(&as_target) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "test files that nothing compiles: {missing:?}"
    );
}
