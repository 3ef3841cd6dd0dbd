//! The verifier on malformed programs: each test builds one mistake and checks that the error
//! names its kind, the op, the op's position and what was expected. Well-formed kernels at the
//! end verify cleanly.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tilekit_ir::ScalarType::*;
use tilekit_ir::{
    rt, rt_col, verify, BcastAxis, BinaryFn, CmpPred, Const, Dim3, Func, FuncBuilder, FuncKind,
    Layout, Loc, MmaVariant, Module, Op, OpKind, Region, Scope, Swizzle, Type, UnaryFn, Value,
    VecAxis, VerifyError, VerifyErrorKind,
};

// ---- helpers ------------------------------------------------------------------------------------

fn module(funcs: Vec<Func>) -> Module {
    Module { funcs }
}

fn listing(errors: &[VerifyError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every error of a module that must not verify.
fn errors(funcs: Vec<Func>) -> Vec<VerifyError> {
    match verify(&module(funcs)) {
        Ok(()) => panic!("the module verified, but it is malformed"),
        Err(errors) => errors,
    }
}

/// The one error of a module that must not verify.
fn only_error(funcs: Vec<Func>) -> VerifyError {
    let mut errors = errors(funcs);
    assert_eq!(errors.len(), 1, "expected one error:\n{}", listing(&errors));
    errors.remove(0)
}

fn assert_verifies(funcs: Vec<Func>) {
    if let Err(errors) = verify(&module(funcs)) {
        panic!("expected no errors, got:\n{}", listing(&errors));
    }
}

/// Checks the op's name and path, and the message exactly (it follows the op's position).
fn assert_at(e: &VerifyError, op: &str, path: &str, message: &str) {
    assert_eq!((e.op.as_str(), e.path.as_str()), (op, path), "{e}");
    assert_eq!(e.kind.to_string(), message);
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("in @{}, op {path} `{op}` (", e.func)),
        "{text}"
    );
    assert!(text.ends_with(message), "{text}");
}

/// Checks an error about a function as a whole (no op).
fn assert_at_func(e: &VerifyError, func: &str, message: &str) {
    assert_eq!(
        (e.func.as_str(), e.op.as_str(), e.path.as_str()),
        (func, "", ""),
        "{e}"
    );
    assert_eq!(e.kind.to_string(), message);
    assert!(e.to_string().starts_with(&format!("in @{func} (")), "{e}");
}

/// Checks that the error points at `line` of this file (where the builder built the op).
fn assert_line(e: &VerifyError, line: u32) {
    match e.loc {
        Loc::Rust { file, line: l, .. } => {
            assert!(file.ends_with("verify_malformed.rs"), "{file}");
            assert_eq!(l, line, "{e}");
        }
        other => panic!("expected a Rust location, got {other:?}"),
    }
}

/// lo = 0, hi = 4, step = 1 (ops 0, 1, 2 of the body).
fn bounds(b: &mut FuncBuilder) -> (Value, Value, Value) {
    (b.const_i32(0), b.const_i32(4), b.const_i32(1))
}

fn st(dtype: tilekit_ir::ScalarType, rows: u32, cols: u32) -> Type {
    Type::shared_tile(dtype, rows, cols, Swizzle::None)
}

// ---- shapes -------------------------------------------------------------------------------------

#[test]
fn mma_with_mismatched_inner_dimension_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let a = b.zeros(rt(BF16, 16, 32));
    let bt = b.zeros(rt_col(BF16, 16, 16));
    let c = b.zeros(rt(F32, 16, 16));
    let line = line!() + 1;
    b.mma(MmaVariant::AB, a, bt, c);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Shape { .. }));
    assert_at(
        &e,
        "mma.ab",
        "3",
        "shape mismatch for B of mma.ab: expected K×N = 32x16 (K = 32 from A: rt<bf16, 16x32, row>; \
         N = 16 from C: rt<f32, 16x16, row>), found rt<bf16, 16x16, col>",
    );
    assert_line(&e, line);
}

#[test]
fn mma_abt_with_a_of_wrong_rows_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let a = b.zeros(rt(BF16, 32, 16));
    let bt = b.zeros(rt(BF16, 16, 16));
    let c = b.zeros(rt(F32, 16, 16));
    b.mma(MmaVariant::ABt, a, bt, c);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Shape { .. }));
    assert_at(
        &e,
        "mma.abt",
        "3",
        "shape mismatch for A of mma.abt: expected M×K = 16x16 (M = 16: the rows of C: \
         rt<f32, 16x16, row>), found rt<bf16, 32x16, row>",
    );
}

#[test]
fn bcast_row_with_vector_of_wrong_length_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let t = b.zeros(rt(F32, 32, 16));
    let v = b.zeros(Type::vector(F32, 16, VecAxis::Rows));
    b.bcast(BcastAxis::Row, BinaryFn::Sub, t, v);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Shape { .. }));
    assert_at(
        &e,
        "bcast_row.sub",
        "2",
        "shape mismatch for v: expected rv<f32, 32, rows> (one element per row of t: \
         rt<f32, 32x16, row>), found rv<f32, 16, rows>",
    );
}

#[test]
fn bcast_col_with_a_rows_vector_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let t = b.zeros(rt(F32, 32, 16));
    let v = b.zeros(Type::vector(F32, 16, VecAxis::Rows));
    b.bcast(BcastAxis::Col, BinaryFn::Mul, t, v);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Layout { .. }));
    assert_at(
        &e,
        "bcast_col.mul",
        "2",
        "layout mismatch for v: expected rv<f32, 16, cols> (one element per column of t: \
         rt<f32, 32x16, row>), found rv<f32, 16, rows>",
    );
}

#[test]
fn store_of_register_tile_into_shared_tile_of_other_shape_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let s = b.alloc_shared(st(BF16, 64, 64));
    let x = b.zeros(rt(BF16, 16, 32));
    b.store(s, x, &[]);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Shape { .. }));
    assert_at(
        &e,
        "store",
        "2",
        "shape mismatch for x: expected 64x64 (the shape of dst: st<bf16, 64x64, none>; a smaller \
         tile takes 2 tile coordinates), found rt<bf16, 16x32, row>",
    );
}

