//! Building Tile IR from Rust.
//!
//! [`FuncBuilder`] appends ops to the region being built and infers result types from operand
//! types. It never fails: an op whose operands do not fit is still built (with the most plausible
//! result type) and the verifier reports it, naming the op and the Rust line that built it (every
//! method records its caller's location through `#[track_caller]`).
//!
//! ```
//! use tilekit_ir::{FuncBuilder, ScalarType::*, Type, Layout, Dim3, MmaVariant, Module};
//!
//! let mut b = FuncBuilder::kernel("scale", 1);
//! let x = b.param("x", Type::global(F32, 2, true));
//! let s = b.param("s", Type::scalar(F32));
//! let (i, j) = (b.block_idx(Dim3::Y), b.block_idx(Dim3::X));
//! let t = b.load(Type::tile(F32, 16, 16, Layout::Row), x, &[i, j]);
//! let t = b.mul(t, s);
//! b.store(x, t, &[i, j]);
//! let mut m = Module::new();
//! m.push(b.finish());
//! tilekit_ir::verify(&m).unwrap();
//! ```

use std::panic::Location;

use crate::module::{Func, FuncKind, Loc, Op, Region, Value};
use crate::ops::*;
use crate::types::{Layout, ScalarType, Type, VecAxis};

/// Builds one function. See the module documentation.
#[derive(Debug)]
pub struct FuncBuilder {
    func: Func,
    /// Regions under construction; the last is where ops go.
    stack: Vec<Region>,
}

impl FuncBuilder {
    /// Starts a kernel with `warps` warps per block.
    #[track_caller]
    pub fn kernel(name: impl Into<String>, warps: u32) -> FuncBuilder {
        let mut func = Func::new(name, FuncKind::Kernel { warps });
        func.loc = caller();
        FuncBuilder {
            func,
            stack: vec![Region::default()],
        }
    }

    /// Starts a helper function returning values of `results`.
    #[track_caller]
    pub fn helper(name: impl Into<String>, results: Vec<Type>) -> FuncBuilder {
        let mut func = Func::new(name, FuncKind::Helper);
        func.results = results;
        func.loc = caller();
        FuncBuilder {
            func,
            stack: vec![Region::default()],
        }
    }

    /// Adds a parameter.
    pub fn param(&mut self, name: &str, ty: Type) -> Value {
        let v = self.func.new_value(ty, Some(name.to_string()));
        self.func.params.push(v);
        v
    }

    /// Gives `v` a name for the text form.
    pub fn name(&mut self, v: Value, name: &str) -> Value {
        if let Some(slot) = self.func.value_names.get_mut(v.index()) {
            *slot = Some(name.to_string());
        }
        v
    }

    /// The type of a value built so far.
    pub fn ty(&self, v: Value) -> Type {
        self.func
            .value_types
            .get(v.index())
            .cloned()
            .unwrap_or(Type::Scalar(ScalarType::I32))
    }

    /// Finishes the function. A kernel whose body does not end in `return` gets one.
    pub fn finish(mut self) -> Func {
        while self.stack.len() > 1 {
            // An unbalanced stack can only come from a panic inside a region closure that was
            // caught by the caller; keep what was built so the verifier can report it.
            let mut r = self.stack.pop().unwrap_or_default();
            self.stack
                .last_mut()
                .map(|top| top.ops.append(&mut r.ops))
                .unwrap_or(());
        }
        let mut body = self.stack.pop().unwrap_or_default();
        let ends_in_return = body
            .ops
            .last()
            .is_some_and(|op| matches!(op.kind, OpKind::Return));
        if self.func.is_kernel() && !ends_in_return {
            body.ops
                .push(Op::new(OpKind::Return, Scope::Warp, vec![], vec![]));
        }
        self.func.body = body;
        self.func
    }

    /// Appends an op with results of the given types; returns the results.
    #[track_caller]
    pub fn op(
        &mut self,
        kind: OpKind,
        scope: Scope,
        operands: &[Value],
        result_types: Vec<Type>,
    ) -> Vec<Value> {
        self.op_with_regions(kind, scope, operands, result_types, Vec::new())
    }

