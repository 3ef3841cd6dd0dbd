//! Warp- and warpgroup-level matrix instructions (`mma.sync`, `ldmatrix`, `stmatrix`, `wgmma`) as
//! pure functions over per-lane register values, written from the PTX ISA's fragment figures.
