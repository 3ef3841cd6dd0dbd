//! Memory instructions: `ld`, `st`, `atom`, `red`, `cvta`, `isspacep`.

use super::{Ctx, Flow};
use crate::error::EmuResult;
use crate::machine::LaneMask;

/// Executes a memory instruction for the lanes `exec`.
pub fn mem_op(ctx: &mut Ctx<'_>, exec: LaneMask) -> EmuResult<Flow> {
    let _ = exec;
    Err(ctx.unknown())
}
