//! The text form round-trips: printing a module, parsing the text and printing again gives the
//! same text, and canonical text parses to a module that prints as that text.

use std::collections::BTreeSet;

use tilekit_ir::ScalarType::*;
use tilekit_ir::*;

/// The module that exercises every op kind, every attribute value and every scalar type.
fn every_op_module() -> Module {
    let mut m = Module::new();
    m.push(gemm());
    m.push(mma_variants());
    m.push(softmax_masked());
    m.push(moe_pipeline());
    m.push(constants());
    m.push(gelu_scale());
    m.push(min_max());
    m.push(arrive());
    m.push(positions());
    m.push(mma_async_ring());
    m
}

/// A pipelined GEMM: shared staging through a two-slot ring, warp-level `mma.ab`.
fn gemm() -> Func {
    let mut b = FuncBuilder::kernel("gemm", 4);
    let a = b.param("a", Type::global(BF16, 2, false));
    let bm = b.param("b", Type::global(BF16, 2, false));
    let c = b.param("c", Type::global(F32, 2, true));
    let k_tiles = b.param("k_tiles", Type::scalar(I32));
    let row = b.block_idx(Dim3::Y);
    b.name(row, "row");
    let col = b.block_idx(Dim3::X);
    b.name(col, "col");
    let ring = b.alloc_shared(Type::shared_array(
        Type::shared_tile(BF16, 64, 16, Swizzle::B128),
        2,
    ));
    b.name(ring, "ring");
    let acc = b.zeros(rt(F32, 64, 64));
    b.name(acc, "acc");
    let zero = b.const_i32(0);
    let one = b.const_i32(1);
    let two = b.const_i32(2);
    let out = b.for_range(zero, k_tiles, one, &[acc], |b, k, carried| {
        let slot = b.binary(BinaryFn::Rem, k, two);
        let stage = b.shared_index(ring, slot);
        b.copy(Scope::Block, stage, a, &[row, k]);
        b.barrier();
        let ta = b.load(rt(BF16, 64, 16), stage, &[]);
        let tb = b.load(rt_col(BF16, 16, 64), bm, &[k, col]);
        vec![b.mma(MmaVariant::AB, ta, tb, carried[0])]
    });
    b.store(c, out[0], &[row, col]);
    b.finish()
}

/// Every mma variant at warp scope (register operands) and at warpgroup scope (shared B), with
/// the warpgroup result written out through shared memory.
fn mma_variants() -> Func {
    let mut b = FuncBuilder::kernel("mma_variants", 4);
    let x = b.param("x", Type::global(BF16, 2, false));
    let y = b.param("y", Type::global(F32, 2, true));
    let w = b.warp_idx();
    let g = b.warpgroup_idx();
    let _n = b.num_warps();
    let sa = b.alloc_shared(Type::shared_tile(BF16, 64, 64, Swizzle::B64));
    let sb = b.alloc_shared(Type::shared_tile(BF16, 64, 64, Swizzle::B32));
    let so = b.alloc_shared(Type::shared_tile(F32, 64, 64, Swizzle::None));
    let zero = b.const_i32(0);
    let lead = b.cmp(CmpPred::Eq, w, zero);
    b.copy(Scope::Warpgroup, sa, x, &[g, g]);
    b.if_then(lead, |b| b.copy(Scope::Warp, sb, x, &[g, zero]));
    b.barrier();
    let a_row = b.load(rt(BF16, 16, 16), x, &[w, w]);
    let a_col = b.load(rt_col(BF16, 16, 16), x, &[w, w]);
    let c = b.zeros(rt(F32, 16, 16));
    let d = b.mma(MmaVariant::AB, a_row, a_col, c);
    let d = b.mma(MmaVariant::ABt, a_row, a_row, d);
    let d = b.mma(MmaVariant::AtB, a_col, a_col, d);
    let d = b.mma(MmaVariant::AtBt, a_col, a_row, d);
    b.store(y, d, &[w, g]);
    let a_wg = b.load_at(Scope::Warpgroup, rt(BF16, 16, 64), sa, &[]);
    let cw = b.zeros(rt(F32, 16, 64));
    let e = b.mma_warpgroup(MmaVariant::AB, a_wg, sb, cw);
    let e = b.mma_warpgroup(MmaVariant::ABt, sa, sb, e);
    let e = b.mma_warpgroup(MmaVariant::AtB, sa, sb, e);
    let e = b.mma_warpgroup(MmaVariant::AtBt, sa, sb, e);
    b.store_at(Scope::Warpgroup, so, e, &[]);
    b.barrier();
    b.copy(Scope::Warpgroup, y, so, &[g, g]);
    b.finish()
}

/// A K loop of asynchronous warpgroup mmas over a two-stage ring: one group kept in flight
/// (`mma_wait[1]`), the accumulator retired after the loop (`mma_wait[0]`); the warpgroup's
/// register budget lowered, then raised, first (`setmaxnreg`).
fn mma_async_ring() -> Func {
    let mut b = FuncBuilder::kernel("mma_async_ring", 4);
    let x = b.param("x", Type::global(BF16, 2, false));
    let y = b.param("y", Type::global(F32, 2, true));
    let k_tiles = b.param("k_tiles", Type::scalar(I32));
    let w = b.warp_idx();
    let ring_a = b.alloc_shared(Type::shared_array(
        Type::shared_tile(BF16, 64, 32, Swizzle::B64),
        2,
    ));
    let ring_b = b.alloc_shared(Type::shared_array(
        Type::shared_tile(BF16, 64, 32, Swizzle::B64),
        2,
    ));
    b.setmaxnreg(false, 40);
    b.setmaxnreg(true, 232);
    let acc = b.zeros(rt(F32, 16, 64));
    let zero = b.const_i32(0);
    let one = b.const_i32(1);
    let two = b.const_i32(2);
    let out = b.for_range(zero, k_tiles, one, &[acc], |b, k, carried| {
        let slot = b.binary(BinaryFn::Rem, k, two);
        let sa = b.shared_index(ring_a, slot);
        let sb = b.shared_index(ring_b, slot);
        b.copy(Scope::Block, sa, x, &[zero, k]);
        b.copy(Scope::Block, sb, x, &[zero, k]);
        b.barrier();
        let d = b.mma_async(MmaVariant::ABt, sa, sb, carried[0]);
        b.mma_commit();
        b.mma_wait(1, &[]);
        b.barrier();
        vec![d]
    });
    let done = b.mma_wait(0, &[out[0]]);
    b.store(y, done[0], &[w, zero]);
    b.finish()
}

