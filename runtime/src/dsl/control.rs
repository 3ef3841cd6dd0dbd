//! Control flow, as the `#[kernel]` macro rewrites it.
//!
//! `for`, `if` and `while` become calls of [`__for`], [`__if`] and [`__while`] with the variables
//! the body assigns (declared outside it) passed in and out as a tuple. What the loop runs over,
//! or what the condition is, picks the meaning by trait dispatch:
//!
//! - a Rust iterator (`0..N`, `[a, b]`) or a Rust `bool`: comptime; the body runs while the
//!   kernel is built (the loop unrolls, the branch is chosen);
//! - a [`range`] of `Scalar<i32>` or a `Scalar<bool>`: runtime; an IR `for` / `if` / `while`
//!   whose loop-carried values or results are the assigned variables, which must then be
//!   register values ([`Carry`]).

use super::dtype::{Dtype, RegDtype};
use super::handles::{Handle, Rt, Rv, Scalar, TileLayout, VecAlong};
use super::ops::Idx;
use super::trace::{self, rec};
use crate::ir::{Type, Value};

/// Values a runtime loop or `if` carries: register values, and tuples and arrays of them.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be carried through a runtime loop or `if`",
    label = "a variable assigned in a runtime loop or `if` holds this",
    note = "runtime control flow carries register values (Scalar, Rt, Rv), tuples and arrays of them; Rust values can only change in comptime loops (over Rust ranges) and comptime `if` (on a Rust bool)"
)]
pub trait Carry: Sized {
    /// Appends the IR values.
    fn values(&self, out: &mut Vec<Value>);
    /// Appends the IR types.
    fn types(out: &mut Vec<Type>);
    /// Rebuilds from values (consuming them from the front).
    fn rebuild(vals: &mut std::slice::Iter<'_, Value>) -> Self;
}

fn carry_reg<H: Handle>(vals: &mut std::slice::Iter<'_, Value>) -> H {
    // The values come from an op the carried types built, one per handle, in order.
    H::from_value(vals.next().copied().unwrap_or(Value(u32::MAX)))
}

impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout> Carry for Rt<T, R, C, L> {
    fn values(&self, out: &mut Vec<Value>) {
        out.push(self.value())
    }
    fn types(out: &mut Vec<Type>) {
        out.push(Self::ir_type())
    }
    fn rebuild(vals: &mut std::slice::Iter<'_, Value>) -> Self {
        carry_reg(vals)
    }
}
impl<T: RegDtype, const N: usize, A: VecAlong> Carry for Rv<T, N, A> {
    fn values(&self, out: &mut Vec<Value>) {
        out.push(self.value())
    }
    fn types(out: &mut Vec<Type>) {
        out.push(Self::ir_type())
    }
    fn rebuild(vals: &mut std::slice::Iter<'_, Value>) -> Self {
        carry_reg(vals)
    }
}
impl<T: Dtype> Carry for Scalar<T> {
    fn values(&self, out: &mut Vec<Value>) {
        out.push(self.value())
    }
    fn types(out: &mut Vec<Type>) {
        out.push(Self::ir_type())
    }
    fn rebuild(vals: &mut std::slice::Iter<'_, Value>) -> Self {
        carry_reg(vals)
    }
}
impl<X: Carry, const N: usize> Carry for [X; N] {
    fn values(&self, out: &mut Vec<Value>) {
        self.iter().for_each(|x| x.values(out))
    }
    fn types(out: &mut Vec<Type>) {
        (0..N).for_each(|_| X::types(out))
    }
    fn rebuild(vals: &mut std::slice::Iter<'_, Value>) -> Self {
        std::array::from_fn(|_| X::rebuild(vals))
    }
}
/// Implements a trait of [`Carry`]'s shape (`values`, `types`, `rebuild`: a value as an ordered
/// list of IR values) for the tuples of every length up to the list given, element by element
/// in order: `tuple_impls!(Carry; A 0, B 1)` covers `()`, `(A,)` and `(A, B)`.
macro_rules! tuple_impls {
    ($tr:ident; $($x:ident $i:tt),*) => {
        tuple_impls!(@prefixes $tr; []; $($x $i),*);
    };
    (@prefixes $tr:ident; [$($x:ident $i:tt),*]; ) => {
        tuple_impls!(@impl $tr; $($x $i),*);
    };
    (@prefixes $tr:ident; [$($x:ident $i:tt),*]; $y:ident $j:tt $(, $z:ident $k:tt)*) => {
        tuple_impls!(@impl $tr; $($x $i),*);
        tuple_impls!(@prefixes $tr; [$($x $i,)* $y $j]; $($z $k),*);
    };
    (@impl $tr:ident; $($x:ident $i:tt),*) => {
        impl<$($x: $tr),*> $tr for ($($x,)*) {
            #[allow(unused_variables)]
            fn values(&self, out: &mut Vec<Value>) { $(self.$i.values(out);)* }
            #[allow(unused_variables)]
            fn types(out: &mut Vec<Type>) { $($x::types(out);)* }
            #[allow(unused_variables, clippy::unused_unit)]
            fn rebuild(vals: &mut std::slice::Iter<'_, Value>) -> Self { ($($x::rebuild(vals),)*) }
        }
    };
}
pub(super) use tuple_impls;
tuple_impls!(Carry; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);

fn values_of<C: Carry>(c: &C) -> Vec<Value> {
    let mut v = Vec::new();
    c.values(&mut v);
    v
}

fn rebuild<C: Carry>(vals: &[Value]) -> C {
    C::rebuild(&mut vals.iter())
}

/// A runtime loop range: `for k in range(0, k_tiles)` becomes an IR `for` from `lo` to `hi`
/// (exclusive) by `step`.
#[derive(Clone, Copy, Debug)]
pub struct RtRange {
    lo: Value,
    hi: Value,
    step: Value,
}

/// `lo .. hi` at run time (i32).
#[track_caller]
pub fn range(lo: impl Idx, hi: impl Idx) -> RtRange {
    range_step(lo, hi, 1)
}

/// `lo .. hi` by `step` at run time (i32, step > 0).
#[track_caller]
pub fn range_step(lo: impl Idx, hi: impl Idx, step: impl Idx) -> RtRange {
    RtRange {
        lo: lo.idx(),
        hi: hi.idx(),
        step: step.idx(),
    }
}

/// What a `for` loop in a kernel may run over: a Rust iterator (comptime, unrolled) or an
/// [`RtRange`] (an IR loop).
#[diagnostic::on_unimplemented(
    message = "a kernel cannot loop over `{Self}`",
    note = "loop over a Rust range or iterator (unrolled while building) or `range(lo, hi)` of i32 scalars (an IR loop); runtime loops carry register values only"
)]
pub trait ForLoop<C> {
    type Item;
    #[track_caller]
    fn run(self, carried: C, body: impl FnMut(Self::Item, C) -> C) -> C;
}

