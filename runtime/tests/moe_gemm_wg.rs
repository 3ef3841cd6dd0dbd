//! The persistent wgmma grouped GEMMs of `tilekit::kernels::moe_gemm_wg` (their registered
//! self-tests: f64 references with per-element bounds at Mixtral-, Qwen3- and DeepSeek-like
//! expert counts, an expert with no row and one with every token, a single token, 1, 3 and
//! more blocks than tiles) on the interpreter and the sm_90a PTX emulator, and what the
//! sm_90a builds are made of.

#![cfg(feature = "jit")]

use tilekit::codegen::{compile_with, hot_loop, ptxas, Facts, Stage, Target};
use tilekit::dsl::bf16;
use tilekit::kernels::moe_gemm_wg::{moe_gemm_swiglu_wg, moe_gemm_wg};
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

/// The aligned sm_90a builds of the registered variants: `wgmma` from shared memory
/// (m64nBNk16 with bf16 operands, HGMMA in the K loop), no spills, and a hot-loop figure
/// within what was measured when they landed (0.98 gate/up, 0.80 down) plus a margin.
#[test]
fn the_sm_90a_builds_issue_wgmma_without_spills() {
    let builds = [
        (
            moe_gemm_swiglu_wg::<bf16, 64, 4>::try_module().expect("the kernel builds"),
            moe_gemm_swiglu_wg::<bf16, 64, 4>::NAME,
            "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16",
            8,
            1.1,
        ),
        (
            moe_gemm_wg::<f32, 128, 4>::try_module().expect("the kernel builds"),
            moe_gemm_wg::<f32, 128, 4>::NAME,
            "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16",
            4,
            0.9,
        ),
    ];
    for (module, name, wgmma, per_step, limit) in builds {
        let facts = Facts::all_aligned16(module.kernel(name).expect("the kernel"));
        let c = compile_with(module, name, Target::Sm90a, &facts).expect("sm_90a compiles");
        let ptx = c.stage(Stage::Ptx).to_string();
        assert!(ptx.contains(wgmma), "{name}: no {wgmma} in the PTX");
        let assembled = ptxas::assemble(c.ptx(), Target::Sm90a).expect("ptxas");
        let report = assembled.report;
        assert_eq!(
            (report.spill_store_bytes, report.spill_load_bytes),
            (0, 0),
            "{name}: {report:?}"
        );
        let text = c.sass().expect("the SASS");
        let h = hot_loop::sass_hot_loop(&text)
            .expect("the SASS reads")
            .expect("a K loop");
        assert_eq!(h.mix.get("HGMMA"), Some(&per_step), "{name}: {h}");
        let f = h.figure().expect("a figure");
        println!("{name} sm_90a aligned: {} regs, {h}", report.registers);
        assert!(
            f > 0.0 && f <= limit,
            "{name}: figure {f:.3} over {limit}: {h}"
        );
    }
}
