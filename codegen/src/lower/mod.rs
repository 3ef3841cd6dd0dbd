//! Tile IR → MLIR, for every target.
//!
//! The kernel becomes an `llvm.func` whose body uses the `arith`, `scf` and `llvm` dialects
//! plus the target's (`nvvm` with `llvm.inline_asm` for instructions without an MLIR op of
//! stable syntax on NVIDIA, `rocdl` on AMD). Every register tile and vector is unrolled into the
//! per-lane registers of [`crate::layout`] (the target's [`layout::Frag`]), so a lowering rule
//! is a loop over a lane's registers at code-generation time. Where the hardware differs, the
//! rules ask the target's [`rules::Rules`]: thread coordinates, barriers, shuffles, fast math,
//! matrix instructions, capabilities and limits.
//!
//! One file per family of ops, as in the IR and the interpreter: [`elementwise`] (scalars,
//! creation, maps, conversions, broadcasts, reductions, masks), [`memory`] (global and shared
//! loads, stores and copies, barriers), [`mma`] (tensor cores), [`sync`] (semaphores, async
//! copies) and the control flow here.

mod atomic;
mod bitcast;
mod elementwise;
pub(crate) mod emit;
mod fp8;
mod gather;
mod memory;
mod mma;
mod ptx;
mod relayout;
pub(crate) mod rules;
mod scan;
mod select;
mod sort;
mod sync;
mod table;
mod tf32;
mod tma_copy;
mod tma_store;
mod wgmma;

use std::collections::{HashMap, HashSet};

use tilekit_ir::{Func, Module, Op, OpKind, Region, ScalarType, Type, Value, VecAxis};

use crate::layout::{self, Frag};
use crate::{CodegenError, KernelArg, Target};
use emit::Emit;
use rules::{KernelText, Rules};

/// The lowered form of a Tile IR value.
#[derive(Clone, Debug)]
pub(crate) enum Lv {
    /// A scalar (uniform across the warp).
    Scalar(String),
    /// A register tile or vector: this lane's registers in [`crate::layout`] order.
    Regs(Vec<String>),
    /// A global view: base pointer, shape and strides (elements, i32), and whether the
    /// compile assumes it 16-byte aligned ([`crate::Facts::is_aligned16`]).
    Global {
        ptr: String,
        shape: Vec<String>,
        strides: Vec<String>,
        aligned16: bool,
    },
    /// A shared object: its byte offset (i32) in the block's shared buffer.
    Shared(String),
}

/// What a lowered kernel is, besides its MLIR text.
#[derive(Debug)]
pub(crate) struct Lowered {
    pub mlir: String,
    pub args: Vec<KernelArg>,
    /// The tensor-map parameters, after `args` ([`crate::tma::TensorMapArg`]).
    pub tensor_maps: Vec<crate::tma::TensorMapArg>,
    pub shared_bytes: u64,
    pub dynamic_shared: bool,
}

/// Threads one block (work-group) may have on every target.
const MAX_BLOCK_THREADS: u64 = 1024;

pub(crate) struct Lowerer<'f> {
    pub func: &'f Func,
    /// The module, for the helpers that calls inline.
    pub module: &'f Module,
    /// How many calls deep the function being lowered is inlined.
    depth: u32,
    pub target: Target,
    /// The target's rules and fragment geometry.
    pub rules: &'f dyn Rules,
    pub frag: Frag,
    pub e: Emit,
    pub vals: HashMap<Value, Lv>,
    /// `%tid` (threadIdx.x) and the base pointer of the shared buffer.
    pub tid: String,
    pub smem: String,
    shared_next: u64,
    pub warps: u32,
    /// Bytes per warp of the relayout scratch buffer (placed after every allocation), and the
    /// names of the constants that hold its start and per-warp size.
    pub scratch_bytes: u64,
    pub scratch_start: String,
    pub scratch_per_warp: String,
    /// The distribution of every register vector ([`vector_layouts`]).
    pub vec_layouts: HashMap<Value, layout::VecLayout>,
    /// On sm_80, for a kernel with `copy_async`: the queue of its committed, uncounted
    /// `cp.async` groups (see [`sync`]).
    pub async_queue: Option<ptx::AsyncQueue>,
    /// Shared → register tile loads not emitted yet ([`Rules::defer_shared_loads`]).
    pending_loads: Vec<Op>,
    /// The register tiles that an `mma` of this function reads as its B operand and none as
    /// its A operand ([`mma_b_operands`]).
    mma_b_tiles: HashSet<Value>,
    /// On AMD, the shared tiles placed transposed in LDS ([`lds_transposed_tiles`]).
    lds_transposed: HashSet<Value>,
    /// The LDS byte offsets (SSA names) of those tiles, which `shared_tile_ptr` places
    /// transposed: one offset is one address, so it names one tile's storage.
    lds_transposed_bases: HashSet<String>,
    /// On sm_90a, the loop-carried wgmma accumulators that start at zero ([`wgmma::ZeroStarts`]).
    wgmma_zero_starts: wgmma::ZeroStarts,
    /// On sm_90a, the TMA copy groups of a kernel that has them ([`tma_copy`]).
    tma: Option<Box<tma_copy::TmaGroups>>,
}

