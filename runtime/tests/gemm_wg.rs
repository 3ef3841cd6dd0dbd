//! The warpgroup GEMM (`tilekit::kernels::gemm_wg`): its deeper rings (over the 64 KiB the
//! registered variants keep to, so only NVIDIA targets take them) agree with an f64 reference on
//! the PTX emulator for sm_90a and sm_80 at shapes that are not multiples of the tile; on sm_90a
//! every variant's mma is `wgmma` with both operands from descriptors, and its K loop's
//! tensor-core instructions are HGMMA with no spills; sm_80 keeps `mma.sync`. The registered
//! variants' self-tests run on both emulators in `emulator.rs`.
#![cfg(feature = "jit")]

use tilekit::codegen::{compile_with, hot_loop, ptxas, sass, Facts, Stage, Target};
use tilekit::dsl::bf16;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::{Module, ScalarType::BF16, ScalarType::F32};
use tilekit::kernels::check::{normalized_max_error, poisoned, Rng};
use tilekit::kernels::gemm::{grid, reference};
use tilekit::kernels::gemm_wg::gemm_wg;
use tilekit::Device;

type Launch =
    fn(&Device, [u32; 3], &HostTensor, &HostTensor, &mut HostTensor) -> Result<(), tilekit::Error>;

/// An instantiation under test: its arguments (for messages), block tile, module and launch.
struct Case {
    args: &'static str,
    bm: usize,
    bn: usize,
    module: fn() -> Result<&'static Module, tilekit::Error>,
    launch: Launch,
}

macro_rules! case {
    (<$o:ty, $bm:literal, $bn:literal, $bk:literal, $s:literal>) => {
        Case {
            args: concat!(
                "<",
                stringify!($o),
                ",",
                $bm,
                ",",
                $bn,
                ",",
                $bk,
                ",",
                $s,
                ">"
            ),
            bm: $bm,
            bn: $bn,
            module: || gemm_wg::<$o, $bm, $bn, $bk, $s>::try_module(),
            launch: |d, g, a, b, c| gemm_wg::<$o, $bm, $bn, $bk, $s>::launch(d, g, a, b, c),
        }
    };
}

/// NVIDIA-only instantiations (see the kernel's documentation): the K step of 64 at two
/// warpgroups and rings deeper than 64 KiB (all within sm_80's 163 KiB).
fn deep_rings() -> Vec<Case> {
    vec![
        case!(<f32, 128, 128, 64, 2>),
        case!(<f32, 128, 128, 64, 4>),
        case!(<f32, 128, 256, 32, 2>),
        case!(<f32, 128, 256, 64, 3>),
    ]
}

/// The registered variants (see the kernel's `variants(…)`).
fn registered() -> Vec<Case> {
    vec![
        case!(<f32, 128, 128, 32, 4>),
        case!(<bf16, 128, 128, 32, 4>),
        case!(<f32, 128, 256, 16, 4>),
        case!(<f32, 64, 128, 64, 2>),
        case!(<f32, 64, 256, 32, 3>),
    ]
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
}

/// Runs `case` on `device` at each (m, n, k) against the f64 reference (f32 output).
fn agrees(case: &Case, device: &Device, shapes: &[(usize, usize, usize)]) {
    let mut rng = Rng::new(seed());
    for &(m, n, k) in shapes {
        let a = rng.tensor(BF16, &[m, k], -1.0, 1.0);
        let b = rng.tensor(BF16, &[k, n], -1.0, 1.0);
        let want = reference(&a.to_vec(), &b.to_vec(), m, k, n);
        let mut c = poisoned(F32, &[m, n]);
        (case.launch)(device, grid(m, n, case.bm, case.bn), &a, &b, &mut c).unwrap_or_else(|e| {
            panic!("gemm_wg{} {m}×{n}×{k} on {}: {e}", case.args, device.name())
        });
        let err = normalized_max_error(&c.to_vec(), &want);
        assert!(
            err <= 1e-5,
            "gemm_wg{} {m}×{n}×{k} on {}: normalized error {err:.2e} (seed {})",
            case.args,
            device.name(),
            rng.seed
        );
    }
}

/// Ragged M, N and K (partial tiles everywhere, K steps past the end of K masked), and more
/// tile rows than the block order's group of 8 with K spanning more steps than the ring.
const SHAPES: [(usize, usize, usize); 2] = [(150, 300, 200), (1030, 70, 330)];

#[test]
fn deep_rings_agree_with_the_reference_on_the_sm_90a_emulator() {
    let device = Device::emulator("sm_90a").unwrap();
    for case in deep_rings() {
        agrees(&case, &device, &SHAPES);
    }
}

#[test]
fn deep_rings_agree_with_the_reference_on_the_sm_80_emulator() {
    let device = Device::emulator("sm_80").unwrap();
    for case in deep_rings() {
        agrees(&case, &device, &SHAPES[..1]);
    }
}

#[test]
fn deep_rings_agree_with_the_reference_on_the_interpreter() {
    let device = Device::Cpu;
    for case in deep_rings() {
        agrees(&case, &device, &SHAPES);
    }
}

