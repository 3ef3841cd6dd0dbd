//! `device_assert`: a false condition stops the launch with an error naming the message and
//! where (the interpreter: block, warp, element; the sm_80 emulator: the record the failing
//! lane writes before its trap (block, thread), and the trap's PTX line, warp and lanes); a true
//! one changes nothing. Compiled for sm_90a and the AMD targets.
#![cfg(feature = "jit")]

use tilekit::codegen::Target;
use tilekit::dsl::*;
use tilekit::ir::interp::{HostTensor, InterpError};
use tilekit::ir::ScalarType::F32;
use tilekit::kernels::check::Rng;
use tilekit::{Device, Error};

const MESSAGE: &str = "x must not be negative";

/// Square roots of a column of 16×16 tiles (one per block); every element must be ≥ 0 and the
/// scalar bound positive.
#[tilekit::kernel(warps = 2)]
fn checked_sqrt(x: Gl<f32, 2>, bound: Scalar<f32>, y: GlMut<f32, 2>) {
    device_assert(bound.gt(0.0), "bound must be positive");
    let w = warp_idx();
    let t: Rt<f32, 16, 16> = load(x.tile(block_idx_x() * 2 + w, 0));
    device_assert(t.ge(0.0), MESSAGE);
    store(y.tile(block_idx_x() * 2 + w, 0), t.sqrt().min(bound));
}

/// Inputs of 4 blocks × 2 warps of tiles, all positive except (optionally) one element.
fn inputs(rng: &mut Rng, bad: Option<(usize, usize)>) -> HostTensor {
    let mut v: Vec<f64> = (0..128 * 16).map(|_| rng.uniform(0.5, 9.0)).collect();
    if let Some((r, c)) = bad {
        v[r * 16 + c] = -rng.uniform(0.5, 9.0);
    }
    HostTensor::new(F32, &[128, 16], &v).unwrap()
}

#[test]
fn a_true_condition_runs_to_the_end_on_the_interpreter_and_the_emulator() {
    let mut rng = Rng::fresh();
    let x = inputs(&mut rng, None);
    for device in [Device::Cpu, Device::emulator("sm_80").unwrap()] {
        let mut y = HostTensor::full(F32, &[128, 16], -7.0);
        checked_sqrt::launch(&device, 4, &x, 2.5f32.into(), &mut y)
            .unwrap_or_else(|e| panic!("{}, seed {}: {e}", device.name(), rng.seed));
        for (i, (&got, &xv)) in y.to_vec().iter().zip(&x.to_vec()).enumerate() {
            let want = xv.sqrt().min(2.5);
            assert!(
                (got - want).abs() <= 1e-6 * want,
                "element {i}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn the_interpreter_names_message_block_warp_and_element() {
    let mut rng = Rng::fresh();
    // Row 16·5 + 3 = 83 is tile 5: block 2, warp 1, row 3 of its tile.
    let x = inputs(&mut rng, Some((83, 9)));
    let module = checked_sqrt::module();
    let mut args = vec![
        tilekit::ir::interp::Arg::Tensor(x),
        tilekit::ir::interp::Arg::Scalar(F32, 2.5),
        tilekit::ir::interp::Arg::Tensor(HostTensor::zeros(F32, &[128, 16])),
    ];
    let err = tilekit::ir::interp::run(module, checked_sqrt::NAME, [4, 1, 1], &mut args)
        .expect_err("a negative element must fail the assert");
    match &err {
        InterpError::AssertFailed {
            site,
            message,
            element,
        } => {
            assert_eq!(message, MESSAGE);
            assert_eq!(site.block, [2, 0, 0], "{err}");
            assert_eq!(site.warp, 1, "{err}");
            assert_eq!(*element, Some((3, 9)), "{err}");
        }
        other => panic!("expected AssertFailed, got {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(MESSAGE) && text.contains("block (2, 0, 0) warp 1"),
        "{text}"
    );
}

#[test]
fn a_scalar_condition_fails_on_the_interpreter_through_the_typed_launcher() {
    let mut rng = Rng::fresh();
    let x = inputs(&mut rng, None);
    let mut y = HostTensor::zeros(F32, &[128, 16]);
    let err = checked_sqrt::launch(&Device::Cpu, 4, &x, (-1.0f32).into(), &mut y)
        .expect_err("a negative bound must fail the assert");
    let text = err.to_string();
    assert!(text.contains("bound must be positive"), "{text}");
}

#[test]
fn the_sm_80_emulator_reports_the_trap_with_the_message() {
    let mut rng = Rng::fresh();
    let x = inputs(&mut rng, Some((83, 9)));
    let mut y = HostTensor::zeros(F32, &[128, 16]);
    let device = Device::emulator("sm_80").unwrap();
    let err = checked_sqrt::launch(&device, 4, &x, 2.5f32.into(), &mut y)
        .expect_err("a negative element must trap");
    let text = err.to_string();
    assert!(matches!(err, Error::Launch { .. }), "{text}");
    assert!(
        text.contains(&format!("device_assert failed: {MESSAGE}")),
        "{text}"
    );
    // Block 2, warp 1; the element sits in a lane of that warp (row 3 of the tile: the lanes
    // of fragment row group 3, `lane / 4 == 3`), which the record names as thread 32 + lane.
    assert!(text.contains("block [2, 0, 0], warp 1"), "{text}");
    assert!(
        (44..48).any(|t| text.contains(&format!("(block (2, 0, 0), thread {t})"))),
        "{text}"
    );
    assert!(
        text.contains("lanes [12")
            || text.contains("lanes [13")
            || text.contains("lanes [14")
            || text.contains("lanes [15"),
        "{text}"
    );
}

#[test]
fn asserts_compile_for_sm_90a_and_every_amd_target() {
    let c = tilekit::codegen::compile(checked_sqrt::module(), checked_sqrt::NAME, Target::Sm90a)
        .unwrap();
    let ptx = c.ptx();
    assert!(ptx.contains("trap; // device_assert: x must not be negative"));
    // The record a GPU host reads after the trap: the module's pointer to it, one lane's claim,
    // the system-scope fence before the trap.
    assert!(
        ptx.contains(".global .align 8 .u64 __tilekit_assert_record"),
        "{ptx}"
    );
    assert!(ptx.contains("atom.global.cas.b32"), "{ptx}");
    assert!(ptx.contains("fence.sc.sys; trap;"), "{ptx}");
    for t in [Target::Gfx90a, Target::Gfx942, Target::Gfx950] {
        let c = tilekit::codegen::compile(checked_sqrt::module(), checked_sqrt::NAME, t)
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        assert!(c.code_object().is_some_and(|o| !o.is_empty()), "{t}");
        assert!(
            c.stage(tilekit::codegen::Stage::Asm).contains("s_trap"),
            "{t}"
        );
    }
}
