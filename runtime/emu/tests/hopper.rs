//! sm_90a asynchronous instructions inside whole kernels: an mbarrier producer/consumer hand-off
//! (right and wrong parities), and a warpgroup `wgmma` from shared-memory descriptors compared
//! with an f64 matrix product (with and without its `wait_group` and `fence.proxy.async`).

use half::bf16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tilekit_emu::sanitizer::FindingKind;
use tilekit_emu::{EmuError, Emulator, GlobalMemory, LaunchConfig, Report};

/// Warp 0 consumes what warp 1 produces through a one-slot pipeline of two mbarriers: the
/// producer waits for the slot to be empty, fills it with `in`, arrives on `full`; the consumer
/// waits on `full` and copies the slot to `out`.
const HANDOFF: &str = r#"
.version 8.3
.target sm_90a
.address_size 64
.visible .entry handoff(.param .u64 pin, .param .u64 pout)
{
    .reg .pred %p<4>;
    .reg .b32 %r<10>;
    .reg .f32 %f<4>;
    .reg .b64 %rd<10>;
    .shared .align 8 .b64 full;
    .shared .align 8 .b64 empty;
    .shared .align 16 .b8 slot[128];
    ld.param.u64 %rd1, [pin];
    ld.param.u64 %rd2, [pout];
    mov.u32 %r1, %tid.x;
    and.b32 %r2, %r1, 31;
    shr.u32 %r3, %r1, 5;
    setp.ne.u32 %p1, %r1, 0;
    @%p1 bra INITIALIZED;
    mbarrier.init.shared::cta.b64 [full], 1;
    mbarrier.init.shared::cta.b64 [empty], 1;
INITIALIZED:
    bar.sync 0;
    mov.u32 %r4, slot;
    shl.b32 %r5, %r2, 2;
    add.s32 %r6, %r4, %r5;
    mul.wide.u32 %rd3, %r2, 4;
    setp.eq.u32 %p2, %r3, 0;
    @%p2 bra CONSUMER;
PRODUCER_WAIT:
    mbarrier.try_wait.parity.shared::cta.b64 %p3, [empty], EMPTY_PARITY;
    @!%p3 bra PRODUCER_WAIT;
    add.s64 %rd4, %rd1, %rd3;
    ld.global.f32 %f1, [%rd4];
    st.shared.f32 [%r6], %f1;
    bar.warp.sync -1;
    setp.eq.u32 %p3, %r2, 0;
    @%p3 mbarrier.arrive.shared::cta.b64 %rd5, [full];
    ret;
CONSUMER:
CONSUMER_WAIT:
    mbarrier.try_wait.parity.shared::cta.b64 %p3, [full], FULL_PARITY;
    @!%p3 bra CONSUMER_WAIT;
    ld.shared.f32 %f2, [%r6];
    add.s64 %rd6, %rd2, %rd3;
    st.global.f32 [%rd6], %f2;
    ret;
}
"#;

fn handoff(empty_parity: u32, full_parity: u32, input: &[f32]) -> Result<Vec<f32>, EmuError> {
    let ptx = HANDOFF
        .replace("EMPTY_PARITY", &empty_parity.to_string())
        .replace("FULL_PARITY", &full_parity.to_string());
    let emu = Emulator::new(&ptx)?;
    let mut g = GlobalMemory::new();
    let pin = g.alloc("in", input.iter().flat_map(|x| x.to_le_bytes()).collect());
    let pout = g.alloc("out", vec![0u8; 128]);
    let params = emu.param_buffer(
        "handoff",
        &[pin.to_le_bytes().to_vec(), pout.to_le_bytes().to_vec()],
    )?;
    emu.launch(
        "handoff",
        &LaunchConfig::new([1, 1, 1], [64, 1, 1]),
        &params,
        &mut g,
    )?;
    Ok(g.get(pout)
        .expect("out")
        .data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn random_input(seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..32).map(|_| rng.gen_range(1.0..2.0)).collect()
}

#[test]
fn mbarrier_handoff_with_cutlass_parities_delivers_the_data() {
    // The producer's first empty-slot wait uses the opposite parity (it passes at once); the
    // consumer waits for phase 0 of `full`.
    let input = random_input(1);
    assert_eq!(handoff(1, 0, &input).unwrap(), input);
}

#[test]
fn consumer_waiting_on_the_wrong_parity_passes_at_once_and_reads_before_the_arrival() {
    let input = random_input(2);
    let err = handoff(1, 1, &input).unwrap_err();
    let EmuError::Sanitizer { findings, .. } = &err else {
        panic!("expected sanitizer findings, got {err}")
    };
    assert!(
        findings
            .iter()
            .any(|f| f.kind == FindingKind::Race && f.message.contains("read by warp 0")),
        "the producer's write must be reported against the consumer's early read: {err}"
    );
}

#[test]
fn producer_starting_its_empty_waits_on_the_wrong_phase_deadlocks() {
    let err = handoff(0, 0, &random_input(3)).unwrap_err();
    let EmuError::Deadlock { waits, .. } = &err else {
        panic!("expected a deadlock, got {err}")
    };
    assert!(
        waits.contains("warp 0") && waits.contains("warp 1") && waits.contains("mbarrier.try_wait"),
        "{waits}"
    );
    // The barriers still in their first phase are named with what they lack.
    assert!(waits.contains("phase 0 has 1 of 1 arrivals"), "{waits}");
}

/// One warpgroup: D (64×16, f32) = 1 + A (64×16 bf16, row-major) · B, with B given as Bᵀ
/// (16×16 bf16, row-major: K-major). Both are copied to shared memory in the no-swizzle
/// K-major core-matrix layout (LBO 128: next 8 k; SBO 256: next 8 rows) and fed to
/// `wgmma.mma_async` through descriptors.
const WGMMA: &str = r#"
.version 8.3
.target sm_90a
.address_size 64
.visible .entry wg(.param .u64 pa, .param .u64 pb, .param .u64 pd)
{
    .reg .pred %p<4>;
    .reg .b32 %r<40>;
    .reg .f32 %f<10>;
    .reg .b64 %rd<20>;
    .shared .align 1024 .b8 smem[4096];
    ld.param.u64 %rd1, [pa];
    ld.param.u64 %rd2, [pb];
    ld.param.u64 %rd3, [pd];
    mov.u32 %r1, %tid.x;
    mov.u32 %r2, smem;
    shr.u32 %r3, %r1, 1;
    and.b32 %r4, %r1, 1;
    and.b32 %r5, %r3, 7;
    shl.b32 %r5, %r5, 4;
    shr.u32 %r6, %r3, 3;
    shl.b32 %r6, %r6, 8;
    shl.b32 %r7, %r4, 7;
    add.s32 %r8, %r5, %r6;
    add.s32 %r8, %r8, %r7;
    add.s32 %r9, %r2, %r8;
    mul.wide.u32 %rd4, %r1, 16;
    add.s64 %rd5, %rd1, %rd4;
    ld.global.v4.u32 {%r10, %r11, %r12, %r13}, [%rd5];
    st.shared.v4.u32 [%r9], {%r10, %r11, %r12, %r13};
    setp.lt.u32 %p1, %r1, 32;
    add.s64 %rd6, %rd2, %rd4;
    @%p1 ld.global.v4.u32 {%r10, %r11, %r12, %r13}, [%rd6];
    add.s32 %r14, %r9, 2048;
    @%p1 st.shared.v4.u32 [%r14], {%r10, %r11, %r12, %r13};
    FENCE
    bar.sync 0;
    cvt.u64.u32 %rd7, %r2;
    shr.u64 %rd7, %rd7, 4;
    or.b64 %rd8, %rd7, 68720001024;
    add.s64 %rd9, %rd8, 128;
    mov.f32 %f1, 0f3F800000;
    mov.f32 %f2, 0f3F800000;
    mov.f32 %f3, 0f3F800000;
    mov.f32 %f4, 0f3F800000;
    mov.f32 %f5, 0f3F800000;
    mov.f32 %f6, 0f3F800000;
    mov.f32 %f7, 0f3F800000;
    mov.f32 %f8, 0f3F800000;
    setp.eq.u32 %p2, %r1, %r1;
    wgmma.fence.sync.aligned;
    wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%f1, %f2, %f3, %f4, %f5, %f6, %f7, %f8}, %rd8, %rd9, %p2, 1, 1, 0, 0;
    wgmma.commit_group.sync.aligned;
    WAIT
    shr.u32 %r20, %r1, 5;
    and.b32 %r21, %r1, 31;
    shr.u32 %r22, %r21, 2;
    and.b32 %r23, %r21, 3;
    shl.b32 %r24, %r20, 4;
    add.s32 %r25, %r24, %r22;
    shl.b32 %r26, %r23, 1;
    shl.b32 %r27, %r25, 4;
    add.s32 %r28, %r27, %r26;
    mul.wide.u32 %rd10, %r28, 4;
    add.s64 %rd11, %rd3, %rd10;
    st.global.f32 [%rd11], %f1;
    st.global.f32 [%rd11+4], %f2;
    st.global.f32 [%rd11+512], %f3;
    st.global.f32 [%rd11+516], %f4;
    st.global.f32 [%rd11+32], %f5;
    st.global.f32 [%rd11+36], %f6;
    st.global.f32 [%rd11+544], %f7;
    st.global.f32 [%rd11+548], %f8;
    ret;
}
"#;

