//! Tensor-core and asynchronous-copy instructions inside whole kernels: `cp.async` into shared
//! memory, `ldmatrix` (plain and `.trans`), `mma.sync` m16n8k16 bf16 → f32, compared with a
//! plain-Rust f64 matrix product.

use half::bf16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tilekit_emu::sanitizer::FindingKind;
use tilekit_emu::{EmuError, Emulator, GlobalMemory, LaunchConfig};

/// One warp: D(16×8, f32) = A(16×16, bf16, row-major) · B(16×8, bf16, row-major).
const MMA: &str = r#"
.version 8.0
.target sm_80
.address_size 64
.visible .entry mma16816(.param .u64 pa, .param .u64 pb, .param .u64 pd)
{
    .reg .pred %p<2>;
    .reg .b32 %r<40>;
    .reg .b64 %rd<12>;
    .shared .align 128 .b8 smem[768];
    ld.param.u64 %rd1, [pa];
    ld.param.u64 %rd2, [pb];
    ld.param.u64 %rd3, [pd];
    mov.u32 %r1, %laneid;
    mov.u32 %r2, smem;
    // A: 32 chunks of 16 bytes, one per lane.
    shl.b32 %r3, %r1, 4;
    add.s32 %r4, %r2, %r3;
    cvt.u64.u32 %rd4, %r3;
    add.s64 %rd5, %rd1, %rd4;
    cp.async.cg.shared.global [%r4], [%rd5], 16;
    // B: 16 chunks, lanes 0..15.
    setp.lt.u32 %p1, %r1, 16;
    add.s32 %r5, %r4, 512;
    add.s64 %rd6, %rd2, %rd4;
    @%p1 cp.async.cg.shared.global [%r5], [%rd6], 16;
    cp.async.commit_group;
    WAIT_PLACEHOLDER
    bar.warp.sync -1;
    // ldmatrix.x4 row addresses for A: matrix j = lane/8, row r = lane%8.
    shr.u32 %r6, %r1, 3;
    and.b32 %r7, %r1, 7;
    and.b32 %r8, %r6, 1;
    shl.b32 %r9, %r8, 3;
    add.s32 %r10, %r7, %r9;
    shr.u32 %r11, %r6, 1;
    shl.b32 %r12, %r11, 4;
    shl.b32 %r13, %r10, 5;
    add.s32 %r14, %r13, %r12;
    add.s32 %r15, %r2, %r14;
    ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%r20, %r21, %r22, %r23}, [%r15];
    // B rows k = lane % 16 (lanes 16..31 repeat; only 0..15 are used by .x2).
    and.b32 %r16, %r1, 15;
    shl.b32 %r17, %r16, 4;
    add.s32 %r18, %r2, 512;
    add.s32 %r19, %r18, %r17;
    ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%r24, %r25}, [%r19];
    mov.b32 %r26, 0;
    mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%r30, %r31, %r32, %r33}, {%r20, %r21, %r22, %r23}, {%r24, %r25}, {%r26, %r26, %r26, %r26};
    // D: row g = lane/4, cols 2*(lane%4) + {0,1}; rows g and g+8.
    shr.u32 %r34, %r1, 2;
    and.b32 %r35, %r1, 3;
    shl.b32 %r36, %r34, 3;
    shl.b32 %r37, %r35, 1;
    add.s32 %r38, %r36, %r37;
    mul.wide.u32 %rd7, %r38, 4;
    add.s64 %rd8, %rd3, %rd7;
    st.global.v2.f32 [%rd8], {%r30, %r31};
    st.global.v2.f32 [%rd8+256], {%r32, %r33};
    ret;
}
"#;

fn bf16_bytes(v: &[bf16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect()
}

fn run(ptx: &str, a: &[bf16], b: &[bf16]) -> Result<Vec<f32>, EmuError> {
    let emu = Emulator::new(ptx)?;
    let mut g = GlobalMemory::new();
    let pa = g.alloc("a", bf16_bytes(a));
    let pb = g.alloc("b", bf16_bytes(b));
    let pd = g.alloc("d", vec![0u8; 16 * 8 * 4]);
    let params = emu.param_buffer(
        "mma16816",
        &[
            pa.to_le_bytes().to_vec(),
            pb.to_le_bytes().to_vec(),
            pd.to_le_bytes().to_vec(),
        ],
    )?;
    emu.launch(
        "mma16816",
        &LaunchConfig::new([1, 1, 1], [32, 1, 1]),
        &params,
        &mut g,
    )?;
    Ok(g.get(pd)
        .expect("d")
        .data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn inputs(rng: &mut StdRng) -> (Vec<bf16>, Vec<bf16>) {
    let a = (0..256)
        .map(|_| bf16::from_f32(rng.gen_range(-2.0..2.0)))
        .collect();
    let b = (0..128)
        .map(|_| bf16::from_f32(rng.gen_range(-2.0..2.0)))
        .collect();
    (a, b)
}

#[test]
fn cp_async_ldmatrix_and_mma_compute_a_matrix_product() {
    let s = rand::random::<u64>();
    eprintln!("seed {s}");
    let mut rng = StdRng::seed_from_u64(s);
    let ptx = MMA.replace("WAIT_PLACEHOLDER", "cp.async.wait_group 0;");
    for _ in 0..3 {
        let (a, b) = inputs(&mut rng);
        let d = run(&ptx, &a, &b).unwrap();
        for i in 0..16 {
            for j in 0..8 {
                let want: f64 = (0..16)
                    .map(|k| a[i * 16 + k].to_f64() * b[k * 8 + j].to_f64())
                    .sum();
                let got = f64::from(d[i * 8 + j]);
                assert!(
                    (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "D[{i}][{j}] = {got}, expected {want}"
                );
            }
        }
    }
}

#[test]
fn reading_a_cp_async_destination_before_its_wait_is_reported() {
    let mut rng = StdRng::seed_from_u64(7);
    let (a, b) = inputs(&mut rng);
    let ptx = MMA.replace("WAIT_PLACEHOLDER", "");
    let err = run(&ptx, &a, &b).unwrap_err();
    let EmuError::Sanitizer { findings, .. } = &err else {
        panic!("expected findings, got {err}")
    };
    assert!(
        findings
            .iter()
            .any(|f| f.kind == FindingKind::AsyncHazard && f.opcode.starts_with("ldmatrix")),
        "{err}"
    );
}
