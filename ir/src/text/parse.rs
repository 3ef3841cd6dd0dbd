//! The parser: a module from its text form.
//!
//! The parser checks syntax and resolves value names; whether ops are well typed is the
//! verifier's question. Every op and function records where its first token stands
//! ([`Loc::Text`]). Value names are scoped lexically: an op sees the values defined before it in
//! its region and in the regions around it (the function's parameters outermost); a name may be
//! defined only once per function.

use std::collections::HashMap;

use super::lex::{lex, Pos, Token, TokenKind};
use crate::module::{Func, FuncKind, Loc, Module, Op, Region, Value, MAX_NESTING};
use crate::ops::*;
use crate::types::{Layout, ScalarType, Swizzle, Type, VecAxis};

/// A parse error at a line and column (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {col}: {message}")]
pub struct ParseError {
    /// The line of the offending token, from 1.
    pub line: u32,
    /// The column of the offending token, from 1, counted in characters.
    pub col: u32,
    /// What was expected and what was found.
    pub message: String,
}

/// Parses a module from the text form.
pub fn parse_module(src: &str) -> Result<Module, ParseError> {
    Parser::new(src).module()
}

type Result<T, E = ParseError> = std::result::Result<T, E>;

/// How deep regions and array types may nest: the IR's one limit, [`MAX_NESTING`], which the
/// verifier applies to regions too. Deeper text is rejected rather than risking the parser's
/// stack.
const MAX_DEPTH: usize = MAX_NESTING;

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Every op kind with placeholder attributes, by name.
    op_kinds: HashMap<String, OpKind>,
    /// Nesting of regions at this point.
    depth: usize,
    /// Nesting of array types in the type being read.
    type_depth: usize,
}

/// An op read up to its operands (see [`Parser::op`]).
struct OpHead {
    start: Pos,
    result_names: Vec<(String, Pos)>,
    name: String,
    kind: OpKind,
    scope: Scope,
    results: Vec<Value>,
    operands: Vec<Value>,
    wrote_operands: bool,
}

/// Name resolution within the function being parsed.
struct FuncScope {
    func: Func,
    /// Every name defined so far in the function, and where.
    defined: HashMap<String, Pos>,
    /// The names visible here.
    visible: HashMap<String, Value>,
    /// The names made visible, in order, so that a region's names can be hidden when it ends.
    visible_log: Vec<String>,
}

impl FuncScope {
    /// Adds a value called `name` (as written after `%`) defined at `pos`; visible at once when
    /// `visible`, otherwise once [`FuncScope::make_visible`] is called.
    fn define(&mut self, name: &str, pos: Pos, ty: Type, visible: bool) -> Result<Value> {
        if let Some(first) = self.defined.get(name) {
            return Err(error(
                pos,
                format!(
                    "redefinition of %{name} (first defined at line {}, column {})",
                    first.line, first.col
                ),
            ));
        }
        self.defined.insert(name.to_string(), pos);
        let stored = (!name.starts_with(|c: char| c.is_ascii_digit())).then(|| name.to_string());
        let v = self.func.new_value(ty, stored);
        if visible {
            self.make_visible(name, v);
        }
        Ok(v)
    }

    fn make_visible(&mut self, name: &str, v: Value) {
        self.visible.insert(name.to_string(), v);
        self.visible_log.push(name.to_string());
    }

    /// Hides every name made visible since the log had `mark` entries.
    fn hide_since(&mut self, mark: usize) {
        for name in self.visible_log.drain(mark..) {
            self.visible.remove(&name);
        }
    }

    fn resolve(&self, name: &str, pos: Pos) -> Result<Value> {
        if let Some(&v) = self.visible.get(name) {
            return Ok(v);
        }
        let message = match self.defined.get(name) {
            Some(def) => format!(
                "use of undefined value %{name}: its definition at line {}, column {} is not \
                 visible here",
                def.line, def.col
            ),
            None => format!("use of undefined value %{name}"),
        };
        Err(error(pos, message))
    }
}

fn error(pos: Pos, message: impl Into<String>) -> ParseError {
    ParseError {
        line: pos.line,
        col: pos.col,
        message: message.into(),
    }
}

