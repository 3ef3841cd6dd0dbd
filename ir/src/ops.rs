//! The operations of Tile IR: their kinds, attributes, scopes and text-format names.
//!
//! An [`Op`](crate::Op) is an [`OpKind`] (what it does, with its attributes), a [`Scope`] (who
//! executes it), operands, results and nested regions. The table of what each op takes and returns
//! is in the crate documentation; the verifier enforces it and the interpreter defines its meaning.

use std::fmt;

/// Who executes an op.
///
/// Register values are held per warp; an op at warp scope runs in every warp that reaches it, on
/// that warp's values. Ops above warp scope are collective: every warp of the warpgroup (4 warps)
/// or of the block takes part, and memory work is split among them. Above warp scope the IR does
/// not know the lane count (32 on NVIDIA, 64 on AMD).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Warp,
    Warpgroup,
    Block,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Warp => "warp",
            Scope::Warpgroup => "warpgroup",
            Scope::Block => "block",
        }
    }

    pub fn from_name(s: &str) -> Option<Scope> {
        [Scope::Warp, Scope::Warpgroup, Scope::Block]
            .into_iter()
            .find(|x| x.name() == s)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Grid dimension of `block_idx` and `grid_dim`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dim3 {
    X,
    Y,
    Z,
}

impl Dim3 {
    pub fn name(self) -> &'static str {
        match self {
            Dim3::X => "x",
            Dim3::Y => "y",
            Dim3::Z => "z",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Dim3::X => 0,
            Dim3::Y => 1,
            Dim3::Z => 2,
        }
    }
}

/// Elementwise functions of one argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryFn {
    Exp,
    Exp2,
    Log,
    Log2,
    Neg,
    Abs,
    Relu,
    Silu,
    /// GELU with the tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
    GeluTanh,
    Sqrt,
    Rsqrt,
    Recip,
    Tanh,
    Sigmoid,
    /// Bitwise (integers) or logical (bool) not.
    Not,
}

impl UnaryFn {
    pub const ALL: [UnaryFn; 15] = [
        UnaryFn::Exp,
        UnaryFn::Exp2,
        UnaryFn::Log,
        UnaryFn::Log2,
        UnaryFn::Neg,
        UnaryFn::Abs,
        UnaryFn::Relu,
        UnaryFn::Silu,
        UnaryFn::GeluTanh,
        UnaryFn::Sqrt,
        UnaryFn::Rsqrt,
        UnaryFn::Recip,
        UnaryFn::Tanh,
        UnaryFn::Sigmoid,
        UnaryFn::Not,
    ];

    pub fn name(self) -> &'static str {
        match self {
            UnaryFn::Exp => "exp",
            UnaryFn::Exp2 => "exp2",
            UnaryFn::Log => "log",
            UnaryFn::Log2 => "log2",
            UnaryFn::Neg => "neg",
            UnaryFn::Abs => "abs",
            UnaryFn::Relu => "relu",
            UnaryFn::Silu => "silu",
            UnaryFn::GeluTanh => "gelu_tanh",
            UnaryFn::Sqrt => "sqrt",
            UnaryFn::Rsqrt => "rsqrt",
            UnaryFn::Recip => "recip",
            UnaryFn::Tanh => "tanh",
            UnaryFn::Sigmoid => "sigmoid",
            UnaryFn::Not => "not",
        }
    }

    /// Functions defined only on floating-point elements.
    pub fn float_only(self) -> bool {
        !matches!(
            self,
            UnaryFn::Neg | UnaryFn::Abs | UnaryFn::Relu | UnaryFn::Not
        )
    }
}

/// Elementwise functions of two arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryFn {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Pow,
    /// Remainder with the sign of the dividend (integers only).
    Rem,
    And,
    Or,
    Xor,
    Shl,
    Shr,
}

