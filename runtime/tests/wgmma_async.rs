//! The asynchronous warpgroup mma (`mma_async_*_wg`, `mma_commit`, `mma_wait`,
//! `mma_wait_acc`): a two-stage K loop that keeps one mma group in flight while the warps fill
//! the other stage agrees with an f64 reference at M, N and K that are not multiples of the
//! tiles, on the interpreter, on the PTX emulator for sm_90a (wgmma with the IR's wait counts,
//! sanitizer on: nothing may read an accumulator register before its `wgmma.wait_group`) and
//! for sm_80 (the synchronous path); a wait that does not cover its mma is an interpreter error
//! naming the op; reading an accumulator before its wait and shapes wgmma cannot take are
//! verifier errors.
#![cfg(feature = "jit")]

use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::check::{normalized_max_error, poisoned, Rng};
use tilekit::testing::{Stage, Target};
use tilekit::Device;

/// `C = A·B`, A M×K, B K×N: one warpgroup per 64×BN block tile, K in steps of BK through two
/// shared stages. Step kt's mma reads stage kt % 2 while step kt + 1 fills the other, which
/// `mma_wait::<1>` released (the mma of step kt − 1, which read it, is complete; the barrier
/// after it says so for every warp).
#[tilekit::kernel(warps = 4, variants(<64, 64>))]
fn wg_async_ab<const BN: usize, const BK: usize>(a: Gl<bf16, 2>, b: Gl<bf16, 2>, c: GlMut<f32, 2>) {
    let a_s: SharedArray<St<bf16, 64, BK>, 2> = alloc_shared();
    let b_s: SharedArray<St<bf16, BK, BN>, 2> = alloc_shared();
    let (tn, tm) = (block_idx_x(), block_idx_y());
    let mut acc: Rt<f32, 16, BN> = zeros();
    for kt in range(0, ceil_div(a.cols(), BK)) {
        let s = kt % 2;
        copy_block(a_s.at(s), a.tile(tm, kt));
        copy_block(b_s.at(s), b.tile(kt, tn));
        barrier();
        acc = mma_async_ab_wg(acc, a_s.at(s), b_s.at(s));
        mma_commit();
        mma_wait::<1>();
        barrier();
    }
    let acc = mma_wait_acc::<0, _>(acc);
    store(c.tile(tm * 4 + warp_idx(), tn), acc);
}

/// The same with B given as Bᵀ (N×K, K-major in shared memory).
#[tilekit::kernel(warps = 4, variants(<128, 64>))]
fn wg_async_abt<const BN: usize, const BK: usize>(
    a: Gl<bf16, 2>,
    bt: Gl<bf16, 2>,
    c: GlMut<f32, 2>,
) {
    let a_s: SharedArray<St<bf16, 64, BK>, 2> = alloc_shared();
    let b_s: SharedArray<St<bf16, BN, BK>, 2> = alloc_shared();
    let (tn, tm) = (block_idx_x(), block_idx_y());
    let mut acc: Rt<f32, 16, BN> = zeros();
    for kt in range(0, ceil_div(a.cols(), BK)) {
        let s = kt % 2;
        copy_block(a_s.at(s), a.tile(tm, kt));
        copy_block(b_s.at(s), bt.tile(tn, kt));
        barrier();
        acc = mma_async_abt_wg(acc, a_s.at(s), b_s.at(s));
        mma_commit();
        mma_wait::<1>();
        barrier();
    }
    let acc = mma_wait_acc::<0, _>(acc);
    store(c.tile(tm * 4 + warp_idx(), tn), acc);
}