fn loc(pos: Pos) -> Loc {
    Loc::Text {
        line: pos.line,
        col: pos.col,
    }
}

impl Parser {
    fn new(src: &str) -> Parser {
        Parser {
            tokens: lex(src),
            at: 0,
            op_kinds: all_op_kinds().into_iter().map(|k| (k.name(), k)).collect(),
            depth: 0,
            type_depth: 0,
        }
    }

    // ---- tokens -------------------------------------------------------------------------------

    fn peek(&self) -> &Token {
        // `lex` always returns at least the final Eof/Invalid token, and `bump` never moves past it.
        &self.tokens[self.at.min(self.tokens.len() - 1)]
    }

    fn pos(&self) -> Pos {
        self.peek().pos
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.at + 1 < self.tokens.len() {
            self.at += 1;
        }
        t
    }

    fn at_punct(&self, c: char) -> bool {
        self.peek().kind == TokenKind::Punct(c)
    }

    /// Consumes `c` if it is next.
    fn eat_punct(&mut self, c: char) -> bool {
        let found = self.at_punct(c);
        if found {
            self.bump();
        }
        found
    }

    /// The error for an unexpected next token: "expected {expected}, found …", or the lexer's
    /// message when the next token is unreadable text.
    fn unexpected(&self, expected: &str) -> ParseError {
        let t = self.peek();
        match &t.kind {
            TokenKind::Invalid(msg) => error(t.pos, msg.clone()),
            found => error(t.pos, format!("expected {expected}, found {found}")),
        }
    }

    fn expect_punct(&mut self, c: char) -> Result<Pos> {
        let pos = self.pos();
        if self.eat_punct(c) {
            Ok(pos)
        } else {
            Err(self.unexpected(&format!("'{c}'")))
        }
    }

    fn expect_ident(&mut self, what: &str) -> Result<(String, Pos)> {
        match self.peek().kind.clone() {
            TokenKind::Ident(s) => Ok((s, self.bump().pos)),
            _ => Err(self.unexpected(what)),
        }
    }

    /// The keyword `word`.
    fn expect_word(&mut self, word: &str) -> Result<()> {
        match &self.peek().kind {
            TokenKind::Ident(s) if s == word => {
                self.bump();
                Ok(())
            }
            _ => Err(self.unexpected(&format!("'{word}'"))),
        }
    }

    fn expect_value(&mut self, what: &str) -> Result<(String, Pos)> {
        match self.peek().kind.clone() {
            TokenKind::Value(s) => Ok((s, self.bump().pos)),
            _ => Err(self.unexpected(what)),
        }
    }

    fn expect_symbol(&mut self, what: &str) -> Result<(String, Pos)> {
        match self.peek().kind.clone() {
            TokenKind::Symbol(s) => Ok((s, self.bump().pos)),
            _ => Err(self.unexpected(what)),
        }
    }

    /// An unsigned 32-bit integer, described as `what` in errors.
    fn expect_u32(&mut self, what: &str) -> Result<u32> {
        let t = self.peek().clone();
        match &t.kind {
            TokenKind::Number(s) => {
                let n = s.parse::<u32>().map_err(|_| {
                    error(
                        t.pos,
                        format!("expected {what} (an unsigned 32-bit integer), found '{s}'"),
                    )
                })?;
                self.bump();
                Ok(n)
            }
            _ => Err(self.unexpected(what)),
        }
    }

    /// Enters one level of region nesting.
    fn enter(&mut self) -> Result<()> {
        if self.depth >= MAX_DEPTH {
            return Err(self.too_deep());
        }
        self.depth += 1;
        Ok(())
    }

