//! What the `#[kernel]` macro rewrites Rust's own comparisons and ranges into, so that using
//! them on run-time values is an error that names the DSL's way.
//!
//! In a kernel body, `a < b` (and `<=`, `>`, `>=`) compares Rust values while the kernel is
//! built, and `for j in a..b` unrolls. On a `Scalar` (a run-time value) neither can work; Rust's
//! own errors (`PartialOrd` is not implemented, "expected integer, found `Scalar<i32>`") do not
//! say what to write instead. The macro turns `a < b` into `__lt(&a, &b)` and the range of a
//! `for` into `__range(a, b)`, whose traits' messages do.

use std::cmp::Ordering;

/// What `<`, `<=`, `>`, `>=` in a kernel compare: Rust values, while the kernel is built.
#[diagnostic::on_unimplemented(
    message = "`<`, `<=`, `>`, `>=` compare Rust values while the kernel is built, not `{Self}` with `{B}`",
    label = "a run-time value: compare it with a method",
    note = "scalars, vectors and tiles compare with methods that build the comparison into the kernel: `i.lt(3)`, `i.le(n)`, `i.gt(..)`, `i.ge(..)`, `.eq(..)`, `.ne(..)` (a `Scalar<bool>` for scalars, a mask for tiles and vectors)"
)]
pub trait ComptimeOrd<B: ?Sized> {
    fn comptime_cmp(&self, other: &B) -> Option<Ordering>;
}

impl<A: PartialOrd<B> + ?Sized, B: ?Sized> ComptimeOrd<B> for A {
    fn comptime_cmp(&self, other: &B) -> Option<Ordering> {
        self.partial_cmp(other)
    }
}

/// The rewritten `a < b`. Not for direct use.
#[doc(hidden)]
pub fn __lt<A: ComptimeOrd<B> + ?Sized, B: ?Sized>(a: &A, b: &B) -> bool {
    matches!(a.comptime_cmp(b), Some(Ordering::Less))
}

/// The rewritten `a <= b`. Not for direct use.
#[doc(hidden)]
pub fn __le<A: ComptimeOrd<B> + ?Sized, B: ?Sized>(a: &A, b: &B) -> bool {
    matches!(a.comptime_cmp(b), Some(Ordering::Less | Ordering::Equal))
}

/// The rewritten `a > b`. Not for direct use.
#[doc(hidden)]
pub fn __gt<A: ComptimeOrd<B> + ?Sized, B: ?Sized>(a: &A, b: &B) -> bool {
    matches!(a.comptime_cmp(b), Some(Ordering::Greater))
}

/// The rewritten `a >= b`. Not for direct use.
#[doc(hidden)]
pub fn __ge<A: ComptimeOrd<B> + ?Sized, B: ?Sized>(a: &A, b: &B) -> bool {
    matches!(a.comptime_cmp(b), Some(Ordering::Greater | Ordering::Equal))
}

/// The bounds of `for j in lo..hi` in a kernel: Rust integers of one type (the loop unrolls
/// while the kernel is built).
#[diagnostic::on_unimplemented(
    message = "`{Self}..{B}` is not a range a kernel can unroll",
    label = "`lo..hi` needs Rust integers; this bound is a run-time value",
    note = "a loop over run-time `Scalar<i32>` bounds is an IR loop: write `for j in range(lo, hi)` (or `range_step(lo, hi, step)`); `lo..hi` of Rust integers unrolls while the kernel is built"
)]
pub trait ComptimeBound<B> {
    /// `hi` as the type of `lo`.
    fn same(hi: B) -> Self;
}

macro_rules! comptime_bounds {
    ($($t:ty),*) => {$(
        impl ComptimeBound<$t> for $t {
            fn same(hi: $t) -> $t {
                hi
            }
        }
    )*};
}
comptime_bounds!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize);

/// The rewritten range `lo..hi` of a `for` loop. Not for direct use.
#[doc(hidden)]
pub fn __range<A: ComptimeBound<B>, B>(lo: A, hi: B) -> std::ops::Range<A> {
    lo..A::same(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_agree_with_rusts_operators() {
        for (a, b) in [(1, 2), (2, 2), (3, 2)] {
            assert_eq!(__lt(&a, &b), a < b);
            assert_eq!(__le(&a, &b), a <= b);
            assert_eq!(__gt(&a, &b), a > b);
            assert_eq!(__ge(&a, &b), a >= b);
        }
        // NaN is unordered: every comparison is false, as with the operators.
        let nan = f64::NAN;
        assert!(!__lt(&nan, &1.0) && !__le(&nan, &1.0) && !__gt(&nan, &1.0) && !__ge(&nan, &1.0));
        assert!(__lt("a", "b"));
    }

    #[test]
    fn ranges_are_rusts_ranges_and_take_the_bounds_type() {
        const N: usize = 3;
        let r = __range(0, N);
        let _: &std::ops::Range<usize> = &r;
        assert_eq!(r.collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(__range(-2, 1).collect::<Vec<i32>>(), vec![-2, -1, 0]);
        assert_eq!(__range(5u8, 5).count(), 0);
    }
}