impl BinaryFn {
    pub const ALL: [BinaryFn; 13] = [
        BinaryFn::Add,
        BinaryFn::Sub,
        BinaryFn::Mul,
        BinaryFn::Div,
        BinaryFn::Max,
        BinaryFn::Min,
        BinaryFn::Pow,
        BinaryFn::Rem,
        BinaryFn::And,
        BinaryFn::Or,
        BinaryFn::Xor,
        BinaryFn::Shl,
        BinaryFn::Shr,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BinaryFn::Add => "add",
            BinaryFn::Sub => "sub",
            BinaryFn::Mul => "mul",
            BinaryFn::Div => "div",
            BinaryFn::Max => "max",
            BinaryFn::Min => "min",
            BinaryFn::Pow => "pow",
            BinaryFn::Rem => "rem",
            BinaryFn::And => "and",
            BinaryFn::Or => "or",
            BinaryFn::Xor => "xor",
            BinaryFn::Shl => "shl",
            BinaryFn::Shr => "shr",
        }
    }

    /// Functions defined only on floats.
    pub fn float_only(self) -> bool {
        matches!(self, BinaryFn::Pow)
    }

    /// Functions defined only on integers (and bool, for the logical ones).
    pub fn int_only(self) -> bool {
        matches!(
            self,
            BinaryFn::Rem
                | BinaryFn::And
                | BinaryFn::Or
                | BinaryFn::Xor
                | BinaryFn::Shl
                | BinaryFn::Shr
        )
    }
}

/// Comparison predicates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpPred {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl CmpPred {
    pub const ALL: [CmpPred; 6] = [
        CmpPred::Lt,
        CmpPred::Le,
        CmpPred::Gt,
        CmpPred::Ge,
        CmpPred::Eq,
        CmpPred::Ne,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CmpPred::Lt => "lt",
            CmpPred::Le => "le",
            CmpPred::Gt => "gt",
            CmpPred::Ge => "ge",
            CmpPred::Eq => "eq",
            CmpPred::Ne => "ne",
        }
    }
}

/// Reduction functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceFn {
    Sum,
    Max,
    Min,
    /// The product (exact, rounded once to the dtype, like the sum).
    Prod,
}

impl ReduceFn {
    pub const ALL: [ReduceFn; 4] = [ReduceFn::Sum, ReduceFn::Max, ReduceFn::Min, ReduceFn::Prod];

    pub fn name(self) -> &'static str {
        match self {
            ReduceFn::Sum => "sum",
            ReduceFn::Max => "max",
            ReduceFn::Min => "min",
            ReduceFn::Prod => "prod",
        }
    }
}

/// What a reduction reduces over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceAxis {
    /// Each row of a tile to one element: a vector along `rows`.
    Row,
    /// Each column of a tile to one element: a vector along `cols`.
    Col,
    /// Every element of a tile or vector to one scalar.
    All,
}

/// Which tile axis a broadcast vector runs along.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BcastAxis {
    /// `t[r][c] op v[r]`: `v` has one element per row.
    Row,
    /// `t[r][c] op v[c]`: `v` has one element per column.
    Col,
}

/// The operand transpositions of a matrix multiply-accumulate `D = op(A)·op(B) + C`.
///
/// | variant | A       | B       | A layout | B layout |
/// |---------|---------|---------|----------|----------|
/// | `AB`    | M×K     | K×N     | row      | col      |
/// | `ABt`   | M×K     | N×K     | row      | row      |
/// | `AtB`   | K×M     | K×N     | col      | col      |
/// | `AtBt`  | K×M     | N×K     | col      | row      |
///
/// The layouts are those of register operands (at warp scope); they are what the tensor-core
/// fragment loads produce without a shuffle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MmaVariant {
    AB,
    ABt,
    AtB,
    AtBt,
}

