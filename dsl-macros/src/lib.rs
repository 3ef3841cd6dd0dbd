//! Proc macros of tilekit: `#[kernel]` and `#[func]`.
//!
//! Both turn a Rust function body into a *tracing builder*: DSL ops in it append Tile IR ops to
//! the kernel being built, and the macro rewrites control flow so that the DSL's trait dispatch
//! decides whether it runs at build time or becomes IR control flow:
//!
//! - `for PAT in ITER { BODY }` → `(a, b) = __for(ITER, (a, b), |PAT, (mut a, mut b)| { BODY; (a, b) })`
//! - `if C { X } else { Y }` → `__if(C, (a, b), |(mut a, mut b)| ((a, b), X), …)` (its value too)
//! - `while C { BODY }` → `__while((a, b), |(mut a, mut b)| (C, (a, b)), |(mut a, mut b)| { BODY; (a, b) })`
//!
//! where `a, b` are the variables the loop or branch assigns that were declared outside it.
//! Syntax the DSL cannot trace (closures, `loop`, `break`, `continue`, `return`, `?`, `async`,
//! `unsafe`, references to host memory, macros outside a small set) is a compile error at its
//! span. The macro never panics on user input.
//!
//! The expansion of `#[kernel]` is documented on [`macro@kernel`].

mod contract;

