//! The acceptance kernels survive the text form: printing, parsing and printing again gives the
//! same text, and the parsed module verifies.

use tilekit::ir::{parse_module, print_module, verify, Module};
use tilekit_examples::{adamw, attention, gemm, moe, softmax, ws_gemm};

fn kernels() -> Vec<(&'static str, Module)> {
    vec![
        ("gemm", gemm::build(&Default::default())),
        (
            "attention causal",
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
