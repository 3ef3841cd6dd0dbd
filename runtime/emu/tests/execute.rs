//! Hand-written PTX kernels run on the emulator and compared with plain-Rust computations.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tilekit_emu::sanitizer::FindingKind;
use tilekit_emu::{EmuError, Emulator, GlobalMemory, LaunchConfig};

fn seed() -> u64 {
    let s = rand::random::<u64>();
    eprintln!("seed {s}");
    s
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn u32_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn to_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
fn to_u32(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

const VADD: &str = r#"
.version 8.0
.target sm_80
.address_size 64
.visible .entry vadd(.param .u64 a, .param .u64 b, .param .u64 c, .param .u32 n)
{
    .reg .pred %p<2>;
    .reg .b32 %r<6>;
    .reg .f32 %f<4>;
    .reg .b64 %rd<8>;
    ld.param.u64 %rd1, [a];
    ld.param.u64 %rd2, [b];
    ld.param.u64 %rd3, [c];
    ld.param.u32 %r1, [n];
    mov.u32 %r2, %ctaid.x;
    mov.u32 %r3, %ntid.x;
    mov.u32 %r4, %tid.x;
    mad.lo.s32 %r5, %r2, %r3, %r4;
    setp.ge.u32 %p1, %r5, %r1;
    @%p1 bra DONE;
    mul.wide.u32 %rd4, %r5, 4;
    add.s64 %rd5, %rd1, %rd4;
    add.s64 %rd6, %rd2, %rd4;
    add.s64 %rd7, %rd3, %rd4;
    ld.global.f32 %f1, [%rd5];
    ld.global.nc.f32 %f2, [%rd6];
    fma.rn.f32 %f3, %f1, 0f40000000, %f2;   // 2a + b
    st.global.f32 [%rd7], %f3;
DONE:
    ret;
}
"#;

/// The inputs `a`, `b` and the output `c` of a run.
type Vadd = (Vec<f32>, Vec<f32>, Vec<f32>);

fn run_vadd(n: usize, threads: u32, rng: &mut StdRng) -> Result<Vadd, EmuError> {
    let a: Vec<f32> = (0..n).map(|_| rng.gen_range(-4.0..4.0)).collect();
    let b: Vec<f32> = (0..n).map(|_| rng.gen_range(-4.0..4.0)).collect();
    let emu = Emulator::new(VADD)?;
    let mut g = GlobalMemory::new();
    let pa = g.alloc("a", f32_bytes(&a));
    let pb = g.alloc("b", f32_bytes(&b));
    let pc = g.alloc("c", vec![0u8; n * 4]);
    let params = emu.param_buffer(
        "vadd",
        &[
            pa.to_le_bytes().to_vec(),
            pb.to_le_bytes().to_vec(),
            pc.to_le_bytes().to_vec(),
            (n as u32).to_le_bytes().to_vec(),
        ],
    )?;
    let blocks = (n as u32).div_ceil(threads);
    emu.launch(
        "vadd",
        &LaunchConfig::new([blocks, 1, 1], [threads, 1, 1]),
        &params,
        &mut g,
    )?;
    Ok((a, b, to_f32(&g.get(pc).expect("c").data)))
}

#[test]
fn vector_fma_matches_rust_for_several_sizes() {
    let mut rng = StdRng::seed_from_u64(seed());
    for (n, t) in [(1, 32), (37, 32), (200, 64), (1000, 96)] {
        let (a, b, c) = run_vadd(n, t, &mut rng).unwrap();
        for i in 0..n {
            assert_eq!(c[i], a[i].mul_add(2.0, b[i]), "element {i} of {n}");
        }
    }
}

#[test]
fn off_by_one_store_is_reported_out_of_bounds() {
    // `setp.gt` instead of `setp.ge` lets thread n store one element past the end.
    let ptx = VADD.replace("setp.ge.u32", "setp.gt.u32");
    let emu = Emulator::new(&ptx).unwrap();
    let n = 40usize;
    let mut g = GlobalMemory::new();
    let pa = g.alloc("a", vec![0u8; n * 4]);
    let pb = g.alloc("b", vec![0u8; n * 4]);
    let pc = g.alloc("c", vec![0u8; n * 4]);
    let params = emu
        .param_buffer(
            "vadd",
            &[
                pa.to_le_bytes().to_vec(),
                pb.to_le_bytes().to_vec(),
                pc.to_le_bytes().to_vec(),
                (n as u32).to_le_bytes().to_vec(),
            ],
        )
        .unwrap();
    let err = emu
        .launch(
            "vadd",
            &LaunchConfig::new([2, 1, 1], [32, 1, 1]),
            &params,
            &mut g,
        )
        .unwrap_err();
    let EmuError::Sanitizer { findings, .. } = &err else {
        panic!("expected a sanitizer error, got {err}")
    };
    assert!(
        findings
            .iter()
            .any(|f| f.kind == FindingKind::OutOfBounds && f.opcode.starts_with("ld.global")),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("out of bounds"), "{msg}");
    assert!(msg.contains("line"), "{msg}");
}

const INTOPS: &str = r#"
.version 8.0
.target sm_80
.address_size 64
.visible .entry intops(.param .u64 src, .param .u64 dst)
{
    .reg .pred %p<4>;
    .reg .b32 %r<40>;
    .reg .b64 %rd<10>;
    ld.param.u64 %rd1, [src];
    ld.param.u64 %rd2, [dst];
    mov.u32 %r1, %tid.x;
    mul.wide.u32 %rd3, %r1, 8;
    add.s64 %rd4, %rd1, %rd3;
    ld.global.v2.u32 {%r2, %r3}, [%rd4];
    mul.wide.u32 %rd5, %r1, 64;
    add.s64 %rd6, %rd2, %rd5;
    mul.hi.u32 %r4, %r2, %r3;
    mul.hi.s32 %r5, %r2, %r3;
    shr.s32 %r6, %r2, 7;
    shr.u32 %r7, %r2, 7;
    and.b32 %r8, %r3, 31;
    shl.b32 %r9, %r2, %r8;
    bfe.u32 %r10, %r2, 5, 9;
    bfe.s32 %r11, %r2, 20, 12;
    prmt.b32 %r12, %r2, %r3, 0x5140;
    min.s32 %r13, %r2, %r3;
    max.u32 %r14, %r2, %r3;
    popc.b32 %r15, %r2;
    clz.b32 %r16, %r3;
    brev.b32 %r17, %r2;
    or.b32 %r18, %r3, 1;
    rem.u32 %r19, %r2, %r18;
    div.s32 %r20, %r2, %r18;
    setp.lt.s32 %p1, %r2, %r3;
    setp.ltu.f32 %p2, %r2, %r3;
    selp.b32 %r21, 7, 9, %p1;
    bfi.b32 %r22, %r2, %r3, 8, 12;
    st.global.v4.u32 [%rd6], {%r4, %r5, %r6, %r7};
    st.global.v4.u32 [%rd6+16], {%r9, %r10, %r11, %r12};
    st.global.v4.u32 [%rd6+32], {%r13, %r14, %r15, %r16};
    st.global.v4.u32 [%rd6+48], {%r17, %r19, %r20, %r21};
    ret;
}
"#;

#[test]
fn integer_ops_match_rust() {
    let mut rng = StdRng::seed_from_u64(seed());
    let n = 64usize;
    let src: Vec<u32> = (0..2 * n).map(|_| rng.gen()).collect();
    let emu = Emulator::new(INTOPS).unwrap();
    let mut g = GlobalMemory::new();
    let ps = g.alloc("src", u32_bytes(&src));
    let pd = g.alloc("dst", vec![0u8; n * 64]);
    let params = emu
        .param_buffer(
            "intops",
            &[ps.to_le_bytes().to_vec(), pd.to_le_bytes().to_vec()],
        )
        .unwrap();
    emu.launch(
        "intops",
        &LaunchConfig::new([1, 1, 1], [n as u32, 1, 1]),
        &params,
        &mut g,
    )
    .unwrap();
    let out = to_u32(&g.get(pd).unwrap().data);
    for t in 0..n {
        let (a, b) = (src[2 * t], src[2 * t + 1]);
        let (sa, sb) = (a as i32, b as i32);
        let bytes = [a.to_le_bytes(), b.to_le_bytes()].concat();
        let prmt = u32::from_le_bytes([bytes[0], bytes[4], bytes[1], bytes[5]]);
        let bfe_s = (a as i32) >> 20; // bits 20..31 sign-extended
        let r18 = b | 1;
        let expect = [
            ((u64::from(a) * u64::from(b)) >> 32) as u32,
            ((i64::from(sa) * i64::from(sb)) >> 32) as u32,
            (sa >> 7) as u32,
            a >> 7,
            a << (b & 31),
            (a >> 5) & 0x1ff,
            bfe_s as u32,
            prmt,
            sa.min(sb) as u32,
            a.max(b),
            a.count_ones(),
            b.leading_zeros(),
            a.reverse_bits(),
            a % r18,
            sa.wrapping_div(r18 as i32) as u32,
            if sa < sb { 7 } else { 9 },
        ];
        assert_eq!(
            &out[t * 16..t * 16 + 16],
            &expect[..],
            "thread {t}: a={a:#x} b={b:#x}"
        );
    }
}

const REDUCE: &str = r#"
.version 8.0
.target sm_80
.address_size 64
.visible .entry reduce(.param .u64 src, .param .u64 dst)
{
    .reg .pred %p<4>;
    .reg .b32 %r<20>;
    .reg .f32 %f<10>;
    .reg .b64 %rd<10>;
    .shared .align 4 .b8 partial[128];
    ld.param.u64 %rd1, [src];
    ld.param.u64 %rd2, [dst];
    mov.u32 %r1, %tid.x;
    mov.u32 %r2, %ctaid.x;
    mov.u32 %r3, %ntid.x;
    mad.lo.s32 %r4, %r2, %r3, %r1;
    mul.wide.u32 %rd3, %r4, 4;
    add.s64 %rd4, %rd1, %rd3;
    ld.global.f32 %f1, [%rd4];
    shfl.sync.bfly.b32 %f2, %f1, 16, 31, -1;
    add.f32 %f1, %f1, %f2;
    shfl.sync.bfly.b32 %f2, %f1, 8, 31, -1;
    add.f32 %f1, %f1, %f2;
    shfl.sync.bfly.b32 %f2, %f1, 4, 31, -1;
    add.f32 %f1, %f1, %f2;
    shfl.sync.bfly.b32 %f2, %f1, 2, 31, -1;
    add.f32 %f1, %f1, %f2;
    shfl.sync.bfly.b32 %f2, %f1, 1, 31, -1;
    add.f32 %f1, %f1, %f2;
    and.b32 %r5, %r1, 31;
    shr.u32 %r6, %r1, 5;
    setp.ne.s32 %p1, %r5, 0;
    @%p1 bra SKIP;
    shl.b32 %r7, %r6, 2;
    mov.u32 %r8, partial;
    add.s32 %r9, %r8, %r7;
    st.shared.f32 [%r9], %f1;
SKIP:
    bar.sync 0;
    setp.ne.s32 %p2, %r1, 0;
    @%p2 bra END;
    shr.u32 %r10, %r3, 5;
    mov.f32 %f3, 0f00000000;
    mov.u32 %r11, 0;
LOOP:
    shl.b32 %r12, %r11, 2;
    ld.shared.f32 %f4, [partial+0];
    mov.u32 %r13, partial;
    add.s32 %r14, %r13, %r12;
    ld.shared.f32 %f4, [%r14];
    add.f32 %f3, %f3, %f4;
    add.s32 %r11, %r11, 1;
    setp.lt.u32 %p3, %r11, %r10;
    @%p3 bra LOOP;
    mul.wide.u32 %rd5, %r2, 4;
    add.s64 %rd6, %rd2, %rd5;
    st.global.f32 [%rd6], %f3;
END:
    ret;
}
"#;

fn run_reduce(
    ptx: &str,
    blocks: u32,
    threads: u32,
    rng: &mut StdRng,
) -> Result<(Vec<f32>, Vec<f32>), EmuError> {
    let n = (blocks * threads) as usize;
    // Small integers: every summation order gives the exact same f32 sum.
    let x: Vec<f32> = (0..n).map(|_| rng.gen_range(-50..50) as f32).collect();
    let emu = Emulator::new(ptx)?;
    let mut g = GlobalMemory::new();
    let ps = g.alloc("x", f32_bytes(&x));
    let pd = g.alloc("sums", vec![0u8; blocks as usize * 4]);
    let params = emu.param_buffer(
        "reduce",
        &[ps.to_le_bytes().to_vec(), pd.to_le_bytes().to_vec()],
    )?;
    emu.launch(
        "reduce",
        &LaunchConfig::new([blocks, 1, 1], [threads, 1, 1]),
        &params,
        &mut g,
    )?;
    Ok((x, to_f32(&g.get(pd).unwrap().data)))
}

#[test]
fn block_reduction_with_shuffles_and_a_barrier_matches_rust() {
    let mut rng = StdRng::seed_from_u64(seed());
    for (blocks, threads) in [(1, 32), (3, 128), (2, 256)] {
        let (x, sums) = run_reduce(REDUCE, blocks, threads, &mut rng).unwrap();
        for b in 0..blocks as usize {
            let t = threads as usize;
            let expect: f32 = x[b * t..(b + 1) * t].iter().sum();
            assert_eq!(sums[b], expect, "block {b}");
        }
    }
}

#[test]
fn removed_barrier_is_reported_as_a_race_naming_the_instruction() {
    let mut rng = StdRng::seed_from_u64(seed());
    let ptx = REDUCE.replace("bar.sync 0;", "");
    let err = run_reduce(&ptx, 1, 128, &mut rng).unwrap_err();
    let EmuError::Sanitizer { findings, .. } = &err else {
        panic!("expected a race, got {err}")
    };
    let race = findings
        .iter()
        .find(|f| f.kind == FindingKind::Race)
        .expect("a race finding");
    assert!(
        race.opcode.starts_with("ld.shared") || race.opcode.starts_with("st.shared"),
        "{race}"
    );
    assert!(race.to_string().contains("no barrier"), "{race}");
}

#[test]
fn divergent_loops_reconverge() {
    // Each lane loops tid times, then all lanes meet and shuffle: the shuffle needs the whole warp.
    let ptx = r#"
.version 8.0
.target sm_80
.address_size 64
.visible .entry diverge(.param .u64 dst)
{
    .reg .pred %p<3>;
    .reg .b32 %r<10>;
    .reg .b64 %rd<5>;
    ld.param.u64 %rd1, [dst];
    mov.u32 %r1, %tid.x;
    mov.u32 %r2, 0;
    mov.u32 %r3, 0;
    setp.eq.s32 %p1, %r1, 0;
    @%p1 bra JOIN;
LOOP:
    add.s32 %r3, %r3, %r2;
    add.s32 %r2, %r2, 1;
    setp.lt.u32 %p2, %r2, %r1;
    @%p2 bra LOOP;
JOIN:
    shfl.sync.idx.b32 %r4, %r3, 31, 31, -1;
    add.s32 %r5, %r3, %r4;
    mul.wide.u32 %rd2, %r1, 4;
    add.s64 %rd3, %rd1, %rd2;
    st.global.u32 [%rd3], %r5;
    ret;
}
"#;
    let emu = Emulator::new(ptx).unwrap();
    let mut g = GlobalMemory::new();
    let pd = g.alloc("dst", vec![0u8; 64 * 4]);
    let params = emu
        .param_buffer("diverge", &[pd.to_le_bytes().to_vec()])
        .unwrap();
    emu.launch(
        "diverge",
        &LaunchConfig::new([1, 1, 1], [64, 1, 1]),
        &params,
        &mut g,
    )
    .unwrap();
    let out = to_u32(&g.get(pd).unwrap().data);
    let tri = |t: u32| (0..t).sum::<u32>();
    for t in 0..64u32 {
        let last = (t / 32) * 32 + 31;
        assert_eq!(out[t as usize], tri(t) + tri(last), "thread {t}");
    }
}

#[test]
fn a_barrier_that_can_never_complete_is_a_deadlock_naming_the_wait() {
    let ptx = r#"
.version 8.0
.target sm_80
.address_size 64
.visible .entry stuck()
{
    bar.sync 1, 64;
    ret;
}
"#;
    let emu = Emulator::new(ptx).unwrap();
    let mut g = GlobalMemory::new();
    let err = emu
        .launch(
            "stuck",
            &LaunchConfig::new([1, 1, 1], [32, 1, 1]),
            &[],
            &mut g,
        )
        .unwrap_err();
    assert!(matches!(err, EmuError::Deadlock { .. }), "{err}");
    assert!(err.to_string().contains("barrier 1"), "{err}");
}

#[test]
fn an_endless_kernel_runs_out_of_budget() {
    let ptx = r#"
.version 8.0
.target sm_80
.address_size 64
.visible .entry forever()
{
L:
    bra.uni L;
}
"#;
    let emu = Emulator::new(ptx).unwrap();
    let mut g = GlobalMemory::new();
    let mut cfg = LaunchConfig::new([1, 1, 1], [32, 1, 1]);
    cfg.budget = 10_000;
    let err = emu.launch("forever", &cfg, &[], &mut g).unwrap_err();
    assert!(matches!(err, EmuError::BudgetExhausted { .. }), "{err}");
}

#[test]
fn an_aligned_barrier_reached_by_part_of_a_warp_is_an_error_naming_lanes() {
    let ptx = r#"
.version 8.0
.target sm_80
.address_size 64
.visible .entry half()
{
    .reg .pred %p1;
    .reg .b32 %r1;
    mov.u32 %r1, %tid.x;
    setp.lt.u32 %p1, %r1, 16;
    @%p1 bra SKIP;
    bar.sync 0;
SKIP:
    ret;
}
"#;
    let emu = Emulator::new(ptx).unwrap();
    let mut g = GlobalMemory::new();
    let err = emu
        .launch(
            "half",
            &LaunchConfig::new([1, 1, 1], [32, 1, 1]),
            &[],
            &mut g,
        )
        .unwrap_err();
    assert!(matches!(err, EmuError::Divergent { .. }), "{err}");
    assert!(err.to_string().contains("bar.sync"), "{err}");
}

#[test]
fn unknown_instructions_are_errors_naming_the_line() {
    let ptx = ".version 8.0\n.target sm_80\n.address_size 64\n.visible .entry k()\n{\n  frobnicate.b32;\n  ret;\n}\n";
    let emu = Emulator::new(ptx).unwrap();
    let mut g = GlobalMemory::new();
    let err = emu
        .launch("k", &LaunchConfig::new([1, 1, 1], [32, 1, 1]), &[], &mut g)
        .unwrap_err();
    assert_eq!(
        err,
        EmuError::UnknownInstruction {
            kernel: "k".into(),
            line: 6,
            opcode: "frobnicate.b32".into()
        }
    );
}

#[test]
fn local_memory_through_the_depot_and_generic_addresses_is_per_thread() {
    // As LLVM spills: a per-thread depot addressed directly and through its generic address.
    let ptx = r#"
.version 8.0
.target sm_80
.address_size 64
.visible .entry depot(.param .u64 dst)
{
    .local .align 8 .b8 __local_depot0[32];
    .reg .b64 %SP;
    .reg .b64 %SPL;
    .reg .b32 %r<6>;
    .reg .b64 %rd<5>;
    mov.u64 %SPL, __local_depot0;
    cvta.local.u64 %SP, %SPL;
    ld.param.u64 %rd1, [dst];
    mov.u32 %r1, %tid.x;
    mul.lo.s32 %r2, %r1, 7;
    st.local.u32 [%SPL+4], %r2;
    add.s32 %r3, %r1, 100;
    st.u32 [%SP+8], %r3;
    ld.u32 %r4, [%SP+4];
    ld.local.u32 %r5, [%SPL+8];
    add.s32 %r4, %r4, %r5;
    mul.wide.u32 %rd2, %r1, 4;
    add.s64 %rd3, %rd1, %rd2;
    st.global.u32 [%rd3], %r4;
    ret;
}
"#;
    let emu = Emulator::new(ptx).unwrap();
    let mut g = GlobalMemory::new();
    let pd = g.alloc("dst", vec![0u8; 64 * 4]);
    let params = emu
        .param_buffer("depot", &[pd.to_le_bytes().to_vec()])
        .unwrap();
    emu.launch(
        "depot",
        &LaunchConfig::new([1, 1, 1], [64, 1, 1]),
        &params,
        &mut g,
    )
    .unwrap();
    let out = to_u32(&g.get(pd).unwrap().data);
    for t in 0..64u32 {
        assert_eq!(out[t as usize], 7 * t + t + 100, "thread {t}");
    }
}

/// Warp 0 produces into shared memory and signals with `bar.arrive 1, 64`; warp 1 waits with
/// `bar.sync 1, 64` and consumes. `SIGNAL` is where the producer arrives.
const HANDOFF: &str = r#"
.version 8.0
.target sm_80
.address_size 64
.visible .entry handoff(.param .u64 dst)
{
    .reg .pred %p<2>;
    .reg .b32 %r<8>;
    .reg .b64 %rd<5>;
    .shared .align 4 .b8 buf[128];
    ld.param.u64 %rd1, [dst];
    mov.u32 %r1, %tid.x;
    and.b32 %r2, %r1, 31;
    shl.b32 %r3, %r2, 2;
    mov.u32 %r4, buf;
    add.s32 %r5, %r4, %r3;
    setp.ge.u32 %p1, %r1, 32;
    @%p1 bra CONSUMER;
    mul.lo.s32 %r6, %r2, 3;
    SIGNAL_BEFORE
    st.shared.u32 [%r5], %r6;
    SIGNAL_AFTER
    bra.uni END;
CONSUMER:
    bar.sync 1, 64;
    ld.shared.u32 %r7, [%r5];
    mul.wide.u32 %rd2, %r2, 4;
    add.s64 %rd3, %rd1, %rd2;
    st.global.u32 [%rd3], %r7;
END:
    ret;
}
"#;

fn handoff(ptx: &str) -> Result<Vec<u32>, EmuError> {
    let emu = Emulator::new(ptx)?;
    let mut g = GlobalMemory::new();
    let pd = g.alloc("dst", vec![0u8; 32 * 4]);
    let params = emu.param_buffer("handoff", &[pd.to_le_bytes().to_vec()])?;
    emu.launch(
        "handoff",
        &LaunchConfig::new([1, 1, 1], [64, 1, 1]),
        &params,
        &mut g,
    )?;
    Ok(to_u32(&g.get(pd).unwrap().data))
}

#[test]
fn a_named_barrier_arrival_after_the_writes_orders_them_for_the_waiting_warp() {
    let ptx = HANDOFF
        .replace("SIGNAL_BEFORE", "")
        .replace("SIGNAL_AFTER", "bar.arrive 1, 64;");
    let out = handoff(&ptx).unwrap();
    assert_eq!(out, (0..32).map(|l| 3 * l).collect::<Vec<u32>>());
}

#[test]
fn a_named_barrier_arrival_before_the_writes_is_a_race() {
    let ptx = HANDOFF
        .replace("SIGNAL_BEFORE", "bar.arrive 1, 64;")
        .replace("SIGNAL_AFTER", "");
    let err = handoff(&ptx).unwrap_err();
    let EmuError::Sanitizer { findings, .. } = &err else {
        panic!("expected a race, got {err}")
    };
    assert!(
        findings.iter().any(|f| f.kind == FindingKind::Race),
        "{err}"
    );
}

#[test]
fn barrier_reductions_give_every_thread_the_block_wide_count_and_votes() {
    let ptx = r#"
.version 8.0
.target sm_80
.address_size 64
.visible .entry votes(.param .u64 dst, .param .u32 limit)
{
    .reg .pred %p<6>;
    .reg .b32 %r<8>;
    .reg .b64 %rd<4>;
    ld.param.u64 %rd1, [dst];
    ld.param.u32 %r1, [limit];
    mov.u32 %r2, %tid.x;
    setp.lt.u32 %p1, %r2, %r1;
    bar.red.popc.u32 %r3, 0, %p1;
    bar.red.and.pred %p2, 1, %p1;
    bar.red.or.pred %p3, 2, !%p1;
    selp.u32 %r4, 1, 0, %p2;
    selp.u32 %r5, 1, 0, %p3;
    mul.wide.u32 %rd2, %r2, 12;
    add.s64 %rd3, %rd1, %rd2;
    st.global.u32 [%rd3], %r3;
    st.global.u32 [%rd3+4], %r4;
    st.global.u32 [%rd3+8], %r5;
    ret;
}
"#;
    let emu = Emulator::new(ptx).unwrap();
    for limit in [0u32, 37, 96, 200] {
        let mut g = GlobalMemory::new();
        let pd = g.alloc("dst", vec![0u8; 96 * 12]);
        let params = emu
            .param_buffer(
                "votes",
                &[pd.to_le_bytes().to_vec(), limit.to_le_bytes().to_vec()],
            )
            .unwrap();
        emu.launch(
            "votes",
            &LaunchConfig::new([1, 1, 1], [96, 1, 1]),
            &params,
            &mut g,
        )
        .unwrap();
        let out = to_u32(&g.get(pd).unwrap().data);
        let below = limit.min(96);
        for t in 0..96 {
            assert_eq!(out[3 * t], below, "popc, limit {limit}, thread {t}");
            assert_eq!(out[3 * t + 1], u32::from(below == 96), "and, limit {limit}");
            assert_eq!(
                out[3 * t + 2],
                u32::from(below < 96),
                "or of the negation, limit {limit}"
            );
        }
    }
}
