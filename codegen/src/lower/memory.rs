//! Memory: shared allocations, loads and stores between registers and global or shared memory,
//! copies between global and shared memory split among a scope's threads, barriers and atomics.
//!
//! Global tile and vector accesses are masked by the view's runtime shape (elements outside read
//! as zero and are not written), and so are out-of-range leading indices: nothing a launch
//! passes makes a kernel touch memory outside its tensors.

use tilekit_ir::{Layout, Op, OpKind, ScalarType, Scope, Swizzle, Type, Value};

use super::{mem_ty, mty, Lowerer, Lv, R};
use crate::layout::{self, LdmatrixOrder};
use crate::Target;

/// A global view as lowered.
pub(super) struct GlobalView {
    pub ptr: String,
    pub shape: Vec<String>,
    pub strides: Vec<String>,
    /// The compile assumes the view 16-byte aligned ([`crate::Facts::is_aligned16`]).
    pub aligned16: bool,
}

/// A shared tile as the lowering addresses it: byte offset, shape (of the whole shared tile,
/// which its placement depends on: [`layout::shared_tile_offset`]), swizzle, element type.
pub(super) struct SharedTileRef {
    pub base: String,
    pub rows: u32,
    pub cols: u32,
    pub swz: Swizzle,
    pub d: ScalarType,
}

/// The loop-invariant values of one thread's share of a strided element copy
/// ([`Lowerer::copy_strided_elements`]).
struct StridedCopy<'a> {
    tile: &'a SharedTileRef,
    is_tile: bool,
    threads: u32,
    to_shared: bool,
    /// The tile row and column of the thread's first element.
    first: (String, String),
    /// The view's column stride in elements, as i64.
    scol: String,
    /// The thread's first element has non-negative coordinates and valid leading indices.
    first_ok: String,
    /// The view's rows and columns left from the thread's first element (rows: tiles only).
    row_lim: Option<String>,
    col_lim: String,
    /// The tile's rows left from the thread's first row, where the last round of elements
    /// leaves threads without one.
    tile_lim: Option<String>,
}

/// The most elements per thread a tile copy between global and shared memory unrolls; a
/// larger one is a loop ([`copy_loop_group`]).
const COPY_UNROLLED_MAX: u32 = 32;

/// Elements a thread moves per iteration of a copy loop, at least: loads enough in flight.
const COPY_GROUP_MIN: u32 = 8;

/// The elements per iteration of the loop of a thread that copies `iters` elements of a tile
/// `cols` wide among `threads` threads (its k-th element at flat index `rank + k·threads`):
/// the smallest count of at least [`COPY_GROUP_MIN`] that spans whole tile rows, so that every
/// iteration repeats the first one's pattern some rows further on, and that divides `iters`
/// into at least two iterations. `None` where no count qualifies.
fn copy_loop_group(iters: u32, threads: u32, cols: u32) -> Option<u32> {
    (COPY_GROUP_MIN..=iters / 2).find(|&u| iters % u == 0 && (u * threads) % cols == 0)
}

/// What the compile knows of one coordinate of a register tile's origin in a shared tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Known {
    /// This constant.
    Const(i64),
    /// A run-time multiple of this (a tile index times the tile's extent).
    Multiple(u32),
}

/// The element origin (row, col) of a register tile in a shared tile, as i32 values, and what
/// the compile knows of each: `ldmatrix` addressing folds constant and suitably aligned parts
/// into one lane pattern plus an immediate offset (see `ldmatrix` in `ptx.rs`).
pub(super) struct TileOrigin {
    pub row: String,
    pub col: String,
    pub known: (Known, Known),
}

/// Where one element goes: a predicate (in bounds, owner lane) and its address.
pub(super) struct Access {
    pub pred: Option<String>,
    pub ptr: String,
}

