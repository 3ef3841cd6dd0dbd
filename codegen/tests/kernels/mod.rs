//! Small kernels that exercise one family of lowering rules each, built with `FuncBuilder`.
#![allow(dead_code)]

use tilekit_ir::ScalarType::{self, *};
use tilekit_ir::{
    rt, rt_col, BcastAxis, BinaryFn, Dim3, FuncBuilder, MaskKind, MmaVariant, Module, ReduceAxis,
    ReduceFn, Scope, Swizzle, Type, UnaryFn, VecAxis,
};

fn module(b: FuncBuilder) -> Module {
    let mut m = Module::new();
    m.push(b.finish());
    tilekit_ir::verify(&m).expect("test kernel verifies");
    m
}

/// `x[i, j] *= s` over 16×16 f32 tiles (grid: column tiles × row tiles).
pub fn scale() -> Module {
    let mut b = FuncBuilder::kernel("scale", 1);
    let x = b.param("x", Type::global(F32, 2, true));
    let s = b.param("s", Type::scalar(F32));
    let (i, j) = (b.block_idx(Dim3::Y), b.block_idx(Dim3::X));
    let t = b.load(rt(F32, 16, 16), x, &[i, j]);
    let t = b.mul(t, s);
    b.store(x, t, &[i, j]);
    module(b)
}

/// `c = a·b` for one 16·m × 16·n tile per block, K looped in steps of 16, operands straight
/// from global memory (A row layout, B col layout), accumulator f32.
pub fn mma_global(m: u32, n: u32, variant: MmaVariant) -> Module {
    let mut b = FuncBuilder::kernel("mma_global", 1);
    let a = b.param("a", Type::global(BF16, 2, false));
    let bm = b.param("b", Type::global(BF16, 2, false));
    let c = b.param("c", Type::global(F32, 2, true));
    let (ti, tj) = (b.block_idx(Dim3::Y), b.block_idx(Dim3::X));
    let zero = b.const_i32(0);
    let one = b.const_i32(1);
    let kdim = b.dim(a, if variant.a_transposed() { 0 } else { 1 });
    let fifteen = b.const_i32(15);
    let sixteen = b.const_i32(16);
    let kp = b.add(kdim, fifteen);
    let kt = b.div(kp, sixteen);
    let acc = b.zeros(rt(F32, 16 * m, 16 * n));
    let acc = b.for_range(zero, kt, one, &[acc], |b, k, carried| {
        let af = if variant.a_transposed() {
            b.load(rt_col(BF16, 16, 16 * m), a, &[k, ti])
        } else {
            b.load(rt(BF16, 16 * m, 16), a, &[ti, k])
        };
        let bf = if variant.b_transposed() {
            b.load(rt(BF16, 16 * n, 16), bm, &[tj, k])
        } else {
            b.load(rt_col(BF16, 16, 16 * n), bm, &[k, tj])
        };
        vec![b.mma(variant, af, bf, carried[0])]
    });
    b.store(c, acc[0], &[ti, tj]);
    module(b)
}

/// Row softmax of a `rows × 64` f32 matrix, 16 rows per warp: max, exp2, sum, divide.
pub fn softmax_rows() -> Module {
    softmax_rows_in(tilekit_ir::Layout::Row)
}

/// [`softmax_rows`] on register tiles of the given layout.
pub fn softmax_rows_in(layout: tilekit_ir::Layout) -> Module {
    let mut b = FuncBuilder::kernel("softmax_rows", 1);
    let x = b.param("x", Type::global(F32, 2, false));
    let y = b.param("y", Type::global(F32, 2, true));
    let i = b.block_idx(Dim3::X);
    let zero = b.const_i32(0);
    let t = b.load(Type::tile(F32, 16, 64, layout), x, &[i, zero]);
    let mx = b.reduce(ReduceAxis::Row, ReduceFn::Max, t);
    let t = b.bcast(BcastAxis::Row, BinaryFn::Sub, t, mx);
    let t = b.unary(UnaryFn::Exp2, t);
    let s = b.reduce(ReduceAxis::Row, ReduceFn::Sum, t);
    let t = b.bcast(BcastAxis::Row, BinaryFn::Div, t, s);
    b.store(y, t, &[i, zero]);
    module(b)
}

