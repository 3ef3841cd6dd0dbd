//! The builder being traced: a thread-local [`FuncBuilder`] that DSL ops append to.
//!
//! An op takes the builder out of the thread-local, calls it directly and puts it back, so that
//! the op's `#[track_caller]` location (the author's line) reaches the builder's own
//! `#[track_caller]` methods; a closure in between would record the closure's line instead.

use std::cell::RefCell;

use crate::ir::FuncBuilder;

thread_local! {
    static CURRENT: RefCell<Option<FuncBuilder>> = const { RefCell::new(None) };
}

/// Takes the current builder.
///
/// # Panics
/// Outside the body of a `#[tilekit::kernel]` being built: DSL ops only mean something there.
pub(crate) fn take() -> FuncBuilder {
    CURRENT.with(|c| c.borrow_mut().take()).unwrap_or_else(|| {
        panic!("a tilekit DSL op ran outside a kernel being built (call it from a #[tilekit::kernel] or #[tilekit::func] body)")
    })
}

/// Puts the builder back; returns the one that was there (none while an op runs).
pub(crate) fn put(b: FuncBuilder) -> Option<FuncBuilder> {
    CURRENT.with(|c| c.borrow_mut().replace(b))
}

/// Removes the current builder, if any (before building a nested kernel).
pub(crate) fn swap_out() -> Option<FuncBuilder> {
    CURRENT.with(|c| c.borrow_mut().take())
}

/// Restores a builder removed by [`swap_out`].
pub(crate) fn swap_in(b: Option<FuncBuilder>) {
    CURRENT.with(|c| *c.borrow_mut() = b);
}

/// Runs `f` with the traced builder installed in place of the region builder `b` that a
/// `FuncBuilder` control-flow method hands its closures; ops `f` records land in that region.
pub(crate) fn in_region<R>(b: &mut FuncBuilder, f: impl FnOnce() -> R) -> R {
    let placeholder = FuncBuilder::helper("", Vec::new());
    let inner = std::mem::replace(b, placeholder);
    put(inner);
    let r = f();
    *b = take();
    r
}

/// Records ops with the current builder: `rec!(|b| b.barrier())`.
macro_rules! rec {
    (|$b:ident| $e:expr) => {{
        let mut $b = $crate::dsl::trace::take();
        #[allow(clippy::redundant_locals)]
        let r = $e;
        $crate::dsl::trace::put($b);
        r
    }};
}
pub(crate) use rec;