/// Masked softmax along rows, then every map, broadcast, reduction and comparison: float
/// functions on f32 tiles, integer-only functions on i32 tiles.
fn softmax_masked() -> Func {
    let mut b = FuncBuilder::kernel("softmax_masked", 1);
    let s = b.param("s", Type::global(F32, 2, false));
    let o = b.param("o", Type::global(BF16, 2, true));
    let ids = b.param("ids", Type::global(I32, 2, true));
    let q_off = b.param("q_off", Type::scalar(I32));
    let kv_len = b.param("kv_len", Type::scalar(I32));
    let r = b.block_idx(Dim3::X);
    let zero = b.const_i32(0);
    let t = b.load(rt(F32, 64, 64), s, &[r, zero]);
    let t = b.mask(MaskKind::Causal, f64::NEG_INFINITY, t, q_off, zero);
    let t = b.mask(MaskKind::AntiCausal, f64::NEG_INFINITY, t, zero, q_off);
    let t = b.mask(MaskKind::Rows, 0.0, t, q_off, kv_len);
    let t = b.mask(MaskKind::Cols, -1e30, t, zero, kv_len);
    let mx = b.reduce(ReduceAxis::Row, ReduceFn::Max, t);
    let t = b.bcast(BcastAxis::Row, BinaryFn::Sub, t, mx);
    let e = b.unary(UnaryFn::Exp2, t);
    let sum = b.reduce(ReduceAxis::Row, ReduceFn::Sum, e);
    let p = b.bcast(BcastAxis::Row, BinaryFn::Div, e, sum);
    b.name(p, "p");
    let p16 = b.convert_dtype(p, BF16);
    b.store(o, p16, &[r, zero]);

    // Float maps on the probabilities; integer maps on column indices, with row indices or a
    // scalar shift / modulus as the second operand.
    let mut x = p;
    let mut ix = b.iota(rt(I32, 64, 64), BcastAxis::Col);
    let irow = b.iota(rt(I32, 64, 64), BcastAxis::Row);
    let three = b.const_i32(3);
    for f in UnaryFn::ALL {
        if f.float_only() {
            x = b.unary(f, x);
        } else {
            ix = b.unary(f, ix);
        }
    }
    for f in BinaryFn::ALL {
        match f {
            BinaryFn::Rem | BinaryFn::Shl | BinaryFn::Shr => ix = b.binary(f, ix, three),
            _ if f.int_only() => ix = b.binary(f, ix, irow),
            _ => x = b.binary(f, x, p),
        }
    }
    b.store(ids, ix, &[r, zero]);
    let half = b.const_f32(0.5);
    let x = b.binary(BinaryFn::Mul, half, x);
    let x = b.binary(BinaryFn::Add, x, half);
    let cols = b.reduce(ReduceAxis::Col, ReduceFn::Max, x);
    let irows = b.iota(Type::vector(I32, 64, VecAxis::Rows), BcastAxis::Row);
    let icols = b.iota(Type::vector(I32, 64, VecAxis::Cols), BcastAxis::Row);
    for f in BinaryFn::ALL {
        if f.int_only() {
            b.bcast(BcastAxis::Row, f, ix, irows);
            b.bcast(BcastAxis::Col, f, ix, icols);
        } else {
            b.bcast(BcastAxis::Row, f, x, mx);
            b.bcast(BcastAxis::Col, f, x, cols);
        }
    }
    for f in ReduceFn::ALL {
        b.reduce(ReduceAxis::Row, f, x);
        b.reduce(ReduceAxis::Col, f, x);
        b.reduce(ReduceAxis::All, f, x);
        b.reduce(ReduceAxis::All, f, cols);
    }
    let sq = b.binary(BinaryFn::Mul, half, half);
    let mut conds = Vec::new();
    for p in CmpPred::ALL {
        conds.push(b.cmp(p, half, sq));
    }
    let pick = b.select(conds[0], half, sq);
    let _ = b.splat(rt(F32, 16, 16), pick);
    let _ = b.splat(Type::vector(F32, 16, VecAxis::Cols), pick);
    let xt = b.transpose(x);
    let _ = b.convert(xt, rt_col(BF16, 64, 64));
    b.finish()
}