/// GEMM through shared memory, as the acceptance kernel does it but small: a 32×32 block tile
/// with 4 warps (2×2, 16×16 each), block_k = 32, `copy @block` global → shared, a barrier,
/// `ldmatrix` loads of A (row) and B (col), `mma.ab`, and a bf16 or f32 store of C.
pub fn gemm_shared(out: ScalarType, swizzle: Swizzle) -> Module {
    let (bm, bn, bk) = (32, 32, 32);
    let mut b = FuncBuilder::kernel("gemm_shared", 4);
    let a = b.param("a", Type::global(BF16, 2, false));
    let bb = b.param("b", Type::global(BF16, 2, false));
    let c = b.param("c", Type::global(out, 2, true));
    let sa = b.alloc_shared(Type::shared_tile(BF16, bm, bk, swizzle));
    let sb = b.alloc_shared(Type::shared_tile(BF16, bk, bn, swizzle));
    let (tn, tm) = (b.block_idx(Dim3::X), b.block_idx(Dim3::Y));
    let w = b.warp_idx();
    let two = b.const_i32(2);
    let wr = b.binary(BinaryFn::Div, w, two);
    let wc = b.binary(BinaryFn::Rem, w, two);
    let zero = b.const_i32(0);
    let one = b.const_i32(1);
    let k = b.dim(a, 1);
    let km1 = b.const_i32(bk as i32 - 1);
    let kk = b.add(k, km1);
    let bkc = b.const_i32(bk as i32);
    let ktiles = b.div(kk, bkc);
    let acc = b.zeros(rt(F32, 16, 16));
    let acc = b.for_range(zero, ktiles, one, &[acc], |b, kt, carried| {
        b.copy(Scope::Block, sa, a, &[tm, kt]);
        b.copy(Scope::Block, sb, bb, &[kt, tn]);
        b.barrier();
        let af = b.load(rt(BF16, 16, bk), sa, &[wr, zero]);
        let bf = b.load(rt_col(BF16, bk, 16), sb, &[zero, wc]);
        let d = b.mma(MmaVariant::AB, af, bf, carried[0]);
        b.barrier();
        vec![d]
    });
    // C tile of this warp: block tile (tm, tn) of 32×32 is 16×16 tiles (2tm + wr, 2tn + wc).
    let tm2 = b.mul(tm, two);
    let tn2 = b.mul(tn, two);
    let ci = b.add(tm2, wr);
    let cj = b.add(tn2, wc);
    let res = if out == F32 {
        acc[0]
    } else {
        b.convert_dtype(acc[0], out)
    };
    b.store(c, res, &[ci, cj]);
    module(b)
}

/// Elementwise ops on 1-D data: `y = silu(x)·w + 1` over vectors of 64 (a cols vector),
/// with a `while` loop and an `if`.
pub fn vector_map() -> Module {
    let mut b = FuncBuilder::kernel("vector_map", 1);
    let x = b.param("x", Type::global(F32, 1, false));
    let y = b.param("y", Type::global(BF16, 1, true));
    let w = b.param("w", Type::scalar(F32));
    let i = b.block_idx(Dim3::X);
    let v = b.load(Type::vector(F32, 64, VecAxis::Cols), x, &[i]);
    let v = b.unary(UnaryFn::Silu, v);
    let v = b.mul(v, w);
    let onef = b.const_f32(1.0);
    let v = b.add(v, onef);
    let v = b.convert_dtype(v, BF16);
    b.store(y, v, &[i]);
    module(b)
}

/// A causal mask and `iota`, `fill`, `select`, scalar math and `if` on a 32×32 f32 tile.
pub fn masks() -> Module {
    let mut b = FuncBuilder::kernel("masks", 2);
    let y = b.param("y", Type::global(F32, 2, true));
    let n = b.param("n", Type::scalar(I32));
    let i = b.block_idx(Dim3::X);
    let w = b.warp_idx();
    let zero = b.const_i32(0);
    let thirty2 = b.const_i32(32);
    let r0 = b.mul(i, thirty2);
    let t = b.iota(rt(F32, 32, 32), BcastAxis::Col);
    let t = b.mask(MaskKind::Causal, -1.0, t, r0, zero);
    let t = b.mask(MaskKind::Cols, -2.0, t, zero, n);
    let is0 = b.cmp(tilekit_ir::CmpPred::Eq, w, zero);
    b.if_then(is0, |b| b.store(y, t, &[i, zero]));
    module(b)
}

