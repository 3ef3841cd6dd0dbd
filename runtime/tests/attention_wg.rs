//! The sm_90a attention forward on warpgroup mma (`tilekit::kernels::attention_wg`): its
//! registered variants agree with the f64 reference on the interpreter and the sm_90a PTX
//! emulator at awkward lengths (1, 17, 130, 200 and 1000 in the self-test; 999×1001 here), with masks that
//! empty whole key tiles and rows; on sm_90a both products are `wgmma` (S from two descriptors,
//! P·V with a register A), with no spills, and the hd128 key loop's figure is bounded; `attention::forward` runs it on sm_90a devices.
#![cfg(feature = "jit")]

use tilekit::codegen::{compile_with, hot_loop, ptxas, Facts, Stage, Target};
use tilekit::dsl::bf16;
use tilekit::ir::Module;
use tilekit::kernels::attention::{forward, reference_with, ForwardOptions};
use tilekit::kernels::attention_wg::{attention_fwd_wg, check_against_reference, native_on};
use tilekit::kernels::check::{normalized_max_error, Rng};
use tilekit::Device;

/// A registered variant: its generic arguments (for messages), head dim and module.
struct Case {
    args: &'static str,
    d: usize,
    module: fn() -> Result<&'static Module, tilekit::Error>,
}

macro_rules! case {
    (<$d:literal, $kv:literal, $wg:literal, $c:literal>) => {
        Case {
            args: concat!("<bf16,", $d, ",", $kv, ",", $wg, ",", $c, ">"),
            d: $d,
            module: || attention_fwd_wg::<bf16, $d, $kv, $wg, $c>::try_module(),
        }
    };
}

fn registered() -> Vec<Case> {
    vec![
        case!(<64, 128, 2, false>),
        case!(<64, 128, 2, true>),
        case!(<128, 128, 2, false>),
        case!(<128, 128, 2, true>),
    ]
}

/// The hd128 key loop's figure (non-tensor SASS instructions per 1k tensor FLOPs per warp) is
/// at most this: the bound (0.548 measured). About 0.1 of it is the copies' per-chunk
/// address and bounds math: the views are rank 3 and TMA copy groups take rank-2 views only, so
/// the aligned compile keeps `cp.async`.
const BOUND: f64 = 0.55;

fn name() -> &'static str {
    attention_fwd_wg::<bf16, 64, 128, 2, false>::NAME
}

/// The variant compiled for sm_90a, every view assumed 16-byte aligned (what an aligned launch
/// runs).
fn compiled(case: &Case) -> tilekit::codegen::Compiled {
    let module = (case.module)().expect("the kernel builds");
    let func = module.kernel(name()).expect("the module has the kernel");
    compile_with(module, name(), Target::Sm90a, &Facts::all_aligned16(func))
        .unwrap_or_else(|e| panic!("attention_fwd_wg{}: {e}", case.args))
}

/// Both products are wgmma on sm_90a: `S = Q·Kᵀ` m64n128 with A from a descriptor, `P·V`
/// m64n{D} with A as a brace list of registers; no `mma.sync`. No spills, no ptxas advisory
/// (serialized wgmma), and the key loop runs HGMMA only; the hd128 loop's figure is at most
/// [`BOUND`]. Prints the figures (`--nocapture`).
#[test]
fn both_products_are_wgmma_without_spills_and_the_hd128_figure_is_within_bound() {
    for case in registered() {
        let c = compiled(&case);
        let ptx = c.stage(Stage::Ptx).to_string();
        let s_op = "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16";
        let pv_op = format!(
            "wgmma.mma_async.sync.aligned.m64n{}k16.f32.bf16.bf16",
            case.d
        );
        let a_of = |line: &str| {
            line.split('}')
                .nth(1)
                .unwrap_or("")
                .trim_start()
                .to_string()
        };
        let s_desc = ptx
            .lines()
            .filter(|l| l.contains(s_op))
            .any(|l| !a_of(l).starts_with(", {"));
        let pv_regs = ptx
            .lines()
            .filter(|l| l.contains(&pv_op))
            .any(|l| a_of(l).starts_with(", {"));
        assert!(
            s_desc,
            "attention_fwd_wg{}: no descriptor-A {s_op}",
            case.args
        );
        assert!(
            pv_regs,
            "attention_fwd_wg{}: no register-A {pv_op}",
            case.args
        );
        assert!(
            !ptx.contains("mma.sync.aligned"),
            "attention_fwd_wg{}",
            case.args
        );

        let assembled = ptxas::assemble(c.ptx(), Target::Sm90a)
            .unwrap_or_else(|e| panic!("attention_fwd_wg{}: {e}", case.args));
        let advisories = ptxas::performance_advisories(&assembled.log);
        assert!(
            advisories.is_empty(),
            "attention_fwd_wg{}: {advisories:?}",
            case.args
        );
        let report = assembled.report;
        assert_eq!(
            (report.spill_store_bytes, report.spill_load_bytes),
            (0, 0),
            "attention_fwd_wg{}: {report:?}",
            case.args
        );
        let text = c
            .sass()
            .unwrap_or_else(|e| panic!("attention_fwd_wg{}: {e}", case.args));
        let h = hot_loop::sass_hot_loop(&text)
            .expect("the SASS reads")
            .unwrap_or_else(|| panic!("attention_fwd_wg{}: no loop", case.args));
        assert!(
            !h.mix.contains_key("HMMA"),
            "attention_fwd_wg{}: {h}",
            case.args
        );
        // Per warpgroup and key tile: D/16 HGMMA for S, KV/16 = 8 for P·V.
        assert_eq!(
            h.tensor,
            case.d / 16 + 8,
            "attention_fwd_wg{}: {h}",
            case.args
        );
        let f = h.figure().expect("a figure");
        println!(
            "attention_fwd_wg{} sm_90a aligned: {} regs, {} B shared, {h}; top: {:?}",
            case.args,
            report.registers,
            report.shared_bytes,
            h.top_ops(12, "HGMMA")
        );
        if case.d == 128 {
            assert!(
                f <= BOUND,
                "attention_fwd_wg{}: figure {f:.3} > {BOUND}: {h}",
                case.args
            );
        }
    }
}

