//! IR helper functions: `#[tilekit::func(call)]` builds the helper's body once per kernel build
//! (per instantiation of a generic helper) as a Tile IR helper function and records a `call`
//! where it is used; plain `#[tilekit::func]` helpers are inlined instead.

use std::any::TypeId;
use std::cell::RefCell;

use super::control::tuple_impls;
use super::handles::Handle;
use super::trace::{self, rec};
use crate::ir::{Func, FuncBuilder, Type, Value};

/// The arguments and results of a called helper: DSL handles and tuples of them.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be passed to or returned from a `#[func(call)]` helper",
    note = "IR helpers take and return DSL values (Scalar, Rt, Rv, St, Sv, Gl, GlMut, Sem) and tuples of them; use an inlined #[tilekit::func] for Rust values"
)]
pub trait Values: Sized {
    fn values(&self, out: &mut Vec<Value>);
    fn types(out: &mut Vec<Type>);
    fn rebuild(vals: &mut std::slice::Iter<'_, Value>) -> Self;
}

impl<H: Handle> Values for H {
    fn values(&self, out: &mut Vec<Value>) {
        out.push(self.value())
    }
    fn types(out: &mut Vec<Type>) {
        out.push(H::ir_type())
    }
    fn rebuild(vals: &mut std::slice::Iter<'_, Value>) -> Self {
        // The values come from an op built with these types, one per handle, in order.
        H::from_value(vals.next().copied().unwrap_or(Value(u32::MAX)))
    }
}

tuple_impls!(Values; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

/// The helpers of the kernel being built.
#[derive(Default)]
pub(crate) struct Helpers {
    /// (which helper instantiation, its IR name, its result types).
    built: Vec<(TypeId, String, Vec<Type>)>,
    funcs: Vec<Func>,
}

thread_local! {
    static HELPERS: RefCell<Helpers> = RefCell::new(Helpers::default());
}

/// Starts a kernel build: returns the enclosing build's helpers (restored by [`end_build`]).
pub(crate) fn begin_build() -> Helpers {
    HELPERS.with(|h| std::mem::take(&mut *h.borrow_mut()))
}

/// Ends a kernel build: the helper functions it built; restores the enclosing build's.
pub(crate) fn end_build(saved: Helpers) -> Vec<Func> {
    HELPERS.with(|h| std::mem::replace(&mut *h.borrow_mut(), saved).funcs)
}

fn lookup(key: TypeId) -> Option<(String, Vec<Type>)> {
    HELPERS.with(|h| {
        h.borrow()
            .built
            .iter()
            .find(|(k, ..)| *k == key)
            .map(|(_, n, t)| (n.clone(), t.clone()))
    })
}

/// Calls helper `name` (building it first if this kernel build has not). Used by
/// `#[func(call)]`. Not for direct use.
#[doc(hidden)]
#[track_caller]
pub fn __call<A: Values, R: Values, F: FnOnce(A) -> R + 'static>(
    name: &str,
    params: &[&str],
    args: A,
    body: F,
) -> R {
    let key = TypeId::of::<F>();
    let (ir_name, results) = match lookup(key) {
        Some(found) => found,
        None => build_helper(key, name, params, body),
    };
    let mut vals = Vec::new();
    args.values(&mut vals);
    let out = rec!(|b| b.call(&ir_name, &vals, results));
    R::rebuild(&mut out.iter())
}

fn build_helper<A: Values, R: Values, F: FnOnce(A) -> R>(
    key: TypeId,
    name: &str,
    params: &[&str],
    body: F,
) -> (String, Vec<Type>) {
    // Instantiations of a generic helper get distinct names: `name`, `name_1`, …, skipping
    // names already taken (another helper may be called `name_2`).
    let taken =
        |candidate: &str| HELPERS.with(|h| h.borrow().built.iter().any(|(_, n, _)| n == candidate));
    let ir_name = std::iter::once(name.to_string())
        .chain((1..).map(|i| format!("{name}_{i}")))
        .find(|candidate| !taken(candidate))
        .unwrap_or_else(|| name.to_string());
    let mut results = Vec::new();
    R::types(&mut results);
    HELPERS.with(|h| {
        h.borrow_mut()
            .built
            .push((key, ir_name.clone(), results.clone()))
    });

    let mut arg_types = Vec::new();
    A::types(&mut arg_types);
    let mut hb = FuncBuilder::helper(ir_name.clone(), results.clone());
    let vals: Vec<Value> = arg_types
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let pname = params
                .get(i)
                .map(|s| s.to_string())
                .unwrap_or(format!("arg{i}"));
            hb.param(&pname, t)
        })
        .collect();
    let caller = trace::swap_out();
    trace::put(hb);
    let r = body(A::rebuild(&mut vals.iter()));
    let mut hb = trace::take();
    trace::swap_in(caller);
    let mut outs = Vec::new();
    r.values(&mut outs);
    hb.ret(&outs);
    let f = hb.finish();
    HELPERS.with(|h| h.borrow_mut().funcs.push(f));
    (ir_name, results)
}
