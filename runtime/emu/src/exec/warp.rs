//! Warp- and block-level synchronization and exchange: `bar`/`barrier`, `shfl.sync`,
//! `vote.sync`, `activemask`, `match.sync`, `redux.sync`.

use super::{Ctx, Flow};
use crate::error::EmuResult;
use crate::machine::{LaneMask, Wait};

/// `bar.sync`, `bar.arrive`, `barrier.sync`, `bar.warp.sync`, `bar.red` (not yet).
pub fn barrier(ctx: &mut Ctx<'_>, pc: usize, group: LaneMask, exec: LaneMask) -> EmuResult<Flow> {
    let _ = (pc, group, exec);
    let _ = Wait::None;
    Err(ctx.unknown())
}

/// `shfl.sync`, `vote.sync`, `activemask`, `match.sync`, `redux.sync`.
pub fn warp_op(ctx: &mut Ctx<'_>, group: LaneMask, exec: LaneMask) -> EmuResult<Flow> {
    let _ = (group, exec);
    Err(ctx.unknown())
}