/// The loop of [`wg_async_ab`] with the last wait written `mma_wait_acc::<1>`: the last mma's
/// group is the most recent one, which that wait leaves in flight.
#[tilekit::kernel(warps = 4)]
fn wg_async_wait_too_shallow(a: Gl<bf16, 2>, b: Gl<bf16, 2>, c: GlMut<f32, 2>) {
    let a_s: SharedArray<St<bf16, 64, 64>, 2> = alloc_shared();
    let b_s: SharedArray<St<bf16, 64, 64>, 2> = alloc_shared();
    let (tn, tm) = (block_idx_x(), block_idx_y());
    let mut acc: Rt<f32, 16, 64> = zeros();
    for kt in range(0, ceil_div(a.cols(), 64)) {
        let s = kt % 2;
        copy_block(a_s.at(s), a.tile(tm, kt));
        copy_block(b_s.at(s), b.tile(kt, tn));
        barrier();
        acc = mma_async_ab_wg(acc, a_s.at(s), b_s.at(s));
        mma_commit();
        mma_wait::<1>();
        barrier();
    }
    let acc = mma_wait_acc::<1, _>(acc);
    store(c.tile(tm * 4 + warp_idx(), tn), acc);
}

/// Issues an mma and waits without committing it: it is still in the open group.
#[tilekit::kernel(warps = 4)]
fn wg_async_no_commit(a: Gl<bf16, 2>, b: Gl<bf16, 2>, c: GlMut<f32, 2>) {
    let a_s: St<bf16, 64, 64> = alloc_shared();
    let b_s: St<bf16, 64, 64> = alloc_shared();
    let (tn, tm) = (block_idx_x(), block_idx_y());
    copy_block(a_s, a.tile(tm, 0));
    copy_block(b_s, b.tile(0, tn));
    barrier();
    let acc: Rt<f32, 16, 64> = zeros();
    let acc = mma_async_ab_wg(acc, a_s, b_s);
    let acc = mma_wait_acc::<0, _>(acc);
    store(c.tile(tm * 4 + warp_idx(), tn), acc);
}

/// Stores the accumulator without waiting at all.
#[tilekit::kernel(warps = 4)]
fn wg_async_no_wait(a: Gl<bf16, 2>, b: Gl<bf16, 2>, c: GlMut<f32, 2>) {
    let a_s: St<bf16, 64, 64> = alloc_shared();
    let b_s: St<bf16, 64, 64> = alloc_shared();
    let (tn, tm) = (block_idx_x(), block_idx_y());
    let mut acc: Rt<f32, 16, 64> = zeros();
    for kt in range(0, ceil_div(a.cols(), 64)) {
        copy_block(a_s, a.tile(tm, kt));
        copy_block(b_s, b.tile(kt, tn));
        barrier();
        acc = mma_async_ab_wg(acc, a_s, b_s);
        mma_commit();
        barrier();
    }
    store(c.tile(tm * 4 + warp_idx(), tn), acc);
}

