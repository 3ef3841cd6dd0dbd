//! What each non-control-flow op does: the reference semantics of Tile IR.
//!
//! Families follow the IR's op families: indices, creation, maps, broadcasts and reductions,
//! masks, tensor cores, memory, synchronization.

use std::rc::Rc;

use crate::module::{Op, Value};
use crate::numeric;
use crate::ops::*;
use crate::types::{ScalarType, Type};

use super::global_race::GlobalAccess;
use super::memory::{is_in_flight, is_unwritten, PendingCopy, SharedRef, PENDING_ELEMENT_BYTES};
use super::{BlockRun, InterpError, RaceAccess, Step, Val, WaitOn};

type R<T> = Result<T, InterpError>;

/// Executes `op` in warp `w`.
pub(crate) fn exec(b: &mut BlockRun<'_, '_>, w: usize, op: &Op) -> R<Step> {
    match &op.kind {
        OpKind::Const(c) => {
            let d = result_dtype(b, w, op);
            let x = match c {
                Const::Float(x) => *x,
                Const::Int(i) => *i as f64,
                Const::Bool(v) => f64::from(u8::from(*v)),
            };
            set_scalar(b, w, op, numeric::round(d, x));
        }
        OpKind::BlockIdx(d) => set_scalar(b, w, op, f64::from(b.block[d.index()])),
        OpKind::GridDim(d) => set_scalar(b, w, op, f64::from(b.bounds.grid[d.index()])),
        OpKind::WarpIdx => set_scalar(b, w, op, w as f64),
        OpKind::WarpgroupIdx => set_scalar(b, w, op, (w / 4) as f64),
        OpKind::NumWarps => set_scalar(b, w, op, b.warps.len() as f64),
        OpKind::GlobalDim(k) => {
            let g = global(b, w, op.operands[0])?;
            let n = tensor(b, g).shape()[*k as usize];
            set_scalar(b, w, op, n as f64);
        }
        OpKind::Fill(v) => {
            let t = b.ty(w, op.results[0]);
            let n = elements(t);
            let x = numeric::round(dtype(t), *v);
            set_data(b, w, op, vec![x; n]);
        }
        OpKind::Splat => {
            let t = b.ty(w, op.results[0]);
            let x = b.scalar(w, op.operands[0])?;
            set_data(b, w, op, vec![x; elements(t)]);
        }
        OpKind::Iota(axis) => {
            let t = b.ty(w, op.results[0]);
            let d = dtype(t);
            let v: Vec<f64> = match (t, axis) {
                (Type::Tile { rows, cols, .. }, _) => {
                    let (rows, cols) = (*rows as usize, *cols as usize);
                    (0..rows * cols)
                        .map(|i| match axis {
                            BcastAxis::Row => (i / cols) as f64,
                            BcastAxis::Col => (i % cols) as f64,
                        })
                        .collect()
                }
                _ => (0..elements(t)).map(|i| i as f64).collect(),
            };
            set_data(
                b,
                w,
                op,
                v.into_iter().map(|x| numeric::round(d, x)).collect(),
            );
        }
        OpKind::Unary(f) => unary(b, w, op, *f)?,
        OpKind::Binary(f) => binary(b, w, op, *f)?,
        OpKind::Cmp(p) => compare(b, w, op, *p)?,
        OpKind::Select => select(b, w, op)?,
        OpKind::Convert => {
            let from = dtype(b.ty(w, op.operands[0]));
            let to = dtype(b.ty(w, op.results[0]));
            match b.val(w, op.operands[0])? {
                Val::Scalar(x) => set_scalar(b, w, op, numeric::convert(from, to, x)),
                Val::Data(d) => {
                    let out = d.iter().map(|&x| numeric::convert(from, to, x)).collect();
                    set_data(b, w, op, out);
                }
                _ => return Err(b.runtime(w, "convert of a non-register value")),
            }
        }
        OpKind::Bitcast => {
            let from = dtype(b.ty(w, op.operands[0]));
            let to = dtype(b.ty(w, op.results[0]));
            match b.val(w, op.operands[0])? {
                Val::Scalar(x) => set_scalar(b, w, op, numeric::bitcast(from, to, x)),
                Val::Data(d) => {
                    let out = d.iter().map(|&x| numeric::bitcast(from, to, x)).collect();
                    set_data(b, w, op, out);
                }
                _ => return Err(b.runtime(w, "bitcast of a non-register value")),
            }
        }
        OpKind::Transpose => {
            let (rows, cols) = tile_shape(b.ty(w, op.operands[0]));
            let d = b.data(w, op.operands[0])?;
            let mut out = vec![0.0; rows * cols];
            for r in 0..rows {
                for c in 0..cols {
                    out[c * rows + r] = d[r * cols + c];
                }
            }
            set_data(b, w, op, out);
        }
        OpKind::Bcast(axis, f) => {
            let t = b.ty(w, op.operands[0]);
            let (rows, cols) = tile_shape(t);
            let dt = dtype(t);
            let x = b.data(w, op.operands[0])?;
            let v = b.data(w, op.operands[1])?;
            let mut out = Vec::with_capacity(rows * cols);
            for r in 0..rows {
                for c in 0..cols {
                    let y = match axis {
                        BcastAxis::Row => v[r],
                        BcastAxis::Col => v[c],
                    };
                    out.push(
                        apply_binary(*f, dt, x[r * cols + c], y).map_err(|m| b.runtime(w, &m))?,
                    );
                }
            }
            set_data(b, w, op, out);
        }
        OpKind::Reduce(axis, f) => reduce(b, w, op, *axis, *f)?,
        OpKind::Scan { axis, f, exclusive } => scan(b, w, op, *axis, *f, *exclusive)?,
        OpKind::SortRow { descending } => {
            let (rows, cols) = tile_shape(b.ty(w, op.operands[0]));
            let keys = b.data(w, op.operands[0])?;
            let idx = b.data(w, op.operands[1])?;
            let (k, i) = super::sort::sort_rows(*descending, rows, cols, &keys, &idx);
            b.set(w, op.results[0], Val::Data(Rc::new(k)));
            b.set(w, op.results[1], Val::Data(Rc::new(i)));
        }
        OpKind::TopkRow(k) => {
            let t = b.ty(w, op.operands[0]);
            let (d, (rows, cols)) = (dtype(t), tile_shape(t));
            let [keys, idx, best, best_idx] = [0, 1, 2, 3].map(|i| b.data(w, op.operands[i]));
            let (keys, idx, best, best_idx) = (keys?, idx?, best?, best_idx?);
            let rows_in = super::sort::TopkRows {
                rows,
                cols,
                keys: &keys,
                idx: &idx,
                best: &best,
                best_idx: &best_idx,
            };
            let (k, i) = super::sort::topk_rows(*k as usize, d, &rows_in);
            b.set(w, op.results[0], Val::Data(Rc::new(k)));
            b.set(w, op.results[1], Val::Data(Rc::new(i)));
        }
        OpKind::Mask(kind, value) => {
            let t = b.ty(w, op.operands[0]);
            let (rows, cols) = tile_shape(t);
            let v = numeric::round(dtype(t), *value);
            let a = b.scalar(w, op.operands[1])?;
            let c2 = b.scalar(w, op.operands[2])?;
            let mut out = (*b.data(w, op.operands[0])?).clone();
            for r in 0..rows {
                for c in 0..cols {
                    let (rf, cf) = (r as f64, c as f64);
                    let masked = match kind {
                        MaskKind::Causal => c2 + cf > a + rf,
                        MaskKind::AntiCausal => c2 + cf < a + rf,
                        MaskKind::Rows => a + rf >= c2,
                        MaskKind::Cols => a + cf >= c2,
                    };
                    if masked {
                        out[r * cols + c] = v;
                    }
                }
            }
            set_data(b, w, op, out);
        }
        OpKind::Mma(v) => {
            let d = mma(b, w, op, *v)?;
            set_data(b, w, op, d);
        }
        OpKind::MmaAsync(v) => {
            // Computed now; readable once an mma_wait has retired it (checked where it is read).
            let data = Rc::new(mma(b, w, op, *v)?);
            let id = b.mma_groups[w].issue();
            b.set(w, op.results[0], Val::InFlight { data, mma: id });
        }
        OpKind::MmaCommit => b.mma_groups[w].commit(),
        // Registers are not modelled: values stay as they are. That all four warps of the
        // warpgroup execute it was checked as for every collective op (`check_collective`).
        OpKind::SetMaxNReg { .. } => {}
        OpKind::MmaWait(n) => mma_wait(b, w, op, *n)?,
        OpKind::AllocShared => {
            let r = b
                .mem
                .alloc_of(op)
                .ok_or_else(|| b.runtime(w, "alloc_shared outside the kernel's top level"))?;
            b.set(w, op.results[0], Val::Shared(r));
        }
        OpKind::SharedIndex => {
            let arr = shared(b, w, op.operands[0])?;
            let i = b.scalar(w, op.operands[1])?;
            let len = b.mem.array_len(arr);
            if !(0.0..f64::from(len)).contains(&i) {
                return Err(b.out_of_bounds(
                    w,
                    "shared array index",
                    format!("{i}"),
                    format!("0..{len}"),
                ));
            }
            let r = SharedRef {
                alloc: arr.alloc,
                elem: i as u32,
                whole: false,
            };
            b.set(w, op.results[0], Val::Shared(r));
        }
        OpKind::Load => load(b, w, op)?,
        OpKind::Store => store(b, w, op)?,
        OpKind::Copy => copy(b, w, op)?,
        OpKind::CopyAsync => copy_async(b, w, op)?,
        OpKind::CopyStart => copy_start(b, w, op)?,
        OpKind::CopyCommit => b.mem.copy_commit(w),
        OpKind::CopyWait(n) => b.mem.copy_wait(w, *n as usize),
        OpKind::GatherRows => gather_rows(b, w, op)?,
        OpKind::Gather => gather(b, w, op)?,
        OpKind::TableView => super::table::table_view(b, w, op)?,
        OpKind::ScatterRows { add } => scatter_rows(b, w, op, *add)?,
        OpKind::AtomicAdd => atomic_add(b, w, op)?,
        OpKind::AtomicRmw(f) => atomic_update(b, w, op, Some(*f))?,
        OpKind::AtomicCas => atomic_update(b, w, op, None)?,
        OpKind::Philox => philox(b, w, op)?,
        OpKind::DeviceAssert(message) => device_assert(b, w, op, message)?,
        OpKind::Barrier => return Ok(Step::Wait(WaitOn::Barrier)),
        OpKind::SemInit(n) => {
            let s = shared(b, w, op.operands[0])?;
            b.mem.sem_init(s, *n);
        }
        OpKind::SemArrive => {
            let s = shared(b, w, op.operands[0])?;
            b.mem
                .sem_arrive(s)
                .map_err(|e| b.runtime(w, &e.message(&b.mem.describe_sem(s))))?;
        }
        OpKind::SemExpect(bytes) => {
            let s = shared(b, w, op.operands[0])?;
            b.mem
                .sem_expect(s, u64::from(*bytes))
                .map_err(|e| b.runtime(w, &e.message(&b.mem.describe_sem(s))))?;
        }
        OpKind::SemWait => {
            let s = shared(b, w, op.operands[0])?;
            if !b.mem.sem_initialized(s) {
                return Err(b.runtime(
                    w,
                    &format!(
                        "semaphore {} is waited on before `sem.init`",
                        b.mem.describe_sem(s)
                    ),
                ));
            }
            let p = b.scalar(w, op.operands[1])?;
            if p != 0.0 && p != 1.0 {
                return Err(b.runtime(w, &format!("`sem.wait` parity must be 0 or 1, got {p}")));
            }
            return Ok(Step::Wait(WaitOn::Sem {
                sem: s,
                parity: p as u64,
            }));
        }
        OpKind::For
        | OpKind::If
        | OpKind::While
        | OpKind::Yield
        | OpKind::Condition
        | OpKind::Return
        | OpKind::Call(_) => {
            return Err(b.runtime(w, "control flow reached the op executor"));
        }
    }
    Ok(Step::Next)
}

