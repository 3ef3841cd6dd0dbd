//! Names for traced values: the macro names each value bound by `let` (and loop variables and
//! carried variables) after its Rust variable, so the Tile IR text reads like the kernel. Names
//! are only for reading: the printer keeps them unique.
//!
//! `(&__Named(&x)).__tk_name("x")` picks [`NameHandle`] when `x` is a DSL handle and the no-op
//! [`NameOther`] (one more autoref away) for every other Rust value.

use super::handles::Handle;
use super::trace::rec;

/// A value to name. Not for direct use.
#[doc(hidden)]
#[derive(Debug)]
pub struct __Named<'a, T>(pub &'a T);

/// Naming a DSL handle records its name.
#[doc(hidden)]
pub trait NameHandle {
    fn __tk_name(&self, name: &str);
}

impl<T: Handle> NameHandle for __Named<'_, T> {
    fn __tk_name(&self, name: &str) {
        let v = self.0.value();
        rec!(|b| {
            b.name(v, name);
        })
    }
}

/// Naming anything else does nothing.
#[doc(hidden)]
pub trait NameOther {
    fn __tk_name(&self, _name: &str) {}
}

impl<T> NameOther for &__Named<'_, T> {}