impl MmaVariant {
    pub const ALL: [MmaVariant; 4] = [
        MmaVariant::AB,
        MmaVariant::ABt,
        MmaVariant::AtB,
        MmaVariant::AtBt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MmaVariant::AB => "ab",
            MmaVariant::ABt => "abt",
            MmaVariant::AtB => "atb",
            MmaVariant::AtBt => "atbt",
        }
    }

    pub fn a_transposed(self) -> bool {
        matches!(self, MmaVariant::AtB | MmaVariant::AtBt)
    }

    pub fn b_transposed(self) -> bool {
        matches!(self, MmaVariant::ABt | MmaVariant::AtBt)
    }
}

/// Which elements a mask replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MaskKind {
    /// Operands `(t, row_off, col_off)`: replaces element (r, c) when `col_off + c > row_off + r`
    /// (strictly above the diagonal: the causal mask).
    Causal,
    /// Operands `(t, row_off, col_off)`: replaces element (r, c) when `col_off + c < row_off + r`.
    AntiCausal,
    /// Operands `(t, row_off, bound)`: replaces every element of row r when `row_off + r >= bound`.
    Rows,
    /// Operands `(t, col_off, bound)`: replaces element (r, c) when `col_off + c >= bound`.
    Cols,
}

impl MaskKind {
    pub const ALL: [MaskKind; 4] = [
        MaskKind::Causal,
        MaskKind::AntiCausal,
        MaskKind::Rows,
        MaskKind::Cols,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MaskKind::Causal => "causal",
            MaskKind::AntiCausal => "anticausal",
            MaskKind::Rows => "rows",
            MaskKind::Cols => "cols",
        }
    }
}

/// What a global atomic that returns the old value does to each addressed element `e`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AtomicFn {
    /// `e ← max(e, x)` (for floats a NaN operand yields the other: IEEE maxNum).
    Max,
    /// `e ← min(e, x)` (IEEE minNum for floats).
    Min,
    /// `e ← x`.
    Exch,
}

impl AtomicFn {
    pub const ALL: [AtomicFn; 3] = [AtomicFn::Max, AtomicFn::Min, AtomicFn::Exch];

    pub fn name(self) -> &'static str {
        match self {
            AtomicFn::Max => "max",
            AtomicFn::Min => "min",
            AtomicFn::Exch => "exch",
        }
    }
}

/// A constant attribute.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Const {
    Float(f64),
    Int(i64),
    Bool(bool),
}

impl fmt::Display for Const {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // `{:?}` of an f64 is the shortest text that parses back to the same value, and always
            // has a '.', an exponent, `inf` or `NaN`, so it never reads as an integer.
            Const::Float(x) => write!(f, "{x:?}"),
            Const::Int(i) => write!(f, "{i}"),
            Const::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// What an op does, with its attributes.
#[derive(Clone, Debug, PartialEq)]
pub enum OpKind {
    // ---- scalars and indices ------------------------------------------------------------------
    /// `const[v] : T` — a scalar constant.
    Const(Const),
    /// `block_idx.x : i32` — this block's index in the grid.
    BlockIdx(Dim3),
    /// `grid_dim.x : i32` — the number of blocks in the grid.
    GridDim(Dim3),
    /// `warp_idx : i32` — this warp's index within the block.
    WarpIdx,
    /// `warpgroup_idx : i32` — this warp's warpgroup (warp_idx / 4).
    WarpgroupIdx,
    /// `num_warps : i32` — warps per block.
    NumWarps,
    /// `dim[k] (%g) : i32` — the runtime size of dimension k of a global view.
    GlobalDim(u32),

    // ---- creation -----------------------------------------------------------------------------
    /// `fill[v] : rt|rv` — every element set to a constant.
    Fill(f64),
    /// `splat (%s) : rt|rv` — every element set to a runtime scalar.
    Splat,
    /// `iota.rows : rt|rv` — element = its row index (tiles) or its index (vectors);
    /// `iota.cols : rt` — element = its column index.
    Iota(BcastAxis),