// ---- small accessors ------------------------------------------------------------------------------

fn dtype(t: &Type) -> ScalarType {
    t.dtype().unwrap_or(ScalarType::F32)
}

fn elements(t: &Type) -> usize {
    t.num_elements().unwrap_or(0) as usize
}

fn tile_shape(t: &Type) -> (usize, usize) {
    t.tile_shape()
        .map(|(r, c)| (r as usize, c as usize))
        .unwrap_or((0, 0))
}

fn result_dtype(b: &BlockRun<'_, '_>, w: usize, op: &Op) -> ScalarType {
    dtype(b.ty(w, op.results[0]))
}

fn set_scalar(b: &mut BlockRun<'_, '_>, w: usize, op: &Op, x: f64) {
    b.set(w, op.results[0], Val::Scalar(x));
}

fn set_data(b: &mut BlockRun<'_, '_>, w: usize, op: &Op, d: Vec<f64>) {
    b.set(w, op.results[0], Val::Data(Rc::new(d)));
}

fn shared(b: &BlockRun<'_, '_>, w: usize, v: Value) -> R<SharedRef> {
    match b.val(w, v)? {
        Val::Shared(r) => Ok(r),
        _ => Err(b.runtime(w, &format!("value %{} is not in shared memory", v.0))),
    }
}

fn global(b: &BlockRun<'_, '_>, w: usize, v: Value) -> R<super::table::GlobalRef> {
    match b.val(w, v)? {
        Val::Global(g) => Ok(g),
        _ => Err(b.runtime(w, &format!("value %{} is not a global view", v.0))),
    }
}

fn tensor<'x>(b: &'x BlockRun<'_, '_>, g: super::table::GlobalRef) -> &'x super::HostTensor {
    // Arguments are checked against parameter types before the run starts, and `table_view`
    // checks its entry.
    super::table::resolve(b.args, g).expect("global views are bound to tensors")
}

fn tensor_mut<'x>(
    b: &'x mut BlockRun<'_, '_>,
    g: super::table::GlobalRef,
) -> &'x mut super::HostTensor {
    super::table::resolve_mut(b.args, g).expect("global views are bound to tensors")
}

fn indices(b: &BlockRun<'_, '_>, w: usize, vs: &[Value]) -> R<Vec<i64>> {
    vs.iter().map(|v| Ok(b.scalar(w, *v)? as i64)).collect()
}

// ---- maps -------------------------------------------------------------------------------------

fn unary(b: &mut BlockRun<'_, '_>, w: usize, op: &Op, f: UnaryFn) -> R<()> {
    let d = dtype(b.ty(w, op.operands[0]));
    let n = b.bounds.numerics;
    match b.val(w, op.operands[0])? {
        Val::Scalar(x) => set_scalar(b, w, op, unary_in(n, f, d, x)),
        Val::Data(x) => {
            let out = x.iter().map(|&v| unary_in(n, f, d, v)).collect();
            set_data(b, w, op, out);
        }
        _ => return Err(b.runtime(w, "map of a non-register value")),
    }
    Ok(())
}

