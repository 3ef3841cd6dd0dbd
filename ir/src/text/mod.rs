//! The text form of Tile IR: a printer and a parser that round-trip exactly.
//!
//! ```
//! use tilekit_ir::{parse_module, print_module};
//!
//! let text = "\
//! kernel @scale(%x: gl<f32, 2, mut>, %s: f32) warps(1) {
//!   %0 = block_idx.y () : i32
//!   %1 = block_idx.x () : i32
//!   %t = load (%x, %0, %1) : rt<f32, 16x16, row>
//!   %2 = map.mul (%t, %s) : rt<f32, 16x16, row>
//!   store (%x, %2, %0, %1)
//!   return ()
//! }
//! ";
//! let module = parse_module(text)?;
//! assert_eq!(print_module(&module), text);
//! # Ok::<(), tilekit_ir::ParseError>(())
//! ```
//!
//! A module is a list of functions: `kernel @name(params) warps(N) { … }` (with
//! `allow_spills` after `warps(N)` for a kernel that accepts register spills) and
//! `func @name(params) -> (types) { … }`. An op is written
//! `%r, … = name[attr] @scope (operands) regions… : types`, where the attribute, the scope (when
//! not warp), the regions and the results appear only when the op has them. A region is
//! `(args) { ops }`, or `{ ops }` without arguments. Types are written as [`Type`]'s `Display`.
//! `//` starts a comment.
//!
//! For every module `m`, `print_module(&parse_module(&print_module(&m))?) == print_module(&m)`:
//! the printer's output is canonical (two spaces of indentation per level, one blank line between
//! functions, values `%name` or `%N` numbered in order of definition), and the parser accepts any
//! whitespace between tokens. A name that two values share is printed `%acc`, `%acc.1`, …; a
//! function name other than `[A-Za-z_][A-Za-z0-9_.]*` is quoted: `@"gemm<64>"`. The parser also
//! accepts an op without operands written without its
//! `()`, as the crate documentation writes them (`%0 = warp_idx : i32`).
//!
//! [`Type`]: crate::Type

mod lex;
mod parse;
mod print;

pub use parse::{parse_module, ParseError};
pub use print::{print_func, print_module};