#[test]
fn load_of_a_tile_that_does_not_divide_the_shared_tile_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let s = b.alloc_shared(st(BF16, 64, 64));
    let i = b.const_i32(0);
    b.load(rt(BF16, 16, 48), s, &[i, i]);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Shape { .. }));
    assert_at(
        &e,
        "load",
        "2",
        "shape mismatch for result: expected a tile whose rows and cols divide those of src: \
         st<bf16, 64x64, none>, found rt<bf16, 16x48, row>",
    );
}

// ---- dtypes -------------------------------------------------------------------------------------

#[test]
fn mma_of_f32_by_bf16_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let a = b.zeros(rt(F32, 16, 16));
    let bt = b.zeros(rt_col(BF16, 16, 16));
    let c = b.zeros(rt(F32, 16, 16));
    b.mma(MmaVariant::AB, a, bt, c);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Dtype { .. }));
    assert_at(
        &e,
        "mma.ab",
        "3",
        "dtype mismatch for A and B: expected both bf16, both f16, both fp8 (f8e4m3/f8e5m2, in \
         any mix), or both f32 (multiplied in tf32), found f32 (rt<f32, 16x16, row>) and bf16 \
         (rt<bf16, 16x16, col>)",
    );
}

#[test]
fn mma_with_bf16_accumulator_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let a = b.zeros(rt(F8E4M3, 16, 32));
    let bt = b.zeros(rt_col(F8E5M2, 32, 16));
    let c = b.zeros(rt(BF16, 16, 16));
    b.mma(MmaVariant::AB, a, bt, c);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Dtype { .. }));
    assert_at(
        &e,
        "mma.ab",
        "3",
        "dtype mismatch for C: expected f32 (mma accumulates in f32), found bf16 (rt<bf16, 16x16, row>)",
    );
}

#[test]
fn load_with_dtype_other_than_the_global_view_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let x = b.param("x", Type::global(F32, 2, false));
    let i = b.const_i32(0);
    b.load(rt(BF16, 16, 16), x, &[i, i]);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Dtype { .. }));
    assert_at(
        &e,
        "load",
        "1",
        "dtype mismatch for result: expected f32 (the dtype of src: gl<f32, 2>), found bf16 \
         (rt<bf16, 16x16, row>)",
    );
}

#[test]
fn binary_map_of_mixed_dtypes_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let x = b.zeros(rt(F32, 16, 16));
    let y = b.zeros(rt(BF16, 16, 16));
    b.add(x, y);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Dtype { .. }));
    assert_at(
        &e,
        "map.add",
        "2",
        "dtype mismatch for y: expected rt<f32, 16x16, row> (the type of x), found rt<bf16, 16x16, row>",
    );
}

#[test]
fn binary_map_of_tile_and_scalar_of_another_dtype_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let s = b.param("s", Type::scalar(BF16));
    let x = b.zeros(rt(F32, 16, 16));
    b.mul(x, s);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Dtype { .. }));
    assert_at(
        &e,
        "map.mul",
        "1",
        "dtype mismatch for y: expected f32 (a scalar operand has the dtype of the other operand: \
         rt<f32, 16x16, row>), found a scalar bf16",
    );
}

#[test]
fn exp_of_an_integer_tile_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let x = b.zeros(rt(I32, 16, 16));
    b.unary(UnaryFn::Exp, x);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Dtype { .. }));
    assert_at(
        &e,
        "map.exp",
        "1",
        "dtype mismatch for x: expected a float dtype for map.exp, found i32 (rt<i32, 16x16, row>)",
    );
}

#[test]
fn integer_constant_out_of_range_of_i8_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    b.constant(Const::Int(300), I8);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Attribute { .. }));
    assert_at(
        &e,
        "const",
        "0",
        "bad attribute value: expected an i8 in -128..=127, found 300",
    );
}

// ---- layouts ------------------------------------------------------------------------------------

#[test]
fn mma_ab_with_b_in_row_layout_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let a = b.zeros(rt(BF16, 16, 16));
    let bt = b.zeros(rt(BF16, 16, 16));
    let c = b.zeros(rt(F32, 16, 16));
    b.mma(MmaVariant::AB, a, bt, c);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Layout { .. }));
    assert_at(
        &e,
        "mma.ab",
        "3",
        "layout mismatch for B of mma.ab: expected col (the layout mma.ab takes for B), found row \
         (rt<bf16, 16x16, row>)",
    );
}

// ---- scopes -------------------------------------------------------------------------------------

#[test]
fn barrier_at_warp_scope_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 2);
    b.op(OpKind::Barrier, Scope::Warp, &[], vec![]);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(
        e.kind,
        VerifyErrorKind::Scope {
            found: Scope::Warp,
            ..
        }
    ));
    assert_at(
        &e,
        "barrier",
        "0",
        "scope mismatch: op runs at block, found warp",
    );
}

#[test]
fn mma_at_block_scope_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 4);
    let a = b.zeros(rt(BF16, 16, 16));
    let bt = b.zeros(rt_col(BF16, 16, 16));
    let c = b.zeros(rt(F32, 16, 16));
    b.op(
        OpKind::Mma(MmaVariant::AB),
        Scope::Block,
        &[a, bt, c],
        vec![rt(F32, 16, 16)],
    );
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Scope { .. }));
    assert_at(
        &e,
        "mma.ab",
        "3",
        "scope mismatch: op runs at warp or warpgroup, found block",
    );
}

#[test]
fn alloc_shared_at_warp_scope_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    b.op(OpKind::AllocShared, Scope::Warp, &[], vec![Type::Semaphore]);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Scope { .. }));
    assert_at(
        &e,
        "alloc_shared",
        "0",
        "scope mismatch: op runs at block, found warp",
    );
}

// ---- memory spaces ------------------------------------------------------------------------------