fn wgmma(fence: bool, wait: bool, a: &[bf16], bt: &[bf16]) -> Result<Vec<f32>, EmuError> {
    let ptx = WGMMA
        .replace(
            "FENCE",
            if fence {
                "fence.proxy.async.shared::cta;"
            } else {
                ""
            },
        )
        .replace(
            "WAIT",
            if wait {
                "wgmma.wait_group.sync.aligned 0;"
            } else {
                ""
            },
        );
    run_wgmma(&ptx, a, bt, &LaunchConfig::new([1, 1, 1], [128, 1, 1])).map(|(_, d)| d)
}

/// Runs the `WGMMA` kernel text `ptx` (one warpgroup) on A `a` and Bᵀ `bt` under `cfg`; the
/// report and D.
fn run_wgmma(
    ptx: &str,
    a: &[bf16],
    bt: &[bf16],
    cfg: &LaunchConfig,
) -> Result<(Report, Vec<f32>), EmuError> {
    let emu = Emulator::new(ptx)?;
    let mut g = GlobalMemory::new();
    let bytes = |v: &[bf16]| {
        v.iter()
            .flat_map(|x| x.to_bits().to_le_bytes())
            .collect::<Vec<u8>>()
    };
    let pa = g.alloc("a", bytes(a));
    let pb = g.alloc("bt", bytes(bt));
    let pd = g.alloc("d", vec![0u8; 64 * 16 * 4]);
    let params = emu.param_buffer(
        "wg",
        &[
            pa.to_le_bytes().to_vec(),
            pb.to_le_bytes().to_vec(),
            pd.to_le_bytes().to_vec(),
        ],
    )?;
    let report = emu.launch("wg", cfg, &params, &mut g)?;
    let d = g
        .get(pd)
        .expect("d")
        .data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((report, d))
}

fn wgmma_inputs(rng: &mut StdRng) -> (Vec<bf16>, Vec<bf16>) {
    let a = (0..64 * 16)
        .map(|_| bf16::from_f32(rng.gen_range(-2.0..2.0)))
        .collect();
    let bt = (0..16 * 16)
        .map(|_| bf16::from_f32(rng.gen_range(-2.0..2.0)))
        .collect();
    (a, bt)
}

