//! Register tiles stored into shared tiles and shared tiles copied to global views, lane by
//! lane: on sm_90a a 16-bit register tile goes to shared memory with `stmatrix` (`.trans` for
//! the column layout) and a warp's copy of a swizzled shared tile to a view the compile
//! assumes aligned is a TMA store (`cp.async.bulk.tensor` shared → global, clipped by the
//! hardware at the view's edges). Every element must arrive bit for bit at its place on the
//! sm_90a emulator (sanitizer on), the sm_80 emulator (`st.shared` and the lanes' copy) and the interpreter,
//! and nothing outside the view may be written.
#![cfg(feature = "jit")]

use tilekit::codegen::{compile_with, Facts, Stage, Target};
use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::BF16;
use tilekit::kernels::check::Rng;
use tilekit::Device;

/// Rows × columns of the tiles the kernel moves.
const R: usize = 32;
const C: usize = 64;

/// `y.tile(0, 0)` ← `x.tile(0, 0)` through a register tile of layout `L` and a shared tile of
/// swizzle `Z` (written whole); `y.tile(1, 0)` ← `x.tile(1, 0)` through 16×16 register tiles
/// stored at their tile indices of a second shared tile. Spills are allowed: on sm_80 the looped
/// element copy of the 32×64 tile to `y` spills 32 bytes at 128 registers (what is tested here is
/// where the elements arrive).
#[tilekit::kernel(allow_spills, variants(<Row, Swz128>, <Col, Swz128>, <Row, Swz64>, <Row, NoSwizzle>))]
fn through_shared<L: TileLayout, Z: SwizzleKind>(x: Gl<bf16, 2>, y: GlMut<bf16, 2>) {
    let whole: St<bf16, R, C, Z> = alloc_shared();
    let parts: St<bf16, R, C, Z> = alloc_shared();
    let t: Rt<bf16, R, C, L> = load(x.tile(0, 0));
    store(whole, t);
    copy_warp(y.tile(0, 0), whole);
    for i in 0..R / 16 {
        for j in 0..C / 16 {
            let s: Rt<bf16, 16, 16, L> = load(x.tile(R / 16 + i, j));
            store(parts.tile(i, j), s);
        }
    }
    copy_warp(y.tile(1, 0), parts);
}

/// Runs one variant on `device` for an `rows × cols` view `x` and an output view of the same
/// shape whose rows are `cols + pad` apart in a buffer filled with a sentinel: every element
/// of the view must equal x's, every padding element keep the sentinel.
fn round_trip(
    device: &Device,
    run: fn(&Device, &HostTensor, &mut HostTensor) -> Result<(), String>,
    rng: &mut Rng,
    (rows, cols, pad): (usize, usize, usize),
) {
    let x = rng.tensor(BF16, &[rows, cols], -4.0, 4.0);
    let stride = cols + pad;
    let sentinel = 3.5;
    let storage = vec![sentinel; rows * stride];
    let mut y = HostTensor::strided(BF16, &[rows, cols], &[stride, 1], &storage).unwrap();
    run(device, &x, &mut y)
        .unwrap_or_else(|e| panic!("{rows}×{cols} (+{pad}) on {}: {e}", device.name()));
    let (xv, out) = (x.to_vec(), y.storage().to_vec());
    for r in 0..rows {
        for c in 0..stride {
            let got = out[r * stride + c];
            let want = if c < cols { xv[r * cols + c] } else { sentinel };
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{rows}×{cols} (+{pad}) on {}: element ({r}, {c}) is {got}, not {want} (seed {})",
                device.name(),
                rng.seed
            );
        }
    }
}

/// A launch of variant `<L, Z>` on one block of one warp.
fn launcher<L: TileLayout, Z: SwizzleKind>(
    device: &Device,
    x: &HostTensor,
    y: &mut HostTensor,
) -> Result<(), String> {
    through_shared::<L, Z>::launch(device, [1, 1, 1], x, y).map_err(|e| e.to_string())
}

type Launcher = fn(&Device, &HostTensor, &mut HostTensor) -> Result<(), String>;

const VARIANTS: [(&str, Launcher); 4] = [
    ("<Row, Swz128>", launcher::<Row, Swz128>),
    ("<Col, Swz128>", launcher::<Col, Swz128>),
    ("<Row, Swz64>", launcher::<Row, Swz64>),
    ("<Row, NoSwizzle>", launcher::<Row, NoSwizzle>),
];

/// Views: whole tiles with 16-byte row pitches (TMA stores on sm_90a); ragged edges with
/// 16-byte pitches (the hardware clips the boxes); a pitch TMA cannot describe (lanes copy).
const SHAPES: [(usize, usize, usize); 4] = [(64, 64, 0), (40, 56, 8), (17, 24, 16), (50, 61, 2)];

#[test]
fn every_element_arrives_on_the_sm_90a_emulator() {
    let device = Device::emulator("sm_90a").unwrap();
    let mut rng = Rng::fresh();
    for (name, run) in VARIANTS {
        for shape in SHAPES {
            println!("{name} {shape:?}");
            round_trip(&device, run, &mut rng, shape);
        }
    }
}

#[test]
fn every_element_arrives_on_the_sm_80_emulator_and_the_interpreter() {
    let mut rng = Rng::fresh();
    for device in [Device::emulator("sm_80").unwrap(), Device::Cpu] {
        for (_, run) in VARIANTS {
            round_trip(&device, run, &mut rng, SHAPES[1]);
            round_trip(&device, run, &mut rng, SHAPES[3]);
        }
    }
}

/// The sm_90a PTX: `stmatrix` (`.trans` for the column layout) for each 16×16 subtile, and
/// with the views aligned the copies are TMA stores behind the proxy fence; with the views
/// general no TMA store is left.
#[test]
fn sm_90a_stores_with_stmatrix_and_tma() {
    fn ptx(aligned: bool, name: &str, module: &tilekit::ir::Module) -> String {
        let facts = match module.kernel(name) {
            Some(f) if aligned => Facts::all_aligned16(f),
            _ => Facts::general(),
        };
        let c = compile_with(module, name, Target::Sm90a, &facts).expect("compiles");
        c.stage(Stage::Ptx).to_string()
    }
    let row = through_shared::<Row, Swz128>::try_module().expect("builds");
    let col = through_shared::<Col, Swz128>::try_module().expect("builds");
    let row_name = through_shared::<Row, Swz128>::NAME;
    let col_name = through_shared::<Col, Swz128>::NAME;
    let aligned = ptx(true, row_name, row);
    // 8 subtiles stored whole, 8 at their indices.
    assert_eq!(
        aligned
            .matches("stmatrix.sync.aligned.m8n8.x4.shared.b16")
            .count(),
        16,
        "{aligned}"
    );
    let store = "cp.async.bulk.tensor.2d.global.shared::cta.bulk_group";
    for want in [
        store,
        "fence.proxy.async.shared::cta",
        "cp.async.bulk.commit_group",
        "cp.async.bulk.wait_group 0",
    ] {
        assert!(aligned.contains(want), "no {want} in the PTX");
    }
    let col_ptx = ptx(true, col_name, col);
    assert_eq!(
        col_ptx
            .matches("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16")
            .count(),
        16
    );
    let general = ptx(false, row_name, row);
    assert!(!general.contains(store), "a TMA store of a general view");
    assert!(
        general.contains("stmatrix"),
        "no stmatrix in the general build"
    );
}