/// `mma.ab @warpgroup` with both operands in shared memory: 4 warps, A a 64×32 shared tile (each
/// warp multiplies its 16 rows), B 32×16 shared, K looped; C tile (4·ti + warp, tj) of 16×16.
pub fn mma_warpgroup() -> Module {
    let mut b = FuncBuilder::kernel("mma_warpgroup", 4);
    let a = b.param("a", Type::global(BF16, 2, false));
    let bm = b.param("b", Type::global(BF16, 2, false));
    let c = b.param("c", Type::global(F32, 2, true));
    let sa = b.alloc_shared(Type::shared_tile(BF16, 64, 32, Swizzle::B64));
    let sb = b.alloc_shared(Type::shared_tile(BF16, 32, 16, Swizzle::B32));
    let (tj, ti) = (b.block_idx(Dim3::X), b.block_idx(Dim3::Y));
    let w = b.warp_idx();
    let zero = b.const_i32(0);
    let one = b.const_i32(1);
    let k = b.dim(a, 1);
    let k31 = b.const_i32(31);
    let k32 = b.const_i32(32);
    let kp = b.add(k, k31);
    let kt = b.div(kp, k32);
    let acc = b.zeros(rt(F32, 16, 16));
    let acc = b.for_range(zero, kt, one, &[acc], |b, kk, carried| {
        b.copy(Scope::Block, sa, a, &[ti, kk]);
        b.copy(Scope::Block, sb, bm, &[kk, tj]);
        b.barrier();
        let d = b.mma_warpgroup(MmaVariant::AB, sa, sb, carried[0]);
        b.barrier();
        vec![d]
    });
    let four = b.const_i32(4);
    let ti4 = b.mul(ti, four);
    let ci = b.add(ti4, w);
    b.store(c, acc[0], &[ci, tj]);
    module(b)
}

/// A kernel calling a helper (`axpy(t, s, v) = t·s + v` on a tile and a rows vector broadcast)
/// twice: calls are inlined.
pub fn with_helper() -> Module {
    let tile = rt(F32, 16, 32);
    let mut h = FuncBuilder::helper("axpy", vec![tile.clone()]);
    let t = h.param("t", tile.clone());
    let s = h.param("s", Type::scalar(F32));
    let v = h.param("v", Type::vector(F32, 16, VecAxis::Rows));
    let ts = h.mul(t, s);
    let r = h.bcast(BcastAxis::Row, BinaryFn::Add, ts, v);
    h.ret(&[r]);
    let helper = h.finish();

    let mut b = FuncBuilder::kernel("with_helper", 1);
    let x = b.param("x", Type::global(F32, 2, true));
    let s = b.param("s", Type::scalar(F32));
    let z = b.const_i32(0);
    let t = b.load(tile.clone(), x, &[z, z]);
    let v = b.reduce(ReduceAxis::Row, ReduceFn::Max, t);
    let r = b.call("axpy", &[t, s, v], vec![tile.clone()]);
    let r = b.call("axpy", &[r[0], s, v], vec![tile]);
    b.store(x, r[0], &[z, z]);
    let mut m = Module::new();
    m.push(b.finish());
    m.push(helper);
    tilekit_ir::verify(&m).expect("test kernel verifies");
    m
}

