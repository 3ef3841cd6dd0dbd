//! The tokens of the text form and the lexer that cuts source text into them.
//!
//! The lexer never fails: a character it cannot read becomes an [`TokenKind::Invalid`] token that
//! ends the stream, so the parser reports the first problem in source order, whether it is a
//! stray character or a misplaced token before it.

use std::fmt;

/// A position in source text: 1-based line and column, columns counted in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: u32,
    pub col: u32,
}

/// What a token is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum TokenKind {
    /// A word `[A-Za-z_][A-Za-z0-9_.]*`: keywords, op names, type names, layouts, `inf`, `NaN`.
    Ident(String),
    /// A word starting with a digit, or `-` and a word character: `64`, `-1.5e-8`, `64x16`,
    /// `-inf`. The parser reads it according to where it stands.
    Number(String),
    /// `%name` or `%N`, without the `%`.
    Value(String),
    /// `@name` or `@"quoted name"`, without the `@`, quotes and escapes.
    Symbol(String),
    /// One of `( ) { } [ ] < > , : =`.
    Punct(char),
    /// `->`.
    Arrow,
    /// Text the lexer cannot read; the message says why. It is the last token.
    Invalid(String),
    /// The end of the text. It is the last token.
    Eof,
}

/// A token and where it starts.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub pos: Pos,
}

impl fmt::Display for TokenKind {
    /// How an error message names the token it found.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenKind::Ident(s) | TokenKind::Number(s) => write!(f, "'{s}'"),
            TokenKind::Value(s) => write!(f, "'%{s}'"),
            TokenKind::Symbol(s) => write!(f, "'{}'", symbol_text(s)),
            TokenKind::Punct(c) => write!(f, "'{c}'"),
            TokenKind::Arrow => f.write_str("'->'"),
            TokenKind::Invalid(msg) => f.write_str(msg),
            TokenKind::Eof => f.write_str("end of input"),
        }
    }
}

/// Whether `s` is a plain name: `[A-Za-z_][A-Za-z0-9_.]*`.
pub(crate) fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(is_word_char)
}

/// A symbol (function name) as the text form writes it: `@name`, or `@"…"` with `\\`, `\"` and
/// `\u{…}` escapes when the name is not a plain name.
pub(crate) fn symbol_text(name: &str) -> String {
    if is_ident(name) {
        return format!("@{name}");
    }
    let mut out = String::from("@\"");
    for c in name.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// Cuts `src` into tokens. The result always ends with [`TokenKind::Eof`] or
/// [`TokenKind::Invalid`].
pub(crate) fn lex(src: &str) -> Vec<Token> {
    let mut lexer = Lexer {
        chars: src.chars().collect(),
        at: 0,
        pos: Pos { line: 1, col: 1 },
    };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_blanks();
        let pos = lexer.pos;
        let kind = lexer.token();
        let last = matches!(kind, TokenKind::Eof | TokenKind::Invalid(_));
        tokens.push(Token { kind, pos });
        if last {
            return tokens;
        }
    }
}