#[test]
fn load_from_a_register_tile_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let t = b.zeros(rt(F32, 16, 16));
    b.load(rt(F32, 16, 16), t, &[]);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::MemorySpace { .. }));
    assert_at(
        &e,
        "load",
        "1",
        "memory space mismatch for src: expected a global view, shared tile or shared vector \
         (load reads from memory), found rt<f32, 16x16, row>",
    );
}

#[test]
fn copy_from_shared_to_shared_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let s1 = b.alloc_shared(st(BF16, 64, 64));
    let s2 = b.alloc_shared(st(BF16, 64, 64));
    b.copy(Scope::Block, s1, s2, &[]);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::MemorySpace { .. }));
    assert_at(
        &e,
        "copy",
        "2",
        "memory space mismatch for dst and src: expected a global view and a shared tile or shared \
         vector, one on each side, found dst st<bf16, 64x64, none> and src st<bf16, 64x64, none>",
    );
}

#[test]
fn store_to_read_only_global_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let x = b.param("x", Type::global(F32, 2, false));
    let i = b.const_i32(0);
    let t = b.zeros(rt(F32, 16, 16));
    b.store(x, t, &[i, i]);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::MemorySpace { .. }));
    assert_at(
        &e,
        "store",
        "2",
        "memory space mismatch for dst: expected a mutable global view (gl<f32, 2, mut>) to write \
         to, found the read-only view gl<f32, 2>",
    );
}

#[test]
fn warpgroup_mma_with_b_in_registers_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 4);
    let a = b.alloc_shared(st(BF16, 64, 16));
    let bt = b.zeros(rt_col(BF16, 16, 16));
    let c = b.zeros(rt(F32, 16, 16));
    b.mma_warpgroup(MmaVariant::AB, a, bt, c);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::MemorySpace { .. }));
    assert_at(
        &e,
        "mma.ab",
        "3",
        "memory space mismatch for B: expected a shared tile (st) at warpgroup scope, found \
         rt<bf16, 16x16, col>",
    );
}

#[test]
fn copy_async_into_a_register_tile_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let g = b.param("g", Type::global(BF16, 2, false));
    let sem = b.alloc_shared(Type::Semaphore);
    let t = b.zeros(rt(BF16, 16, 16));
    let i = b.const_i32(0);
    b.copy_async(t, g, sem, &[i, i]);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::MemorySpace { .. }));
    assert_at(
        &e,
        "copy_async",
        "3",
        "memory space mismatch for dst: expected a shared tile or shared vector (st or sv), found \
         rt<bf16, 16x16, row>",
    );
}

// ---- undefined values ---------------------------------------------------------------------------

#[test]
fn value_used_outside_its_region_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let (lo, hi, step) = bounds(&mut b);
    let mut inner = None;
    b.for_range(lo, hi, step, &[], |b, _i, _| {
        inner = Some(b.zeros(rt(F32, 16, 16)));
        vec![]
    });
    let t = inner.expect("the body ran");
    b.unary(UnaryFn::Exp, t);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Undefined { .. }));
    assert_at(
        &e,
        "map.exp",
        "4",
        "use of undefined value %4 (defined by op 3.0.0, which does not come before this use in \
         the same or an enclosing region)",
    );
}

#[test]
fn use_before_definition_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let x = b.zeros(rt(F32, 16, 16));
    let y = b.unary(UnaryFn::Neg, x);
    let mut f = b.finish();
    f.body.ops.swap(0, 1);
    let e = only_error(vec![f]);
    assert!(matches!(e.kind, VerifyErrorKind::Undefined { .. }));
    assert_at(
        &e,
        "map.neg",
        "0",
        "use of undefined value %0 (defined by op 1, which does not come before this use in the \
         same or an enclosing region)",
    );
    let _ = y;
}

#[test]
fn operand_missing_from_the_value_table_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let x = b.zeros(rt(F32, 16, 16));
    b.add(x, Value(999));
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Undefined { .. }));
    assert_at(
        &e,
        "map.add",
        "1",
        "use of undefined value %999 (the function has only 2 values)",
    );
}

// ---- terminators --------------------------------------------------------------------------------

#[test]
fn for_body_without_yield_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let (lo, hi, step) = bounds(&mut b);
    b.for_range(lo, hi, step, &[], |b, _i, _| {
        b.zeros(rt(F32, 16, 16));
        vec![]
    });
    let mut f = b.finish();
    f.body.ops[3].regions[0].ops.pop();
    let e = only_error(vec![f]);
    assert!(matches!(e.kind, VerifyErrorKind::Terminator { .. }));
    assert_at(
        &e,
        "for",
        "3",
        "bad terminator: expected `yield` as the last op of region 0 of `for` (op 3), found `fill` \
         as the last op",
    );
}

#[test]
fn yield_in_the_middle_of_a_region_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let (lo, hi, step) = bounds(&mut b);
    b.for_range(lo, hi, step, &[], |b, _i, _| {
        b.zeros(rt(F32, 16, 16));
        vec![]
    });
    let mut f = b.finish();
    let early = Op::new(OpKind::Yield, Scope::Warp, vec![], vec![]);
    f.body.ops[3].regions[0].ops.insert(0, early);
    let e = only_error(vec![f]);
    assert!(matches!(e.kind, VerifyErrorKind::Terminator { .. }));
    assert_at(
        &e,
        "yield",
        "3.0.0",
        "bad terminator: expected `yield` only as the last op of its region, found `yield` at \
         position 0 of 3 ops",
    );
}

#[test]
fn return_at_the_end_of_a_for_body_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let (lo, hi, step) = bounds(&mut b);
    b.for_range(lo, hi, step, &[], |_, _, _| vec![]);
    let mut f = b.finish();
    f.body.ops[3].regions[0].ops[0].kind = OpKind::Return;
    let e = only_error(vec![f]);
    assert!(matches!(e.kind, VerifyErrorKind::Terminator { .. }));
    assert_at(
        &e,
        "return",
        "3.0.0",
        "bad terminator: expected `yield` to end region 0 of `for` (op 3), found `return` as the \
         last op",
    );
}