/// `cmp.p`: elementwise over tiles and vectors, a scalar operand broadcast; 1 where the
/// predicate holds, else 0. Any comparison with a NaN is false except `ne` (IEEE 754 unordered).
fn compare(b: &mut BlockRun<'_, '_>, w: usize, op: &Op, p: CmpPred) -> R<()> {
    let holds = |x: f64, y: f64| {
        let r = match p {
            CmpPred::Lt => x < y,
            CmpPred::Le => x <= y,
            CmpPred::Gt => x > y,
            CmpPred::Ge => x >= y,
            CmpPred::Eq => x == y,
            CmpPred::Ne => x != y,
        };
        f64::from(u8::from(r))
    };
    match (b.val(w, op.operands[0])?, b.val(w, op.operands[1])?) {
        (Val::Scalar(x), Val::Scalar(y)) => set_scalar(b, w, op, holds(x, y)),
        (Val::Data(x), Val::Data(y)) => {
            let out = x.iter().zip(y.iter()).map(|(&x, &y)| holds(x, y)).collect();
            set_data(b, w, op, out);
        }
        (Val::Data(x), Val::Scalar(y)) => {
            let out = x.iter().map(|&x| holds(x, y)).collect();
            set_data(b, w, op, out);
        }
        (Val::Scalar(x), Val::Data(y)) => {
            let out = y.iter().map(|&y| holds(x, y)).collect();
            set_data(b, w, op, out);
        }
        _ => return Err(b.runtime(w, "cmp of a non-register value")),
    }
    Ok(())
}

/// `select (c, x, y)`: `c ? x : y` per element, scalars broadcast. Only the chosen element is
/// read, so a NaN or infinity in the other one never reaches the result.
fn select(b: &mut BlockRun<'_, '_>, w: usize, op: &Op) -> R<()> {
    let c = b.val(w, op.operands[0])?;
    if let Val::Scalar(c) = c {
        // One choice for the whole value (the value is passed on as it is).
        let v = b.val(w, op.operands[if c != 0.0 { 1 } else { 2 }])?;
        b.set(w, op.results[0], v);
        return Ok(());
    }
    let n = elements(b.ty(w, op.results[0]));
    let pick = |v: &Val, k: usize| match v {
        Val::Scalar(x) => Some(*x),
        Val::Data(d) => d.get(k).copied(),
        _ => None,
    };
    let (x, y) = (b.val(w, op.operands[1])?, b.val(w, op.operands[2])?);
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let chosen = match pick(&c, k) {
            Some(m) if m != 0.0 => pick(&x, k),
            Some(_) => pick(&y, k),
            None => None,
        };
        match chosen {
            Some(v) => out.push(v),
            None => return Err(b.runtime(w, "select of a non-register value")),
        }
    }
    set_data(b, w, op, out);
    Ok(())
}

/// One element of a unary map in the launch's [`numeric::Numerics`]: the approximate float
/// functions as the hardware may compute them in `Approx`, else [`apply_unary`].
fn unary_in(n: numeric::Numerics, f: UnaryFn, d: ScalarType, x: f64) -> f64 {
    if n == numeric::Numerics::Approx && d.is_float() && numeric::is_approximate(f) {
        // Computed in f32 (16-bit inputs widen exactly), then rounded to the dtype, as the
        // lowering does.
        numeric::round(d, numeric::approx_unary(f, x))
    } else {
        apply_unary(f, d, x)
    }
}

/// One element of a unary map, rounded to `d`.
pub(crate) fn apply_unary(f: UnaryFn, d: ScalarType, x: f64) -> f64 {
    if !d.is_float() {
        let i = x as i64;
        let r = match f {
            UnaryFn::Neg => i.wrapping_neg(),
            UnaryFn::Abs => i.wrapping_abs(),
            UnaryFn::Relu => i.max(0),
            UnaryFn::Not if d == ScalarType::Bool => i64::from(i == 0),
            UnaryFn::Not => !i,
            // Float-only functions are rejected by the verifier.
            _ => i,
        };
        return numeric::round(d, r as f64);
    }
    let y = match f {
        UnaryFn::Exp => x.exp(),
        UnaryFn::Exp2 => x.exp2(),
        UnaryFn::Log => x.ln(),
        UnaryFn::Log2 => x.log2(),
        UnaryFn::Neg => -x,
        UnaryFn::Abs => x.abs(),
        UnaryFn::Relu => {
            if x > 0.0 {
                x
            } else {
                0.0
            }
        }
        UnaryFn::Silu => x / (1.0 + (-x).exp()),
        UnaryFn::GeluTanh => {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
        }
        UnaryFn::Sqrt => x.sqrt(),
        UnaryFn::Rsqrt => 1.0 / x.sqrt(),
        UnaryFn::Recip => 1.0 / x,
        UnaryFn::Tanh => x.tanh(),
        UnaryFn::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        UnaryFn::Not => x,
    };
    numeric::round(d, y)
}

fn binary(b: &mut BlockRun<'_, '_>, w: usize, op: &Op, f: BinaryFn) -> R<()> {
    let d = result_dtype(b, w, op);
    let x = b.val(w, op.operands[0])?;
    let y = b.val(w, op.operands[1])?;
    let err = |m: String| b.runtime(w, &m);
    let out = match (&x, &y) {
        (Val::Scalar(x), Val::Scalar(y)) => {
            let r = apply_binary(f, d, *x, *y).map_err(err)?;
            set_scalar(b, w, op, r);
            return Ok(());
        }
        (Val::Data(xs), Val::Data(ys)) => xs
            .iter()
            .zip(ys.iter())
            .map(|(&p, &q)| apply_binary(f, d, p, q))
            .collect::<Result<Vec<_>, _>>(),
        (Val::Data(xs), Val::Scalar(s)) => xs.iter().map(|&p| apply_binary(f, d, p, *s)).collect(),
        (Val::Scalar(s), Val::Data(ys)) => ys.iter().map(|&q| apply_binary(f, d, *s, q)).collect(),
        _ => return Err(b.runtime(w, "map of a non-register value")),
    }
    .map_err(err)?;
    set_data(b, w, op, out);
    Ok(())
}

/// One element of a binary map, rounded to `d`. Integer division by zero is an error.
pub(crate) fn apply_binary(f: BinaryFn, d: ScalarType, x: f64, y: f64) -> Result<f64, String> {
    if !d.is_float() {
        let (a, c) = (x as i64, y as i64);
        let bits = i64::from(d.size_bytes()) * 8;
        let r = match f {
            BinaryFn::Add => a.wrapping_add(c),
            BinaryFn::Sub => a.wrapping_sub(c),
            BinaryFn::Mul => a.wrapping_mul(c),
            BinaryFn::Div | BinaryFn::Rem if c == 0 => {
                return Err(format!("integer {} by zero", f.name()));
            }
            BinaryFn::Div => a.wrapping_div(c),
            BinaryFn::Rem => a.wrapping_rem(c),
            BinaryFn::Max => a.max(c),
            BinaryFn::Min => a.min(c),
            BinaryFn::And => a & c,
            BinaryFn::Or => a | c,
            BinaryFn::Xor => a ^ c,
            // Shift amounts outside 0..bits shift everything out (as PTX's shl/shr clamp).
            BinaryFn::Shl if !(0..bits).contains(&c) => 0,
            BinaryFn::Shl => a.wrapping_shl(c as u32),
            BinaryFn::Shr if !(0..bits).contains(&c) => {
                if a < 0 {
                    -1
                } else {
                    0
                }
            }
            BinaryFn::Shr => a >> c,
            BinaryFn::Pow => a.wrapping_pow(c.clamp(0, 64) as u32),
        };
        return Ok(numeric::round(d, r as f64));
    }
    let r = match f {
        BinaryFn::Add => x + y,
        BinaryFn::Sub => x - y,
        BinaryFn::Mul => x * y,
        BinaryFn::Div => x / y,
        BinaryFn::Max => x.max(y),
        BinaryFn::Min => x.min(y),
        BinaryFn::Pow => x.powf(y),
        // Integer-only functions are rejected by the verifier for floats.
        _ => f64::NAN,
    };
    Ok(numeric::round(d, r))
}

