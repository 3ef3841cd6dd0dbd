//! Tokens of PTX text. Never panics: every byte either forms a token or gives an error naming its
//! line.

use crate::error::{EmuError, EmuResult};

/// One token.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// Identifiers, directives (`.reg`), opcodes with modifiers (`ld.global.v4.f32`), registers
    /// (`%r1`, `%tid.x`).
    Ident(String),
    /// An integer literal (hex or decimal), as its 64-bit pattern.
    Int(u64),
    /// `0fXXXXXXXX`
    F32(u32),
    /// `0dXXXXXXXXXXXXXXXX`
    F64Bits(u64),
    /// A decimal float literal such as `1.5` or `8.0` (the text kept for `.version`).
    Float(f64, String),
    /// A string literal.
    Str(String),
    /// Punctuation: `, ; : { } [ ] ( ) + - @ ! | < > =`.
    Punct(char),
}

/// A token with its 1-based line.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// Its line.
    pub line: u32,
}

fn err(line: u32, message: impl Into<String>) -> EmuError {
    EmuError::Parse {
        line,
        message: message.into(),
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c == b'%' || c == b'.'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c == b'.'
}

/// Splits PTX text into tokens.
pub fn lex(text: &str) -> EmuResult<Vec<Token>> {
    let b = text.as_bytes();
    let mut i = 0usize;
    let mut line = 1u32;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line = line.saturating_add(1);
            i += 1;
            continue;
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let start = line;
            i += 2;
            loop {
                if i + 1 >= b.len() {
                    return Err(err(start, "unterminated /* comment"));
                }
                if b[i] == b'*' && b[i + 1] == b'/' {
                    i += 2;
                    break;
                }
                if b[i] == b'\n' {
                    line = line.saturating_add(1);
                }
                i += 1;
            }
            continue;
        }
        if c == b'"' {
            let start = i + 1;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\n' {
                    return Err(err(line, "unterminated string literal"));
                }
                i += 1;
            }
            if i >= b.len() {
                return Err(err(line, "unterminated string literal"));
            }
            let s = String::from_utf8_lossy(&b[start..i]).into_owned();
            i += 1;
            out.push(Token {
                tok: Tok::Str(s),
                line,
            });
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                // An exponent sign belongs to the number: 1e-3.
                i += 1;
                if i < b.len()
                    && (b[i] == b'-' || b[i] == b'+')
                    && (b[i - 1] == b'e' || b[i - 1] == b'E')
                    && !b[start..i].starts_with(b"0x")
                    && !b[start..i].starts_with(b"0X")
                    && !b[start..i].starts_with(b"0f")
                    && !b[start..i].starts_with(b"0d")
                {
                    i += 1;
                }
            }
            let s = std::str::from_utf8(&b[start..i]).map_err(|_| err(line, "bad number"))?;
            out.push(Token {
                tok: number(s, line)?,
                line,
            });
            continue;
        }
        if is_ident_start(c) {
            let start = i;
            i += 1;
            loop {
                if i < b.len() && is_ident_char(b[i]) {
                    i += 1;
                } else if i + 1 < b.len() && b[i] == b':' && b[i + 1] == b':' {
                    // `.shared::cta`, `mbarrier.arrive.shared::cta.b64`
                    i += 2;
                } else {
                    break;
                }
            }
            let s = String::from_utf8_lossy(&b[start..i]).into_owned();
            out.push(Token {
                tok: Tok::Ident(s),
                line,
            });
            continue;
        }
        if b",;:{}[]()+-@!|<>=".contains(&c) {
            out.push(Token {
                tok: Tok::Punct(c as char),
                line,
            });
            i += 1;
            continue;
        }
        let shown = text.get(i..).and_then(|s| s.chars().next()).unwrap_or('?');
        return Err(err(line, format!("unexpected character {shown:?}")));
    }
    Ok(out)
}

fn number(s: &str, line: u32) -> EmuResult<Tok> {
    let bad = || err(line, format!("bad number literal `{s}`"));
    let lower = s.to_ascii_lowercase();
    if let Some(h) = lower.strip_prefix("0f") {
        if h.len() == 8 {
            return u32::from_str_radix(h, 16).map(Tok::F32).map_err(|_| bad());
        }
        return Err(bad());
    }
    if let Some(h) = lower.strip_prefix("0d") {
        if h.len() == 16 {
            return u64::from_str_radix(h, 16)
                .map(Tok::F64Bits)
                .map_err(|_| bad());
        }
        return Err(bad());
    }
    if let Some(h) = lower.strip_prefix("0x") {
        let h = h.strip_suffix('u').unwrap_or(h);
        return u64::from_str_radix(h, 16).map(Tok::Int).map_err(|_| bad());
    }
    if lower.contains('.') || lower.contains('e') {
        return lower
            .parse::<f64>()
            .map(|v| Tok::Float(v, s.to_string()))
            .map_err(|_| bad());
    }
    let d = lower.strip_suffix('u').unwrap_or(&lower);
    // PTX octal literals start with 0; binary with 0b.
    if let Some(bin) = d.strip_prefix("0b") {
        return u64::from_str_radix(bin, 2).map(Tok::Int).map_err(|_| bad());
    }
    if d.len() > 1 && d.starts_with('0') {
        return u64::from_str_radix(&d[1..], 8)
            .map(Tok::Int)
            .map_err(|_| bad());
    }
    d.parse::<u64>().map(Tok::Int).map_err(|_| bad())
}