#[test]
fn helper_without_return_is_rejected() {
    let mut b = FuncBuilder::helper("h", vec![]);
    b.const_i32(1);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Terminator { .. }));
    assert_at_func(
        &e,
        "h",
        "bad terminator: expected `return` as the last op of the body of @h, found `const` as the \
         last op",
    );
}

#[test]
fn if_branch_yielding_the_wrong_type_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let c = b.const_bool(true);
    b.if_else(
        c,
        vec![rt(F32, 16, 16)],
        |b| vec![b.zeros(rt(F32, 16, 16))],
        |b| vec![b.zeros(rt(F32, 32, 16))],
    );
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Shape { .. }));
    assert_at(
        &e,
        "yield",
        "1.1.1",
        "shape mismatch for operand 0: expected rt<f32, 16x16, row> (result 0 of the `if`), found \
         rt<f32, 32x16, row>",
    );
}

#[test]
fn while_condition_that_is_not_bool_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let n = b.const_i32(0);
    b.while_loop(
        &[n],
        |_, args| (args[0], vec![args[0]]),
        |_, args| vec![args[0]],
    );
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Dtype { .. }));
    assert_at(
        &e,
        "condition",
        "1.0.0",
        "dtype mismatch for operand 0: expected bool (the condition), found i32",
    );
}

#[test]
fn condition_without_operands_is_rejected_once() {
    let mut b = FuncBuilder::kernel("k", 1);
    let n = b.const_i32(0);
    let c = b.const_bool(false);
    b.while_loop(&[n], |_, _| (c, vec![]), |_, args| vec![args[0]]);
    let mut f = b.finish();
    f.body.ops[2].regions[0].ops[0].operands.clear();
    let e = only_error(vec![f]);
    assert!(matches!(e.kind, VerifyErrorKind::Arity { found: 0, .. }));
    assert_at(
        &e,
        "condition",
        "2.0.0",
        "wrong number of operands: expected at least 1 (c, v…), found 0",
    );
}

#[test]
fn for_yielding_fewer_values_than_it_carries_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let (lo, hi, step) = bounds(&mut b);
    let acc = b.zeros(rt(F32, 16, 16));
    b.for_range(lo, hi, step, &[acc], |_, _, _| vec![]);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Arity { found: 0, .. }));
    assert_at(
        &e,
        "yield",
        "4.0.0",
        "wrong number of operands of `yield`: expected 1 (the carried values of the `for`), found 0",
    );
}

// ---- attributes ---------------------------------------------------------------------------------

#[test]
fn sem_init_with_zero_arrivals_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let s = b.alloc_shared(Type::Semaphore);
    b.sem_init(s, 0);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Attribute { .. }));
    assert_at(
        &e,
        "sem.init",
        "1",
        "bad attribute arrival count n: expected 1 <= n <= 1048575 (a phase completes after n arrivals; mbarrier counts are 20-bit), found 0",
    );
}

#[test]
fn dim_3_of_a_rank_2_view_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let x = b.param("x", Type::global(F32, 2, false));
    b.dim(x, 3);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Attribute { .. }));
    assert_at(
        &e,
        "dim",
        "0",
        "bad attribute dimension index k: expected k < 2 (the rank of g: gl<f32, 2>), found 3",
    );
}

#[test]
fn kernel_with_no_warps_is_rejected() {
    let b = FuncBuilder::kernel("k", 0);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Attribute { .. }));
    assert_at_func(
        &e,
        "k",
        "bad attribute warps: expected 1..=32 warps per block, found 0",
    );
}

// ---- structure ----------------------------------------------------------------------------------

#[test]
fn alloc_shared_inside_a_for_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let (lo, hi, step) = bounds(&mut b);
    b.for_range(lo, hi, step, &[], |b, _i, _| {
        b.alloc_shared(Type::Semaphore);
        vec![]
    });
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Structure { .. }));
    assert_at(
        &e,
        "alloc_shared",
        "3.0.0",
        "`alloc_shared` inside region 0 of `for` (op 3): shared memory is allocated only at the top \
         level of a kernel body",
    );
}

#[test]
fn alloc_shared_in_a_helper_is_rejected() {
    let mut b = FuncBuilder::helper("h", vec![]);
    b.alloc_shared(Type::Semaphore);
    b.ret(&[]);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Structure { .. }));
    assert_at(
        &e,
        "alloc_shared",
        "0",
        "`alloc_shared` in helper @h: shared memory is allocated only at the top level of a kernel body",
    );
}

#[test]
fn call_to_an_unknown_function_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    b.call("nowhere", &[], vec![]);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Structure { .. }));
    assert_at(
        &e,
        "call",
        "0",
        "call to unknown function @nowhere: the module has no function of that name",
    );
}

#[test]
fn call_to_a_kernel_is_rejected() {
    let other = FuncBuilder::kernel("other", 1).finish();
    let mut b = FuncBuilder::kernel("k", 1);
    b.call("other", &[], vec![]);
    let e = only_error(vec![other, b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Structure { .. }));
    assert_eq!(e.func, "k");
    assert_at(
        &e,
        "call",
        "0",
        "call to kernel @other: only helper functions can be called (kernels are launched over a grid)",
    );
}

#[test]
fn call_with_an_argument_of_the_wrong_type_is_rejected() {
    let mut h = FuncBuilder::helper("h", vec![]);
    h.param("t", rt(F32, 16, 16));
    h.ret(&[]);
    let mut b = FuncBuilder::kernel("k", 1);
    let t = b.zeros(rt(F32, 16, 32));
    b.call("h", &[t], vec![]);
    let e = only_error(vec![h.finish(), b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Shape { .. }));
    assert_at(
        &e,
        "call",
        "1",
        "shape mismatch for argument 0: expected rt<f32, 16x16, row> (parameter 0 of @h), found \
         rt<f32, 16x32, row>",
    );
}