struct Lexer {
    chars: Vec<char>,
    at: usize,
    pos: Pos,
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        if c == '\n' {
            self.pos.line += 1;
            self.pos.col = 1;
        } else {
            self.pos.col += 1;
        }
        Some(c)
    }

    /// Skips whitespace and `//` comments.
    fn skip_blanks(&mut self) {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('/') if self.peek_at(1) == Some('/') => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                _ => return,
            }
        }
    }

    fn token(&mut self) -> TokenKind {
        let Some(c) = self.peek() else {
            return TokenKind::Eof;
        };
        match c {
            '(' | ')' | '{' | '}' | '[' | ']' | '<' | '>' | ',' | ':' | '=' => {
                self.bump();
                TokenKind::Punct(c)
            }
            '-' if self.peek_at(1) == Some('>') => {
                self.bump();
                self.bump();
                TokenKind::Arrow
            }
            '-' if self.peek_at(1).is_some_and(|c| c.is_ascii_alphanumeric()) => self.number(),
            '0'..='9' => self.number(),
            '%' => {
                self.bump();
                self.value()
            }
            '@' => {
                self.bump();
                self.symbol()
            }
            c if c.is_ascii_alphabetic() || c == '_' => TokenKind::Ident(self.word()),
            c => TokenKind::Invalid(format!("unexpected character {c:?}")),
        }
    }

    fn word(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek().filter(|c| is_word_char(*c)) {
            s.push(c);
            self.bump();
        }
        s
    }

    /// A number-like word; a sign right after the exponent marker of a decimal number (`1e-8`)
    /// belongs to it.
    fn number(&mut self) -> TokenKind {
        let mut s = String::new();
        if self.peek() == Some('-') {
            s.push('-');
            self.bump();
        }
        loop {
            match self.peek() {
                Some(c) if is_word_char(c) => s.push(c),
                Some(sign @ ('+' | '-'))
                    if s.ends_with(['e', 'E'])
                        && s.trim_start_matches('-')
                            .trim_end_matches(['e', 'E'])
                            .chars()
                            .all(|c| c.is_ascii_digit() || c == '.')
                        && self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) =>
                {
                    s.push(sign)
                }
                _ => return TokenKind::Number(s),
            }
            self.bump();
        }
    }

    /// After `%`: a name, or digits only (an unnamed value).
    fn value(&mut self) -> TokenKind {
        let s = self.word();
        if s.is_empty() {
            TokenKind::Invalid("expected a value name after '%'".into())
        } else if is_ident(&s) || s.chars().all(|c| c.is_ascii_digit()) {
            TokenKind::Value(s)
        } else {
            TokenKind::Invalid(format!(
                "invalid value name '%{s}': a name starts with a letter or '_', \
                 a number has digits only"
            ))
        }
    }

    /// After `@`: a plain name or a quoted one.
    fn symbol(&mut self) -> TokenKind {
        if self.peek() == Some('"') {
            self.bump();
            return self.quoted();
        }
        let s = self.word();
        if is_ident(&s) {
            TokenKind::Symbol(s)
        } else if s.is_empty() {
            TokenKind::Invalid("expected a name after '@'".into())
        } else {
            TokenKind::Invalid(format!("invalid name '@{s}'"))
        }
    }

    fn quoted(&mut self) -> TokenKind {
        let mut s = String::new();
        loop {
            match self.bump() {
                Some('"') => return TokenKind::Symbol(s),
                Some('\\') => match self.bump() {
                    Some('\\') => s.push('\\'),
                    Some('"') => s.push('"'),
                    Some('u') => match self.unicode_escape() {
                        Some(c) => s.push(c),
                        None => {
                            return TokenKind::Invalid(
                                "invalid escape in quoted name: expected \\u{HEX}".into(),
                            )
                        }
                    },
                    _ => {
                        return TokenKind::Invalid(
                            "invalid escape in quoted name: expected \\\\, \\\" or \\u{HEX}".into(),
                        )
                    }
                },
                Some('\n') | None => {
                    return TokenKind::Invalid("unterminated quoted name".into());
                }
                Some(c) => s.push(c),
            }
        }
    }

    /// After `\u`: `{HEX}`.
    fn unicode_escape(&mut self) -> Option<char> {
        if self.bump()? != '{' {
            return None;
        }
        let mut hex = String::new();
        loop {
            match self.bump()? {
                '}' => break,
                c if c.is_ascii_hexdigit() && hex.len() < 6 => hex.push(c),
                _ => return None,
            }
        }
        char::from_u32(u32::from_str_radix(&hex, 16).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<TokenKind> {
        lex(src).into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn lexer_reads_numbers_shapes_and_exponents() {
        use TokenKind::*;
        assert_eq!(
            kinds("64x16 -1.5e-8 1e+3 -inf 7"),
            vec![
                Number("64x16".into()),
                Number("-1.5e-8".into()),
                Number("1e+3".into()),
                Number("-inf".into()),
                Number("7".into()),
                Eof
            ]
        );
    }

    #[test]
    fn lexer_skips_comments_and_tracks_positions() {
        let toks = lex("// a comment\n  %x -> @\"a b\"");
        assert_eq!(toks[0].kind, TokenKind::Value("x".into()));
        assert_eq!(toks[0].pos, Pos { line: 2, col: 3 });
        assert_eq!(toks[1].kind, TokenKind::Arrow);
        assert_eq!(toks[2].kind, TokenKind::Symbol("a b".into()));
        assert_eq!(toks[2].pos, Pos { line: 2, col: 9 });
    }

    #[test]
    fn symbols_round_trip_through_quoting() {
        for name in ["gemm", "gemm<64, bf16>", "a\"b\\c", "tab\there", "", "1x"] {
            let toks = lex(&symbol_text(name));
            assert_eq!(toks[0].kind, TokenKind::Symbol(name.into()), "{name:?}");
            assert_eq!(toks[1].kind, TokenKind::Eof);
        }
    }

    #[test]
    fn lexer_stops_at_the_first_unreadable_character() {
        let toks = lex("( $ )");
        assert_eq!(toks.len(), 2);
        assert!(matches!(toks[1].kind, TokenKind::Invalid(_)));
        assert_eq!(toks[1].pos, Pos { line: 1, col: 3 });
    }
}
