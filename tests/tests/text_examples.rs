//! Kernels survive the text form: printing, parsing and printing again gives the same text, and
//! the parsed module verifies — for the IR builder's GEMM (`tilekit_examples::gemm`) and every
//! registered variant of the kernel library. The builder's text is snapshot-tested: a change to
//! the IR it builds shows up as a reviewable diff in `tests/tests/snapshots/` (the library's
//! kernels have theirs in the `dsl_*` tests).
//!
//! `snapshots/all__text_examples__{attention,attention_causal,softmax,adamw,moe,ws_gemm}.snap`
//! are the Tile IR of builder-made kernels that `examples/` no longer has (the library's DSL
//! kernels replaced them). No test here writes them any more: they stay as fixed Tile IR inputs
//! of the codegen tests (`codegen/tests/acceptance`, `amd.rs`, `ptx.rs`), which read them
//! without depending on this crate.

use tilekit::ir::{parse_module, print_module, verify, Module};
use tilekit_examples::gemm;

fn builder_kernels() -> Vec<(&'static str, Module)> {
    vec![
        ("gemm", gemm::build(&Default::default())),
        (
            "gemm_bf16_out",
            gemm::build(&gemm::GemmConfig {
                out: tilekit::ir::ScalarType::BF16,
                ..Default::default()
            }),
        ),
    ]
}

fn round_trips(name: &str, m: &Module) {
    let text = print_module(m);
    let parsed = parse_module(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
    assert_eq!(print_module(&parsed), text, "{name}");
    assert!(
        verify(&parsed).is_ok(),
        "{name}: the parsed module does not verify"
    );
}

#[test]
fn builder_kernels_round_trip_through_text() {
    for (name, m) in builder_kernels() {
        round_trips(name, &m);
    }
}

#[test]
fn library_kernels_round_trip_through_text() {
    let mut variants = 0;
    for k in crate::library_kernels_and(file!()) {
        for v in k.variants {
            round_trips(&format!("{}{}", k.name, v.args), (v.module)());
            variants += 1;
        }
    }
    assert!(variants >= 20, "only {variants} variants");
}

#[test]
fn builder_kernel_text_snapshots() {
    for (name, m) in builder_kernels() {
        insta::assert_snapshot!(name, print_module(&m));
    }
}