#[test]
fn mutual_recursion_is_rejected() {
    let mut a = FuncBuilder::helper("a", vec![]);
    a.call("b", &[], vec![]);
    a.ret(&[]);
    let mut bh = FuncBuilder::helper("b", vec![]);
    bh.const_i32(0);
    bh.call("a", &[], vec![]);
    bh.ret(&[]);
    let mut k = FuncBuilder::kernel("k", 1);
    k.call("a", &[], vec![]);
    let e = only_error(vec![k.finish(), a.finish(), bh.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Structure { .. }));
    assert_eq!(e.func, "b");
    assert_at(
        &e,
        "call",
        "1",
        "recursive call: @a → @b → @a (helpers are inlined, so calls may not form a cycle)",
    );
}

#[test]
fn self_recursion_is_rejected() {
    let mut h = FuncBuilder::helper("h", vec![]);
    h.call("h", &[], vec![]);
    h.ret(&[]);
    let e = only_error(vec![h.finish()]);
    assert_at(
        &e,
        "call",
        "0",
        "recursive call: @h → @h (helpers are inlined, so calls may not form a cycle)",
    );
}

#[test]
fn duplicate_function_names_are_rejected() {
    let mut h1 = FuncBuilder::helper("h", vec![]);
    h1.ret(&[]);
    let mut h2 = FuncBuilder::helper("h", vec![]);
    h2.ret(&[]);
    let e = only_error(vec![h1.finish(), h2.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Structure { .. }));
    assert_at_func(
        &e,
        "h",
        "duplicate function name @h: function 1 of the module has the name of function 0",
    );
}

#[test]
fn value_defined_twice_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    b.const_i32(0);
    b.const_i32(1);
    let mut f = b.finish();
    f.body.ops[1].results[0] = Value(0);
    let e = only_error(vec![f]);
    assert!(matches!(e.kind, VerifyErrorKind::Structure { .. }));
    assert_at(
        &e,
        "const",
        "1",
        "result 0 %0 redefines a value already defined by op 0; each value is defined once",
    );
}

// ---- types --------------------------------------------------------------------------------------

#[test]
fn tile_with_20_rows_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let t = b.zeros(rt(F32, 20, 16));
    b.unary(UnaryFn::Exp, t);
    // One error, at the definition: the use is not checked again.
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Shape { .. }));
    assert_at(
        &e,
        "fill",
        "0",
        "shape mismatch for result 0 %0: expected a register tile whose rows and cols are positive \
         multiples of 16, found rt<f32, 20x16, row>",
    );
}

#[test]
fn i64_register_tile_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    b.zeros(rt(I64, 16, 16));
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Dtype { .. }));
    assert_at(
        &e,
        "fill",
        "0",
        "dtype mismatch for result 0 %0: expected a register tile or vector dtype other than i64, \
         found rt<i64, 16x16, row>",
    );
}

#[test]
fn kernel_param_of_tile_type_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    b.param("t", rt(F32, 16, 16));
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Type { .. }));
    assert_at_func(
        &e,
        "k",
        "type mismatch for kernel parameter 0 %t: expected a global view (gl) or a scalar: kernels \
         take tensors and scalars, found rt<f32, 16x16, row>",
    );
}

#[test]
fn global_view_of_rank_5_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    b.param("x", Type::global(F32, 5, false));
    let e = only_error(vec![b.finish()]);
    assert_at_func(
        &e,
        "k",
        "shape mismatch for parameter 0 %x: expected a global view of rank 1..=4, found gl<f32, 5>",
    );
}

#[test]
fn warpgroup_op_with_2_warps_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 2);
    let a = b.alloc_shared(st(BF16, 64, 16));
    let bs = b.alloc_shared(st(BF16, 16, 16));
    let c = b.zeros(rt(F32, 16, 16));
    b.mma_warpgroup(MmaVariant::AB, a, bs, c);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Structure { .. }));
    assert_at(
        &e,
        "mma.ab",
        "3",
        "kernel @k has 2 warps per block, but this op runs at warpgroup scope, which needs a \
         multiple of 4 warps",
    );
}

#[test]
fn helper_with_warpgroup_ops_called_from_a_kernel_with_6_warps_is_rejected() {
    let mut h = FuncBuilder::helper("stage", vec![]);
    let s = h.param("s", st(BF16, 64, 16));
    h.load_at(Scope::Warpgroup, rt(BF16, 16, 16), s, &[]);
    h.ret(&[]);
    let mut b = FuncBuilder::kernel("k", 6);
    let s = b.alloc_shared(st(BF16, 64, 16));
    b.call("stage", &[s], vec![]);
    let e = only_error(vec![h.finish(), b.finish()]);
    assert_eq!(e.func, "k");
    assert_at(
        &e,
        "call",
        "1",
        "kernel @k has 6 warps per block, but @stage (called here) runs warpgroup-scope ops, which \
         need a multiple of 4 warps",
    );
}

#[test]
fn warpgroup_mma_with_wrong_group_rows_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 4);
    let a = b.alloc_shared(st(BF16, 16, 16));
    let bs = b.alloc_shared(st(BF16, 16, 16));
    let c = b.zeros(rt(F32, 16, 16));
    b.mma_warpgroup(MmaVariant::AB, a, bs, c);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Shape { .. }));
    assert_at(
        &e,
        "mma.ab",
        "3",
        "shape mismatch for A of mma.ab: expected M×K = 64x16 (M = 64: 4 × the rows of C: \
         rt<f32, 16x16, row>, at warpgroup scope), found st<bf16, 16x16, none>",
    );
}

#[test]
fn warpgroup_mma_with_a_register_a_of_the_groups_rows_is_rejected() {
    // A register A at warpgroup scope holds this warp's rows of op(A), as C does.
    let mut b = FuncBuilder::kernel("k", 4);
    let a = b.zeros(rt(BF16, 64, 16));
    let bs = b.alloc_shared(st(BF16, 16, 32));
    let c = b.zeros(rt(F32, 16, 32));
    b.mma_warpgroup(MmaVariant::AB, a, bs, c);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Shape { .. }));
    assert_at(
        &e,
        "mma.ab",
        "3",
        "shape mismatch for A of mma.ab: expected M×K = 16x16 (M = 16: the rows of C: \
         rt<f32, 16x32, row>; at warpgroup scope a register A holds this warp's rows), found \
         rt<bf16, 64x16, row>",
    );
}

