//! Launch contracts: `shapes(…)` and `grid = […]` on `#[kernel]`.
//!
//! ```text
//! #[kernel(shapes(x: [T, H], w: [H], y: [T, H], H >= 1), grid = [ceil_div(T, 16), 1, 1])]
//! ```
//!
//! Each `param: [dims]` lists the dimensions of a tensor parameter. A dimension is a name (the
//! first place it appears binds it, every other place must equal it), a const generic of the
//! kernel or a literal (the dimension must equal it), an expression of bound names and const
//! generics in Rust syntax (`NT * (R * WARPS)`), or `_` (anything). Other items are conditions
//! on the names (`SK >= 1`). `grid` gives the blocks along x, y and z as expressions of the
//! names and const generics, with `ceil_div(a, b)` at hand. The macro turns this into the
//! kernel's `contract` function; the launchers check every launch against it.

use std::collections::BTreeSet;

use proc_macro2::TokenStream as TokenStream2;
use quote::{quote, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::visit::Visit;
use syn::{Expr, Ident, Token};

/// The parsed `shapes(…)` list.
pub(crate) struct Shapes {
    pub tensors: Vec<(Ident, Vec<Expr>)>,
    pub conditions: Vec<Expr>,
}

impl Parse for Shapes {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut shapes = Shapes {
            tensors: Vec::new(),
            conditions: Vec::new(),
        };
        while !input.is_empty() {
            if input.peek(Ident) && input.peek2(Token![:]) && !input.peek2(Token![::]) {
                let name: Ident = input.parse()?;
                input.parse::<Token![:]>()?;
                let content;
                syn::bracketed!(content in input);
                let dims: Punctuated<Expr, Token![,]> = Punctuated::parse_terminated(&content)?;
                shapes.tensors.push((name, dims.into_iter().collect()));
            } else {
                shapes.conditions.push(input.parse()?);
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(shapes)
    }
}

/// Names an expression reads (single-segment paths that are not called as functions).
#[derive(Default)]
struct Names(Vec<Ident>);

impl<'ast> Visit<'ast> for Names {
    fn visit_expr(&mut self, e: &'ast Expr) {
        match e {
            Expr::Path(p) if p.qself.is_none() && p.path.segments.len() == 1 => {
                let id = &p.path.segments[0].ident;
                if !self.0.contains(id) {
                    self.0.push(id.clone());
                }
            }
            Expr::Call(c) => c.args.iter().for_each(|a| self.visit_expr(a)),
            _ => syn::visit::visit_expr(self, e),
        }
    }
}

fn names_of(e: &Expr) -> Vec<Ident> {
    let mut n = Names::default();
    n.visit_expr(e);
    n.0
}

fn plain_name(e: &Expr) -> Option<&Ident> {
    match e {
        Expr::Path(p) if p.qself.is_none() && p.path.segments.len() == 1 => {
            Some(&p.path.segments[0].ident)
        }
        _ => None,
    }
}

pub(crate) fn text(t: &impl ToTokens) -> String {
    t.to_token_stream()
        .to_string()
        .replace(" (", "(")
        .replace("( ", "(")
        .replace(" )", ")")
        .replace(" ,", ",")
}

/// The body of the kernel's `contract` function: checks the arguments (`args`) against
/// `shapes` and computes `grid`. `params` are the kernel's parameter names in order,
/// `consts` its const generics.
pub(crate) fn expand(
    shapes: Option<&Shapes>,
    grid: Option<&Expr>,
    params: &[Ident],
    consts: &[Ident],
) -> syn::Result<TokenStream2> {
    let empty = Shapes {
        tensors: Vec::new(),
        conditions: Vec::new(),
    };
    let shapes = shapes.unwrap_or(&empty);
    let consts: BTreeSet<String> = consts.iter().map(|c| c.to_string()).collect();
    let mut errors: Vec<syn::Error> = Vec::new();

    // The tensors: their parameter index and listed rank.
    let mut listed = Vec::new();
    let mut seen = BTreeSet::new();
    for (name, dims) in &shapes.tensors {
        let Some(index) = params.iter().position(|p| p == name) else {
            errors.push(syn::Error::new(
                name.span(),
                format!(
                    "`{name}` is not a parameter of this kernel (parameters: {})",
                    params
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
            continue;
        };
        if !seen.insert(name.to_string()) {
            errors.push(syn::Error::new(
                name.span(),
                format!("`{name}` is listed twice in `shapes`"),
            ));
        }
        let s = name.to_string();
        let rank = dims.len();
        listed.push(quote!((#s, #index, #rank)));
    }

    // Names bound by a plain dimension: the first place each appears.
    let mut bound: Vec<(Ident, usize, usize)> = Vec::new();
    for (t, (_, dims)) in shapes.tensors.iter().enumerate() {
        for (axis, d) in dims.iter().enumerate() {
            if let Some(id) = plain_name(d) {
                if !consts.contains(&id.to_string()) && !bound.iter().any(|(b, ..)| b == id) {
                    bound.push((id.clone(), t, axis));
                }
            }
        }
    }
    let binding = |id: &Ident| bound.iter().find(|(b, ..)| b == id);
    // What an expression's names are, for messages: `(name, value, tensor, axis)` of each bound one.
    let check_names = |e: &Expr, errors: &mut Vec<syn::Error>| -> TokenStream2 {
        let mut vars = Vec::new();
        for id in names_of(e) {
            let s = id.to_string();
            if consts.contains(&s) {
                continue;
            }
            match binding(&id) {
                Some((_, t, axis)) => vars.push(quote!((#s, #id, #t, #axis))),
                None => errors.push(syn::Error::new(
                    id.span(),
                    format!(
                        "`{id}` is neither a const generic of the kernel nor a dimension some tensor in `shapes` has alone (as in `x: [{id}, …]`)"
                    ),
                )),
            }
        }
        quote!(&[#(#vars),*])
    };

    let mut body = Vec::new();
    for (id, t, axis) in &bound {
        body.push(quote!(let #id: usize = __tk_c.dim(#t, #axis);));
    }
    for (t, (_, dims)) in shapes.tensors.iter().enumerate() {
        for (axis, d) in dims.iter().enumerate() {
            if matches!(d, Expr::Infer(_)) {
                continue;
            }
            if let Some(id) = plain_name(d) {
                if binding(id).is_some_and(|&(_, bt, ba)| (bt, ba) == (t, axis)) {
                    continue;
                }
            }
            let vars = check_names(d, &mut errors);
            let what = text(d);
            body.push(quote!(__tk_c.expect(#t, #axis, (#d) as usize, #what, #vars)?;));
        }
    }
    for c in &shapes.conditions {
        let vars = check_names(c, &mut errors);
        let what = text(c);
        body.push(quote!(__tk_c.require(#c, #what, #vars)?;));
    }
    let result = match grid {
        None => quote!(::core::result::Result::Ok(::core::option::Option::None)),
        Some(Expr::Array(a)) if a.elems.len() == 3 => {
            let axes = a.elems.iter().map(|e| {
                let vars = check_names(e, &mut errors);
                let what = text(e);
                quote!(((#e) as usize, #what, #vars))
            });
            quote!(__tk_c.grid([#(#axes),*]).map(::core::option::Option::Some))
        }
        Some(other) => {
            errors.push(syn::Error::new_spanned(
                other,
                "`grid` takes the blocks along x, y and z: `grid = [X, Y, Z]`",
            ));
            quote!(::core::result::Result::Ok(::core::option::Option::None))
        }
    };
    if let Some(e) = crate::combine(errors) {
        return Err(e);
    }
    let contract_text = shapes
        .tensors
        .iter()
        .map(|(n, dims)| {
            format!(
                "{n}: [{}]",
                dims.iter().map(text).collect::<Vec<_>>().join(", ")
            )
        })
        .chain(shapes.conditions.iter().map(text))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(quote! {
        /// Blocks of `b` covering `a` (`a / b` rounded up; 0 blocks of nothing).
        #[allow(dead_code)]
        fn ceil_div(a: usize, b: usize) -> usize {
            a.div_ceil(b.max(1))
        }
        let __tk_c = ::tilekit::contract::Contract::new(
            args,
            &[#(#listed),*],
            #contract_text,
        )?;
        #(#body)*
        #result
    })
}
