//! PTX text: tokens, the parsed module, the parser.

pub mod ast;
mod lexer;
mod parse;

pub use ast::*;
pub use parse::{parse, special};
