//! `setmaxnreg_dec` / `setmaxnreg_inc` in a kernel of two warpgroups: values pass through
//! unchanged on the interpreter and on both emulators (sanitizer on: every warp of each
//! warpgroup executes it); on sm_90a the PTX has `setmaxnreg.{dec,inc}.sync.aligned.u32` and
//! the entry `.minnctapersm 1` (without which ptxas ignores them), ptxas gives no advisory and
//! the SASS reallocates; on sm_80 and gfx942 the op emits nothing (no such instruction).
#![cfg(feature = "jit")]

use tilekit::codegen::{compile, ptxas, sass};
use tilekit::dsl::*;
use tilekit::ir::ScalarType::F32;
use tilekit::kernels::check::{poisoned, Rng};
use tilekit::testing::{Stage, Target};
use tilekit::Device;

/// Warpgroup 0 gives registers up, warpgroup 1 takes them; every warp then writes its 16-row
/// tile of `x` plus 1 to `y`.
#[tilekit::kernel(warps = 8)]
fn register_split(x: Gl<f32, 2>, y: GlMut<f32, 2>) {
    let t: Rt<f32, 16, 16> = load(x.tile(warp_idx(), 0));
    if warpgroup_idx().eq(0) {
        setmaxnreg_dec::<40>();
    } else {
        setmaxnreg_inc::<232>();
    }
    let one: Rt<f32, 16, 16> = fill(1.0);
    store(y.tile(warp_idx(), 0), t + one);
}

/// The same without `setmaxnreg`.
#[tilekit::kernel(warps = 8)]
fn no_register_split(x: Gl<f32, 2>, y: GlMut<f32, 2>) {
    let t: Rt<f32, 16, 16> = load(x.tile(warp_idx(), 0));
    store(y.tile(warp_idx(), 0), t);
}

#[test]
fn values_pass_through_setmaxnreg_on_the_interpreter_and_both_emulators() {
    let mut rng = Rng::fresh();
    for device in [
        Device::Cpu,
        Device::emulator("sm_90a").unwrap(),
        Device::emulator("sm_80").unwrap(),
    ] {
        let x = rng.tensor(F32, &[128, 16], -4.0, 4.0);
        let mut y = poisoned(F32, &[128, 16]);
        register_split::launch(&device, [1, 1, 1], &x, &mut y)
            .unwrap_or_else(|e| panic!("{}: {e} (seed {})", device.name(), rng.seed));
        // x is f32: x + 1 is one f32 rounding, as the kernel's add.
        let want: Vec<f64> = x
            .to_vec()
            .iter()
            .map(|v| f64::from(*v as f32 + 1.0))
            .collect();
        assert_eq!(y.to_vec(), want, "{} (seed {})", device.name(), rng.seed);
    }
}

#[test]
fn sm_90a_reallocates_registers_and_other_targets_emit_nothing() {
    let module = register_split::module();
    let c = compile(module, register_split::NAME, Target::Sm90a).unwrap();
    let ptx = c.stage(Stage::Ptx);
    assert!(ptx.contains("setmaxnreg.dec.sync.aligned.u32 40;"), "{ptx}");
    assert!(
        ptx.contains("setmaxnreg.inc.sync.aligned.u32 232;"),
        "{ptx}"
    );
    assert!(ptx.contains(".minnctapersm 1"), "{ptx}");
    let assembled = ptxas::assemble(c.ptx(), Target::Sm90a).unwrap();
    let advisories = ptxas::performance_advisories(&assembled.log);
    assert!(advisories.is_empty(), "{advisories:?}\n{}", assembled.log);
    let mix = sass::instruction_mix(&sass::disassemble(&assembled.cubin).unwrap());
    assert!(
        mix.keys().any(|op| op.contains("SETMAXREG")),
        "no register reallocation in the SASS: {mix:?}"
    );
    // A kernel without it keeps the entry as it was.
    let plain = compile(
        no_register_split::module(),
        no_register_split::NAME,
        Target::Sm90a,
    )
    .unwrap();
    assert!(!plain.stage(Stage::Ptx).contains(".minnctapersm"));
    for target in [Target::Sm80, Target::Gfx942] {
        let c = compile(module, register_split::NAME, target).unwrap();
        let code = if target.is_nvidia() {
            c.stage(Stage::Ptx).to_string()
        } else {
            c.stage(Stage::Asm).to_string()
        };
        assert!(!code.contains("setmaxnreg"), "{target}");
        assert!(!code.contains(".minnctapersm"), "{target}");
    }
}