// ---- reductions -------------------------------------------------------------------------------

/// The identity of a reduction function in dtype `d` (what an exclusive scan starts with).
pub(crate) fn reduce_identity(f: ReduceFn, d: ScalarType) -> f64 {
    let (lo, hi) = numeric::int_range(d);
    match f {
        ReduceFn::Sum => 0.0,
        ReduceFn::Prod => 1.0,
        ReduceFn::Max => lo,
        ReduceFn::Min => hi,
    }
}

/// Prefixes along rows or columns, accumulated in f64 and rounded to the dtype per element.
fn scan(
    b: &mut BlockRun<'_, '_>,
    w: usize,
    op: &Op,
    axis: BcastAxis,
    f: ReduceFn,
    exclusive: bool,
) -> R<()> {
    let t = b.ty(w, op.operands[0]);
    let d = dtype(t);
    let (rows, cols) = tile_shape(t);
    let x = b.data(w, op.operands[0])?;
    let (lines, len) = match axis {
        BcastAxis::Row => (rows, cols),
        BcastAxis::Col => (cols, rows),
    };
    let mut out = vec![0.0; rows * cols];
    for line in 0..lines {
        let mut acc = reduce_identity(f, d);
        for i in 0..len {
            let at = match axis {
                BcastAxis::Row => line * cols + i,
                BcastAxis::Col => i * cols + line,
            };
            let next = match f {
                ReduceFn::Sum => acc + x[at],
                ReduceFn::Prod => acc * x[at],
                ReduceFn::Max => acc.max(x[at]),
                ReduceFn::Min => acc.min(x[at]),
            };
            out[at] = numeric::round(d, if exclusive { acc } else { next });
            acc = next;
        }
    }
    set_data(b, w, op, out);
    Ok(())
}

/// Reductions are computed exactly (in f64 for sums) and rounded once to the dtype, so any
/// hardware summation order agrees with them to within the dtype's rounding.
fn reduce(b: &mut BlockRun<'_, '_>, w: usize, op: &Op, axis: ReduceAxis, f: ReduceFn) -> R<()> {
    let t = b.ty(w, op.operands[0]);
    let d = dtype(t);
    let x = b.data(w, op.operands[0])?;
    let fold = |it: &mut dyn Iterator<Item = f64>| -> f64 {
        let r = match f {
            ReduceFn::Sum => it.sum::<f64>(),
            ReduceFn::Max => it.fold(f64::NEG_INFINITY, f64::max),
            ReduceFn::Min => it.fold(f64::INFINITY, f64::min),
            ReduceFn::Prod => it.product::<f64>(),
        };
        numeric::round(d, r)
    };
    match axis {
        ReduceAxis::All => {
            let r = fold(&mut x.iter().copied());
            set_scalar(b, w, op, r);
        }
        ReduceAxis::Row => {
            let (rows, cols) = tile_shape(t);
            let out = (0..rows)
                .map(|r| fold(&mut x[r * cols..(r + 1) * cols].iter().copied()))
                .collect();
            set_data(b, w, op, out);
        }
        ReduceAxis::Col => {
            let (rows, cols) = tile_shape(t);
            let out = (0..cols)
                .map(|c| fold(&mut (0..rows).map(|r| x[r * cols + c])))
                .collect();
            set_data(b, w, op, out);
        }
    }
    Ok(())
}

// ---- tensor cores -----------------------------------------------------------------------------

/// `mma_wait[n] (acc…)`: completes all but the `n` most recent committed groups of the warp,
/// then returns each accumulator, which must be complete by then (an operand never in flight,
/// such as the zeros of a loop that ran no iteration, passes through).
fn mma_wait(b: &mut BlockRun<'_, '_>, w: usize, op: &Op, n: u32) -> R<()> {
    b.mma_groups[w].wait(n as usize);
    for (i, (&v, &r)) in op.operands.iter().zip(&op.results).enumerate() {
        let out = match b.val(w, v)? {
            Val::InFlight { data, mma } => {
                let groups = &b.mma_groups[w];
                if !groups.complete(mma) {
                    let why = if groups.committed(mma) {
                        format!("its group is among the {n} most recent committed groups this wait leaves in flight")
                    } else {
                        "it is in the open group (no mma_commit after it)".to_string()
                    };
                    return Err(b.runtime(
                        w,
                        &format!(
                            "mma_wait[{n}] cannot retire %{} (operand {i}), the accumulator of this warp's mma_async number {mma}: {why}",
                            v.0
                        ),
                    ));
                }
                Val::Data(data)
            }
            Val::Data(d) => Val::Data(d),
            _ => return Err(b.runtime(w, &format!("mma_wait operand {i} is not a register tile"))),
        };
        b.set(w, r, out);
    }
    Ok(())
}

/// `D = op(A)·op(B) + C`: products are exact in f32 for 16- and 8-bit inputs and for f32
/// inputs, which are first rounded to tf32 (see [`crate::tf32`]); the sum
/// accumulates in f32 in order of k. Returns D's elements.
fn mma(b: &mut BlockRun<'_, '_>, w: usize, op: &Op, v: MmaVariant) -> R<Vec<f64>> {
    let (ta, tb, tc) = (
        b.ty(w, op.operands[0]),
        b.ty(w, op.operands[1]),
        b.ty(w, op.operands[2]),
    );
    let (m, n) = tile_shape(tc);
    let (ar, ac) = tile_shape(ta);
    let (br, bc) = tile_shape(tb);
    let a_data = operand_data(b, w, op.operands[0])?;
    let b_data = operand_data(b, w, op.operands[1])?;
    // f32 operands multiply in tf32: each element rounds as `cvt.rna.tf32.f32` does.
    let tf32 = ta.dtype() == Some(ScalarType::F32);
    let operand = |x: f64| -> f32 {
        if tf32 {
            crate::tf32::round_tf32(x as f32)
        } else {
            x as f32
        }
    };
    // The C of an mma_async may be the accumulator of an earlier one, still in flight: the
    // tensor cores accumulate into the same registers in issue order.
    let c = match b.val(w, op.operands[2])? {
        Val::InFlight { data, .. } => data,
        _ => b.data(w, op.operands[2])?,
    };
    // op(A) as a logical (rows_a × k) matrix; at warpgroup scope with A in shared memory this
    // warp uses rows [rank·m, rank·m + m) of the group's op(A).
    let k = if v.a_transposed() { ar } else { ac };
    let a_row_off = if op.scope == Scope::Warpgroup && matches!(ta, Type::SharedTile { .. }) {
        (w % 4) * m
    } else {
        0
    };
    let a_at = |i: usize, kk: usize| -> f32 {
        let i = i + a_row_off;
        operand(if v.a_transposed() {
            a_data[kk * ac + i]
        } else {
            a_data[i * ac + kk]
        })
    };
    // op(B) as k × n, stored so that row kk is contiguous over n.
    let mut bm = vec![0f32; k * n];
    for kk in 0..k {
        for j in 0..n {
            bm[kk * n + j] = operand(if v.b_transposed() {
                b_data[j * bc + kk]
            } else {
                b_data[kk * bc + j]
            });
        }
    }
    let _ = br;
    let mut out = vec![0f64; m * n];
    let mut acc = vec![0f32; n];
    for i in 0..m {
        for (j, a) in acc.iter_mut().enumerate() {
            *a = c[i * n + j] as f32;
        }
        for kk in 0..k {
            let a = a_at(i, kk);
            let row = &bm[kk * n..(kk + 1) * n];
            // For each (i, j) the terms are still added in order of k.
            for (acc_j, &b_j) in acc.iter_mut().zip(row) {
                *acc_j += a * b_j;
            }
        }
        for (j, a) in acc.iter().enumerate() {
            out[i * n + j] = f64::from(*a);
        }
    }
    Ok(out)
}

