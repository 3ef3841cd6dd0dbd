//! Shared pieces of the cross-crate tests.

pub mod compare;
pub mod fuzz;
pub mod random;