/// The registered self-test (lengths 1, 17, 130, 200, 1000; seq_q ≠ seq_kv; GQA/MQA; -inf key tiles
/// and rows) on the interpreter and the sm_90a emulator.
#[test]
fn the_self_test_passes_on_the_interpreter_and_the_sm_90a_emulator() {
    let info = tilekit::registry::kernels()
        .into_iter()
        .find(|k| k.name == name())
        .expect("attention_fwd_wg is registered");
    let test = info.selftest.expect("attention_fwd_wg has a self-test");
    for device in [Device::Cpu, Device::emulator("sm_90a").unwrap()] {
        let out = test(&device).unwrap_or_else(|e| panic!("on {}: {e}", device.name()));
        println!("attention_fwd_wg self-test on {}: {out}", device.name());
    }
}

/// A long length at hd 64 (~1000: several unmasked interior tiles, a ragged last tile; the
/// self-test runs hd 128 causal at 1000), with more keys than queries and GQA, on both devices.
#[test]
fn long_sequences_agree_with_the_reference() {
    let mut rng = Rng::fresh();
    for device in [Device::Cpu, Device::emulator("sm_90a").unwrap()] {
        check_against_reference(&device, &mut rng, (64, false, false), (2, 1, 999, 1001))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// `attention::forward` runs the warpgroup kernel on an sm_90a device (its own self-test covers
/// the kernel; here the dispatch): plain and causal GQA attention at hd 64 and 128 launch
/// `attention_fwd_wg` (the emulator's record of the kernels it ran) and agree with the
/// reference; the interpreter and sm_80 are not devices it runs on.
#[test]
fn forward_dispatches_to_it_on_sm_90a() {
    let sm90 = Device::emulator("sm_90a").unwrap();
    assert!(native_on(&sm90));
    assert!(!native_on(&Device::Cpu));
    assert!(!native_on(&Device::emulator("sm_80").unwrap()));
    let mut rng = Rng::fresh();
    let bf = tilekit::ir::ScalarType::BF16;
    for (d, causal, seq_q, seq_kv) in [(64, true, 70, 150), (128, false, 33, 33)] {
        let q = rng.tensor(bf, &[4, seq_q, d], -2.0, 2.0);
        let k = rng.tensor(bf, &[2, seq_kv, d], -2.0, 2.0);
        let v = rng.tensor(bf, &[2, seq_kv, d], -1.0, 1.0);
        let opts = ForwardOptions {
            causal,
            ..ForwardOptions::new(0.1)
        };
        let (result, codes) = tilekit_emu::banks::collect(|| forward(&sm90, &q, &k, &v, &opts));
        let (o, lse) = result.expect("forward runs");
        let ran: Vec<&str> = codes.iter().map(|c| c.kernel.as_str()).collect();
        assert_eq!(
            ran,
            [name()],
            "hd {d} causal {causal}: the emulator ran {ran:?}"
        );
        let dims = (4, 2, seq_q, seq_kv, d);
        let (wo, wl) = reference_with(&q.to_vec(), &k.to_vec(), &v.to_vec(), dims, &opts);
        let (eo, el) = (
            normalized_max_error(&o.to_vec(), &wo),
            normalized_max_error(&lse.to_vec(), &wl),
        );
        assert!(
            eo <= 1e-2 && el <= 1e-5,
            "hd {d} causal {causal}: O {eo:.2e}, LSE {el:.2e} (seed {})",
            rng.seed
        );
    }
}