/// The elements of a register tile, or of a shared tile (row-major).
fn operand_data(b: &BlockRun<'_, '_>, w: usize, v: Value) -> R<Rc<Vec<f64>>> {
    match b.val(w, v)? {
        Val::Data(d) => Ok(d),
        Val::Shared(r) => {
            let ty = b.ty(w, v);
            let data = b.mem.data(r);
            let cols = extent(ty).1;
            check_written(b, w, r, data, 0..data.len(), cols)?;
            Ok(Rc::new(data.to_vec()))
        }
        _ => Err(b.runtime(w, "mma operand is neither a register nor a shared tile")),
    }
}

// ---- memory -----------------------------------------------------------------------------------

/// Reading shared memory that no op has written is an error: it is how a missing barrier or
/// semaphore wait shows up on the interpreter (on a GPU it reads stale data).
fn check_written(
    b: &BlockRun<'_, '_>,
    w: usize,
    r: SharedRef,
    data: &[f64],
    span: std::ops::Range<usize>,
    cols: usize,
) -> R<()> {
    if let Some(i) = span.clone().find(|&i| is_in_flight(data[i])) {
        let (row, col) = (i / cols.max(1), i % cols.max(1));
        return Err(b.runtime(
            w,
            &format!(
                "reads element ({row}, {col}) of shared object {} while a `copy_start` into it is \
                 in flight (a missing `copy_wait`, or a missing barrier after it?)",
                b.mem.describe(r)
            ),
        ));
    }
    // A copy still in flight is the more precise report; any other unordered read is a race.
    b.race_access(w, r, span.clone(), cols, RaceAccess::Read)?;
    match span.clone().find(|&i| is_unwritten(data[i])) {
        None => Ok(()),
        Some(i) => {
            let (row, col) = (i / cols.max(1), i % cols.max(1));
            Err(b.runtime(
                w,
                &format!(
                    "reads element ({row}, {col}) of shared object {} before anything wrote it \
                     (a missing barrier or semaphore wait?)",
                    b.mem.describe(r)
                ),
            ))
        }
    }
}

/// How a global access addresses its view: element offsets of a tile or vector, with `None`
/// for elements outside the view (masked).
struct GlobalWindow {
    rows: usize,
    cols: usize,
    /// Storage offset of each element (row-major over rows × cols), `None` when masked.
    offsets: Vec<Option<usize>>,
}

/// Addresses a tile (`rows × cols`) or vector (`rows == 1`) of view `g` at `idx` (leading
/// element indices, then tile coordinates). Leading indices out of bounds are an error.
fn window(
    b: &BlockRun<'_, '_>,
    w: usize,
    g: super::table::GlobalRef,
    idx: &[i64],
    rows: usize,
    cols: usize,
    is_tile: bool,
) -> R<GlobalWindow> {
    let t = tensor(b, g);
    let shape = t.shape();
    let strides = t.strides();
    let rank = shape.len();
    let lead = if is_tile { rank - 2 } else { rank - 1 };
    let mut base = 0usize;
    for d in 0..lead {
        let i = idx[d];
        if i < 0 || i as usize >= shape[d] {
            return Err(b.out_of_bounds(
                w,
                &format!("index of dimension {d} of the global view"),
                format!("{idx:?}"),
                format!("shape {shape:?}"),
            ));
        }
        base += i as usize * strides[d];
    }
    let (row0, nrows, rstride) = if is_tile {
        (
            idx[rank - 2] * rows as i64,
            shape[rank - 2],
            strides[rank - 2],
        )
    } else {
        (0, 1, 0)
    };
    let col0 = idx[rank - 1] * cols as i64;
    let (ncols, cstride) = (shape[rank - 1], strides[rank - 1]);
    let mut offsets = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let gr = row0 + r as i64;
        for c in 0..cols {
            let gc = col0 + c as i64;
            let inside = gr >= 0 && (gr as usize) < nrows && gc >= 0 && (gc as usize) < ncols;
            offsets.push(inside.then(|| base + gr as usize * rstride + gc as usize * cstride));
        }
    }
    Ok(GlobalWindow {
        rows,
        cols,
        offsets,
    })
}

/// Rows and cols of a tile or vector type (a vector is one row).
fn extent(t: &Type) -> (usize, usize, bool) {
    match t {
        Type::Tile { rows, cols, .. } | Type::SharedTile { rows, cols, .. } => {
            (*rows as usize, *cols as usize, true)
        }
        Type::Vector { len, .. } | Type::SharedVector { len, .. } => (1, *len as usize, false),
        _ => (1, 1, false),
    }
}

/// Element offset of a scalar access; out of bounds is an error.
fn element_offset(
    b: &BlockRun<'_, '_>,
    w: usize,
    g: super::table::GlobalRef,
    idx: &[i64],
) -> R<usize> {
    let t = tensor(b, g);
    let us: Option<Vec<usize>> = idx.iter().map(|&i| usize::try_from(i).ok()).collect();
    us.and_then(|u| t.offset(&u)).ok_or_else(|| {
        b.out_of_bounds(
            w,
            "element index of the global view",
            format!("{idx:?}"),
            format!("shape {:?}", t.shape()),
        )
    })
}

/// For a shared tile access by a register tile of `rows × cols`: the row and column offsets in
/// the shared tile (sub-tile coordinates, or this warp's quarter at warpgroup scope).
fn shared_window(
    b: &BlockRun<'_, '_>,
    w: usize,
    op: &Op,
    st: &Type,
    idx: &[i64],
    rows: usize,
    cols: usize,
) -> R<(usize, usize)> {
    let (srows, scols) = tile_shape(st);
    if op.scope == Scope::Warpgroup {
        return Ok(((w % 4) * rows, 0));
    }
    if idx.is_empty() {
        return Ok((0, 0));
    }
    let (i, j) = (idx[0], idx[1]);
    let (ti, tj) = (srows / rows.max(1), scols / cols.max(1));
    if i < 0 || j < 0 || i as usize >= ti || j as usize >= tj {
        return Err(b.out_of_bounds(
            w,
            "sub-tile coordinates in the shared tile",
            format!("({i}, {j})"),
            format!("0..{ti} × 0..{tj} ({rows}×{cols} tiles of a {srows}×{scols} shared tile)"),
        ));
    }
    Ok((i as usize * rows, j as usize * cols))
}

/// Where a register value of `rows × cols` sits in the shared object of type `mem`: the row and
/// column of its first element and the object's row length. A shared vector is one row.
fn shared_origin(
    b: &BlockRun<'_, '_>,
    w: usize,
    op: &Op,
    mem: &Type,
    idx: &[i64],
    rows: usize,
    cols: usize,
) -> R<(usize, usize, usize)> {
    let (r0, c0) = if matches!(mem, Type::SharedTile { .. }) {
        shared_window(b, w, op, mem, idx, rows, cols)?
    } else {
        (0, 0)
    };
    Ok((r0, c0, extent(mem).1))
}