impl Lowerer<'_> {
    /// An unpredicated load of one element from shared memory.
    pub(super) fn load_shared(&mut self, ptr: &str, d: ScalarType) -> String {
        let a = Access {
            pred: None,
            ptr: ptr.to_string(),
        };
        self.load_elem(&a, d, 3)
    }

    /// An unpredicated store of one element to shared memory.
    pub(super) fn store_shared(&mut self, ptr: &str, x: &str, d: ScalarType) {
        let a = Access {
            pred: None,
            ptr: ptr.to_string(),
        };
        self.store_elem(&a, x, d, 3);
    }

    pub(super) fn memory(&mut self, op: &Op) -> R<()> {
        if let OpKind::Barrier = op.kind {
            // Deferred `copy_async` completions first: a warp must not block with them pending.
            self.flush_async();
            self.rules.barrier(&mut self.e);
            return Ok(());
        }
        match &op.kind {
            OpKind::AllocShared => {
                let t = self.ty(op.results[0]);
                let bytes = t.shared_bytes().unwrap_or(0);
                let align = if contains_swizzled(t) { 1024 } else { 128 };
                let off = self.alloc_shared(bytes, align);
                let v = self.e.i32(off as i64);
                self.note_lds_placement(op.results[0], &v);
                self.set(op.results[0], Lv::Shared(v));
                Ok(())
            }
            OpKind::SharedIndex => {
                let elem_bytes = match self.ty(op.operands[0]) {
                    Type::SharedArray { elem, .. } => elem.shared_bytes().unwrap_or(0),
                    _ => unreachable!("verified IR: shared.index of an array"),
                };
                let base = self.shared_off(op.operands[0]);
                let i = self.scalar(op.operands[1]);
                let o = self.e.mul_i32_const(&i, elem_bytes as i64);
                let v = self.e.add_i32(&base, &o);
                self.note_lds_placement(op.results[0], &v);
                self.set(op.results[0], Lv::Shared(v));
                Ok(())
            }
            OpKind::Load => self.load(op),
            OpKind::Store => self.store(op),
            OpKind::Copy => self.copy(op),
            OpKind::AtomicAdd => self.atomic_add(op),
            OpKind::GatherRows => self.gather_rows(op),
            OpKind::ScatterRows { add } => self.scatter_rows(op, *add),
            _ => unreachable!("dispatched by kind"),
        }
    }

    pub(super) fn shared_off(&self, v: Value) -> String {
        match self.val(v) {
            Lv::Shared(o) => o.clone(),
            _ => unreachable!("verified IR: a shared object"),
        }
    }

    pub(super) fn global(&self, v: Value) -> GlobalView {
        match self.val(v) {
            Lv::Global {
                ptr,
                shape,
                strides,
                aligned16,
            } => GlobalView {
                ptr: ptr.clone(),
                shape: shape.clone(),
                strides: strides.clone(),
                aligned16: *aligned16,
            },
            _ => unreachable!("verified IR: a global view"),
        }
    }

    pub(super) fn and_opt(&mut self, a: Option<String>, b: String) -> String {
        match a {
            None => b,
            Some(a) => self.e.and_i1(&a, &b),
        }
    }

    /// `0 <= i < n` as one unsigned comparison.
    pub(super) fn in_range(&mut self, i: &str, n: &str) -> String {
        self.e.op(&format!("arith.cmpi ult, {i}, {n} : i32"))
    }

    /// Σ index·stride in i64.
    pub(super) fn offset(&mut self, terms: &[(String, String)]) -> String {
        let mut acc: Option<String> = None;
        for (i, s) in terms {
            let i64v = self.e.op(&format!("arith.extsi {i} : i32 to i64"));
            let s64 = self.e.op(&format!("arith.extsi {s} : i32 to i64"));
            let p = self.e.op(&format!("arith.muli {i64v}, {s64} : i64"));
            acc = Some(match acc {
                None => p,
                Some(a) => self.e.op(&format!("arith.addi {a}, {p} : i64")),
            });
        }
        acc.unwrap_or_else(|| self.e.i64(0))
    }

    pub(super) fn global_ptr(&mut self, g: &GlobalView, off: &str, d: ScalarType) -> String {
        self.e.op(&format!(
            "llvm.getelementptr {}[{off}] : (!llvm.ptr<1>, i64) -> !llvm.ptr<1>, {}",
            g.ptr,
            mem_ty(d)
        ))
    }

    /// The leading (element) indices of an access: their bounds predicate and offset terms.
    pub(super) fn leading(
        &mut self,
        g: &GlobalView,
        idx: &[String],
    ) -> (Option<String>, Vec<(String, String)>) {
        let mut pred = None;
        let mut terms = Vec::new();
        for (d, i) in idx.iter().enumerate() {
            let ok = self.in_range(i, &g.shape[d].clone());
            pred = Some(self.and_opt(pred, ok));
            terms.push((i.clone(), g.strides[d].clone()));
        }
        (pred, terms)
    }

    /// Element accesses of a register tile at tile coordinates `idx[rank-2..]` of a global view,
    /// one per register of this lane.
    pub(super) fn global_tile(
        &mut self,
        g: &GlobalView,
        idx: &[String],
        rows: u32,
        cols: u32,
        layout: Layout,
        d: ScalarType,
    ) -> Vec<Access> {
        let n = g.shape.len();
        let (lead_pred, lead_terms) = self.leading(g, &idx[..n - 2]);
        let row0 = self.e.mul_i32_const(&idx[n - 2], i64::from(rows));
        let col0 = self.e.mul_i32_const(&idx[n - 1], i64::from(cols));
        let coords = self.tile_coords(layout, rows, cols, Some(&row0), Some(&col0));
        coords
            .into_iter()
            .map(|(r, c)| self.element(g, &lead_pred, &lead_terms, &[r, c], d, None))
            .collect()
    }

    /// One element at trailing coordinates `coords` (bounds-checked against the trailing dims).
    fn element(
        &mut self,
        g: &GlobalView,
        lead_pred: &Option<String>,
        lead_terms: &[(String, String)],
        coords: &[String],
        d: ScalarType,
        extra: Option<String>,
    ) -> Access {
        let n = g.shape.len();
        let k = coords.len();
        let mut pred = lead_pred.clone();
        let mut terms = lead_terms.to_vec();
        for (j, c) in coords.iter().enumerate() {
            let dim = n - k + j;
            let ok = self.in_range(c, &g.shape[dim].clone());
            pred = Some(self.and_opt(pred, ok));
            terms.push((c.clone(), g.strides[dim].clone()));
        }
        if let Some(x) = extra {
            pred = Some(self.and_opt(pred, x));
        }
        let off = self.offset(&terms);
        let ptr = self.global_ptr(g, &off, d);
        Access { pred, ptr }
    }

    /// Element accesses of a register vector at chunk `idx[rank-1]` of a global view (with
    /// `owner_only`, a replicated element's only in the lane that owns it).
    pub(super) fn global_vector(
        &mut self,
        g: &GlobalView,
        idx: &[String],
        len: u32,
        axis: layout::VecLayout,
        d: ScalarType,
        owner_only: bool,
    ) -> Vec<Access> {
        let n = g.shape.len();
        let (lead_pred, lead_terms) = self.leading(g, &idx[..n - 1]);
        let base = self.e.mul_i32_const(&idx[n - 1], i64::from(len));
        let owner = if owner_only { self.owner(axis) } else { None };
        let f = self.frag;
        (0..f.vector_regs(len, axis))
            .map(|k| {
                let i = self.e.affine(f.vector_elem(axis, k), Some(&base));
                self.element(g, &lead_pred, &lead_terms, &[i], d, owner.clone())
            })
            .collect()
    }

    /// Accesses of a register tile in runs of registers that sit in consecutive columns of one
    /// row ([`contiguous_runs`]), one access per run: for a view the compile assumes 16-byte
    /// aligned (unit inner stride, 16-byte aligned rows, last extent a whole number of 16-byte
    /// chunks), a run of `L` elements starting at a column that is a multiple of `L` (with
    /// `L·size ≤ 16` dividing 16) is one aligned `L·size`-byte access wholly inside or wholly
    /// outside the view, so its first element's predicate masks it all. `None` where runs do
    /// not apply (no fact, runs of one, element types without a plain vector form).
    #[allow(clippy::too_many_arguments)]
    fn global_tile_runs(
        &mut self,
        g: &GlobalView,
        idx: &[String],
        rows: u32,
        cols: u32,
        layout: Layout,
        d: ScalarType,
    ) -> Option<Vec<(Access, u32)>> {
        let f = self.frag;
        let elems: Vec<_> = (0..f.tile_regs(rows, cols))
            .map(|e| f.tile_elem(layout, cols, e))
            .collect();
        let runs = self.vector_runs(g, d, &elems)?;
        let n = g.shape.len();
        let (lead_pred, lead_terms) = self.leading(g, &idx[..n - 2]);
        let row0 = self.e.mul_i32_const(&idx[n - 2], i64::from(rows));
        let col0 = self.e.mul_i32_const(&idx[n - 1], i64::from(cols));
        let out = runs
            .into_iter()
            .map(|(e, len)| {
                let (r, c) = elems[e as usize];
                let r = self.e.affine(r, Some(&row0));
                let c = self.e.affine(c, Some(&col0));
                let a = self.element(g, &lead_pred, &lead_terms, &[r, c], d, None);
                (a, len)
            })
            .collect();
        Some(out)
    }

    /// [`Self::global_tile_runs`] for a register vector along the view's last dimension.
    fn global_vector_runs(
        &mut self,
        g: &GlobalView,
        idx: &[String],
        len: u32,
        axis: layout::VecLayout,
        d: ScalarType,
        owner_only: bool,
    ) -> Option<Vec<(Access, u32)>> {
        let f = self.frag;
        let zero = layout::LaneAffine {
            base: 0,
            per_g: 0,
            per_t: 0,
        };
        let elems: Vec<_> = (0..f.vector_regs(len, axis))
            .map(|k| (zero, f.vector_elem(axis, k)))
            .collect();
        let runs = self.vector_runs(g, d, &elems)?;
        let n = g.shape.len();
        let (lead_pred, lead_terms) = self.leading(g, &idx[..n - 1]);
        let base = self.e.mul_i32_const(&idx[n - 1], i64::from(len));
        let owner = if owner_only { self.owner(axis) } else { None };
        let out = runs
            .into_iter()
            .map(|(k, l)| {
                let i = self.e.affine(elems[k as usize].1, Some(&base));
                let a = self.element(g, &lead_pred, &lead_terms, &[i], d, owner.clone());
                (a, l)
            })
            .collect();
        Some(out)
    }

    /// The runs of `elems` (row, column of each register) that one vector access may move,
    /// where the view and element type allow vector accesses at all.
    fn vector_runs(
        &self,
        g: &GlobalView,
        d: ScalarType,
        elems: &[(layout::LaneAffine, layout::LaneAffine)],
    ) -> Option<Vec<(u32, u32)>> {
        let plain = matches!(
            d,
            ScalarType::F32
                | ScalarType::F16
                | ScalarType::BF16
                | ScalarType::I32
                | ScalarType::U32
        );
        if !g.aligned16 || !plain {
            return None;
        }
        let runs = contiguous_runs(elems, 16 / d.size_bytes());
        runs.iter().any(|&(_, l)| l > 1).then_some(runs)
    }

    /// Loads `len` consecutive elements through `a` as one access, zeros where its predicate
    /// is false; the elements in order.
    fn load_run(&mut self, a: &Access, d: ScalarType, len: u32) -> Vec<String> {
        if len == 1 {
            return vec![self.load_elem(a, d, 1)];
        }
        let mt = mty(d);
        let vt = format!("vector<{len}x{mt}>");
        let align = len * d.size_bytes();
        let ld = format!(
            "llvm.load {} {{alignment = {align} : i64}} : !llvm.ptr<1> -> {vt}",
            a.ptr
        );
        let v = match &a.pred {
            None => self.e.op(&ld),
            Some(p) => {
                let z = self.e.hoist(&format!("llvm.mlir.zero : {vt}"));
                let r = self.e.fresh();
                self.e.open(&format!("{r} = scf.if {p} -> ({vt}) {{"));
                let x = self.e.op(&ld);
                self.e.line(&format!("scf.yield {x} : {vt}"));
                self.e.reopen("} else {");
                self.e.line(&format!("scf.yield {z} : {vt}"));
                self.e.close("}");
                r
            }
        };
        (0..len)
            .map(|i| {
                let k = self
                    .e
                    .hoist(&format!("llvm.mlir.constant({i} : i32) : i32"));
                self.e
                    .op(&format!("llvm.extractelement {v}[{k} : i32] : {vt}"))
            })
            .collect()
    }

    /// Stores `xs` (consecutive elements) through `a` as one access where its predicate holds.
    fn store_run(&mut self, a: &Access, xs: &[String], d: ScalarType) {
        if xs.len() == 1 {
            self.store_elem(a, &xs[0], d, 1);
            return;
        }
        let mt = mty(d);
        let vt = format!("vector<{}x{mt}>", xs.len());
        let align = xs.len() as u32 * d.size_bytes();
        let mut v = self.e.hoist(&format!("llvm.mlir.poison : {vt}"));
        for (i, x) in xs.iter().enumerate() {
            let k = self
                .e
                .hoist(&format!("llvm.mlir.constant({i} : i32) : i32"));
            v = self
                .e
                .op(&format!("llvm.insertelement {x}, {v}[{k} : i32] : {vt}"));
        }
        let st = format!(
            "llvm.store {v}, {} {{alignment = {align} : i64}} : {vt}, !llvm.ptr<1>",
            a.ptr
        );
        match &a.pred {
            None => self.e.line(&st),
            Some(p) => {
                self.e.open(&format!("scf.if {p} {{"));
                self.e.line(&st);
                self.e.close("}");
            }
        }
    }

    /// Whether this lane writes the replicated elements of a vector (`None`: every lane does).
    fn owner(&mut self, l: layout::VecLayout) -> Option<String> {
        let z = self.e.i32(0);
        let which = match l {
            layout::VecLayout::Rows => self.e.t.clone(),
            layout::VecLayout::Cols => self.e.g.clone(),
            layout::VecLayout::Lanes => return None,
        };
        Some(self.e.hoist(&format!("arith.cmpi eq, {which}, {z} : i32")))
    }

    pub(super) fn lane0(&mut self) -> String {
        let z = self.e.i32(0);
        let lane = self.e.lane.clone();
        self.e.hoist(&format!("arith.cmpi eq, {lane}, {z} : i32"))
    }

    /// Loads through `a` (pointer of address space `space`), zero where the predicate is false.
    /// One element between global (`ga`) and shared memory (`sa`), in the copy's direction.
    /// Elements outside the view land in shared memory as zeros, as the IR defines.
    fn move_elem(&mut self, ga: &Access, sa: &Access, d: ScalarType, to_shared: bool) {
        if to_shared {
            let v = self.load_elem(ga, d, 1);
            self.store_elem(sa, &v, d, 3);
        } else {
            let v = self.load_elem(sa, d, 3);
            self.store_elem(ga, &v, d, 1);
        }
    }

    pub(super) fn load_elem(&mut self, a: &Access, d: ScalarType, space: u32) -> String {
        let mt = mem_ty(d);
        let raw = match &a.pred {
            None => self
                .e
                .op(&format!("llvm.load {} : !llvm.ptr<{space}> -> {mt}", a.ptr)),
            Some(p) => {
                let z = self.e.constant(
                    if d == ScalarType::Bool {
                        ScalarType::I8
                    } else {
                        d
                    },
                    0.0,
                );
                let r = self.e.fresh();
                self.e.open(&format!("{r} = scf.if {p} -> ({mt}) {{"));
                let x = self
                    .e
                    .op(&format!("llvm.load {} : !llvm.ptr<{space}> -> {mt}", a.ptr));
                self.e.line(&format!("scf.yield {x} : {mt}"));
                self.e.reopen("} else {");
                self.e.line(&format!("scf.yield {z} : {mt}"));
                self.e.close("}");
                r
            }
        };
        if d == ScalarType::Bool {
            let z = self.e.hoist("arith.constant 0 : i8");
            self.e.op(&format!("arith.cmpi ne, {raw}, {z} : i8"))
        } else {
            raw
        }
    }

    fn store_elem(&mut self, a: &Access, x: &str, d: ScalarType, space: u32) {
        let mt = mem_ty(d);
        let x = if d == ScalarType::Bool {
            self.e.op(&format!("arith.extui {x} : i1 to i8"))
        } else {
            x.to_string()
        };
        let st = format!("llvm.store {x}, {} : {mt}, !llvm.ptr<{space}>", a.ptr);
        match &a.pred {
            None => self.e.line(&st),
            Some(p) => {
                self.e.open(&format!("scf.if {p} {{"));
                self.e.line(&st);
                self.e.close("}");
            }
        }
    }

    /// Address of element (row, col) of shared tile `tile`: on NVIDIA its placement
    /// [`layout::shared_tile_offset`] (row-major pieces of at most 128-byte rows, swizzled), the
    /// one address function of every access to a shared tile; on AMD, row-major with LDS's
    /// row-indexed word permutation instead (see [`layout::lds_row_xor_bits`]).
    pub(super) fn shared_tile_ptr(&mut self, tile: &SharedTileRef, row: &str, col: &str) -> String {
        let (base, cols, d) = (tile.base.as_str(), tile.cols, tile.d);
        let es = i64::from(d.size_bytes());
        if self.rules.lds_row_xor() {
            // A tile placed transposed: element (row, col) is element (col, row) of the
            // `cols × rows` tile (`layout::lds_transposed_offset`).
            let (row, col, cols) = if self.lds_transposed_bases.contains(base) {
                (col, row, tile.rows)
            } else {
                (row, col, cols)
            };
            let rb = self.e.mul_i32_const(row, i64::from(cols) * es);
            let cb = self.e.mul_i32_const(col, es);
            // AMD: the row-indexed word permutation of `layout::lds_row_xor_bits` in place of
            // the swizzle.
            let row_bytes = cols * d.size_bytes();
            let mut cb = cb;
            for &(rbit, wbit) in layout::lds_row_xor_bits(row_bytes) {
                let to = i64::from(wbit) + 2;
                let moved = match to - i64::from(rbit) {
                    0 => row.to_string(),
                    k if k > 0 => {
                        let kk = self.e.i32(k);
                        self.e.op(&format!("arith.shli {row}, {kk} : i32"))
                    }
                    k => {
                        let kk = self.e.i32(-k);
                        self.e.op(&format!("arith.shrui {row}, {kk} : i32"))
                    }
                };
                let m = self.e.i32(1 << to);
                let bit = self.e.op(&format!("arith.andi {moved}, {m} : i32"));
                cb = self.e.op(&format!("arith.xori {cb}, {bit} : i32"));
            }
            let off = self.e.add_i32(&rb, &cb);
            let total = self.e.add_i32(base, &off);
            return self.shared_ptr(&total);
        }
        let off = self.nv_tile_offset(tile, row, col, false);
        let total = self.e.add_i32(base, &off);
        self.shared_ptr(&total)
    }

    /// The byte offset of element (row, col) in an NVIDIA shared tile, from the tile's start:
    /// [`layout::shared_tile_offset`]. With `hoisted`, every op goes to the prologue (for
    /// coordinates that depend on the lane and constants only).
    pub(super) fn nv_tile_offset(
        &mut self,
        tile: &SharedTileRef,
        row: &str,
        col: &str,
        hoisted: bool,
    ) -> String {
        let emit = |s: &mut Self, rhs: String| {
            if hoisted {
                s.e.hoist(&rhs)
            } else {
                s.e.op(&rhs)
            }
        };
        let (cols, d, swz) = (tile.cols, tile.d, tile.swz);
        let row_bytes = cols * d.size_bytes();
        let w = layout::shared_piece_bytes(swz, row_bytes);
        let wk = self.e.i32(i64::from(w));
        let rb = emit(self, format!("arith.muli {row}, {wk} : i32"));
        let es = self.e.i32(i64::from(d.size_bytes()));
        let cb = emit(self, format!("arith.muli {col}, {es} : i32"));
        // Within a piece: row-major rows of `w` bytes; pieces `rows·w` bytes apart. `w` is a
        // power of two wherever the tile has more than one piece.
        let (piece_off, cb) = if w == row_bytes {
            (None, cb)
        } else {
            let lg = self.e.i32(i64::from(w.trailing_zeros()));
            let piece = emit(self, format!("arith.shrui {cb}, {lg} : i32"));
            let m = self.e.i32(i64::from(w - 1));
            let within = emit(self, format!("arith.andi {cb}, {m} : i32"));
            let pw = self.e.i32(i64::from(tile.rows * w));
            let po = emit(self, format!("arith.muli {piece}, {pw} : i32"));
            (Some(po), within)
        };
        let mut off = emit(self, format!("arith.addi {rb}, {cb} : i32"));
        let mask = layout::swizzle_mask(swz);
        if mask != 0 {
            let three = self.e.i32(3);
            let m = self.e.i32(i64::from(mask));
            let sh = emit(self, format!("arith.shrui {off}, {three} : i32"));
            let bits = emit(self, format!("arith.andi {sh}, {m} : i32"));
            off = emit(self, format!("arith.xori {off}, {bits} : i32"));
        }
        if let Some(po) = piece_off {
            off = emit(self, format!("arith.addi {po}, {off} : i32"));
        }
        off
    }

    pub(super) fn shared_ptr(&mut self, byte_off: &str) -> String {
        let smem = self.smem.clone();
        self.e.op(&format!(
            "llvm.getelementptr {smem}[{byte_off}] : (!llvm.ptr<3>, i32) -> !llvm.ptr<3>, i8"
        ))
    }

    fn shared_vec_ptr(&mut self, base: &str, i: &str, d: ScalarType) -> String {
        let b = self.e.mul_i32_const(i, i64::from(d.size_bytes()));
        let total = self.e.add_i32(base, &b);
        self.shared_ptr(&total)
    }

    pub(super) fn idx(&self, vs: &[Value]) -> Vec<String> {
        vs.iter().map(|v| self.scalar(*v)).collect()
    }

    fn load(&mut self, op: &Op) -> R<()> {
        let (src, res) = (op.operands[0], op.results[0]);
        let idx = self.idx(&op.operands[1..]);
        let rty = self.ty(res).clone();
        let d = rty.dtype().unwrap_or(ScalarType::F32);
        let lv = match (self.ty(src).clone(), &rty) {
            (Type::Global { .. }, Type::Scalar(_)) => {
                let g = self.global(src);
                let (pred, terms) = self.leading(&g, &idx);
                let off = self.offset(&terms);
                let ptr = self.global_ptr(&g, &off, d);
                Lv::Scalar(self.load_elem(&Access { pred, ptr }, d, 1))
            }
            (
                Type::Global { .. },
                Type::Tile {
                    rows, cols, layout, ..
                },
            ) => {
                let g = self.global(src);
                if let Some(runs) = self.global_tile_runs(&g, &idx, *rows, *cols, *layout, d) {
                    let regs = runs.iter().flat_map(|(a, l)| self.load_run(a, d, *l));
                    Lv::Regs(regs.collect())
                } else {
                    let acc = self.global_tile(&g, &idx, *rows, *cols, *layout, d);
                    Lv::Regs(acc.iter().map(|a| self.load_elem(a, d, 1)).collect())
                }
            }
            (Type::Global { .. }, Type::Vector { len, .. }) => {
                let g = self.global(src);
                let vl = self.vec_layout(res);
                if let Some(runs) = self.global_vector_runs(&g, &idx, *len, vl, d, false) {
                    let regs = runs.iter().flat_map(|(a, l)| self.load_run(a, d, *l));
                    Lv::Regs(regs.collect())
                } else {
                    let acc = self.global_vector(&g, &idx, *len, vl, d, false);
                    Lv::Regs(acc.iter().map(|a| self.load_elem(a, d, 1)).collect())
                }
            }
            (
                Type::SharedTile {
                    rows: srows,
                    cols: scols,
                    swizzle,
                    ..
                },
                Type::Tile {
                    rows, cols, layout, ..
                },
            ) => {
                let base = self.shared_off(src);
                let origin = self.shared_tile_origin(op.scope, &idx, *rows, *cols);
                let sh = SharedTileRef {
                    base,
                    rows: srows,
                    cols: scols,
                    swz: swizzle,
                    d,
                };
                let order = self.ldmatrix_order(res);
                Lv::Regs(self.shared_to_regs(&sh, &origin, *rows, *cols, *layout, order))
            }
            (Type::SharedVector { .. }, Type::Vector { len, .. }) => {
                let base = self.shared_off(src);
                let start = self.vector_origin(&idx, *len);
                let vl = self.vec_layout(res);
                let mut out = Vec::new();
                let f = self.frag;
                for k in 0..f.vector_regs(*len, vl) {
                    let i = self.e.affine(f.vector_elem(vl, k), Some(&start));
                    let ptr = self.shared_vec_ptr(&base, &i, d);
                    out.push(self.load_elem(&Access { pred: None, ptr }, d, 3));
                }
                Lv::Regs(out)
            }
            (s, r) => return Err(self.unsupported(op, format!("load of {r} from {s}"))),
        };
        self.set(res, lv);
        Ok(())
    }

    /// The order in which `ldmatrix` delivers the registers of `tile`: the B order where an
    /// `mma` reads it as its B operand, else the A order.
    fn ldmatrix_order(&self, tile: Value) -> LdmatrixOrder {
        if self.mma_b_tiles.contains(&tile) {
            LdmatrixOrder::BOperand
        } else {
            LdmatrixOrder::AOperand
        }
    }

    /// Registers of a `rows × cols` tile of the given layout read from a shared tile at element
    /// `origin`: `ldmatrix` for 16-bit elements where the target has it (its register pairs
    /// delivered in `order`), element loads otherwise.
    pub(super) fn shared_to_regs(
        &mut self,
        sh: &SharedTileRef,
        origin: &TileOrigin,
        rows: u32,
        cols: u32,
        layout: Layout,
        order: LdmatrixOrder,
    ) -> Vec<String> {
        let d = sh.d;
        if d.size_bytes() == 2 && self.rules.ldmatrix() {
            return self.ldmatrix(sh, origin, rows, cols, layout, order);
        }
        let (row0, col0) = (origin.row.as_str(), origin.col.as_str());
        if layout == Layout::Col && self.lds_transposed_bases.contains(&sh.base) {
            let ptrs = self.lds_col_groups(sh, row0, col0, rows, cols);
            return self.lds_group_loads(&ptrs, d);
        }
        if let Some(ptrs) = self.lds_row_groups(sh, row0, col0, rows, cols, layout) {
            return self.lds_group_loads(&ptrs, d);
        }
        let coords = self.tile_coords(layout, rows, cols, Some(row0), Some(col0));
        let mut out = Vec::new();
        for (r, c) in coords {
            let ptr = self.shared_tile_ptr(sh, &r, &c);
            out.push(self.load_elem(&Access { pred: None, ptr }, d, 3));
        }
        out
    }

    /// On AMD, the LDS addresses of a 16-bit row-layout register tile's groups of four
    /// registers: an MFMA row-layout subtile holds columns `4t .. 4t+4` of one row in registers
    /// `4s .. 4s+4`, 8 contiguous bytes that LDS's placement keeps together and in order
    /// (`layout::lds_row_xor_bits` never moves byte bits 0–2), so each group is one 8-byte
    /// access (`ds_read_b64` / `ds_write_b64`) and stays packed for the MFMA. `None` where
    /// that does not apply (other targets, layouts or element sizes).
    fn lds_row_groups(
        &mut self,
        sh: &SharedTileRef,
        row0: &str,
        col0: &str,
        rows: u32,
        cols: u32,
        layout: Layout,
    ) -> Option<Vec<String>> {
        if !self.rules.lds_row_xor() || layout != Layout::Row || sh.d.size_bytes() != 2 {
            return None;
        }
        let f = self.frag;
        let n = f.subtile_regs();
        let ptrs = (0..f.tile_regs(rows, cols) / n)
            .map(|s| {
                let (r, c) = f.tile_elem(Layout::Row, cols, n * s);
                let r = self.e.affine(r, Some(row0));
                let c = self.e.affine(c, Some(col0));
                self.shared_tile_ptr(sh, &r, &c)
            })
            .collect();
        Some(ptrs)
    }

    /// On AMD, where lowering `res` (an `alloc_shared` or `shared.index` result) gave it the
    /// LDS offset `off`: a tile placed transposed ([`super::lds_transposed_tiles`]) has its
    /// offset noted, so that [`Self::shared_tile_ptr`] places its elements transposed.
    fn note_lds_placement(&mut self, res: Value, off: &str) {
        if self.lds_transposed.contains(&res) {
            self.lds_transposed_bases.insert(off.to_string());
        }
    }

    /// On AMD, the LDS addresses of a 16-bit col-layout register tile's groups of four
    /// registers read from a shared tile placed transposed ([`layout::lds_transposed_offset`]):
    /// group `s` holds rows `4t .. 4t+4` of one column ([`layout::lds_col_group`]), 8
    /// contiguous bytes there.
    fn lds_col_groups(
        &mut self,
        sh: &SharedTileRef,
        row0: &str,
        col0: &str,
        rows: u32,
        cols: u32,
    ) -> Vec<String> {
        let f = self.frag;
        (0..f.tile_regs(rows, cols) / f.subtile_regs())
            .map(|s| {
                let (r, c) = layout::lds_col_group(cols, s);
                let r = self.e.affine(r, Some(row0));
                let c = self.e.affine(c, Some(col0));
                self.shared_tile_ptr(sh, &r, &c)
            })
            .collect()
    }

    /// One 8-byte LDS load (`ds_read_b64`) per address, split into its four 16-bit registers.
    fn lds_group_loads(&mut self, ptrs: &[String], d: ScalarType) -> Vec<String> {
        let vt = format!("vector<4x{}>", mty(d));
        let mut out = Vec::new();
        for p in ptrs {
            let v = self.e.op(&format!(
                "llvm.load {p} {{alignment = 8 : i64}} : !llvm.ptr<3> -> {vt}"
            ));
            for i in 0..4 {
                let k = self
                    .e
                    .hoist(&format!("llvm.mlir.constant({i} : i32) : i32"));
                out.push(
                    self.e
                        .op(&format!("llvm.extractelement {v}[{k} : i32] : {vt}")),
                );
            }
        }
        out
    }

    /// The element origin of this warp's quarter at warpgroup scope: rows `w·rows`, where w is
    /// the warp's rank in its group.
    pub(super) fn warpgroup_origin(&mut self, rows: u32) -> TileOrigin {
        let lanes = i64::from(self.frag.lanes());
        let c128 = self.e.i32(4 * lanes);
        let tid = self.tid.clone();
        let in_group = self.e.hoist(&format!("arith.remui {tid}, {c128} : i32"));
        let c32 = self.e.i32(lanes);
        let rank = self
            .e
            .hoist(&format!("arith.divui {in_group}, {c32} : i32"));
        TileOrigin {
            row: self.e.mul_i32_const(&rank, i64::from(rows)),
            col: self.e.i32(0),
            known: (Known::Multiple(rows), Known::Const(0)),
        }
    }

    /// The element origin in a shared tile of the `rows × cols` register tile a load or store
    /// moves: this warp's quarter at warpgroup scope, else tile (i, j) of the indices.
    fn shared_tile_origin(
        &mut self,
        scope: Scope,
        idx: &[String],
        rows: u32,
        cols: u32,
    ) -> TileOrigin {
        if scope == Scope::Warpgroup {
            self.warpgroup_origin(rows)
        } else {
            self.tile_origin(idx, rows, cols)
        }
    }

    fn tile_origin(&mut self, idx: &[String], rows: u32, cols: u32) -> TileOrigin {
        if idx.len() == 2 {
            let (row, rk) = self.index_times(&idx[0], rows);
            let (col, ck) = self.index_times(&idx[1], cols);
            TileOrigin {
                row,
                col,
                known: (rk, ck),
            }
        } else {
            TileOrigin {
                row: self.e.i32(0),
                col: self.e.i32(0),
                known: (Known::Const(0), Known::Const(0)),
            }
        }
    }

    /// `i·k` for a tile index `i`: a constant where `i` is one.
    fn index_times(&mut self, i: &str, k: u32) -> (String, Known) {
        match self.e.known_i32(i) {
            Some(c) => (self.e.i32(c * i64::from(k)), Known::Const(c * i64::from(k))),
            None => (self.e.mul_i32_const(i, i64::from(k)), Known::Multiple(k)),
        }
    }

    fn vector_origin(&mut self, idx: &[String], len: u32) -> String {
        match idx.last() {
            Some(i) => self.e.mul_i32_const(i, i64::from(len)),
            None => self.e.i32(0),
        }
    }

    fn store(&mut self, op: &Op) -> R<()> {
        let (dst, x) = (op.operands[0], op.operands[1]);
        let idx = self.idx(&op.operands[2..]);
        let xty = self.ty(x).clone();
        let d = xty.dtype().unwrap_or(ScalarType::F32);
        match (self.ty(dst).clone(), &xty) {
            (Type::Global { .. }, Type::Scalar(_)) => {
                // A scalar is the warp's: one lane writes it.
                let g = self.global(dst);
                let (pred, terms) = self.leading(&g, &idx);
                let l0 = self.lane0();
                let pred = Some(self.and_opt(pred, l0));
                let off = self.offset(&terms);
                let ptr = self.global_ptr(&g, &off, d);
                let v = self.scalar(x);
                self.store_elem(&Access { pred, ptr }, &v, d, 1);
            }
            (
                Type::Global { .. },
                Type::Tile {
                    rows, cols, layout, ..
                },
            ) => {
                let g = self.global(dst);
                let xs = self.regs(x);
                if let Some(runs) = self.global_tile_runs(&g, &idx, *rows, *cols, *layout, d) {
                    let mut at = 0;
                    for (a, l) in &runs {
                        self.store_run(a, &xs[at..at + *l as usize], d);
                        at += *l as usize;
                    }
                    return Ok(());
                }
                let acc = self.global_tile(&g, &idx, *rows, *cols, *layout, d);
                for (a, v) in acc.iter().zip(&xs) {
                    self.store_elem(a, v, d, 1);
                }
            }
            (Type::Global { .. }, Type::Vector { len, .. }) => {
                let g = self.global(dst);
                let vl = self.vec_layout(x);
                let xs = self.regs(x);
                if let Some(runs) = self.global_vector_runs(&g, &idx, *len, vl, d, true) {
                    let mut at = 0;
                    for (a, l) in &runs {
                        self.store_run(a, &xs[at..at + *l as usize], d);
                        at += *l as usize;
                    }
                    return Ok(());
                }
                let acc = self.global_vector(&g, &idx, *len, vl, d, true);
                for (a, v) in acc.iter().zip(&xs) {
                    self.store_elem(a, v, d, 1);
                }
            }
            (
                Type::SharedTile {
                    rows: srows,
                    cols: scols,
                    swizzle,
                    ..
                },
                Type::Tile {
                    rows, cols, layout, ..
                },
            ) => {
                let base = self.shared_off(dst);
                let origin = self.shared_tile_origin(op.scope, &idx, *rows, *cols);
                let (row0, col0) = (origin.row.clone(), origin.col.clone());
                let xs = self.regs(x);
                let sh = SharedTileRef {
                    base,
                    rows: srows,
                    cols: scols,
                    swz: swizzle,
                    d,
                };
                if d.size_bytes() == 2 && self.target == Target::Sm90a {
                    self.stmatrix(&sh, &origin, (*rows, *cols), *layout, &xs);
                    return Ok(());
                }
                if let Some(ptrs) = self.lds_row_groups(&sh, &row0, &col0, *rows, *cols, *layout) {
                    let vt = format!("vector<4x{}>", mty(d));
                    for (p, group) in ptrs.iter().zip(xs.chunks(4)) {
                        let mut v = self.e.hoist(&format!("llvm.mlir.poison : {vt}"));
                        for (i, x) in group.iter().enumerate() {
                            let k = self
                                .e
                                .hoist(&format!("llvm.mlir.constant({i} : i32) : i32"));
                            v = self
                                .e
                                .op(&format!("llvm.insertelement {x}, {v}[{k} : i32] : {vt}"));
                        }
                        self.e.line(&format!(
                            "llvm.store {v}, {p} {{alignment = 8 : i64}} : {vt}, !llvm.ptr<3>"
                        ));
                    }
                    return Ok(());
                }
                let coords = self.tile_coords(*layout, *rows, *cols, Some(&row0), Some(&col0));
                for ((r, c), v) in coords.into_iter().zip(&xs) {
                    let ptr = self.shared_tile_ptr(&sh, &r, &c);
                    self.store_elem(&Access { pred: None, ptr }, v, d, 3);
                }
            }
            (Type::SharedVector { .. }, Type::Vector { len, .. }) => {
                let base = self.shared_off(dst);
                let start = self.vector_origin(&idx, *len);
                let vl = self.vec_layout(x);
                let owner = self.owner(vl);
                let xs = self.regs(x);
                let f = self.frag;
                for k in 0..f.vector_regs(*len, vl) {
                    let i = self.e.affine(f.vector_elem(vl, k), Some(&start));
                    let ptr = self.shared_vec_ptr(&base, &i, d);
                    let a = Access {
                        pred: owner.clone(),
                        ptr,
                    };
                    self.store_elem(&a, &xs[k as usize], d, 3);
                }
            }
            (m, r) => return Err(self.unsupported(op, format!("store of {r} to {m}"))),
        }
        Ok(())
    }

    /// `copy @scope (dst, src, idx…)`: each thread of the scope moves elements
    /// `rank, rank + n, rank + 2n, …` of the tile (row-major) or vector.
    fn copy(&mut self, op: &Op) -> R<()> {
        if self.tma_store(op)? {
            return Ok(());
        }
        let idx = self.idx(&op.operands[2..]);
        self.copy_elements(op, op.operands[0], op.operands[1], &idx, op.scope, false)
    }

    /// The elementwise copy between a global view and a shared tile or vector that `copy` and
    /// `copy_async` use. With `defer`, the `cp.async` path neither commits nor waits for its
    /// chunks (the caller commits the group; see `nvidia/sync.rs`).
    pub(super) fn copy_elements(
        &mut self,
        op: &Op,
        dst: Value,
        src: Value,
        idx: &[String],
        scope: Scope,
        defer: bool,
    ) -> R<()> {
        let lanes = self.frag.lanes();
        let (threads, rank) = match scope {
            Scope::Warp => (lanes, self.e.lane.clone()),
            Scope::Warpgroup => {
                let c = self.e.i32(i64::from(4 * lanes));
                (
                    4 * lanes,
                    self.e.op(&format!("arith.remui {}, {c} : i32", self.tid)),
                )
            }
            Scope::Block => (lanes * self.warps, self.tid.clone()),
        };
        let to_shared = self.ty(dst).is_shared();
        let (sv, gv) = if to_shared { (dst, src) } else { (src, dst) };
        let sty = self.ty(sv).clone();
        let d = sty.dtype().unwrap_or(ScalarType::F32);
        let g = self.global(gv);
        let base = self.shared_off(sv);
        let n = g.shape.len();
        let (rows, cols, swz, is_tile) = match sty {
            Type::SharedTile {
                rows,
                cols,
                swizzle,
                ..
            } => (rows, cols, swizzle, true),
            Type::SharedVector { len, .. } => (1, len, Swizzle::None, false),
            other => return Err(self.unsupported(op, format!("copy of {other}"))),
        };
        let lead = if is_tile { n - 2 } else { n - 1 };
        let (lead_pred, lead_terms) = self.leading(&g, &idx[..lead]);
        let es = d.size_bytes();
        // Global → shared tiles whose rows are whole 16-byte chunks go through `cp.async` when
        // the compile assumes the view 16-byte aligned (`crate::specialize`) and the target has
        // `cp.async`. Any other view is copied element by element: its element type is the only
        // alignment it guarantees. The choice is static, never a run-time alignment test: the
        // runtime picks per launch the variant compiled for the facts the launch's views meet,
        // and a test with both copies inside a loop cost the general variant registers (the
        // 64×64 GEMM on sm_80: 168 against 106 aligned) and made the 128×256 GEMM spill.
        let chunked = to_shared
            && is_tile
            && d != ScalarType::Bool
            && (cols * es) % 16 == 0
            && self.rules.cp_async();
        if chunked && g.aligned16 {
            let tile = SharedTileRef {
                base: base.clone(),
                rows,
                cols,
                swz,
                d,
            };
            let (tr, tc) = (&idx[n - 2], &idx[n - 1]);
            self.cp_async_tile_aligned(
                &g,
                &lead_pred,
                &lead_terms,
                tr,
                tc,
                &tile,
                threads,
                &rank,
                defer,
            );
            return Ok(());
        }
        if to_shared && is_tile && !chunked && g.aligned16 {
            let tile = SharedTileRef {
                base: base.clone(),
                rows,
                cols,
                swz,
                d,
            };
            let (lp, lt, tr, tc) = (&lead_pred, &lead_terms, &idx[n - 2], &idx[n - 1]);
            if self.staged_tile_copy(&g, lp, lt, tr, tc, &tile, threads, &rank) {
                return Ok(());
            }
        }
        // The tile's first row goes through an opaque value (on NVIDIA a `mov`, free after
        // ptxas; see `Rules::opaque_i32`): LLVM's scalar
        // evolution then cannot see it as an induction variable of an enclosing loop. Where
        // it could prove that `row0 + r` does not overflow (a trip count bounded by a block
        // index, as in causal attention), loop strength reduction turned the 64-bit address of
        // every element of the fallback path below into its own pointer induction variable,
        // live across the whole loop: 2 registers per element, and spills. (`llvm.freeze`
        // does not hide it: instcombine drops a freeze of a value that cannot be poison.)
        let row0 = if is_tile {
            let r0 = self.e.mul_i32_const(&idx[n - 2], i64::from(rows));
            Some(self.rules.opaque_i32(&mut self.e, &r0))
        } else {
            None
        };
        let col0 = self.e.mul_i32_const(&idx[n - 1], i64::from(cols));
        let tile = SharedTileRef {
            base: base.clone(),
            rows,
            cols,
            swz,
            d,
        };
        let total = rows * cols;
        let iters = total.div_ceil(threads);
        if threads % cols == 0 || cols % threads == 0 {
            self.copy_strided_elements(
                &g,
                (&lead_pred, &lead_terms),
                (row0.as_deref(), &col0),
                &tile,
                is_tile,
                (threads, &rank),
                to_shared,
            );
            return Ok(());
        }
        for k in 0..iters {
            let kk = self.e.i32(i64::from(k * threads));
            let e = self.e.add_i32(&rank, &kk);
            let guard = (total % threads != 0).then(|| {
                let t = self.e.i32(i64::from(total));
                self.e.op(&format!("arith.cmpi ult, {e}, {t} : i32"))
            });
            let ccols = self.e.i32(i64::from(cols));
            let r = self.e.op(&format!("arith.divui {e}, {ccols} : i32"));
            let c = self.e.op(&format!("arith.remui {e}, {ccols} : i32"));
            let sptr = if is_tile {
                self.shared_tile_ptr(&tile, &r, &c)
            } else {
                self.shared_vec_ptr(&base, &c, d)
            };
            let gc = self.e.add_i32(&col0, &c);
            let coords = match &row0 {
                Some(r0) => vec![self.e.add_i32(r0, &r), gc],
                None => vec![gc],
            };
            let ga = self.element(&g, &lead_pred, &lead_terms, &coords, d, guard.clone());
            let sa = Access {
                pred: guard,
                ptr: sptr,
            };
            self.move_elem(&ga, &sa, d, to_shared);
        }
        Ok(())
    }

    /// On targets without `cp.async` (AMD), a global → shared tile copy in 16-byte chunks
    /// staged through registers, where the tile's rows are whole chunks: per chunk one
    /// predicate, one 16-byte global load (`global_load_dwordx4`) and, into LDS, one 16-byte
    /// store, or two 8-byte ones (`ds_write_b64`) where LDS's row permutation
    /// ([`layout::lds_row_xor_bits`]) moves word bit 1 and so swaps a chunk's halves in some
    /// rows. Only for views the compile assumes 16-byte aligned (`crate::specialize`): every
    /// chunk then starts 16-byte aligned and, the last extent being a whole number of chunks,
    /// lies wholly inside or wholly outside the view, so none straddles its edge. Returns
    /// whether it emitted the copy (false: the copy does not qualify; the caller copies
    /// element by element). Into a 16-bit tile LDS holds transposed
    /// ([`layout::lds_transposed_offset`]) each of a chunk's 8 elements goes to its column's
    /// row with a 2-byte store (`ds_write_b16`, `ds_write_b16_d16_hi`: no instruction
    /// unpacks the halves).
    ///
    /// The general variant keeps the element-wise copy alone: launches whose views qualify
    /// take the aligned variant, and a run-time test with both copies in the loop costs the
    /// general variant registers (attention on gfx942: 254 → 289 VGPRs, with AGPR spills) and,
    /// where AMDGPU's control-flow structurizer lays both copies on the loop's fall-through,
    /// issue slots.
    #[allow(clippy::too_many_arguments)]
    fn staged_tile_copy(
        &mut self,
        g: &GlobalView,
        lead_pred: &Option<String>,
        lead_terms: &[(String, String)],
        tile_row: &str,
        tile_col: &str,
        tile: &SharedTileRef,
        threads: u32,
        rank: &str,
    ) -> bool {
        let es = tile.d.size_bytes();
        if !g.aligned16
            || self.rules.cp_async()
            || tile.d == ScalarType::Bool
            || 16 % es != 0
            || (tile.cols * es) % 16 != 0
        {
            return false;
        }
        let n = g.shape.len();
        let per_chunk = 16 / es;
        let (nrows, ncols) = (g.shape[n - 2].clone(), g.shape[n - 1].clone());
        let split = self.rules.lds_row_xor()
            && layout::lds_row_xor_bits(tile.cols * es)
                .iter()
                .any(|&(_, w)| w == 1);
        let per_row = tile.cols / per_chunk;
        let chunks = tile.rows * per_row;
        // Addresses as one 64-bit origin (leading indices, tile row and column) plus each
        // chunk's offset in the tile, so that LLVM advances the origin by a constant per step
        // of an enclosing loop.
        let srow = self
            .e
            .op(&format!("arith.extsi {} : i32 to i64", g.strides[n - 2]));
        let tr = self.e.op(&format!("arith.extsi {tile_row} : i32 to i64"));
        let tc = self.e.op(&format!("arith.extsi {tile_col} : i32 to i64"));
        let rows64 = self.e.i64(i64::from(tile.rows));
        let cols64 = self.e.i64(i64::from(tile.cols));
        let r0 = self.e.op(&format!("arith.muli {tr}, {rows64} : i64"));
        let r0 = self.e.op(&format!("arith.muli {r0}, {srow} : i64"));
        let c0 = self.e.op(&format!("arith.muli {tc}, {cols64} : i64"));
        let lead = self.offset(lead_terms);
        let origin = self.e.op(&format!("arith.addi {lead}, {r0} : i64"));
        let origin = self.e.op(&format!("arith.addi {origin}, {c0} : i64"));
        let row0 = self.e.mul_i32_const(tile_row, i64::from(tile.rows));
        let col0 = self.e.mul_i32_const(tile_col, i64::from(tile.cols));
        let vt = "vector<4xi32>";
        let zero_v = self.e.hoist(&format!("llvm.mlir.zero : {vt}"));
        for k in 0..chunks.div_ceil(threads) {
            let kk = self.e.i32(i64::from(k * threads));
            let ch = self.e.add_i32(rank, &kk);
            let guard = (chunks % threads != 0).then(|| {
                let t = self.e.i32(i64::from(chunks));
                self.e.op(&format!("arith.cmpi ult, {ch}, {t} : i32"))
            });
            let pr = self.e.i32(i64::from(per_row));
            let r = self.e.op(&format!("arith.divui {ch}, {pr} : i32"));
            let cc = self.e.op(&format!("arith.remui {ch}, {pr} : i32"));
            let c = self.e.mul_i32_const(&cc, i64::from(per_chunk));
            let gr = self.e.add_i32(&row0, &r);
            let gc = self.e.add_i32(&col0, &c);
            let row_ok = self.in_range(&gr, &nrows);
            let col_ok = self.in_range(&gc, &ncols);
            let mut ok = self.and_opt(lead_pred.clone(), row_ok);
            ok = self.e.and_i1(&ok, &col_ok);
            if let Some(gd) = &guard {
                ok = self.e.and_i1(&ok, gd);
            }
            let r64 = self.e.op(&format!("arith.extui {r} : i32 to i64"));
            let c64 = self.e.op(&format!("arith.extui {c} : i32 to i64"));
            let rel = self.e.op(&format!("arith.muli {r64}, {srow} : i64"));
            let rel = self.e.op(&format!("arith.addi {rel}, {c64} : i64"));
            let off = self.e.op(&format!("arith.addi {origin}, {rel} : i64"));
            let src = self.global_ptr(g, &off, tile.d);
            let v = self.e.fresh();
            self.e.open(&format!("{v} = scf.if {ok} -> ({vt}) {{"));
            let x = self.e.op(&format!(
                "llvm.load {src} {{alignment = 16 : i64}} : !llvm.ptr<1> -> {vt}"
            ));
            self.e.line(&format!("scf.yield {x} : {vt}"));
            self.e.reopen("} else {");
            // Chunks outside the view land as zeros, as the IR defines.
            self.e.line(&format!("scf.yield {zero_v} : {vt}"));
            self.e.close("}");
            if let Some(gd) = &guard {
                self.e.open(&format!("scf.if {gd} {{"));
            }
            if self.lds_transposed_bases.contains(&tile.base) {
                let et = mty(tile.d);
                let ev = format!("vector<{per_chunk}x{et}>");
                let w = self.e.op(&format!("llvm.bitcast {v} : {vt} to {ev}"));
                for j in 0..per_chunk {
                    let jj = self.e.i32(i64::from(j));
                    let cj = self.e.add_i32(&c, &jj);
                    let p = self.shared_tile_ptr(tile, &r, &cj);
                    let k = self
                        .e
                        .hoist(&format!("llvm.mlir.constant({j} : i32) : i32"));
                    let x = self
                        .e
                        .op(&format!("llvm.extractelement {w}[{k} : i32] : {ev}"));
                    self.e.line(&format!(
                        "llvm.store {x}, {p} {{alignment = 2 : i64}} : {et}, !llvm.ptr<3>"
                    ));
                }
            } else if split {
                let half = self.e.i32(i64::from(per_chunk / 2));
                let c1 = self.e.add_i32(&c, &half);
                for (cs, lanes) in [(c.clone(), "0, 1"), (c1, "2, 3")] {
                    let p = self.shared_tile_ptr(tile, &r, &cs);
                    let h = self
                        .e
                        .op(&format!("llvm.shufflevector {v}, {v} [{lanes}] : {vt}"));
                    self.e.line(&format!(
                        "llvm.store {h}, {p} {{alignment = 8 : i64}} : vector<2xi32>, !llvm.ptr<3>"
                    ));
                }
            } else {
                let p = self.shared_tile_ptr(tile, &r, &c);
                self.e.line(&format!(
                    "llvm.store {v}, {p} {{alignment = 16 : i64}} : {vt}, !llvm.ptr<3>"
                ));
            }
            if guard.is_some() {
                self.e.close("}");
            }
        }
        true
    }

    fn atomic_add(&mut self, op: &Op) -> R<()> {
        let (gv, x) = (op.operands[0], op.operands[1]);
        let idx = self.idx(&op.operands[2..]);
        let xty = self.ty(x).clone();
        let d = xty.dtype().unwrap_or(ScalarType::F32);
        let kind = self.atomic_kind(op, d)?;
        let g = self.global(gv);
        let accesses: Vec<(Access, String)> = match &xty {
            Type::Scalar(_) => {
                let (pred, terms) = self.leading(&g, &idx);
                let l0 = self.lane0();
                let pred = Some(self.and_opt(pred, l0));
                let off = self.offset(&terms);
                let ptr = self.global_ptr(&g, &off, d);
                vec![(Access { pred, ptr }, self.scalar(x))]
            }
            Type::Vector { len, .. } => {
                // A replicated element is added once, by the lane that owns it.
                let vl = self.vec_layout(x);
                let acc = self.global_vector(&g, &idx, *len, vl, d, true);
                acc.into_iter().zip(self.regs(x)).collect()
            }
            Type::Tile {
                rows, cols, layout, ..
            } => {
                let acc = self.global_tile(&g, &idx, *rows, *cols, *layout, d);
                acc.into_iter().zip(self.regs(x)).collect()
            }
            other => return Err(self.unsupported(op, format!("atomic add of {other}"))),
        };
        for (a, v) in accesses {
            self.atomic_elem(&a, &v, d, kind);
        }
        Ok(())
    }

    /// The element-wise copy of [`Self::copy_elements`] where the thread count and the tile's
    /// columns divide one another (every library shape): element `rank + k·threads` then lies
    /// at a constant (row, column) step `(k·threads / cols, k·threads % cols)` from the thread's
    /// first element `(rank / cols, rank % cols)`, since the column never wraps. So the thread
    /// computes its first element's global address once and reaches each next one by adding a
    /// stride step (at most two distinct steps, loop-invariant), and each predicate is one
    /// comparison of a row or column against the view's extent: no 64-bit multiply, division
    /// or remainder per element. Each element is one access of its own type (the only
    /// alignment a view without facts guarantees), under its predicate; elements outside the
    /// view land in shared memory as zeros, as the IR defines.
    ///
    /// A tile copy of more than [`COPY_UNROLLED_MAX`] elements per thread is a loop whose
    /// iterations each move a group of whole rows ([`copy_loop_group`]), the same pattern some
    /// rows further on. Unrolled, every element's bounds test is a branch of its own: the
    /// sm_90a 128×256 GEMM's producer lane copies 768 elements a step, which made 3391 blocks
    /// of LLVM IR and 24 s of compile time, nearly all of it in GVN's memory dependences.
    #[allow(clippy::too_many_arguments)]
    fn copy_strided_elements(
        &mut self,
        g: &GlobalView,
        (lead_pred, lead_terms): (&Option<String>, &[(String, String)]),
        (row0, col0): (Option<&str>, &str),
        tile: &SharedTileRef,
        is_tile: bool,
        (threads, rank): (u32, &str),
        to_shared: bool,
    ) {
        let n = g.shape.len();
        let (rows, cols, d) = (tile.rows, tile.cols, tile.d);
        let total = rows * cols;
        let ccols = self.e.i32(i64::from(cols));
        let rb = self.e.op(&format!("arith.divui {rank}, {ccols} : i32"));
        let cb = self.e.op(&format!("arith.remui {rank}, {ccols} : i32"));
        let gr0 = row0.map(|r0| self.e.add_i32(r0, &rb));
        let gc0 = self.e.add_i32(col0, &cb);
        let mut terms = lead_terms.to_vec();
        if let Some(gr0) = &gr0 {
            terms.push((gr0.clone(), g.strides[n - 2].clone()));
        }
        terms.push((gc0.clone(), g.strides[n - 1].clone()));
        let off = self.offset(&terms);
        let ptr = self.global_ptr(g, &off, d);
        let srow = is_tile.then(|| {
            self.e
                .op(&format!("arith.extsi {} : i32 to i64", g.strides[n - 2]))
        });
        let scol = self
            .e
            .op(&format!("arith.extsi {} : i32 to i64", g.strides[n - 1]));
        // Bounds as room left: element (gr0 + dr, gc0 + dc) is inside the view when the first
        // row and column are not negative and dr < nrows − gr0, dc < ncols − gc0 (signed; no
        // overflow, both sides being non-negative where it matters). One register per copy
        // and an immediate comparison per element, instead of one row or column index kept
        // per element. Likewise element `rank + step` exists when dr < rows − rb.
        let zero = self.e.i32(0);
        let col_ok = self.e.op(&format!("arith.cmpi sge, {gc0}, {zero} : i32"));
        let mut first_ok = self.and_opt(lead_pred.clone(), col_ok);
        let row_lim = gr0.as_ref().map(|gr0| {
            let ok = self.e.op(&format!("arith.cmpi sge, {gr0}, {zero} : i32"));
            first_ok = self.e.and_i1(&first_ok, &ok);
            self.e
                .op(&format!("arith.subi {}, {gr0} : i32", g.shape[n - 2]))
        });
        let col_lim = self
            .e
            .op(&format!("arith.subi {}, {gc0} : i32", g.shape[n - 1]));
        let tile_lim = (total % threads != 0).then(|| {
            let r = self.e.i32(i64::from(rows));
            self.e.op(&format!("arith.subi {r}, {rb} : i32"))
        });
        let copy = StridedCopy {
            tile,
            is_tile,
            threads,
            to_shared,
            first: (rb, cb),
            scol,
            first_ok,
            row_lim,
            col_lim,
            tile_lim,
        };
        let iters = total.div_ceil(threads);
        let group = srow
            .as_ref()
            .filter(|_| iters > COPY_UNROLLED_MAX)
            .zip(copy_loop_group(iters, threads, cols));
        let Some((srow, group)) = group else {
            self.copy_element_run(&copy, srow.as_deref(), ptr, None, iters);
            return;
        };
        let (lo, hi, one) = (zero, self.e.i32(i64::from(iters / group)), self.e.i32(1));
        let t = self.e.fresh();
        self.e
            .open(&format!("scf.for {t} = {lo} to {hi} step {one} : i32 {{"));
        // Opaque for the reason `row0` is (see `copy_elements`): seeing the rows as an
        // induction variable, loop strength reduction gave every element of the group a
        // 64-bit address of its own, live across the enclosing loop (the GEMM's producer,
        // 40 registers, spilled).
        let dr = self.e.mul_i32_const(&t, i64::from(group * threads / cols));
        let dr = self.rules.opaque_i32(&mut self.e, &dr);
        let dr64 = self.e.op(&format!("arith.extsi {dr} : i32 to i64"));
        let step = self.e.op(&format!("arith.muli {dr64}, {srow} : i64"));
        let ptr = self.e.op(&format!(
            "llvm.getelementptr {ptr}[{step}] : (!llvm.ptr<1>, i64) -> !llvm.ptr<1>, {}",
            mem_ty(d)
        ));
        self.copy_element_run(&copy, Some(srow.as_str()), ptr, Some(&dr), group);
        self.e.close("}");
    }

    /// Elements `k·threads` (k in `0..count`) past the thread's first of a
    /// [`StridedCopy`], moved `row` tile rows further on (none: 0); `ptr` is the global
    /// address of the first of them and `srow` the view's row stride (tiles only).
    fn copy_element_run(
        &mut self,
        c: &StridedCopy<'_>,
        srow: Option<&str>,
        mut ptr: String,
        row: Option<&str>,
        count: u32,
    ) {
        let (cols, d) = (c.tile.cols, c.tile.d);
        let (rb, cb) = (&c.first.0, &c.first.1);
        let (mut prev_dr, mut prev_dc) = (0i64, 0i64);
        for k in 0..count {
            let step = i64::from(k * c.threads);
            let (dr, dc) = (step / i64::from(cols), step % i64::from(cols));
            if k > 0 {
                // The step from the previous element: rows and columns times the strides.
                let mut delta: Option<String> = None;
                for (dd, s) in [(dr - prev_dr, srow), (dc - prev_dc, Some(&c.scol[..]))] {
                    let (Some(s), true) = (s, dd != 0) else {
                        continue;
                    };
                    let t = self.e.i64(dd);
                    let p = self.e.op(&format!("arith.muli {s}, {t} : i64"));
                    delta = Some(match delta {
                        None => p,
                        Some(a) => self.e.op(&format!("arith.addi {a}, {p} : i64")),
                    });
                }
                if let Some(delta) = delta {
                    ptr = self.e.op(&format!(
                        "llvm.getelementptr {ptr}[{delta}] : (!llvm.ptr<1>, i64) -> !llvm.ptr<1>, {}",
                        mem_ty(d)
                    ));
                }
            }
            (prev_dr, prev_dc) = (dr, dc);
            let dri = match row {
                None => self.e.i32(dr),
                Some(r) if dr == 0 => r.to_string(),
                Some(r) => {
                    let k = self.e.i32(dr);
                    self.e.add_i32(r, &k)
                }
            };
            let dci = self.e.i32(dc);
            let guard = c
                .tile_lim
                .as_ref()
                .map(|lim| self.e.op(&format!("arith.cmpi slt, {dri}, {lim} : i32")));
            // The comparison that repeats from element to element comes first, so that its
            // conjunction with `first_ok` is one value for all of them (and one predicate
            // register after ptxas): the column's where every element of the thread is in the
            // same column (threads a multiple of the columns), else the row's.
            let row_ok = c
                .row_lim
                .as_ref()
                .map(|lim| self.e.op(&format!("arith.cmpi slt, {dri}, {lim} : i32")));
            let col_lim = &c.col_lim;
            let col_ok = self
                .e
                .op(&format!("arith.cmpi slt, {dci}, {col_lim} : i32"));
            let (first, second) = if c.threads % cols == 0 {
                (Some(col_ok), row_ok)
            } else {
                (row_ok, Some(col_ok))
            };
            let mut pred = Some(c.first_ok.clone());
            for ok in [first, second].into_iter().flatten() {
                pred = Some(self.and_opt(pred, ok));
            }
            if let Some(gd) = &guard {
                pred = Some(self.and_opt(pred, gd.clone()));
            }
            let col = self.e.add_i32(cb, &dci);
            let sptr = if c.is_tile {
                let r = self.e.add_i32(rb, &dri);
                self.shared_tile_ptr(c.tile, &r, &col)
            } else {
                self.shared_vec_ptr(&c.tile.base, &col, d)
            };
            let ga = Access {
                pred,
                ptr: ptr.clone(),
            };
            let sa = Access {
                pred: guard,
                ptr: sptr,
            };
            self.move_elem(&ga, &sa, d, c.to_shared);
        }
    }
}