    #[track_caller]
    fn op_with_regions(
        &mut self,
        kind: OpKind,
        scope: Scope,
        operands: &[Value],
        result_types: Vec<Type>,
        regions: Vec<Region>,
    ) -> Vec<Value> {
        let results: Vec<Value> = result_types
            .into_iter()
            .map(|t| self.func.new_value(t, None))
            .collect();
        let op = Op {
            kind,
            scope,
            operands: operands.to_vec(),
            results: results.clone(),
            regions,
            loc: caller(),
        };
        self.current().ops.push(op);
        results
    }

    #[track_caller]
    fn op1(&mut self, kind: OpKind, scope: Scope, operands: &[Value], ty: Type) -> Value {
        self.op(kind, scope, operands, vec![ty])[0]
    }

    fn current(&mut self) -> &mut Region {
        if self.stack.is_empty() {
            self.stack.push(Region::default());
        }
        let n = self.stack.len();
        &mut self.stack[n - 1]
    }

    // ---- scalars and indices ------------------------------------------------------------------

    #[track_caller]
    pub fn constant(&mut self, c: Const, dtype: ScalarType) -> Value {
        self.op1(OpKind::Const(c), Scope::Warp, &[], Type::Scalar(dtype))
    }

    #[track_caller]
    pub fn const_i32(&mut self, v: i32) -> Value {
        self.constant(Const::Int(v.into()), ScalarType::I32)
    }

    #[track_caller]
    pub fn const_f32(&mut self, v: f32) -> Value {
        self.constant(Const::Float(v.into()), ScalarType::F32)
    }

    #[track_caller]
    pub fn const_bool(&mut self, v: bool) -> Value {
        self.constant(Const::Bool(v), ScalarType::Bool)
    }

    #[track_caller]
    pub fn block_idx(&mut self, d: Dim3) -> Value {
        self.op1(OpKind::BlockIdx(d), Scope::Warp, &[], i32t())
    }

    #[track_caller]
    pub fn grid_dim(&mut self, d: Dim3) -> Value {
        self.op1(OpKind::GridDim(d), Scope::Warp, &[], i32t())
    }

    #[track_caller]
    pub fn warp_idx(&mut self) -> Value {
        self.op1(OpKind::WarpIdx, Scope::Warp, &[], i32t())
    }

    #[track_caller]
    pub fn warpgroup_idx(&mut self) -> Value {
        self.op1(OpKind::WarpgroupIdx, Scope::Warp, &[], i32t())
    }

    #[track_caller]
    pub fn num_warps(&mut self) -> Value {
        self.op1(OpKind::NumWarps, Scope::Warp, &[], i32t())
    }

    /// The runtime size of dimension `k` of a global view.
    #[track_caller]
    pub fn dim(&mut self, g: Value, k: u32) -> Value {
        self.op1(OpKind::GlobalDim(k), Scope::Warp, &[g], i32t())
    }

    // ---- creation -----------------------------------------------------------------------------

    #[track_caller]
    pub fn fill(&mut self, ty: Type, v: f64) -> Value {
        self.op1(OpKind::Fill(v), Scope::Warp, &[], ty)
    }

    #[track_caller]
    pub fn zeros(&mut self, ty: Type) -> Value {
        self.fill(ty, 0.0)
    }

    #[track_caller]
    pub fn splat(&mut self, ty: Type, s: Value) -> Value {
        self.op1(OpKind::Splat, Scope::Warp, &[s], ty)
    }

    #[track_caller]
    pub fn iota(&mut self, ty: Type, axis: BcastAxis) -> Value {
        self.op1(OpKind::Iota(axis), Scope::Warp, &[], ty)
    }

    // ---- elementwise --------------------------------------------------------------------------

    #[track_caller]
    pub fn unary(&mut self, f: UnaryFn, x: Value) -> Value {
        let t = self.ty(x);
        self.op1(OpKind::Unary(f), Scope::Warp, &[x], t)
    }

    /// A binary map; the result has the type of the non-scalar operand (or of `x`).
    #[track_caller]
    pub fn binary(&mut self, f: BinaryFn, x: Value, y: Value) -> Value {
        let (tx, ty) = (self.ty(x), self.ty(y));
        let t = if tx.is_scalar() && !ty.is_scalar() {
            ty
        } else {
            tx
        };
        self.op1(OpKind::Binary(f), Scope::Warp, &[x, y], t)
    }

    #[track_caller]
    pub fn add(&mut self, x: Value, y: Value) -> Value {
        self.binary(BinaryFn::Add, x, y)
    }