fn load(b: &mut BlockRun<'_, '_>, w: usize, op: &Op) -> R<()> {
    let src_ty = b.ty(w, op.operands[0]);
    let res_ty = b.ty(w, op.results[0]);
    let idx = indices(b, w, &op.operands[1..])?;
    match b.val(w, op.operands[0])? {
        Val::Global(g) => {
            if res_ty.is_scalar() {
                let off = element_offset(b, w, g, &idx)?;
                b.global_access(w, g, [off], GlobalAccess::Read)?;
                let x = tensor(b, g).storage()[off];
                set_scalar(b, w, op, x);
                return Ok(());
            }
            let (rows, cols, is_tile) = extent(res_ty);
            let win = window(b, w, g, &idx, rows, cols, is_tile)?;
            b.global_access(
                w,
                g,
                win.offsets.iter().flatten().copied(),
                GlobalAccess::Read,
            )?;
            let data = tensor(b, g).storage();
            let out = win
                .offsets
                .iter()
                .map(|o| o.map_or(0.0, |o| data[o]))
                .collect();
            set_data(b, w, op, out);
        }
        Val::Shared(r) => {
            let (rows, cols, _) = extent(res_ty);
            let (r0, c0, scols) = shared_origin(b, w, op, src_ty, &idx, rows, cols)?;
            let s = b.mem.data(r);
            let mut out = Vec::with_capacity(rows * cols);
            for rr in 0..rows {
                let span = (r0 + rr) * scols + c0..(r0 + rr) * scols + c0 + cols;
                check_written(b, w, r, s, span.clone(), scols)?;
                out.extend_from_slice(&s[span]);
            }
            set_data(b, w, op, out);
        }
        _ => return Err(b.runtime(w, "load from a value that is not in memory")),
    }
    Ok(())
}

fn store(b: &mut BlockRun<'_, '_>, w: usize, op: &Op) -> R<()> {
    let dst_ty = b.ty(w, op.operands[0]);
    let x_ty = b.ty(w, op.operands[1]);
    let idx = indices(b, w, &op.operands[2..])?;
    let x = b.val(w, op.operands[1])?;
    match b.val(w, op.operands[0])? {
        Val::Global(g) => {
            let d = dtype(dst_ty);
            match x {
                Val::Scalar(v) => {
                    let off = element_offset(b, w, g, &idx)?;
                    b.global_access(w, g, [off], GlobalAccess::Write)?;
                    tensor_mut(b, g).data_mut()[off] = numeric::round(d, v);
                }
                Val::Data(vals) => {
                    let (rows, cols, is_tile) = extent(x_ty);
                    let win = window(b, w, g, &idx, rows, cols, is_tile)?;
                    let written = win.offsets.iter().flatten().copied();
                    b.global_access(w, g, written, GlobalAccess::Write)?;
                    let data = tensor_mut(b, g).data_mut();
                    for (o, v) in win.offsets.iter().zip(vals.iter()) {
                        if let Some(o) = o {
                            data[*o] = numeric::round(d, *v);
                        }
                    }
                }
                _ => return Err(b.runtime(w, "store of a non-register value")),
            }
        }
        Val::Shared(r) => {
            let (rows, cols, _) = extent(x_ty);
            let (r0, c0, scols) = shared_origin(b, w, op, dst_ty, &idx, rows, cols)?;
            let vals = match x {
                Val::Data(v) => v,
                _ => return Err(b.runtime(w, "store of a non-register value")),
            };
            let written =
                (0..rows).flat_map(|rr| (r0 + rr) * scols + c0..(r0 + rr) * scols + c0 + cols);
            b.race_access(w, r, written, scols, RaceAccess::Write)?;
            let s = b.mem.data_mut(r);
            for rr in 0..rows {
                let dst = (r0 + rr) * scols + c0;
                s[dst..dst + cols].copy_from_slice(&vals[rr * cols..(rr + 1) * cols]);
            }
        }
        _ => return Err(b.runtime(w, "store to a value that is not in memory")),
    }
    Ok(())
}

/// This warp's rank among the warps of the op's scope, and their number.
fn participants(b: &BlockRun<'_, '_>, w: usize, scope: Scope) -> (usize, usize) {
    match scope {
        Scope::Warp => (0, 1),
        Scope::Warpgroup => (w % 4, 4),
        Scope::Block => (w, b.warps.len()),
    }
}

fn copy(b: &mut BlockRun<'_, '_>, w: usize, op: &Op) -> R<()> {
    let idx = indices(b, w, &op.operands[2..])?;
    let (rank, n) = participants(b, w, op.scope);
    let dst = b.val(w, op.operands[0])?;
    let src = b.val(w, op.operands[1])?;
    match (dst, src) {
        (Val::Shared(s), Val::Global(g)) => {
            let (rows, cols, is_tile) = extent(b.ty(w, op.operands[0]));
            let win = window(b, w, g, &idx, rows, cols, is_tile)?;
            let data: Vec<f64> = {
                let gd = tensor(b, g).storage();
                win.offsets
                    .iter()
                    .map(|o| o.map_or(0.0, |o| gd[o]))
                    .collect()
            };
            let mut mine = Vec::new();
            for_share(win.rows, win.cols, rank, n, |e| mine.push(e));
            let read = mine.iter().filter_map(|&e| win.offsets[e]);
            b.global_access(w, g, read, GlobalAccess::Read)?;
            b.race_access(w, s, mine, win.cols, RaceAccess::Write)?;
            let sd = b.mem.data_mut(s);
            for_share(win.rows, win.cols, rank, n, |e| sd[e] = data[e]);
        }
        (Val::Global(g), Val::Shared(s)) => {
            let (rows, cols, is_tile) = extent(b.ty(w, op.operands[1]));
            let d = dtype(b.ty(w, op.operands[0]));
            let win = window(b, w, g, &idx, rows, cols, is_tile)?;
            let sd = b.mem.data(s).to_vec();
            let mut mine = Vec::new();
            for_share(win.rows, win.cols, rank, n, |e| mine.push(e));
            for &e in &mine {
                check_written(b, w, s, &sd, e..e + 1, win.cols)?;
            }
            let written = mine.iter().filter_map(|&e| win.offsets[e]);
            b.global_access(w, g, written, GlobalAccess::Write)?;
            let gd = tensor_mut(b, g).data_mut();
            for_share(win.rows, win.cols, rank, n, |e| {
                if let Some(o) = win.offsets[e] {
                    gd[o] = numeric::round(d, sd[e]);
                }
            });
        }
        _ => return Err(b.runtime(w, "copy needs one global view and one shared object")),
    }
    Ok(())
}

/// Calls `f` with the element indices that participant `rank` of `n` handles: whole rows of a
/// tile (row r goes to r mod n), or elements of a vector (element i to i mod n).
fn for_share(rows: usize, cols: usize, rank: usize, n: usize, mut f: impl FnMut(usize)) {
    if rows == 1 {
        (0..cols).filter(|i| i % n == rank).for_each(f);
    } else {
        for r in (0..rows).filter(|r| r % n == rank) {
            (r * cols..(r + 1) * cols).for_each(&mut f);
        }
    }
}