/// A mixture-of-experts style pipeline: semaphores and async copies, gathers and scatters,
/// atomics, `while`, `if` and calls. Warp 0 initializes the semaphores and stages the expert's
/// tile; each warp works on its own 64-column slice.
fn moe_pipeline() -> Func {
    let mut b = FuncBuilder::kernel("moe_pipeline", 8);
    let x = b.param("x", Type::global(BF16, 2, false));
    let y = b.param("y", Type::global(F32, 2, true));
    let idx = b.param("idx", Type::global(I32, 1, false));
    let bias_g = b.param("bias", Type::global(F32, 1, false));
    let counts = b.param("counts", Type::global(I32, 1, true));
    let ring = b.alloc_shared(Type::shared_array(
        Type::shared_tile(BF16, 64, 64, Swizzle::None),
        2,
    ));
    let full = b.alloc_shared(Type::shared_array(Type::Semaphore, 2));
    b.name(full, "full");
    let bias = b.alloc_shared(Type::shared_vector(F32, 64));
    let scratch = b.alloc_shared(Type::shared_array(Type::shared_vector(F32, 64), 4));
    let lone = b.alloc_shared(Type::Semaphore);
    let n = b.dim(x, 0);
    let _d = b.dim(x, 1);
    let _gx = b.grid_dim(Dim3::X);
    let _gy = b.grid_dim(Dim3::Y);
    let _gz = b.grid_dim(Dim3::Z);
    let e = b.block_idx(Dim3::Z);
    b.name(e, "expert");
    let w = b.warp_idx();
    let zero = b.const_i32(0);
    let one = b.const_i32(1);
    let lead = b.cmp(CmpPred::Eq, w, zero);
    let sem0 = b.shared_index(full, zero);
    let stage = b.shared_index(ring, zero);
    b.if_then(lead, |b| {
        b.sem_init(sem0, 1);
        b.sem_init(lone, 8);
    });
    b.barrier();
    b.if_then(lead, |b| {
        b.sem_expect(sem0, 8192);
        b.copy_async(stage, x, sem0, &[e, zero]);
        b.sem_arrive(sem0);
    });
    b.sem_wait(sem0, zero);
    let xs = b.load(rt(BF16, 64, 64), stage, &[]);
    let rows = b.load(Type::vector(I32, 64, VecAxis::Rows), idx, &[e]);
    let g = b.gather_rows(rt(BF16, 64, 64), x, rows, w);
    let g = b.add(g, xs);
    let gf = b.convert_dtype(g, F32);
    b.scatter_rows(false, y, gf, rows, w);
    b.scatter_rows(true, y, gf, rows, w);
    b.atomic_add(counts, one, &[e]);
    b.atomic_add(y, gf, &[e, w]);
    let slot = b.shared_index(scratch, one);
    b.copy(Scope::Block, bias, bias_g, &[e]);
    b.barrier();
    let v = b.load(Type::vector(F32, 64, VecAxis::Rows), bias, &[]);
    b.store(slot, v, &[]);

    let start = b.const_f32(0.0);
    let fin = b.while_loop(
        &[zero, start],
        |b, cur| {
            let go = b.cmp(CmpPred::Lt, cur[0], n);
            (go, cur.to_vec())
        },
        |b, cur| {
            let i = b.add(cur[0], one);
            let s = b.call("min_max", &[i, n], vec![Type::scalar(I32); 2]);
            let f = b.convert_dtype(s[0], F32);
            vec![i, b.add(cur[1], f)]
        },
    );
    let big = b.cmp(CmpPred::Gt, fin[0], zero);
    let picked = b.if_else(
        big,
        vec![Type::scalar(F32)],
        |b| vec![b.unary(UnaryFn::Neg, fin[1])],
        |_| vec![fin[1]],
    );
    b.name(picked[0], "picked");
    b.if_then(big, |b| {
        b.call("arrive", &[lone], vec![]);
    });
    let t = b.fill(rt(F32, 16, 16), f64::NAN);
    b.call("gelu_scale", &[t, picked[0]], vec![rt(F32, 16, 16)]);
    b.finish()
}

/// Constants of every scalar type, with special floats and extreme integers.
fn constants() -> Func {
    let mut b = FuncBuilder::kernel("constants", 1);
    b.constant(Const::Float(1.0), F32);
    b.constant(Const::Float(f64::NEG_INFINITY), F16);
    b.constant(Const::Float(f64::NAN), BF16);
    b.constant(Const::Float(1e-8), F8E4M3);
    b.constant(Const::Float(-0.0), F8E5M2);
    b.constant(Const::Int(-128), I8);
    b.constant(Const::Int(-7), I32);
    b.constant(Const::Int(4294967295), U32);
    b.constant(Const::Int(i64::MIN), I64);
    b.constant(Const::Bool(true), Bool);
    b.constant(Const::Bool(false), Bool);
    b.constant(Const::Float(f64::INFINITY), F32);
    b.constant(Const::Float(1e20), F32);
    b.const_f32(0.1);
    b.finish()
}

/// A helper with one result.
fn gelu_scale() -> Func {
    let mut b = FuncBuilder::helper("gelu_scale", vec![rt(F32, 16, 16)]);
    let x = b.param("x", rt(F32, 16, 16));
    let s = b.param("s", Type::scalar(F32));
    let g = b.unary(UnaryFn::GeluTanh, x);
    let r = b.mul(g, s);
    b.ret(&[r]);
    b.finish()
}

/// A helper with two results.
fn min_max() -> Func {
    let mut b = FuncBuilder::helper("min_max", vec![Type::scalar(I32); 2]);
    let p = b.param("p", Type::scalar(I32));
    let q = b.param("q", Type::scalar(I32));
    let lo = b.min(p, q);
    let hi = b.max(p, q);
    b.name(lo, "lo");
    b.name(hi, "hi");
    b.ret(&[lo, hi]);
    b.finish()
}

/// A helper without results.
fn arrive() -> Func {
    let mut b = FuncBuilder::helper("arrive", vec![]);
    let s = b.param("s", Type::Semaphore);
    b.sem_arrive(s);
    b.ret(&[]);
    b.finish()
}

/// Masks, gathers, bitcasts, products and scans: a tile compared with a scalar, selected with
/// the mask, read as its bits, reduced by products, scanned every way; elements gathered at
/// index vectors.
fn positions() -> Func {
    let results = vec![
        Type::vector(F32, 16, VecAxis::Rows),
        rt(I32, 16, 16),
        Type::vector(F32, 16, VecAxis::Cols),
    ];
    let mut b = FuncBuilder::helper("positions", results);
    let g = b.param("g", Type::global(F32, 2, false));
    let t = b.param("t", rt(F32, 16, 16));
    let r = b.param("r", Type::vector(I32, 16, VecAxis::Rows));
    let c = b.param("c", Type::vector(I32, 16, VecAxis::Rows));
    let zero = b.const_f32(0.0);
    let positive = b.cmp(CmpPred::Gt, t, zero);
    let kept = b.select(positive, t, zero);
    let bits = b.bitcast(kept, rt(I32, 16, 16));
    let picked = b.gather(g, &[r, c]);
    let cols = b.reduce(ReduceAxis::Col, ReduceFn::Prod, kept);
    for axis in [BcastAxis::Row, BcastAxis::Col] {
        for exclusive in [false, true] {
            for f in ReduceFn::ALL {
                b.scan(axis, f, exclusive, kept);
            }
        }
    }
    b.ret(&[picked, bits, cols]);
    b.finish()
}

fn parse(text: &str) -> Module {
    match parse_module(text) {
        Ok(m) => m,
        Err(e) => panic!("{e}\n--- text ---\n{text}"),
    }
}

/// Panics with every verifier error of `m`, one a line, when it does not verify.
fn assert_verifies(m: &Module, what: &str) {
    if let Err(errors) = verify(m) {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        panic!(
            "{what} does not verify ({} errors):\n{}",
            lines.len(),
            lines.join("\n")
        );
    }
}

#[test]
fn every_op_module_verifies() {
    assert_verifies(&every_op_module(), "every_op_module()");
    assert_verifies(&parse(EVERY_OP_TEXT), "EVERY_OP_TEXT");
}

#[test]
fn builder_module_prints_as_the_canonical_text() {
    let printed = print_module(&every_op_module());
    assert_eq!(printed, EVERY_OP_TEXT, "printed:\n{printed}");
}

