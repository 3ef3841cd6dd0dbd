//! Floating-point instructions and conversions.

use super::{Ctx, Flow};
use crate::error::EmuResult;
use crate::machine::LaneMask;
use crate::ptx::Instr;

/// Whether an instruction computes in a floating-point type.
pub fn is_float_op(instr: &Instr) -> bool {
    instr.head == "cvt" || instr.types.first().is_some_and(|t| t.is_float())
}

/// Executes a floating-point instruction for the lanes `exec`.
pub fn float_op(ctx: &mut Ctx<'_>, exec: LaneMask) -> EmuResult<Flow> {
    let _ = exec;
    Err(ctx.unknown())
}