    #[track_caller]
    pub fn sub(&mut self, x: Value, y: Value) -> Value {
        self.binary(BinaryFn::Sub, x, y)
    }

    #[track_caller]
    pub fn mul(&mut self, x: Value, y: Value) -> Value {
        self.binary(BinaryFn::Mul, x, y)
    }

    #[track_caller]
    pub fn div(&mut self, x: Value, y: Value) -> Value {
        self.binary(BinaryFn::Div, x, y)
    }

    #[track_caller]
    pub fn max(&mut self, x: Value, y: Value) -> Value {
        self.binary(BinaryFn::Max, x, y)
    }

    #[track_caller]
    pub fn min(&mut self, x: Value, y: Value) -> Value {
        self.binary(BinaryFn::Min, x, y)
    }

    #[track_caller]
    pub fn cmp(&mut self, p: CmpPred, x: Value, y: Value) -> Value {
        // A bool mask of the non-scalar operand's shape (a bool scalar for two scalars).
        let shape = if self.ty(x).is_scalar() {
            self.ty(y)
        } else {
            self.ty(x)
        };
        let t = shape.with_dtype(ScalarType::Bool);
        self.op1(OpKind::Cmp(p), Scope::Warp, &[x, y], t)
    }

    #[track_caller]
    pub fn select(&mut self, c: Value, x: Value, y: Value) -> Value {
        // The non-scalar one of x and y; with both scalars, the mask's shape in x's dtype.
        let (tc, tx, ty) = (self.ty(c), self.ty(x), self.ty(y));
        let t = if !tx.is_scalar() {
            tx
        } else if !ty.is_scalar() {
            ty
        } else {
            tc.with_dtype(tx.dtype().unwrap_or(ScalarType::F32))
        };
        self.op1(OpKind::Select, Scope::Warp, &[c, x, y], t)
    }

    /// Converts to `to` (another dtype and, for tiles, possibly another layout).
    #[track_caller]
    pub fn convert(&mut self, x: Value, to: Type) -> Value {
        self.op1(OpKind::Convert, Scope::Warp, &[x], to)
    }

    /// Prefix `f` along each row or column of tile `t` (inclusive, or exclusive of the element).
    #[track_caller]
    pub fn scan(&mut self, axis: BcastAxis, f: ReduceFn, exclusive: bool, t: Value) -> Value {
        let ty = self.ty(t);
        let kind = OpKind::Scan { axis, f, exclusive };
        self.op1(kind, Scope::Warp, &[t], ty)
    }

    /// Each row of tile `t` sorted (descending or ascending), with the i32 payload tile `idx`
    /// moved along: returns (sorted keys, payload).
    #[track_caller]
    pub fn sort_row(&mut self, descending: bool, t: Value, idx: Value) -> (Value, Value) {
        let (kt, it) = (self.ty(t), self.ty(idx));
        let r = self.op(
            OpKind::SortRow { descending },
            Scope::Warp,
            &[t, idx],
            vec![kt, it],
        );
        (r[0], r[1])
    }

    /// The top `k` (key, payload) pairs of each row of `t`/`idx` merged with the first `k`
    /// columns of `best`/`best_idx` (16 columns each): returns 16-column (keys, payloads).
    #[track_caller]
    pub fn topk_row(
        &mut self,
        k: u32,
        t: Value,
        idx: Value,
        best: Value,
        best_idx: Value,
    ) -> (Value, Value) {
        let (kt, it) = (self.ty(best), self.ty(best_idx));
        let operands = [t, idx, best, best_idx];
        let r = self.op(OpKind::TopkRow(k), Scope::Warp, &operands, vec![kt, it]);
        (r[0], r[1])
    }

    /// The bits of `x` read as type `to` (another dtype of the same width, same shape).
    #[track_caller]
    pub fn bitcast(&mut self, x: Value, to: Type) -> Value {
        self.op1(OpKind::Bitcast, Scope::Warp, &[x], to)
    }

    /// Converts to another dtype, keeping the kind and shape of `x`.
    #[track_caller]
    pub fn convert_dtype(&mut self, x: Value, d: ScalarType) -> Value {
        let t = self.ty(x).with_dtype(d);
        self.convert(x, t)
    }

