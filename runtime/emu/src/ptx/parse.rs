//! PTX text → [`Module`]. Errors name the line; no input makes it panic.

use std::collections::HashMap;

use super::ast::*;
use super::lexer::{lex, Tok, Token};
use crate::error::{EmuError, EmuResult};

/// Deepest nesting of `{ ... }` vector operands accepted.
const MAX_VECTOR_DEPTH: u32 = 4;

/// Parses a whole PTX module.
pub fn parse(text: &str) -> EmuResult<Module> {
    let toks = lex(text)?;
    let mut p = Parser { toks, pos: 0 };
    p.module()
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
}

fn err(line: u32, message: impl Into<String>) -> EmuError {
    EmuError::Parse {
        line,
        message: message.into(),
    }
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "end of text".into(),
        Some(Tok::Ident(s)) => format!("`{s}`"),
        Some(Tok::Int(v)) => format!("`{v}`"),
        Some(Tok::F32(v)) => format!("`0f{v:08X}`"),
        Some(Tok::F64Bits(v)) => format!("`0d{v:016X}`"),
        Some(Tok::Float(_, s)) => format!("`{s}`"),
        Some(Tok::Str(s)) => format!("\"{s}\""),
        Some(Tok::Punct(c)) => format!("`{c}`"),
    }
}

/// Register and label scopes of one function body (`{ ... }` blocks open new ones).
struct Scopes {
    parent: Vec<Option<usize>>,
    regs: Vec<HashMap<String, RegId>>,
    labels: Vec<HashMap<String, usize>>,
    stack: Vec<usize>,
}

