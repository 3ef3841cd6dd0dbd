//! Integer, bit and predicate instructions.

use super::{Ctx, Flow};
use crate::error::EmuResult;
use crate::machine::LaneMask;

/// Executes an integer instruction for the lanes `exec`.
pub fn int_op(ctx: &mut Ctx<'_>, exec: LaneMask) -> EmuResult<Flow> {
    let _ = exec;
    Err(ctx.unknown())
}
