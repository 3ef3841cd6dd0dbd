//! The forwarding of tensor-core and asynchronous instructions (see the EXTENSION POINT in
//! [`super`]): decodes operands, hands per-lane register values to the pure functions of
//! [`crate::tensor_core`], and writes their results back.

use super::{Ctx, Flow, Program};
use crate::error::EmuResult;
use crate::machine::LaneMask;
use crate::sanitizer::Finding;

/// Per-block state of the asynchronous units (cp.async groups, mbarriers, wgmma groups).
#[derive(Debug, Default)]
pub struct BlockExt {}

/// Executes a tensor-core or asynchronous instruction for `group` (guard passed: `exec`).
pub fn execute(ctx: &mut Ctx<'_>, group: LaneMask, exec: LaneMask) -> EmuResult<Flow> {
    let _ = (group, exec);
    Err(ctx.unknown())
}

/// Checks at the end of a block (pending asynchronous work never waited for, and the like).
pub fn finish_block(prog: &Program<'_>, block: &mut super::BlockMem, findings: &mut Vec<Finding>) -> EmuResult<()> {
    let _ = (prog, block, findings);
    Ok(())
}