type R<T> = Result<T, CodegenError>;

/// The MLIR type of a register element of dtype `d`.
pub(crate) fn mty(d: ScalarType) -> &'static str {
    match d {
        ScalarType::F32 => "f32",
        ScalarType::F16 => "f16",
        ScalarType::BF16 => "bf16",
        ScalarType::I32 | ScalarType::U32 => "i32",
        ScalarType::I8 => "i8",
        ScalarType::I64 => "i64",
        ScalarType::Bool => "i1",
        // An fp8 register holds the element's OCP encoding (see [`fp8`]).
        ScalarType::F8E4M3 | ScalarType::F8E5M2 => "i8",
    }
}

/// The MLIR type of an element of dtype `d` in memory (bool is a byte).
pub(crate) fn mem_ty(d: ScalarType) -> &'static str {
    match d {
        ScalarType::Bool => "i8",
        _ => mty(d),
    }
}

/// Registers per lane of a register value of type `t` (1 for a scalar), vectors laid out as
/// `vl` says.
pub(crate) fn reg_count(f: Frag, t: &Type, vl: Option<layout::VecLayout>) -> u32 {
    match t {
        Type::Tile { rows, cols, .. } => f.tile_regs(*rows, *cols),
        Type::Vector { len, axis, .. } => f.vector_regs(*len, vl.unwrap_or((*axis).into())),
        _ => 1,
    }
}

/// The values that some `mma` of `func` reads as its B operand and none as its A operand: a
/// shared → register load of one of them delivers its registers in the B order
/// ([`layout::LdmatrixOrder`]), so that each `mma` finds its operands in consecutive registers.
/// Only direct uses count; a tile reaching an `mma` through control flow or a call keeps the A
/// order, which costs register copies but is as correct.
fn mma_b_operands(func: &Func) -> HashSet<Value> {
    let (mut b, mut a) = (HashSet::new(), HashSet::new());
    func.walk(|op| {
        if matches!(op.kind, OpKind::Mma(_)) {
            a.insert(op.operands[0]);
            b.insert(op.operands[1]);
        }
    });
    b.retain(|v| !a.contains(v));
    b
}

/// On AMD (`amd` set), the shared tiles of `func` that LDS holds transposed: the 16-bit
/// shared allocations (tiles or arrays of tiles) whose every use is a global → shared copy
/// into them or a load of a col-layout register tile from them, through `shared.index`. A
/// col-layout MFMA register holds four consecutive rows of one column (`layout::Frag::Mfma`),
/// which a row-major placement scatters over four rows (one `ds_read_u16` each); placed
/// transposed ([`layout::lds_transposed_offset`]) they are 8 contiguous bytes, one
/// `ds_read_b64`, and the copy writes each element to its transposed place. The IR keeps no
/// placement flag: the choice follows from the uses, so a tile also read in the row layout,
/// stored to from registers, copied out or passed to a call keeps the row-major placement.
/// Returns the allocations and every `shared.index` result derived from them.
fn lds_transposed_tiles(func: &Func, amd: bool) -> HashSet<Value> {
    if !amd {
        return HashSet::new();
    }
    let mut root: HashMap<Value, Value> = HashMap::new();
    let mut keep: HashMap<Value, bool> = HashMap::new();
    let mut read_col = HashSet::new();
    func.walk(|op| {
        let rooted = |root: &HashMap<Value, Value>, v: &Value| root.get(v).copied();
        let tile_of = |t: &Type| match t {
            Type::SharedArray { elem, .. } => (**elem).clone(),
            t => t.clone(),
        };
        // Whether the op is one of the uses the transposed placement serves, with the
        // placed tile as operand 0.
        let served = match op.kind {
            OpKind::AllocShared => {
                let r = op.results[0];
                if let Type::SharedTile { dtype, .. } = tile_of(func.value_type(r)) {
                    if dtype.size_bytes() == 2 {
                        root.insert(r, r);
                        keep.insert(r, true);
                    }
                }
                return;
            }
            OpKind::SharedIndex => {
                if let Some(r) = rooted(&root, &op.operands[0]) {
                    root.insert(op.results[0], r);
                }
                return;
            }
            OpKind::Load => {
                let col = matches!(
                    func.value_type(op.results[0]),
                    Type::Tile {
                        layout: tilekit_ir::Layout::Col,
                        ..
                    }
                );
                let r = rooted(&root, &op.operands[0]);
                if let (true, Some(r)) = (col, r) {
                    read_col.insert(r);
                }
                col
            }
            OpKind::Copy | OpKind::CopyStart | OpKind::CopyAsync => {
                matches!(func.value_type(op.operands[1]), Type::Global { .. })
            }
            _ => false,
        };
        let skip = usize::from(served);
        for v in &op.operands[skip..] {
            if let Some(r) = rooted(&root, v) {
                keep.insert(r, false);
            }
        }
    });
    root.into_iter()
        .filter(|(_, r)| keep[r] && read_col.contains(r))
        .map(|(v, _)| v)
        .collect()
}