    fn too_deep(&self) -> ParseError {
        error(
            self.pos(),
            format!("nesting deeper than {MAX_DEPTH} levels (the limit of Tile IR, MAX_NESTING)"),
        )
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    // ---- functions ----------------------------------------------------------------------------

    fn module(&mut self) -> Result<Module> {
        let mut module = Module::new();
        let mut func_names: HashMap<String, Pos> = HashMap::new();
        loop {
            match &self.peek().kind {
                TokenKind::Eof => return Ok(module),
                TokenKind::Ident(s) if s == "kernel" || s == "func" => {
                    let (func, name_pos) = self.func()?;
                    if let Some(first) = func_names.get(&func.name) {
                        return Err(error(
                            name_pos,
                            format!(
                                "redefinition of function {} (first defined at line {}, \
                                 column {})",
                                super::lex::symbol_text(&func.name),
                                first.line,
                                first.col
                            ),
                        ));
                    }
                    func_names.insert(func.name.clone(), name_pos);
                    module.push(func);
                }
                _ => return Err(self.unexpected("'kernel' or 'func'")),
            }
        }
    }

    /// `kernel @name(params) warps(N) [allow_spills] { … }` or `func @name(params) -> (types)
    /// { … }`; returns
    /// the function and where its name stands.
    fn func(&mut self) -> Result<(Func, Pos)> {
        let (keyword, start) = self.expect_ident("'kernel' or 'func'")?;
        let (name, name_pos) = self.expect_symbol("a function name like '@gemm'")?;
        let mut scope = FuncScope {
            func: Func::new(name, FuncKind::Helper),
            defined: HashMap::new(),
            visible: HashMap::new(),
            visible_log: Vec::new(),
        };
        scope.func.loc = loc(start);
        scope.func.params = self.typed_values(&mut scope, "a parameter like '%x'")?;

        if keyword == "kernel" {
            self.expect_word("warps")?;
            self.expect_punct('(')?;
            let warps = self.expect_u32("the number of warps")?;
            self.expect_punct(')')?;
            scope.func.kind = FuncKind::Kernel { warps };
            if matches!(&self.peek().kind, TokenKind::Ident(w) if w == "allow_spills") {
                self.bump();
                scope.func.allow_spills = true;
            }
        } else {
            if self.peek().kind != TokenKind::Arrow {
                return Err(self.unexpected("'->' and the result types"));
            }
            self.bump();
            scope.func.results = self.type_list_in_parens()?;
        }

        scope.func.body = self.region_body(&mut scope, Vec::new())?;
        Ok((scope.func, name_pos))
    }

    // ---- regions and ops ----------------------------------------------------------------------

    /// `(args) { ops }` or `{ ops }`.
    fn region(&mut self, scope: &mut FuncScope) -> Result<Region> {
        let mark = scope.visible_log.len();
        let args = if self.at_punct('(') {
            self.typed_values(scope, "a region argument like '%i'")?
        } else {
            Vec::new()
        };
        let region = self.region_body(scope, args);
        scope.hide_since(mark);
        region
    }

    /// `(%a: type, …)`, possibly empty: parameters or region arguments, visible from here on.
    fn typed_values(&mut self, scope: &mut FuncScope, what: &str) -> Result<Vec<Value>> {
        self.expect_punct('(')?;
        let mut values = Vec::new();
        if self.eat_punct(')') {
            return Ok(values);
        }
        loop {
            let (name, pos) = self.expect_value(what)?;
            self.expect_punct(':')?;
            let ty = self.ty()?;
            values.push(scope.define(&name, pos, ty, true)?);
            if !self.eat_punct(',') {
                break;
            }
        }
        if !self.eat_punct(')') {
            return Err(self.unexpected("',' or ')'"));
        }
        Ok(values)
    }

    /// `{ ops }`, with `args` already defined.
    fn region_body(&mut self, scope: &mut FuncScope, args: Vec<Value>) -> Result<Region> {
        self.enter()?;
        let mark = scope.visible_log.len();
        self.expect_punct('{')?;
        let mut region = Region {
            args,
            ops: Vec::new(),
        };
        while !self.eat_punct('}') {
            region.ops.push(self.op(scope)?);
        }
        scope.hide_since(mark);
        self.leave();
        Ok(region)
    }

    /// `[%r, … =] name[attr] [@scope] (operands) regions… [: types]`.
    ///
    /// Regions recurse through here, so this frame holds only what the regions need; the head
    /// and the tail of the op are read by functions of their own, which keeps the stack each
    /// level of nesting takes small (see [`MAX_NESTING`]).
    fn op(&mut self, scope: &mut FuncScope) -> Result<Op> {
        let head = self.op_head(scope)?;
        let mut regions = Vec::new();
        while self.at_punct('(') || self.at_punct('{') {
            regions.push(self.region(scope)?);
        }
        self.op_tail(scope, head, regions)
    }

    /// An op up to its operands: `[%r, … =] name[attr] [@scope] (operands)`.
    #[inline(never)]
    fn op_head(&mut self, scope: &mut FuncScope) -> Result<OpHead> {
        let start = self.pos();
        let mut result_names = Vec::new();
        if matches!(self.peek().kind, TokenKind::Value(_)) {
            loop {
                result_names.push(self.expect_value("a result name like '%x'")?);
                if !self.eat_punct(',') {
                    break;
                }
            }
            if !self.eat_punct('=') {
                return Err(self.unexpected("',' or '='"));
            }
        }

        let (name, name_pos) = self.expect_ident(if result_names.is_empty() {
            "an op or '}'"
        } else {
            "an op name"
        })?;
        let Some(proto) = self.op_kinds.get(&name).cloned() else {
            return Err(error(name_pos, format!("unknown op '{name}'")));
        };
        let kind = self.attribute(proto, &name)?;
        let op_scope = self.scope()?;

        // Results are named now (so that a region cannot reuse their names) but visible only
        // after the op; their types are filled in once read.
        let mut results = Vec::with_capacity(result_names.len());
        for (r, pos) in &result_names {
            results.push(scope.define(r, *pos, Type::Semaphore, false)?);
        }

        // An op without operands may leave out its `()`: `%0 = warp_idx : i32`.
        let mut operands = Vec::new();
        let wrote_operands = self.eat_punct('(');
        if wrote_operands && !self.eat_punct(')') {
            loop {
                let (v, pos) = self.expect_value("an operand like '%x'")?;
                operands.push(scope.resolve(&v, pos)?);
                if !self.eat_punct(',') {
                    break;
                }
            }
            if !self.eat_punct(')') {
                return Err(self.unexpected("',' or ')'"));
            }
        }
        Ok(OpHead {
            start,
            result_names,
            name,
            kind,
            scope: op_scope,
            results,
            operands,
            wrote_operands,
        })
    }

    /// The rest of an op after its regions: `[: types]`.
    #[inline(never)]
    fn op_tail(&mut self, scope: &mut FuncScope, head: OpHead, regions: Vec<Region>) -> Result<Op> {
        let OpHead {
            start,
            result_names,
            name,
            kind,
            scope: op_scope,
            results,
            operands,
            wrote_operands,
        } = head;
        let colon = self.pos();
        let types = if self.eat_punct(':') {
            self.type_list()?
        } else if results.is_empty() {
            Vec::new()
        } else if wrote_operands || !regions.is_empty() {
            return Err(self.unexpected("':' and the result types"));
        } else {
            return Err(self.unexpected("'(' or ':'"));
        };
        if types.len() != results.len() {
            return Err(error(
                colon,
                format!(
                    "'{name}' defines {} but has {}",
                    count(results.len(), "value"),
                    count(types.len(), "result type")
                ),
            ));
        }
        for ((r, _), (&v, ty)) in result_names.iter().zip(results.iter().zip(types)) {
            scope.func.value_types[v.index()] = ty;
            scope.make_visible(r, v);
        }

        Ok(Op {
            kind,
            scope: op_scope,
            operands,
            results,
            regions,
            loc: loc(start),
        })
    }

    /// The op's attribute in `[...]`, written into `proto`, when the op has one.
    fn attribute(&mut self, proto: OpKind, name: &str) -> Result<OpKind> {
        let shape = attr_shape(&proto);
        if !self.at_punct('[') {
            return match shape {
                AttrShape::None => Ok(proto),
                _ => Err(self.unexpected(&format!("'[' and the attribute of '{name}'"))),
            };
        }
        let open = self.bump().pos;
        let t = self.peek().clone();
        let bad = |expected: &str| {
            if let TokenKind::Invalid(msg) = &t.kind {
                return error(t.pos, msg.clone());
            }
            error(
                t.pos,
                format!(
                    "bad attribute of '{name}': expected {expected}, found {}",
                    t.kind
                ),
            )
        };
        let kind = match (shape, &t.kind) {
            (AttrShape::None, _) => {
                return Err(error(open, format!("'{name}' takes no attribute")));
            }
            (AttrShape::Const, TokenKind::Ident(s)) if s == "true" || s == "false" => {
                OpKind::Const(Const::Bool(s == "true"))
            }
            (AttrShape::Const, TokenKind::Ident(_) | TokenKind::Number(_)) => {
                let c = parse_const(token_text(&t.kind))
                    .ok_or_else(|| bad("a number, 'true' or 'false'"))?;
                OpKind::Const(c)
            }
            (AttrShape::Const, _) => return Err(bad("a number, 'true' or 'false'")),
            (AttrShape::F64, TokenKind::Ident(_) | TokenKind::Number(_)) => {
                let x = parse_float(token_text(&t.kind)).ok_or_else(|| bad("a number"))?;
                match proto {
                    OpKind::Mask(k, _) => OpKind::Mask(k, x),
                    _ => OpKind::Fill(x),
                }
            }
            (AttrShape::F64, _) => return Err(bad("a number")),
            (AttrShape::U32, TokenKind::Number(s)) => {
                let n = s
                    .parse::<u32>()
                    .map_err(|_| bad("an unsigned 32-bit integer"))?;
                match proto {
                    OpKind::SemInit(_) => OpKind::SemInit(n),
                    OpKind::SemExpect(_) => OpKind::SemExpect(n),
                    OpKind::CopyWait(_) => OpKind::CopyWait(n),
                    OpKind::MmaWait(_) => OpKind::MmaWait(n),
                    OpKind::TopkRow(_) => OpKind::TopkRow(n),
                    OpKind::SetMaxNReg { inc, .. } => OpKind::SetMaxNReg { inc, count: n },
                    _ => OpKind::GlobalDim(n),
                }
            }
            (AttrShape::U32, _) => return Err(bad("an unsigned 32-bit integer")),
            (AttrShape::Symbol, TokenKind::Symbol(f)) => match proto {
                OpKind::DeviceAssert(_) => OpKind::DeviceAssert(f.clone()),
                _ => OpKind::Call(f.clone()),
            },
            (AttrShape::Symbol, _) => match proto {
                OpKind::DeviceAssert(_) => return Err(bad("a message like '@\"x > 0\"'")),
                _ => return Err(bad("a function name like '@f'")),
            },
        };
        self.bump();
        self.expect_punct(']')?;
        Ok(kind)
    }

    /// `@warp`, `@warpgroup` or `@block`; warp when none is written.
    fn scope(&mut self) -> Result<Scope> {
        let t = self.peek().clone();
        let TokenKind::Symbol(s) = &t.kind else {
            return Ok(Scope::Warp);
        };
        let scope = Scope::from_name(s).ok_or_else(|| {
            error(
                t.pos,
                format!(
                    "unknown scope {}, expected '@warp', '@warpgroup' or '@block'",
                    t.kind
                ),
            )
        })?;
        self.bump();
        Ok(scope)
    }

    // ---- types --------------------------------------------------------------------------------

    /// One or more types separated by commas.
    fn type_list(&mut self) -> Result<Vec<Type>> {
        let mut types = vec![self.ty()?];
        while self.eat_punct(',') {
            types.push(self.ty()?);
        }
        Ok(types)
    }

    /// `(types)`, possibly empty.
    fn type_list_in_parens(&mut self) -> Result<Vec<Type>> {
        self.expect_punct('(')?;
        if self.eat_punct(')') {
            return Ok(Vec::new());
        }
        let types = self.type_list()?;
        if !self.eat_punct(')') {
            return Err(self.unexpected("',' or ')'"));
        }
        Ok(types)
    }

    /// A type. Array types nest with a count of their own, so that a type written in a region
    /// at the deepest level of nesting parses.
    fn ty(&mut self) -> Result<Type> {
        if self.type_depth >= MAX_DEPTH {
            return Err(self.too_deep());
        }
        self.type_depth += 1;
        let ty = self.ty_inner();
        self.type_depth -= 1;
        ty
    }

    fn ty_inner(&mut self) -> Result<Type> {
        if self.eat_punct('[') {
            let len = self.expect_u32("the length of a shared array")?;
            self.expect_word("x")?;
            let elem = self.ty()?;
            self.expect_punct(']')?;
            return Ok(Type::shared_array(elem, len));
        }
        let (name, pos) = self.expect_ident("a type")?;
        if let Some(d) = ScalarType::from_name(&name) {
            return Ok(Type::Scalar(d));
        }
        let ty = match name.as_str() {
            "sem" => return Ok(Type::Semaphore),
            "rt" => {
                self.expect_punct('<')?;
                let dtype = self.dtype()?;
                self.expect_punct(',')?;
                let (rows, cols) = self.shape()?;
                self.expect_punct(',')?;
                let layout =
                    self.choice("layout", &[("row", Layout::Row), ("col", Layout::Col)])?;
                Type::tile(dtype, rows, cols, layout)
            }
            "rv" => {
                self.expect_punct('<')?;
                let dtype = self.dtype()?;
                self.expect_punct(',')?;
                let len = self.expect_u32("the vector length")?;
                self.expect_punct(',')?;
                let axis = self.choice(
                    "vector axis",
                    &[("rows", VecAxis::Rows), ("cols", VecAxis::Cols)],
                )?;
                Type::vector(dtype, len, axis)
            }
            "st" => {
                self.expect_punct('<')?;
                let dtype = self.dtype()?;
                self.expect_punct(',')?;
                let (rows, cols) = self.shape()?;
                self.expect_punct(',')?;
                let swizzle = self.choice(
                    "swizzle",
                    &[Swizzle::None, Swizzle::B32, Swizzle::B64, Swizzle::B128]
                        .map(|s| (s.name(), s)),
                )?;
                Type::shared_tile(dtype, rows, cols, swizzle)
            }
            "sv" => {
                self.expect_punct('<')?;
                let dtype = self.dtype()?;
                self.expect_punct(',')?;
                let len = self.expect_u32("the vector length")?;
                Type::shared_vector(dtype, len)
            }
            "gl" => {
                self.expect_punct('<')?;
                let dtype = self.dtype()?;
                self.expect_punct(',')?;
                let rank = self.expect_u32("the rank")?;
                let mutable = self.eat_punct(',');
                if mutable {
                    self.expect_word("mut")?;
                }
                if !self.at_punct('>') {
                    return Err(self.unexpected(if mutable { "'>'" } else { "',' or '>'" }));
                }
                Type::global(dtype, rank, mutable)
            }
            _ => return Err(error(pos, format!("unknown type '{name}'"))),
        };
        self.expect_punct('>')?;
        Ok(ty)
    }

    fn dtype(&mut self) -> Result<ScalarType> {
        let (name, pos) = self.expect_ident("an element type")?;
        ScalarType::from_name(&name)
            .ok_or_else(|| error(pos, format!("unknown element type '{name}'")))
    }

    /// A tile shape `ROWSxCOLS`.
    fn shape(&mut self) -> Result<(u32, u32)> {
        let t = self.peek().clone();
        let TokenKind::Number(s) = &t.kind else {
            return Err(self.unexpected("a tile shape like '64x16'"));
        };
        let parsed = s
            .split_once('x')
            .and_then(|(r, c)| Some((r.parse::<u32>().ok()?, c.parse::<u32>().ok()?)));
        let Some(shape) = parsed else {
            return Err(error(
                t.pos,
                format!("malformed tile shape '{s}', expected ROWSxCOLS like '64x16'"),
            ));
        };
        self.bump();
        Ok(shape)
    }

    /// One of the words of `options`, which name a `noun`.
    fn choice<T: Copy>(&mut self, noun: &str, options: &[(&str, T)]) -> Result<T> {
        let (word, pos) = self.expect_ident(&format!("a {noun}"))?;
        options
            .iter()
            .find(|(w, _)| *w == word)
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                let words: Vec<&str> = options.iter().map(|(w, _)| *w).collect();
                error(
                    pos,
                    format!("unknown {noun} '{word}', expected {}", one_of(&words)),
                )
            })
    }
}

