//! TMA tile-mode loads (`cp.async.bulk.tensor.3d…mbarrier::complete_tx::bytes`) as the PTX ISA
//! describes them ("Tensor copy", "Tensor-map", "Swizzling modes", "mbarrier"), against a
//! reference written here from the ISA text: each element of the box lands at its row-major
//! offset within the box, with bits [4, 4+B) of the shared address XORed with bits [7, 7+B)
//! (B = 1, 2, 3 for the 32-, 64-, 128-byte swizzles: 16-byte chunks permuted within the span),
//! elements outside the tensor (negative coordinates included) land as zeros, and a phase of
//! the mbarrier completes only when its arrivals and all announced transaction bytes are in.
//!
//! One warp runs several rounds on one mbarrier (parity 0, 1, 0, …): per round thread 0
//! announces two boxes' bytes with `arrive.expect_tx` and issues the two loads; every thread
//! waits on the round's parity and copies the raw shared image out.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tilekit_emu::asynchrony::{OobFill, TensorMap};
use tilekit_emu::sanitizer::FindingKind;
use tilekit_emu::tensor_core::smem_matrix::Swizzle;
use tilekit_emu::{EmuError, Emulator, GlobalMemory, LaunchConfig};

const KERNEL: &str = r#"
.version 8.3
.target sm_90a
.address_size 64
.visible .entry tma3(.param .align 64 .b8 map[128], .param .u64 pcoords, .param .u64 pout, .param .u32 rounds)
{
    .reg .pred %p<4>;
    .reg .b32 %r<40>;
    .reg .b64 %rd<20>;
    .shared .align 1024 .b8 tiles[2048];
    .shared .align 8 .b64 full;
    mov.u32 %r1, %tid.x;
    setp.eq.u32 %p1, %r1, 0;
    @%p1 mbarrier.init.shared::cta.b64 [full], 1;
    fence.mbarrier_init.release.cluster;
    bar.sync 0;
    ld.param.u64 %rd1, [pcoords];
    ld.param.u64 %rd2, [pout];
    ld.param.u32 %r2, [rounds];
    mov.u32 %r3, 0;
    mov.u32 %r20, tiles;
    add.u32 %r21, %r20, 1024;
    shl.b32 %r22, %r1, 5;
    add.u32 %r23, %r20, %r22;
    add.u32 %r24, %r21, %r22;
LOOP:
    mul.wide.u32 %rd3, %r3, 24;
    add.s64 %rd4, %rd1, %rd3;
    ld.global.u32 %r4, [%rd4];
    ld.global.u32 %r5, [%rd4+4];
    ld.global.u32 %r6, [%rd4+8];
    ld.global.u32 %r7, [%rd4+12];
    ld.global.u32 %r8, [%rd4+16];
    ld.global.u32 %r9, [%rd4+20];
    @%p1 mbarrier.arrive.expect_tx.shared::cta.b64 %rd5, [full], TX;
    @%p1 cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [tiles], [map, {%r4, %r5, %r6}], [full];
    @%p1 cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%r21], [map, {%r7, %r8, %r9}], [full];
    and.b32 %r10, %r3, 1;
    cvt.u64.u32 %rd6, %r10;
WAIT:
    mbarrier.try_wait.parity.shared::cta.b64 %p2, [full], %rd6;
    @!%p2 bra WAIT;
    mul.wide.u32 %rd7, %r3, 2048;
    add.s64 %rd8, %rd2, %rd7;
    cvt.u64.u32 %rd9, %r22;
    add.s64 %rd10, %rd8, %rd9;
    ld.shared.v4.u32 {%r30, %r31, %r32, %r33}, [%r23];
    ld.shared.v4.u32 {%r34, %r35, %r36, %r37}, [%r23+16];
    st.global.v4.u32 [%rd10], {%r30, %r31, %r32, %r33};
    st.global.v4.u32 [%rd10+16], {%r34, %r35, %r36, %r37};
    ld.shared.v4.u32 {%r30, %r31, %r32, %r33}, [%r24];
    ld.shared.v4.u32 {%r34, %r35, %r36, %r37}, [%r24+16];
    st.global.v4.u32 [%rd10+1024], {%r30, %r31, %r32, %r33};
    st.global.v4.u32 [%rd10+1040], {%r34, %r35, %r36, %r37};
    bar.sync 0;
    add.u32 %r3, %r3, 1;
    setp.lt.u32 %p3, %r3, %r2;
    @%p3 bra LOOP;
    ret;
}
"#;

/// One 3-D tensor of random bytes in a padded buffer, and the boxes to load from it.
struct Case {
    element_bytes: u32,
    swizzle: Swizzle,
    /// Box extents, innermost first; always 1024 bytes (one tile of the kernel).
    box_dims: [u32; 3],
}

impl Case {
    /// The swizzle's B: log2 of its span in 16-byte chunks.
    fn swizzle_bits(&self) -> u32 {
        match self.swizzle {
            Swizzle::None => 0,
            Swizzle::B32 => 1,
            Swizzle::B64 => 2,
            Swizzle::B128 => 3,
        }
    }
}

/// Tensor extents (innermost first) and the row pitch in elements: awkward sizes, so boxes hang
/// over every edge.
const DIMS: [u64; 3] = [37, 13, 5];

struct Run {
    /// The tensor's bytes in its buffer (row pitch `pitch` elements, planes `pitch · 13` apart).
    src: Vec<u8>,
    pitch: u64,
    out: Vec<u8>,
}

