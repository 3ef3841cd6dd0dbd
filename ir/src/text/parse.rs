//! Parser.
use crate::module::Module;

/// A parse error at a line and column (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {col}: {message}")]
pub struct ParseError {
    pub line: u32,
    pub col: u32,
    pub message: String,
}

/// Parses a module from the text form.
pub fn parse_module(_src: &str) -> Result<Module, ParseError> {
    Ok(Module::new())
}