#[test]
fn printed_module_parses_and_prints_the_same() {
    let printed = print_module(&every_op_module());
    assert_eq!(print_module(&parse(&printed)), printed);
}

#[test]
fn canonical_text_parses_and_prints_the_same() {
    assert_eq!(print_module(&parse(EVERY_OP_TEXT)), EVERY_OP_TEXT);
}

#[test]
fn parsed_module_has_the_builder_module_ops() {
    fn shape(f: &Func) -> Vec<String> {
        let mut ops = Vec::new();
        f.walk(|op| {
            let types: Vec<String> = op
                .results
                .iter()
                .map(|v| f.value_type(*v).to_string())
                .collect();
            let args: Vec<usize> = op.regions.iter().map(|r| r.args.len()).collect();
            ops.push(format!(
                "{:?} {:?} {} {:?} {types:?}",
                op.kind,
                op.scope,
                op.operands.len(),
                args
            ));
        });
        ops
    }
    let built = every_op_module();
    let parsed = parse(EVERY_OP_TEXT);
    assert_eq!(built.funcs.len(), parsed.funcs.len());
    for (b, p) in built.funcs.iter().zip(&parsed.funcs) {
        assert_eq!(b.name, p.name);
        assert_eq!(b.kind, p.kind);
        assert_eq!(b.results, p.results);
        assert_eq!(b.param_types(), p.param_types());
        assert_eq!(shape(b), shape(p), "function @{}", b.name);
    }
}

/// Every op name and attribute value the text form knows, written out from the ops' enums.
fn expected_op_names() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = [
        "const",
        "warp_idx",
        "warpgroup_idx",
        "num_warps",
        "dim",
        "fill",
        "splat",
        "iota.rows",
        "iota.cols",
        "select",
        "convert",
        "transpose",
        "alloc_shared",
        "shared.index",
        "load",
        "store",
        "copy",
        "copy_async",
        "gather_rows",
        "gather",
        "bitcast",
        "scatter_rows",
        "scatter_add_rows",
        "atomic_add",
        "barrier",
        "sem.init",
        "sem.arrive",
        "sem.expect",
        "sem.wait",
        "for",
        "if",
        "while",
        "yield",
        "condition",
        "return",
        "call",
    ]
    .map(String::from)
    .into();
    for d in ["x", "y", "z"] {
        names.insert(format!("block_idx.{d}"));
        names.insert(format!("grid_dim.{d}"));
    }
    names.extend(UnaryFn::ALL.map(|f| format!("map.{}", f.name())));
    names.extend(BinaryFn::ALL.map(|f| format!("map.{}", f.name())));
    names.extend(CmpPred::ALL.map(|p| format!("cmp.{}", p.name())));
    for f in BinaryFn::ALL {
        names.insert(format!("bcast_row.{}", f.name()));
        names.insert(format!("bcast_col.{}", f.name()));
    }
    for f in ReduceFn::ALL {
        for axis in ["reduce_row", "reduce_col", "reduce"] {
            names.insert(format!("{axis}.{}", f.name()));
        }
    }
    for f in ReduceFn::ALL {
        for scan in ["scan_row", "scan_col", "exscan_row", "exscan_col"] {
            names.insert(format!("{scan}.{}", f.name()));
        }
    }
    names.extend(MaskKind::ALL.map(|k| format!("mask.{}", k.name())));
    names.extend(MmaVariant::ALL.map(|v| format!("mma.{}", v.name())));
    names.insert("mma_async.abt".into());
    names.insert("mma_commit".into());
    names.insert("mma_wait".into());
    names.insert("setmaxnreg.inc".into());
    names.insert("setmaxnreg.dec".into());
    names
}

#[test]
fn module_exercises_every_op_kind_and_attribute() {
    let m = parse(EVERY_OP_TEXT);
    let mut names = BTreeSet::new();
    let mut mma_scopes = BTreeSet::new();
    let mut const_types = BTreeSet::new();
    let mut consts = BTreeSet::new();
    for f in &m.funcs {
        f.walk(|op| {
            names.insert(op.kind.name());
            if let OpKind::Mma(v) = op.kind {
                mma_scopes.insert((v.name(), op.scope));
            }
            if let OpKind::Const(c) = op.kind {
                const_types.insert(f.value_type(op.results[0]).to_string());
                consts.insert(c.to_string());
            }
        });
    }
    assert_eq!(names, expected_op_names());
    for v in MmaVariant::ALL {
        assert!(mma_scopes.contains(&(v.name(), Scope::Warp)), "{v:?}");
        assert!(mma_scopes.contains(&(v.name(), Scope::Warpgroup)), "{v:?}");
    }
    let all_types: BTreeSet<String> = ScalarType::ALL.map(|t| t.to_string()).into();
    assert_eq!(const_types, all_types);
    for c in ["-inf", "NaN", "1e-8", "-7", "-9223372036854775808", "true"] {
        assert!(consts.contains(c), "{c}");
    }
}

#[test]
fn parsing_records_text_locations() {
    let m = parse(EVERY_OP_TEXT);
    let f = &m.funcs[0];
    assert_eq!(f.loc, Loc::Text { line: 1, col: 1 });
    assert_eq!(f.body.ops[0].loc, Loc::Text { line: 2, col: 3 });
    let for_op = f
        .body
        .ops
        .iter()
        .find(|op| op.kind == OpKind::For)
        .expect("gemm has a loop");
    let Loc::Text { line, .. } = for_op.loc else {
        panic!("no text location: {:?}", for_op.loc);
    };
    assert_eq!(
        for_op.regions[0].ops[0].loc,
        Loc::Text {
            line: line + 1,
            col: 5
        }
    );
    assert_eq!(m.funcs[1].loc, Loc::Text { line: 23, col: 1 });
}

#[test]
fn numbered_values_parse_without_names() {
    let m = parse(EVERY_OP_TEXT);
    let f = &m.funcs[0];
    assert_eq!(f.value_name(f.params[0]), Some("a"));
    let names: Vec<Option<&str>> = f
        .body
        .ops
        .iter()
        .flat_map(|op| op.results.iter().map(|v| f.value_name(*v)))
        .collect();
    assert_eq!(
        &names[..5],
        &[Some("row"), Some("col"), Some("ring"), Some("acc"), None]
    );
}