#[test]
fn wgmma_from_shared_descriptors_computes_a_matrix_product() {
    let seed = rand::random::<u64>();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..2 {
        let (a, bt) = wgmma_inputs(&mut rng);
        let d = wgmma(true, true, &a, &bt).unwrap();
        for m in 0..64 {
            for n in 0..16 {
                let want = 1.0
                    + (0..16)
                        .map(|k| a[m * 16 + k].to_f64() * bt[n * 16 + k].to_f64())
                        .sum::<f64>();
                let got = f64::from(d[m * 16 + n]);
                assert!(
                    (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "seed {seed}: D[{m}][{n}] = {got}, expected {want}"
                );
            }
        }
    }
}

#[test]
fn wgmma_accumulators_read_without_wait_group_are_nan_and_reported() {
    let mut rng = StdRng::seed_from_u64(5);
    let (a, bt) = wgmma_inputs(&mut rng);
    let err = wgmma(true, false, &a, &bt).unwrap_err();
    let EmuError::Sanitizer { findings, .. } = &err else {
        panic!("expected findings, got {err}")
    };
    assert!(
        findings.iter().any(|f| f.kind == FindingKind::AsyncHazard
            && f.opcode.starts_with("wgmma.mma_async")
            && f.message.contains("wait_group")),
        "{err}"
    );
    // And the numbers are visibly wrong: with the sanitizer's findings not fatal, D is NaN.
    let ptx = WGMMA
        .replace("FENCE", "fence.proxy.async.shared::cta;")
        .replace("WAIT", "");
    let mut cfg = LaunchConfig::new([1, 1, 1], [128, 1, 1]);
    cfg.findings_are_errors = false;
    let (report, d) = run_wgmma(&ptx, &a, &bt, &cfg).unwrap();
    assert!(!report.findings.is_empty());
    assert!(d.iter().all(|x| x.is_nan()));
}

#[test]
fn generic_shared_writes_read_by_wgmma_without_fence_proxy_async_are_reported() {
    let mut rng = StdRng::seed_from_u64(6);
    let (a, bt) = wgmma_inputs(&mut rng);
    let err = wgmma(false, true, &a, &bt).unwrap_err();
    let EmuError::Sanitizer { findings, .. } = &err else {
        panic!("expected findings, got {err}")
    };
    assert!(
        findings
            .iter()
            .any(|f| f.kind == FindingKind::AsyncHazard && f.message.contains("fence.proxy.async")),
        "{err}"
    );
}

/// Lanes 0..4 arrive on a barrier initialized for one arrival (the missing lane-0 guard), and
/// lane 0 arrives with a count of 2 on another initialized for one.
const OVER_ARRIVE: &str = r#"
.version 8.3
.target sm_90a
.address_size 64
.visible .entry over()
{
    .reg .pred %p<2>;
    .reg .b32 %r<4>;
    .reg .b64 %rd<4>;
    .shared .align 8 .b64 bar;
    .shared .align 8 .b64 bar2;
    mov.u32 %r1, %tid.x;
    setp.ne.u32 %p1, %r1, 0;
    @%p1 bra INIT_DONE;
    mbarrier.init.shared::cta.b64 [bar], 1;
    mbarrier.init.shared::cta.b64 [bar2], 1;
    mbarrier.arrive.shared::cta.b64 %rd2, [bar2], 2;
INIT_DONE:
    bar.warp.sync -1;
    setp.lt.u32 %p1, %r1, 4;
    @%p1 mbarrier.arrive.shared::cta.b64 %rd1, [bar];
    ret;
}
"#;

#[test]
fn arrivals_beyond_the_count_are_reported_with_the_init_line() {
    let emu = Emulator::new(OVER_ARRIVE).unwrap();
    let mut g = GlobalMemory::new();
    let err = emu
        .launch(
            "over",
            &LaunchConfig::new([1, 1, 1], [32, 1, 1]),
            &[],
            &mut g,
        )
        .unwrap_err();
    let EmuError::Sanitizer { findings, .. } = &err else {
        panic!("expected findings, got {err}")
    };
    let line_of = |text: &str| {
        OVER_ARRIVE
            .lines()
            .position(|l| l.contains(text))
            .expect("line") as u32
            + 1
    };
    let over = |line: u32, init: u32| {
        findings.iter().any(|f| {
            f.kind == FindingKind::Mbarrier
                && f.line == line
                && f.message
                    .contains(&format!("initialized at PTX line {init}"))
        })
    };
    assert!(
        over(line_of("[bar2], 2;"), line_of("[bar2], 1;")),
        "count 2 on a barrier of 1: {err}"
    );
    assert!(
        over(line_of("@%p1 mbarrier.arrive"), line_of("[bar], 1;")),
        "four lanes on a barrier of 1: {err}"
    );
}

/// One warp: a 2-D TMA load of a 64×8 bf16 box (128-byte swizzle, partly outside the tensor)
/// completing on an mbarrier, a copy of the raw shared image to `out`, and a TMA store of the
/// box to a second tensor of the same shape.
const TMA: &str = r#"
.version 8.3
.target sm_90a
.address_size 64
.visible .entry tma(.param .align 64 .b8 src_map[128], .param .align 64 .b8 dst_map[128], .param .u64 pout, .param .u32 cx, .param .u32 cy)
{
    .reg .pred %p<4>;
    .reg .b32 %r<20>;
    .reg .b64 %rd<10>;
    .shared .align 1024 .b8 tile[1024];
    .shared .align 8 .b64 full;
    mov.u32 %r1, %tid.x;
    setp.eq.u32 %p1, %r1, 0;
    @%p1 mbarrier.init.shared::cta.b64 [full], 1;
    INIT_FENCE
    bar.sync 0;
    ld.param.u32 %r2, [cx];
    ld.param.u32 %r3, [cy];
    ld.param.u64 %rd1, [pout];
    @%p1 mbarrier.arrive.expect_tx.shared::cta.b64 %rd2, [full], 1024;
    @%p1 cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [tile], [src_map, {%r2, %r3}], [full];
WAIT:
    mbarrier.try_wait.parity.shared::cta.b64 %p2, [full], PARITY;
    @!%p2 bra WAIT;
    mov.u32 %r4, tile;
    shl.b32 %r5, %r1, 5;
    add.s32 %r6, %r4, %r5;
    ld.shared.v4.u32 {%r10, %r11, %r12, %r13}, [%r6];
    ld.shared.v4.u32 {%r14, %r15, %r16, %r17}, [%r6+16];
    cvt.u64.u32 %rd3, %r5;
    add.s64 %rd4, %rd1, %rd3;
    st.global.v4.u32 [%rd4], {%r10, %r11, %r12, %r13};
    st.global.v4.u32 [%rd4+16], {%r14, %r15, %r16, %r17};
    REWRITE
    bar.sync 0;
    @%p1 cp.async.bulk.tensor.2d.global.shared::cta.tile.bulk_group [dst_map, {%r2, %r3}], [tile];
    @%p1 cp.async.bulk.commit_group;
    @%p1 cp.async.bulk.wait_group.read 0;
    ret;
}
"#;

const TMA_DIMS: [u64; 2] = [100, 20];
const TMA_PITCH: usize = 104; // elements per row in memory: 208 bytes, a multiple of 16
const SENTINEL: u16 = 0x7777;

struct TmaRun {
    src: Vec<u16>,
    image: Vec<u8>,
    dst: Vec<u16>,
}

fn tma(
    init_fence: &str,
    parity: u32,
    rewrite: &str,
    cx: u32,
    cy: u32,
    findings_are_errors: bool,
) -> Result<(TmaRun, Vec<tilekit_emu::sanitizer::Finding>), EmuError> {
    use tilekit_emu::asynchrony::{OobFill, TensorMap};
    use tilekit_emu::tensor_core::smem_matrix::Swizzle;
    let ptx = TMA
        .replace("INIT_FENCE", init_fence)
        .replace("PARITY", &parity.to_string())
        .replace("REWRITE", rewrite);
    let emu = Emulator::new(&ptx)?;
    let mut rng = StdRng::seed_from_u64(u64::from(cx * 100 + cy));
    let src: Vec<u16> = (0..TMA_PITCH * TMA_DIMS[1] as usize)
        .map(|_| bf16::from_f32(rng.gen_range(-4.0..4.0)).to_bits())
        .collect();
    let as_bytes = |v: &[u16]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let mut g = GlobalMemory::new();
    let psrc = g.alloc("src", as_bytes(&src));
    let pdst = g.alloc("dst", as_bytes(&vec![SENTINEL; src.len()]));
    let pout = g.alloc("out", vec![0u8; 1024]);
    let map = |base| {
        TensorMap::new(
            2,
            base,
            TMA_DIMS.to_vec(),
            vec![2 * TMA_PITCH as u64],
            vec![64, 8],
            Swizzle::B128,
            OobFill::Zero,
        )
        .unwrap()
        .encode()
        .to_vec()
    };
    let args = [
        map(psrc),
        map(pdst),
        pout.to_le_bytes().to_vec(),
        cx.to_le_bytes().to_vec(),
        cy.to_le_bytes().to_vec(),
    ];
    let params = emu.param_buffer("tma", &args)?;
    let mut cfg = LaunchConfig::new([1, 1, 1], [32, 1, 1]);
    cfg.findings_are_errors = findings_are_errors;
    let report = emu.launch("tma", &cfg, &params, &mut g)?;
    let image = g.get(pout).unwrap().data.clone();
    let dst = g
        .get(pdst)
        .unwrap()
        .data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    Ok((TmaRun { src, image, dst }, report.findings))
}

const INIT_FENCE: &str = "fence.mbarrier_init.release.cluster;";

#[test]
fn tma_load_lands_a_swizzled_zero_filled_box_and_tma_store_writes_only_inside_the_tensor() {
    for (cx, cy) in [(48u32, 15u32), (0, 0), (36, 12)] {
        let (run, _) = tma(INIT_FENCE, 0, "", cx, cy, true).unwrap();
        for y in 0..8usize {
            for x in 0..64usize {
                // 128-byte swizzle of a 1024-aligned box: 16-byte chunk x/8 of row y moves to
                // chunk (x/8) XOR y.
                let at = y * 128 + (((x / 8) ^ y) * 16) + (x % 8) * 2;
                let (gx, gy) = (cx as usize + x, cy as usize + y);
                let inside = gx < TMA_DIMS[0] as usize && gy < TMA_DIMS[1] as usize;
                let want = if inside {
                    run.src[gy * TMA_PITCH + gx]
                } else {
                    0
                };
                assert_eq!(
                    u16::from_le_bytes([run.image[at], run.image[at + 1]]),
                    want,
                    "box ({cx},{cy}) element ({x},{y})"
                );
            }
        }
        for gy in 0..TMA_DIMS[1] as usize {
            for gx in 0..TMA_PITCH {
                let in_box = (cx as usize..cx as usize + 64).contains(&gx)
                    && (cy as usize..cy as usize + 8).contains(&gy);
                let want = if in_box && gx < TMA_DIMS[0] as usize {
                    run.src[gy * TMA_PITCH + gx]
                } else {
                    SENTINEL
                };
                assert_eq!(
                    run.dst[gy * TMA_PITCH + gx],
                    want,
                    "box ({cx},{cy}) dst ({gx},{gy})"
                );
            }
        }
    }
}

#[test]
fn tma_consumer_with_the_wrong_parity_reads_before_the_data_arrives() {
    let err = tma(INIT_FENCE, 1, "", 0, 0, true).err().expect("findings");
    let EmuError::Sanitizer { findings, .. } = &err else {
        panic!("expected findings, got {err}")
    };
    assert!(
        findings.iter().any(|f| f.kind == FindingKind::AsyncHazard
            && f.opcode.starts_with("ld.shared")
            && f.message.contains("cp.async.bulk.tensor")),
        "{err}"
    );
    // The numbers are wrong too: the box never landed before the reads.
    let (run, findings) = tma(INIT_FENCE, 1, "", 0, 0, false).unwrap();
    assert!(!findings.is_empty());
    assert!(run.image.iter().all(|b| *b == 0));
}

#[test]
fn tma_signalling_an_mbarrier_without_an_init_fence_is_reported() {
    let err = tma("", 0, "", 0, 0, true).err().expect("findings");
    let EmuError::Sanitizer { findings, .. } = &err else {
        panic!("expected findings, got {err}")
    };
    assert!(
        findings.iter().any(
            |f| f.kind == FindingKind::AsyncHazard && f.message.contains("fence.mbarrier_init")
        ),
        "{err}"
    );
}

#[test]
fn tma_store_of_generic_writes_needs_fence_proxy_async() {
    let rewrite = "st.shared.v4.u32 [%r6], {%r10, %r11, %r12, %r13};";
    let err = tma(INIT_FENCE, 0, rewrite, 0, 0, true)
        .err()
        .expect("findings");
    let EmuError::Sanitizer { findings, .. } = &err else {
        panic!("expected findings, got {err}")
    };
    assert!(
        findings.iter().any(|f| f.kind == FindingKind::AsyncHazard
            && f.opcode.starts_with("cp.async.bulk.tensor")
            && f.message.contains("fence.proxy.async")),
        "{err}"
    );
    let fenced = format!("{rewrite}\n    fence.proxy.async.shared::cta;");
    let (_, findings) = tma(INIT_FENCE, 0, &fenced, 0, 0, true).unwrap();
    assert!(findings.is_empty());
}

/// Warp 1 copies 32 floats into shared memory with `cp.async` and signals their completion with
/// `cp.async.mbarrier.arrive` on a barrier initialized for 32 arrivals; warp 0 waits for the
/// phase and copies shared memory to `out`.
const CP_ASYNC_ARRIVE: &str = r#"
.version 8.0
.target sm_80
.address_size 64
.visible .entry cparrive(.param .u64 pin, .param .u64 pout)
{
    .reg .pred %p<4>;
    .reg .b32 %r<10>;
    .reg .f32 %f<2>;
    .reg .b64 %rd<8>;
    .shared .align 8 .b64 bar;
    .shared .align 16 .b8 slot[128];
    ld.param.u64 %rd1, [pin];
    ld.param.u64 %rd2, [pout];
    mov.u32 %r1, %tid.x;
    and.b32 %r2, %r1, 31;
    shr.u32 %r3, %r1, 5;
    setp.ne.u32 %p1, %r1, 0;
    @%p1 bra INITIALIZED;
    mbarrier.init.shared.b64 [bar], 32;
INITIALIZED:
    bar.sync 0;
    mov.u32 %r4, slot;
    shl.b32 %r5, %r2, 2;
    add.s32 %r6, %r4, %r5;
    mul.wide.u32 %rd3, %r2, 4;
    setp.eq.u32 %p2, %r3, 0;
    @%p2 bra CONSUMER;
    add.s64 %rd4, %rd1, %rd3;
    cp.async.ca.shared.global [%r6], [%rd4], 4;
    ARRIVE
    ret;
CONSUMER:
    mbarrier.try_wait.parity.shared.b64 %p3, [bar], 0;
    @!%p3 bra CONSUMER;
    ld.shared.f32 %f1, [%r6];
    add.s64 %rd5, %rd2, %rd3;
    st.global.f32 [%rd5], %f1;
    ret;
}
"#;

fn cp_async_arrive(arrive: &str) -> Result<Vec<f32>, EmuError> {
    let emu = Emulator::new(&CP_ASYNC_ARRIVE.replace("ARRIVE", arrive))?;
    let input = random_input(9);
    let mut g = GlobalMemory::new();
    let pin = g.alloc("in", input.iter().flat_map(|x| x.to_le_bytes()).collect());
    let pout = g.alloc("out", vec![0u8; 128]);
    let params = emu.param_buffer(
        "cparrive",
        &[pin.to_le_bytes().to_vec(), pout.to_le_bytes().to_vec()],
    )?;
    emu.launch(
        "cparrive",
        &LaunchConfig::new([1, 1, 1], [64, 1, 1]),
        &params,
        &mut g,
    )?;
    let out: Vec<f32> = g
        .get(pout)
        .unwrap()
        .data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(out, input);
    Ok(out)
}

#[test]
fn cp_async_mbarrier_arrive_noinc_counts_each_thread_once_its_copies_landed() {
    cp_async_arrive("cp.async.mbarrier.arrive.noinc.shared.b64 [bar];").unwrap();
}

#[test]
fn cp_async_mbarrier_arrive_without_noinc_does_not_count_against_the_init_count() {
    // Without .noinc the pending count rises by one before each asynchronous arrival, so a
    // barrier initialized for the 32 copying threads never completes its phase: the consumer
    // waits forever.
    let err = cp_async_arrive("cp.async.mbarrier.arrive.shared.b64 [bar];").unwrap_err();
    assert!(matches!(err, EmuError::Deadlock { .. }), "{err}");
}

/// The Hopper GEMM step end to end: thread 0 loads A (64×64 bf16, K-major) and Bᵀ (16×64) with
/// TMA into 128-byte-swizzled tiles completing on one mbarrier; the warpgroup waits, then chains
/// four `wgmma.mma_async` k-steps (the descriptor's start advancing 32 bytes inside the swizzled
/// rows; the first with scale-d false) in one commit group, and stores D = A·B.
const TMA_WGMMA: &str = r#"
.version 8.3
.target sm_90a
.address_size 64
.visible .entry gemm(.param .align 64 .b8 a_map[128], .param .align 64 .b8 b_map[128], .param .u64 pd)
{
    .reg .pred %p<8>;
    .reg .b32 %r<40>;
    .reg .f32 %f<10>;
    .reg .b64 %rd<30>;
    .shared .align 1024 .b8 ta[8192];
    .shared .align 1024 .b8 tb[2048];
    .shared .align 8 .b64 full;
    mov.u32 %r1, %tid.x;
    setp.eq.u32 %p1, %r1, 0;
    @%p1 mbarrier.init.shared::cta.b64 [full], 1;
    fence.mbarrier_init.release.cluster;
    bar.sync 0;
    mov.u32 %r2, 0;
    @%p1 mbarrier.arrive.expect_tx.shared::cta.b64 %rd1, [full], 10240;
    @%p1 cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [ta], [a_map, {%r2, %r2}], [full];
    @%p1 cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [tb], [b_map, {%r2, %r2}], [full];
WAIT:
    mbarrier.try_wait.parity.shared::cta.b64 %p2, [full], 0;
    @!%p2 bra WAIT;
    mov.u32 %r3, ta;
    cvt.u64.u32 %rd2, %r3;
    shr.u64 %rd2, %rd2, 4;
    or.b64 %rd3, %rd2, 0x4000004000010000;
    mov.u32 %r4, tb;
    cvt.u64.u32 %rd4, %r4;
    shr.u64 %rd4, %rd4, 4;
    or.b64 %rd5, %rd4, 0x4000004000010000;
    setp.ne.u32 %p3, %r1, %r1;
    setp.eq.u32 %p4, %r1, %r1;
    wgmma.fence.sync.aligned;
    wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%f1, %f2, %f3, %f4, %f5, %f6, %f7, %f8}, %rd3, %rd5, %p3, 1, 1, 0, 0;
    add.s64 %rd6, %rd3, 2;
    add.s64 %rd7, %rd5, 2;
    wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%f1, %f2, %f3, %f4, %f5, %f6, %f7, %f8}, %rd6, %rd7, %p4, 1, 1, 0, 0;
    add.s64 %rd6, %rd3, 4;
    add.s64 %rd7, %rd5, 4;
    wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%f1, %f2, %f3, %f4, %f5, %f6, %f7, %f8}, %rd6, %rd7, %p4, 1, 1, 0, 0;
    add.s64 %rd6, %rd3, 6;
    add.s64 %rd7, %rd5, 6;
    wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%f1, %f2, %f3, %f4, %f5, %f6, %f7, %f8}, %rd6, %rd7, %p4, 1, 1, 0, 0;
    wgmma.commit_group.sync.aligned;
    wgmma.wait_group.sync.aligned 0;
    ld.param.u64 %rd8, [pd];
    shr.u32 %r20, %r1, 5;
    and.b32 %r21, %r1, 31;
    shr.u32 %r22, %r21, 2;
    and.b32 %r23, %r21, 3;
    shl.b32 %r24, %r20, 4;
    add.s32 %r25, %r24, %r22;
    shl.b32 %r26, %r23, 1;
    shl.b32 %r27, %r25, 4;
    add.s32 %r28, %r27, %r26;
    mul.wide.u32 %rd10, %r28, 4;
    add.s64 %rd11, %rd8, %rd10;
    st.global.f32 [%rd11], %f1;
    st.global.f32 [%rd11+4], %f2;
    st.global.f32 [%rd11+512], %f3;
    st.global.f32 [%rd11+516], %f4;
    st.global.f32 [%rd11+32], %f5;
    st.global.f32 [%rd11+36], %f6;
    st.global.f32 [%rd11+544], %f7;
    st.global.f32 [%rd11+548], %f8;
    ret;
}
"#;