/// A kernel issuing one `mma_async` (`$f`) of the given accumulator and operand types, then
/// waiting for it: what the verifier makes of shapes.
macro_rules! shape_case {
    ($(#[$doc:meta])* $name:ident: $f:ident($acc:ty, $a:ty, $b:ty)) => {
        $(#[$doc])*
        #[tilekit::kernel(warps = 4)]
        fn $name(c: GlMut<f32, 2>) {
            let a_s: $a = alloc_shared();
            let b_s: $b = alloc_shared();
            let acc: $acc = zeros();
            let acc = $f(acc, a_s, b_s);
            mma_commit();
            let acc = mma_wait_acc::<0, _>(acc);
            store(c.tile(warp_idx(), 0), acc);
        }
    };
}

shape_case! {
    /// N = 384 > 256 (rows of whole 128-byte pieces: canonical).
    wide_n: mma_async_ab_wg(Rt<f32, 16, 384>, St<bf16, 64, 64>, St<bf16, 64, 384>)
}
shape_case! {
    /// 32 rows of C per warp: M = 128 for the group.
    tall_m: mma_async_ab_wg(Rt<f32, 32, 64>, St<bf16, 128, 64>, St<bf16, 64, 64>)
}
shape_case! {
    /// B with 96-byte rows: no canonical swizzled layout.
    not_canonical: mma_async_ab_wg(Rt<f32, 16, 48>, St<bf16, 64, 64>, St<bf16, 64, 48>)
}
shape_case! {
    /// Unswizzled operands.
    unswizzled: mma_async_ab_wg(
        Rt<f32, 16, 64>,
        St<bf16, 64, 64, NoSwizzle>,
        St<bf16, 64, 64, NoSwizzle>
    )
}
shape_case! {
    /// fp8 with B N-major (stored K×N): fp8 operands must be K-major.
    fp8_n_major: mma_async_ab_wg(
        Rt<f32, 16, 64>,
        St<f8e4m3, 64, 32, Swz32>,
        St<f8e4m3, 32, 64, Swz64>
    )
}
shape_case! {
    /// fp8 with K = 16 (wgmma's K for fp8 is 32).
    fp8_short_k: mma_async_abt_wg(Rt<f32, 16, 64>, St<f8e4m3, 64, 16>, St<f8e4m3, 64, 16>)
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
}

/// `C = A·B` in f64, A `m×k`, B `k×n`, both row-major.
fn reference(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for kk in 0..k {
            let x = a[i * k + kk];
            for j in 0..n {
                c[i * n + j] += x * b[kk * n + j];
            }
        }
    }
    c
}

type Launch =
    fn(&Device, [u32; 3], &HostTensor, &HostTensor, &mut HostTensor) -> Result<(), tilekit::Error>;

/// Runs `launch` (block tile 64×`bn`; B given transposed when `bt`) on `device` for each
/// (m, n, k) against the reference.
fn agrees(
    name: &str,
    launch: Launch,
    bn: usize,
    bt: bool,
    device: &Device,
    shapes: &[(usize, usize, usize)],
) {
    let mut rng = Rng::new(seed());
    for &(m, n, k) in shapes {
        let a = rng.tensor(BF16, &[m, k], -1.0, 1.0);
        let b = rng.tensor(BF16, &[k, n], -1.0, 1.0);
        let (av, bv) = (a.to_vec(), b.to_vec());
        let want = reference(&av, &bv, m, k, n);
        let b_in = if bt {
            let t: Vec<f64> = (0..n * k).map(|i| bv[(i % k) * n + i / k]).collect();
            HostTensor::new(BF16, &[n, k], &t).unwrap()
        } else {
            b
        };
        let mut c = poisoned(F32, &[m, n]);
        let grid = [n.div_ceil(bn) as u32, m.div_ceil(64) as u32, 1];
        launch(device, grid, &a, &b_in, &mut c)
            .unwrap_or_else(|e| panic!("{name} {m}×{n}×{k} on {}: {e}", device.name()));
        let err = normalized_max_error(&c.to_vec(), &want);
        assert!(
            err <= 1e-5,
            "{name} {m}×{n}×{k} on {}: normalized error {err:.2e} (seed {})",
            device.name(),
            rng.seed
        );
    }
}

/// Ragged M, N and K (several K steps, a partial last one), and one shape of whole tiles.
const SHAPES: [(usize, usize, usize); 3] = [(70, 45, 130), (130, 100, 200), (64, 64, 64)];

fn both_kernels(device: &Device, shapes: &[(usize, usize, usize)]) {
    agrees(
        "wg_async_ab<64, 64>",
        |d, g, a, b, c| wg_async_ab::<64, 64>::launch(d, g, a, b, c),
        64,
        false,
        device,
        shapes,
    );
    agrees(
        "wg_async_abt<128, 64>",
        |d, g, a, b, c| wg_async_abt::<128, 64>::launch(d, g, a, b, c),
        128,
        true,
        device,
        shapes,
    );
}

#[test]
fn async_k_loop_agrees_with_the_reference_on_the_interpreter() {
    both_kernels(&Device::Cpu, &SHAPES);
}

#[test]
fn async_k_loop_agrees_with_the_reference_on_the_sm_90a_emulator() {
    both_kernels(&Device::emulator("sm_90a").unwrap(), &SHAPES);
}

#[test]
fn async_k_loop_agrees_with_the_reference_on_the_sm_80_emulator() {
    both_kernels(&Device::emulator("sm_80").unwrap(), &SHAPES[..1]);
}

fn ptx_of(module: &'static tilekit::ir::Module, name: &str, target: Target) -> String {
    tilekit::testing::stage_snapshot(module, name, name, target, Stage::Ptx)
        .unwrap_or_else(|e| panic!("{name} on {target}: {e}"))
        .text
}

/// On sm_90a the loop's mma is issued without a wait of its own: the PTX has the IR's
/// `wait_group 1` in the loop and one `wait_group 0` after it, no `mma.sync`; sm_80 keeps
/// `mma.sync` and no wgmma.
#[test]
fn the_ir_wait_counts_reach_the_sm_90a_ptx() {
    let ptx = ptx_of(
        wg_async_ab::<64, 64>::module(),
        wg_async_ab::<64, 64>::NAME,
        Target::Sm90a,
    );
    let count = |s: &str| ptx.matches(s).count();
    assert!(
        count("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16") >= 4,
        "{ptx}"
    );
    assert_eq!(count("wgmma.commit_group.sync.aligned"), 1, "{ptx}");
    assert_eq!(count("wgmma.wait_group.sync.aligned 1;"), 1, "{ptx}");
    assert_eq!(count("wgmma.wait_group.sync.aligned 0;"), 1, "{ptx}");
    assert!(!ptx.contains("mma.sync.aligned"), "{ptx}");
    let sm80 = ptx_of(
        wg_async_ab::<64, 64>::module(),
        wg_async_ab::<64, 64>::NAME,
        Target::Sm80,
    );
    assert!(!sm80.contains("wgmma"), "{sm80}");
    assert!(sm80.contains("mma.sync.aligned.m16n8k16"), "{sm80}");
}

/// ptxas keeps the async loops' wgmma pipelined: no serialization advisory (its C7515 came
/// from the accumulator's zeros reaching the wait after the loop on the zero-trip exit). The
/// zeros are not materialized before the loop: the loop's first wgmma has `scale-d` from a
/// predicate, and the final wait writes zeros under a predicate after its `wait_group`.
#[test]
fn ptxas_does_not_serialize_the_async_loops() {
    let cases: [(&'static tilekit::ir::Module, &str); 2] = [
        (wg_async_ab::<64, 64>::module(), wg_async_ab::<64, 64>::NAME),
        (
            wg_async_abt::<128, 64>::module(),
            wg_async_abt::<128, 64>::NAME,
        ),
    ];
    for (module, name) in cases {
        let ptx = ptx_of(module, name, Target::Sm90a);
        let a = tilekit::codegen::ptxas::assemble(&ptx, Target::Sm90a)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let advisories = tilekit::codegen::ptxas::performance_advisories(&a.log);
        assert!(advisories.is_empty(), "{name}: {advisories:?}");
        let wait0 = ptx
            .lines()
            .position(|l| l.contains("wgmma.wait_group.sync.aligned 0;"))
            .unwrap_or_else(|| panic!("{name}: no final wait\n{ptx}"));
        let zeroed = ptx
            .lines()
            .skip(wait0 + 1)
            .take_while(|l| l.contains("mov.b32"));
        assert!(
            zeroed
                .filter(|l| l.trim_start().starts_with("@!%p"))
                .count()
                > 0,
            "{name}: no predicated zeros after the final wait\n{ptx}"
        );
        // Scale-d of the loop's first wgmma is a predicate other than the constant-true one.
        let preds: std::collections::HashSet<&str> = ptx
            .lines()
            .filter(|l| l.contains("wgmma.mma_async"))
            .filter_map(|l| l.split(", ").find(|t| t.starts_with("%p")))
            .collect();
        assert_eq!(preds.len(), 2, "{name}: scale-d predicates {preds:?}");
    }
}

/// K = 0: the loop runs no iteration and the result is zeros (written by the final wait on
/// sm_90a), on the interpreter and both emulators.
#[test]
fn an_empty_k_loop_gives_zeros() {
    let (m, n) = (70, 45);
    let a = HostTensor::new(BF16, &[m, 0], &[]).unwrap();
    let b = HostTensor::new(BF16, &[0, n], &[]).unwrap();
    for device in [
        Device::Cpu,
        Device::emulator("sm_90a").unwrap(),
        Device::emulator("sm_80").unwrap(),
    ] {
        let mut c = poisoned(F32, &[m, n]);
        let grid = [n.div_ceil(64) as u32, m.div_ceil(64) as u32, 1];
        wg_async_ab::<64, 64>::launch(&device, grid, &a, &b, &mut c)
            .unwrap_or_else(|e| panic!("K = 0 on {}: {e}", device.name()));
        let bad = c.to_vec().iter().filter(|&&x| x != 0.0).count();
        assert_eq!(bad, 0, "K = 0 on {}: {bad} nonzero elements", device.name());
    }
}

/// A wait that leaves the mma's group in flight, or one before the mma was committed, is an
/// interpreter error naming `mma_wait` and why.
#[test]
fn a_wait_that_does_not_cover_the_mma_is_an_interpreter_error() {
    let mut rng = Rng::new(seed());
    let a = rng.tensor(BF16, &[64, 128], -1.0, 1.0);
    let b = rng.tensor(BF16, &[128, 64], -1.0, 1.0);
    let mut c = poisoned(F32, &[64, 64]);
    let e = wg_async_wait_too_shallow::launch(&Device::Cpu, [1, 1, 1], &a, &b, &mut c)
        .expect_err("the last mma is never retired")
        .to_string();
    assert!(e.contains("mma_wait"), "{e}");
    assert!(e.contains("cannot retire"), "{e}");
    assert!(e.contains("most recent committed groups"), "{e}");
    let e = wg_async_no_commit::launch(&Device::Cpu, [1, 1, 1], &a, &b, &mut c)
        .expect_err("the mma is never committed")
        .to_string();
    assert!(e.contains("mma_wait"), "{e}");
    assert!(e.contains("open group"), "{e}");
}

/// The text of the error building (and verifying) `module` gives.
fn build_error(module: Result<&'static tilekit::ir::Module, tilekit::Error>) -> String {
    match module {
        Err(e) => e.to_string(),
        Ok(m) => match tilekit::ir::verify(m) {
            Err(errs) => errs.iter().map(|e| format!("{e}\n")).collect(),
            Ok(()) => panic!("the module verifies"),
        },
    }
}

#[test]
fn reading_an_accumulator_before_its_wait_is_a_verifier_error() {
    let e = build_error(wg_async_no_wait::try_module());
    assert!(e.contains("`store`"), "{e}");
    assert!(e.contains("before an mma_wait retires it"), "{e}");
}

#[test]
fn shapes_wgmma_cannot_take_are_verifier_errors() {
    let cases = [
        (
            build_error(wide_n::try_module()),
            "N a multiple of 8 up to 256",
        ),
        (build_error(tall_m::try_module()), "16 rows per warp"),
        (build_error(not_canonical::try_module()), "rows of 96 bytes"),
        (build_error(unswizzled::try_module()), "unswizzled"),
        (
            build_error(fp8_n_major::try_module()),
            "fp8 operands must be K-major",
        ),
        (build_error(fp8_short_k::try_module()), "a multiple of 32"),
    ];
    for (e, want) in cases {
        assert!(e.contains(want), "expected «{want}» in:\n{e}");
    }
}

/// `tilekit check` on sm_90a: the K loop's tensor-core instructions are HGMMA.
#[test]
fn check_reports_hgmma_for_the_async_loop() {
    for name in ["wg_async_ab<64, 64>", "wg_async_abt<128, 64>"] {
        let args: Vec<String> = ["check", name, "--target", "sm_90a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (out, code) = tilekit::cli::run(&args).unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!("{out}");
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("HGMMA"), "{out}");
        assert!(!out.contains("HMMA"), "{out}");
    }
}