impl Scopes {
    fn new() -> Scopes {
        Scopes {
            parent: vec![None],
            regs: vec![HashMap::new()],
            labels: vec![HashMap::new()],
            stack: vec![0],
        }
    }
    fn current(&self) -> usize {
        self.stack.last().copied().unwrap_or(0)
    }
    fn push(&mut self) {
        let id = self.parent.len();
        self.parent.push(Some(self.current()));
        self.regs.push(HashMap::new());
        self.labels.push(HashMap::new());
        self.stack.push(id);
    }
    fn reg(&self, name: &str) -> Option<RegId> {
        let mut s = Some(self.current());
        while let Some(id) = s {
            if let Some(r) = self.regs[id].get(name) {
                return Some(*r);
            }
            s = self.parent[id];
        }
        None
    }
    fn label(&self, from: usize, name: &str) -> Option<usize> {
        let mut s = Some(from);
        while let Some(id) = s {
            if let Some(r) = self.labels[id].get(name) {
                return Some(*r);
            }
            s = self.parent[id];
        }
        None
    }
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }
    fn peek_at(&self, k: usize) -> Option<&Tok> {
        self.toks.get(self.pos + k).map(|t| &t.tok)
    }
    fn line(&self) -> u32 {
        self.toks
            .get(self.pos)
            .or_else(|| self.toks.last())
            .map_or(1, |t| t.line)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.tok.clone());
        if t.is_some() {
            self.pos += 1;
        }
        t
    }
    fn is_punct(&self, c: char) -> bool {
        self.peek() == Some(&Tok::Punct(c))
    }
    fn eat_punct(&mut self, c: char) -> bool {
        if self.is_punct(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect_punct(&mut self, c: char) -> EmuResult<()> {
        if self.eat_punct(c) {
            Ok(())
        } else {
            Err(err(
                self.line(),
                format!("expected `{c}`, found {}", describe(self.peek())),
            ))
        }
    }
    fn is_ident(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(x)) if x == s)
    }
    fn ident(&mut self, what: &str) -> EmuResult<String> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            t => Err(err(
                self.line(),
                format!("expected {what}, found {}", describe(t)),
            )),
        }
    }
    fn int(&mut self, what: &str) -> EmuResult<u64> {
        match self.peek() {
            Some(Tok::Int(v)) => {
                let v = *v;
                self.pos += 1;
                Ok(v)
            }
            t => Err(err(
                self.line(),
                format!("expected {what} (an integer), found {}", describe(t)),
            )),
        }
    }
    /// Skips to just after the next `;` at this nesting level.
    fn skip_statement(&mut self) {
        while let Some(t) = self.next() {
            if t == Tok::Punct(';') {
                return;
            }
        }
    }
    /// Skips a balanced `{ ... }` (debug sections).
    fn skip_braces(&mut self) -> EmuResult<()> {
        let line = self.line();
        self.expect_punct('{')?;
        let mut depth = 1u32;
        while depth > 0 {
            match self.next() {
                Some(Tok::Punct('{')) => depth += 1,
                Some(Tok::Punct('}')) => depth -= 1,
                Some(_) => {}
                None => return Err(err(line, "unterminated `{` block")),
            }
        }
        Ok(())
    }

    fn module(&mut self) -> EmuResult<Module> {
        let mut m = Module {
            address_size: 64,
            ..Module::default()
        };
        while let Some(t) = self.peek().cloned() {
            let line = self.line();
            let Tok::Ident(word) = t else {
                return Err(err(
                    line,
                    format!("expected a directive, found {}", describe(Some(&t))),
                ));
            };
            match word.as_str() {
                ".version" => {
                    self.pos += 1;
                    m.version = Some(match self.next() {
                        Some(Tok::Float(_, s)) => s,
                        Some(Tok::Int(v)) => v.to_string(),
                        t => {
                            return Err(err(
                                line,
                                format!(
                                    "expected a version number, found {}",
                                    describe(t.as_ref())
                                ),
                            ))
                        }
                    });
                }
                ".target" => {
                    self.pos += 1;
                    let mut targets = vec![self.ident("a target name")?];
                    while self.eat_punct(',') {
                        targets.push(self.ident("a target name")?);
                    }
                    m.target = targets.into_iter().next();
                }
                ".address_size" => {
                    self.pos += 1;
                    let v = self.int("an address size")?;
                    if v != 32 && v != 64 {
                        return Err(err(line, format!("address size {v}, expected 32 or 64")));
                    }
                    m.address_size = v as u32;
                }
                ".file" | ".loc" | ".pragma" => self.skip_statement(),
                ".section" => {
                    self.pos += 1;
                    let _ = self.ident("a section name")?;
                    self.skip_braces()?;
                }
                _ => {
                    // Linkage and declarations: [.visible|.extern|.weak] (.entry|.func|var decl)
                    let mut extern_ = false;
                    while let Some(Tok::Ident(w)) = self.peek() {
                        match w.as_str() {
                            ".visible" | ".weak" | ".common" => self.pos += 1,
                            ".extern" => {
                                extern_ = true;
                                self.pos += 1
                            }
                            _ => break,
                        }
                    }
                    match self.peek() {
                        Some(Tok::Ident(w)) if w == ".entry" || w == ".func" => {
                            if let Some(f) = self.function()? {
                                if m.functions.iter().any(|g| g.name == f.name) {
                                    return Err(err(
                                        f.line,
                                        format!("function `{}` defined twice", f.name),
                                    ));
                                }
                                m.functions.push(f);
                            }
                        }
                        Some(Tok::Ident(w))
                            if w == ".global" || w == ".const" || w == ".shared" =>
                        {
                            let v = self.var_decl(extern_)?;
                            m.globals.extend(v);
                        }
                        t => {
                            return Err(err(
                                self.line(),
                                format!(
                                    "expected .entry, .func or a variable declaration, found {}",
                                    describe(t)
                                ),
                            ))
                        }
                    }
                }
            }
        }
        Ok(m)
    }

    /// `.shared .align 16 .b8 name[1024] [= {...}];` (also `.global`, `.const`, `.local`).
    /// Returns one declaration per name in a comma list.
    fn var_decl(&mut self, extern_: bool) -> EmuResult<Vec<VarDecl>> {
        let line = self.line();
        let space_word = self.ident("a state space")?;
        let space = Space::from_mod(space_word.trim_start_matches('.'))
            .ok_or_else(|| err(line, format!("unknown state space `{space_word}`")))?;
        let mut align = 0u32;
        let mut elem: Option<Ty> = None;
        let mut vec_n = 1u32;
        loop {
            match self.peek() {
                Some(Tok::Ident(w)) if w == ".align" => {
                    self.pos += 1;
                    let a = self.int("an alignment")?;
                    if a == 0 || !a.is_power_of_two() || a > 1 << 16 {
                        return Err(err(line, format!("alignment {a} is not a power of two")));
                    }
                    align = a as u32;
                }
                Some(Tok::Ident(w)) if w == ".v2" || w == ".v4" || w == ".v8" => {
                    vec_n = w[2..].parse().unwrap_or(1);
                    self.pos += 1;
                }
                Some(Tok::Ident(w)) if w.starts_with('.') => {
                    let ty = Ty::from_name(&w[1..])
                        .ok_or_else(|| err(line, format!("unknown type `{w}` in declaration")))?;
                    elem = Some(ty);
                    self.pos += 1;
                }
                _ => break,
            }
        }
        let elem = elem.ok_or_else(|| err(line, "declaration without a type"))?;
        let esize = u64::from(elem.bytes()) * u64::from(vec_n);
        if align == 0 {
            align = esize.min(16) as u32;
        }
        let mut out = Vec::new();
        loop {
            let name = self.ident("a variable name")?;
            let mut count: Option<u64> = Some(1);
            let mut dims = 0;
            while self.eat_punct('[') {
                dims += 1;
                if self.eat_punct(']') {
                    count = None;
                } else {
                    let n = self.int("an array size")?;
                    self.expect_punct(']')?;
                    count = count.and_then(|c| c.checked_mul(n));
                    if count.is_none() && dims > 0 {
                        return Err(err(line, format!("array `{name}` is too large")));
                    }
                }
            }
            let size = match count {
                Some(c) => Some(
                    c.checked_mul(esize)
                        .filter(|s| *s <= 1 << 40)
                        .ok_or_else(|| err(line, format!("array `{name}` is too large")))?,
                ),
                None if extern_ && space == Space::Shared => None,
                None => {
                    return Err(err(
                        line,
                        format!("array `{name}` without a size (only .extern .shared may be)"),
                    ))
                }
            };
            let mut init = Vec::new();
            if self.eat_punct('=') {
                init = self.initializer(elem, line)?;
            }
            if let Some(s) = size {
                if init.len() as u64 > s {
                    return Err(err(
                        line,
                        format!("initializer of `{name}` is larger than it"),
                    ));
                }
            }
            out.push(VarDecl {
                name,
                space,
                align,
                size,
                init,
                line,
            });
            if !self.eat_punct(',') {
                break;
            }
        }
        self.expect_punct(';')?;
        Ok(out)
    }

    fn initializer(&mut self, elem: Ty, line: u32) -> EmuResult<Vec<u8>> {
        let mut bytes = Vec::new();
        let braced = self.eat_punct('{');
        loop {
            let neg = self.eat_punct('-');
            let v: u64 = match self.next() {
                Some(Tok::Int(v)) => {
                    if neg {
                        v.wrapping_neg()
                    } else {
                        v
                    }
                }
                Some(Tok::F32(b)) => u64::from(b),
                Some(Tok::F64Bits(b)) => b,
                Some(Tok::Float(f, _)) => {
                    let f = if neg { -f } else { f };
                    if elem == Ty::F32 {
                        u64::from((f as f32).to_bits())
                    } else {
                        f.to_bits()
                    }
                }
                t => {
                    return Err(err(
                        line,
                        format!(
                            "expected an initializer value, found {}",
                            describe(t.as_ref())
                        ),
                    ))
                }
            };
            bytes.extend_from_slice(&v.to_le_bytes()[..elem.bytes().min(8) as usize]);
            if !braced || !self.eat_punct(',') {
                break;
            }
        }
        if braced {
            self.expect_punct('}')?;
        }
        Ok(bytes)
    }

    /// One parameter: `.param .u64 name`, `.param .align 8 .b8 name[16]`,
    /// `.param .u64 .ptr .global .align 16 name`, or (for `.reg` params of .func) `.reg .b32 x`.
    fn param(&mut self) -> EmuResult<(String, u32, u32)> {
        let line = self.line();
        let kind = self.ident("`.param`")?;
        if kind != ".param" && kind != ".reg" {
            return Err(err(line, format!("expected `.param`, found `{kind}`")));
        }
        let mut align = 0u32;
        let mut ty: Option<Ty> = None;
        loop {
            match self.peek() {
                Some(Tok::Ident(w)) if w == ".align" => {
                    self.pos += 1;
                    let a = self.int("an alignment")?;
                    if a == 0 || !a.is_power_of_two() || a > 1 << 16 {
                        return Err(err(line, format!("alignment {a} is not a power of two")));
                    }
                    align = a as u32;
                }
                Some(Tok::Ident(w)) if w == ".ptr" => self.pos += 1,
                Some(Tok::Ident(w)) if w.starts_with('.') && Space::from_mod(&w[1..]).is_some() => {
                    self.pos += 1
                }
                Some(Tok::Ident(w)) if w.starts_with('.') => {
                    let t = Ty::from_name(&w[1..])
                        .ok_or_else(|| err(line, format!("unknown parameter type `{w}`")))?;
                    ty = Some(t);
                    self.pos += 1;
                }
                _ => break,
            }
        }
        let ty = ty.ok_or_else(|| err(line, "parameter without a type"))?;
        let name = self.ident("a parameter name")?;
        let mut size = u64::from(ty.bytes());
        while self.eat_punct('[') {
            let n = self.int("an array size")?;
            self.expect_punct(']')?;
            size = size
                .checked_mul(n)
                .filter(|s| *s <= 1 << 20)
                .ok_or_else(|| err(line, format!("parameter `{name}` is too large")))?;
        }
        if align == 0 {
            align = ty.bytes().max(1);
        }
        Ok((name, size as u32, align))
    }

    fn param_list(&mut self) -> EmuResult<Vec<Param>> {
        self.expect_punct('(')?;
        let mut params = Vec::new();
        let mut offset = 0u32;
        if !self.eat_punct(')') {
            loop {
                let line = self.line();
                let (name, size, align) = self.param()?;
                offset = offset
                    .checked_next_multiple_of(align)
                    .ok_or_else(|| err(line, "parameter list too large"))?;
                params.push(Param {
                    name,
                    size,
                    align,
                    offset,
                });
                offset = offset
                    .checked_add(size)
                    .ok_or_else(|| err(line, "parameter list too large"))?;
                if self.eat_punct(')') {
                    break;
                }
                self.expect_punct(',')?;
            }
        }
        Ok(params)
    }

    /// `.entry name (params) directives { body }` or `.func [(rets)] name (params) [;|{ body }]`.
    /// Returns `None` for a prototype without a body.
    fn function(&mut self) -> EmuResult<Option<Function>> {
        let line = self.line();
        let kind = self.ident(".entry or .func")?;
        let is_entry = kind == ".entry";
        let mut rets = Vec::new();
        if !is_entry && self.is_punct('(') {
            rets = self.param_list()?;
        }
        let name = self.ident("a function name")?;
        let params = if self.is_punct('(') {
            self.param_list()?
        } else {
            Vec::new()
        };
        let mut maxntid = None;
        // Performance-tuning directives before the body.
        loop {
            match self.peek() {
                Some(Tok::Ident(w)) if w == ".maxntid" || w == ".reqntid" => {
                    self.pos += 1;
                    let mut dims = [1u32; 3];
                    for (k, d) in dims.iter_mut().enumerate() {
                        if k > 0 && !self.eat_punct(',') {
                            break;
                        }
                        *d = u32::try_from(self.int("a thread count")?)
                            .map_err(|_| err(line, "thread count too large"))?;
                    }
                    maxntid = Some(dims);
                }
                Some(Tok::Ident(w))
                    if matches!(
                        w.as_str(),
                        ".minnctapersm"
                            | ".maxnctapersm"
                            | ".maxnreg"
                            | ".reqnctapercluster"
                            | ".maxclusterrank"
                            | ".explicitcluster"
                            | ".noreturn"
                            | ".blocksareclusters"
                    ) =>
                {
                    self.pos += 1;
                    while matches!(self.peek(), Some(Tok::Int(_)) | Some(Tok::Punct(','))) {
                        self.pos += 1;
                    }
                }
                Some(Tok::Ident(w)) if w == ".pragma" => self.skip_statement(),
                _ => break,
            }
        }
        if self.eat_punct(';') {
            return Ok(None);
        }
        let mut f = Function {
            name,
            is_entry,
            params,
            rets,
            regs: Vec::new(),
            shared: Vec::new(),
            locals: Vec::new(),
            body: Vec::new(),
            line,
            maxntid,
            labels: Vec::new(),
        };
        // .func return/param names are addressable registers-or-params inside the body; they
        // are param-space symbols, resolved by name at run time.
        self.body(&mut f)?;
        Ok(Some(f))
    }

    fn declare_reg(
        &mut self,
        f: &mut Function,
        scopes: &mut Scopes,
        name: String,
        ty: Ty,
        line: u32,
    ) -> EmuResult<()> {
        if f.regs.len() >= 1 << 22 {
            return Err(err(line, "too many registers declared"));
        }
        let id = RegId(f.regs.len() as u32);
        let cur = scopes.current();
        if scopes.regs[cur].insert(name.clone(), id).is_some() {
            return Err(err(
                line,
                format!("register `{name}` declared twice in one scope"),
            ));
        }
        f.regs.push(RegDecl { name, ty });
        Ok(())
    }

    fn body(&mut self, f: &mut Function) -> EmuResult<()> {
        self.expect_punct('{')?;
        let mut scopes = Scopes::new();
        // Branch operands to resolve once all labels are known: (instr, operand, scope, name, line).
        let mut pending: Vec<(usize, usize, usize, String, u32)> = Vec::new();
        loop {
            let line = self.line();
            let Some(t) = self.peek().cloned() else {
                return Err(err(
                    line,
                    format!("function `{}` has no closing `}}`", f.name),
                ));
            };
            match t {
                Tok::Punct('}') => {
                    self.pos += 1;
                    scopes.stack.pop();
                    if scopes.stack.is_empty() {
                        break;
                    }
                }
                Tok::Punct('{') => {
                    self.pos += 1;
                    scopes.push();
                }
                Tok::Punct(';') => self.pos += 1,
                Tok::Punct('@') => {
                    self.pos += 1;
                    let neg = self.eat_punct('!');
                    let pname = self.ident("a guard predicate")?;
                    let reg = scopes
                        .reg(&pname)
                        .ok_or_else(|| err(line, format!("undeclared predicate `{pname}`")))?;
                    let guard = Guard { reg, negated: neg };
                    self.instruction(f, &scopes, Some(guard), &mut pending)?;
                }
                Tok::Ident(w) => {
                    if matches!(self.peek_at(1), Some(Tok::Punct(':'))) && !w.starts_with('.') {
                        // A label.
                        self.pos += 2;
                        let cur = scopes.current();
                        if scopes.labels[cur].insert(w.clone(), f.body.len()).is_some() {
                            return Err(err(line, format!("label `{w}` defined twice")));
                        }
                        f.labels.push((w, f.body.len()));
                        // `prototype_0 : .callprototype ...;`
                        if self.is_ident(".callprototype") {
                            self.skip_statement();
                        }
                        continue;
                    }
                    match w.as_str() {
                        ".reg" => {
                            self.pos += 1;
                            let mut ty = None;
                            while let Some(Tok::Ident(x)) = self.peek() {
                                if !x.starts_with('.') {
                                    break;
                                }
                                if x == ".v2" || x == ".v4" || x.starts_with(".align") {
                                    return Err(err(line, format!("`.reg {x}` is not supported")));
                                }
                                ty = Some(Ty::from_name(&x[1..]).ok_or_else(|| {
                                    err(line, format!("unknown register type `{x}`"))
                                })?);
                                self.pos += 1;
                            }
                            let ty = ty.ok_or_else(|| err(line, "`.reg` without a type"))?;
                            loop {
                                let name = self.ident("a register name")?;
                                if self.eat_punct('<') {
                                    let n = self.int("a register count")?;
                                    self.expect_punct('>')?;
                                    if n > 1 << 20 {
                                        return Err(err(line, format!("register range of {n}")));
                                    }
                                    for k in 0..n {
                                        self.declare_reg(
                                            f,
                                            &mut scopes,
                                            format!("{name}{k}"),
                                            ty,
                                            line,
                                        )?;
                                    }
                                } else {
                                    self.declare_reg(f, &mut scopes, name, ty, line)?;
                                }
                                if !self.eat_punct(',') {
                                    break;
                                }
                            }
                            self.expect_punct(';')?;
                        }
                        ".shared" | ".local" | ".global" | ".const" => {
                            let vars = self.var_decl(false)?;
                            for v in vars {
                                match v.space {
                                    Space::Local => f.locals.push(v),
                                    _ => f.shared.push(v),
                                }
                            }
                        }
                        ".extern" => {
                            self.pos += 1;
                            let vars = self.var_decl(true)?;
                            f.shared.extend(vars);
                        }
                        ".param" => {
                            // Call-argument staging (`.param .b32 param0;`): per-thread param
                            // variables, kept with the locals.
                            let (name, size, align) = self.param()?;
                            self.expect_punct(';')?;
                            f.locals.push(VarDecl {
                                name,
                                space: Space::Param,
                                align,
                                size: Some(u64::from(size)),
                                init: Vec::new(),
                                line,
                            });
                        }
                        ".loc" | ".pragma" | ".file" => self.skip_statement(),
                        _ if w.starts_with('.') => {
                            return Err(err(
                                line,
                                format!("unknown directive `{w}` in a function body"),
                            ))
                        }
                        _ => self.instruction(f, &scopes, None, &mut pending)?,
                    }
                }
                t => {
                    return Err(err(
                        line,
                        format!("expected an instruction, found {}", describe(Some(&t))),
                    ))
                }
            }
        }
        for (i, k, scope, name, line) in pending {
            let target = scopes
                .label(scope, &name)
                .ok_or_else(|| err(line, format!("branch to undefined label `{name}`")))?;
            if let Some(op) = f.body.get_mut(i).and_then(|ins| ins.operands.get_mut(k)) {
                *op = Operand::Label(target);
            }
        }
        Ok(())
    }

    fn instruction(
        &mut self,
        f: &mut Function,
        scopes: &Scopes,
        guard: Option<Guard>,
        pending: &mut Vec<(usize, usize, usize, String, u32)>,
    ) -> EmuResult<()> {
        let line = self.line();
        let opcode = self.ident("an opcode")?;
        if opcode.starts_with('%') || opcode.starts_with('.') {
            return Err(err(line, format!("expected an opcode, found `{opcode}`")));
        }
        let mut parts = opcode.split('.');
        let head = parts.next().unwrap_or_default().to_string();
        let mut mods = Vec::new();
        let mut types = Vec::new();
        for p in parts {
            if p.is_empty() {
                return Err(err(line, format!("empty modifier in `{opcode}`")));
            }
            match Ty::from_name(p) {
                Some(t) => types.push(t),
                None => mods.push(p.to_string()),
            }
        }
        let mut operands = Vec::new();
        let is_branch = head == "bra" || head == "brx";
        let is_call = head == "call";
        if !self.is_punct(';') {
            loop {
                let op = if is_call && self.is_punct('(') {
                    // call (ret), f, (args): argument lists are vectors of names.
                    self.pos += 1;
                    let mut items = Vec::new();
                    if !self.eat_punct(')') {
                        loop {
                            items.push(self.operand(scopes, line, 0)?);
                            if self.eat_punct(')') {
                                break;
                            }
                            self.expect_punct(',')?;
                        }
                    }
                    Operand::Vec(items)
                } else {
                    self.operand(scopes, line, 0)?
                };
                if is_branch {
                    if let Operand::Sym(name) = &op {
                        pending.push((
                            f.body.len(),
                            operands.len(),
                            scopes.current(),
                            name.clone(),
                            line,
                        ));
                    }
                }
                operands.push(op);
                if !self.eat_punct(',') {
                    break;
                }
            }
        }
        self.expect_punct(';')?;
        f.body.push(Instr {
            line,
            guard,
            opcode,
            head,
            mods,
            types,
            operands,
        });
        Ok(())
    }

    fn operand(&mut self, scopes: &Scopes, line: u32, depth: u32) -> EmuResult<Operand> {
        match self.peek().cloned() {
            Some(Tok::Punct('{')) => {
                if depth >= MAX_VECTOR_DEPTH {
                    return Err(err(line, "vector operands nested too deeply"));
                }
                self.pos += 1;
                let mut items = Vec::new();
                if !self.eat_punct('}') {
                    loop {
                        items.push(self.operand(scopes, line, depth + 1)?);
                        if self.eat_punct('}') {
                            break;
                        }
                        self.expect_punct(',')?;
                    }
                }
                Ok(Operand::Vec(items))
            }
            Some(Tok::Punct('[')) => {
                self.pos += 1;
                let base = match self.peek().cloned() {
                    Some(Tok::Ident(name)) => {
                        self.pos += 1;
                        if name.starts_with('%') {
                            match scopes.reg(&name) {
                                Some(r) => AddrBase::Reg(r),
                                None => {
                                    return Err(err(line, format!("undeclared register `{name}`")))
                                }
                            }
                        } else {
                            AddrBase::Sym(name)
                        }
                    }
                    _ => AddrBase::Abs,
                };
                let mut offset = 0i64;
                if base == AddrBase::Abs {
                    offset = self.signed_int(line)?;
                } else if self.is_punct('+') || self.is_punct('-') {
                    let neg = self.is_punct('-');
                    self.pos += 1;
                    let v = self.signed_int(line)?;
                    offset = if neg { v.wrapping_neg() } else { v };
                }
                // `[tensorMap, {c0, c1, ...}]` (cp.async.bulk.tensor): the map's address and its
                // coordinates, as a two-item vector.
                if self.eat_punct(',') {
                    let coords = self.operand(scopes, line, depth + 1)?;
                    self.expect_punct(']')?;
                    return Ok(Operand::Vec(vec![Operand::Addr { base, offset }, coords]));
                }
                self.expect_punct(']')?;
                Ok(Operand::Addr { base, offset })
            }
            Some(Tok::Punct('!')) => {
                self.pos += 1;
                let name = self.ident("a predicate")?;
                let r = scopes
                    .reg(&name)
                    .ok_or_else(|| err(line, format!("undeclared register `{name}`")))?;
                Ok(Operand::NotPred(r))
            }
            Some(Tok::Punct('-')) => {
                self.pos += 1;
                match self.next() {
                    Some(Tok::Int(v)) => Ok(Operand::Imm((v as i64).wrapping_neg())),
                    Some(Tok::Float(v, _)) => Ok(Operand::F64((-v).to_bits())),
                    Some(Tok::F32(b)) => Ok(Operand::F32(b ^ 0x8000_0000)),
                    Some(Tok::F64Bits(b)) => Ok(Operand::F64(b ^ (1 << 63))),
                    t => Err(err(
                        line,
                        format!(
                            "expected a number after `-`, found {}",
                            describe(t.as_ref())
                        ),
                    )),
                }
            }
            Some(Tok::Int(v)) => {
                self.pos += 1;
                Ok(Operand::Imm(v as i64))
            }
            Some(Tok::F32(b)) => {
                self.pos += 1;
                Ok(Operand::F32(b))
            }
            Some(Tok::F64Bits(b)) => {
                self.pos += 1;
                Ok(Operand::F64(b))
            }
            Some(Tok::Float(v, _)) => {
                self.pos += 1;
                Ok(Operand::F64(v.to_bits()))
            }
            Some(Tok::Ident(name)) => {
                self.pos += 1;
                if name == "_" {
                    return Ok(Operand::Sink);
                }
                if name.starts_with('%') {
                    if let Some(r) = scopes.reg(&name) {
                        if self.eat_punct('|') {
                            let q = self.ident("a predicate")?;
                            let q = scopes
                                .reg(&q)
                                .ok_or_else(|| err(line, format!("undeclared register `{q}`")))?;
                            return Ok(Operand::PredPair(r, q));
                        }
                        return Ok(Operand::Reg(r));
                    }
                    if let Some(s) = special(&name) {
                        return Ok(Operand::Special(s));
                    }
                    return Err(err(line, format!("undeclared register `{name}`")));
                }
                // Registers need no `%` (inline assembly declares `.reg .pred p;` in a scope).
                if let Some(r) = scopes.reg(&name) {
                    return Ok(Operand::Reg(r));
                }
                Ok(Operand::Sym(name))
            }
            t => Err(err(
                line,
                format!("expected an operand, found {}", describe(t.as_ref())),
            )),
        }
    }

    fn signed_int(&mut self, line: u32) -> EmuResult<i64> {
        let neg = self.eat_punct('-');
        match self.next() {
            Some(Tok::Int(v)) => Ok(if neg {
                (v as i64).wrapping_neg()
            } else {
                v as i64
            }),
            t => Err(err(
                line,
                format!("expected an address offset, found {}", describe(t.as_ref())),
            )),
        }
    }
}