#[test]
fn tma_fed_swizzled_wgmma_k_loop_computes_a_matrix_product() {
    use tilekit_emu::asynchrony::{OobFill, TensorMap};
    use tilekit_emu::tensor_core::smem_matrix::Swizzle;
    let seed = rand::random::<u64>();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let a: Vec<bf16> = (0..64 * 64)
        .map(|_| bf16::from_f32(rng.gen_range(-2.0..2.0)))
        .collect();
    let bt: Vec<bf16> = (0..16 * 64)
        .map(|_| bf16::from_f32(rng.gen_range(-2.0..2.0)))
        .collect();
    let emu = Emulator::new(TMA_WGMMA).unwrap();
    let bytes = |v: &[bf16]| {
        v.iter()
            .flat_map(|x| x.to_bits().to_le_bytes())
            .collect::<Vec<u8>>()
    };
    let mut g = GlobalMemory::new();
    let (pa, pb, pd) = (
        g.alloc("a", bytes(&a)),
        g.alloc("bt", bytes(&bt)),
        g.alloc("d", vec![0u8; 64 * 16 * 4]),
    );
    let map = |base, rows| {
        TensorMap::new(
            2,
            base,
            vec![64, rows],
            vec![128],
            vec![64, rows as u32],
            Swizzle::B128,
            OobFill::Zero,
        )
        .unwrap()
        .encode()
        .to_vec()
    };
    let params = emu
        .param_buffer(
            "gemm",
            &[map(pa, 64), map(pb, 16), pd.to_le_bytes().to_vec()],
        )
        .unwrap();
    emu.launch(
        "gemm",
        &LaunchConfig::new([1, 1, 1], [128, 1, 1]),
        &params,
        &mut g,
    )
    .unwrap();
    let d: Vec<f32> = g
        .get(pd)
        .unwrap()
        .data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    for m in 0..64 {
        for n in 0..16 {
            let want: f64 = (0..64)
                .map(|k| a[m * 64 + k].to_f64() * bt[n * 64 + k].to_f64())
                .sum();
            let got = f64::from(d[m * 16 + n]);
            assert!(
                (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                "seed {seed}: D[{m}][{n}] = {got}, expected {want}"
            );
        }
    }
}

/// fp8 (e4m3) wgmma accumulated over 64 chained k32 steps on the same tiles: A (64×32) and Bᵀ
/// (8×32) are copied to shared memory in the no-swizzle K-major layout (LBO 128, SBO 256).
const FP8: &str = r#"
.version 8.3
.target sm_90a
.address_size 64
.visible .entry fp8(.param .u64 pa, .param .u64 pb, .param .u64 pd)
{
    .reg .pred %p<4>;
    .reg .b32 %r<40>;
    .reg .f32 %f<6>;
    .reg .b64 %rd<20>;
    .shared .align 1024 .b8 smem[4096];
    ld.param.u64 %rd1, [pa];
    ld.param.u64 %rd2, [pb];
    ld.param.u64 %rd3, [pd];
    mov.u32 %r1, %tid.x;
    mov.u32 %r2, smem;
    shr.u32 %r3, %r1, 1;
    and.b32 %r4, %r1, 1;
    and.b32 %r5, %r3, 7;
    shl.b32 %r5, %r5, 4;
    shr.u32 %r6, %r3, 3;
    shl.b32 %r6, %r6, 8;
    shl.b32 %r7, %r4, 7;
    add.s32 %r8, %r5, %r6;
    add.s32 %r8, %r8, %r7;
    add.s32 %r9, %r2, %r8;
    mul.wide.u32 %rd4, %r1, 16;
    add.s64 %rd5, %rd1, %rd4;
    ld.global.v4.u32 {%r10, %r11, %r12, %r13}, [%rd5];
    st.shared.v4.u32 [%r9], {%r10, %r11, %r12, %r13};
    setp.lt.u32 %p1, %r1, 16;
    add.s64 %rd6, %rd2, %rd4;
    @%p1 ld.global.v4.u32 {%r10, %r11, %r12, %r13}, [%rd6];
    add.s32 %r14, %r9, 2048;
    @%p1 st.shared.v4.u32 [%r14], {%r10, %r11, %r12, %r13};
    fence.proxy.async.shared::cta;
    bar.sync 0;
    cvt.u64.u32 %rd7, %r2;
    shr.u64 %rd7, %rd7, 4;
    or.b64 %rd8, %rd7, 0x0000001000080000;
    add.s64 %rd9, %rd8, 128;
    mov.f32 %f1, 0f00000000;
    mov.f32 %f2, 0f00000000;
    mov.f32 %f3, 0f00000000;
    mov.f32 %f4, 0f00000000;
    setp.eq.u32 %p2, %r1, %r1;
    mov.u32 %r30, 0;
    wgmma.fence.sync.aligned;
LOOP:
    wgmma.mma_async.sync.aligned.m64n8k32.f32.e4m3.e4m3 {%f1, %f2, %f3, %f4}, %rd8, %rd9, %p2, 1, 1;
    wgmma.commit_group.sync.aligned;
    wgmma.wait_group.sync.aligned 0;
    add.u32 %r30, %r30, 1;
    setp.lt.u32 %p3, %r30, 64;
    @%p3 bra LOOP;
    shr.u32 %r20, %r1, 5;
    and.b32 %r21, %r1, 31;
    shr.u32 %r22, %r21, 2;
    and.b32 %r23, %r21, 3;
    shl.b32 %r24, %r20, 4;
    add.s32 %r25, %r24, %r22;
    shl.b32 %r26, %r23, 1;
    shl.b32 %r27, %r25, 3;
    add.s32 %r28, %r27, %r26;
    mul.wide.u32 %rd10, %r28, 4;
    add.s64 %rd11, %rd3, %rd10;
    st.global.f32 [%rd11], %f1;
    st.global.f32 [%rd11+4], %f2;
    st.global.f32 [%rd11+256], %f3;
    st.global.f32 [%rd11+260], %f4;
    ret;
}
"#;

#[test]
fn fp8_wgmma_accumulation_is_exact_by_default_and_loses_bits_under_the_narrow_adder_option() {
    use tilekit_emu::tensor_core::{Accumulation, OperandType};
    let mut rng = StdRng::seed_from_u64(0xf8);
    // e4m3 values in [1, 2): sign 0, exponent 7, random mantissa.
    let a: Vec<u8> = (0..64 * 32).map(|_| 0x38 | rng.gen_range(0..8u8)).collect();
    let bt: Vec<u8> = (0..8 * 32).map(|_| 0x38 | rng.gen_range(0..8u8)).collect();
    let value = |b: u8| OperandType::E4m3.decode(u32::from(b));
    let run = |accumulation| {
        let emu = Emulator::new(FP8).unwrap();
        let mut g = GlobalMemory::new();
        let (pa, pb, pd) = (
            g.alloc("a", a.clone()),
            g.alloc("bt", bt.clone()),
            g.alloc("d", vec![0u8; 64 * 8 * 4]),
        );
        let params = emu
            .param_buffer(
                "fp8",
                &[
                    pa.to_le_bytes().to_vec(),
                    pb.to_le_bytes().to_vec(),
                    pd.to_le_bytes().to_vec(),
                ],
            )
            .unwrap();
        let mut cfg = LaunchConfig::new([1, 1, 1], [128, 1, 1]);
        cfg.fp8_accumulation = accumulation;
        emu.launch("fp8", &cfg, &params, &mut g).unwrap();
        g.get(pd)
            .unwrap()
            .data
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect::<Vec<f64>>()
    };
    let exact = run(Accumulation::Exact);
    let narrow = run(Accumulation::AlignedTruncation { kept_bits: 14 });
    let mut worst_narrow = 0.0f64;
    for m in 0..64 {
        for n in 0..8 {
            let want = 64.0
                * (0..32)
                    .map(|k| value(a[m * 32 + k]) * value(bt[n * 32 + k]))
                    .sum::<f64>();
            let (e, t) = (exact[m * 8 + n], narrow[m * 8 + n]);
            assert!(
                (e - want).abs() <= 1e-6 * want,
                "exact D[{m}][{n}] = {e}, expected {want}"
            );
            // Truncation only ever drops magnitude, by at most one quantum (2^(e_max - 13)) per
            // addend: 33 addends in each of 64 steps.
            assert!(t <= e, "narrow D[{m}][{n}] = {t} above exact {e}");
            assert!(
                e - t <= 64.0 * 33.0 * 2f64.powi(want.log2().floor() as i32 - 13),
                "narrow D[{m}][{n}] = {t}, exact {e}"
            );
            worst_narrow = worst_narrow.max((e - t) / want);
        }
    }
    assert!(
        worst_narrow > 1e-4,
        "the 14-bit adder must lose visibly over 64 steps (worst relative loss {worst_narrow})"
    );
}

/// wgmma with A from registers: A (64×16 bf16) is stored row-major in shared memory and each
/// warp loads its 16 rows with `ldmatrix.x4` (lane l at row l % 16, column 8 (l / 16)), which
/// gives the register fragment wgmma expects; Bᵀ comes through a descriptor as in `WGMMA`.
const WGMMA_RS: &str = r#"
.version 8.3
.target sm_90a
.address_size 64
.visible .entry wgrs(.param .u64 pa, .param .u64 pb, .param .u64 pd)
{
    .reg .pred %p<4>;
    .reg .b32 %r<50>;
    .reg .f32 %f<10>;
    .reg .b64 %rd<20>;
    .shared .align 1024 .b8 smem[4096];
    ld.param.u64 %rd1, [pa];
    ld.param.u64 %rd2, [pb];
    ld.param.u64 %rd3, [pd];
    mov.u32 %r1, %tid.x;
    mov.u32 %r2, smem;
    shl.b32 %r3, %r1, 4;
    add.s32 %r9, %r2, %r3;
    mul.wide.u32 %rd4, %r1, 16;
    add.s64 %rd5, %rd1, %rd4;
    ld.global.v4.u32 {%r10, %r11, %r12, %r13}, [%rd5];
    st.shared.v4.u32 [%r9], {%r10, %r11, %r12, %r13};
    shr.u32 %r33, %r1, 1;
    and.b32 %r34, %r1, 1;
    and.b32 %r35, %r33, 7;
    shl.b32 %r35, %r35, 4;
    shl.b32 %r36, %r34, 7;
    add.s32 %r37, %r35, %r36;
    add.s32 %r38, %r2, %r37;
    setp.lt.u32 %p1, %r1, 16;
    add.s64 %rd6, %rd2, %rd4;
    @%p1 ld.global.v4.u32 {%r10, %r11, %r12, %r13}, [%rd6];
    add.s32 %r14, %r38, 2048;
    @%p1 st.shared.v4.u32 [%r14], {%r10, %r11, %r12, %r13};
    fence.proxy.async.shared::cta;
    bar.sync 0;
    shr.u32 %r20, %r1, 5;
    and.b32 %r21, %r1, 31;
    and.b32 %r15, %r21, 15;
    shl.b32 %r16, %r20, 4;
    add.s32 %r15, %r15, %r16;
    shl.b32 %r15, %r15, 5;
    shr.u32 %r17, %r21, 4;
    shl.b32 %r17, %r17, 4;
    add.s32 %r15, %r15, %r17;
    add.s32 %r15, %r15, %r2;
    ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%r40, %r41, %r42, %r43}, [%r15];
    cvt.u64.u32 %rd7, %r2;
    shr.u64 %rd7, %rd7, 4;
    or.b64 %rd8, %rd7, 68720001024;
    add.s64 %rd9, %rd8, 128;
    setp.ne.u32 %p2, %r1, %r1;
    wgmma.fence.sync.aligned;
    wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {%f1, %f2, %f3, %f4}, {%r40, %r41, %r42, %r43}, %rd9, %p2, 1, 1, 0;
    wgmma.commit_group.sync.aligned;
    wgmma.wait_group.sync.aligned 0;
    shr.u32 %r22, %r21, 2;
    and.b32 %r23, %r21, 3;
    shl.b32 %r24, %r20, 4;
    add.s32 %r25, %r24, %r22;
    shl.b32 %r26, %r23, 1;
    shl.b32 %r27, %r25, 3;
    add.s32 %r28, %r27, %r26;
    mul.wide.u32 %rd10, %r28, 4;
    add.s64 %rd11, %rd3, %rd10;
    st.global.f32 [%rd11], %f1;
    st.global.f32 [%rd11+4], %f2;
    st.global.f32 [%rd11+256], %f3;
    st.global.f32 [%rd11+260], %f4;
    ret;
}
"#;

