//! The persistent wgmma grouped GEMMs of `tilekit::kernels::moe_gemm_wg` (their registered
//! self-tests: f64 references with per-element bounds at Mixtral-, Qwen3- and DeepSeek-like
//! expert counts, an expert with no row and one with every token, a single token, 1, 3 and
//! more blocks than tiles) on the interpreter and the sm_90a PTX emulator, and what the
//! sm_90a builds are made of.

#![cfg(feature = "jit")]

use tilekit::Device;

fn selftest_of(name: &str) -> tilekit::registry::SelfTest {
    tilekit::registry::kernels()
        .into_iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("{name} is registered"))
        .selftest
        .unwrap_or_else(|| panic!("{name} has a self-test"))
}

#[test]
fn persistent_grouped_gemm_self_tests_pass_on_the_interpreter_and_the_sm90a_emulator() {
    for name in ["moe_gemm_wg", "moe_gemm_swiglu_wg"] {
        let test = selftest_of(name);
        for device in [Device::Cpu, Device::emulator("sm_90a").unwrap()] {
            let out = test(&device).unwrap_or_else(|e| panic!("{name} on {}: {e}", device.name()));
            assert!(out.contains("runs against"), "{name}: {out}");
            println!("{name} on {}: {out}", device.name());
        }
    }
}