/// Chooses each register vector's distribution (see [`layout::VecLayout`]): vectors connected
/// through elementwise ops, conversions, selects and control flow form a class. A class that
/// meets a tile (broadcast, row/column reduction) takes the distribution that tile's layout
/// needs ([`layout::tile_vector_layout`]); one that meets a gather/scatter or a call, or whose
/// lengths are not multiples of the lane count, keeps its axis's; any other class is `Lanes`.
fn vector_layouts(func: &Func, lanes: u32) -> HashMap<Value, layout::VecLayout> {
    let n = func.value_types.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], x: usize) -> usize {
        let mut r = x;
        while p[r] != r {
            r = p[r];
        }
        let mut y = x;
        while p[y] != r {
            let next = p[y];
            p[y] = r;
            y = next;
        }
        r
    }
    let is_vec = |v: Value| matches!(func.value_type(v), Type::Vector { .. });
    let union = |p: &mut Vec<usize>, a: Value, b: Value| {
        if is_vec(a) && is_vec(b) {
            let (ra, rb) = (find(p, a.index()), find(p, b.index()));
            p[ra] = rb;
        }
    };
    // Values whose class keeps its axis's distribution, and values whose class must have a
    // given one (a vector meeting a tile).
    let mut tied: Vec<Value> = Vec::new();
    let mut need: Vec<(Value, layout::VecLayout)> = Vec::new();
    func.walk(|op| {
        let last_values = |r: &Region| -> Vec<Value> {
            r.ops
                .last()
                .filter(|o| o.kind.is_terminator())
                .map(|o| o.operands.clone())
                .unwrap_or_default()
        };
        match &op.kind {
            OpKind::Unary(_)
            | OpKind::Binary(_)
            | OpKind::Cmp(_)
            | OpKind::Select
            | OpKind::Convert
            | OpKind::Gather
            | OpKind::Bitcast
            | OpKind::AtomicRmw(_)
            | OpKind::AtomicCas => {
                for &x in &op.operands {
                    union(&mut parent, x, op.results[0]);
                }
            }
            OpKind::Philox => {
                for &x in &op.operands {
                    for &r in &op.results {
                        union(&mut parent, x, r);
                    }
                }
            }
            OpKind::For => {
                let r = &op.regions[0];
                let ys = last_values(r);
                for (k, &res) in op.results.iter().enumerate() {
                    union(&mut parent, op.operands[3 + k], res);
                    union(&mut parent, r.args[1 + k], res);
                    if let Some(&y) = ys.get(k) {
                        union(&mut parent, y, res);
                    }
                }
            }
            OpKind::If => {
                for r in &op.regions {
                    for (k, &y) in last_values(r).iter().enumerate() {
                        union(&mut parent, y, op.results[k]);
                    }
                }
            }
            OpKind::While => {
                let (before, after) = (&op.regions[0], &op.regions[1]);
                let cond = last_values(before);
                let ys = last_values(after);
                for (k, &res) in op.results.iter().enumerate() {
                    for v in [op.operands[k], before.args[k], after.args[k]] {
                        union(&mut parent, v, res);
                    }
                    for v in [cond.get(k + 1), ys.get(k)].into_iter().flatten() {
                        union(&mut parent, *v, res);
                    }
                }
            }
            OpKind::Bcast(axis, _) => {
                let vaxis = if *axis == tilekit_ir::BcastAxis::Row {
                    VecAxis::Rows
                } else {
                    VecAxis::Cols
                };
                if let Type::Tile { layout: tl, .. } = func.value_type(op.operands[0]) {
                    need.push((op.operands[1], layout::tile_vector_layout(*tl, vaxis)));
                }
            }
            OpKind::Reduce(axis, _) if *axis != tilekit_ir::ReduceAxis::All => {
                let vaxis = if *axis == tilekit_ir::ReduceAxis::Row {
                    VecAxis::Rows
                } else {
                    VecAxis::Cols
                };
                if let Type::Tile { layout: tl, .. } = func.value_type(op.operands[0]) {
                    need.push((op.results[0], layout::tile_vector_layout(*tl, vaxis)));
                }
            }
            OpKind::GatherRows | OpKind::ScatterRows { .. } | OpKind::Call(_) => {
                tied.extend(
                    op.operands
                        .iter()
                        .chain(&op.results)
                        .copied()
                        .filter(|v| is_vec(*v)),
                );
            }
            _ => {}
        }
    });
    if !func.is_kernel() {
        // A helper's vectors cross the call boundary: they keep their axis's distribution,
        // as the caller's arguments and results (tied at the call) do.
        tied.extend(func.params.iter().copied().filter(|v| is_vec(*v)));
        if let Some(ret) = func.body.ops.last().filter(|o| o.kind.is_terminator()) {
            tied.extend(ret.operands.iter().copied().filter(|v| is_vec(*v)));
        }
    }
    let mut class_free = vec![true; n];
    for v in tied {
        let r = find(&mut parent, v.index());
        class_free[r] = false;
    }
    // A class with one required distribution takes it; with conflicting ones it keeps its
    // axis's, and the op that needed the other reports it.
    let mut required: HashMap<usize, Option<layout::VecLayout>> = HashMap::new();
    for (v, l) in need {
        let r = find(&mut parent, v.index());
        class_free[r] = false;
        required
            .entry(r)
            .and_modify(|x| {
                if *x != Some(l) {
                    *x = None;
                }
            })
            .or_insert(Some(l));
    }
    for (i, t) in func.value_types.iter().enumerate() {
        if let Type::Vector { len, .. } = t {
            if len % lanes != 0 {
                let r = find(&mut parent, i);
                class_free[r] = false;
            }
        }
    }
    let mut out = HashMap::new();
    for (i, t) in func.value_types.iter().enumerate() {
        if let Type::Vector { axis, .. } = t {
            let r = find(&mut parent, i);
            let l = match (class_free[r], required.get(&r)) {
                (true, _) => layout::VecLayout::Lanes,
                (false, Some(Some(l))) => *l,
                _ => (*axis).into(),
            };
            out.insert(Value(i as u32), l);
        }
    }
    out
}