impl Lowerer<'_> {
    /// Element accesses of a row-layout tile whose row r is global row `rows[r]` (held in the
    /// rows vector's registers, which sit in the same lanes as the tile's rows), columns of tile
    /// column `j`. Negative row indices select no row; indices past the view are masked too.
    fn row_accesses(
        &mut self,
        op: &Op,
        g: Value,
        t_ty: &Type,
        idx: Value,
        j: Value,
    ) -> R<Vec<Access>> {
        let Type::Tile {
            dtype,
            rows,
            cols,
            layout: Layout::Row,
        } = *t_ty
        else {
            return Err(self.unsupported(op, "row gather/scatter of col-layout tiles"));
        };
        let gv = self.global(g);
        if gv.shape.len() != 2 {
            return Err(self.unsupported(op, "row gather/scatter on views of rank other than 2"));
        }
        let row_regs = self.regs(idx);
        let j = self.scalar(j);
        let col0 = self.e.mul_i32_const(&j, i64::from(cols));
        let mut out = Vec::new();
        let f = self.frag;
        for e in 0..f.tile_regs(rows, cols) {
            let (_, c) = f.tile_elem(Layout::Row, cols, e);
            let k = f.vector_reg_of_tile_reg(Layout::Row, tilekit_ir::VecAxis::Rows, cols, e);
            let r = row_regs[k as usize].clone();
            let c = self.e.affine(c, Some(&col0));
            out.push(self.element(&gv, &None, &[], &[r, c], dtype, None));
        }
        Ok(out)
    }

    fn gather_rows(&mut self, op: &Op) -> R<()> {
        let res = op.results[0];
        let t_ty = self.ty(res).clone();
        let d = t_ty.dtype().unwrap_or(ScalarType::F32);
        let acc = self.row_accesses(op, op.operands[0], &t_ty, op.operands[1], op.operands[2])?;
        let regs = acc.iter().map(|a| self.load_elem(a, d, 1)).collect();
        self.set(res, Lv::Regs(regs));
        Ok(())
    }

    fn scatter_rows(&mut self, op: &Op, add: bool) -> R<()> {
        let (g, t, idx, j) = (
            op.operands[0],
            op.operands[1],
            op.operands[2],
            op.operands[3],
        );
        let t_ty = self.ty(t).clone();
        let d = t_ty.dtype().unwrap_or(ScalarType::F32);
        let acc = self.row_accesses(op, g, &t_ty, idx, j)?;
        let xs = self.regs(t);
        if !add {
            for (a, v) in acc.iter().zip(&xs) {
                self.store_elem(a, v, d, 1);
            }
            return Ok(());
        }
        let kind = self.atomic_kind(op, d)?;
        for (a, v) in acc.iter().zip(&xs) {
            self.atomic_elem(a, v, d, kind);
        }
        Ok(())
    }

    fn atomic_kind(&self, op: &Op, d: ScalarType) -> R<&'static str> {
        match d {
            ScalarType::F32 | ScalarType::F16 | ScalarType::BF16 => Ok("fadd"),
            ScalarType::I32 | ScalarType::U32 | ScalarType::I64 => Ok("add"),
            other => Err(self.unsupported(op, format!("atomic add of {other} elements"))),
        }
    }

    fn atomic_elem(&mut self, a: &Access, v: &str, d: ScalarType, kind: &str) {
        let line = format!(
            "llvm.atomicrmw {kind} {}, {v} monotonic : !llvm.ptr<1>, {}",
            a.ptr,
            mty(d)
        );
        match &a.pred {
            None => {
                self.e.op(&line);
            }
            Some(p) => {
                self.e.open(&format!("scf.if {p} {{"));
                self.e.op(&line);
                self.e.close("}");
            }
        }
    }
}

