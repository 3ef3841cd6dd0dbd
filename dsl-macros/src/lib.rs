//! Proc macros of tilekit (`#[kernel]`, `#[func]`).
//!
//! Not written yet: this crate exports no macros. Kernels are built today with
//! `tilekit_ir::FuncBuilder` or written in the Tile IR text form; the macros that turn Rust
//! functions into those builders are the next piece of work.