    #[track_caller]
    pub fn transpose(&mut self, x: Value) -> Value {
        let t = match self.ty(x) {
            Type::Tile {
                dtype,
                rows,
                cols,
                layout,
            } => Type::tile(dtype, cols, rows, layout),
            other => other,
        };
        self.op1(OpKind::Transpose, Scope::Warp, &[x], t)
    }

    // ---- broadcasts, reductions, masks --------------------------------------------------------

    #[track_caller]
    pub fn bcast(&mut self, axis: BcastAxis, f: BinaryFn, t: Value, v: Value) -> Value {
        let ty = self.ty(t);
        self.op1(OpKind::Bcast(axis, f), Scope::Warp, &[t, v], ty)
    }

    #[track_caller]
    pub fn reduce(&mut self, axis: ReduceAxis, f: ReduceFn, x: Value) -> Value {
        let tx = self.ty(x);
        let t = match (axis, &tx) {
            (ReduceAxis::Row, Type::Tile { dtype, rows, .. }) => {
                Type::vector(*dtype, *rows, VecAxis::Rows)
            }
            (ReduceAxis::Col, Type::Tile { dtype, cols, .. }) => {
                Type::vector(*dtype, *cols, VecAxis::Cols)
            }
            (ReduceAxis::All, t) => t.dtype().map(Type::Scalar).unwrap_or(tx.clone()),
            _ => tx.clone(),
        };
        self.op1(OpKind::Reduce(axis, f), Scope::Warp, &[x], t)
    }

    /// Replaces the elements selected by `kind` with `value`; see [`MaskKind`] for `a` and `b`.
    #[track_caller]
    pub fn mask(&mut self, kind: MaskKind, value: f64, t: Value, a: Value, b: Value) -> Value {
        let ty = self.ty(t);
        self.op1(OpKind::Mask(kind, value), Scope::Warp, &[t, a, b], ty)
    }

    // ---- tensor cores -------------------------------------------------------------------------

    /// `D = op(A)·op(B) + C` at warp scope.
    #[track_caller]
    pub fn mma(&mut self, v: MmaVariant, a: Value, b: Value, c: Value) -> Value {
        let t = self.ty(c);
        self.op1(OpKind::Mma(v), Scope::Warp, &[a, b, c], t)
    }

    /// `D = op(A)·op(B) + C` at warpgroup scope: B is the group's shared tile, C and D this
    /// warp's quarter of the rows, A the group's shared tile or this warp's rows in registers.
    #[track_caller]
    pub fn mma_warpgroup(&mut self, v: MmaVariant, a: Value, b: Value, c: Value) -> Value {
        let t = self.ty(c);
        self.op1(OpKind::Mma(v), Scope::Warpgroup, &[a, b, c], t)
    }

    /// The warpgroup mma issued asynchronously, in the executing warp's open mma group: the
    /// result is in flight until an [`mma_wait`](Self::mma_wait) retires it.
    #[track_caller]
    pub fn mma_async(&mut self, v: MmaVariant, a: Value, b: Value, c: Value) -> Value {
        let t = self.ty(c);
        self.op1(OpKind::MmaAsync(v), Scope::Warpgroup, &[a, b, c], t)
    }

    /// Register reallocation for the executing warpgroup (`setmaxnreg.inc` when `inc`, else
    /// `.dec`) to `count` registers per thread, a multiple of 8 in 24..=256 (the verifier
    /// checks it).
    #[track_caller]
    pub fn setmaxnreg(&mut self, inc: bool, count: u32) {
        self.op(
            OpKind::SetMaxNReg { inc, count },
            Scope::Warpgroup,
            &[],
            vec![],
        );
    }

    /// Closes the executing warp's open mma group.
    #[track_caller]
    pub fn mma_commit(&mut self) {
        self.op(OpKind::MmaCommit, Scope::Warpgroup, &[], vec![]);
    }

    /// Waits until all but the `pending` most recent mma groups of the executing warp have
    /// completed; returns `accs` (accumulators of `mma_async`) retired, readable.
    #[track_caller]
    pub fn mma_wait(&mut self, pending: u32, accs: &[Value]) -> Vec<Value> {
        let tys = accs.iter().map(|&v| self.ty(v)).collect();
        self.op(OpKind::MmaWait(pending), Scope::Warpgroup, accs, tys)
    }

    // ---- memory -------------------------------------------------------------------------------