#[test]
fn wgmma_with_a_from_ldmatrix_registers_computes_a_matrix_product() {
    let seed = rand::random::<u64>();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let a: Vec<bf16> = (0..64 * 16)
        .map(|_| bf16::from_f32(rng.gen_range(-2.0..2.0)))
        .collect();
    let bt: Vec<bf16> = (0..8 * 16)
        .map(|_| bf16::from_f32(rng.gen_range(-2.0..2.0)))
        .collect();
    let emu = Emulator::new(WGMMA_RS).unwrap();
    let bytes = |v: &[bf16]| {
        v.iter()
            .flat_map(|x| x.to_bits().to_le_bytes())
            .collect::<Vec<u8>>()
    };
    let mut g = GlobalMemory::new();
    let (pa, pb, pd) = (
        g.alloc("a", bytes(&a)),
        g.alloc("bt", bytes(&bt)),
        g.alloc("d", vec![0u8; 64 * 8 * 4]),
    );
    let params = emu
        .param_buffer(
            "wgrs",
            &[
                pa.to_le_bytes().to_vec(),
                pb.to_le_bytes().to_vec(),
                pd.to_le_bytes().to_vec(),
            ],
        )
        .unwrap();
    emu.launch(
        "wgrs",
        &LaunchConfig::new([1, 1, 1], [128, 1, 1]),
        &params,
        &mut g,
    )
    .unwrap();
    let d: Vec<f32> = g
        .get(pd)
        .unwrap()
        .data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    for m in 0..64 {
        for n in 0..8 {
            let want: f64 = (0..16)
                .map(|k| a[m * 16 + k].to_f64() * bt[n * 16 + k].to_f64())
                .sum();
            let got = f64::from(d[m * 8 + n]);
            assert!(
                (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                "seed {seed}: D[{m}][{n}] = {got}, expected {want}"
            );
        }
    }
}

#[test]
fn overwriting_a_wgmma_shared_operand_before_its_wait_is_reported() {
    let mut rng = StdRng::seed_from_u64(8);
    let (a, bt) = wgmma_inputs(&mut rng);
    let ptx = WGMMA
        .replace("FENCE", "fence.proxy.async.shared::cta;")
        .replace(
            "WAIT",
            "st.shared.u32 [%r9], %r1;\n    wgmma.wait_group.sync.aligned 0;",
        );
    let err = run_wgmma(&ptx, &a, &bt, &LaunchConfig::new([1, 1, 1], [128, 1, 1])).unwrap_err();
    let EmuError::Sanitizer { findings, .. } = &err else {
        panic!("expected findings, got {err}")
    };
    assert!(
        findings.iter().any(|f| f.kind == FindingKind::AsyncHazard
            && f.opcode.starts_with("st.shared")
            && f.message.contains("still reading")),
        "{err}"
    );
}

#[test]
fn warps_of_a_warpgroup_issuing_different_wgmma_instructions_are_reported() {
    let mut rng = StdRng::seed_from_u64(10);
    let (a, bt) = wgmma_inputs(&mut rng);
    let mma = "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%f1, %f2, %f3, %f4, %f5, %f6, %f7, %f8}, %rd8, %rd9, %p2, 1, 1, 0, 0;";
    // Warp 0 takes one copy of the instruction, warps 1..3 another: same shape, different lines.
    let divergent = format!("shr.u32 %r39, %r1, 5;\n    setp.eq.u32 %p3, %r39, 0;\n    @%p3 bra ALT;\n    {mma}\n    bra.uni JOIN;\nALT:\n    {mma}\nJOIN:");
    let ptx = WGMMA
        .replace("FENCE", "fence.proxy.async.shared::cta;")
        .replace("WAIT", "wgmma.wait_group.sync.aligned 0;")
        .replace(mma, &divergent);
    assert!(ptx.contains("ALT:"));
    let err = run_wgmma(&ptx, &a, &bt, &LaunchConfig::new([1, 1, 1], [128, 1, 1])).unwrap_err();
    let EmuError::Sanitizer { findings, .. } = &err else {
        panic!("expected findings, got {err}")
    };
    assert!(
        findings
            .iter()
            .any(|f| f.kind == FindingKind::Other
                && f.message.contains(".aligned over the warpgroup")),
        "{err}"
    );
}

/// A warp-specialized Hopper GEMM mainloop: warp 4 (lane 0) produces k-blocks of A (64×64) and
/// Bᵀ (16×64) into a 2-stage ring with TMA on `full` mbarriers after waiting on `empty` ones (the
/// first round on the opposite parity); warps 0–3 wait on `full`, run four chained wgmma k-steps,
/// and release the slot (RELEASE: `wgmma.wait_group` then one `empty` arrival per warp). K = 256:
/// each slot is reused once.
const PIPELINE: &str = r#"
.version 8.3
.target sm_90a
.address_size 64
.visible .entry pipe(.param .align 64 .b8 a_map[128], .param .align 64 .b8 b_map[128], .param .u64 pd)
{
    .reg .pred %p<12>;
    .reg .b32 %r<60>;
    .reg .f32 %f<10>;
    .reg .b64 %rd<30>;
    .shared .align 1024 .b8 ta[16384];
    .shared .align 1024 .b8 tb[4096];
    .shared .align 8 .b8 full[16];
    .shared .align 8 .b8 empty[16];
    mov.u32 %r1, %tid.x;
    shr.u32 %r2, %r1, 5;
    and.b32 %r3, %r1, 31;
    mov.u32 %r4, full;
    mov.u32 %r5, empty;
    setp.ne.u32 %p1, %r1, 0;
    @%p1 bra INIT_DONE;
    mbarrier.init.shared::cta.b64 [%r4], 1;
    mbarrier.init.shared::cta.b64 [%r4+8], 1;
    mbarrier.init.shared::cta.b64 [%r5], 4;
    mbarrier.init.shared::cta.b64 [%r5+8], 4;
INIT_DONE:
    fence.mbarrier_init.release.cluster;
    bar.sync 0;
    setp.eq.u32 %p2, %r2, 4;
    @%p2 bra PRODUCER;
    mov.f32 %f1, 0f00000000;
    mov.f32 %f2, 0f00000000;
    mov.f32 %f3, 0f00000000;
    mov.f32 %f4, 0f00000000;
    mov.f32 %f5, 0f00000000;
    mov.f32 %f6, 0f00000000;
    mov.f32 %f7, 0f00000000;
    mov.f32 %f8, 0f00000000;
    setp.eq.u32 %p3, %r1, %r1;
    setp.eq.u32 %p9, %r3, 0;
    mov.u32 %r10, 0;
    mov.u32 %r40, ta;
    mov.u32 %r41, tb;
    wgmma.fence.sync.aligned;
CLOOP:
    and.b32 %r11, %r10, 1;
    shr.u32 %r12, %r10, 1;
    and.b32 %r13, %r12, 1;
    shl.b32 %r14, %r11, 3;
    add.s32 %r15, %r4, %r14;
    add.s32 %r16, %r5, %r14;
CWAIT:
    mbarrier.try_wait.parity.shared::cta.b64 %p4, [%r15], %r13;
    @!%p4 bra CWAIT;
    shl.b32 %r17, %r11, 13;
    add.s32 %r18, %r40, %r17;
    shl.b32 %r19, %r11, 11;
    add.s32 %r20, %r41, %r19;
    cvt.u64.u32 %rd1, %r18;
    shr.u64 %rd1, %rd1, 4;
    or.b64 %rd2, %rd1, 0x4000004000010000;
    cvt.u64.u32 %rd3, %r20;
    shr.u64 %rd3, %rd3, 4;
    or.b64 %rd4, %rd3, 0x4000004000010000;
    wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%f1, %f2, %f3, %f4, %f5, %f6, %f7, %f8}, %rd2, %rd4, %p3, 1, 1, 0, 0;
    add.s64 %rd5, %rd2, 2;
    add.s64 %rd6, %rd4, 2;
    wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%f1, %f2, %f3, %f4, %f5, %f6, %f7, %f8}, %rd5, %rd6, %p3, 1, 1, 0, 0;
    add.s64 %rd5, %rd2, 4;
    add.s64 %rd6, %rd4, 4;
    wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%f1, %f2, %f3, %f4, %f5, %f6, %f7, %f8}, %rd5, %rd6, %p3, 1, 1, 0, 0;
    add.s64 %rd5, %rd2, 6;
    add.s64 %rd6, %rd4, 6;
    wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%f1, %f2, %f3, %f4, %f5, %f6, %f7, %f8}, %rd5, %rd6, %p3, 1, 1, 0, 0;
    wgmma.commit_group.sync.aligned;
    RELEASE
    add.u32 %r10, %r10, 1;
    setp.lt.u32 %p5, %r10, 4;
    @%p5 bra CLOOP;
    ld.param.u64 %rd8, [pd];
    shr.u32 %r22, %r3, 2;
    and.b32 %r23, %r3, 3;
    shl.b32 %r24, %r2, 4;
    add.s32 %r25, %r24, %r22;
    shl.b32 %r26, %r23, 1;
    shl.b32 %r27, %r25, 4;
    add.s32 %r28, %r27, %r26;
    mul.wide.u32 %rd10, %r28, 4;
    add.s64 %rd11, %rd8, %rd10;
    st.global.f32 [%rd11], %f1;
    st.global.f32 [%rd11+4], %f2;
    st.global.f32 [%rd11+512], %f3;
    st.global.f32 [%rd11+516], %f4;
    st.global.f32 [%rd11+32], %f5;
    st.global.f32 [%rd11+36], %f6;
    st.global.f32 [%rd11+544], %f7;
    st.global.f32 [%rd11+548], %f8;
    ret;