    // ---- elementwise --------------------------------------------------------------------------
    /// `map.f (%x)` on a scalar, tile or vector.
    Unary(UnaryFn),
    /// `map.f (%x, %y)`: tile-tile, vector-vector, scalar-scalar, or either side a scalar.
    Binary(BinaryFn),
    /// `cmp.p (%x, %y)` — elementwise comparison: on scalars a `bool`; on tiles or vectors (either
    /// side may be a scalar, broadcast) a `bool` mask of the same shape. NaN compares false
    /// except under `ne`.
    Cmp(CmpPred),
    /// `select (%c, %x, %y)` — `c ? x : y`: `c` a bool scalar (one choice for the whole value) or a
    /// bool mask choosing per element; `x` and `y` of the result's type or scalars broadcast.
    /// Only the chosen element is read (a NaN in the other never reaches the result).
    Select,
    /// `convert (%x) : T` — to another dtype (round to nearest even; saturating for fp8 and ints)
    /// and, for tiles, possibly another layout.
    Convert,
    /// `transpose (%t) : rt<T, C x R, layout>`.
    Transpose,
    /// `bitcast (%x) : U` — the same bits read as another dtype of the same width (f32, i32 and
    /// u32; bf16 and f16; i8, f8e4m3 and f8e5m2), keeping the kind, shape and layout or axis.
    Bitcast,

    // ---- broadcasts, reductions, masks --------------------------------------------------------
    /// `bcast_row.f (%t, %v)` / `bcast_col.f (%t, %v)`.
    Bcast(BcastAxis, BinaryFn),
    /// `reduce_row.f`, `reduce_col.f`, `reduce.f`.
    Reduce(ReduceAxis, ReduceFn),
    /// `scan_row.f (%t)` / `scan_col.f` — inclusive prefix along each row (column): element
    /// (r, c) is f over `t[r][0..=c]`; `exscan_row.f` / `exscan_col.f` exclude the element itself
    /// (f's identity first). Computed in f64 and rounded to the dtype per element.
    Scan {
        axis: BcastAxis,
        f: ReduceFn,
        exclusive: bool,
    },
    /// `mask.kind[v] (%t, %a, %b)` — elements selected by the kind are replaced by `v`.
    Mask(MaskKind, f64),
    /// `sort_row.desc (%t, %idx) : rt<T, R x C, L>, rt<i32, R x C, L>` / `sort_row.asc` —
    /// each row of `t` sorted, with the i32 payload `idx` (column indices, say) moved along.
    /// The order is total on (key, payload) pairs ([`sort_before`]): keys descending
    /// (ascending), equal keys by the lower payload first; NaN is above every number and equal
    /// to every NaN; −0 equals +0.
    SortRow { descending: bool },
    /// `topk_row[k] (%t, %idx, %best, %best_idx) : rt<T, R x 16, L>, rt<i32, R x 16, L>` — per
    /// row, the k pairs (1 ≤ k ≤ 16) that come first in `sort_row.desc` order among the row's
    /// (t, idx) pairs and the first k columns of (best, best_idx), in that order in columns
    /// 0..k; columns k..16 hold ([`topk_empty_key`] of T, `i32::MAX`). Feeding a result back
    /// as `best` merges top-k lists: the top-k of a row of many tiles is a loop over its
    /// tiles; `best` filled with the empty pair starts one.
    TopkRow(u32),