/// Splits registers `0..elems.len()` (row and column of each, as functions of the lane) into
/// runs `(first register, length)` in register order: a run of length `L` (a power of two, at
/// most `max`) holds `L` consecutive registers at consecutive columns of one row in every lane,
/// starting at register `e` with `L | e` and at a column that is a multiple of `L` in every
/// lane (so an `L`-element access there is aligned to `L` elements where the row is).
fn contiguous_runs(
    elems: &[(layout::LaneAffine, layout::LaneAffine)],
    max: u32,
) -> Vec<(u32, u32)> {
    let fits = |e: usize, l: usize| {
        let (r, c) = elems[e];
        let l32 = l as u32;
        e % l == 0
            && e + l <= elems.len()
            && c.base % l32 == 0
            && c.per_g % l32 == 0
            && c.per_t % l32 == 0
            && (1..l).all(|i| {
                let (ri, ci) = elems[e + i];
                ri == r
                    && ci.per_g == c.per_g
                    && ci.per_t == c.per_t
                    && ci.base == c.base + i as u32
            })
    };
    let mut out = Vec::new();
    let mut e = 0;
    while e < elems.len() {
        let mut l = 1;
        while 2 * l <= max as usize && fits(e, 2 * l) {
            l *= 2;
        }
        out.push((e as u32, l as u32));
        e += l;
    }
    out
}