PRODUCER:
    setp.ne.u32 %p6, %r3, 0;
    @%p6 bra PDONE;
    mov.u32 %r30, 0;
    mov.u32 %r42, ta;
    mov.u32 %r44, tb;
PLOOP:
    and.b32 %r31, %r30, 1;
    shr.u32 %r32, %r30, 1;
    and.b32 %r33, %r32, 1;
    xor.b32 %r34, %r33, 1;
    shl.b32 %r35, %r31, 3;
    add.s32 %r36, %r4, %r35;
    add.s32 %r37, %r5, %r35;
PWAIT:
    mbarrier.try_wait.parity.shared::cta.b64 %p7, [%r37], %r34;
    @!%p7 bra PWAIT;
    mbarrier.arrive.expect_tx.shared::cta.b64 %rd12, [%r36], 10240;
    shl.b32 %r38, %r31, 13;
    add.s32 %r39, %r42, %r38;
    shl.b32 %r43, %r31, 11;
    add.s32 %r45, %r44, %r43;
    shl.b32 %r46, %r30, 6;
    mov.u32 %r47, 0;
    cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%r39], [a_map, {%r46, %r47}], [%r36];
    cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%r45], [b_map, {%r46, %r47}], [%r36];
    add.u32 %r30, %r30, 1;
    setp.lt.u32 %p8, %r30, 4;
    @%p8 bra PLOOP;