#[test]
fn values_sharing_a_name_are_told_apart() {
    let mut b = FuncBuilder::helper("sum3", vec![Type::scalar(F32)]);
    let x = b.param("x", Type::scalar(F32));
    let acc = b.add(x, x);
    b.name(acc, "acc");
    let acc2 = b.add(acc, x);
    b.name(acc2, "acc");
    // A value already called `acc.1` pushes the second `acc` on to `acc.2`.
    let taken = b.add(acc2, x);
    b.name(taken, "acc.1");
    let acc3 = b.add(taken, acc);
    b.name(acc3, "acc");
    b.ret(&[acc3]);
    let f = b.finish();
    let text = print_func(&f);
    assert_eq!(
        text,
        "func @sum3(%x: f32) -> (f32) {
  %acc = map.add (%x, %x) : f32
  %acc.2 = map.add (%acc, %x) : f32
  %acc.1 = map.add (%acc.2, %x) : f32
  %acc.3 = map.add (%acc.1, %acc) : f32
  return (%acc.3)
}
"
    );
    let mut m = Module::new();
    m.push(f);
    assert_eq!(print_module(&parse(&text)), text);
}

#[test]
fn names_that_are_not_valid_are_made_valid() {
    let mut b = FuncBuilder::kernel("names", 1);
    let g = b.param("out tensor", Type::global(F32, 1, true));
    let c = b.const_i32(3);
    b.name(c, "3rd");
    let e = b.const_i32(4);
    b.name(e, "");
    b.store(g, c, &[e]);
    let text = print_func(&b.finish());
    assert_eq!(
        text,
        "kernel @names(%out_tensor: gl<f32, 1, mut>) warps(1) {
  %_3rd = const[3] () : i32
  %0 = const[4] () : i32
  store (%out_tensor, %_3rd, %0)
  return ()
}
"
    );
    assert_eq!(print_module(&parse(&text)), text);
}

#[test]
fn function_names_that_are_not_plain_are_quoted() {
    let mut b = FuncBuilder::kernel("gemm<bf16, 64>", 1);
    b.call("helper \"v2\"", &[], vec![]);
    let mut m = Module::new();
    m.push(b.finish());
    let text = print_module(&m);
    assert_eq!(
        text,
        "kernel @\"gemm<bf16, 64>\"() warps(1) {
  call[@\"helper \\\"v2\\\"\"] ()
  return ()
}
"
    );
    let parsed = parse(&text);
    assert_eq!(parsed.funcs[0].name, "gemm<bf16, 64>");
    assert_eq!(
        parsed.funcs[0].body.ops[0].kind,
        OpKind::Call("helper \"v2\"".into())
    );
    assert_eq!(print_module(&parsed), text);
}

#[test]
fn parser_accepts_any_whitespace_and_comments() {
    let squeezed = "// two functions on few lines
func @f(%x:f32)->(f32){%y=map.neg(%x):f32 return(%y)} // trailing
kernel   @k (  )
   warps ( 2 )
{
  %0 =   const [ 1.5 ] ( ) :
      f32 %1 = call[@f](%0):f32
  return()}";
    let canonical = "func @f(%x: f32) -> (f32) {
  %y = map.neg (%x) : f32
  return (%y)
}

kernel @k() warps(2) {
  %0 = const[1.5] () : f32
  %1 = call[@f] (%0) : f32
  return ()
}
";
    assert_eq!(print_module(&parse(squeezed)), canonical);
}

#[test]
fn ops_without_operands_may_leave_out_the_parentheses() {
    let text = "kernel @k(%g: gl<f32, 2, mut>) warps(4) {
  %0 = block_idx.y : i32
  %1 = fill[0.0] : rt<f32, 64x64, row>
  %10 = alloc_shared @block : [2 x st<bf16, 64x16, swz128>]
  barrier @block
  store (%g, %1, %0, %0)
  return ()
}
";
    let printed = print_module(&parse(text));
    assert_eq!(
        printed,
        "kernel @k(%g: gl<f32, 2, mut>) warps(4) {
  %0 = block_idx.y () : i32
  %1 = fill[0.0] () : rt<f32, 64x64, row>
  %2 = alloc_shared @block () : [2 x st<bf16, 64x16, swz128>]
  barrier @block ()
  store (%g, %1, %0, %0)
  return ()
}
"
    );
}

#[test]
fn explicit_warp_scope_is_accepted_and_not_printed() {
    let text = "kernel @k() warps(1) {\n  %0 = warp_idx @warp () : i32\n  return ()\n}\n";
    let m = parse(text);
    assert_eq!(m.funcs[0].body.ops[0].scope, Scope::Warp);
    assert_eq!(
        print_module(&m),
        "kernel @k() warps(1) {\n  %0 = warp_idx () : i32\n  return ()\n}\n"
    );
}

#[test]
fn empty_module_is_empty_text() {
    assert_eq!(print_module(&Module::new()), "");
    assert!(parse("  // nothing\n").funcs.is_empty());
}

#[test]
fn printing_is_deterministic() {
    let a = print_module(&every_op_module());
    let b = print_module(&every_op_module());
    assert_eq!(a, b);
}

/// The canonical text of [`every_op_module`].
const EVERY_OP_TEXT: &str = "\
kernel @gemm(%a: gl<bf16, 2>, %b: gl<bf16, 2>, %c: gl<f32, 2, mut>, %k_tiles: i32) warps(4) {
  %row = block_idx.y () : i32
  %col = block_idx.x () : i32
  %ring = alloc_shared @block () : [2 x st<bf16, 64x16, swz128>]
  %acc = fill[0.0] () : rt<f32, 64x64, row>
  %0 = const[0] () : i32
  %1 = const[1] () : i32
  %2 = const[2] () : i32
  %3 = for (%0, %k_tiles, %1, %acc) (%4: i32, %5: rt<f32, 64x64, row>) {
    %6 = map.rem (%4, %2) : i32
    %7 = shared.index (%ring, %6) : st<bf16, 64x16, swz128>
    copy @block (%7, %a, %row, %4)
    barrier @block ()
    %8 = load (%7) : rt<bf16, 64x16, row>
    %9 = load (%b, %4, %col) : rt<bf16, 16x64, col>
    %10 = mma.ab (%8, %9, %5) : rt<f32, 64x64, row>
    yield (%10)
  } : rt<f32, 64x64, row>
  store (%c, %3, %row, %col)
  return ()
}