    #[track_caller]
    pub fn alloc_shared(&mut self, ty: Type) -> Value {
        self.op1(OpKind::AllocShared, Scope::Block, &[], ty)
    }

    #[track_caller]
    pub fn shared_index(&mut self, arr: Value, i: Value) -> Value {
        let t = match self.ty(arr) {
            Type::SharedArray { elem, .. } => *elem,
            other => other,
        };
        self.op1(OpKind::SharedIndex, Scope::Warp, &[arr, i], t)
    }

    /// Loads a register value of type `ty` from global or shared memory at `idx`.
    #[track_caller]
    pub fn load(&mut self, ty: Type, src: Value, idx: &[Value]) -> Value {
        self.load_at(Scope::Warp, ty, src, idx)
    }

    /// `load` at an explicit scope (warpgroup: each warp loads its quarter of the rows).
    #[track_caller]
    pub fn load_at(&mut self, scope: Scope, ty: Type, src: Value, idx: &[Value]) -> Value {
        let mut ops = vec![src];
        ops.extend_from_slice(idx);
        self.op1(OpKind::Load, scope, &ops, ty)
    }

    #[track_caller]
    pub fn store(&mut self, dst: Value, x: Value, idx: &[Value]) {
        self.store_at(Scope::Warp, dst, x, idx)
    }

    #[track_caller]
    pub fn store_at(&mut self, scope: Scope, dst: Value, x: Value, idx: &[Value]) {
        let mut ops = vec![dst, x];
        ops.extend_from_slice(idx);
        self.op(OpKind::Store, scope, &ops, vec![]);
    }

    /// Copies between global and shared memory, split among the warps of `scope`.
    #[track_caller]
    pub fn copy(&mut self, scope: Scope, dst: Value, src: Value, idx: &[Value]) {
        let mut ops = vec![dst, src];
        ops.extend_from_slice(idx);
        self.op(OpKind::Copy, scope, &ops, vec![]);
    }

    /// Starts an asynchronous global → shared copy that completes on `sem`.
    #[track_caller]
    pub fn copy_async(&mut self, dst: Value, src: Value, sem: Value, idx: &[Value]) {
        let mut ops = vec![dst, src, sem];
        ops.extend_from_slice(idx);
        self.op(OpKind::CopyAsync, Scope::Warp, &ops, vec![]);
    }

    /// Starts an asynchronous global → shared copy, split among the warps of `scope`, in the
    /// executing warp's open copy group.
    #[track_caller]
    pub fn copy_start(&mut self, scope: Scope, dst: Value, src: Value, idx: &[Value]) {
        let mut ops = vec![dst, src];
        ops.extend_from_slice(idx);
        self.op(OpKind::CopyStart, scope, &ops, vec![]);
    }

    /// Closes the executing warp's open copy group.
    #[track_caller]
    pub fn copy_commit(&mut self, scope: Scope) {
        self.op(OpKind::CopyCommit, scope, &[], vec![]);
    }

    /// Waits until all but the `pending` most recent copy groups of the executing warp landed.
    #[track_caller]
    pub fn copy_wait(&mut self, scope: Scope, pending: u32) {
        self.op(OpKind::CopyWait(pending), scope, &[], vec![]);
    }

    #[track_caller]
    pub fn gather_rows(&mut self, ty: Type, g: Value, idx: Value, j: Value) -> Value {
        self.op1(OpKind::GatherRows, Scope::Warp, &[g, idx, j], ty)
    }

    /// Elements of `g` at the index vectors `idx` (one per dimension of `g`): a vector of g's
    /// dtype with the indices' length and axis.
    #[track_caller]
    pub fn gather(&mut self, g: Value, idx: &[Value]) -> Value {
        let d = self.ty(g).dtype().unwrap_or(ScalarType::F32);
        let t = idx
            .first()
            .map(|&i| self.ty(i).with_dtype(d))
            .unwrap_or(Type::Scalar(d));
        let mut ops = vec![g];
        ops.extend_from_slice(idx);
        self.op1(OpKind::Gather, Scope::Warp, &ops, t)
    }

    #[track_caller]
    pub fn scatter_rows(&mut self, add: bool, g: Value, t: Value, idx: Value, j: Value) {
        self.op(
            OpKind::ScatterRows { add },
            Scope::Warp,
            &[g, t, idx, j],
            vec![],
        );
    }