    // ---- tensor cores -------------------------------------------------------------------------
    /// `mma.v (%a, %b, %c) : rt<f32, M x N, row>` — `D = op(A)·op(B) + C` with f32 accumulation.
    /// At warpgroup scope B is a shared tile (the whole group's operand) and C/D are this warp's
    /// quarter of the rows; A is either a shared tile (the whole group's, 4× C's rows, of which
    /// this warp uses its quarter) or a register tile holding just this warp's rows.
    /// A and B are both bf16, both f16, both fp8, or both f32; f32 operands multiply in tf32
    /// (each element rounded to nearest, ties away, to 10 fraction bits first: see
    /// [`crate::tf32`]), as Triton's `tl.dot` does on f32 inputs.
    Mma(MmaVariant),
    /// `mma_async.v (%a, %b, %c) @warpgroup : rt<f32, M x N, row>` — the warpgroup mma of
    /// [`OpKind::Mma`] issued asynchronously (sm_90a's `wgmma.mma_async`): A and B are the
    /// group's shared tiles (op(A) 64×K for the group: M = 16 rows of C per warp), N ≤ 256.
    /// The mma joins the executing warp's open mma group. Its result is *in flight*: the only
    /// uses it may have before an `mma_wait` retires its group are as the C of another
    /// `mma_async` (accumulating into the same registers), as an `mma_wait` operand, and being
    /// carried (yielded, passed on); any other read is an error. Its shared operands must not
    /// be overwritten before that wait either.
    MmaAsync(MmaVariant),
    /// `mma_commit @warpgroup` — closes the executing warp's open mma group (an empty group when
    /// no `mma_async` joined it).
    MmaCommit,
    /// `mma_wait[n] (%acc…) @warpgroup : T…` — waits until every committed mma group of the
    /// executing warp except the `n` most recent has completed; the results are the operands
    /// (accumulators of `mma_async`), readable from here on. An operand whose mma is not in a
    /// completed group is an error.
    MmaWait(u32),

    // ---- memory -------------------------------------------------------------------------------
    /// `alloc_shared : T` — a shared-memory object (top level of a kernel body only).
    AllocShared,
    /// `shared.index (%arr, %i)` — element `i` of a shared array.
    SharedIndex,
    /// `load (%src, idx…)` — global or shared memory into a register value.
    Load,
    /// `store (%dst, %x, idx…)` — a register value into global or shared memory.
    Store,
    /// `copy (%dst, %src, idx…)` — between global and shared memory, split among the scope's warps.
    Copy,
    /// `copy_async (%dst, %src, %sem, idx…)` — global to shared; completes on the semaphore,
    /// counting the tile's bytes towards its expected byte count.
    CopyAsync,
    /// `copy_start (%dst, %src, idx…)` — starts an asynchronous global → shared copy (split among
    /// the scope's warps, masked as `copy` is) that joins the executing warp's open copy group.
    /// Its elements of dst are *in flight*: reading or overwriting them before a `copy_wait`
    /// that covers the group is an error.
    CopyStart,
    /// `copy_commit` — closes the executing warp's open copy group (an empty group when no
    /// `copy_start` joined it, which keeps group counts uniform in a pipeline's tail).
    CopyCommit,
    /// `copy_wait[n]` — every committed copy group of the executing warp except the `n` most
    /// recent has landed; other warps see the data after the next `barrier @block`.
    CopyWait(u32),
    /// `gather_rows (%g, %idx, %j) : rt` — row r of the tile is global row `idx[r]`, columns of
    /// tile column `j`.
    GatherRows,
    /// `scatter_rows (%g, %t, %idx, %j)` / `scatter_add_rows` — the inverse of `gather_rows`.
    ScatterRows { add: bool },
    /// `gather (%g, %i0, …, %i{n-1}) : rv<T, N, axis>` — element k is `g[i0[k], …, i{n-1}[k]]`
    /// for a rank-n view and n index vectors `rv<i32, N, axis>` (e.g. `logits[r, target[r]]`);
    /// an element whose indices fall outside the view reads 0, as a load past a view's end does.
    Gather,
    /// `table_view (%table, %i) : gl<T, r[, mut]>` — entry `i` of a device-side table of
    /// tensors as a global view. `table` is a `gl<i64, 2>` whose row e is
    /// `(address, n_0, …, n_{r-1})`: the entry's first element and its row-major contiguous
    /// shape (the table is built at launch from a list of tensors; see `ir::interp::TensorTable`).
    /// The view is bounded by the entry's shape as a launched view is, so loads past its end
    /// read 0 and stores there are dropped. `i` must lie in `0..entries`; the interpreter
    /// reports one outside, the lowerings give an empty view (every access masked).
    TableView,
    /// `atomic_add (%g, %x, idx…)` — add a scalar (element indices), a register vector (chunk
    /// index: elements `idx·len ..` of the last dimension) or a tile (tile coordinates); a
    /// vector's or tile's elements outside the view are skipped. Adds by different warps and
    /// blocks to one element are never a race.
    AtomicAdd,
    /// `atomic_max (%g, %x, idx…) : T` (also `atomic_min`, `atomic_exch`) — atomically updates
    /// each addressed element (a scalar at element indices, a register vector at a chunk index,
    /// or a register tile at tile coordinates) and returns the elements' old values (a vector's
    /// or tile's elements outside the view are left alone and read 0). Each element's update is indivisible; updates of one element by
    /// different warps and blocks take effect one after another, in some order.
    AtomicRmw(AtomicFn),
    /// `atomic_cas (%g, %cmp, %x, idx…) : T` — compare-and-swap: where an addressed element's
    /// bits equal `cmp`'s, it becomes `x`; returns the old values, as `atomic_max` does.
    AtomicCas,