kernel @mma_variants(%x: gl<bf16, 2>, %y: gl<f32, 2, mut>) warps(4) {
  %0 = warp_idx () : i32
  %1 = warpgroup_idx () : i32
  %2 = num_warps () : i32
  %3 = alloc_shared @block () : st<bf16, 64x64, swz64>
  %4 = alloc_shared @block () : st<bf16, 64x64, swz32>
  %5 = alloc_shared @block () : st<f32, 64x64, none>
  %6 = const[0] () : i32
  %7 = cmp.eq (%0, %6) : bool
  copy @warpgroup (%3, %x, %1, %1)
  if (%7) {
    copy (%4, %x, %1, %6)
    yield ()
  } {
    yield ()
  }
  barrier @block ()
  %8 = load (%x, %0, %0) : rt<bf16, 16x16, row>
  %9 = load (%x, %0, %0) : rt<bf16, 16x16, col>
  %10 = fill[0.0] () : rt<f32, 16x16, row>
  %11 = mma.ab (%8, %9, %10) : rt<f32, 16x16, row>
  %12 = mma.abt (%8, %8, %11) : rt<f32, 16x16, row>
  %13 = mma.atb (%9, %9, %12) : rt<f32, 16x16, row>
  %14 = mma.atbt (%9, %8, %13) : rt<f32, 16x16, row>
  store (%y, %14, %0, %1)
  %15 = load @warpgroup (%3) : rt<bf16, 16x64, row>
  %16 = fill[0.0] () : rt<f32, 16x64, row>
  %17 = mma.ab @warpgroup (%15, %4, %16) : rt<f32, 16x64, row>
  %18 = mma.abt @warpgroup (%3, %4, %17) : rt<f32, 16x64, row>
  %19 = mma.atb @warpgroup (%3, %4, %18) : rt<f32, 16x64, row>
  %20 = mma.atbt @warpgroup (%3, %4, %19) : rt<f32, 16x64, row>
  store @warpgroup (%5, %20)
  barrier @block ()
  copy @warpgroup (%y, %5, %1, %1)
  return ()
}

kernel @softmax_masked(%s: gl<f32, 2>, %o: gl<bf16, 2, mut>, %ids: gl<i32, 2, mut>, %q_off: i32, %kv_len: i32) warps(1) {
  %0 = block_idx.x () : i32
  %1 = const[0] () : i32
  %2 = load (%s, %0, %1) : rt<f32, 64x64, row>
  %3 = mask.causal[-inf] (%2, %q_off, %1) : rt<f32, 64x64, row>
  %4 = mask.anticausal[-inf] (%3, %1, %q_off) : rt<f32, 64x64, row>
  %5 = mask.rows[0.0] (%4, %q_off, %kv_len) : rt<f32, 64x64, row>
  %6 = mask.cols[-1e30] (%5, %1, %kv_len) : rt<f32, 64x64, row>
  %7 = reduce_row.max (%6) : rv<f32, 64, rows>
  %8 = bcast_row.sub (%6, %7) : rt<f32, 64x64, row>
  %9 = map.exp2 (%8) : rt<f32, 64x64, row>
  %10 = reduce_row.sum (%9) : rv<f32, 64, rows>
  %p = bcast_row.div (%9, %10) : rt<f32, 64x64, row>
  %11 = convert (%p) : rt<bf16, 64x64, row>
  store (%o, %11, %0, %1)
  %12 = iota.cols () : rt<i32, 64x64, row>
  %13 = iota.rows () : rt<i32, 64x64, row>
  %14 = const[3] () : i32
  %15 = map.exp (%p) : rt<f32, 64x64, row>
  %16 = map.exp2 (%15) : rt<f32, 64x64, row>
  %17 = map.log (%16) : rt<f32, 64x64, row>
  %18 = map.log2 (%17) : rt<f32, 64x64, row>
  %19 = map.neg (%12) : rt<i32, 64x64, row>
  %20 = map.abs (%19) : rt<i32, 64x64, row>
  %21 = map.relu (%20) : rt<i32, 64x64, row>
  %22 = map.silu (%18) : rt<f32, 64x64, row>
  %23 = map.gelu_tanh (%22) : rt<f32, 64x64, row>
  %24 = map.sqrt (%23) : rt<f32, 64x64, row>
  %25 = map.rsqrt (%24) : rt<f32, 64x64, row>
  %26 = map.recip (%25) : rt<f32, 64x64, row>
  %27 = map.tanh (%26) : rt<f32, 64x64, row>
  %28 = map.sigmoid (%27) : rt<f32, 64x64, row>
  %29 = map.not (%21) : rt<i32, 64x64, row>
  %30 = map.add (%28, %p) : rt<f32, 64x64, row>
  %31 = map.sub (%30, %p) : rt<f32, 64x64, row>
  %32 = map.mul (%31, %p) : rt<f32, 64x64, row>
  %33 = map.div (%32, %p) : rt<f32, 64x64, row>
  %34 = map.max (%33, %p) : rt<f32, 64x64, row>
  %35 = map.min (%34, %p) : rt<f32, 64x64, row>
  %36 = map.pow (%35, %p) : rt<f32, 64x64, row>
  %37 = map.rem (%29, %14) : rt<i32, 64x64, row>
  %38 = map.and (%37, %13) : rt<i32, 64x64, row>
  %39 = map.or (%38, %13) : rt<i32, 64x64, row>
  %40 = map.xor (%39, %13) : rt<i32, 64x64, row>
  %41 = map.shl (%40, %14) : rt<i32, 64x64, row>
  %42 = map.shr (%41, %14) : rt<i32, 64x64, row>
  store (%ids, %42, %0, %1)
  %43 = const[0.5] () : f32
  %44 = map.mul (%43, %36) : rt<f32, 64x64, row>
  %45 = map.add (%44, %43) : rt<f32, 64x64, row>
  %46 = reduce_col.max (%45) : rv<f32, 64, cols>
  %47 = iota.rows () : rv<i32, 64, rows>
  %48 = iota.rows () : rv<i32, 64, cols>
  %49 = bcast_row.add (%45, %7) : rt<f32, 64x64, row>
  %50 = bcast_col.add (%45, %46) : rt<f32, 64x64, row>
  %51 = bcast_row.sub (%45, %7) : rt<f32, 64x64, row>
  %52 = bcast_col.sub (%45, %46) : rt<f32, 64x64, row>
  %53 = bcast_row.mul (%45, %7) : rt<f32, 64x64, row>
  %54 = bcast_col.mul (%45, %46) : rt<f32, 64x64, row>
  %55 = bcast_row.div (%45, %7) : rt<f32, 64x64, row>
  %56 = bcast_col.div (%45, %46) : rt<f32, 64x64, row>
  %57 = bcast_row.max (%45, %7) : rt<f32, 64x64, row>
  %58 = bcast_col.max (%45, %46) : rt<f32, 64x64, row>
  %59 = bcast_row.min (%45, %7) : rt<f32, 64x64, row>
  %60 = bcast_col.min (%45, %46) : rt<f32, 64x64, row>
  %61 = bcast_row.pow (%45, %7) : rt<f32, 64x64, row>
  %62 = bcast_col.pow (%45, %46) : rt<f32, 64x64, row>
  %63 = bcast_row.rem (%42, %47) : rt<i32, 64x64, row>
  %64 = bcast_col.rem (%42, %48) : rt<i32, 64x64, row>
  %65 = bcast_row.and (%42, %47) : rt<i32, 64x64, row>
  %66 = bcast_col.and (%42, %48) : rt<i32, 64x64, row>
  %67 = bcast_row.or (%42, %47) : rt<i32, 64x64, row>
  %68 = bcast_col.or (%42, %48) : rt<i32, 64x64, row>
  %69 = bcast_row.xor (%42, %47) : rt<i32, 64x64, row>
  %70 = bcast_col.xor (%42, %48) : rt<i32, 64x64, row>
  %71 = bcast_row.shl (%42, %47) : rt<i32, 64x64, row>
  %72 = bcast_col.shl (%42, %48) : rt<i32, 64x64, row>
  %73 = bcast_row.shr (%42, %47) : rt<i32, 64x64, row>
  %74 = bcast_col.shr (%42, %48) : rt<i32, 64x64, row>
  %75 = reduce_row.sum (%45) : rv<f32, 64, rows>
  %76 = reduce_col.sum (%45) : rv<f32, 64, cols>
  %77 = reduce.sum (%45) : f32
  %78 = reduce.sum (%46) : f32
  %79 = reduce_row.max (%45) : rv<f32, 64, rows>
  %80 = reduce_col.max (%45) : rv<f32, 64, cols>
  %81 = reduce.max (%45) : f32
  %82 = reduce.max (%46) : f32
  %83 = reduce_row.min (%45) : rv<f32, 64, rows>
  %84 = reduce_col.min (%45) : rv<f32, 64, cols>
  %85 = reduce.min (%45) : f32
  %86 = reduce.min (%46) : f32
  %87 = reduce_row.prod (%45) : rv<f32, 64, rows>
  %88 = reduce_col.prod (%45) : rv<f32, 64, cols>
  %89 = reduce.prod (%45) : f32
  %90 = reduce.prod (%46) : f32
  %91 = map.mul (%43, %43) : f32
  %92 = cmp.lt (%43, %91) : bool
  %93 = cmp.le (%43, %91) : bool
  %94 = cmp.gt (%43, %91) : bool
  %95 = cmp.ge (%43, %91) : bool
  %96 = cmp.eq (%43, %91) : bool
  %97 = cmp.ne (%43, %91) : bool
  %98 = select (%92, %43, %91) : f32
  %99 = splat (%98) : rt<f32, 16x16, row>
  %100 = splat (%98) : rv<f32, 16, cols>
  %101 = transpose (%45) : rt<f32, 64x64, row>
  %102 = convert (%101) : rt<bf16, 64x64, col>
  return ()
}

