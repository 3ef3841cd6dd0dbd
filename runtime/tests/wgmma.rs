//! Warpgroup-scope `mma` on sm_90a: where the shared operands are in wgmma's canonical layouts
//! the lowering issues `wgmma.mma_async` (A from a descriptor or from registers, B from a
//! descriptor), otherwise `mma.sync` as on sm_80. Every kernel here runs on the PTX emulator
//! (`emu:sm_90a` with its sanitizer, and `emu:sm_80`) and agrees with an f64 reference on
//! random inputs whose M, N and K are not multiples of the tiles; the sm_90a PTX is checked for
//! the instruction the lowering should have chosen.
#![cfg(feature = "jit")]

use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::check::{normalized_max_error, poisoned, Rng};
use tilekit::testing::{Stage, Target};
use tilekit::Device;

// One kernel per transposition variant: `C = op(A)·op(B)`, one warpgroup per BM×BN block tile
// (BM = 4·RM: each warp owns RM rows of C), the operands staged through shared memory BK of K
// at a time. `AREG`: each warp loads its rows of op(A) into registers first (the register-A
// form); otherwise the mma takes A as the group's shared tile.

/// A M×K, B K×N.
#[tilekit::kernel(warps = 4)]
fn wg_ab<const BM: usize, const RM: usize, const BN: usize, const BK: usize, const AREG: bool>(
    a: Gl<bf16, 2>,
    b: Gl<bf16, 2>,
    c: GlMut<f32, 2>,
) {
    let a_s: St<bf16, BM, BK> = alloc_shared();
    let b_s: St<bf16, BK, BN> = alloc_shared();
    let (tn, tm) = (block_idx_x(), block_idx_y());
    let mut acc: Rt<f32, RM, BN> = zeros();
    for kt in range(0, ceil_div(a.cols(), BK)) {
        copy_block(a_s, a.tile(tm, kt));
        copy_block(b_s, b.tile(kt, tn));
        barrier();
        if AREG {
            let a_r: Rt<bf16, RM, BK> = load_warpgroup(a_s);
            acc = mma_ab_wg(acc, a_r, b_s);
        } else {
            acc = mma_ab_wg(acc, a_s, b_s);
        }
        barrier();
    }
    store(c.tile(tm * 4 + warp_idx(), tn), acc);
}

/// A M×K, B given as Bᵀ (N×K).
#[tilekit::kernel(warps = 4, variants(<64, 16, 128, 64, false>, <128, 32, 64, 64, false>))]
fn wg_abt<const BM: usize, const RM: usize, const BN: usize, const BK: usize, const AREG: bool>(
    a: Gl<bf16, 2>,
    bt: Gl<bf16, 2>,
    c: GlMut<f32, 2>,
) {
    let a_s: St<bf16, BM, BK> = alloc_shared();
    let b_s: St<bf16, BN, BK> = alloc_shared();
    let (tn, tm) = (block_idx_x(), block_idx_y());
    let mut acc: Rt<f32, RM, BN> = zeros();
    for kt in range(0, ceil_div(a.cols(), BK)) {
        copy_block(a_s, a.tile(tm, kt));
        copy_block(b_s, bt.tile(tn, kt));
        barrier();
        if AREG {
            let a_r: Rt<bf16, RM, BK> = load_warpgroup(a_s);
            acc = mma_abt_wg(acc, a_r, b_s);
        } else {
            acc = mma_abt_wg(acc, a_s, b_s);
        }
        barrier();
    }
    store(c.tile(tm * 4 + warp_idx(), tn), acc);
}

/// A given as Aᵀ (K×M), B K×N.
#[tilekit::kernel(warps = 4)]
fn wg_atb<const BM: usize, const RM: usize, const BN: usize, const BK: usize>(
    at: Gl<bf16, 2>,
    b: Gl<bf16, 2>,
    c: GlMut<f32, 2>,
) {
    let a_s: St<bf16, BK, BM> = alloc_shared();
    let b_s: St<bf16, BK, BN> = alloc_shared();
    let (tn, tm) = (block_idx_x(), block_idx_y());
    let mut acc: Rt<f32, RM, BN> = zeros();
    for kt in range(0, ceil_div(at.rows(), BK)) {
        copy_block(a_s, at.tile(kt, tm));
        copy_block(b_s, b.tile(kt, tn));
        barrier();
        acc = mma_atb_wg(acc, a_s, b_s);
        barrier();
    }
    store(c.tile(tm * 4 + warp_idx(), tn), acc);
}

/// A given as Aᵀ (K×M), B given as Bᵀ (N×K).
#[tilekit::kernel(warps = 4)]
fn wg_atbt<const BM: usize, const RM: usize, const BN: usize, const BK: usize>(
    at: Gl<bf16, 2>,
    bt: Gl<bf16, 2>,
    c: GlMut<f32, 2>,
) {
    let a_s: St<bf16, BK, BM> = alloc_shared();
    let b_s: St<bf16, BN, BK> = alloc_shared();
    let (tn, tm) = (block_idx_x(), block_idx_y());
    let mut acc: Rt<f32, RM, BN> = zeros();
    for kt in range(0, ceil_div(at.rows(), BK)) {
        copy_block(a_s, at.tile(kt, tm));
        copy_block(b_s, bt.tile(tn, kt));
        barrier();
        acc = mma_atbt_wg(acc, a_s, b_s);
        barrier();
    }
    store(c.tile(tm * 4 + warp_idx(), tn), acc);
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(11)
}