use std::collections::BTreeSet;

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{quote, quote_spanned, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{
    AngleBracketedGenericArguments, Block, Expr, FnArg, GenericParam, Ident, ItemFn, Pat, Path,
    ReturnType, Token, Type,
};

/// Marks a kernel. On `fn name<generics>(params) { body }` it produces:
///
/// - `struct name<generics>` with `NAME`, `build() -> Module` (traces the body: deterministic),
///   `module() -> &'static Module` (built once per instantiation and cached) and
///   `launch(&Device, grid, args…) -> Result<(), Error>`, which takes `&HostTensor` for `Gl`
///   parameters, `&mut HostTensor` for `GlMut` and a `ScalarArg` (from a Rust number) for
///   `Scalar`, checks dtypes and ranks, runs the kernel and writes outputs back;
/// - a registration for `tilekit list` / `tilekit selftest`.
///
/// Attribute arguments: `warps = EXPR` (warps per block, may use the const generics; default 1),
/// `allow_spills` (the author accepts register spills: without it, compiling a kernel whose live
/// values do not fit the target's registers is an error naming the numbers),
/// `variants(<A, B>, …)` (instantiations to register; `<A, B> for [sm_90a]` registers one for
/// the listed code targets only, e.g. a variant that spills or does not fit elsewhere),
/// `targets = [sm_80, sm_90a]` (the targets of every variant that lists none; default: every
/// target), `selftest = path::to::fn`
/// (`fn(&Device) -> Result<String, String>`), `check = EXPR` (a `fn(&[Arg]) -> Result<(),
/// String>` the launcher runs on the arguments after the dtype and rank checks and the contract,
/// for what a contract cannot say; it may use the const generics, e.g. `check = rule::<D>`).
///
/// Launch contract: `shapes(x: [T, H], w: [H], y: [T, H], H >= 1)` lists the dimensions of
/// tensor parameters — a name binds where it first appears alone and must match everywhere
/// else; a const generic, a literal or an expression of names and const generics
/// (`NT * R * WARPS`) must equal the dimension; `_` is anything — and conditions on the names;
/// `grid = [ceil_div(T, 16), 1, 1]` gives the blocks along x, y and z from the names and const
/// generics. The macro then also generates `contract(args) -> Result<Option<[u32; 3]>,
/// String>` and, with `grid`, `launch_auto(device, args…)`, which launches on the contract's
/// grid. Every launch checks the contract before anything runs: a mismatch is an error naming
/// both arguments, the dimension and the values, and a launch grid smaller than the
/// contract's on any axis is refused (it would leave outputs unwritten).
#[proc_macro_attribute]
pub fn kernel(attr: TokenStream, item: TokenStream) -> TokenStream {
    let args = match syn::parse::<KernelArgs>(attr) {
        Ok(a) => a,
        Err(e) => return e.to_compile_error().into(),
    };
    let f = match syn::parse::<ItemFn>(item) {
        Ok(f) => f,
        Err(e) => return e.to_compile_error().into(),
    };
    match expand_kernel(args, f) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// Marks a helper callable from kernels (and other helpers). Its body gets the same rewriting
/// and checks as a kernel's. `#[func]`: inlined where it is called, so it may be generic over
/// shapes and dtypes and take comptime Rust arguments. `#[func(call)]`: a Tile IR helper
/// function (one per instantiation, built once per kernel build) called with `call`; its
/// parameters and results must be DSL values.
#[proc_macro_attribute]
pub fn func(attr: TokenStream, item: TokenStream) -> TokenStream {
    let attr = TokenStream2::from(attr);
    let as_call = match attr.to_string().as_str() {
        "" => false,
        "call" => true,
        _ => {
            let e = syn::Error::new_spanned(
                attr,
                "#[tilekit::func] takes no argument or `call` (an IR helper called with `call`)",
            );
            return e.to_compile_error().into();
        }
    };
    let mut f = match syn::parse::<ItemFn>(item) {
        Ok(f) => f,
        Err(e) => return e.to_compile_error().into(),
    };
    let mut errors = Vec::new();
    check_signature(&f, false, &mut errors);
    check_body(&f.block, &mut errors);
    check_tile_shapes(&f, &mut errors);
    if as_call {
        for input in &f.sig.inputs {
            if let FnArg::Typed(pt) = input {
                if !matches!(&*pt.pat, Pat::Ident(_)) {
                    errors.push(syn::Error::new_spanned(
                        &pt.pat,
                        "parameters of a #[func(call)] helper must be plain names",
                    ));
                }
            }
        }
    }
    if let Some(e) = combine(errors) {
        return e.to_compile_error().into();
    }
    Rewriter.visit_block_mut(&mut f.block);
    f.attrs.push(syn::parse_quote!(#[allow(unused_mut, unused_assignments, clippy::let_unit_value, clippy::unused_unit)]));
    if as_call {
        let name = f.sig.ident.to_string();
        let (mut names, mut pats, mut tys) = (Vec::new(), Vec::new(), Vec::new());
        for input in &f.sig.inputs {
            if let FnArg::Typed(pt) = input {
                if let Pat::Ident(pi) = &*pt.pat {
                    names.push(pi.ident.to_string());
                    let id = &pi.ident;
                    pats.push(quote!(#id));
                    tys.push((*pt.ty).clone());
                }
            }
        }
        let ret = match &f.sig.output {
            ReturnType::Default => quote!(()),
            ReturnType::Type(_, t) => quote!(#t),
        };
        let body = &f.block;
        let call: Block = syn::parse_quote!({
            ::tilekit::dsl::__call(
                #name,
                &[#(#names),*],
                (#(#pats,)*),
                |(#(mut #pats,)*): (#(#tys,)*)| -> #ret { #body },
            )
        });
        f.block = Box::new(call);
    }
    f.into_token_stream().into()
}

// ---- attribute arguments --------------------------------------------------------------------

struct KernelArgs {
    warps: Option<Expr>,
    /// `allow_spills`: the author accepts register spills (otherwise code generation refuses
    /// a kernel that does not fit the target's registers).
    allow_spills: bool,
    /// Each variant with the targets it lists (`<..> for [sm_90a]`; empty: the kernel's).
    variants: Vec<(AngleBracketedGenericArguments, Vec<Ident>)>,
    /// `targets = [sm_90a, ..]`: the targets every variant is for unless it lists its own
    /// (empty: every target).
    targets: Vec<Ident>,
    selftest: Option<Path>,
    check: Option<Expr>,
    shapes: Option<contract::Shapes>,
    grid: Option<Expr>,
}

impl Parse for KernelArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = KernelArgs {
            warps: None,
            allow_spills: false,
            variants: Vec::new(),
            targets: Vec::new(),
            selftest: None,
            check: None,
            shapes: None,
            grid: None,
        };
        while !input.is_empty() {
            let key: Ident = input.parse()?;
            match key.to_string().as_str() {
                "warps" => {
                    input.parse::<Token![=]>()?;
                    args.warps = Some(input.parse()?);
                }
                "allow_spills" => args.allow_spills = true,
                "selftest" => {
                    input.parse::<Token![=]>()?;
                    args.selftest = Some(input.parse()?);
                }
                "check" => {
                    input.parse::<Token![=]>()?;
                    args.check = Some(input.parse()?);
                }
                "shapes" => {
                    let content;
                    syn::parenthesized!(content in input);
                    args.shapes = Some(content.parse()?);
                }
                "grid" => {
                    input.parse::<Token![=]>()?;
                    args.grid = Some(input.parse()?);
                }
                "variants" => {
                    let content;
                    syn::parenthesized!(content in input);
                    let list: Punctuated<VariantArg, Token![,]> =
                        Punctuated::parse_terminated(&content)?;
                    args.variants
                        .extend(list.into_iter().map(|v| (v.args, v.targets)));
                }
                "targets" => {
                    input.parse::<Token![=]>()?;
                    args.targets = parse_targets(input)?;
                }
                _ => {
                    return Err(syn::Error::new(
                        key.span(),
                        "unknown kernel argument: expected `warps = N`, `allow_spills`, `variants(<..>, <..> for [sm_90a], ..)`, `targets = [sm_80, ..]`, `selftest = path`, `check = path`, `shapes(x: [T, H], ..)` or `grid = [X, Y, Z]`",
                    ))
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(args)
    }
}

/// The code targets a variant may name (`tilekit_codegen::Target::ALL`; the runtime's registry
/// test keeps the two lists equal, since this crate depends on nothing of ours).
const KNOWN_TARGETS: &[&str] = &["sm_80", "sm_90a", "gfx90a", "gfx942", "gfx950"];

/// One entry of `variants(…)`: comptime arguments, optionally `for [target, …]`.
struct VariantArg {
    args: AngleBracketedGenericArguments,
    targets: Vec<Ident>,
}

impl Parse for VariantArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let args = input.parse()?;
        let targets = if input.peek(Token![for]) {
            input.parse::<Token![for]>()?;
            parse_targets(input)?
        } else {
            Vec::new()
        };
        Ok(VariantArg { args, targets })
    }
}

/// `[sm_90a, gfx942]`: a non-empty list of known target names, each checked at its span.
fn parse_targets(input: ParseStream<'_>) -> syn::Result<Vec<Ident>> {
    let content;
    let brackets = syn::bracketed!(content in input);
    let list: Punctuated<Ident, Token![,]> = Punctuated::parse_terminated(&content)?;
    if list.is_empty() {
        return Err(syn::Error::new(
            brackets.span.join(),
            format!(
                "an empty target list: name at least one of {}",
                KNOWN_TARGETS.join(", ")
            ),
        ));
    }
    for t in &list {
        if !KNOWN_TARGETS.contains(&t.to_string().as_str()) {
            return Err(syn::Error::new(
                t.span(),
                format!(
                    "unknown target `{t}`: expected one of {}",
                    KNOWN_TARGETS.join(", ")
                ),
            ));
        }
    }
    Ok(list.into_iter().collect())
}

// ---- checks ---------------------------------------------------------------------------------

fn combine(errors: Vec<syn::Error>) -> Option<syn::Error> {
    let mut it = errors.into_iter();
    let mut first = it.next()?;
    for e in it {
        first.combine(e);
    }
    Some(first)
}

fn check_signature(f: &ItemFn, is_kernel: bool, errors: &mut Vec<syn::Error>) {
    let sig = &f.sig;
    if let Some(t) = &sig.asyncness {
        errors.push(syn::Error::new(
            t.span(),
            "kernels and DSL functions cannot be `async`",
        ));
    }
    if let Some(t) = &sig.unsafety {
        errors.push(syn::Error::new(
            t.span(),
            "kernels and DSL functions cannot be `unsafe`",
        ));
    }
    if let Some(t) = &sig.constness {
        errors.push(syn::Error::new(
            t.span(),
            "kernels and DSL functions cannot be `const fn`",
        ));
    }
    if is_kernel {
        if let ReturnType::Type(_, t) = &sig.output {
            errors.push(syn::Error::new_spanned(
                t,
                "a kernel returns nothing: write its results through `GlMut` parameters",
            ));
        }
    }
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => errors.push(syn::Error::new_spanned(
                r,
                "kernels and DSL functions cannot take `self`",
            )),
            FnArg::Typed(pt) => {
                if is_kernel && !matches!(&*pt.pat, Pat::Ident(_)) {
                    errors.push(syn::Error::new_spanned(
                        &pt.pat,
                        "kernel parameters must be plain names",
                    ));
                }
                if let Some(bad) = host_memory_type(&pt.ty) {
                    errors.push(syn::Error::new_spanned(
                        bad,
                        "a kernel cannot reference host memory: pass tensors as `Gl<T, RANK>` / `GlMut<T, RANK>` parameters and numbers as `Scalar<T>`",
                    ));
                }
            }
        }
    }
}

/// A reference, pointer, slice or trait object type inside `ty`, if any.
fn host_memory_type(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Reference(_) | Type::Ptr(_) | Type::Slice(_) | Type::TraitObject(_) => Some(ty),
        Type::Array(a) => host_memory_type(&a.elem),
        Type::Tuple(t) => t.elems.iter().find_map(host_memory_type),
        Type::Paren(p) => host_memory_type(&p.elem),
        Type::Group(g) => host_memory_type(&g.elem),
        _ => None,
    }
}

/// Macros a kernel body may use: they run at build time and trace nothing.
const ALLOWED_MACROS: &[&str] = &[
    "assert",
    "assert_eq",
    "assert_ne",
    "debug_assert",
    "debug_assert_eq",
    "debug_assert_ne",
    "panic",
    "unreachable",
    "matches",
];

struct BodyCheck<'e> {
    errors: &'e mut Vec<syn::Error>,
}

impl BodyCheck<'_> {
    /// An error spanning all of `at` (first to last token).
    fn err(&mut self, at: &dyn ToTokens, message: &str) {
        self.errors.push(syn::Error::new_spanned(at, message));
    }
}

impl<'ast> Visit<'ast> for BodyCheck<'_> {
    fn visit_expr(&mut self, e: &'ast Expr) {
        match e {
            Expr::Closure(c) => self.err(
                c,
                "closures are not supported in kernels: write a #[tilekit::func] helper instead",
            ),
            Expr::Loop(l) => self.err(
                &l.loop_token,
                "`loop` is not supported in kernels: use `for` over a range or `while` with a condition",
            ),
            Expr::Break(b) => self.err(
                b,
                "`break` is not supported in kernels: loops run to their bound (use `while` with a condition)",
            ),
            Expr::Continue(c) => self.err(
                c,
                "`continue` is not supported in kernels: use `if` around the rest of the body",
            ),
            Expr::Return(r) => self.err(
                r,
                "`return` is not supported in kernels and DSL functions: end the body with its value",
            ),
            Expr::Try(t) => self.err(
                &t.question_token, "`?` is not supported in kernels"),
            Expr::Async(a) => self.err(
                a, "`async` is not supported in kernels"),
            Expr::Await(a) => self.err(
                a, "`.await` is not supported in kernels"),
            Expr::Unsafe(u) => self.err(
                &u.unsafe_token, "`unsafe` is not supported in kernels"),
            Expr::Yield(y) => self.err(
                y, "`yield` is not supported in kernels"),
            Expr::Reference(r) if r.mutability.is_some() => self.err(
                r,
                "`&mut` is not supported in kernels: DSL values are copied, assign the result instead",
            ),
            Expr::ForLoop(f) if f.label.is_some() => {
                self.err(
                f, "loop labels are not supported in kernels")
            }
            Expr::While(w) if w.label.is_some() => {
                self.err(
                w, "loop labels are not supported in kernels")
            }
            Expr::Macro(m) => self.check_macro(&m.mac),
            _ => {}
        }
        syn::visit::visit_expr(self, e);
    }

    fn visit_stmt_macro(&mut self, m: &'ast syn::StmtMacro) {
        self.check_macro(&m.mac);
    }

    fn visit_item(&mut self, i: &'ast syn::Item) {
        // Nested items (helper fns, consts) are plain Rust: they are not traced.
        if let syn::Item::Static(s) = i {
            self.err(
                &s.static_token,
                "a kernel cannot reference host memory: `static` items are not allowed in kernels",
            );
        }
    }
}

impl BodyCheck<'_> {
    fn check_macro(&mut self, m: &syn::Macro) {
        let name = m
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default();
        if !ALLOWED_MACROS.contains(&name.as_str()) {
            self.err(
                &m.path,
                &format!(
                    "macro `{name}!` is not supported in kernels (allowed: {})",
                    ALLOWED_MACROS.join(", ")
                ),
            );
        }
    }
}

fn check_body(block: &Block, errors: &mut Vec<syn::Error>) {
    BodyCheck { errors }.visit_block(block);
}

/// Tile sides written as integer literals (`Rt<f32, 24, 16>`, `St<bf16, 64, 8>`) must be
/// positive multiples of 16: checked here, so the error is at the author's literal. Sides from
/// const generics are checked when the type is instantiated (a const assertion in the DSL:
/// stable Rust cannot bound a const generic by a predicate), which `cargo build` reports inside
/// the DSL with the instantiated type named.
fn check_tile_shapes(f: &ItemFn, errors: &mut Vec<syn::Error>) {
    TileShapes { errors }.visit_item_fn(f);
}

struct TileShapes<'a> {
    errors: &'a mut Vec<syn::Error>,
}

impl<'ast> Visit<'ast> for TileShapes<'_> {
    fn visit_path_segment(&mut self, seg: &'ast syn::PathSegment) {
        let is_tile = seg.ident == "Rt" || seg.ident == "St";
        if let (true, syn::PathArguments::AngleBracketed(a)) = (is_tile, &seg.arguments) {
            // Rt<T, ROWS, COLS, …> and St<T, ROWS, COLS, …>: the sides follow the dtype.
            for arg in a.args.iter().skip(1).take(2) {
                let lit = match arg {
                    syn::GenericArgument::Const(Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Int(i),
                        ..
                    })) => i,
                    _ => continue,
                };
                if let Ok(v) = lit.base10_parse::<u64>() {
                    if v == 0 || v % 16 != 0 {
                        self.errors.push(syn::Error::new(
                            lit.span(),
                            format!(
                                "a tile side of {v}: the rows and columns of `{}` must be positive multiples of 16 (16, 32, 48, …)",
                                seg.ident
                            ),
                        ));
                    }
                }
            }
        }
        syn::visit::visit_path_segment(self, seg);
    }
}