fn copy_async(b: &mut BlockRun<'_, '_>, w: usize, op: &Op) -> R<()> {
    let dst_ty = b.ty(w, op.operands[0]);
    let idx = indices(b, w, &op.operands[3..])?;
    let s = shared(b, w, op.operands[0])?;
    let g = global(b, w, op.operands[1])?;
    let sem = shared(b, w, op.operands[2])?;
    let (rows, cols, is_tile) = extent(dst_ty);
    let win = window(b, w, g, &idx, rows, cols, is_tile)?;
    let held = win.offsets.len() as u64 * PENDING_ELEMENT_BYTES;
    b.reserve(w, held, || {
        format!(
            "holding this async copy's {} elements until its semaphore's phase completes",
            win.offsets.len()
        )
    })?;
    b.global_access(
        w,
        g,
        win.offsets.iter().flatten().copied(),
        GlobalAccess::Read,
    )?;
    let base = b.mem.base(s);
    let gd = tensor(b, g).storage();
    let writes = win
        .offsets
        .iter()
        .enumerate()
        .map(|(e, o)| (base + e, o.map_or(0.0, |o| gd[o])))
        .collect();
    let bytes = dst_ty.shared_bytes().unwrap_or(0);
    b.race_access(
        w,
        s,
        0..win.offsets.len(),
        cols,
        RaceAccess::CopyAsync { sem },
    )?;
    b.mem
        .sem_copy(
            sem,
            bytes,
            PendingCopy {
                alloc: s.alloc,
                writes,
            },
        )
        .map_err(|e| b.runtime(w, &e.message(&b.mem.describe_sem(sem))))
}

/// `copy_start`: this warp's share of the copy (as `copy` splits it) joins its open group; the
/// destination elements are in flight until a `copy_wait` lands the group.
fn copy_start(b: &mut BlockRun<'_, '_>, w: usize, op: &Op) -> R<()> {
    let idx = indices(b, w, &op.operands[2..])?;
    let (rank, n) = participants(b, w, op.scope);
    let s = shared(b, w, op.operands[0])?;
    let g = global(b, w, op.operands[1])?;
    let (rows, cols, is_tile) = extent(b.ty(w, op.operands[0]));
    let win = window(b, w, g, &idx, rows, cols, is_tile)?;
    let mut mine = Vec::new();
    for_share(win.rows, win.cols, rank, n, |e| mine.push(e));
    b.reserve(w, mine.len() as u64 * PENDING_ELEMENT_BYTES, || {
        format!(
            "holding this `copy_start`'s {} elements until its `copy_wait`",
            mine.len()
        )
    })?;
    let sd = b.mem.data(s);
    if let Some(&e) = mine.iter().find(|&&e| is_in_flight(sd[e])) {
        let (row, col) = (e / win.cols.max(1), e % win.cols.max(1));
        return Err(b.runtime(
            w,
            &format!(
                "`copy_start` into element ({row}, {col}) of shared object {} while an earlier \
                 copy into it is in flight (wait for it with `copy_wait` before reusing the slot)",
                b.mem.describe(s)
            ),
        ));
    }
    let read = mine.iter().filter_map(|&e| win.offsets[e]);
    b.global_access(w, g, read, GlobalAccess::Read)?;
    let base = b.mem.base(s);
    let gd = tensor(b, g).storage();
    let writes = mine
        .iter()
        .map(|&e| (base + e, win.offsets[e].map_or(0.0, |o| gd[o])))
        .collect();
    b.race_access(w, s, mine.iter().copied(), win.cols, RaceAccess::CopyStart)?;
    b.mem.copy_start(
        w,
        PendingCopy {
            alloc: s.alloc,
            writes,
        },
    );
    Ok(())
}

/// Global row numbers of a gather/scatter: `None` for negative indices (no row); indices at or
/// past the view's row count are an error.
fn row_indices(
    b: &BlockRun<'_, '_>,
    w: usize,
    g: super::table::GlobalRef,
    idx: &[f64],
) -> R<Vec<Option<usize>>> {
    let nrows = tensor(b, g).shape()[0];
    idx.iter()
        .map(|&i| {
            if i < 0.0 {
                Ok(None)
            } else if i as usize >= nrows {
                Err(b.out_of_bounds(
                    w,
                    "row index",
                    format!("{i}"),
                    format!("the view's {nrows} rows"),
                ))
            } else {
                Ok(Some(i as usize))
            }
        })
        .collect()
}

/// Storage offsets of the `rows × cols` elements a gather or scatter of global rows `rows_of`
/// at tile column `j` of view `g` addresses (row-major), `None` for those outside the view.
fn row_window(
    b: &BlockRun<'_, '_>,
    g: super::table::GlobalRef,
    rows_of: &[Option<usize>],
    j: i64,
    rows: usize,
    cols: usize,
) -> Vec<Option<usize>> {
    let t = tensor(b, g);
    let (ncols, rs, cs) = (t.shape()[1], t.strides()[0], t.strides()[1]);
    (0..rows * cols)
        .map(|k| {
            let gr = (*rows_of.get(k / cols)?)?;
            let gc = j * cols as i64 + (k % cols) as i64;
            (gc >= 0 && (gc as usize) < ncols).then(|| gr * rs + gc as usize * cs)
        })
        .collect()
}

fn gather_rows(b: &mut BlockRun<'_, '_>, w: usize, op: &Op) -> R<()> {
    let (rows, cols) = tile_shape(b.ty(w, op.results[0]));
    let g = global(b, w, op.operands[0])?;
    let idx = b.data(w, op.operands[1])?;
    let j = b.scalar(w, op.operands[2])? as i64;
    let rows_of = row_indices(b, w, g, &idx)?;
    let offsets = row_window(b, g, &rows_of, j, rows, cols);
    b.global_access(w, g, offsets.iter().flatten().copied(), GlobalAccess::Read)?;
    let data = tensor(b, g).storage();
    let out = offsets.iter().map(|o| o.map_or(0.0, |o| data[o])).collect();
    set_data(b, w, op, out);
    Ok(())
}

/// `gather`: element k reads the view at the k-th entries of the index vectors; 0 where any
/// index falls outside the view.
fn gather(b: &mut BlockRun<'_, '_>, w: usize, op: &Op) -> R<()> {
    let g = global(b, w, op.operands[0])?;
    let n = elements(b.ty(w, op.results[0]));
    let idx = op.operands[1..]
        .iter()
        .map(|&v| b.data(w, v))
        .collect::<R<Vec<_>>>()?;
    let t = tensor(b, g);
    let (shape, strides) = (t.shape(), t.strides());
    let offsets: Vec<Option<usize>> = (0..n)
        .map(|k| {
            let mut off = 0usize;
            for (d, iv) in idx.iter().enumerate() {
                let i = iv[k];
                if !(i >= 0.0 && i < shape[d] as f64) {
                    return None;
                }
                off += i as usize * strides[d];
            }
            Some(off)
        })
        .collect();
    b.global_access(w, g, offsets.iter().flatten().copied(), GlobalAccess::Read)?;
    let data = tensor(b, g).storage();
    let out = offsets.iter().map(|o| o.map_or(0.0, |o| data[o])).collect();
    set_data(b, w, op, out);
    Ok(())
}

fn scatter_rows(b: &mut BlockRun<'_, '_>, w: usize, op: &Op, add: bool) -> R<()> {
    let (rows, cols) = tile_shape(b.ty(w, op.operands[1]));
    let d = dtype(b.ty(w, op.operands[0]));
    let g = global(b, w, op.operands[0])?;
    let x = b.data(w, op.operands[1])?;
    let idx = b.data(w, op.operands[2])?;
    let j = b.scalar(w, op.operands[3])? as i64;
    let rows_of = row_indices(b, w, g, &idx)?;
    let offsets = row_window(b, g, &rows_of, j, rows, cols);
    // `scatter_add_rows` adds atomically on every target.
    let kind = if add {
        GlobalAccess::Atomic
    } else {
        GlobalAccess::Write
    };
    b.global_access(w, g, offsets.iter().flatten().copied(), kind)?;
    let data = tensor_mut(b, g).data_mut();
    for (o, v) in offsets.iter().zip(x.iter()) {
        if let Some(o) = *o {
            data[o] = numeric::round(d, if add { data[o] + v } else { *v });
        }
    }
    Ok(())
}