/// The transpose of the row-major `rows × cols` matrix `x`.
fn transposed(x: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    (0..rows * cols)
        .map(|i| x[(i % rows) * cols + i / rows])
        .collect()
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

/// How a kernel under test is launched: its name (for messages), whether it takes Aᵀ and Bᵀ,
/// its block tile, and the launch itself.
struct Case {
    name: &'static str,
    at: bool,
    bt: bool,
    bm: usize,
    bn: usize,
    launch: fn(
        &Device,
        [u32; 3],
        &HostTensor,
        &HostTensor,
        &mut HostTensor,
    ) -> Result<(), tilekit::Error>,
}

macro_rules! case {
    ($k:ident::<$($p:tt),*>, at = $at:expr, bt = $bt:expr, bm = $bm:expr, bn = $bn:expr) => {
        Case {
            name: concat!(stringify!($k), "<", $(stringify!($p), ",",)* ">"),
            at: $at,
            bt: $bt,
            bm: $bm,
            bn: $bn,
            launch: |d, g, a, b, c| $k::<$($p),*>::launch(d, g, a, b, c),
        }
    };
}

/// Runs `case` on `device` for each (m, n, k) and compares with the reference.
fn agrees(case: &Case, device: &Device, shapes: &[(usize, usize, usize)]) {
    let mut rng = Rng::new(seed());
    for &(m, n, k) in shapes {
        let a = rng.tensor(BF16, &[m, k], -1.0, 1.0);
        let b = rng.tensor(BF16, &[k, n], -1.0, 1.0);
        let (av, bv) = (a.to_vec(), b.to_vec());
        let want = reference(&av, &bv, m, k, n);
        let a_in = if case.at {
            HostTensor::new(BF16, &[k, m], &transposed(&av, m, k)).unwrap()
        } else {
            a
        };
        let b_in = if case.bt {
            HostTensor::new(BF16, &[n, k], &transposed(&bv, k, n)).unwrap()
        } else {
            b
        };
        let mut c = poisoned(F32, &[m, n]);
        let grid = [n.div_ceil(case.bn) as u32, m.div_ceil(case.bm) as u32, 1];
        (case.launch)(device, grid, &a_in, &b_in, &mut c)
            .unwrap_or_else(|e| panic!("{} {m}×{n}×{k} on {}: {e}", case.name, device.name()));
        let err = normalized_max_error(&c.to_vec(), &want);
        assert!(
            err <= 1e-5,
            "{} {m}×{n}×{k} on {}: normalized error {err:.2e} (seed {})",
            case.name,
            device.name(),
            rng.seed
        );
    }
}

/// The canonical cases: swizzles of 128, 64 and 32 bytes; A from a descriptor and from
/// registers; B K-major (Bᵀ given) and N-major; N from 16 to 128.
fn wgmma_cases() -> Vec<Case> {
    vec![
        case!(
            wg_ab::<64, 16, 64, 64, false>,
            at = false,
            bt = false,
            bm = 64,
            bn = 64
        ),
        case!(
            wg_ab::<64, 16, 64, 64, true>,
            at = false,
            bt = false,
            bm = 64,
            bn = 64
        ),
        case!(
            wg_ab::<64, 16, 32, 32, false>,
            at = false,
            bt = false,
            bm = 64,
            bn = 32
        ),
        case!(
            wg_ab::<64, 16, 16, 16, false>,
            at = false,
            bt = false,
            bm = 64,
            bn = 16
        ),
        // B's 256-byte rows are two 128-byte pieces: N-major across pieces (LBO).
        case!(
            wg_ab::<64, 16, 128, 64, false>,
            at = false,
            bt = false,
            bm = 64,
            bn = 128
        ),
        case!(
            wg_abt::<64, 16, 128, 64, false>,
            at = false,
            bt = true,
            bm = 64,
            bn = 128
        ),
        case!(
            wg_abt::<64, 16, 48, 32, true>,
            at = false,
            bt = true,
            bm = 64,
            bn = 48
        ),
        case!(
            wg_abt::<128, 32, 64, 64, false>,
            at = false,
            bt = true,
            bm = 128,
            bn = 64
        ),
        case!(
            wg_atb::<64, 16, 64, 64>,
            at = true,
            bt = false,
            bm = 64,
            bn = 64
        ),
        case!(
            wg_atbt::<64, 16, 64, 32>,
            at = true,
            bt = true,
            bm = 64,
            bn = 64
        ),
    ]
}

/// Shapes not multiples of the tiles (ragged M, N and K) and one that is.
const SHAPES: [(usize, usize, usize); 3] = [(64, 64, 64), (70, 45, 130), (130, 100, 50)];

#[test]
fn warpgroup_mma_agrees_with_the_reference_on_the_sm_90a_emulator() {
    let device = Device::emulator("sm_90a").unwrap();
    for case in wgmma_cases() {
        agrees(&case, &device, &SHAPES);
    }
}

#[test]
fn warpgroup_mma_agrees_with_the_reference_on_the_sm_80_emulator() {
    let device = Device::emulator("sm_80").unwrap();
    for case in wgmma_cases() {
        agrees(&case, &device, &SHAPES[1..2]);
    }
}

/// A B tile whose 96-byte rows are wider than its 32-byte swizzle is not in a canonical wgmma
/// layout: the op keeps `mma.sync`, and still computes the product.
#[test]
fn non_canonical_shared_tiles_keep_mma_sync_and_agree() {
    let case = case!(
        wg_ab::<64, 16, 48, 16, false>,
        at = false,
        bt = false,
        bm = 64,
        bn = 48
    );
    agrees(&case, &Device::emulator("sm_90a").unwrap(), &SHAPES[1..2]);
    let ptx = ptx_of(
        wg_ab::<64, 16, 48, 16, false>::try_module(),
        wg_ab::<64, 16, 48, 16, false>::NAME,
        Target::Sm90a,
    );
    assert!(!ptx.contains("wgmma"), "{ptx}");
    assert!(ptx.contains("mma.sync.aligned.m16n8k16"), "{ptx}");
}

fn ptx_of(
    module: Result<&'static tilekit::ir::Module, tilekit::Error>,
    name: &str,
    target: Target,
) -> String {
    let module = module.expect("the kernel builds");
    tilekit::testing::stage_snapshot(module, name, name, target, Stage::Ptx)
        .unwrap_or_else(|e| panic!("{name} on {target}: {e}"))
        .text
}

/// The PTX of each canonical case on sm_90a: one fence, wgmma with the expected shape and
/// operand forms, a commit and a wait per mma, and no mma.sync; sm_80 keeps mma.sync.
#[test]
fn canonical_operands_lower_to_wgmma_on_sm_90a_only() {
    macro_rules! ptx {
        ($k:ident::<$($p:tt),*>, $t:expr) => {
            ptx_of($k::<$($p),*>::try_module(), $k::<$($p),*>::NAME, $t)
        };
    }
    // (PTX, wgmma shape, A from registers)
    let cases = [
        (
            ptx!(wg_ab::<64, 16, 64, 64, false>, Target::Sm90a),
            "m64n64k16",
            false,
        ),
        (
            ptx!(wg_ab::<64, 16, 64, 64, true>, Target::Sm90a),
            "m64n64k16",
            true,
        ),
        (
            ptx!(wg_ab::<64, 16, 16, 16, false>, Target::Sm90a),
            "m64n16k16",
            false,
        ),
        (
            ptx!(wg_ab::<64, 16, 128, 64, false>, Target::Sm90a),
            "m64n128k16",
            false,
        ),
        (
            ptx!(wg_abt::<64, 16, 128, 64, false>, Target::Sm90a),
            "m64n128k16",
            false,
        ),
        (
            ptx!(wg_abt::<128, 32, 64, 64, false>, Target::Sm90a),
            "m64n64k16",
            true,
        ),
        (
            ptx!(wg_atb::<64, 16, 64, 64>, Target::Sm90a),
            "m64n64k16",
            false,
        ),
        (
            ptx!(wg_atbt::<64, 16, 64, 32>, Target::Sm90a),
            "m64n64k16",
            false,
        ),
    ];
    for (ptx, shape, a_regs) in &cases {
        let op = format!("wgmma.mma_async.sync.aligned.{shape}.f32.bf16.bf16");
        assert!(ptx.contains(&op), "no {op} in:\n{ptx}");
        assert!(ptx.contains("wgmma.fence.sync.aligned"), "{ptx}");
        assert!(ptx.contains("wgmma.commit_group.sync.aligned"), "{ptx}");
        assert!(ptx.contains("wgmma.wait_group.sync.aligned 0"), "{ptx}");
        assert!(!ptx.contains("mma.sync.aligned"), "{ptx}");
        // The register-A form has a brace list of four registers where the descriptor is.
        let line = ptx.lines().find(|l| l.contains(&op)).unwrap();
        let after_d = line.split('}').nth(1).unwrap_or("");
        assert_eq!(after_d.trim_start().starts_with(", {"), *a_regs, "{line}");
    }
    let sm80 = ptx!(wg_ab::<64, 16, 64, 64, false>, Target::Sm80);
    assert!(!sm80.contains("wgmma"), "{sm80}");
}

/// `tilekit check` on sm_90a: the K loop's tensor-core instructions are HGMMA (no HMMA left).
#[test]
fn check_reports_hgmma_on_sm_90a() {
    for name in [
        "wg_abt<64, 16, 128, 64, false>",
        "wg_abt<128, 32, 64, 64, false>",
    ] {
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