// ---- which variables a construct assigns ----------------------------------------------------

/// Variables assigned in a piece of code, less those it declares itself.
#[derive(Default)]
struct Assigned {
    assigned: Vec<Ident>,
    declared: BTreeSet<String>,
}

impl Assigned {
    fn target(&mut self, e: &Expr) {
        match e {
            Expr::Path(p) if p.qself.is_none() && p.path.segments.len() == 1 => {
                let id = &p.path.segments[0].ident;
                if !self.assigned.iter().any(|a| a == id) {
                    self.assigned.push(id.clone());
                }
            }
            Expr::Tuple(t) => t.elems.iter().for_each(|x| self.target(x)),
            Expr::Paren(p) => self.target(&p.expr),
            Expr::Index(i) => self.target(&i.expr),
            Expr::Field(f) => self.target(&f.base),
            _ => {}
        }
    }

    fn carried(self) -> Vec<Ident> {
        let declared = self.declared;
        self.assigned
            .into_iter()
            .filter(|a| !declared.contains(&a.to_string()))
            .collect()
    }
}

impl<'ast> Visit<'ast> for Assigned {
    fn visit_expr_assign(&mut self, a: &'ast syn::ExprAssign) {
        self.target(&a.left);
        syn::visit::visit_expr_assign(self, a);
    }

