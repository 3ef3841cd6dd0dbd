//! TMA across the three layers that must agree on it, under the PTX emulator: the compiler's box
//! plan of a shared tile (`tilekit::codegen::tma`) and its load instruction, the runtime's
//! tensor map of a view (`tilekit::tensor_map`), and `tilekit-emu`'s reading of
//! `cp.async.bulk.tensor` and `mbarrier`. One warp loads a tile of a view (a column slice of a
//! padded buffer, so base, pitch and extents differ) with the plan's boxes on one mbarrier and
//! copies the raw shared image out; every byte must be where the compiler's shared layout
//! (`layout::shared_tile_offset`, what `ldmatrix` and `wgmma` descriptors read) places the
//! element, and zeros outside the view.
use tilekit::ir::{ScalarType, Swizzle};
use tilekit::kernels::check::Rng;
use tilekit::tensor_map::{TensorMapDesc, TmaSwizzle};
use tilekit_codegen::layout::shared_tile_offset;
use tilekit_codegen::tma::{load_asm, plan, TmaPlan};
use tilekit_emu::{Emulator, GlobalMemory, LaunchConfig};

/// The kernel for one plan: thread 0 initializes the mbarrier, announces the tile's bytes and
/// issues each box with the compiler's instruction text; all wait on parity 0 and copy the tile.
fn kernel(p: &TmaPlan, origin: (i32, i32)) -> String {
    let mut issue = String::new();
    for (k, b) in p.boxes.iter().enumerate() {
        let asm = load_asm(2)
            .replace("$0", &format!("%rb{k}"))
            .replace("$1", "map")
            .replace("$2", &format!("%rx{k}"))
            .replace("$3", &format!("%ry{k}"))
            .replace("$4", "full");
        issue.push_str(&format!(
            "    add.u32 %rb{k}, %r20, {};\n    mov.b32 %rx{k}, {};\n    mov.b32 %ry{k}, {};\n    @%p1 {asm}\n",
            b.shared_offset,
            origin.1 + b.col as i32,
            origin.0 + b.row as i32,
        ));
    }
    let mut copy = String::new();
    for i in 0..p.bytes / 512 {
        copy.push_str(&format!(
            "    ld.shared.v4.u32 {{%r30, %r31, %r32, %r33}}, [%r21+{o}];\n    st.global.v4.u32 [%rd3+{o}], {{%r30, %r31, %r32, %r33}};\n",
            o = i * 512
        ));
    }
    let n = p.boxes.len();
    format!(
        r#"
.version 8.3
.target sm_90a
.address_size 64
.visible .entry tile(.param .align 64 .b8 map[128], .param .u64 pout)
{{
    .reg .pred %p<4>;
    .reg .b32 %r<40>;
    .reg .b32 %rb<{n}>;
    .reg .b32 %rx<{n}>;
    .reg .b32 %ry<{n}>;
    .reg .b64 %rd<8>;
    .shared .align 1024 .b8 smem[{bytes}];
    .shared .align 8 .b64 full;
    mov.u32 %r1, %tid.x;
    setp.eq.u32 %p1, %r1, 0;
    @%p1 mbarrier.init.shared::cta.b64 [full], 1;
    fence.mbarrier_init.release.cluster;
    bar.sync 0;
    mov.u32 %r20, smem;
    @%p1 mbarrier.arrive.expect_tx.shared::cta.b64 %rd1, [full], {bytes};
{issue}WAIT:
    mbarrier.try_wait.parity.shared::cta.b64 %p2, [full], 0;
    @!%p2 bra WAIT;
    shl.b32 %r2, %r1, 4;
    add.u32 %r21, %r20, %r2;
    ld.param.u64 %rd2, [pout];
    cvt.u64.u32 %rd4, %r2;
    add.s64 %rd3, %rd2, %rd4;
{copy}    ret;
}}
"#,
        bytes = p.bytes
    )
}

fn tma_swizzle(s: Swizzle) -> TmaSwizzle {
    match s {
        Swizzle::None => TmaSwizzle::None,
        Swizzle::B32 => TmaSwizzle::B32,
        Swizzle::B64 => TmaSwizzle::B64,
        Swizzle::B128 => TmaSwizzle::B128,
    }
}

