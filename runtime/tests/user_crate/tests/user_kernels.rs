//! The crate's generated code, one snapshot per line (tests/snapshots; `cargo insta review`).

use tilekit::dsl::bf16;
use tilekit::testing::{assert_stage_snapshot, Stage, Target};
use user_kernels::row_scale;

#[test]
fn row_scale_tile_ir_ptx_and_amd_assembly() {
    assert_stage_snapshot!(row_scale::<bf16, 2>, Target::Sm90a, Stage::Tile);
    assert_stage_snapshot!(row_scale::<bf16, 2>, Target::Sm90a, Stage::Ptx);
    assert_stage_snapshot!(row_scale::<bf16, 2>, Target::Gfx942, Stage::Asm);
}