/// One variant compiled for `target`, assuming every view 16-byte aligned (the variant a
/// launch with aligned tensors runs; the general one differs only in its copies).
fn compiled(case: &Case, target: Target) -> tilekit::codegen::Compiled {
    let module = (case.module)().expect("the kernel builds");
    let func = module
        .kernel(gemm_wg_name())
        .expect("the module has the kernel");
    let facts = Facts::all_aligned16(func);
    compile_with(module, gemm_wg_name(), target, &facts)
        .unwrap_or_else(|e| panic!("gemm_wg{} on {target}: {e}", case.args))
}

fn gemm_wg_name() -> &'static str {
    gemm_wg::<f32, 128, 128, 64, 2>::NAME
}

/// On sm_90a the mma of every variant is `wgmma` with A and B from descriptors (no register
/// A, no `mma.sync`), N as wide as the block tile; on sm_80 it is `mma.sync`.
#[test]
fn the_mma_is_wgmma_from_descriptors_on_sm_90a_and_mma_sync_on_sm_80() {
    for case in registered().into_iter().chain(deep_rings()) {
        let c = compiled(&case, Target::Sm90a);
        let ptx = c.stage(Stage::Ptx).to_string();
        let op = format!(
            "wgmma.mma_async.sync.aligned.m64n{}k16.f32.bf16.bf16",
            case.bn
        );
        let line = ptx
            .lines()
            .find(|l| l.contains(&op))
            .unwrap_or_else(|| panic!("gemm_wg{}: no {op} in the sm_90a PTX", case.args));
        // Descriptor A: after the accumulator list comes a 64-bit register, not a brace list.
        let after_d = line.split('}').nth(1).unwrap_or("");
        assert!(!after_d.trim_start().starts_with(", {"), "{line}");
        assert!(!ptx.contains("mma.sync.aligned"), "gemm_wg{}", case.args);
        let sm80 = compiled(&case, Target::Sm80).stage(Stage::Ptx).to_string();
        assert!(!sm80.contains("wgmma"), "gemm_wg{}", case.args);
        assert!(
            sm80.contains("mma.sync.aligned.m16n8k16"),
            "gemm_wg{}",
            case.args
        );
    }
}

/// The K loop of every variant on sm_90a: HGMMA only (no HMMA), `BK / 16` of them per
/// warpgroup and step, a finite figure; no spills, and no ptxas advisory that it serialized
/// the wgmma. Prints the figures docs/BENCHMARKS.md
/// records (`-- gemm_wg:: --nocapture`).
#[test]
fn the_sm_90a_k_loop_runs_hgmma_without_spills() {
    for case in registered().into_iter().chain(deep_rings()) {
        let c = compiled(&case, Target::Sm90a);
        let assembled = ptxas::assemble(c.ptx(), Target::Sm90a)
            .unwrap_or_else(|e| panic!("gemm_wg{}: {e}", case.args));
        // ptxas says so when it serializes wgmma (its C7510/C7515 performance advisories).
        let advisories = ptxas::performance_advisories(&assembled.log);
        assert!(
            advisories.is_empty(),
            "gemm_wg{}: {advisories:?}",
            case.args
        );
        let report = assembled.report;
        assert_eq!(
            (report.spill_store_bytes, report.spill_load_bytes),
            (0, 0),
            "gemm_wg{}: {report:?}",
            case.args
        );
        let text = c
            .sass()
            .unwrap_or_else(|e| panic!("gemm_wg{}: {e}", case.args));
        let mix = sass::instruction_mix(&text);
        assert!(!mix.contains_key("HMMA"), "gemm_wg{}: {mix:?}", case.args);
        let h = hot_loop::sass_hot_loop(&text)
            .expect("the SASS reads")
            .unwrap_or_else(|| panic!("gemm_wg{}: no loop", case.args));
        let bk: usize = case.args.split(',').nth(3).unwrap().parse().unwrap();
        assert_eq!(
            h.mix.get("HGMMA"),
            Some(&(bk / 16)),
            "gemm_wg{}: {h}",
            case.args
        );
        assert_eq!(h.tensor, bk / 16, "gemm_wg{}: {h}", case.args);
        let f = h.figure().expect("a figure");
        assert!(f.is_finite() && f > 0.0, "gemm_wg{}: {h}", case.args);
        println!(
            "gemm_wg{} sm_90a aligned: {} regs, {} B static shared, {h}",
            case.args, report.registers, report.shared_bytes
        );
    }
}

/// The registered variants' self-test (ragged shapes against f64) on the interpreter and on
/// both emulators.
#[test]
fn the_registered_self_test_passes_on_the_interpreter_and_both_emulators() {
    let info = tilekit::registry::kernels()
        .into_iter()
        .find(|k| k.name == gemm_wg_name())
        .expect("gemm_wg is registered");
    let test = info.selftest.expect("gemm_wg has a self-test");
    for device in [
        Device::Cpu,
        Device::emulator("sm_90a").unwrap(),
        Device::emulator("sm_80").unwrap(),
    ] {
        let out = test(&device).unwrap_or_else(|e| panic!("on {}: {e}", device.name()));
        println!("gemm_wg self-test on {}: {out}", device.name());
    }
}