PDONE:
    ret;
}
"#;

const RELEASE_AFTER_WAIT: &str = "wgmma.wait_group.sync.aligned 0;\n    bar.warp.sync -1;\n    @%p9 mbarrier.arrive.shared::cta.b64 _, [%r16];";
const RELEASE_BEFORE_WAIT: &str = "bar.warp.sync -1;\n    @%p9 mbarrier.arrive.shared::cta.b64 _, [%r16];\n    wgmma.wait_group.sync.aligned 0;";

/// A, Bᵀ and the D the kernel computed.
type PipelineRun = (Vec<bf16>, Vec<bf16>, Vec<f32>);

fn pipeline(release: &str, seed: u64) -> Result<PipelineRun, EmuError> {
    use tilekit_emu::asynchrony::{OobFill, TensorMap};
    use tilekit_emu::tensor_core::smem_matrix::Swizzle;
    let mut rng = StdRng::seed_from_u64(seed);
    let a: Vec<bf16> = (0..64 * 256)
        .map(|_| bf16::from_f32(rng.gen_range(-1.0..1.0)))
        .collect();
    let bt: Vec<bf16> = (0..16 * 256)
        .map(|_| bf16::from_f32(rng.gen_range(-1.0..1.0)))
        .collect();
    let emu = Emulator::new(&PIPELINE.replace("RELEASE", release))?;
    let bytes = |v: &[bf16]| {
        v.iter()
            .flat_map(|x| x.to_bits().to_le_bytes())
            .collect::<Vec<u8>>()
    };
    let mut g = GlobalMemory::new();
    let (pa, pb, pd) = (
        g.alloc("a", bytes(&a)),
        g.alloc("bt", bytes(&bt)),
        g.alloc("d", vec![0u8; 64 * 16 * 4]),
    );
    let map = |base, rows: u64| {
        TensorMap::new(
            2,
            base,
            vec![256, rows],
            vec![512],
            vec![64, rows as u32],
            Swizzle::B128,
            OobFill::Zero,
        )
        .unwrap()
        .encode()
        .to_vec()
    };
    let params = emu.param_buffer(
        "pipe",
        &[map(pa, 64), map(pb, 16), pd.to_le_bytes().to_vec()],
    )?;
    emu.launch(
        "pipe",
        &LaunchConfig::new([1, 1, 1], [160, 1, 1]),
        &params,
        &mut g,
    )?;
    let d = g
        .get(pd)
        .unwrap()
        .data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((a, bt, d))
}