fn atomic_add(b: &mut BlockRun<'_, '_>, w: usize, op: &Op) -> R<()> {
    let d = dtype(b.ty(w, op.operands[0]));
    let x_ty = b.ty(w, op.operands[1]);
    let g = global(b, w, op.operands[0])?;
    let idx = indices(b, w, &op.operands[2..])?;
    match b.val(w, op.operands[1])? {
        Val::Scalar(v) => {
            let o = element_offset(b, w, g, &idx)?;
            b.global_access(w, g, [o], GlobalAccess::Atomic)?;
            let data = tensor_mut(b, g).data_mut();
            data[o] = numeric::round(d, data[o] + v);
        }
        Val::Data(vals) => {
            let (rows, cols, is_tile) = extent(x_ty);
            let win = window(b, w, g, &idx, rows, cols, is_tile)?;
            let updated = win.offsets.iter().flatten().copied();
            b.global_access(w, g, updated, GlobalAccess::Atomic)?;
            let data = tensor_mut(b, g).data_mut();
            for (o, v) in win.offsets.iter().zip(vals.iter()) {
                if let Some(o) = o {
                    data[*o] = numeric::round(d, data[*o] + v);
                }
            }
        }
        _ => return Err(b.runtime(w, "atomic_add of a non-register value")),
    }
    Ok(())
}

/// One element's atomic update: the new value of an element holding `old`, for `x` (and `cmp`
/// for a compare-and-swap, `f == None`).
fn atomic_new(f: Option<AtomicFn>, d: ScalarType, old: f64, cmp: f64, x: f64) -> f64 {
    match f {
        // f64's max/min ignore a NaN operand, as IEEE maxNum/minNum (and `atom.max.f32`) do.
        Some(AtomicFn::Max) => old.max(x),
        Some(AtomicFn::Min) => old.min(x),
        Some(AtomicFn::Exch) => x,
        None => {
            let same = match d {
                // Compare-and-swap compares bits: -0 differs from +0, and a NaN can match.
                ScalarType::F32 => (old as f32).to_bits() == (cmp as f32).to_bits(),
                _ => old == cmp,
            };
            if same {
                x
            } else {
                old
            }
        }
    }
}

/// `atomic_max|min|exch (g, x, idx…)` and `atomic_cas (g, cmp, x, idx…)`: warps run one op at a
/// time, so each element's read-modify-write is indivisible; the result is the old values.
fn atomic_update(b: &mut BlockRun<'_, '_>, w: usize, op: &Op, f: Option<AtomicFn>) -> R<()> {
    let d = dtype(b.ty(w, op.operands[0]));
    let xi = if f.is_none() { 2 } else { 1 };
    let x_ty = b.ty(w, op.operands[xi]);
    let g = global(b, w, op.operands[0])?;
    let idx = indices(b, w, &op.operands[xi + 1..])?;
    match b.val(w, op.operands[xi])? {
        Val::Scalar(x) => {
            let cmp = if xi == 2 {
                b.scalar(w, op.operands[1])?
            } else {
                0.0
            };
            let o = element_offset(b, w, g, &idx)?;
            b.global_access(w, g, [o], GlobalAccess::Atomic)?;
            let data = tensor_mut(b, g).data_mut();
            let old = data[o];
            data[o] = numeric::round(d, atomic_new(f, d, old, cmp, x));
            set_scalar(b, w, op, old);
        }
        Val::Data(xs) => {
            let cmps = if xi == 2 {
                Some(b.data(w, op.operands[1])?)
            } else {
                None
            };
            let (rows, cols, is_tile) = extent(x_ty);
            let win = window(b, w, g, &idx, rows, cols, is_tile)?;
            let updated = win.offsets.iter().flatten().copied();
            b.global_access(w, g, updated, GlobalAccess::Atomic)?;
            let data = tensor_mut(b, g).data_mut();
            let mut olds = vec![0.0; xs.len()];
            for (k, o) in win.offsets.iter().enumerate() {
                if let Some(o) = *o {
                    let old = data[o];
                    let cmp = cmps.as_ref().map_or(0.0, |c| c[k]);
                    data[o] = numeric::round(d, atomic_new(f, d, old, cmp, xs[k]));
                    olds[k] = old;
                }
            }
            set_data(b, w, op, olds);
        }
        _ => return Err(b.runtime(w, "atomic update of a non-register value")),
    }
    Ok(())
}

/// Philox-4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3",
/// SC'11): ten rounds of two 32×32→64-bit multiplies, the key bumped by the Weyl constants
/// between rounds.
pub(crate) fn philox4x32_10(key: [u32; 2], ctr: [u32; 4]) -> [u32; 4] {
    const M0: u64 = 0xD251_1F53;
    const M1: u64 = 0xCD9E_8D57;
    const W0: u32 = 0x9E37_79B9;
    const W1: u32 = 0xBB67_AE85;
    let (mut k, mut c) = (key, ctr);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = M0 * u64::from(c[0]);
        let p1 = M1 * u64::from(c[2]);
        c = [
            (p1 >> 32) as u32 ^ c[1] ^ k[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// `philox (k0, k1, c0, c1, c2, c3)`, elementwise over the counter words (scalars broadcast).
fn philox(b: &mut BlockRun<'_, '_>, w: usize, op: &Op) -> R<()> {
    // Values are held as f64; u32 words are exact there.
    let word = |x: f64| x as u32;
    let key = [
        word(b.scalar(w, op.operands[0])?),
        word(b.scalar(w, op.operands[1])?),
    ];
    let mut ctr: Vec<Val> = Vec::with_capacity(4);
    for &v in &op.operands[2..6] {
        ctr.push(b.val(w, v)?);
    }
    let n = ctr
        .iter()
        .find_map(|v| match v {
            Val::Data(d) => Some(d.len()),
            _ => None,
        })
        .unwrap_or(1);
    let mut out: Vec<Vec<f64>> = (0..4).map(|_| Vec::with_capacity(n)).collect();
    for e in 0..n {
        let mut c = [0u32; 4];
        for (k, v) in ctr.iter().enumerate() {
            c[k] = match v {
                Val::Scalar(x) => word(*x),
                Val::Data(d) => word(d[e]),
                _ => return Err(b.runtime(w, "philox of a non-register counter")),
            };
        }
        for (k, r) in philox4x32_10(key, c).into_iter().enumerate() {
            out[k].push(f64::from(r));
        }
    }
    let scalar = ctr.iter().all(|v| matches!(v, Val::Scalar(_)));
    for (k, words) in out.into_iter().enumerate() {
        let v = if scalar {
            Val::Scalar(words[0])
        } else {
            Val::Data(Rc::new(words))
        };
        b.set(w, op.results[k], v);
    }
    Ok(())
}

/// `device_assert[@message] (c)`: the run stops at the first warp whose condition is false
/// (for a tile or vector, the first false element, in row-major order).
fn device_assert(b: &mut BlockRun<'_, '_>, w: usize, op: &Op, message: &str) -> R<()> {
    let c_ty = b.ty(w, op.operands[0]);
    let element = match b.val(w, op.operands[0])? {
        Val::Scalar(c) => (c == 0.0).then_some(None),
        Val::Data(d) => {
            let cols = match c_ty {
                Type::Tile { cols, .. } => *cols as usize,
                _ => d.len().max(1),
            };
            d.iter()
                .position(|&c| c == 0.0)
                .map(|i| Some((i / cols, i % cols)))
        }
        _ => return Err(b.runtime(w, "device_assert of a non-register condition")),
    };
    match element {
        None => Ok(()),
        Some(element) => Err(InterpError::AssertFailed {
            site: Box::new(b.site(w)),
            message: message.to_string(),
            element,
        }),
    }
}
