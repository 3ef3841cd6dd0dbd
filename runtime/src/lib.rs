//! # tilekit
//!
//! Tiled GPU kernels in Rust. Today this crate re-exports the Tile IR ([`ir`]): kernels are built
//! with [`ir::FuncBuilder`] or written in the Tile IR text form, verified with [`ir::verify`] and
//! run on the CPU interpreter ([`ir::interp`]), which defines what they mean. The DSL macros, the
//! GPU code generation and the device runtime build on it.

pub use tilekit_ir as ir;