/// Loads tile `(ti, tj)` of a `rows × cols` tile grid over an `m × n` view of `d` and checks
/// the image byte by byte.
#[allow(clippy::too_many_arguments)]
fn check(
    rng: &mut Rng,
    d: ScalarType,
    rows: u32,
    cols: u32,
    s: Swizzle,
    m: usize,
    n: usize,
    tile: (u32, u32),
) {
    let es = d.size_bytes() as usize;
    let p = plan(rows, cols, d, s).unwrap_or_else(|e| panic!("{rows}×{cols} {d} {s:?}: {e}"));
    // The view: columns 16/es.. of a buffer whose pitch is a multiple of 16 bytes above n.
    let skip = 16 / es;
    let pitch = (n + skip).div_ceil(16 / es) * (16 / es) + 16 / es;
    let buffer: Vec<u8> = (0..m * pitch * es)
        .map(|_| rng.uniform(1.0, 256.0) as u8)
        .collect();
    let mut g = GlobalMemory::new();
    let base = g.alloc("view", buffer.clone());
    let pout = g.alloc("out", vec![0u8; p.bytes as usize]);
    let desc = TensorMapDesc::for_view(
        d,
        base + (skip * es) as u64,
        &[m, n],
        &[pitch, 1],
        &[p.box_rows as usize, p.box_cols as usize],
        tma_swizzle(s),
    )
    .unwrap();
    let origin = ((tile.0 * rows) as i32, (tile.1 * cols) as i32);
    let ptx = kernel(&p, origin);
    let emu = Emulator::new(&ptx).unwrap();
    let image = desc.emulator_image().unwrap();
    let params = emu
        .param_buffer("tile", &[image.0.to_vec(), pout.to_le_bytes().to_vec()])
        .unwrap();
    emu.launch(
        "tile",
        &LaunchConfig::new([1, 1, 1], [32, 1, 1]),
        &params,
        &mut g,
    )
    .unwrap_or_else(|e| panic!("{rows}×{cols} {d} {s:?}: {e}"));
    let out = &g.get(pout).unwrap().data;
    let row_bytes = cols * es as u32;
    for r in 0..rows {
        for c in 0..cols {
            let at = shared_tile_offset(s, rows, row_bytes, r, c * es as u32) as usize;
            let (gr, gc) = (
                origin.0 as usize + r as usize,
                origin.1 as usize + c as usize,
            );
            for b in 0..es {
                let want = if gr < m && gc < n {
                    buffer[(gr * pitch + skip + gc) * es + b]
                } else {
                    0
                };
                assert_eq!(
                    out[at + b],
                    want,
                    "{rows}×{cols} {d} {s:?} tile {tile:?} of {m}×{n}: element ({r}, {c}) byte {b} (seed {})",
                    rng.seed
                );
            }
        }
    }
}

#[test]
fn planned_boxes_fill_shared_tiles_in_the_compilers_layout() {
    let mut rng = Rng::fresh();
    let bf = ScalarType::BF16;
    // wgmma's A tile (one 128-byte-swizzled box), over the view's bottom-right corner.
    check(&mut rng, bf, 64, 64, Swizzle::B128, 100, 90, (1, 1));
    // wgmma's N-major B tile: two boxes side by side, the second wholly outside the view.
    check(&mut rng, bf, 32, 128, Swizzle::B128, 100, 60, (2, 0));
    // Inside the view, each span of swizzle and none.
    check(&mut rng, bf, 32, 32, Swizzle::B64, 100, 90, (1, 1));
    check(
        &mut rng,
        ScalarType::F32,
        16,
        8,
        Swizzle::B32,
        37,
        29,
        (2, 3),
    );
    check(&mut rng, bf, 16, 128, Swizzle::None, 37, 200, (1, 1));
    check(
        &mut rng,
        ScalarType::F8E4M3,
        64,
        128,
        Swizzle::B128,
        70,
        130,
        (1, 1),
    );
}