#[test]
fn warp_specialized_tma_wgmma_pipeline_computes_a_matrix_product() {
    let seed = rand::random::<u64>();
    eprintln!("seed {seed}");
    let (a, bt, d) = pipeline(RELEASE_AFTER_WAIT, seed).unwrap();
    for m in 0..64 {
        for n in 0..16 {
            let want: f64 = (0..256)
                .map(|k| a[m * 256 + k].to_f64() * bt[n * 256 + k].to_f64())
                .sum();
            let got = f64::from(d[m * 16 + n]);
            assert!(
                (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                "seed {seed}: D[{m}][{n}] = {got}, expected {want}"
            );
        }
    }
}

#[test]
fn releasing_a_slot_before_wgmma_wait_group_races_with_its_refill() {
    let err = pipeline(RELEASE_BEFORE_WAIT, 4).unwrap_err();
    let EmuError::Sanitizer { findings, .. } = &err else {
        panic!("expected findings, got {err}")
    };
    assert!(
        findings.iter().any(|f| f.kind == FindingKind::Race
            && f.message.contains("cp.async.bulk.tensor")
            && f.message.contains("lands on")),
        "{err}"
    );
}

/// The compiler's warp-specialized GEMM for sm_90a (`ws_gemm<f32, 64, 64, 32, 32, 2>`: one
/// producer warp filling a 2-stage ring and signalling `full` mbarriers with
/// `mbarrier.complete_tx`, two consumer warps releasing slots on `empty` ones).
const WS_GEMM: &str = include_str!("ptx/ws_gemm.sm_90a.ptx");

fn ws_gemm(ptx: &str, m: u32, n: u32, k: u32, seed: u64) -> Result<(), EmuError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let a: Vec<bf16> = (0..m * k)
        .map(|_| bf16::from_f32(rng.gen_range(-1.0..1.0)))
        .collect();
    let b: Vec<bf16> = (0..k * n)
        .map(|_| bf16::from_f32(rng.gen_range(-1.0..1.0)))
        .collect();
    let emu = Emulator::new(ptx)?;
    let bytes = |v: &[bf16]| {
        v.iter()
            .flat_map(|x| x.to_bits().to_le_bytes())
            .collect::<Vec<u8>>()
    };
    let mut g = GlobalMemory::new();
    let (pa, pb, pc) = (
        g.alloc("a", bytes(&a)),
        g.alloc("b", bytes(&b)),
        g.alloc("c", vec![0xffu8; (m * n * 4) as usize]),
    );
    let u = |x: u32| x.to_le_bytes().to_vec();
    // Each global view is its base address, its sizes and its strides (in elements).
    let args = [
        pa.to_le_bytes().to_vec(),
        u(m),
        u(k),
        u(k),
        u(1),
        pb.to_le_bytes().to_vec(),
        u(k),
        u(n),
        u(n),
        u(1),
        pc.to_le_bytes().to_vec(),
        u(m),
        u(n),
        u(n),
        u(1),
    ];
    let params = emu.param_buffer("ws_gemm", &args)?;
    emu.launch(
        "ws_gemm",
        &LaunchConfig::new([n.div_ceil(64), m.div_ceil(64), 1], [96, 1, 1]),
        &params,
        &mut g,
    )?;
    let c: Vec<f32> = g
        .get(pc)
        .unwrap()
        .data
        .chunks_exact(4)
        .map(|x| f32::from_le_bytes([x[0], x[1], x[2], x[3]]))
        .collect();
    for i in 0..m as usize {
        for j in 0..n as usize {
            let want: f64 = (0..k as usize)
                .map(|kk| a[i * k as usize + kk].to_f64() * b[kk * n as usize + j].to_f64())
                .sum();
            let got = f64::from(c[i * n as usize + j]);
            assert!(
                (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                "seed {seed} {m}×{n}×{k}: C[{i}][{j}] = {got}, expected {want}"
            );
        }
    }
    Ok(())
}

#[test]
fn compiled_warp_specialized_gemm_runs_clean_against_f64() {
    let seed = rand::random::<u64>();
    eprintln!("seed {seed}");
    for (m, n, k) in [(64, 64, 64), (70, 33, 130), (128, 128, 96)] {
        ws_gemm(WS_GEMM, m, n, k, seed).unwrap();
    }
}

#[test]
fn compiled_gemm_producer_starting_its_empty_waits_on_the_wrong_phase_deadlocks() {
    // The producer's empty-slot parity is computed as bit 1 of NOT(k-step); dropping the NOT makes
    // its first waits target phase 0 of never-arrived barriers.
    let wrong = WS_GEMM.replacen("\tnot.b32 \t%r449, %r624;", "\tmov.b32 \t%r449, %r624;", 1);
    assert_ne!(
        wrong, WS_GEMM,
        "the fixture's producer parity computation moved"
    );
    let err = ws_gemm(&wrong, 64, 64, 64, 1).unwrap_err();
    let EmuError::Deadlock { waits, .. } = &err else {
        panic!("expected a deadlock, got {err}")
    };
    assert!(waits.contains("mbarrier.try_wait.parity"), "{waits}");
}

/// One warp stores four 8×8 matrices with `stmatrix.x4.trans` (register j of lane l holds the
/// values 8l + 2j and 8l + 2j + 1), copies the shared image to `out` with generic loads, and
/// stores it again with a bulk copy to `out2` (async proxy: needs `fence.proxy.async` after
/// `stmatrix`).
const STMATRIX: &str = r#"
.version 8.3
.target sm_90a
.address_size 64
.visible .entry stm(.param .u64 pout, .param .u64 pout2)
{
    .reg .pred %p<2>;
    .reg .b32 %r<40>;
    .reg .b64 %rd<8>;
    .shared .align 128 .b8 tile[512];
    mov.u32 %r1, %tid.x;
    shl.b32 %r2, %r1, 3;
    add.s32 %r6, %r2, 1;
    shl.b32 %r6, %r6, 16;
    or.b32 %r10, %r2, %r6;
    add.s32 %r7, %r2, 2;
    add.s32 %r8, %r2, 3;
    shl.b32 %r8, %r8, 16;
    or.b32 %r11, %r7, %r8;
    add.s32 %r7, %r2, 4;
    add.s32 %r8, %r2, 5;
    shl.b32 %r8, %r8, 16;
    or.b32 %r12, %r7, %r8;
    add.s32 %r7, %r2, 6;
    add.s32 %r8, %r2, 7;
    shl.b32 %r8, %r8, 16;
    or.b32 %r13, %r7, %r8;
    mov.u32 %r3, tile;
    shl.b32 %r4, %r1, 4;
    add.s32 %r5, %r3, %r4;
    stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%r5], {%r10, %r11, %r12, %r13};
    FENCE
    bar.warp.sync -1;
    ld.shared.v4.u32 {%r20, %r21, %r22, %r23}, [%r5];
    ld.param.u64 %rd1, [pout];
    cvt.u64.u32 %rd2, %r4;
    add.s64 %rd1, %rd1, %rd2;
    st.global.v4.u32 [%rd1], {%r20, %r21, %r22, %r23};
    setp.eq.u32 %p1, %r1, 0;
    ld.param.u64 %rd3, [pout2];
    @%p1 cp.async.bulk.global.shared::cta.bulk_group [%rd3], [tile], 512;
    @%p1 cp.async.bulk.commit_group;
    @%p1 cp.async.bulk.wait_group 0;
    ret;
}
"#;

fn stmatrix(fence: bool) -> Result<(Vec<u16>, Vec<u16>), EmuError> {
    let emu = Emulator::new(&STMATRIX.replace(
        "FENCE",
        if fence {
            "fence.proxy.async.shared::cta;"
        } else {
            ""
        },
    ))?;
    let mut g = GlobalMemory::new();
    let (p1, p2) = (
        g.alloc("out", vec![0u8; 512]),
        g.alloc("out2", vec![0u8; 512]),
    );
    let params = emu.param_buffer(
        "stm",
        &[p1.to_le_bytes().to_vec(), p2.to_le_bytes().to_vec()],
    )?;
    emu.launch(
        "stm",
        &LaunchConfig::new([1, 1, 1], [32, 1, 1]),
        &params,
        &mut g,
    )?;
    let halves = |p| {
        g.get(p)
            .unwrap()
            .data
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect::<Vec<u16>>()
    };
    Ok((halves(p1), halves(p2)))
}

#[test]
fn stmatrix_trans_places_each_lanes_halves_as_the_isa_says_and_bulk_stores_them() {
    let (image, bulk) = stmatrix(true).unwrap();
    for lane in 0..32usize {
        for j in 0..4usize {
            for h in 0..2usize {
                // ISA (stmatrix .trans): lane l's register j holds column l/4, rows 2(l%4) and
                // 2(l%4)+1 of matrix j; row i of matrix j is at the address lane 8j+i supplied.
                let (row, col) = (2 * (lane % 4) + h, lane / 4);
                assert_eq!(
                    image[(8 * j + row) * 8 + col] as usize,
                    8 * lane + 2 * j + h,
                    "lane {lane} matrix {j} half {h}"
                );
            }
        }
    }
    assert_eq!(bulk, image);
}

#[test]
fn bulk_store_of_stmatrix_output_without_fence_proxy_async_is_reported() {
    let err = stmatrix(false).unwrap_err();
    let EmuError::Sanitizer { findings, .. } = &err else {
        panic!("expected findings, got {err}")
    };
    assert!(
        findings.iter().any(|f| f.kind == FindingKind::AsyncHazard
            && f.opcode.starts_with("cp.async.bulk")
            && f.message.contains("fence.proxy.async")),
        "{err}"
    );
}