    // ---- random numbers and checks ------------------------------------------------------------
    /// `philox (%k0, %k1, %c0, %c1, %c2, %c3) : T, T, T, T` — the Philox-4x32-10 counter-based
    /// generator (Salmon et al., SC'11): the four 32-bit output words for key `(k0, k1)` (u32
    /// scalars) and counter `(c0, c1, c2, c3)`, each counter word a u32 scalar or a u32 register
    /// tile or vector, elementwise (scalars broadcast); the results have the counters' type.
    Philox,
    /// `device_assert[@"message"] (%c)` — a run stops with an error naming the message, the
    /// block and the warp (lane on GPUs) where `c` (a bool scalar, or a bool tile or vector:
    /// every element) is false. On NVIDIA GPUs the failing lane first writes an
    /// [`assert_record`](crate::assert_record) to host-mapped memory.
    DeviceAssert(String),

    // ---- synchronization ----------------------------------------------------------------------
    /// `barrier @block` — every warp of the block waits until all have arrived.
    Barrier,
    /// `setmaxnreg.inc[n] @warpgroup` / `setmaxnreg.dec[n] @warpgroup` — register
    /// reallocation between warpgroups (sm_90a's `setmaxnreg`, PTX ISA "setmaxnreg"): each
    /// thread of the executing warpgroup asks for at least (`inc`) or gives up registers down to
    /// at most (`dec`) `n` registers, a multiple of 8 in [24, 256]. Values are unchanged; every
    /// warp of the warpgroup executes it (the instruction is `.sync.aligned`), which the
    /// interpreter checks. A warp-specialized kernel lowers the producer's count and raises the
    /// consumers'. Targets without it reject the op (see the lowerings).
    SetMaxNReg { inc: bool, count: u32 },
    /// `sem.init[n] (%s)` — the semaphore expects n arrivals per phase; phase 0 begins.
    SemInit(u32),
    /// `sem.arrive (%s)` — one arrival (by the executing warp) on the current phase.
    SemArrive,
    /// `sem.expect[bytes] (%s)` — the current phase also waits for `bytes` of async copies.
    SemExpect(u32),
    /// `sem.wait (%s, %parity)` — wait until the phase with this parity (0 or 1) has completed.
    SemWait,