kernel @moe_pipeline(%x: gl<bf16, 2>, %y: gl<f32, 2, mut>, %idx: gl<i32, 1>, %bias: gl<f32, 1>, %counts: gl<i32, 1, mut>) warps(8) {
  %0 = alloc_shared @block () : [2 x st<bf16, 64x64, none>]
  %full = alloc_shared @block () : [2 x sem]
  %1 = alloc_shared @block () : sv<f32, 64>
  %2 = alloc_shared @block () : [4 x sv<f32, 64>]
  %3 = alloc_shared @block () : sem
  %4 = dim[0] (%x) : i32
  %5 = dim[1] (%x) : i32
  %6 = grid_dim.x () : i32
  %7 = grid_dim.y () : i32
  %8 = grid_dim.z () : i32
  %expert = block_idx.z () : i32
  %9 = warp_idx () : i32
  %10 = const[0] () : i32
  %11 = const[1] () : i32
  %12 = cmp.eq (%9, %10) : bool
  %13 = shared.index (%full, %10) : sem
  %14 = shared.index (%0, %10) : st<bf16, 64x64, none>
  if (%12) {
    sem.init[1] (%13)
    sem.init[8] (%3)
    yield ()
  } {
    yield ()
  }
  barrier @block ()
  if (%12) {
    sem.expect[8192] (%13)
    copy_async (%14, %x, %13, %expert, %10)
    sem.arrive (%13)
    yield ()
  } {
    yield ()
  }
  sem.wait (%13, %10)
  %15 = load (%14) : rt<bf16, 64x64, row>
  %16 = load (%idx, %expert) : rv<i32, 64, rows>
  %17 = gather_rows (%x, %16, %9) : rt<bf16, 64x64, row>
  %18 = map.add (%17, %15) : rt<bf16, 64x64, row>
  %19 = convert (%18) : rt<f32, 64x64, row>
  scatter_rows (%y, %19, %16, %9)
  scatter_add_rows (%y, %19, %16, %9)
  atomic_add (%counts, %11, %expert)
  atomic_add (%y, %19, %expert, %9)
  %20 = shared.index (%2, %11) : sv<f32, 64>
  copy @block (%1, %bias, %expert)
  barrier @block ()
  %21 = load (%1) : rv<f32, 64, rows>
  store (%20, %21)
  %22 = const[0.0] () : f32
  %23, %24 = while (%10, %22) (%25: i32, %26: f32) {
    %27 = cmp.lt (%25, %4) : bool
    condition (%27, %25, %26)
  } (%28: i32, %29: f32) {
    %30 = map.add (%28, %11) : i32
    %31, %32 = call[@min_max] (%30, %4) : i32, i32
    %33 = convert (%31) : f32
    %34 = map.add (%29, %33) : f32
    yield (%30, %34)
  } : i32, f32
  %35 = cmp.gt (%23, %10) : bool
  %picked = if (%35) {
    %36 = map.neg (%24) : f32
    yield (%36)
  } {
    yield (%24)
  } : f32
  if (%35) {
    call[@arrive] (%3)
    yield ()
  } {
    yield ()
  }
  %37 = fill[NaN] () : rt<f32, 16x16, row>
  %38 = call[@gelu_scale] (%37, %picked) : rt<f32, 16x16, row>
  return ()
}