#[test]
fn warpgroup_load_from_a_shared_tile_without_four_times_the_rows_is_rejected() {
    let mut b = FuncBuilder::kernel("k", 4);
    let s = b.alloc_shared(st(BF16, 32, 64));
    b.load_at(Scope::Warpgroup, rt(BF16, 16, 64), s, &[]);
    let e = only_error(vec![b.finish()]);
    assert!(matches!(e.kind, VerifyErrorKind::Shape { .. }));
    assert_at(
        &e,
        "load",
        "1",
        "shape mismatch for src: expected a shared tile of 64x64 (4 × the rows of result: \
         rt<bf16, 16x64, row>) at warpgroup scope, found st<bf16, 32x64, none>",
    );
}

#[test]
fn huge_tiles_do_not_overflow_the_warpgroup_shape_rules() {
    // 0x4000_0000 rows are a multiple of 16, and 4 × that does not fit in a u32.
    let huge = 0x4000_0000;
    let mut b = FuncBuilder::kernel("k", 4);
    let a = b.alloc_shared(st(BF16, 64, 16));
    let bs = b.alloc_shared(st(BF16, 16, 16));
    let c = b.zeros(rt(F32, huge, 16));
    b.mma_warpgroup(MmaVariant::AB, a, bs, c);
    b.load_at(Scope::Warpgroup, rt(BF16, huge, 16), a, &[]);
    let errors = errors(vec![b.finish()]);
    let kinds: Vec<_> = errors
        .iter()
        .map(|e| {
            (
                e.op.as_str(),
                matches!(e.kind, VerifyErrorKind::Shape { .. }),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("mma.ab", true), ("load", true)],
        "{}",
        listing(&errors)
    );
    assert!(
        errors[0].to_string().contains("M×K = 4294967296x16"),
        "{}",
        errors[0]
    );
}

// ---- several errors -----------------------------------------------------------------------------

#[test]
fn independent_errors_are_all_reported_in_order() {
    let mut b = FuncBuilder::kernel("k", 1);
    let x = b.param("x", Type::global(F32, 2, false));
    b.dim(x, 2);
    b.op(OpKind::Barrier, Scope::Warp, &[], vec![]);
    let (lo, hi, step) = bounds(&mut b);
    b.for_range(lo, hi, step, &[], |b, _, _| {
        let s = b.alloc_shared(Type::Semaphore);
        b.sem_init(s, 0);
        vec![]
    });
    let errors = errors(vec![b.finish()]);
    let at: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.path.as_str(), e.op.as_str()))
        .collect();
    assert_eq!(
        at,
        [
            ("0", "dim"),
            ("1", "barrier"),
            ("5.0.0", "alloc_shared"),
            ("5.0.1", "sem.init")
        ],
        "{}",
        listing(&errors)
    );
}

#[test]
fn malformed_ops_built_by_hand_never_panic() {
    // Arities, scopes, regions and value numbers drawn at random: the verifier must report
    // errors, never panic.
    let mut rng = SmallRng::seed_from_u64(0x7113_4b17);
    let kinds = sample_kinds();
    let types = sample_types();
    for _ in 0..3000 {
        let mut f = Func::new(
            "f",
            if rng.gen_bool(0.5) {
                FuncKind::Kernel {
                    warps: rng.gen_range(0..40),
                }
            } else {
                FuncKind::Helper
            },
        );
        for _ in 0..rng.gen_range(0..30) {
            let ty = types[rng.gen_range(0..types.len())].clone();
            f.new_value(ty, None);
        }
        let n = f.value_types.len() as u32 + 3;
        for _ in 0..rng.gen_range(0..4) {
            f.params.push(Value(rng.gen_range(0..n)));
        }
        if rng.gen_bool(0.3) {
            f.results.push(types[rng.gen_range(0..types.len())].clone());
        }
        f.body = random_region(&mut rng, &kinds, n, 0);
        let other = Func::new("g", FuncKind::Helper);
        let _ = verify(&module(vec![f, other]));
    }
}

fn random_region(rng: &mut SmallRng, kinds: &[OpKind], n: u32, depth: u32) -> Region {
    let mut region = Region::default();
    for _ in 0..rng.gen_range(0..3) {
        region.args.push(Value(rng.gen_range(0..n)));
    }
    for _ in 0..rng.gen_range(0..8) {
        let kind = kinds[rng.gen_range(0..kinds.len())].clone();
        let scope = [Scope::Warp, Scope::Warpgroup, Scope::Block][rng.gen_range(0..3)];
        let operands = (0..rng.gen_range(0..6))
            .map(|_| Value(rng.gen_range(0..n)))
            .collect();
        let results = (0..rng.gen_range(0..3))
            .map(|_| Value(rng.gen_range(0..n)))
            .collect();
        let mut op = Op::new(kind, scope, operands, results);
        if depth < 3 {
            for _ in 0..rng.gen_range(0..3) {
                op.regions.push(random_region(rng, kinds, n, depth + 1));
            }
        }
        region.ops.push(op);
    }
    region
}