/// Scalar arithmetic and control flow: a `while` loop computing an integer power and a
/// Collatz-style count with `rem`, `shl`, `shr`, `select` and `if` with results, conversions
/// (saturating f32 → i8, i32 → bf16, u32), reductions of a vector to a scalar, atomics.
pub fn scalar_control() -> Module {
    use tilekit_ir::{CmpPred, Const};
    let mut b = FuncBuilder::kernel("scalar_control", 1);
    let out = b.param("out", Type::global(I32, 1, true));
    let acc = b.param("acc", Type::global(F32, 1, true));
    let n = b.param("n", Type::scalar(I32));
    let flag = b.param("flag", Type::scalar(Bool));
    let zero = b.const_i32(0);
    let one = b.const_i32(1);
    let two = b.const_i32(2);
    let three = b.const_i32(3);
    // while x != 1 { x = x even ? x >> 1 : 3x + 1; steps += 1 }
    let r = b.while_loop(
        &[n, zero],
        |b, v| {
            let c = b.cmp(CmpPred::Gt, v[0], one);
            (c, vec![v[0], v[1]])
        },
        |b, v| {
            let m = b.binary(BinaryFn::Rem, v[0], two);
            let even = b.cmp(CmpPred::Eq, m, zero);
            let half = b.binary(BinaryFn::Shr, v[0], one);
            let t3 = b.mul(v[0], three);
            let odd = b.add(t3, one);
            let next = b.select(even, half, odd);
            let steps = b.add(v[1], one);
            vec![next, steps]
        },
    );
    let sq = b.mul(r[1], r[1]);
    let sh = b.binary(BinaryFn::Shl, sq, n);
    let u = b.convert_dtype(sh, U32);
    let back = b.convert_dtype(u, I32);
    let chosen = b.if_else(
        flag,
        vec![Type::scalar(I32)],
        |_| vec![back],
        |b| {
            let neg = b.unary(UnaryFn::Neg, back);
            vec![neg]
        },
    );
    b.store(out, chosen[0], &[zero]);
    let f = b.convert_dtype(chosen[0], F32);
    let big = b.constant(Const::Float(1000.0), F32);
    let fb = b.mul(f, big);
    let two_f = b.const_f32(2.0);
    let fb = b.binary(BinaryFn::Pow, fb, two_f);
    let i8v = b.convert_dtype(fb, I8);
    let i8w = b.convert_dtype(i8v, I32);
    b.store(out, i8w, &[one]);
    let v = b.iota(Type::vector(F32, 64, VecAxis::Cols), BcastAxis::Row);
    let s = b.reduce(ReduceAxis::All, ReduceFn::Sum, v);
    let bf = b.convert_dtype(n, BF16);
    let bff = b.convert_dtype(bf, F32);
    let s = b.add(s, bff);
    b.atomic_add(acc, s, &[zero]);
    module(b)
}

/// Every mask kind on a 16×32 f32 tile of the given layout loaded at tile (i, 0):
/// `causal[-1](t, a, b)`, `anticausal[-2](t, b, a)`, `rows[-3](t, a, n)`, `cols[-4](t, b, n)`.
pub fn mask_kinds(layout: tilekit_ir::Layout) -> Module {
    let mut b = FuncBuilder::kernel("mask_kinds", 1);
    let x = b.param("x", Type::global(F32, 2, false));
    let y = b.param("y", Type::global(F32, 2, true));
    let ra = b.param("a", Type::scalar(I32));
    let rb = b.param("b", Type::scalar(I32));
    let n = b.param("n", Type::scalar(I32));
    let i = b.block_idx(Dim3::X);
    let zero = b.const_i32(0);
    let t = b.load(Type::tile(F32, 16, 32, layout), x, &[i, zero]);
    let t = b.mask(MaskKind::Causal, -1.0, t, ra, rb);
    let t = b.mask(MaskKind::AntiCausal, -2.0, t, rb, ra);
    let t = b.mask(MaskKind::Rows, -3.0, t, ra, n);
    let t = b.mask(MaskKind::Cols, -4.0, t, rb, n);
    b.store(y, t, &[i, zero]);
    module(b)
}

/// `h = convert(transpose(g))` for one 16×32 f32 row tile per warp (2 warps), stored as a 32×16
/// bf16 col tile: a transpose and a layout change, which go through per-warp scratch.
pub fn relayout() -> Module {
    let mut b = FuncBuilder::kernel("relayout", 2);
    let g = b.param("g", Type::global(F32, 2, false));
    let h = b.param("h", Type::global(BF16, 2, true));
    let z = b.const_i32(0);
    let t = b.load(rt(F32, 16, 32), g, &[z, z]);
    let t = b.transpose(t);
    let t = b.convert(t, rt_col(BF16, 32, 16));
    b.store(h, t, &[z, z]);
    module(b)
}

/// (kernel name, module) of the small kernels that both vendors' tests compile: scaling, row
/// softmax in both layouts, shared-memory GEMMs, vector maps, masks, warpgroup mma, helpers and
/// scalar control flow. Each vendor's tests add the `mma_global` variants they cover.
pub fn small() -> Vec<(&'static str, Module)> {
    vec![
        ("scale", scale()),
        ("softmax_rows", softmax_rows()),
        ("softmax_rows", softmax_rows_in(tilekit_ir::Layout::Col)),
        ("gemm_shared", gemm_shared(F32, Swizzle::None)),
        ("gemm_shared", gemm_shared(BF16, Swizzle::B128)),
        ("vector_map", vector_map()),
        ("masks", masks()),
        ("mma_warpgroup", mma_warpgroup()),
        ("with_helper", with_helper()),
        ("scalar_control", scalar_control()),
    ]
}
