//! Kernel mistakes are compile errors at the author's span: wrong shapes, dtypes and layouts
//! through the DSL's types, unsupported syntax through the macro. Each case in `tests/ui` has
//! its expected stderr beside it (`TRYBUILD=overwrite` regenerates them). The cases under
//! `tests/ui/pass` must compile and run; having one also makes trybuild build (not just check)
//! the cases, which the shape assertions (a tile side that is not a multiple of 16) need.

#[test]
fn kernel_mistakes_are_compile_errors() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/*.rs");
}
