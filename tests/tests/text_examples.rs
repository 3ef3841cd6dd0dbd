//! The acceptance kernels survive the text form: printing, parsing and printing again gives the
//! same text, and the parsed module verifies. Their text is snapshot-tested: a change to the IR a
//! kernel builds shows up as a reviewable diff in `tests/tests/snapshots/`.

use tilekit::ir::{parse_module, print_module, verify, Module};
use tilekit_examples::{adamw, attention, gemm, moe, softmax, ws_gemm};

fn kernels() -> Vec<(&'static str, Module)> {
    vec![
        ("gemm", gemm::build(&Default::default())),
        (
            "gemm_bf16_out",
            gemm::build(&gemm::GemmConfig {
                out: tilekit::ir::ScalarType::BF16,
                ..Default::default()
            }),
        ),
        ("attention", attention::build(&Default::default())),
        (
            "attention_causal",
            attention::build(&attention::AttentionConfig {
                causal: true,
                ..Default::default()
            }),
        ),
        ("softmax", softmax::build(&Default::default())),
        ("adamw", adamw::build(&Default::default())),
        ("moe", moe::build(&Default::default())),
        ("ws_gemm", ws_gemm::build(&Default::default())),
    ]
}

#[test]
fn acceptance_kernels_round_trip_through_text() {
    for (name, m) in kernels() {
        let text = print_module(&m);
        let parsed = parse_module(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
        assert_eq!(print_module(&parsed), text, "{name}");
        assert!(
            verify(&parsed).is_ok(),
            "{name}: the parsed module does not verify"
        );
    }
}

#[test]
fn acceptance_kernel_text_snapshots() {
    for (name, m) in kernels() {
        insta::assert_snapshot!(name, print_module(&m));
    }
}