fn sample_kinds() -> Vec<OpKind> {
    use tilekit_ir::{MaskKind, ReduceAxis, ReduceFn};
    let mut kinds = vec![
        OpKind::Const(Const::Int(7)),
        OpKind::Const(Const::Float(0.5)),
        OpKind::Const(Const::Bool(true)),
        OpKind::BlockIdx(Dim3::X),
        OpKind::NumWarps,
        OpKind::GlobalDim(1),
        OpKind::Fill(1.0),
        OpKind::Splat,
        OpKind::Iota(BcastAxis::Col),
        OpKind::Cmp(CmpPred::Lt),
        OpKind::Select,
        OpKind::Convert,
        OpKind::Transpose,
        OpKind::Reduce(ReduceAxis::Row, ReduceFn::Sum),
        OpKind::Reduce(ReduceAxis::All, ReduceFn::Max),
        OpKind::Mask(MaskKind::Causal, f64::NEG_INFINITY),
        OpKind::AllocShared,
        OpKind::SharedIndex,
        OpKind::Load,
        OpKind::Store,
        OpKind::Copy,
        OpKind::CopyAsync,
        OpKind::GatherRows,
        OpKind::ScatterRows { add: true },
        OpKind::AtomicAdd,
        OpKind::Barrier,
        OpKind::SemInit(0),
        OpKind::SemWait,
        OpKind::For,
        OpKind::If,
        OpKind::While,
        OpKind::Yield,
        OpKind::Condition,
        OpKind::Return,
        OpKind::Call("f".into()),
        OpKind::Call("g".into()),
        OpKind::Call("none".into()),
    ];
    kinds.extend(MmaVariant::ALL.map(OpKind::Mma));
    kinds.extend(UnaryFn::ALL.map(OpKind::Unary));
    kinds.extend(BinaryFn::ALL.map(OpKind::Binary));
    kinds.push(OpKind::Bcast(BcastAxis::Row, BinaryFn::Pow));
    kinds
}

fn sample_types() -> Vec<Type> {
    vec![
        Type::scalar(I32),
        Type::scalar(F32),
        Type::scalar(Bool),
        Type::scalar(I64),
        rt(BF16, 16, 16),
        rt_col(BF16, 16, 32),
        rt(F32, 16, 16),
        rt(F32, 20, 16),
        rt(I64, 16, 16),
        Type::vector(I32, 16, VecAxis::Rows),
        Type::vector(F32, 16, VecAxis::Cols),
        st(BF16, 64, 16),
        st(F32, 16, 16),
        Type::shared_vector(F32, 16),
        Type::global(F32, 2, true),
        Type::global(BF16, 1, false),
        Type::global(F32, 0, false),
        Type::Semaphore,
        Type::shared_array(Type::Semaphore, 2),
        Type::shared_array(Type::scalar(F32), 0),
        Type::tile(F32, 0, 16, Layout::Col),
        // Well formed, but 4 × its rows overflows u32.
        Type::tile(BF16, 0xFFFF_FFF0, 16, Layout::Row),
        Type::shared_tile(BF16, 0xFFFF_FFF0, 16, Swizzle::None),
        rt(F32, 0xFFFF_FFF0, 16),
    ]
}

// ---- well-formed kernels ------------------------------------------------------------------------

/// C[i, j] = Σ_k A[i, k]·B[k, j] over 16×16 tiles, with `mma.ab` in a loop.
#[test]
fn gemm_loop_with_mma_ab_verifies() {
    let mut b = FuncBuilder::kernel("gemm", 1);
    let a = b.param("a", Type::global(BF16, 2, false));
    let bm = b.param("b", Type::global(BF16, 2, false));
    let c = b.param("c", Type::global(F32, 2, true));
    let (i, j) = (b.block_idx(Dim3::Y), b.block_idx(Dim3::X));
    let k_dim = b.dim(a, 1);
    let sixteen = b.const_i32(16);
    let k_tiles = b.div(k_dim, sixteen);
    let (zero, one) = (b.const_i32(0), b.const_i32(1));
    let acc = b.zeros(rt(F32, 16, 16));
    let acc = b.for_range(zero, k_tiles, one, &[acc], |b, kk, carried| {
        let ta = b.load(rt(BF16, 16, 16), a, &[i, kk]);
        let tb = b.load(rt_col(BF16, 16, 16), bm, &[kk, j]);
        vec![b.mma(MmaVariant::AB, ta, tb, carried[0])]
    });
    b.store(c, acc[0], &[i, j]);
    assert_verifies(vec![b.finish()]);
}

/// A warpgroup multiplies 64×32 by 32×64 from shared memory; each warp keeps 16 rows of C.
#[test]
fn warpgroup_mma_with_shared_operands_verifies() {
    let mut b = FuncBuilder::kernel("wgmma", 4);
    let a = b.param("a", Type::global(BF16, 2, false));
    let bm = b.param("b", Type::global(BF16, 2, false));
    let c = b.param("c", Type::global(F32, 2, true));
    let sa = b.alloc_shared(st(BF16, 64, 32));
    let sb = b.alloc_shared(Type::shared_tile(BF16, 64, 32, Swizzle::B64));
    let zero = b.const_i32(0);
    b.copy(Scope::Block, sa, a, &[zero, zero]);
    b.copy(Scope::Warpgroup, sb, bm, &[zero, zero]);
    b.barrier();
    let acc = b.zeros(rt(F32, 16, 64));
    let acc = b.mma_warpgroup(MmaVariant::ABt, sa, sb, acc);
    let w = b.warp_idx();
    let out = b.convert_dtype(acc, F32);
    b.store(c, out, &[w, zero]);
    let ra = b.load_at(Scope::Warpgroup, rt(BF16, 16, 32), sa, &[]);
    let _ = ra;
    assert_verifies(vec![b.finish()]);
}