impl<'f> Lowerer<'f> {
    pub fn unsupported(&self, op: &Op, reason: impl Into<String>) -> CodegenError {
        CodegenError::Unsupported {
            op: op.kind.name(),
            target: self.target,
            reason: reason.into(),
            loc: op.loc.to_string(),
        }
    }

    pub fn ty(&self, v: Value) -> &'f Type {
        self.func.value_type(v)
    }

    pub fn val(&self, v: Value) -> &Lv {
        &self.vals[&v]
    }

    pub fn scalar(&self, v: Value) -> String {
        match &self.vals[&v] {
            Lv::Scalar(s) => s.clone(),
            other => unreachable!("verified IR: {v:?} is a scalar, lowered as {other:?}"),
        }
    }

    pub fn regs(&self, v: Value) -> Vec<String> {
        match &self.vals[&v] {
            Lv::Regs(r) => r.clone(),
            other => unreachable!("verified IR: {v:?} is in registers, lowered as {other:?}"),
        }
    }

    pub fn set(&mut self, v: Value, lv: Lv) {
        self.vals.insert(v, lv);
    }

    /// The flattened MLIR values and types of register values (for loop-carried values and
    /// region results).
    fn flatten(&self, vs: &[Value]) -> (Vec<String>, Vec<String>) {
        let mut names = Vec::new();
        let mut types = Vec::new();
        for &v in vs {
            let t = mty(self.ty(v).dtype().unwrap_or(ScalarType::I32));
            match &self.vals[&v] {
                Lv::Scalar(s) => {
                    names.push(s.clone());
                    types.push(t.to_string());
                }
                Lv::Regs(r) => {
                    names.extend(r.iter().cloned());
                    types.extend(r.iter().map(|_| t.to_string()));
                }
                _ => {}
            }
        }
        (names, types)
    }

    /// The flattened MLIR types of register values.
    fn flat_types(&self, vs: &[Value]) -> Vec<String> {
        let mut out = Vec::new();
        for &v in vs {
            let m = mty(self.ty(v).dtype().unwrap_or(ScalarType::I32));
            for _ in 0..self.reg_count_of(v) {
                out.push(m.to_string());
            }
        }
        out
    }

    /// The distribution of a register vector.
    pub fn vec_layout(&self, v: Value) -> layout::VecLayout {
        match (self.vec_layouts.get(&v), self.ty(v)) {
            (Some(l), _) => *l,
            (None, Type::Vector { axis, .. }) => (*axis).into(),
            _ => layout::VecLayout::Rows,
        }
    }

    /// Registers per lane of a register value.
    pub fn reg_count_of(&self, v: Value) -> u32 {
        reg_count(self.frag, self.ty(v), self.vec_layouts.get(&v).copied())
    }

    /// Binds values of `types` to consecutive flattened names (`names[k..]`).
    fn bind_flat(&mut self, vs: &[Value], names: &[String]) {
        let mut k = 0;
        for &v in vs {
            let t = self.ty(v);
            if t.is_scalar() {
                self.set(v, Lv::Scalar(names[k].clone()));
                k += 1;
            } else {
                let n = self.reg_count_of(v) as usize;
                self.set(v, Lv::Regs(names[k..k + n].to_vec()));
                k += n;
            }
        }
    }

    fn region(&mut self, r: &Region) -> R<()> {
        for op in &r.ops {
            self.op(op)?;
        }
        self.flush_loads()
    }

    /// Whether `op` is a load of a register tile from a shared tile, which targets that ask
    /// for it ([`Rules::defer_shared_loads`]) emit at its first use.
    fn deferrable(&self, op: &Op) -> bool {
        op.kind == OpKind::Load
            && self.ty(op.operands[0]).is_shared()
            && matches!(self.ty(op.results[0]), Type::Tile { .. })
    }

    /// Whether `op` neither writes memory nor synchronizes nor holds regions, so that a shared
    /// load may move past it: it reads only registers, or reads memory.
    fn moves_past(op: &Op) -> bool {
        !matches!(
            op.kind,
            OpKind::Store
                | OpKind::Copy
                | OpKind::CopyAsync
                | OpKind::CopyStart
                | OpKind::CopyCommit
                | OpKind::CopyWait(_)
                | OpKind::MmaCommit
                | OpKind::MmaWait(_)
                | OpKind::Barrier
                | OpKind::SetMaxNReg { .. }
                | OpKind::AtomicAdd
                | OpKind::AtomicRmw(_)
                | OpKind::AtomicCas
                | OpKind::DeviceAssert(_)
                | OpKind::ScatterRows { .. }
                | OpKind::SemInit(_)
                | OpKind::SemArrive
                | OpKind::SemExpect(_)
                | OpKind::SemWait
                | OpKind::Call(_)
                | OpKind::For
                | OpKind::If
                | OpKind::While
                | OpKind::Return
                | OpKind::Yield
                | OpKind::Condition
        )
    }

    /// Emits every deferred shared load, in program order.
    fn flush_loads(&mut self) -> R<()> {
        for l in std::mem::take(&mut self.pending_loads) {
            self.memory(&l)?;
        }
        Ok(())
    }

    fn op(&mut self, op: &Op) -> R<()> {
        self.check_fp8(op)?;
        if self.rules.defer_shared_loads() {
            if self.deferrable(op) {
                self.pending_loads.push(op.clone());
                return Ok(());
            }
            if Self::moves_past(op) {
                // Emit the deferred loads this op uses, just before it.
                let (now, later): (Vec<Op>, Vec<Op>) = std::mem::take(&mut self.pending_loads)
                    .into_iter()
                    .partition(|l| op.operands.contains(&l.results[0]));
                self.pending_loads = later;
                for l in now {
                    self.memory(&l)?;
                }
            } else {
                self.flush_loads()?;
            }
        }
        match &op.kind {
            OpKind::For => self.for_op(op),
            OpKind::If => self.if_op(op),
            OpKind::While => self.while_op(op),
            OpKind::Return => {
                if !op.operands.is_empty() {
                    return Err(self.unsupported(op, "kernels return nothing"));
                }
                Ok(())
            }
            OpKind::Yield | OpKind::Condition => {
                unreachable!("terminators are lowered by their parent op")
            }
            OpKind::Call(name) => self.call(op, name),
            OpKind::Mma(_) => self.mma(op),
            OpKind::MmaAsync(_) | OpKind::MmaCommit | OpKind::MmaWait(_) => {
                self.mma_async_family(op)
            }
            OpKind::SetMaxNReg { .. } => self.setmaxnreg(op),
            OpKind::AllocShared
            | OpKind::SharedIndex
            | OpKind::Load
            | OpKind::Store
            | OpKind::Copy
            | OpKind::Barrier
            | OpKind::AtomicAdd
            | OpKind::GatherRows
            | OpKind::ScatterRows { .. } => self.memory(op),
            OpKind::CopyAsync
            | OpKind::SemInit(_)
            | OpKind::SemArrive
            | OpKind::SemExpect(_)
            | OpKind::SemWait => self.sync(op),
            OpKind::CopyStart | OpKind::CopyCommit | OpKind::CopyWait(_) if self.tma.is_some() => {
                self.tma_pipeline(op)
            }
            OpKind::CopyStart | OpKind::CopyCommit | OpKind::CopyWait(_) => self.pipeline(op),
            OpKind::Cmp(_) | OpKind::Select => self.compare_select(op),
            OpKind::Gather => self.gather(op),
            OpKind::TableView => self.table_view(op),
            OpKind::AtomicRmw(f) => self.atomic_update(op, Some(*f)),
            OpKind::AtomicCas => self.atomic_update(op, None),
            OpKind::Philox => self.philox(op),
            OpKind::DeviceAssert(message) => self.device_assert(op, message),
            OpKind::Bitcast => self.bitcast(op),
            OpKind::Scan { .. } => self.scan(op),
            OpKind::SortRow { .. } => self.sort_row(op),
            OpKind::TopkRow(_) => self.topk_row(op),
            OpKind::Transpose => self.relayout(op),
            OpKind::Convert if self.changes_layout(op) => self.relayout(op),
            _ => self.elementwise(op),
        }
    }

    /// A call is inlined: the helper's body is lowered in place with its parameters bound to
    /// the arguments' lowered values, and the values it returns become the call's results.
    fn call(&mut self, op: &Op, name: &str) -> R<()> {
        const MAX_DEPTH: u32 = 64;
        let module = self.module;
        let Some(helper) = module.func(name) else {
            return Err(self.unsupported(op, format!("no helper `{name}` in the module")));
        };
        if self.depth >= MAX_DEPTH {
            return Err(self.unsupported(
                op,
                format!("calls nested more than {MAX_DEPTH} deep (recursion?)"),
            ));
        }
        let mut sub = Lowerer {
            func: helper,
            module,
            depth: self.depth + 1,
            target: self.target,
            rules: self.rules,
            frag: self.frag,
            e: std::mem::take(&mut self.e),
            vals: HashMap::new(),
            tid: self.tid.clone(),
            smem: self.smem.clone(),
            shared_next: self.shared_next,
            warps: self.warps,
            scratch_bytes: self.scratch_bytes,
            scratch_start: self.scratch_start.clone(),
            scratch_per_warp: self.scratch_per_warp.clone(),
            vec_layouts: vector_layouts(helper, self.frag.lanes()),
            async_queue: self.async_queue.take(),
            pending_loads: Vec::new(),
            mma_b_tiles: mma_b_operands(helper),
            lds_transposed: lds_transposed_tiles(helper, self.rules.lds_row_xor()),
            lds_transposed_bases: HashSet::new(),
            wgmma_zero_starts: Default::default(),
            tma: self.tma.clone(),
        };
        for (&p, &a) in helper.params.iter().zip(&op.operands) {
            sub.vals.insert(p, self.vals[&a].clone());
        }
        let result = sub.region(&Self::region_body(&helper.body));
        let returned: Vec<Lv> = Self::terminator_values(&helper.body)
            .iter()
            .map(|v| sub.vals.get(v).cloned())
            .collect::<Option<_>>()
            .unwrap_or_default();
        self.e = std::mem::take(&mut sub.e);
        self.async_queue = sub.async_queue.take();
        self.shared_next = sub.shared_next;
        self.scratch_bytes = sub.scratch_bytes;
        result?;
        for (&r, lv) in op.results.iter().zip(returned) {
            self.set(r, lv);
        }
        Ok(())
    }

    fn changes_layout(&self, op: &Op) -> bool {
        matches!(
            (self.ty(op.operands[0]), self.ty(op.results[0])),
            (Type::Tile { layout: a, .. }, Type::Tile { layout: b, .. }) if a != b
        )
    }

    /// Allocates `bytes` of the shared buffer; returns the byte offset.
    pub fn alloc_shared(&mut self, bytes: u64, align: u64) -> u64 {
        let off = self.shared_next.div_ceil(align) * align;
        self.shared_next = off + bytes;
        off
    }

    // ---- control flow -------------------------------------------------------------------------

    fn terminator_values(r: &Region) -> &[Value] {
        r.ops
            .last()
            .filter(|o| o.kind.is_terminator())
            .map(|o| o.operands.as_slice())
            .unwrap_or(&[])
    }

    fn region_body(r: &Region) -> Region {
        let mut body = r.clone();
        if body.ops.last().is_some_and(|o| o.kind.is_terminator()) {
            body.ops.pop();
        }
        body
    }

    fn results_decl(&mut self, n: usize) -> (String, Vec<String>) {
        if n == 0 {
            return (String::new(), Vec::new());
        }
        let r = self.e.fresh();
        let names = (0..n).map(|k| format!("{r}#{k}")).collect();
        (format!("{r}:{n} = "), names)
    }

    fn yield_line(&mut self, kw: &str, vs: &[Value]) {
        let (names, types) = self.flatten(vs);
        if names.is_empty() {
            self.e.line(kw);
        } else {
            self.e
                .line(&format!("{kw} {} : {}", names.join(", "), types.join(", ")));
        }
    }

    fn for_op(&mut self, op: &Op) -> R<()> {
        let (lo, hi, step) = (
            self.scalar(op.operands[0]),
            self.scalar(op.operands[1]),
            self.scalar(op.operands[2]),
        );
        let inits = &op.operands[3..];
        let r = &op.regions[0];
        let (init_names, types) = self.flatten(inits);
        let iv = self.e.fresh();
        let init_names = self.wgmma_zero_starts(op, init_names, &iv, (&lo, &hi));
        let args: Vec<String> = init_names.iter().map(|_| self.e.fresh()).collect();
        let (decl, results) = self.results_decl(types.len());
        let iter = if args.is_empty() {
            String::new()
        } else {
            let pairs: Vec<String> = args
                .iter()
                .zip(&init_names)
                .map(|(a, i)| format!("{a} = {i}"))
                .collect();
            format!(" iter_args({}) -> ({})", pairs.join(", "), types.join(", "))
        };
        self.e.open(&format!(
            "{decl}scf.for {iv} = {lo} to {hi} step {step}{iter} : i32 {{"
        ));
        self.set(r.args[0], Lv::Scalar(iv));
        self.bind_flat(&r.args[1..], &args);
        self.region(&Self::region_body(r))?;
        self.yield_line("scf.yield", Self::terminator_values(r));
        self.e.close("}");
        self.bind_flat(&op.results, &results);
        Ok(())
    }

    fn if_op(&mut self, op: &Op) -> R<()> {
        let c = self.scalar(op.operands[0]);
        let types = self.flat_types(&op.results);
        let (decl, results) = self.results_decl(types.len());
        let ret = if types.is_empty() {
            String::new()
        } else {
            format!(" -> ({})", types.join(", "))
        };
        self.e.open(&format!("{decl}scf.if {c}{ret} {{"));
        let then = &op.regions[0];
        self.region(&Self::region_body(then))?;
        self.yield_line("scf.yield", Self::terminator_values(then));
        self.e.reopen("} else {");
        if let Some(els) = op.regions.get(1) {
            self.region(&Self::region_body(els))?;
            self.yield_line("scf.yield", Self::terminator_values(els));
        } else {
            self.e.line("scf.yield");
        }
        self.e.close("}");
        self.bind_flat(&op.results, &results);
        Ok(())
    }

    fn while_op(&mut self, op: &Op) -> R<()> {
        let (before, after) = (&op.regions[0], &op.regions[1]);
        let (init_names, types) = self.flatten(&op.operands);
        let bargs: Vec<String> = init_names.iter().map(|_| self.e.fresh()).collect();
        let aargs: Vec<String> = init_names.iter().map(|_| self.e.fresh()).collect();
        let (decl, results) = self.results_decl(types.len());
        let pairs: Vec<String> = bargs
            .iter()
            .zip(&init_names)
            .map(|(a, i)| format!("{a} = {i}"))
            .collect();
        let tys = types.join(", ");
        self.e.open(&format!(
            "{decl}scf.while ({}) : ({tys}) -> ({tys}) {{",
            pairs.join(", ")
        ));
        self.bind_flat(&before.args, &bargs);
        self.region(&Self::region_body(before))?;
        let cond = Self::terminator_values(before);
        let c = self.scalar(cond[0]);
        let (fwd, fwd_tys) = self.flatten(&cond[1..]);
        if fwd.is_empty() {
            self.e.line(&format!("scf.condition({c})"));
        } else {
            self.e.line(&format!(
                "scf.condition({c}) {} : {}",
                fwd.join(", "),
                fwd_tys.join(", ")
            ));
        }
        self.e.reopen("} do {");
        let decls: Vec<String> = aargs
            .iter()
            .zip(&types)
            .map(|(a, t)| format!("{a}: {t}"))
            .collect();
        self.e.line(&format!("^bb0({}):", decls.join(", ")));
        self.bind_flat(&after.args, &aargs);
        self.region(&Self::region_body(after))?;
        self.yield_line("scf.yield", Self::terminator_values(after));
        self.e.close("}");
        self.bind_flat(&op.results, &results);
        Ok(())
    }
}