fn run(case: &Case, coords: &[[i32; 6]], tx: u32, seed: u64) -> Result<Run, EmuError> {
    let es = u64::from(case.element_bytes);
    // Rows padded to a multiple of 16 bytes, plus one chunk so the pitch is not the extent.
    let pitch = (DIMS[0] * es).div_ceil(16) * 16 / es + 16 / es;
    let plane = pitch * DIMS[1];
    let mut rng = StdRng::seed_from_u64(seed);
    // Nonzero bytes, so a zero in the image is a fill and never an element.
    let src: Vec<u8> = (0..plane * DIMS[2] * es)
        .map(|_| rng.gen_range(1..=255))
        .collect();
    let mut g = GlobalMemory::new();
    let psrc = g.alloc("src", src.clone());
    let coord_bytes: Vec<u8> = coords
        .iter()
        .flatten()
        .flat_map(|c| c.to_le_bytes())
        .collect();
    let pcoords = g.alloc("coords", coord_bytes);
    let pout = g.alloc("out", vec![0u8; 2048 * coords.len()]);
    let map = TensorMap::new(
        case.element_bytes,
        psrc,
        DIMS.to_vec(),
        vec![pitch * es, plane * es],
        case.box_dims.to_vec(),
        case.swizzle,
        OobFill::Zero,
    )
    .unwrap();
    let ptx = KERNEL.replace("TX", &tx.to_string());
    let emu = Emulator::new(&ptx)?;
    let params = emu.param_buffer(
        "tma3",
        &[
            map.encode().to_vec(),
            pcoords.to_le_bytes().to_vec(),
            pout.to_le_bytes().to_vec(),
            (coords.len() as u32).to_le_bytes().to_vec(),
        ],
    )?;
    let cfg = LaunchConfig::new([1, 1, 1], [32, 1, 1]);
    emu.launch("tma3", &cfg, &params, &mut g)?;
    let out = g.get(pout).unwrap().data.clone();
    Ok(Run { src, pitch, out })
}

/// The 1024-byte shared image of the box at `at` (innermost first), from the ISA's rules.
fn expected_image(case: &Case, run: &Run, at: [i32; 3]) -> Vec<u8> {
    let es = case.element_bytes as usize;
    let [bx, by, bz] = case.box_dims.map(|b| b as usize);
    let row_bytes = bx * es;
    let bits = case.swizzle_bits();
    let mask = (1usize << bits) - 1;
    let mut image = vec![0xeeu8; 1024];
    for z in 0..bz {
        for y in 0..by {
            for x in 0..bx {
                let linear = (z * by + y) * row_bytes + x * es;
                let offset = linear ^ (((linear >> 7) & mask) << 4);
                let g = [at[0] + x as i32, at[1] + y as i32, at[2] + z as i32];
                let inside = (0..3).all(|d| g[d] >= 0 && (g[d] as u64) < DIMS[d]);
                for b in 0..es {
                    image[offset + b] = if inside {
                        let e = (g[2] as usize * DIMS[1] as usize + g[1] as usize)
                            * run.pitch as usize
                            + g[0] as usize;
                        run.src[e * es + b]
                    } else {
                        0
                    };
                }
            }
        }
    }
    image
}

fn cases() -> [Case; 4] {
    [
        Case {
            element_bytes: 4,
            swizzle: Swizzle::None,
            box_dims: [4, 16, 4],
        },
        Case {
            element_bytes: 4,
            swizzle: Swizzle::B32,
            box_dims: [8, 8, 4],
        },
        Case {
            element_bytes: 2,
            swizzle: Swizzle::B64,
            box_dims: [32, 4, 4],
        },
        Case {
            element_bytes: 2,
            swizzle: Swizzle::B128,
            box_dims: [64, 4, 2],
        },
    ]
}

#[test]
fn three_d_boxes_land_swizzled_with_zeros_outside_the_tensor_in_every_swizzle_mode() {
    // Per round two boxes: inside, over the far edges, at negative coordinates.
    let coords = [
        [0, 0, 0, 20, 9, 3],
        [-3, -2, -1, 30, 11, 4],
        [8, 5, 2, -16, 12, 3],
    ];
    for (k, case) in cases().iter().enumerate() {
        let r = run(case, &coords, 2048, 17 + k as u64).unwrap();
        for (round, c) in coords.iter().enumerate() {
            for (tile, at) in [[c[0], c[1], c[2]], [c[3], c[4], c[5]]].iter().enumerate() {
                let got = &r.out[round * 2048 + tile * 1024..][..1024];
                let want = expected_image(case, &r, *at);
                if let Some(i) = (0..1024).find(|&i| got[i] != want[i]) {
                    panic!(
                        "{:?} {}-byte elements, round {round} box {at:?}: shared byte {i} is {:#04x}, expected {:#04x}",
                        case.swizzle, case.element_bytes, got[i], want[i]
                    );
                }
            }
        }
    }
}

#[test]
fn a_phase_announcing_fewer_bytes_than_its_boxes_lets_readers_in_early() {
    // expect_tx of one box while two complete on the barrier: a phase ends before the data of
    // a later round has landed, and the readers' loads overlap a TMA still writing them.
    let case = &cases()[3];
    let coords = [[0, 0, 0, 20, 9, 3], [8, 5, 2, 0, 0, 1]];
    let err = run(case, &coords, 1024, 5).err().expect("findings");
    let EmuError::Sanitizer { findings, .. } = &err else {
        panic!("expected sanitizer findings, got {err}")
    };
    assert!(
        findings
            .iter()
            .any(|f| matches!(f.kind, FindingKind::AsyncHazard | FindingKind::Mbarrier)),
        "{err}"
    );
}