    #[track_caller]
    pub fn atomic_add(&mut self, g: Value, x: Value, idx: &[Value]) {
        let mut ops = vec![g, x];
        ops.extend_from_slice(idx);
        self.op(OpKind::AtomicAdd, Scope::Warp, &ops, vec![]);
    }

    /// `atomic_max|min|exch (g, x, idx…)`: the old values, of x's type.
    #[track_caller]
    pub fn atomic_rmw(&mut self, f: AtomicFn, g: Value, x: Value, idx: &[Value]) -> Value {
        let t = self.ty(x).clone();
        let mut ops = vec![g, x];
        ops.extend_from_slice(idx);
        self.op1(OpKind::AtomicRmw(f), Scope::Warp, &ops, t)
    }

    /// `atomic_cas (g, cmp, x, idx…)`: the old values, of x's type.
    #[track_caller]
    pub fn atomic_cas(&mut self, g: Value, cmp: Value, x: Value, idx: &[Value]) -> Value {
        let t = self.ty(x).clone();
        let mut ops = vec![g, cmp, x];
        ops.extend_from_slice(idx);
        self.op1(OpKind::AtomicCas, Scope::Warp, &ops, t)
    }

    /// `philox (k0, k1, c0, c1, c2, c3)`: the four output words, of the counters' type (that
    /// of the first counter word that is not a scalar).
    #[track_caller]
    pub fn philox(&mut self, key: [Value; 2], ctr: [Value; 4]) -> [Value; 4] {
        let t = ctr
            .iter()
            .map(|&c| self.ty(c).clone())
            .find(|t| !t.is_scalar())
            .unwrap_or(Type::Scalar(ScalarType::U32));
        let ops = [key[0], key[1], ctr[0], ctr[1], ctr[2], ctr[3]];
        let r = self.op(OpKind::Philox, Scope::Warp, &ops, vec![t; 4]);
        [r[0], r[1], r[2], r[3]]
    }

    /// `device_assert[@"message"] (c)`.
    #[track_caller]
    pub fn device_assert(&mut self, c: Value, message: &str) {
        self.op(
            OpKind::DeviceAssert(message.to_string()),
            Scope::Warp,
            &[c],
            vec![],
        );
    }

    // ---- synchronization ----------------------------------------------------------------------

    #[track_caller]
    pub fn barrier(&mut self) {
        self.op(OpKind::Barrier, Scope::Block, &[], vec![]);
    }

    #[track_caller]
    pub fn sem_init(&mut self, s: Value, arrivals: u32) {
        self.op(OpKind::SemInit(arrivals), Scope::Warp, &[s], vec![]);
    }

    #[track_caller]
    pub fn sem_arrive(&mut self, s: Value) {
        self.op(OpKind::SemArrive, Scope::Warp, &[s], vec![]);
    }

    #[track_caller]
    pub fn sem_expect(&mut self, s: Value, bytes: u32) {
        self.op(OpKind::SemExpect(bytes), Scope::Warp, &[s], vec![]);
    }

    #[track_caller]
    pub fn sem_wait(&mut self, s: Value, parity: Value) {
        self.op(OpKind::SemWait, Scope::Warp, &[s, parity], vec![]);
    }

    // ---- control flow -------------------------------------------------------------------------

    /// `for i in (lo..hi).step_by(step)` with loop-carried values. `body` gets the induction
    /// variable and the carried values and returns the values carried into the next iteration;
    /// the loop returns the final carried values.
    #[track_caller]
    pub fn for_range(
        &mut self,
        lo: Value,
        hi: Value,
        step: Value,
        inits: &[Value],
        body: impl FnOnce(&mut FuncBuilder, Value, &[Value]) -> Vec<Value>,
    ) -> Vec<Value> {
        let loc = caller();
        let iv_ty = self.ty(lo);
        let iv = self.func.new_value(iv_ty, None);
        let carried: Vec<Value> = inits
            .iter()
            .map(|v| {
                let t = self.ty(*v);
                self.func.new_value(t, None)
            })
            .collect();
        let mut args = vec![iv];
        args.extend(&carried);
        let region = self.region(args, |b| {
            let ys = body(b, iv, &carried);
            b.terminator(OpKind::Yield, &ys, loc);
        });
        let types = inits.iter().map(|v| self.ty(*v)).collect();
        let mut operands = vec![lo, hi, step];
        operands.extend_from_slice(inits);
        self.op_with_regions(OpKind::For, Scope::Warp, &operands, types, vec![region])
    }