/// Lowers kernel `func` to the text of an MLIR module.
pub(crate) fn lower(
    module: &Module,
    func: &Func,
    target: Target,
    facts: &crate::Facts,
) -> R<Lowered> {
    let warps = func.warps().unwrap_or(1);
    let rules = rules::rules(target);
    let frag = rules.frag();
    // At most 1024 threads per block on every target (CUDA C Programming Guide, *Compute
    // Capabilities*; AMDGPUUsage, `amdgpu-flat-work-group-size`): the IR allows 32 warps, which
    // is 2048 threads in wavefronts of 64.
    let threads = u64::from(warps) * u64::from(frag.lanes());
    if threads > MAX_BLOCK_THREADS {
        return Err(rules::over_limit(
            &func.name,
            target,
            &format!(
                "threads per block ({warps} warps of {} lanes)",
                frag.lanes()
            ),
            threads,
            MAX_BLOCK_THREADS,
        ));
    }
    let mut l = Lowerer {
        func,
        module,
        depth: 0,
        target,
        rules: rules.as_ref(),
        frag,
        e: Emit::default(),
        vals: HashMap::new(),
        tid: String::new(),
        smem: String::new(),
        shared_next: 0,
        warps,
        scratch_bytes: 0,
        scratch_start: "%scratch_start".into(),
        scratch_per_warp: "%scratch_per_warp".into(),
        vec_layouts: vector_layouts(func, frag.lanes()),
        async_queue: None,
        pending_loads: Vec::new(),
        mma_b_tiles: mma_b_operands(func),
        lds_transposed: lds_transposed_tiles(func, rules.lds_row_xor()),
        lds_transposed_bases: HashSet::new(),
        wgmma_zero_starts: Default::default(),
        tma: None,
    };
    // Parameters: a global view of rank n is a pointer, n sizes and n strides (elements, i32);
    // a scalar is passed as itself (bool as i32).
    let mut sig = Vec::new();
    let mut args = Vec::new();
    for (k, &p) in func.params.iter().enumerate() {
        let name = func.value_name(p).unwrap_or("arg").to_string();
        match func.value_type(p) {
            Type::Global { dtype, rank, .. } => {
                let aligned16 = facts.is_aligned16(&name);
                let ptr = format!("%p{k}");
                sig.push(format!("{ptr}: !llvm.ptr<1>"));
                let shape: Vec<String> = (0..*rank).map(|d| format!("%p{k}_n{d}")).collect();
                let strides: Vec<String> = (0..*rank).map(|d| format!("%p{k}_s{d}")).collect();
                for s in shape.iter().chain(&strides) {
                    sig.push(format!("{s}: i32"));
                }
                args.push(KernelArg::Global {
                    name,
                    dtype: *dtype,
                    rank: *rank,
                });
                l.set(
                    p,
                    Lv::Global {
                        aligned16,
                        ptr,
                        shape,
                        strides,
                    },
                );
            }
            Type::Scalar(d) => {
                let d = *d;
                if d.is_fp8() {
                    return Err(CodegenError::Unsupported {
                        op: format!("parameter `{name}`"),
                        target,
                        reason: "fp8 scalars are not lowered yet".into(),
                        loc: func.loc.to_string(),
                    });
                }
                let abi = if d == ScalarType::Bool { "i32" } else { mty(d) };
                sig.push(format!("%p{k}: {abi}"));
                args.push(KernelArg::Scalar { name, dtype: d });
                l.set(p, Lv::Scalar(format!("%p{k}")));
            }
            other => {
                return Err(CodegenError::Unsupported {
                    op: format!("parameter `{name}`"),
                    target,
                    reason: format!("kernel parameters of type {other} are not lowered"),
                    loc: func.loc.to_string(),
                })
            }
        }
    }
    // Thread coordinates, used by every rule that distributes work over lanes.
    l.tid = rules.thread_coords(&mut l.e);
    l.smem = l.e.hoist("llvm.mlir.addressof @__tk_smem : !llvm.ptr<3>");
    for (k, &p) in func.params.iter().enumerate() {
        if func.value_type(p).as_scalar() == Some(ScalarType::Bool) {
            let z = l.e.i32(0);
            let b = l.e.op(&format!("arith.cmpi ne, %p{k}, {z} : i32"));
            l.set(p, Lv::Scalar(b));
        }
    }
    check_carried_registers(func, rules.as_ref())?;
    // On sm_90a, copy groups whose tiles TMA can fill complete on a ring of mbarriers; their
    // tensor maps are entry parameters after all others.
    let scan = (target == Target::Sm90a)
        .then(|| crate::tma::scan(module, func, facts))
        .flatten();
    let tensor_maps = scan.as_ref().map(|s| s.maps.clone()).unwrap_or_default();
    if let Some(scan) = scan {
        let views = func
            .params
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(func.value_type(**p), Type::Global { .. }))
            .map(|(k, p)| {
                (
                    format!("%p{k}"),
                    func.value_name(*p).unwrap_or("arg").to_string(),
                )
            })
            .collect();
        l.tma_groups_begin(scan, views, facts.clone());
    }
    for j in 0..tensor_maps.len() {
        sig.push(format!(
            "%tm{j}: !llvm.ptr {{llvm.byval = !llvm.array<128 x i8>, llvm.align = 64 : i64, nvvm.grid_constant}}"
        ));
    }
    // The module's helpers too: calls are inlined into this function.
    let mut has_copy_async = false;
    for f in std::iter::once(func).chain(&module.funcs) {
        f.walk(|op| has_copy_async |= op.kind == OpKind::CopyAsync);
    }
    if rules.async_copy_queue() && has_copy_async {
        l.async_queue = Some(l.new_async_queue());
    }
    l.region(&func.body)?;
    l.flush_async();
    l.tma_groups_end();
    l.e.line("llvm.return");
    if l.scratch_bytes > 0 {
        let per_warp = l.scratch_bytes.div_ceil(16) * 16;
        let start = l.alloc_shared(per_warp * u64::from(warps), 16);
        l.e.prologue = format!(
            "    %scratch_start = arith.constant {start} : i32\n    %scratch_per_warp = arith.constant {per_warp} : i32\n{}",
            l.e.prologue
        );
    }

    let shared_bytes = l.shared_next;
    let limit = rules.shared_limit();
    if shared_bytes > limit {
        return Err(rules::over_limit(
            &func.name,
            target,
            "bytes of shared memory",
            shared_bytes,
            limit,
        ));
    }
    let dynamic_shared = shared_bytes > rules.static_shared_limit();
    let mut reallocates_registers = false;
    for f in std::iter::once(func).chain(&module.funcs) {
        f.walk(|op| reallocates_registers |= matches!(op.kind, OpKind::SetMaxNReg { .. }));
    }
    let mlir = rules.module(&KernelText {
        name: &func.name,
        sig: &sig.join(", "),
        prologue: &l.e.prologue,
        body: &l.e.text,
        threads: warps * frag.lanes(),
        shared_bytes,
        dynamic_shared,
        reallocates_registers,
    });
    Ok(Lowered {
        mlir,
        args,
        tensor_maps,
        shared_bytes,
        dynamic_shared,
    })
}

/// Rejects a kernel whose loop-carried register values alone need more 32-bit registers per
/// thread than the hardware has: they are all live at once, so such a kernel would spill.
fn check_carried_registers(func: &Func, rules: &dyn Rules) -> R<()> {
    let mut worst = 0u64;
    func.walk(|op| {
        if matches!(op.kind, OpKind::For | OpKind::While) {
            let words: u64 = op
                .results
                .iter()
                .map(|v| {
                    let t = func.value_type(*v);
                    let bytes = t.dtype().map_or(4, ScalarType::size_bytes).max(4);
                    u64::from(reg_count(rules.frag(), t, None)) * u64::from(bytes) / 4
                })
                .sum();
            worst = worst.max(words);
        }
    });
    let limit = rules.register_limit();
    if worst > limit {
        return Err(rules::over_limit(
            &func.name,
            rules.target(),
            "32-bit registers per thread for loop-carried values",
            worst,
            limit,
        ));
    }
    Ok(())
}