fn dim(s: &str) -> Option<u8> {
    match s {
        "x" => Some(0),
        "y" => Some(1),
        "z" => Some(2),
        _ => None,
    }
}

/// A special register name (`%tid.x`, `%laneid`, ...).
pub fn special(name: &str) -> Option<Special> {
    let (base, d) = match name.split_once('.') {
        Some((b, d)) => (b, dim(d)?),
        None => (name, 0),
    };
    let has_dim = name.contains('.');
    Some(match (base, has_dim) {
        ("%tid", true) => Special::Tid(d),
        ("%ntid", true) => Special::Ntid(d),
        ("%ctaid", true) => Special::Ctaid(d),
        ("%nctaid", true) => Special::Nctaid(d),
        ("%clusterid" | "%cluster_ctaid" | "%cluster_ctarank", _) => Special::ClusterZero,
        ("%nclusterid" | "%cluster_nctaid" | "%cluster_nctarank", _) => Special::ClusterOne,
        ("%laneid", false) => Special::LaneId,
        ("%warpid", false) => Special::WarpId,
        ("%nwarpid", false) => Special::NWarpId,
        ("%smid", false) => Special::SmId,
        ("%nsmid", false) => Special::NSmId,
        ("%gridid", false) => Special::GridId,
        ("%lanemask_eq", false) => Special::LaneMask(LaneMaskKind::Eq),
        ("%lanemask_le", false) => Special::LaneMask(LaneMaskKind::Le),
        ("%lanemask_lt", false) => Special::LaneMask(LaneMaskKind::Lt),
        ("%lanemask_ge", false) => Special::LaneMask(LaneMaskKind::Ge),
        ("%lanemask_gt", false) => Special::LaneMask(LaneMaskKind::Gt),
        ("%clock", false) => Special::Clock,
        ("%clock64", false) => Special::Clock64,
        ("%globaltimer", false) => Special::GlobalTimer,
        ("%dynamic_smem_size", false) => Special::DynamicSmemSize,
        ("%total_smem_size", false) => Special::TotalSmemSize,
        _ => return None,
    })
}