    /// `if cond { then } else { otherwise }`, each branch returning values of `types`.
    #[track_caller]
    pub fn if_else(
        &mut self,
        cond: Value,
        types: Vec<Type>,
        then: impl FnOnce(&mut FuncBuilder) -> Vec<Value>,
        otherwise: impl FnOnce(&mut FuncBuilder) -> Vec<Value>,
    ) -> Vec<Value> {
        let loc = caller();
        let r1 = self.region(vec![], |b| {
            let ys = then(b);
            b.terminator(OpKind::Yield, &ys, loc);
        });
        let r2 = self.region(vec![], |b| {
            let ys = otherwise(b);
            b.terminator(OpKind::Yield, &ys, loc);
        });
        self.op_with_regions(OpKind::If, Scope::Warp, &[cond], types, vec![r1, r2])
    }

    /// `if cond { then }` without results.
    #[track_caller]
    pub fn if_then(&mut self, cond: Value, then: impl FnOnce(&mut FuncBuilder)) {
        self.if_else(
            cond,
            vec![],
            |b| {
                then(b);
                vec![]
            },
            |_| vec![],
        );
    }

    /// `while`: `cond` gets the current values and returns (condition, values forwarded to the
    /// body or, when false, out of the loop); `body` gets the forwarded values and returns the
    /// next iteration's values.
    #[track_caller]
    pub fn while_loop(
        &mut self,
        inits: &[Value],
        cond: impl FnOnce(&mut FuncBuilder, &[Value]) -> (Value, Vec<Value>),
        body: impl FnOnce(&mut FuncBuilder, &[Value]) -> Vec<Value>,
    ) -> Vec<Value> {
        let loc = caller();
        let types: Vec<Type> = inits.iter().map(|v| self.ty(*v)).collect();
        let before_args: Vec<Value> = types
            .iter()
            .map(|t| self.func.new_value(t.clone(), None))
            .collect();
        let before = self.region(before_args.clone(), |b| {
            let (c, fwd) = cond(b, &before_args);
            let mut ops = vec![c];
            ops.extend(fwd);
            b.terminator(OpKind::Condition, &ops, loc);
        });
        let after_args: Vec<Value> = types
            .iter()
            .map(|t| self.func.new_value(t.clone(), None))
            .collect();
        let after = self.region(after_args.clone(), |b| {
            let ys = body(b, &after_args);
            b.terminator(OpKind::Yield, &ys, loc);
        });
        self.op_with_regions(
            OpKind::While,
            Scope::Warp,
            inits,
            types,
            vec![before, after],
        )
    }

    /// Calls helper `name`, whose results have `types`.
    #[track_caller]
    pub fn call(&mut self, name: &str, args: &[Value], types: Vec<Type>) -> Vec<Value> {
        self.op(OpKind::Call(name.to_string()), Scope::Warp, args, types)
    }

    /// Returns from the function.
    #[track_caller]
    pub fn ret(&mut self, values: &[Value]) {
        self.terminator(OpKind::Return, values, caller());
    }

    fn terminator(&mut self, kind: OpKind, values: &[Value], loc: Loc) {
        let mut op = Op::new(kind, Scope::Warp, values.to_vec(), vec![]);
        op.loc = loc;
        self.current().ops.push(op);
    }

    fn region(&mut self, args: Vec<Value>, build: impl FnOnce(&mut FuncBuilder)) -> Region {
        self.stack.push(Region {
            args,
            ops: Vec::new(),
        });
        build(self);
        self.stack.pop().unwrap_or_default()
    }
}

fn i32t() -> Type {
    Type::Scalar(ScalarType::I32)
}

#[track_caller]
fn caller() -> Loc {
    let l = Location::caller();
    Loc::Rust {
        file: l.file(),
        line: l.line(),
        col: l.column(),
    }
}

/// Shorthand for a row-major register tile type.
pub fn rt(dtype: ScalarType, rows: u32, cols: u32) -> Type {
    Type::tile(dtype, rows, cols, Layout::Row)
}

/// Shorthand for a column-major register tile type.
pub fn rt_col(dtype: ScalarType, rows: u32, cols: u32) -> Type {
    Type::tile(dtype, rows, cols, Layout::Col)
}