/// The sm_90a code of a kernel whose copy groups fill swizzled tiles from aligned views: one
/// tensor-map parameter per (view, box, swizzle), declared as 64-byte-aligned 128-byte
/// parameters after the others, `cp.async.bulk.tensor` instead of per-thread `cp.async`; the
/// general variant, whose views may break a map's rules, and sm_80 keep `cp.async`.
#[test]
fn aligned_sm_90a_copy_groups_take_tensor_maps_and_other_variants_do_not() {
    use tilekit::codegen::{compile_with, Facts, Target};
    use tilekit::kernels::gemm_wg::gemm_wg;
    let module = gemm_wg::<f32, 128, 128, 32, 4>::try_module().unwrap();
    let func = module.kernel("gemm_wg").unwrap();
    let aligned = compile_with(
        module,
        "gemm_wg",
        Target::Sm90a,
        &Facts::all_aligned16(func),
    )
    .unwrap();
    let maps: Vec<String> = aligned.tensor_maps.iter().map(|m| m.to_text()).collect();
    // A: 64 × 32 bf16 tiles with a 64-byte swizzle (one box); B: 32 × 128 with a 128-byte
    // swizzle, two boxes of 64 columns.
    assert_eq!(maps, ["a 64x32 swz64", "b 32x64 swz128"]);
    let ptx = aligned.ptx();
    assert_eq!(ptx.matches(".param .align 64 .b8").count(), 2, "{ptx}");
    assert!(ptx.contains("cp.async.bulk.tensor.2d"));
    assert!(ptx.contains("mbarrier.try_wait.parity"));
    assert!(!ptx.contains("cp.async.cg"), "no per-thread chunks remain");
    let general = compile_with(module, "gemm_wg", Target::Sm90a, &Facts::general()).unwrap();
    assert!(general.tensor_maps.is_empty());
    assert!(!general.ptx().contains("cp.async.bulk.tensor"));
    let sm80 = compile_with(module, "gemm_wg", Target::Sm80, &Facts::all_aligned16(func)).unwrap();
    assert!(sm80.tensor_maps.is_empty());
    assert!(!sm80.ptx().contains("cp.async.bulk"));
}

/// The TMA GEMM on the sm_90a emulator, from a bundle that went through its file format (the
/// maps' metadata survives) and compiled on first launch: each launch encodes the maps from the
/// tensors it is given, and the product agrees with the f64 reference on an aligned shape with
/// partial tiles (TMA's zero fill at every edge), a launch with only some views aligned (JIT:
/// those copies are TMA, the others stay `cp.async` in the same groups) and one no aligned code
/// fits (the general variant).
#[test]
fn the_tma_gemm_from_a_bundle_agrees_with_the_reference_on_the_sm_90a_emulator() {
    use tilekit::bundle::{kernel_from_compiled, Bundle};
    use tilekit::codegen::{compile_with, Facts, Target};
    use tilekit::kernels::check::{normalized_max_error, poisoned};
    use tilekit::kernels::gemm::{grid, reference};
    use tilekit::kernels::gemm_wg::gemm_wg;
    use tilekit::Device;
    type G = gemm_wg<f32, 128, 128, 32, 4>;
    let module = G::try_module().unwrap();
    let func = module.kernel("gemm_wg").unwrap();
    let mut kernels = Vec::new();
    let all = Facts::all_aligned16(func);
    for facts in [Facts::general(), all] {
        let c = compile_with(module, "gemm_wg", Target::Sm90a, &facts).unwrap();
        kernels.push(kernel_from_compiled(module, "gemm_wg", "", &c).unwrap());
    }
    let bundle = Bundle {
        target: "sm_90a".into(),
        kernels,
    };
    let read = Bundle::from_bytes(&bundle.to_bytes().unwrap()).unwrap();
    assert_eq!(read.kernels[1].tensor_maps, bundle.kernels[1].tensor_maps);
    assert_eq!(read.kernels[1].tensor_maps.len(), 2);
    assert!(read.kernels[0].tensor_maps.is_empty());
    let bundled = Device::emulator("sm_90a").unwrap();
    bundled.attach_bundle(read).unwrap();
    let jit = Device::emulator("sm_90a").unwrap();
    let mut rng = Rng::fresh();
    // (device, m, n, k): all aligned, ragged in every dimension; A's rows of 100 bf16
    // (200 bytes) break the 16-byte rule while B's and C's do not; nothing aligned.
    for (device, m, n, k) in [
        (&bundled, 136, 200, 96),
        (&jit, 70, 136, 100),
        (&bundled, 45, 70, 33),
    ] {
        let a = rng.tensor(ScalarType::BF16, &[m, k], -1.0, 1.0);
        let b = rng.tensor(ScalarType::BF16, &[k, n], -1.0, 1.0);
        let want = reference(&a.to_vec(), &b.to_vec(), m, k, n);
        let mut c = poisoned(ScalarType::F32, &[m, n]);
        G::launch(&device, grid(m, n, 128, 128), &a, &b, &mut c)
            .unwrap_or_else(|e| panic!("{m}×{n}×{k}: {e}"));
        let err = normalized_max_error(&c.to_vec(), &want);
        assert!(
            err <= 1e-5,
            "{m}×{n}×{k}: error {err:.2e} (seed {})",
            rng.seed
        );
    }
}