kernel @constants() warps(1) {
  %0 = const[1.0] () : f32
  %1 = const[-inf] () : f16
  %2 = const[NaN] () : bf16
  %3 = const[1e-8] () : f8e4m3
  %4 = const[-0.0] () : f8e5m2
  %5 = const[-128] () : i8
  %6 = const[-7] () : i32
  %7 = const[4294967295] () : u32
  %8 = const[-9223372036854775808] () : i64
  %9 = const[true] () : bool
  %10 = const[false] () : bool
  %11 = const[inf] () : f32
  %12 = const[1e20] () : f32
  %13 = const[0.10000000149011612] () : f32
  return ()
}

func @gelu_scale(%x: rt<f32, 16x16, row>, %s: f32) -> (rt<f32, 16x16, row>) {
  %0 = map.gelu_tanh (%x) : rt<f32, 16x16, row>
  %1 = map.mul (%0, %s) : rt<f32, 16x16, row>
  return (%1)
}

func @min_max(%p: i32, %q: i32) -> (i32, i32) {
  %lo = map.min (%p, %q) : i32
  %hi = map.max (%p, %q) : i32
  return (%lo, %hi)
}

func @arrive(%s: sem) -> () {
  sem.arrive (%s)
  return ()
}

func @positions(%g: gl<f32, 2>, %t: rt<f32, 16x16, row>, %r: rv<i32, 16, rows>, %c: rv<i32, 16, rows>) -> (rv<f32, 16, rows>, rt<i32, 16x16, row>, rv<f32, 16, cols>) {
  %0 = const[0.0] () : f32
  %1 = cmp.gt (%t, %0) : rt<bool, 16x16, row>
  %2 = select (%1, %t, %0) : rt<f32, 16x16, row>
  %3 = bitcast (%2) : rt<i32, 16x16, row>
  %4 = gather (%g, %r, %c) : rv<f32, 16, rows>
  %5 = reduce_col.prod (%2) : rv<f32, 16, cols>
  %6 = scan_row.sum (%2) : rt<f32, 16x16, row>
  %7 = scan_row.max (%2) : rt<f32, 16x16, row>
  %8 = scan_row.min (%2) : rt<f32, 16x16, row>
  %9 = scan_row.prod (%2) : rt<f32, 16x16, row>
  %10 = exscan_row.sum (%2) : rt<f32, 16x16, row>
  %11 = exscan_row.max (%2) : rt<f32, 16x16, row>
  %12 = exscan_row.min (%2) : rt<f32, 16x16, row>
  %13 = exscan_row.prod (%2) : rt<f32, 16x16, row>
  %14 = scan_col.sum (%2) : rt<f32, 16x16, row>
  %15 = scan_col.max (%2) : rt<f32, 16x16, row>
  %16 = scan_col.min (%2) : rt<f32, 16x16, row>
  %17 = scan_col.prod (%2) : rt<f32, 16x16, row>
  %18 = exscan_col.sum (%2) : rt<f32, 16x16, row>
  %19 = exscan_col.max (%2) : rt<f32, 16x16, row>
  %20 = exscan_col.min (%2) : rt<f32, 16x16, row>
  %21 = exscan_col.prod (%2) : rt<f32, 16x16, row>
  return (%4, %3, %5)
}

kernel @mma_async_ring(%x: gl<bf16, 2>, %y: gl<f32, 2, mut>, %k_tiles: i32) warps(4) {
  %0 = warp_idx () : i32
  %1 = alloc_shared @block () : [2 x st<bf16, 64x32, swz64>]
  %2 = alloc_shared @block () : [2 x st<bf16, 64x32, swz64>]
  setmaxnreg.dec[40] @warpgroup ()
  setmaxnreg.inc[232] @warpgroup ()
  %3 = fill[0.0] () : rt<f32, 16x64, row>
  %4 = const[0] () : i32
  %5 = const[1] () : i32
  %6 = const[2] () : i32
  %7 = for (%4, %k_tiles, %5, %3) (%8: i32, %9: rt<f32, 16x64, row>) {
    %10 = map.rem (%8, %6) : i32
    %11 = shared.index (%1, %10) : st<bf16, 64x32, swz64>
    %12 = shared.index (%2, %10) : st<bf16, 64x32, swz64>
    copy @block (%11, %x, %4, %8)
    copy @block (%12, %x, %4, %8)
    barrier @block ()
    %13 = mma_async.abt @warpgroup (%11, %12, %9) : rt<f32, 16x64, row>
    mma_commit @warpgroup ()
    mma_wait[1] @warpgroup ()
    barrier @block ()
    yield (%13)
  } : rt<f32, 16x64, row>
  %14 = mma_wait[0] @warpgroup (%7) : rt<f32, 16x64, row>
  store (%y, %14, %0, %4)
  return ()
}
";

#[test]
fn twenty_thousand_values_sharing_one_name_print_with_distinct_suffixes_and_round_trip() {
    // An unrolled loop names every accumulator `acc`; each later one gets the next free suffix.
    let mut b = tilekit_ir::FuncBuilder::kernel("k", 1);
    let mut acc = b.const_i32(0);
    b.name(acc, "acc");
    let one = b.const_i32(1);
    for _ in 0..20_000 {
        acc = b.add(acc, one);
        b.name(acc, "acc");
    }
    let mut m = tilekit_ir::Module::new();
    m.push(b.finish());
    let text = tilekit_ir::print_module(&m);
    assert!(text.contains("%acc = const[0]"), "{}", &text[..200]);
    assert!(text.contains("%acc.20000 = map.add (%acc.19999, %0)"));
    let back = tilekit_ir::parse_module(&text).unwrap();
    assert_eq!(tilekit_ir::print_module(&back), text);
}