    // ---- control flow -------------------------------------------------------------------------
    /// `for (%lo, %hi, %step, init…) (%i, carried…) {…} : T…`
    For,
    /// `if (%c) {…} {…} : T…`
    If,
    /// `while (init…) (args…) {… condition} (args…) {… yield} : T…`
    While,
    /// `yield (v…)` — ends a `for` body, an `if` branch, or a `while` body.
    Yield,
    /// `condition (%c, v…)` — ends a `while`'s condition region.
    Condition,
    /// `return (v…)` — ends a function body.
    Return,
    /// `call[@f] (args…) : T…`
    Call(String),
}

impl OpKind {
    /// The op's name in the text format (without attributes).
    pub fn name(&self) -> String {
        match self {
            OpKind::Const(_) => "const".into(),
            OpKind::BlockIdx(d) => format!("block_idx.{}", d.name()),
            OpKind::GridDim(d) => format!("grid_dim.{}", d.name()),
            OpKind::WarpIdx => "warp_idx".into(),
            OpKind::WarpgroupIdx => "warpgroup_idx".into(),
            OpKind::NumWarps => "num_warps".into(),
            OpKind::GlobalDim(_) => "dim".into(),
            OpKind::Fill(_) => "fill".into(),
            OpKind::Splat => "splat".into(),
            OpKind::Iota(BcastAxis::Row) => "iota.rows".into(),
            OpKind::Iota(BcastAxis::Col) => "iota.cols".into(),
            OpKind::Unary(f) => format!("map.{}", f.name()),
            OpKind::Binary(f) => format!("map.{}", f.name()),
            OpKind::Cmp(p) => format!("cmp.{}", p.name()),
            OpKind::Select => "select".into(),
            OpKind::Convert => "convert".into(),
            OpKind::Transpose => "transpose".into(),
            OpKind::Bitcast => "bitcast".into(),
            OpKind::Bcast(BcastAxis::Row, f) => format!("bcast_row.{}", f.name()),
            OpKind::Bcast(BcastAxis::Col, f) => format!("bcast_col.{}", f.name()),
            OpKind::Reduce(ReduceAxis::Row, f) => format!("reduce_row.{}", f.name()),
            OpKind::Reduce(ReduceAxis::Col, f) => format!("reduce_col.{}", f.name()),
            OpKind::Reduce(ReduceAxis::All, f) => format!("reduce.{}", f.name()),
            OpKind::Scan { axis, f, exclusive } => format!(
                "{}scan_{}.{}",
                if *exclusive { "ex" } else { "" },
                if *axis == BcastAxis::Row {
                    "row"
                } else {
                    "col"
                },
                f.name()
            ),
            OpKind::SortRow { descending } => {
                format!("sort_row.{}", if *descending { "desc" } else { "asc" })
            }
            OpKind::TopkRow(_) => "topk_row".into(),
            OpKind::Mask(k, _) => format!("mask.{}", k.name()),
            OpKind::Mma(v) => format!("mma.{}", v.name()),
            OpKind::MmaAsync(v) => format!("mma_async.{}", v.name()),
            OpKind::MmaCommit => "mma_commit".into(),
            OpKind::MmaWait(_) => "mma_wait".into(),
            OpKind::AllocShared => "alloc_shared".into(),
            OpKind::SharedIndex => "shared.index".into(),
            OpKind::Load => "load".into(),
            OpKind::Store => "store".into(),
            OpKind::Copy => "copy".into(),
            OpKind::CopyAsync => "copy_async".into(),
            OpKind::CopyStart => "copy_start".into(),
            OpKind::CopyCommit => "copy_commit".into(),
            OpKind::CopyWait(_) => "copy_wait".into(),
            OpKind::GatherRows => "gather_rows".into(),
            OpKind::ScatterRows { add: false } => "scatter_rows".into(),
            OpKind::ScatterRows { add: true } => "scatter_add_rows".into(),
            OpKind::Gather => "gather".into(),
            OpKind::TableView => "table_view".into(),
            OpKind::AtomicAdd => "atomic_add".into(),
            OpKind::AtomicRmw(f) => format!("atomic_{}", f.name()),
            OpKind::AtomicCas => "atomic_cas".into(),
            OpKind::Philox => "philox".into(),
            OpKind::DeviceAssert(_) => "device_assert".into(),
            OpKind::Barrier => "barrier".into(),
            OpKind::SetMaxNReg { inc: true, .. } => "setmaxnreg.inc".into(),
            OpKind::SetMaxNReg { inc: false, .. } => "setmaxnreg.dec".into(),
            OpKind::SemInit(_) => "sem.init".into(),
            OpKind::SemArrive => "sem.arrive".into(),
            OpKind::SemExpect(_) => "sem.expect".into(),
            OpKind::SemWait => "sem.wait".into(),
            OpKind::For => "for".into(),
            OpKind::If => "if".into(),
            OpKind::While => "while".into(),
            OpKind::Yield => "yield".into(),
            OpKind::Condition => "condition".into(),
            OpKind::Return => "return".into(),
            OpKind::Call(_) => "call".into(),
        }
    }