/// Every mma variant at warp scope, and at warpgroup scope with A in registers (this warp's
/// rows) or in shared memory (the group's rows).
#[test]
fn mma_variants_at_both_scopes_verify() {
    let mut b = FuncBuilder::kernel("mma_variants", 8);
    let x = b.param("x", Type::global(BF16, 2, false));
    let y = b.param("y", Type::global(F32, 2, true));
    let w = b.warp_idx();
    let sa = b.alloc_shared(Type::shared_tile(BF16, 64, 64, Swizzle::B64));
    let sb = b.alloc_shared(Type::shared_tile(BF16, 64, 64, Swizzle::B32));
    b.copy(Scope::Warpgroup, sa, x, &[w, w]);
    b.copy(Scope::Warp, sb, x, &[w, w]);
    b.barrier();
    let a_row = b.load(rt(BF16, 16, 16), x, &[w, w]);
    let a_col = b.load(rt_col(BF16, 16, 16), x, &[w, w]);
    let c = b.zeros(rt(F32, 16, 16));
    let d = b.mma(MmaVariant::AB, a_row, a_col, c);
    let d = b.mma(MmaVariant::ABt, a_row, a_row, d);
    let d = b.mma(MmaVariant::AtB, a_col, a_col, d);
    let d = b.mma(MmaVariant::AtBt, a_col, a_row, d);
    let a_wg = b.load_at(Scope::Warpgroup, rt(BF16, 16, 64), sa, &[]);
    let cw = b.zeros(rt(F32, 16, 64));
    let e = b.mma_warpgroup(MmaVariant::AB, a_wg, sb, cw);
    let e = b.mma_warpgroup(MmaVariant::ABt, sa, sb, e);
    let e = b.mma_warpgroup(MmaVariant::AtB, sa, sb, e);
    let e = b.mma_warpgroup(MmaVariant::AtBt, sa, sb, e);
    b.store_at(Scope::Warpgroup, sa, a_wg, &[]);
    b.store(y, d, &[w, w]);
    b.store(y, e, &[w, w]);
    assert_verifies(vec![b.finish()]);
}

/// Counts up to a bound with `while`, then writes it.
#[test]
fn while_loop_verifies() {
    let mut b = FuncBuilder::kernel("count", 1);
    let out = b.param("out", Type::global(I32, 1, true));
    let n = b.param("n", Type::scalar(I32));
    let zero = b.const_i32(0);
    let r = b.while_loop(
        &[zero],
        |b, args| (b.cmp(CmpPred::Lt, args[0], n), vec![args[0]]),
        |b, args| {
            let one = b.const_i32(1);
            vec![b.add(args[0], one)]
        },
    );
    let v = b.splat(Type::vector(I32, 16, VecAxis::Rows), r[0]);
    b.store(out, v, &[zero]);
    assert_verifies(vec![b.finish()]);
}

/// A helper scales a tile by a scalar; a kernel calls it between a load and a store.
#[test]
fn helper_call_verifies() {
    let tile = rt(F32, 32, 16);
    let mut h = FuncBuilder::helper("scale", vec![tile.clone()]);
    let t = h.param("t", tile.clone());
    let s = h.param("s", Type::scalar(F32));
    let r = h.mul(s, t);
    let r = h.unary(UnaryFn::Silu, r);
    h.ret(&[r]);

    let mut b = FuncBuilder::kernel("k", 2);
    let x = b.param("x", Type::global(F32, 2, true));
    let s = b.param("s", Type::scalar(F32));
    let (i, j) = (b.block_idx(Dim3::Y), b.block_idx(Dim3::X));
    let t = b.load(tile.clone(), x, &[i, j]);
    let r = b.call("scale", &[t, s], vec![tile]);
    let m = b.reduce(tilekit_ir::ReduceAxis::Row, tilekit_ir::ReduceFn::Max, r[0]);
    let r = b.bcast(BcastAxis::Row, BinaryFn::Sub, r[0], m);
    b.store(x, r, &[i, j]);
    assert_verifies(vec![h.finish(), b.finish()]);
}

/// A two-stage pipeline: shared arrays of tiles and semaphores, async copies, waits, masks.
#[test]
fn async_copy_pipeline_verifies() {
    let mut b = FuncBuilder::kernel("pipe", 4);
    let g = b.param("g", Type::global(BF16, 2, false));
    let out = b.param("out", Type::global(F32, 2, true));
    let idx = b.param("idx", Type::global(I32, 1, false));
    let tiles = b.alloc_shared(Type::shared_array(st(BF16, 64, 64), 2));
    let sems = b.alloc_shared(Type::shared_array(Type::Semaphore, 2));
    let (zero, one, two) = (b.const_i32(0), b.const_i32(1), b.const_i32(2));
    let w = b.warp_idx();
    let first = b.cmp(CmpPred::Eq, w, zero);
    b.if_then(first, |b| {
        let s0 = b.shared_index(sems, zero);
        let s1 = b.shared_index(sems, one);
        b.sem_init(s0, 1);
        b.sem_init(s1, 1);
    });
    b.barrier();
    let acc = b.zeros(rt(F32, 16, 16));
    let acc = b.for_range(zero, two, one, &[acc], |b, k, carried| {
        let slot = b.shared_index(tiles, k);
        let sem = b.shared_index(sems, k);
        b.sem_expect(sem, 64 * 64 * 2);
        b.copy_async(slot, g, sem, &[k, zero]);
        b.sem_arrive(sem);
        b.sem_wait(sem, zero);
        let t = b.load(rt(BF16, 16, 16), slot, &[w, zero]);
        let t = b.convert_dtype(t, F32);
        let t = b.mask(
            tilekit_ir::MaskKind::Causal,
            f64::NEG_INFINITY,
            t,
            zero,
            zero,
        );
        vec![b.add(carried[0], t)]
    });
    let rows = b.load(Type::vector(I32, 16, VecAxis::Rows), idx, &[zero]);
    b.scatter_rows(true, out, acc[0], rows, zero);
    let total = b.reduce(
        tilekit_ir::ReduceAxis::All,
        tilekit_ir::ReduceFn::Sum,
        acc[0],
    );
    b.atomic_add(out, total, &[zero, zero]);
    let gathered = b.gather_rows(rt(F32, 16, 32), out, rows, one);
    let _ = gathered;
    assert_verifies(vec![b.finish()]);
}

#[test]
fn sem_counts_beyond_20_bits_are_rejected() {
    let mut b = FuncBuilder::kernel("k", 1);
    let s = b.alloc_shared(Type::Semaphore);
    b.sem_init(s, 1 << 20);
    b.sem_expect(s, 2_000_000);
    let errors = errors(vec![b.finish()]);
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 2, "{text:?}");
    assert!(
        text[0].contains("`sem.init`") && text[0].contains("found 1048576"),
        "{text:?}"
    );
    assert!(
        text[1].contains("`sem.expect`")
            && text[1].contains("expected 1 <= b <= 1048575 (mbarrier transaction counts are 20-bit), found 2000000"),
        "{text:?}"
    );
}