impl<I: IntoIterator, C> ForLoop<C> for I {
    type Item = I::Item;
    fn run(self, mut carried: C, mut body: impl FnMut(Self::Item, C) -> C) -> C {
        for i in self {
            carried = body(i, carried);
        }
        carried
    }
}

impl<C: Carry> ForLoop<C> for RtRange {
    type Item = Scalar<i32>;
    #[track_caller]
    fn run(self, carried: C, mut body: impl FnMut(Scalar<i32>, C) -> C) -> C {
        let inits = values_of(&carried);
        let out = rec!(
            |b| b.for_range(self.lo, self.hi, self.step, &inits, |b, iv, vals| {
                trace::in_region(b, || {
                    values_of(&body(Scalar::from_value(iv), rebuild(vals)))
                })
            })
        );
        rebuild(&out)
    }
}

/// The rewritten `for`. Not for direct use.
#[doc(hidden)]
#[track_caller]
pub fn __for<I: ForLoop<C>, C>(iter: I, carried: C, body: impl FnMut(I::Item, C) -> C) -> C {
    iter.run(carried, body)
}

/// What an `if` or `while` condition may be: a Rust `bool` (comptime) or a `Scalar<bool>`.
#[diagnostic::on_unimplemented(
    message = "a kernel cannot branch on `{Self}`",
    note = "conditions are Rust bools (chosen while building) or `Scalar<bool>` (an IR `if`/`while`); compare scalars with `.lt(..)`, `.eq(..)`, …"
)]
pub trait Cond<C, V> {
    #[track_caller]
    fn branch(
        self,
        carried: C,
        then: impl FnOnce(C) -> (C, V),
        otherwise: impl FnOnce(C) -> (C, V),
    ) -> (C, V);
}

