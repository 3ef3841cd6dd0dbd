//! Register reallocation between warpgroups: a warp-specialized kernel's producer warpgroup,
//! which only issues copies, gives registers up; its consumer warpgroups, which hold the
//! accumulators, take them (sm_90a's `setmaxnreg`; PTX ISA, *setmaxnreg*).
//!
//! Every warp of the warpgroup calls it (the interpreter and the PTX emulator report one that
//! does not); values are unchanged. On sm_90a the kernel's entry then declares
//! `.minnctapersm 1` beside `.maxntid`, without which ptxas ignores `setmaxnreg` (its C7508
//! advisory); the registers at entry are the block's share of the 64K register file. Other
//! targets have no such instruction and emit nothing: the op changes no value, and the kernel
//! runs with the registers ptxas or the AMD compiler gave it.

use super::trace::rec;

/// The warpgroup asks for `COUNT` registers per thread (a multiple of 8 in 24..=256, at least
/// what it holds now). A compile error for a count off that grid.
#[track_caller]
pub fn setmaxnreg_inc<const COUNT: u32>() {
    const {
        assert!(
            COUNT >= 24 && COUNT <= 256 && COUNT % 8 == 0,
            "setmaxnreg: COUNT must be a multiple of 8 in 24..=256"
        )
    };
    rec!(|b| b.setmaxnreg(true, COUNT))
}

/// The warpgroup gives registers up down to `COUNT` per thread (a multiple of 8 in 24..=256, at
/// most what it holds now). A compile error for a count off that grid.
#[track_caller]
pub fn setmaxnreg_dec<const COUNT: u32>() {
    const {
        assert!(
            COUNT >= 24 && COUNT <= 256 && COUNT % 8 == 0,
            "setmaxnreg: COUNT must be a multiple of 8 in 24..=256"
        )
    };
    rec!(|b| b.setmaxnreg(false, COUNT))
}