    fn visit_expr_binary(&mut self, b: &'ast syn::ExprBinary) {
        use syn::BinOp::*;
        if matches!(
            b.op,
            AddAssign(_)
                | SubAssign(_)
                | MulAssign(_)
                | DivAssign(_)
                | RemAssign(_)
                | BitXorAssign(_)
                | BitAndAssign(_)
                | BitOrAssign(_)
                | ShlAssign(_)
                | ShrAssign(_)
        ) {
            self.target(&b.left);
        }
        syn::visit::visit_expr_binary(self, b);
    }

    fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
        self.declared.insert(p.ident.to_string());
        syn::visit::visit_pat_ident(self, p);
    }

    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

fn carried_of(parts: &[&dyn Fn(&mut Assigned)]) -> Vec<Ident> {
    let mut a = Assigned::default();
    for p in parts {
        p(&mut a);
    }
    a.carried()
}

// ---- rewriting ------------------------------------------------------------------------------

struct Rewriter;

/// `(a, b,)` as an expression or pattern, with `mut` for patterns.
fn tuple(vars: &[Ident], pat: bool) -> TokenStream2 {
    let items = vars
        .iter()
        .map(|v| if pat { quote!(mut #v) } else { quote!(#v) });
    quote!((#(#items,)*))
}

/// Statements naming the traced values of `vars` after them (no-ops for plain Rust values).
fn name_values(vars: &[Ident]) -> TokenStream2 {
    if vars.is_empty() {
        return quote!();
    }
    let names = vars.iter().map(|v| {
        let s = v.to_string();
        quote!((&__Named(&#v)).__tk_name(#s);)
    });
    quote!({
        #[allow(unused_imports)]
        use ::tilekit::dsl::naming::{NameHandle as _, NameOther as _, __Named};
        #(#names)*
    })
}

/// The plain names a `let` pattern binds (`x`, `mut x`, `x: T`, tuples of those).
fn bound_names(p: &Pat, out: &mut Vec<Ident>) {
    match p {
        Pat::Ident(pi) if pi.subpat.is_none() && pi.by_ref.is_none() => out.push(pi.ident.clone()),
        Pat::Type(pt) => bound_names(&pt.pat, out),
        Pat::Tuple(t) => t.elems.iter().for_each(|x| bound_names(x, out)),
        Pat::Paren(pp) => bound_names(&pp.pat, out),
        _ => {}
    }
}

fn assign_back(vars: &[Ident], from: TokenStream2) -> TokenStream2 {
    if vars.is_empty() {
        quote!(let () = #from;)
    } else {
        let t = tuple(vars, false);
        quote!(#t = #from;)
    }
}

/// `lo..hi` as the range of a `for` becomes `__range(lo, hi)`: the same Rust range for integer
/// bounds, and for a `Scalar` bound an error that points at `range(lo, hi)` (Rust's own says
/// "expected integer, found `Scalar<i32>`").
fn comptime_range(iter: &mut Expr) {
    if let Expr::Range(r) = iter {
        if let (Some(lo), Some(hi), syn::RangeLimits::HalfOpen(_)) = (&r.start, &r.end, &r.limits) {
            let span = r.span();
            *iter = syn::parse_quote_spanned!(span=> ::tilekit::dsl::__range(#lo, #hi));
        }
    }
}

/// `a < b` (`<=`, `>`, `>=`) becomes `__lt(&a, &b)`: the same comparison of Rust values, and
/// for a `Scalar`, vector or tile an error that points at `.lt(..)` (Rust's own names
/// `PartialOrd`).
fn comptime_comparison(e: &mut Expr) {
    if let Expr::Binary(b) = e {
        let f = match b.op {
            syn::BinOp::Lt(_) => quote!(__lt),
            syn::BinOp::Le(_) => quote!(__le),
            syn::BinOp::Gt(_) => quote!(__gt),
            syn::BinOp::Ge(_) => quote!(__ge),
            _ => return,
        };
        let (l, r, span) = (&b.left, &b.right, b.op.span());
        *e = syn::parse_quote_spanned!(span=> ::tilekit::dsl::#f(&(#l), &(#r)));
    }
}

impl VisitMut for Rewriter {
    fn visit_expr_mut(&mut self, e: &mut Expr) {
        match e {
            Expr::Binary(b)
                if matches!(
                    b.op,
                    syn::BinOp::Lt(_) | syn::BinOp::Le(_) | syn::BinOp::Gt(_) | syn::BinOp::Ge(_)
                ) =>
            {
                syn::visit_mut::visit_expr_binary_mut(self, b);
                comptime_comparison(e);
            }
            Expr::ForLoop(f) => {
                let vars = carried_of(&[&|a: &mut Assigned| a.visit_block(&f.body)]);
                // The pattern's own bindings are fresh in each iteration.
                let mut pat_names = Assigned::default();
                pat_names.visit_pat(&f.pat);
                let vars: Vec<Ident> = vars
                    .into_iter()
                    .filter(|v| !pat_names.declared.contains(&v.to_string()))
                    .collect();
                self.visit_block_mut(&mut f.body);
                self.visit_expr_mut(&mut f.expr);
                comptime_range(&mut f.expr);
                let (pat, iter, body) = (&f.pat, &f.expr, &f.body);
                let span = f.for_token.span;
                let (tin, tout) = (tuple(&vars, true), tuple(&vars, false));
                let mut inner = Vec::new();
                bound_names(pat, &mut inner);
                inner.extend(vars.iter().cloned());
                let name_inner = name_values(&inner);
                let call = quote_spanned! {span=>
                    ::tilekit::dsl::__for(#iter, #tout, |#pat, #tin| { #name_inner #body; #tout })
                };
                let back = assign_back(&vars, call);
                let name_out = name_values(&vars);
                *e = syn::parse_quote_spanned!(span=> { #back #name_out });
            }
            Expr::If(i) if !matches!(&*i.cond, Expr::Let(_)) => {
                let vars = carried_of(&[
                    &|a: &mut Assigned| a.visit_block(&i.then_branch),
                    &|a: &mut Assigned| {
                        if let Some((_, x)) = &i.else_branch {
                            a.visit_expr(x);
                        }
                    },
                ]);
                self.visit_expr_mut(&mut i.cond);
                self.visit_block_mut(&mut i.then_branch);
                if let Some((_, x)) = &mut i.else_branch {
                    self.visit_expr_mut(x);
                }
                let span = i.if_token.span;
                let (tin, tout) = (tuple(&vars, true), tuple(&vars, false));
                let (cond, then) = (&i.cond, &i.then_branch);
                let otherwise = match &i.else_branch {
                    Some((_, x)) => quote!(#x),
                    None => quote!({}),
                };
                let call = quote_spanned! {span=>
                    ::tilekit::dsl::__if(
                        #cond,
                        #tout,
                        |#tin| { let __tk_value = #then; (#tout, __tk_value) },
                        |#tin| { let __tk_value = #otherwise; (#tout, __tk_value) },
                    )
                };
                let back = assign_back(&vars, quote!(__tk_carried));
                let name_out = name_values(&vars);
                *e = syn::parse_quote_spanned!(span=> {
                    let (__tk_carried, __tk_value) = #call;
                    #back
                    #name_out
                    __tk_value
                });
            }
            Expr::While(w) if !matches!(&*w.cond, Expr::Let(_)) => {
                let vars = carried_of(&[&|a: &mut Assigned| a.visit_block(&w.body)]);
                self.visit_expr_mut(&mut w.cond);
                self.visit_block_mut(&mut w.body);
                let span = w.while_token.span;
                let (tin, tout) = (tuple(&vars, true), tuple(&vars, false));
                let (cond, body) = (&w.cond, &w.body);
                let call = quote_spanned! {span=>
                    ::tilekit::dsl::__while(
                        #tout,
                        |#tin| { let __tk_cond = #cond; (__tk_cond, #tout) },
                        |#tin| { #body; #tout },
                    )
                };
                let back = assign_back(&vars, call);
                let name_out = name_values(&vars);
                *e = syn::parse_quote_spanned!(span=> { #back #name_out });
            }
            _ => syn::visit_mut::visit_expr_mut(self, e),
        }
    }

    // Nested items are plain Rust, not traced.
    fn visit_item_mut(&mut self, _: &mut syn::Item) {}

    fn visit_block_mut(&mut self, b: &mut Block) {
        let mut out = Vec::with_capacity(b.stmts.len());
        for mut stmt in std::mem::take(&mut b.stmts) {
            self.visit_stmt_mut(&mut stmt);
            let mut names = Vec::new();
            if let syn::Stmt::Local(l) = &stmt {
                if l.init.as_ref().is_some_and(|i| i.diverge.is_none()) {
                    bound_names(&l.pat, &mut names);
                }
            }
            out.push(stmt);
            if !names.is_empty() {
                let naming = name_values(&names);
                out.push(syn::parse_quote!(#naming));
            }
        }
        b.stmts = out;
    }
}

// ---- the kernel -----------------------------------------------------------------------------

fn expand_kernel(args: KernelArgs, f: ItemFn) -> syn::Result<TokenStream2> {
    let mut errors = Vec::new();
    check_signature(&f, true, &mut errors);
    check_body(&f.block, &mut errors);
    check_tile_shapes(&f, &mut errors);
    if let Some(e) = combine(errors) {
        return Err(e);
    }
    let ItemFn {
        attrs,
        vis,
        sig,
        mut block,
    } = f;
    Rewriter.visit_block_mut(&mut block);

    let name = &sig.ident;
    let name_str = name.to_string();
    let generics = &sig.generics;
    let (impl_g, ty_g, where_g) = generics.split_for_impl();
    let type_params: Vec<&Ident> = generics
        .params
        .iter()
        .filter_map(|p| match p {
            GenericParam::Type(t) => Some(&t.ident),
            _ => None,
        })
        .collect();
    let warps = args.warps.map(|w| quote!(#w)).unwrap_or(quote!(1));
    let allow_spills = args.allow_spills;

    let mut params = Vec::new();
    for input in &sig.inputs {
        if let FnArg::Typed(pt) = input {
            if let Pat::Ident(pi) = &*pt.pat {
                params.push((pi.ident.clone(), (*pt.ty).clone()));
            }
        }
    }
    let declare = params.iter().map(|(id, ty)| {
        let s = id.to_string();
        quote!(let #id: #ty = ::tilekit::launch::__param::<#ty>(#s);)
    });
    let launch_params: Vec<TokenStream2> = params
        .iter()
        .map(|(id, ty)| quote!(mut #id: <#ty as ::tilekit::launch::Param>::Host<'_>))
        .collect();
    let to_args = params.iter().map(|(id, ty)| {
        let s = id.to_string();
        quote!(::tilekit::launch::__arg::<#ty>(Self::NAME, #s, &#id)?)
    });
    let write_back = params.iter().map(|(id, ty)| {
        quote!(if let ::core::option::Option::Some(__tk_arg) = __tk_args.next() {
            <#ty as ::tilekit::launch::Param>::write_back(&mut #id, __tk_arg);
        })
    });
    let params_str = params_text(&params, &[]);

    let struct_def = if type_params.is_empty() {
        quote!(#vis struct #name #impl_g #where_g;)
    } else {
        quote!(#vis struct #name #impl_g (::core::marker::PhantomData<fn() -> (#(#type_params,)*)>) #where_g;)
    };

    let target_list = |own: &[Ident]| {
        let names: Vec<String> = if own.is_empty() { &args.targets } else { own }
            .iter()
            .map(Ident::to_string)
            .collect();
        quote!(&[#(#names),*])
    };
    let variants: Vec<TokenStream2> = if generics.params.is_empty() {
        if let Some((v, _)) = args.variants.first() {
            return Err(syn::Error::new_spanned(
                v,
                "a kernel without generic parameters has one variant: list its targets with `targets = [..]`",
            ));
        }
        let targets = target_list(&[]);
        vec![
            quote!(::tilekit::Variant { args: "", params: #params_str, targets: #targets, module: #name::module, check: #name::check_args, contract: #name::contract }),
        ]
    } else {
        // Each variant lists its parameters with the generics substituted (`GlMut<f32, 3>`,
        // not `GlMut<O, 3>`): the names of the type and const parameters, in order, paired with
        // the variant's arguments.
        let generic_names: Vec<String> = generics
            .params
            .iter()
            .filter_map(|p| match p {
                GenericParam::Type(t) => Some(t.ident.to_string()),
                GenericParam::Const(c) => Some(c.ident.to_string()),
                GenericParam::Lifetime(_) => None,
            })
            .collect();
        args.variants
            .iter()
            .map(|(v, own)| {
                let targets = target_list(own);
                let s = v
                    .to_token_stream()
                    .to_string()
                    .replace("< ", "<")
                    .replace(" >", ">")
                    .replace(" ,", ",");
                let values: Vec<(String, TokenStream2)> = generic_names
                    .iter()
                    .cloned()
                    .zip(v.args.iter().filter_map(|a| match a {
                        syn::GenericArgument::Lifetime(_) => None,
                        a => Some(a.to_token_stream()),
                    }))
                    .collect();
                let p = params_text(&params, &values);
                quote!(::tilekit::Variant { args: #s, params: #p, targets: #targets, module: #name::#v::module, check: #name::#v::check_args, contract: #name::#v::contract })
            })
            .collect()
    };
    let selftest = match &args.selftest {
        Some(p) => quote!(::core::option::Option::Some(#p)),
        None => quote!(::core::option::Option::None),
    };
    let check_body = match &args.check {
        Some(c) => quote!(#c(args)),
        None => quote!(::core::result::Result::Ok(())),
    };
    let param_names: Vec<Ident> = params.iter().map(|(id, _)| id.clone()).collect();
    let const_params: Vec<Ident> = generics
        .params
        .iter()
        .filter_map(|p| match p {
            GenericParam::Const(c) => Some(c.ident.clone()),
            _ => None,
        })
        .collect();
    let contract_body = contract::expand(
        args.shapes.as_ref(),
        args.grid.as_ref(),
        &param_names,
        &const_params,
    )?;
    let grid_text = args.grid.as_ref().map(contract::text).unwrap_or_default();
    let param_idents = param_names.iter();
    let param_idents2 = param_names.iter();
    let launch_params2 = launch_params.clone();
    let launch_auto = if args.grid.is_some() {
        let doc = format!("Runs `{name_str}` on `device` over the grid its contract computes from the arguments (`{grid_text}`).");
        quote! {
            #[doc = #doc]
            #[allow(unused_mut, clippy::too_many_arguments)]
            pub fn launch_auto(
                device: &::tilekit::Device,
                #(#launch_params2),*
            ) -> ::core::result::Result<(), ::tilekit::Error> {
                Self::__tk_launch(device, ::core::option::Option::None, #(#param_idents2),*)
            }
        }
    } else {
        quote!()
    };
    let doc_launch = format!("Runs `{name_str}` on `device` over `grid` (see the crate docs of `tilekit` for the argument kinds). The arguments must meet the kernel's shape contract, and a grid it declares is the least `grid` may be on each axis.");

    Ok(quote! {
        #(#attrs)*
        #[allow(non_camel_case_types)]
        #struct_def

        impl #impl_g #name #ty_g #where_g {
            /// The kernel's name in its module.
            pub const NAME: &'static str = #name_str;

            /// Traces the kernel body into a fresh module (deterministic).
            #[allow(unused_mut, unused_assignments, unused_variables, clippy::let_unit_value, clippy::unused_unit)]
            pub fn build() -> ::tilekit::ir::Module {
                ::tilekit::launch::__build_kernel(Self::NAME, #warps, #allow_spills, || {
                    #(#declare)*
                    #block
                })
            }

            /// The kernel's module, built on first use and kept for the process, or the error
            /// of a build that failed (a kernel `assert!` on its comptime parameters).
            pub fn try_module() -> ::core::result::Result<&'static ::tilekit::ir::Module, ::tilekit::Error> {
                ::tilekit::launch::__cached(Self::NAME, ::core::any::TypeId::of::<Self>(), Self::build)
            }

            /// The kernel's module, built on first use and kept for the process.
            ///
            /// # Panics
            /// When the build fails (see `try_module`).
            pub fn module() -> &'static ::tilekit::ir::Module {
                match Self::try_module() {
                    ::core::result::Result::Ok(m) => m,
                    ::core::result::Result::Err(e) => ::core::panic!("{e}"),
                }
            }

            /// The kernel's launch contract (`shapes(…)`, `grid = […]` on `#[kernel]`) on launch
            /// arguments: an error naming the arguments, dimensions and values that break it, or
            /// the grid it declares (`None` when it declares none).
            #[allow(non_snake_case, unused_variables, clippy::identity_op)]
            pub fn contract(args: &[::tilekit::LaunchArg]) -> ::core::result::Result<::core::option::Option<[u32; 3]>, ::std::string::String> {
                #contract_body
            }

            /// The kernel's shape rule on launch arguments: its contract, then its `check`
            /// function (`Ok` when it declares neither).
            pub fn check_args(args: &[::tilekit::LaunchArg]) -> ::core::result::Result<(), ::std::string::String> {
                Self::contract(args)?;
                #check_body
            }

            #[doc = #doc_launch]
            #[allow(unused_mut, clippy::too_many_arguments)]
            pub fn launch(
                device: &::tilekit::Device,
                grid: impl ::core::convert::Into<::tilekit::Grid>,
                #(#launch_params),*
            ) -> ::core::result::Result<(), ::tilekit::Error> {
                Self::__tk_launch(device, ::core::option::Option::Some(grid.into()), #(#param_idents),*)
            }

            #launch_auto

            #[doc(hidden)]
            #[allow(unused_mut, clippy::too_many_arguments)]
            fn __tk_launch(
                device: &::tilekit::Device,
                grid: ::core::option::Option<::tilekit::Grid>,
                #(#launch_params),*
            ) -> ::core::result::Result<(), ::tilekit::Error> {
                let mut __tk_args = ::std::vec![#(#to_args),*];
                let grid = ::tilekit::contract::__launch_grid(
                    Self::NAME,
                    &__tk_args,
                    grid,
                    Self::check_args,
                    Self::contract,
                    #grid_text,
                )?;
                ::tilekit::launch::__run(device, Self::try_module()?, Self::NAME, grid, &mut __tk_args)?;
                let mut __tk_args = __tk_args.into_iter();
                #(#write_back)*
                ::core::result::Result::Ok(())
            }
        }

        ::tilekit::inventory::submit! {
            ::tilekit::KernelInfo {
                name: #name_str,
                params: #params_str,
                file: ::core::file!(),
                line: ::core::line!(),
                variants: &[#(#variants),*],
                selftest: #selftest,
            }
        }
    })
}

/// The parameters as `tilekit list` shows them (`x: Gl<bf16, 2>, y: GlMut<f32, 2>`), with each
/// generic parameter named in `values` replaced by its argument.
fn params_text(params: &[(Ident, Type)], values: &[(String, TokenStream2)]) -> String {
    params
        .iter()
        .map(|(id, ty)| {
            let ty = substitute(ty.to_token_stream(), values);
            format!("{id}: {ty}")
                .replace(" < ", "<")
                .replace("< ", "<")
                .replace(" >", ">")
                .replace(" ,", ",")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `tokens` with every identifier named in `values` replaced by its value (into groups too).
fn substitute(tokens: TokenStream2, values: &[(String, TokenStream2)]) -> TokenStream2 {
    use proc_macro2::{Group, TokenTree};
    tokens
        .into_iter()
        .flat_map(|t| -> Vec<TokenTree> {
            match t {
                TokenTree::Ident(i) => match values.iter().find(|(n, _)| i == n) {
                    Some((_, v)) => v.clone().into_iter().collect(),
                    None => vec![TokenTree::Ident(i)],
                },
                TokenTree::Group(g) => {
                    let mut n = Group::new(g.delimiter(), substitute(g.stream(), values));
                    n.set_span(g.span());
                    vec![TokenTree::Group(n)]
                }
                t => vec![t],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(vars: &[Ident]) -> Vec<String> {
        vars.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn a_construct_carries_the_outer_variables_it_assigns_but_not_its_own() {
        let body: Block = syn::parse_quote!({
            let t = load(x);
            acc = mma(acc, t);
            let mut y = 1;
            y += 1;
            s += 1;
            arr[i] = 2;
            (p, q) = (1, 2);
            for j in 0..4 {
                inner = j;
            }
        });
        let vars = carried_of(&[&|a: &mut Assigned| a.visit_block(&body)]);
        assert_eq!(names(&vars), ["acc", "s", "arr", "p", "q", "inner"]);
    }

    #[test]
    fn listed_parameters_have_the_variants_generics_substituted() {
        let f: ItemFn = syn::parse_quote!(
            fn k<T: Dtype, O, const N: usize>(x: Gl<T, 2>, y: GlMut<O, N>, s: Scalar<T>) {}
        );
        let v: AngleBracketedGenericArguments = syn::parse_quote!(<bf16, f32, 3>);
        let params: Vec<(Ident, Type)> = f
            .sig
            .inputs
            .iter()
            .filter_map(|a| match a {
                FnArg::Typed(pt) => match &*pt.pat {
                    Pat::Ident(pi) => Some((pi.ident.clone(), (*pt.ty).clone())),
                    _ => None,
                },
                FnArg::Receiver(_) => None,
            })
            .collect();
        let values: Vec<(String, TokenStream2)> = ["T", "O", "N"]
            .into_iter()
            .map(String::from)
            .zip(v.args.iter().map(|a| a.to_token_stream()))
            .collect();
        assert_eq!(
            params_text(&params, &values),
            "x: Gl<bf16, 2>, y: GlMut<f32, 3>, s: Scalar<bf16>"
        );
        assert_eq!(
            params_text(&params, &[]),
            "x: Gl<T, 2>, y: GlMut<O, N>, s: Scalar<T>"
        );
    }

    #[test]
    fn unsupported_syntax_is_reported_once_per_construct() {
        let body: Block = syn::parse_quote!({
            let f = |x| x;
            let n = loop {
                break 3;
            };
            if c {
                return;
            }
            println!("no");
            assert!(true);
            let r = &mut acc;
        });
        let mut errors = Vec::new();
        check_body(&body, &mut errors);
        let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 6, "{messages:#?}");
        assert!(messages[0].starts_with("closures are not supported"));
        assert!(messages[1].starts_with("`loop` is not supported"));
        assert!(messages[2].starts_with("`break` is not supported"));
        assert!(messages[3].starts_with("`return` is not supported"));
        assert!(messages[4].starts_with("macro `println!` is not supported"));
        assert!(messages[5].starts_with("`&mut` is not supported"));
    }

    fn contract_error(attr: TokenStream2) -> String {
        let args: KernelArgs = syn::parse2(attr).unwrap();
        let params: Vec<Ident> = vec![syn::parse_quote!(x), syn::parse_quote!(y)];
        let consts: Vec<Ident> = vec![syn::parse_quote!(D)];
        match contract::expand(args.shapes.as_ref(), args.grid.as_ref(), &params, &consts) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_contract_naming_an_unknown_parameter_or_an_unbound_dimension_is_a_compile_error() {
        assert_eq!(
            contract_error(quote!(shapes(x: [T, D], y: [T, D]), grid = [T, 1, 1])),
            ""
        );
        assert!(contract_error(quote!(shapes(x: [T, D], z: [T])))
            .starts_with("`z` is not a parameter of this kernel (parameters: x, y)"),);
        assert!(contract_error(quote!(shapes(x: [T, D], y: [T * S])))
            .starts_with("`S` is neither a const generic"));
        assert!(contract_error(quote!(shapes(x: [T]), grid = [T, 1]))
            .starts_with("`grid` takes the blocks along x, y and z"));
        assert!(contract_error(quote!(shapes(x: [T], x: [T]))).starts_with("`x` is listed twice"));
    }

    #[test]
    fn for_loops_become_calls_of_the_dsl_with_the_carried_tuple() {
        let mut body: Block = syn::parse_quote!({
            for k in range(0, n) {
                acc = mma_ab(acc, a, b);
            }
        });
        Rewriter.visit_block_mut(&mut body);
        let text = body.to_token_stream().to_string();
        assert!(
            text.contains("(acc ,) = :: tilekit :: dsl :: __for (range (0 , n) , (acc ,) , | k , (mut acc ,) |"),
            "{text}"
        );
    }
}