impl<C, V> Cond<C, V> for bool {
    fn branch(
        self,
        carried: C,
        then: impl FnOnce(C) -> (C, V),
        otherwise: impl FnOnce(C) -> (C, V),
    ) -> (C, V) {
        if self {
            then(carried)
        } else {
            otherwise(carried)
        }
    }
}

impl<C: Carry, V: Carry> Cond<C, V> for Scalar<bool> {
    #[track_caller]
    fn branch(
        self,
        carried: C,
        then: impl FnOnce(C) -> (C, V),
        otherwise: impl FnOnce(C) -> (C, V),
    ) -> (C, V) {
        let inits = values_of(&carried);
        let mut types = Vec::new();
        C::types(&mut types);
        V::types(&mut types);
        let arm = |b: &mut crate::ir::FuncBuilder, f: Box<dyn FnOnce(C) -> (C, V) + '_>| {
            trace::in_region(b, || {
                let (c, v) = f(rebuild(&inits));
                let mut out = values_of(&c);
                v.values(&mut out);
                out
            })
        };
        let out = rec!(|b| b.if_else(
            self.value(),
            types,
            |b| arm(b, Box::new(then)),
            |b| arm(b, Box::new(otherwise))
        ));
        let mut it = out.iter();
        let c = C::rebuild(&mut it);
        let v = V::rebuild(&mut it);
        (c, v)
    }
}

/// The rewritten `if`. Not for direct use.
#[doc(hidden)]
#[track_caller]
pub fn __if<K: Cond<C, V>, C, V>(
    cond: K,
    carried: C,
    then: impl FnOnce(C) -> (C, V),
    otherwise: impl FnOnce(C) -> (C, V),
) -> (C, V) {
    cond.branch(carried, then, otherwise)
}

/// What a `while` condition may be.
#[diagnostic::on_unimplemented(
    message = "a kernel cannot loop while `{Self}`",
    note = "while conditions are Rust bools (comptime) or `Scalar<bool>` (an IR `while`)"
)]
pub trait WhileCond<C> {
    #[track_caller]
    fn run_while(cond: impl FnMut(C) -> (Self, C), carried: C, body: impl FnMut(C) -> C) -> C
    where
        Self: Sized;
}

impl<C> WhileCond<C> for bool {
    fn run_while(
        mut cond: impl FnMut(C) -> (bool, C),
        mut carried: C,
        mut body: impl FnMut(C) -> C,
    ) -> C {
        loop {
            let (go, c) = cond(carried);
            if !go {
                return c;
            }
            carried = body(c);
        }
    }
}

impl<C: Carry> WhileCond<C> for Scalar<bool> {
    #[track_caller]
    fn run_while(
        mut cond: impl FnMut(C) -> (Self, C),
        carried: C,
        mut body: impl FnMut(C) -> C,
    ) -> C {
        let inits = values_of(&carried);
        let out = rec!(|b| b.while_loop(
            &inits,
            |b, vals| trace::in_region(b, || {
                let (k, c) = cond(rebuild(vals));
                (k.value(), values_of(&c))
            }),
            |b, vals| trace::in_region(b, || values_of(&body(rebuild(vals))))
        ));
        rebuild(&out)
    }
}

/// The rewritten `while`. Not for direct use.
#[doc(hidden)]
#[track_caller]
pub fn __while<K: WhileCond<C>, C>(
    carried: C,
    cond: impl FnMut(C) -> (K, C),
    body: impl FnMut(C) -> C,
) -> C {
    K::run_while(cond, carried, body)
}