/// `'a', 'b' or 'c'`.
fn one_of(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn token_text(kind: &TokenKind) -> &str {
    match kind {
        TokenKind::Ident(s) | TokenKind::Number(s) => s,
        _ => "",
    }
}

/// A float as `{:?}` prints it (`1.5`, `-0.0`, `1e-8`, `inf`, `-inf`, `NaN`); integers are
/// accepted too.
fn parse_float(text: &str) -> Option<f64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let word = matches!(digits, "inf" | "NaN");
    let numeric = digits.starts_with(|c: char| c.is_ascii_digit());
    if word || numeric {
        text.parse().ok()
    } else {
        None
    }
}

/// A `const` value: a float when it has a '.', an exponent, `inf` or `NaN`, else an integer.
fn parse_const(text: &str) -> Option<Const> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let is_float = digits.contains(['.', 'e', 'E']) || matches!(digits, "inf" | "NaN");
    if is_float {
        parse_float(text).map(Const::Float)
    } else if digits.starts_with(|c: char| c.is_ascii_digit()) {
        text.parse().ok().map(Const::Int)
    } else {
        None
    }
}

/// What an op's attribute is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AttrShape {
    None,
    Const,
    U32,
    F64,
    Symbol,
}

/// The attribute an op kind carries. Every kind is listed, so that a new one has to be placed
/// here; add it to [`all_op_kinds`] too, and to the module of `tests/text_roundtrip.rs` that
/// exercises every op.
fn attr_shape(k: &OpKind) -> AttrShape {
    match k {
        OpKind::Const(_) => AttrShape::Const,
        OpKind::GlobalDim(_) | OpKind::SemInit(_) | OpKind::SemExpect(_) | OpKind::CopyWait(_) => {
            AttrShape::U32
        }
        OpKind::TopkRow(_) | OpKind::MmaWait(_) | OpKind::SetMaxNReg { .. } => AttrShape::U32,
        OpKind::Fill(_) | OpKind::Mask(..) => AttrShape::F64,
        OpKind::Call(_) | OpKind::DeviceAssert(_) => AttrShape::Symbol,
        OpKind::BlockIdx(_)
        | OpKind::GridDim(_)
        | OpKind::WarpIdx
        | OpKind::WarpgroupIdx
        | OpKind::NumWarps
        | OpKind::Splat
        | OpKind::Iota(_)
        | OpKind::Unary(_)
        | OpKind::Binary(_)
        | OpKind::Cmp(_)
        | OpKind::Select
        | OpKind::Convert
        | OpKind::Transpose
        | OpKind::Bitcast
        | OpKind::Bcast(..)
        | OpKind::Reduce(..)
        | OpKind::Scan { .. }
        | OpKind::SortRow { .. }
        | OpKind::Mma(_)
        | OpKind::MmaAsync(_)
        | OpKind::MmaCommit
        | OpKind::AllocShared
        | OpKind::SharedIndex
        | OpKind::Load
        | OpKind::Store
        | OpKind::Copy
        | OpKind::CopyAsync
        | OpKind::CopyStart
        | OpKind::CopyCommit
        | OpKind::GatherRows
        | OpKind::Gather
        | OpKind::TableView
        | OpKind::ScatterRows { .. }
        | OpKind::AtomicAdd
        | OpKind::AtomicRmw(_)
        | OpKind::AtomicCas
        | OpKind::Philox
        | OpKind::Barrier
        | OpKind::SemArrive
        | OpKind::SemWait
        | OpKind::For
        | OpKind::If
        | OpKind::While
        | OpKind::Yield
        | OpKind::Condition
        | OpKind::Return => AttrShape::None,
    }
}

