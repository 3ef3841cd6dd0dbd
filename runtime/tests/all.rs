//! The runtime's integration tests, one module per file.

// Each module was its own test binary; one binary links the compiler and the runtime once
// instead of once per file (each such binary is ~300 MB, and CI's disk is finite).

#[path = "aligned_copies.rs"]
mod aligned_copies;
#[path = "approx_numerics.rs"]
mod approx_numerics;
#[path = "attention_alibi.rs"]
mod attention_alibi;
#[path = "attention_decode.rs"]
mod attention_decode;
#[path = "attention_f16.rs"]
mod attention_f16;
#[path = "attention_head_dims.rs"]
mod attention_head_dims;
#[path = "attention_varlen.rs"]
mod attention_varlen;
#[path = "attention_wg.rs"]
mod attention_wg;
#[path = "bank_conflicts.rs"]
mod bank_conflicts;
#[path = "cli_pipe.rs"]
mod cli_pipe;
#[path = "dsl_atomics.rs"]
mod dsl_atomics;
#[path = "dsl_bitcast_prod.rs"]
mod dsl_bitcast_prod;
#[path = "dsl_compare_select.rs"]
mod dsl_compare_select;
#[path = "dsl_device_assert.rs"]
mod dsl_device_assert;
#[path = "dsl_philox.rs"]
mod dsl_philox;
#[path = "dsl_pointer_tables.rs"]
mod dsl_pointer_tables;
#[path = "dsl_scan.rs"]
mod dsl_scan;
#[path = "dsl_topk.rs"]
mod dsl_topk;
#[path = "dsl_vector_atomics.rs"]
mod dsl_vector_atomics;
#[path = "emulator.rs"]
mod emulator;
#[path = "fp8.rs"]
mod fp8;
#[path = "fp8_moe.rs"]
mod fp8_moe;
#[path = "fp8_moe_layer.rs"]
mod fp8_moe_layer;
#[path = "gemm_wg.rs"]
mod gemm_wg;
#[path = "gemm_ws_wg.rs"]
mod gemm_ws_wg;
#[path = "hot_loop.rs"]
mod hot_loop;
#[path = "linear_ce.rs"]
mod linear_ce;
#[path = "loss.rs"]
mod loss;
#[path = "moe_bwd.rs"]
mod moe_bwd;
#[path = "moe_gemm.rs"]
mod moe_gemm;
#[path = "moe_gemm_wg.rs"]
mod moe_gemm_wg;
#[path = "moe_routing.rs"]
mod moe_routing;
#[path = "muon.rs"]
mod muon;
#[path = "optim8.rs"]
mod optim8;
#[path = "optim_api.rs"]
mod optim_api;
#[path = "optim_multi.rs"]
mod optim_multi;
#[path = "ptxas_advisories.rs"]
mod ptxas_advisories;
#[path = "setmaxnreg.rs"]
mod setmaxnreg;
#[path = "shampoo.rs"]
mod shampoo;
#[path = "spills.rs"]
mod spills;
#[path = "stmatrix_tma_store.rs"]
mod stmatrix_tma_store;
#[path = "tensor_map.rs"]
mod tensor_map;
#[path = "tf32_mma.rs"]
mod tf32_mma;
#[path = "user_crate.rs"]
mod user_crate;
#[path = "vector_accesses.rs"]
mod vector_accesses;
#[path = "wgmma.rs"]
mod wgmma;
#[path = "wgmma_async.rs"]
mod wgmma_async;

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
