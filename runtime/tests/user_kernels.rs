//! A user's kernels (those of runtime/tests/user_crate, compiled in as a module) get the
//! `tilekit` command and snapshot tests: the same surface that runtime/tests/user_crate.rs
//! checks on the crate built outside the workspace, here inside it and in `make test`.

#[path = "user_crate/src/lib.rs"]
mod user_kernels;

use tilekit::cli;
use tilekit::dsl::bf16;
use tilekit::testing::{assert_stage_snapshot, Stage, Target};
use user_kernels::row_scale;

/// The one line a user's binary holds; here it must expand and compile (its `main` is not
/// this test binary's).
#[allow(dead_code)]
mod binary {
    tilekit::cli_main!(tilekit);
}

fn run(args: &[&str]) -> (String, i32) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    cli::run(&args).unwrap_or_else(|e| panic!("tilekit {args:?}: {e}"))
}

#[test]
fn the_cli_lists_emits_checks_and_selftests_the_users_kernels() {
    let (list, code) = run(&["list"]);
    assert_eq!(code, 0);
    // Each variant, with its parameters substituted, beside the library's kernels.
    for want in [
        "row_scale<f32, 1>  (x: Gl<f32, 2>, s: Scalar<f32>, y: GlMut<f32, 2>)",
        "row_scale<bf16, 2>  (x: Gl<bf16, 2>, s: Scalar<f32>, y: GlMut<f32, 2>)",
        "gemm<bf16, 64, 64, 32, 32, 32>",
    ] {
        assert!(list.contains(want), "no `{want}` in:\n{list}");
    }
    assert!(list.contains("user_crate/src/lib.rs"), "{list}");

    let (ptx, code) = run(&[
        "emit",
        "row_scale<bf16, 2>",
        "--target",
        "sm_90a",
        "--stage",
        "ptx",
    ]);
    assert_eq!(code, 0);
    assert!(ptx.contains(".entry row_scale"), "{ptx}");
    let (asm, _) = run(&[
        "emit",
        "row_scale",
        "--const",
        "0=f32",
        "--target",
        "gfx942",
        "--stage",
        "asm",
    ]);
    assert!(asm.contains("row_scale"), "{asm}");

    let (check, code) = run(&["check", "row_scale<f32, 1>", "--target", "sm_80"]);
    assert_eq!(code, 0);
    assert!(
        check.contains("registers") && check.contains("spill"),
        "{check}"
    );

    let (selftest, code) = run(&["selftest", "--device", "cpu"]);
    assert_eq!(code, 0, "{selftest}");
    assert!(
        selftest.contains("ok   row_scale: 4 runs against the f64 reference"),
        "{selftest}"
    );
}

#[test]
fn the_users_kernel_has_tile_ir_ptx_and_amd_assembly_snapshots() {
    assert_stage_snapshot!(row_scale::<bf16, 2>, Target::Sm90a, Stage::Tile);
    assert_stage_snapshot!(row_scale::<bf16, 2>, Target::Sm90a, Stage::Ptx);
    assert_stage_snapshot!(row_scale::<bf16, 2>, Target::Gfx942, Stage::Asm);
}

#[test]
fn a_snapshot_of_a_stage_the_target_lacks_names_the_stages_it_has() {
    let e = std::panic::catch_unwind(|| {
        assert_stage_snapshot!(row_scale::<f32, 1>, Target::Sm80, Stage::Asm);
    })
    .unwrap_err();
    let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("`asm` does not apply to sm_80") && msg.contains("ptx"),
        "{msg}"
    );
}