/// Every op kind, once per name, with placeholder attributes.
fn all_op_kinds() -> Vec<OpKind> {
    let mut kinds = vec![
        OpKind::Const(Const::Int(0)),
        OpKind::WarpIdx,
        OpKind::WarpgroupIdx,
        OpKind::NumWarps,
        OpKind::GlobalDim(0),
        OpKind::Fill(0.0),
        OpKind::Splat,
        OpKind::Iota(BcastAxis::Row),
        OpKind::Iota(BcastAxis::Col),
        OpKind::Select,
        OpKind::Convert,
        OpKind::Transpose,
        OpKind::Bitcast,
        OpKind::AllocShared,
        OpKind::SharedIndex,
        OpKind::Load,
        OpKind::Store,
        OpKind::Copy,
        OpKind::CopyAsync,
        OpKind::CopyStart,
        OpKind::CopyCommit,
        OpKind::CopyWait(0),
        OpKind::GatherRows,
        OpKind::Gather,
        OpKind::TableView,
        OpKind::ScatterRows { add: false },
        OpKind::ScatterRows { add: true },
        OpKind::AtomicAdd,
        OpKind::AtomicCas,
        OpKind::Philox,
        OpKind::DeviceAssert(String::new()),
        OpKind::Barrier,
        OpKind::SemInit(0),
        OpKind::SemArrive,
        OpKind::SemExpect(0),
        OpKind::SemWait,
        OpKind::For,
        OpKind::If,
        OpKind::While,
        OpKind::Yield,
        OpKind::Condition,
        OpKind::Return,
        OpKind::Call(String::new()),
        OpKind::SortRow { descending: true },
        OpKind::SortRow { descending: false },
        OpKind::TopkRow(0),
        OpKind::MmaCommit,
        OpKind::MmaWait(0),
        OpKind::SetMaxNReg {
            inc: true,
            count: 0,
        },
        OpKind::SetMaxNReg {
            inc: false,
            count: 0,
        },
    ];
    for d in [Dim3::X, Dim3::Y, Dim3::Z] {
        kinds.push(OpKind::BlockIdx(d));
        kinds.push(OpKind::GridDim(d));
    }
    kinds.extend(UnaryFn::ALL.map(OpKind::Unary));
    kinds.extend(BinaryFn::ALL.map(OpKind::Binary));
    kinds.extend(CmpPred::ALL.map(OpKind::Cmp));
    for f in BinaryFn::ALL {
        kinds.push(OpKind::Bcast(BcastAxis::Row, f));
        kinds.push(OpKind::Bcast(BcastAxis::Col, f));
    }
    for axis in [ReduceAxis::Row, ReduceAxis::Col, ReduceAxis::All] {
        kinds.extend(ReduceFn::ALL.map(|f| OpKind::Reduce(axis, f)));
    }
    for axis in [BcastAxis::Row, BcastAxis::Col] {
        for exclusive in [false, true] {
            kinds.extend(ReduceFn::ALL.map(|f| OpKind::Scan { axis, f, exclusive }));
        }
    }
    kinds.extend(MaskKind::ALL.map(|k| OpKind::Mask(k, 0.0)));
    kinds.extend(MmaVariant::ALL.map(OpKind::Mma));
    kinds.extend(MmaVariant::ALL.map(OpKind::MmaAsync));
    kinds.extend(AtomicFn::ALL.map(OpKind::AtomicRmw));
    kinds
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn op_names_are_distinct() {
        let kinds = all_op_kinds();
        let names: HashSet<String> = kinds.iter().map(OpKind::name).collect();
        assert_eq!(names.len(), kinds.len());
    }

    #[test]
    fn floats_parse_back_from_debug_text() {
        for x in [
            0.0,
            -0.0,
            1.5,
            -2.0,
            1e-8,
            1e300,
            f64::MAX,
            f64::MIN_POSITIVE,
        ] {
            assert_eq!(parse_float(&format!("{x:?}")), Some(x));
            assert_eq!(parse_const(&format!("{x:?}")), Some(Const::Float(x)));
        }
        assert_eq!(parse_float("-inf"), Some(f64::NEG_INFINITY));
        assert!(parse_float("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_const("-7"), Some(Const::Int(-7)));
        assert_eq!(parse_const("infinity"), None);
        assert_eq!(parse_const("1x"), None);
    }
}
