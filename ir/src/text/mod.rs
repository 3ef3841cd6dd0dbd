//! The text form of Tile IR: a printer and a parser that round-trip exactly.

mod parse;
mod print;

pub use parse::{parse_module, ParseError};
pub use print::{print_func, print_module};