fn contains_swizzled(t: &Type) -> bool {
    match t {
        Type::SharedTile { swizzle, .. } => *swizzle != Swizzle::None,
        Type::SharedArray { elem, .. } => contains_swizzled(elem),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{contiguous_runs, copy_loop_group, COPY_GROUP_MIN};
    use crate::layout::{Frag, VecLayout};
    use tilekit_ir::Layout;

    /// Every run of every tile shape, layout and target, checked lane by lane against the
    /// fragment tables: its registers sit at consecutive columns of one row starting at a
    /// multiple of the run's length, and the runs cover the registers once, in order.
    #[test]
    fn runs_are_consecutive_aligned_columns_of_one_row_in_every_lane() {
        for f in [Frag::MmaSync, Frag::Mfma] {
            for layout in [Layout::Row, Layout::Col] {
                for (rows, cols) in [(16, 16), (16, 64), (32, 32), (64, 16)] {
                    let elems: Vec<_> = (0..f.tile_regs(rows, cols))
                        .map(|e| f.tile_elem(layout, cols, e))
                        .collect();
                    for max in [1, 2, 4, 8, 16] {
                        let runs = contiguous_runs(&elems, max);
                        let mut next = 0;
                        for &(e, l) in &runs {
                            assert_eq!(e, next);
                            assert!(l.is_power_of_two() && l <= max);
                            next = e + l;
                            for lane in 0..f.lanes() {
                                let (r0, c0) = elems[e as usize];
                                let (r0, c0) = (r0.at(f, lane), c0.at(f, lane));
                                assert_eq!(c0 % l, 0, "{f:?} {layout:?} lane {lane} reg {e}");
                                for i in 0..l {
                                    let (r, c) = elems[(e + i) as usize];
                                    assert_eq!((r.at(f, lane), c.at(f, lane)), (r0, c0 + i));
                                }
                            }
                        }
                        assert_eq!(next as usize, elems.len());
                    }
                }
            }
        }
    }

    /// The runs the fragment tables allow: pairs on NVIDIA's row layout (`a0,a1` at columns
    /// `2t, 2t+1`), fours on AMD's (columns `4t .. 4t+4`), single registers in col layouts
    /// (a register's neighbours sit in the next row), and for a cols vector the same as the
    /// row layout's columns.
    #[test]
    fn copy_loop_groups_span_whole_rows_and_divide_the_elements() {
        // The sm_90a GEMM's producer lane: 64×64 and 64×256 tiles among 32 lanes.
        assert_eq!(copy_loop_group(128, 32, 64), Some(8));
        assert_eq!(copy_loop_group(512, 32, 256), Some(8));
        // Wide rows: a group is a whole row of the thread's elements.
        assert_eq!(copy_loop_group(64, 32, 512), Some(16));
        // Narrow rows: any multiple of the group minimum spans whole rows.
        assert_eq!(copy_loop_group(48, 128, 16), Some(8));
        assert_eq!(copy_loop_group(60, 128, 32), Some(10));
        // Too few elements for two groups, or no group that divides them.
        assert_eq!(copy_loop_group(8, 32, 64), None);
        assert_eq!(copy_loop_group(24, 32, 512), None);
        for (iters, threads, cols) in [(128, 32, 64), (512, 32, 256), (96, 64, 128), (64, 256, 32)]
        {
            let u = copy_loop_group(iters, threads, cols).unwrap();
            assert!(u >= COPY_GROUP_MIN && iters % u == 0 && iters / u >= 2);
            assert_eq!((u * threads) % cols, 0, "{iters} {threads} {cols}");
        }
    }

    #[test]
    fn run_lengths_follow_the_fragment_layouts() {
        let longest = |f: Frag, layout: Layout| {
            let elems: Vec<_> = (0..f.tile_regs(32, 32))
                .map(|e| f.tile_elem(layout, 32, e))
                .collect();
            contiguous_runs(&elems, 8).iter().map(|r| r.1).max()
        };
        assert_eq!(longest(Frag::MmaSync, Layout::Row), Some(2));
        assert_eq!(longest(Frag::Mfma, Layout::Row), Some(4));
        assert_eq!(longest(Frag::MmaSync, Layout::Col), Some(1));
        assert_eq!(longest(Frag::Mfma, Layout::Col), Some(1));
        let zero = crate::layout::LaneAffine {
            base: 0,
            per_g: 0,
            per_t: 0,
        };
        for (f, want) in [(Frag::MmaSync, 2), (Frag::Mfma, 4)] {
            let elems: Vec<_> = (0..f.vector_regs(64, VecLayout::Cols))
                .map(|k| (zero, f.vector_elem(VecLayout::Cols, k)))
                .collect();
            let runs = contiguous_runs(&elems, 8);
            assert!(runs.iter().all(|r| r.1 == want), "{f:?}: {runs:?}");
        }
    }
}