    /// The op's attribute, as the text format prints it inside `[...]`, if it has one.
    pub fn attr_text(&self) -> Option<String> {
        match self {
            OpKind::Const(c) => Some(c.to_string()),
            OpKind::GlobalDim(k) => Some(k.to_string()),
            OpKind::Fill(v) | OpKind::Mask(_, v) => Some(Const::Float(*v).to_string()),
            OpKind::SemInit(n)
            | OpKind::SemExpect(n)
            | OpKind::CopyWait(n)
            | OpKind::MmaWait(n)
            | OpKind::SetMaxNReg { count: n, .. } => Some(n.to_string()),
            OpKind::TopkRow(k) => Some(k.to_string()),
            OpKind::Call(f) => Some(format!("@{f}")),
            _ => None,
        }
    }

    /// Whether the op ends a region.
    pub fn is_terminator(&self) -> bool {
        matches!(self, OpKind::Yield | OpKind::Condition | OpKind::Return)
    }

    /// The scopes at which the op may run.
    pub fn allowed_scopes(&self) -> &'static [Scope] {
        const WARP: &[Scope] = &[Scope::Warp];
        const BLOCK: &[Scope] = &[Scope::Block];
        const ALL: &[Scope] = &[Scope::Warp, Scope::Warpgroup, Scope::Block];
        const WARP_WG: &[Scope] = &[Scope::Warp, Scope::Warpgroup];
        const WARPGROUP: &[Scope] = &[Scope::Warpgroup];
        match self {
            OpKind::MmaAsync(_)
            | OpKind::MmaCommit
            | OpKind::MmaWait(_)
            | OpKind::SetMaxNReg { .. } => WARPGROUP,
            OpKind::Mma(_) | OpKind::Load | OpKind::Store => WARP_WG,
            OpKind::Copy | OpKind::CopyStart | OpKind::CopyCommit | OpKind::CopyWait(_) => ALL,
            OpKind::AllocShared | OpKind::Barrier => BLOCK,
            _ => WARP,
        }
    }
}

/// Whether the pair (x, i) comes before (y, j) in the order of `sort_row` (descending or
/// ascending keys; equal keys by the lower payload): NaN is above every number and equal to
/// every NaN, −0 equals +0. The order is total on pairs with distinct payloads, so any
/// sorting network gives the one result.
pub fn sort_before(descending: bool, (x, i): (f64, i64), (y, j): (f64, i64)) -> bool {
    let (xn, yn) = (x.is_nan(), y.is_nan());
    let tie = (xn && yn) || x == y;
    if tie {
        return i < j;
    }
    let above = (xn && !yn) || (!yn && x > y);
    above == descending
}

/// The key of an empty `topk_row` entry for dtype `d`: −∞ for floats, the lowest integer
/// otherwise. Its payload is `i32::MAX`, so an empty entry comes after every real pair but one
/// equal to it.
pub fn topk_empty_key(d: crate::types::ScalarType) -> f64 {
    crate::numeric::int_range(d).0
}
