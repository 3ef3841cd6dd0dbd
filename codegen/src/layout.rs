//! Which lane holds which element: the register fragment layouts of NVIDIA tensor cores and AMD
//! matrix cores, the distribution of register vectors, `ldmatrix` addressing, MFMA issue plans
//! and shared-memory swizzles, as data.
//!
//! A warp (NVIDIA, 32 lanes) or wavefront (AMD CDNA, 64 lanes) holds a register tile `R×C` as
//! `R/16 · C/16` subtiles of 16×16, in row-major subtile order; each lane holds
//! [`Frag::subtile_regs`] elements of each subtile (8 on NVIDIA, 4 on AMD), subtile `s` at
//! registers `n·s .. n·s + n`. Every coordinate is a [`LaneAffine`] of two lane-dependent parts
//! `g` and `t`, whose meaning is the target's ([`Frag::g`], [`Frag::t`]).
//!
//! ## NVIDIA: `mma.sync` fragments ([`Frag::MmaSync`])
//!
//! Within a 16×16 subtile, with `g = lane / 4` ("groupID") and `t = lane % 4`
//! ("threadID_in_group"), the **row** layout is the A-operand fragment of
//! `mma.m16n8k16` with `.bf16`/`.f16` inputs (PTX ISA, *Matrix Fragments for `mma.m16n8k16` with
//! floating point type*, figure "MMA .m16n8k16 fragment layout for matrix A"):
//! `a0,a1` at row `g`, columns `2t, 2t+1`; `a2,a3` at row `g+8`; `a4,a5` at row `g`, columns
//! `2t+8, 2t+9`; `a6,a7` at row `g+8`, columns `2t+8, 2t+9`. The same table is the accumulator
//! fragment (figure "MMA .m16n8k16 fragment layout for accumulator matrix C/D": `c0,c1` at row
//! `g`, columns `2t, 2t+1`; `c2,c3` at row `g+8`) of the two `n8` halves side by side: registers
//! `0..4` are the left half's `c0..c3`, registers `4..8` the right half's.
//!
//! The **col** layout is the transpose: register `e` of a col tile sits at `(c, r)` where `(r, c)`
//! is its position in the row layout. That is the B-operand fragment (figure "MMA .m16n8k16
//! fragment layout for matrix B": `b0,b1` at rows `2t, 2t+1`, column `g`; `b2,b3` at rows
//! `2t+8, 2t+9`) with the left `n8` half in registers `{0,1,4,5}` and the right in `{2,3,6,7}`.
//! Because each layout is the other's transpose, a row tile and the col tile of its transpose
//! hold the same registers, which is why all four `mma` variants are one instruction.
//!
//! ## AMD CDNA: MFMA fragments ([`Frag::Mfma`])
//!
//! `v_mfma_f32_16x16x16_bf16` (`v_mfma_f32_16x16x16bf16_1k` on gfx90a; AMD CDNA3 ISA, *Matrix
//! Arithmetic Instructions*, and the AMD Matrix Instruction Calculator) spreads its operands over
//! the 64 lanes as: lane `l` holds `A[l%16][4·(l/16) + i]` and `B[4·(l/16) + i][l%16]` for
//! `i = 0..4`, and the result `D[4·(l/16) + i][l%16]`. With `g = lane % 16` and
//! `t = lane / 16`, the **row** layout here is the A-operand pattern: register `i` of a subtile at
//! row `g`, column `4t + i`. The accumulator pattern is its transpose, so the lowering computes
//! `Dᵀ = Bᵀ·Aᵀ` ([`mfma_steps`]): a row tile (M×K) read as the instruction's B operand is Aᵀ in
//! the B pattern, a col tile (K×N, the transpose of the row layout) read as its A operand is
//! Bᵀ in the A pattern, and the result Dᵀ in the accumulator pattern is D in the row layout.
//! So, as on NVIDIA, the row layout is both the A operand and the accumulator, the col layout
//! the B operand, and a row tile and the col tile of its transpose hold the same registers.
//! `v_mfma_f32_16x16x32_bf16` (gfx950, CDNA4 ISA) takes 8 elements per lane, `k = 8·(l/16) + i`:
//! two consecutive k-subtiles of 4 feed it, which permutes k identically in A and B and so
//! computes the same sum.

use tilekit_ir::{Layout, Swizzle, VecAxis};

/// Lanes per warp on NVIDIA GPUs.
pub const WARP_LANES: u32 = 32;
/// Elements of one 16×16 subtile held by one lane on NVIDIA GPUs.
pub const SUBTILE_REGS: u32 = 8;

/// A coordinate that depends on the lane: `base + per_g·g + per_t·t`, with `g` and `t` the
/// target's lane parts ([`Frag::g`], [`Frag::t`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LaneAffine {
    pub base: u32,
    pub per_g: u32,
    pub per_t: u32,
}

impl LaneAffine {
    /// The coordinate's value in lane `lane` of a target with fragments `frag`.
    pub fn at(self, frag: Frag, lane: u32) -> u32 {
        self.base + self.per_g * frag.g(lane) + self.per_t * frag.t(lane)
    }
}

/// The register fragment geometry of a target's matrix instructions: lane count, how a lane
/// splits into `g` and `t`, and where each register of a tile or vector sits (see the module
/// documentation for the sources).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Frag {
    /// NVIDIA, 32 lanes: `mma.sync.m16n8k16` fragments; `g = lane / 4`, `t = lane % 4`.
    MmaSync,
    /// AMD CDNA wave64: MFMA 16×16 fragments; `g = lane % 16`, `t = lane / 16`.
    Mfma,
}

impl Frag {
    /// Lanes per warp (wavefront).
    pub fn lanes(self) -> u32 {
        match self {
            Frag::MmaSync => WARP_LANES,
            Frag::Mfma => 64,
        }
    }

    /// Elements of one 16×16 subtile held by one lane.
    pub fn subtile_regs(self) -> u32 {
        256 / self.lanes()
    }

    /// The lane's `g` part: the row of its first element in a row-layout subtile.
    pub fn g(self, lane: u32) -> u32 {
        match self {
            Frag::MmaSync => lane / 4,
            Frag::Mfma => lane % 16,
        }
    }

    /// The lane's `t` part: which columns of a row-layout subtile it holds.
    pub fn t(self, lane: u32) -> u32 {
        match self {
            Frag::MmaSync => lane % 4,
            Frag::Mfma => lane / 16,
        }
    }

    /// Row and column of register `e` (`0..subtile_regs`) of a 16×16 subtile in the row layout.
    pub fn row_subtile(self, e: u32) -> (LaneAffine, LaneAffine) {
        match self {
            Frag::MmaSync => {
                let row = LaneAffine {
                    base: 8 * ((e / 2) % 2),
                    per_g: 1,
                    per_t: 0,
                };
                let col = LaneAffine {
                    base: (e % 2) + 8 * (e / 4),
                    per_g: 0,
                    per_t: 2,
                };
                (row, col)
            }
            Frag::Mfma => {
                let row = LaneAffine {
                    base: 0,
                    per_g: 1,
                    per_t: 0,
                };
                let col = LaneAffine {
                    base: e,
                    per_g: 0,
                    per_t: 4,
                };
                (row, col)
            }
        }
    }

    /// Row and column of register `e` (any, `0..rows·cols/lanes`) of a register tile of `cols`
    /// columns.
    pub fn tile_elem(self, layout: Layout, cols: u32, e: u32) -> (LaneAffine, LaneAffine) {
        let n = self.subtile_regs();
        let s = e / n;
        let (si, sj) = (s / (cols / 16), s % (cols / 16));
        let (r, c) = self.row_subtile(e % n);
        let (mut r, mut c) = match layout {
            Layout::Row => (r, c),
            Layout::Col => (c, r),
        };
        r.base += 16 * si;
        c.base += 16 * sj;
        (r, c)
    }

    /// Registers per lane of a register tile.
    pub fn tile_regs(self, rows: u32, cols: u32) -> u32 {
        rows * cols / self.lanes()
    }

    /// Registers per lane of a register vector of `len` elements.
    pub fn vector_regs(self, len: u32, l: VecLayout) -> u32 {
        match (self, l) {
            (Frag::MmaSync, VecLayout::Rows) => 2 * (len / 16),
            (Frag::MmaSync, VecLayout::Cols) => 4 * (len / 16),
            (Frag::Mfma, VecLayout::Rows) => len / 16,
            (Frag::Mfma, VecLayout::Cols) => 4 * (len / 16),
            (_, VecLayout::Lanes) => len.div_ceil(self.lanes()),
        }
    }

    /// Element index of register `k` of a vector, as a function of the lane.
    pub fn vector_elem(self, l: VecLayout, k: u32) -> LaneAffine {
        match (self, l) {
            (Frag::MmaSync, VecLayout::Rows) => LaneAffine {
                base: 16 * (k / 2) + 8 * (k % 2),
                per_g: 1,
                per_t: 0,
            },
            (Frag::MmaSync, VecLayout::Cols) => LaneAffine {
                base: 16 * (k / 4) + (k % 2) + 8 * ((k / 2) % 2),
                per_g: 0,
                per_t: 2,
            },
            (Frag::MmaSync, VecLayout::Lanes) => LaneAffine {
                base: WARP_LANES * k,
                per_g: 4,
                per_t: 1,
            },
            (Frag::Mfma, VecLayout::Rows) => LaneAffine {
                base: 16 * k,
                per_g: 1,
                per_t: 0,
            },
            (Frag::Mfma, VecLayout::Cols) => LaneAffine {
                base: 16 * (k / 4) + k % 4,
                per_g: 0,
                per_t: 4,
            },
            (Frag::Mfma, VecLayout::Lanes) => LaneAffine {
                base: 64 * k,
                per_g: 1,
                per_t: 16,
            },
        }
    }

    /// Whether a lane is the one that writes a replicated vector element (the others hold
    /// copies): `t == 0` for a rows vector, `g == 0` for a cols vector, every lane for `Lanes`.
    pub fn vector_owner(self, l: VecLayout, lane: u32) -> bool {
        match l {
            VecLayout::Rows => self.t(lane) == 0,
            VecLayout::Cols => self.g(lane) == 0,
            VecLayout::Lanes => true,
        }
    }

    /// The shuffle masks that combine a whole vector's partial reductions: across the lanes
    /// that hold different elements.
    pub fn vector_reduce_masks(self, l: VecLayout) -> &'static [u32] {
        match (self, l) {
            (Frag::MmaSync, VecLayout::Rows) => &[4, 8, 16],
            (Frag::MmaSync, VecLayout::Cols) => &[1, 2],
            (Frag::MmaSync, VecLayout::Lanes) => &[1, 2, 4, 8, 16],
            (Frag::Mfma, VecLayout::Rows) => &[1, 2, 4, 8],
            (Frag::Mfma, VecLayout::Cols) => &[16, 32],
            (Frag::Mfma, VecLayout::Lanes) => &[1, 2, 4, 8, 16, 32],
        }
    }

    /// The xor masks that join every lane of a warp (a tile's elements sit in one lane each).
    pub fn all_lanes_masks(self) -> &'static [u32] {
        match self {
            Frag::MmaSync => &[1, 2, 4, 8, 16],
            Frag::Mfma => &[1, 2, 4, 8, 16, 32],
        }
    }

    /// The register of a vector along `axis` (distributed as [`tile_vector_layout`] says) that
    /// holds the row (`Rows`) or column (`Cols`) of tile register `e`, for a tile of `cols`
    /// columns.
    pub fn vector_reg_of_tile_reg(self, tile: Layout, axis: VecAxis, cols: u32, e: u32) -> u32 {
        let n = self.subtile_regs();
        let s = e / n;
        let (si, sj) = (s / (cols / 16), s % (cols / 16));
        let i = e % n;
        // The subtile index along the vector, and whether the vector's coordinate is the
        // subtile's row-layout row (indexed by g) or column (indexed by t).
        let sub = if axis == VecAxis::Rows { si } else { sj };
        match (self, tile_vector_layout(tile, axis)) {
            (Frag::MmaSync, VecLayout::Rows) => 2 * sub + (i / 2) % 2,
            (Frag::MmaSync, _) => 4 * sub + (i % 2) + 2 * (i / 4),
            (Frag::Mfma, VecLayout::Rows) => sub,
            (Frag::Mfma, _) => 4 * sub + i,
        }
    }

    /// The butterfly (xor) lane masks that combine the lanes holding parts of the same vector
    /// element of a `Rows` or `Cols` distribution. NVIDIA: a `Rows` element (indexed by `g`)
    /// is spread over the four lanes of a group (`t`: masks 1, 2), a `Cols` element over the
    /// eight groups (`g`: masks 4, 8, 16). AMD: a `Rows` element over the four `t` (masks 16,
    /// 32), a `Cols` element over the sixteen `g` (masks 1, 2, 4, 8). `Lanes` elements sit in
    /// one lane each.
    pub fn reduce_masks(self, l: VecLayout) -> &'static [u32] {
        match (self, l) {
            (Frag::MmaSync, VecLayout::Rows) => &[1, 2],
            (Frag::MmaSync, VecLayout::Cols) => &[4, 8, 16],
            (Frag::Mfma, VecLayout::Rows) => &[16, 32],
            (Frag::Mfma, VecLayout::Cols) => &[1, 2, 4, 8],
            (_, VecLayout::Lanes) => &[],
        }
    }
}

/// How a register vector's elements are spread over a warp's lanes.
///
/// A vector that meets tiles (broadcasts, row/column reductions, gathers) has the distribution
/// of its axis: a `rows` vector as the rows of a row-layout tile (on NVIDIA each lane holds rows
/// `g` and `g+8` of every 16, replicated over `t`; on AMD row `g` of every 16, replicated over
/// `t`), a `cols` vector as its columns (NVIDIA: columns `2t, 2t+1, 2t+8, 2t+9` of every 16; AMD:
/// columns `4t .. 4t+4`; replicated over `g`), so broadcasts and reductions need no data
/// movement beyond the reductions' shuffles. A vector that only meets other vectors and memory
/// (elementwise kernels: optimizers, activations) is spread over the lanes without replicas:
/// element `lanes·k + lane` in register `k` (`Lanes`), so consecutive lanes touch consecutive
/// elements and a lane holds `len / lanes` registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VecLayout {
    Rows,
    Cols,
    Lanes,
}

impl From<VecAxis> for VecLayout {
    fn from(a: VecAxis) -> VecLayout {
        match a {
            VecAxis::Rows => VecLayout::Rows,
            VecAxis::Cols => VecLayout::Cols,
        }
    }
}

/// The distribution of a vector that meets a tile of layout `tile` along `axis` (one element per
/// row, or per column): a col tile's rows sit in the lanes of a row tile's columns.
pub fn tile_vector_layout(tile: Layout, axis: VecAxis) -> VecLayout {
    match (tile, axis) {
        (Layout::Row, VecAxis::Rows) | (Layout::Col, VecAxis::Cols) => VecLayout::Rows,
        (Layout::Row, VecAxis::Cols) | (Layout::Col, VecAxis::Rows) => VecLayout::Cols,
    }
}

/// The order in which an `ldmatrix.x4` delivers a 16×16 subtile's four register pairs (tile
/// registers `2p, 2p+1`, one 8×8 matrix each) into its four consecutive destination registers,
/// chosen for the instruction that consumes the tile.
///
/// SASS `HMMA.16816` reads its A operand from four consecutive registers (`a0..a7` = tile
/// registers 0..8 in order) and each B operand from two consecutive registers (`b0..b3` =
/// [`B_HALF_REGS`]: pairs 0 and 2 for the left `n8` half, 1 and 3 for the right), while
/// `LDSM.x4` writes four consecutive registers. Delivering a B tile in the A order would make
/// ptxas copy registers 0 and 2 (and 1 and 3) together before every `mma`; loading each
/// operand in the order it is consumed makes the copies unnecessary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LdmatrixOrder {
    /// Pairs 0, 1, 2, 3: the A-operand fragment (and any tile not consumed as a B operand).
    AOperand,
    /// Pairs 0, 2, 1, 3: the left `n8` half's `b0..b3`, then the right half's.
    BOperand,
}

impl LdmatrixOrder {
    /// The tile register pair `p` (registers `2p, 2p+1`) that destination register `q` holds.
    pub fn pairs(self) -> [u32; 4] {
        match self {
            LdmatrixOrder::AOperand => [0, 1, 2, 3],
            LdmatrixOrder::BOperand => [0, 2, 1, 3],
        }
    }
}

/// `ldmatrix.sync.aligned.m8n8.x4` addressing for one 16×16 subtile of 16-bit elements: the row
/// and the first column (of 8 contiguous) whose address lane `lane` supplies.
///
/// PTX ISA, *Warp-level matrix load instruction: ldmatrix*: lanes `8q .. 8q+8` give the row
/// addresses of matrix `q`, and destination register `q` receives matrix `q`, lane `l` holding
/// row `l/4`, elements `2(l%4), 2(l%4)+1` (with `.trans`: column `l/4`, rows `2(l%4), 2(l%4)+1`).
/// Matrix `q` is the quadrant of register pair `p = order.pairs()[q]`: in the row layout pair
/// `p` covers rows `8(p%2) ..`, columns `8(p/2) ..`; in the col layout (loaded with `.trans`)
/// rows `8(p/2) ..`, columns `8(p%2) ..` (see [`Frag::row_subtile`]).
pub fn ldmatrix_source(layout: Layout, order: LdmatrixOrder, lane: u32) -> (u32, u32) {
    let p = order.pairs()[(lane / 8) as usize];
    let r = lane % 8;
    match layout {
        Layout::Row => (r + 8 * (p % 2), 8 * (p / 2)),
        Layout::Col => (r + 8 * (p / 2), 8 * (p % 2)),
    }
}

/// Registers of a B subtile (col layout, or row layout of the transpose) that form the
/// `b0..b3` fragment of its left (`0`) and right (`1`) `n8` half.
pub const B_HALF_REGS: [[u32; 4]; 2] = [[0, 1, 4, 5], [2, 3, 6, 7]];

/// One `mma.sync.aligned.m16n8k16` of a warp-scope `mma`: which of this lane's registers of A, B
/// and C (indices into each tile's registers) are its `a0..a7`, `b0..b3` and `c0..c3`/`d0..d3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmaStep {
    pub a: [u32; 8],
    pub b: [u32; 4],
    pub c: [u32; 4],
}

/// Where op(A)'s and op(B)'s 16×16 subtiles sit in the stored operands of an mma variant
/// (subtiles numbered row-major in each stored tile), and the reduction length K.
struct Operands {
    k: u32,
    a_cols: u32,
    b_cols: u32,
    a_transposed: bool,
    b_transposed: bool,
}

impl Operands {
    fn new(variant: tilekit_ir::MmaVariant, (a_rows, a_cols): (u32, u32), b_cols: u32) -> Operands {
        let a_transposed = variant.a_transposed();
        Operands {
            k: if a_transposed { a_rows } else { a_cols },
            a_cols,
            b_cols,
            a_transposed,
            b_transposed: variant.b_transposed(),
        }
    }

    /// The stored subtile of op(A)'s subtile `(mi, ki)`.
    fn a_sub(&self, mi: u32, ki: u32) -> u32 {
        if self.a_transposed {
            ki * (self.a_cols / 16) + mi
        } else {
            mi * (self.a_cols / 16) + ki
        }
    }

    /// The stored subtile of op(B)'s subtile `(ki, nj)`.
    fn b_sub(&self, ki: u32, nj: u32) -> u32 {
        if self.b_transposed {
            nj * (self.b_cols / 16) + ki
        } else {
            ki * (self.b_cols / 16) + nj
        }
    }
}

/// The `mma.sync` instructions of `D = op(A)·op(B) + C`, in issue order (k innermost, so each
/// accumulator sees k in increasing order as the IR defines), for A stored `a_rows × a_cols`,
/// B stored `b_rows × b_cols` and C `m × n`, with the layouts that `variant` takes.
///
/// op(A)'s subtile `(mi, ki)` is A's stored subtile `(mi, ki)` (row A) or `(ki, mi)` (col A: the
/// col layout is the row layout transposed, so its registers are the A fragment of op(A));
/// op(B)'s subtile `(ki, nj)` is B's stored `(ki, nj)` (col B) or `(nj, ki)` (row B).
pub fn mma_steps(
    variant: tilekit_ir::MmaVariant,
    (a_rows, a_cols): (u32, u32),
    (_b_rows, b_cols): (u32, u32),
    (m, n): (u32, u32),
) -> Vec<MmaStep> {
    let ops = Operands::new(variant, (a_rows, a_cols), b_cols);
    let (k, a_sub, b_sub) = (
        ops.k,
        |mi, ki| ops.a_sub(mi, ki),
        |ki, nj| ops.b_sub(ki, nj),
    );
    let mut steps = Vec::new();
    for mi in 0..m / 16 {
        for nj in 0..n / 16 {
            for (h, half) in B_HALF_REGS.iter().enumerate() {
                for ki in 0..k / 16 {
                    let sa = SUBTILE_REGS * a_sub(mi, ki);
                    let sb = SUBTILE_REGS * b_sub(ki, nj);
                    let sc = SUBTILE_REGS * (mi * (n / 16) + nj) + 4 * h as u32;
                    steps.push(MmaStep {
                        a: std::array::from_fn(|i| sa + i as u32),
                        b: half.map(|r| sb + r),
                        c: std::array::from_fn(|i| sc + i as u32),
                    });
                }
            }
        }
    }
    steps
}

/// The MFMA instruction a step issues: `v_mfma_f32_16x16x16_{bf16,f16}` (k = 16, every CDNA
/// chip; `…bf16_1k` is its gfx90a name) or `v_mfma_f32_16x16x32_{bf16,f16}` (k = 32, gfx950).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MfmaK {
    K16,
    K32,
}

/// One MFMA of a wave-scope `mma` computing `Dᵀ = Bᵀ·Aᵀ` (see the module documentation): the
/// registers (indices into each tile's registers) that form the instruction's A operand (from
/// the IR's B: 4 per k-subtile, `src_a.len()` = 4 or 8), its B operand (from the IR's A) and
/// the accumulator (the IR's C subtile, 4 registers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MfmaStep {
    pub k: MfmaK,
    pub src_a: Vec<u32>,
    pub src_b: Vec<u32>,
    pub c: [u32; 4],
}

/// The MFMAs of `D = op(A)·op(B) + C` in issue order (k innermost, increasing), for A stored
/// `a_rows × a_cols`, B stored `b_rows × b_cols` and C `m × n`; with `k32` (gfx950) two
/// consecutive k-subtiles share one `16x16x32` instruction, an odd last one takes `16x16x16`.
/// Subtile addressing of op(A) and op(B) is that of [`mma_steps`]: the col layout is the transpose of
/// the row layout on AMD as on NVIDIA.
pub fn mfma_steps(
    variant: tilekit_ir::MmaVariant,
    (a_rows, a_cols): (u32, u32),
    (_b_rows, b_cols): (u32, u32),
    (m, n): (u32, u32),
    k32: bool,
) -> Vec<MfmaStep> {
    let regs = Frag::Mfma.subtile_regs();
    let ops = Operands::new(variant, (a_rows, a_cols), b_cols);
    let (k, a_sub, b_sub) = (
        ops.k,
        |mi, ki| ops.a_sub(mi, ki),
        |ki, nj| ops.b_sub(ki, nj),
    );
    let sub_regs = |s: u32| (regs * s..regs * s + regs).collect::<Vec<u32>>();
    let mut steps = Vec::new();
    for mi in 0..m / 16 {
        for nj in 0..n / 16 {
            let sc = regs * (mi * (n / 16) + nj);
            let mut ki = 0;
            while ki < k / 16 {
                let width = if k32 && ki + 1 < k / 16 { 2 } else { 1 };
                let (mut src_a, mut src_b) = (Vec::new(), Vec::new());
                for kk in ki..ki + width {
                    src_a.extend(sub_regs(b_sub(kk, nj)));
                    src_b.extend(sub_regs(a_sub(mi, kk)));
                }
                steps.push(MfmaStep {
                    k: if width == 2 { MfmaK::K32 } else { MfmaK::K16 },
                    src_a,
                    src_b,
                    c: std::array::from_fn(|i| sc + i as u32),
                });
                ki += width;
            }
        }
    }
    steps
}

/// AMD LDS placement of shared tiles: the (row bit, word bit) pairs of the XOR that permutes
/// the 4-byte words of a row of `row_bytes` bytes by the row's index (rows of 8, 16 or 32·k
/// words; other widths are not permuted). Element (r, c) sits at byte
/// `r·row_bytes + (c·es ^ 4·h(r))`, `h(r)` setting word bit `w` where row bit `b` is set, for
/// each pair `(b, w)`. Word bit 0 never moves, so aligned 8-byte groups stay whole and in order.
///
/// CDNA LDS has 32 banks of 4 bytes and serves 128 bytes per cycle (CDNA3 ISA, *Local Data
/// Share*): 32 lanes of a 4-byte-or-narrower access, 16 lanes of an 8-byte one; lanes of one
/// cycle conflict when they touch distinct words in one bank. The lowering reads and writes a
/// 16-bit MFMA row-layout register group — columns `4t .. 4t+4` of row `g` — as one 8-byte
/// access, and 16 lanes (`g = 0..16`, one `t`) are one cycle: the XOR spreads the row bits that
/// the row's bank line does not already separate over word bits 1–4, so the 16 rows land in 16
/// distinct 8-byte bank pairs. A col-layout register (16-bit elements, read one by one) reads 16
/// consecutive columns of rows `i` and `i + 4`: row bit 2 goes to a word bit above those
/// columns' words. Copies (consecutive elements per lane) stay within one permuted row. This
/// takes the place of the NVIDIA 16-byte-chunk swizzles on AMD (nothing there needs whole
/// 16-byte chunks: no `ldmatrix`, no TMA).
pub fn lds_row_xor_bits(row_bytes: u32) -> &'static [(u32, u32)] {
    match row_bytes / 4 {
        32.. if row_bytes % 128 == 0 => &[(0, 1), (1, 2), (2, 3), (3, 4)],
        16 => &[(1, 1), (2, 3), (3, 2)],
        8 => &[(2, 1), (3, 2)],
        _ => &[],
    }
}

/// The byte offset of byte `byte_in_row` of row `row` of an AMD LDS tile ([`lds_row_xor_bits`]).
pub fn lds_offset(row_bytes: u32, row: u32, byte_in_row: u32) -> u32 {
    let h = lds_row_xor_bits(row_bytes)
        .iter()
        .filter(|(b, _)| (row >> b) & 1 == 1)
        .fold(0, |h, (_, w)| h | (1 << w));
    row * row_bytes + (byte_in_row ^ (4 * h))
}

/// The byte offset of element (`row`, `col`) of an AMD LDS tile of `rows` rows of `es`-byte
/// elements placed transposed: column `col` is a row of `rows · es` bytes of the
/// [`lds_offset`] placement, so consecutive rows of one column are contiguous. The lowering
/// places so the 16-bit tiles that are read only as col-layout register tiles: a col-layout
/// MFMA register group (registers `4s .. 4s+4`, rows `4t .. 4t+4` of column `g`, see
/// [`lds_col_group`]) is then 8 contiguous bytes in order, one `ds_read_b64` — the row-layout
/// group of the transposed tile, so the reads are conflict-free where row-layout groups are —
/// and a global → LDS copy writes each element of its row chunk to its column's row.
pub fn lds_transposed_offset(rows: u32, es: u32, row: u32, col: u32) -> u32 {
    lds_offset(rows * es, col, row * es)
}

/// Row and column of the first element of register group `s` (registers `4s .. 4s+4`) of an
/// MFMA col-layout register tile of `cols` columns: the group holds that column's rows
/// `row .. row + 4`, one per register.
pub fn lds_col_group(cols: u32, s: u32) -> (LaneAffine, LaneAffine) {
    Frag::Mfma.tile_elem(Layout::Col, cols, Frag::Mfma.subtile_regs() * s)
}

/// The XOR mask that a swizzle applies to bits 4.. of a byte offset, taken from the bits three
/// places above (the 32/64/128-byte swizzles of CUTLASS `Swizzle<1|2|3, 4, 3>` and TMA): 16-byte
/// chunks stay whole, so `ldmatrix` rows and 16-byte copies stay contiguous.
pub fn swizzle_mask(s: Swizzle) -> u32 {
    match s {
        Swizzle::None => 0,
        Swizzle::B32 => 0x10,
        Swizzle::B64 => 0x30,
        Swizzle::B128 => 0x70,
    }
}

/// The swizzled position of byte offset `off` within a shared tile (or within one piece of it,
/// see [`shared_tile_offset`]).
pub fn swizzle(s: Swizzle, off: u32) -> u32 {
    off ^ ((off >> 3) & swizzle_mask(s))
}

/// The width in bytes of the 128-byte swizzle's atom: 8 rows of 128 bytes, each row's eight
/// 16-byte chunks permuted by the row index (CUTLASS `Swizzle<3, 4, 3>`; the TMA
/// `CU_TENSOR_MAP_SWIZZLE_128B` pattern, whose boxes may not be wider than this).
pub const SWIZZLE_ATOM_BYTES: u32 = 128;

/// The width in bytes of the pieces a shared tile is stored as on NVIDIA (see
/// [`shared_tile_offset`]): a swz128 tile whose rows are wider than the 128-byte atom, and a
/// whole number of atoms, is stored as side-by-side pieces of 128-byte rows; every other tile is
/// one piece as wide as its rows.
///
/// Why: the swizzle's XOR source is bits 7–9 of the byte offset, i.e. the row index only when a
/// row is 128 bytes. With 256-byte rows consecutive rows take only even XOR values and the eight
/// rows of an `ldmatrix` phase meet in four chunk positions of the bank line (2-way conflicts,
/// 4-way with 512-byte rows). In 128-byte pieces the eight rows take eight distinct chunk
/// positions, whatever the tile's width; and each piece is what a 128-byte-swizzled TMA box or
/// `wgmma` descriptor addresses.
pub fn shared_piece_bytes(s: Swizzle, row_bytes: u32) -> u32 {
    if s == Swizzle::B128 && row_bytes > SWIZZLE_ATOM_BYTES && row_bytes % SWIZZLE_ATOM_BYTES == 0 {
        SWIZZLE_ATOM_BYTES
    } else {
        row_bytes
    }
}

/// The byte offset of byte `byte_in_row` of row `row` of an NVIDIA shared tile of `rows` rows of
/// `row_bytes` bytes with swizzle `s`: piece `p = byte_in_row / w` (w =
/// [`shared_piece_bytes`]) starts at `p·rows·w`, and within it the tile is row-major with rows
/// of `w` bytes, swizzled. Every producer and consumer of a shared tile (`cp.async`
/// destinations, element-wise copies, register tile stores and loads, `ldmatrix`) addresses it
/// through this placement (`shared_tile_ptr` in `lower/memory.rs` emits it); AMD LDS tiles use
/// [`lds_offset`] instead. 16-byte chunks stay whole and in order, so `ldmatrix` rows and
/// 16-byte copies stay contiguous.
pub fn shared_tile_offset(
    s: Swizzle,
    rows: u32,
    row_bytes: u32,
    row: u32,
    byte_in_row: u32,
) -> u32 {
    let w = shared_piece_bytes(s, row_bytes);
    (byte_in_row / w) * rows * w + swizzle(s, row * w + byte_in_row % w)
}

// ---- wgmma fragments (sm_90a) -------------------------------------------------------------

/// Rows of one `wgmma.mma_async` (`m64`): 16 for each warp of the warpgroup.
pub const WGMMA_M: u32 = 64;

/// The widest N of one `wgmma.mma_async` (`n256`).
pub const WGMMA_MAX_N: u32 = 256;

/// Row and column, in the 64×N result of a `wgmma.mma_async.m64nNk16` with an f32 accumulator,
/// of accumulator register `reg` of warpgroup thread `thread` (PTX ISA, *Register Fragments and
/// Shared Memory Matrix Layouts*, figure "WGMMA .m64nNk16 register fragment layout for
/// accumulator matrix D"): warp `w = thread / 32` holds rows `16w .. 16w + 16`; with
/// `g = lane / 4`, `t = lane % 4`, register `i` sits at row `16w + g + 8·((i / 2) mod 2)`,
/// column `8·(i / 4) + 2t + i mod 2`.
pub fn wgmma_d_position(thread: u32, reg: u32) -> (u32, u32) {
    let (w, lane) = (thread / WARP_LANES, thread % WARP_LANES);
    let (g, t) = (lane / 4, lane % 4);
    (
        16 * w + g + 8 * ((reg / 2) % 2),
        8 * (reg / 4) + 2 * t + reg % 2,
    )
}

/// The register of a warp's row-layout accumulator tile of `n` columns that is accumulator
/// register `reg` of the wgmma computing the tile's rows `16·mi .. 16·mi + 16` and columns
/// `n0 ..` (`n0` a multiple of 16). Every 8 columns of wgmma's D are `mma.sync`'s 16×8 C
/// fragment (registers `4j .. 4j + 4` for columns `8j ..`), and a row tile's 16×16 subtile holds
/// its two 16×8 halves' C fragments side by side ([`Frag::row_subtile`]), so the accumulator is
/// the tile's registers in order: the conversion is free.
pub fn wgmma_d_tile_reg(n: u32, mi: u32, n0: u32, reg: u32) -> u32 {
    let col = n0 + 8 * (reg / 4);
    SUBTILE_REGS * (mi * (n / 16) + col / 16) + 4 * ((col % 16) / 8) + reg % 4
}

/// The 8 registers (four `.b32` pairs `a0..a3`) of a warp's register A tile, stored
/// `a_rows × a_cols` with the layout `variant` takes, that form the register A operand of the
/// wgmma for op(A)'s 16×16 subtile `(mi, ki)`: wgmma's A fragment (PTX ISA, figure "WGMMA
/// .m64nNk16 register fragment layout for matrix A") is `mma.m16n8k16`'s, per warp, so these are
/// the subtile's registers in the order [`mma_steps`] gives `mma.sync`.
pub fn wgmma_a_tile_regs(
    variant: tilekit_ir::MmaVariant,
    a_dims: (u32, u32),
    mi: u32,
    ki: u32,
) -> [u32; 8] {
    let ops = Operands::new(variant, a_dims, 16);
    let s = SUBTILE_REGS * ops.a_sub(mi, ki);
    std::array::from_fn(|i| s + i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const NV: Frag = Frag::MmaSync;
    const AMD: Frag = Frag::Mfma;

    /// PTX ISA, "MMA .m16n8k16 fragment layout for matrix A" (.bf16/.f16): row and column of
    /// `a_i` for a lane, transcribed from the figure's formulas.
    fn ptx_a(lane: u32, i: u32) -> (u32, u32) {
        let (g, t) = (lane / 4, lane % 4);
        let row = if i < 2 || (4..6).contains(&i) {
            g
        } else {
            g + 8
        };
        let col = if i < 4 {
            t * 2 + (i & 1)
        } else {
            t * 2 + (i & 1) + 8
        };
        (row, col)
    }

    /// "MMA .m16n8k16 fragment layout for matrix B": row (k) and column (n) of `b_i`.
    fn ptx_b(lane: u32, i: u32) -> (u32, u32) {
        let (g, t) = (lane / 4, lane % 4);
        let row = if i < 2 {
            t * 2 + (i & 1)
        } else {
            t * 2 + (i & 1) + 8
        };
        (row, g)
    }

    /// "MMA .m16n8k16 fragment layout for accumulator matrix C/D": row and column of `c_i`.
    fn ptx_c(lane: u32, i: u32) -> (u32, u32) {
        let (g, t) = (lane / 4, lane % 4);
        let row = if i < 2 { g } else { g + 8 };
        (row, t * 2 + (i & 1))
    }

    fn at(p: (LaneAffine, LaneAffine), lane: u32) -> (u32, u32) {
        (p.0.at(NV, lane), p.1.at(NV, lane))
    }

    #[test]
    fn row_layout_is_the_mma_a_fragment() {
        for lane in 0..32 {
            for i in 0..8 {
                assert_eq!(at(NV.tile_elem(Layout::Row, 16, i), lane), ptx_a(lane, i));
            }
        }
    }

    #[test]
    fn row_layout_halves_are_the_mma_accumulator_fragments() {
        for lane in 0..32 {
            for h in 0..2 {
                for i in 0..4 {
                    let (r, c) = at(NV.tile_elem(Layout::Row, 16, 4 * h + i), lane);
                    assert_eq!((r, c - 8 * h), ptx_c(lane, i));
                }
            }
        }
    }

    #[test]
    fn col_layout_halves_are_the_mma_b_fragments() {
        let halves = [[0, 1, 4, 5], [2, 3, 6, 7]];
        for lane in 0..32 {
            for (h, regs) in halves.iter().enumerate() {
                for (i, &e) in regs.iter().enumerate() {
                    let (k, n) = at(NV.tile_elem(Layout::Col, 16, e), lane);
                    assert_eq!((k, n - 8 * h as u32), ptx_b(lane, i as u32));
                }
            }
        }
    }

    fn at_in(f: Frag, p: (LaneAffine, LaneAffine), lane: u32) -> (u32, u32) {
        (p.0.at(f, lane), p.1.at(f, lane))
    }

    #[test]
    fn every_element_of_a_tile_has_exactly_one_lane_and_register() {
        for f in [NV, AMD] {
            for layout in [Layout::Row, Layout::Col] {
                let (rows, cols) = (32, 48);
                let mut seen = HashSet::new();
                for lane in 0..f.lanes() {
                    for e in 0..f.tile_regs(rows, cols) {
                        let (r, c) = at_in(f, f.tile_elem(layout, cols, e), lane);
                        assert!(r < rows && c < cols);
                        assert!(seen.insert((r, c)));
                    }
                }
                assert_eq!(seen.len() as u32, rows * cols, "{f:?}");
            }
        }
    }

    #[test]
    fn vector_registers_match_the_rows_and_columns_of_tiles() {
        let (rows, cols) = (32, 48);
        for f in [NV, AMD] {
            for tile in [Layout::Row, Layout::Col] {
                for lane in 0..f.lanes() {
                    for e in 0..f.tile_regs(rows, cols) {
                        let (r, c) = at_in(f, f.tile_elem(tile, cols, e), lane);
                        for (axis, want) in [(VecAxis::Rows, r), (VecAxis::Cols, c)] {
                            let k = f.vector_reg_of_tile_reg(tile, axis, cols, e);
                            let l = tile_vector_layout(tile, axis);
                            let got = f.vector_elem(l, k).at(f, lane);
                            assert_eq!(got, want, "{f:?} {tile:?} {axis:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn reduce_masks_join_exactly_the_lanes_holding_one_element() {
        for f in [NV, AMD] {
            for l in [VecLayout::Rows, VecLayout::Cols] {
                for lane in 0..f.lanes() {
                    let mut group = vec![lane];
                    for &m in f.reduce_masks(l) {
                        group = group.iter().flat_map(|&x| [x, x ^ m]).collect();
                    }
                    let elem = |o: u32| f.vector_elem(l, 0).at(f, o);
                    let holders: Vec<u32> =
                        (0..f.lanes()).filter(|&o| elem(o) == elem(lane)).collect();
                    group.sort();
                    assert_eq!(group, holders, "{f:?} {l:?}");
                }
            }
        }
    }

    #[test]
    fn vector_elements_have_one_owner_lane() {
        for f in [NV, AMD] {
            for (axis, len) in [
                (VecLayout::Rows, 48),
                (VecLayout::Cols, 48),
                (VecLayout::Lanes, 192),
            ] {
                let mut owners = vec![0; len as usize];
                for lane in 0..f.lanes() {
                    for k in 0..f.vector_regs(len, axis) {
                        if f.vector_owner(axis, lane) {
                            owners[f.vector_elem(axis, k).at(f, lane) as usize] += 1;
                        }
                    }
                }
                assert!(owners.iter().all(|&n| n == 1), "{f:?} {axis:?}: {owners:?}");
            }
        }
    }

    #[test]
    fn whole_vector_reductions_meet_every_element_once() {
        for f in [NV, AMD] {
            for (l, len) in [
                (VecLayout::Rows, 32),
                (VecLayout::Cols, 32),
                (VecLayout::Lanes, 128),
            ] {
                // The butterfly group of lane 0: every lane reachable by xor-ing the masks.
                let mut group = vec![0u32];
                for &m in f.vector_reduce_masks(l) {
                    group = group.iter().flat_map(|&x| [x, x ^ m]).collect();
                }
                let mut seen = HashSet::new();
                for &lane in &group {
                    for k in 0..f.vector_regs(len, l) {
                        assert!(seen.insert(f.vector_elem(l, k).at(f, lane)), "{f:?} {l:?}");
                    }
                }
                assert_eq!(seen.len() as u32, len, "{f:?} {l:?}");
            }
        }
    }

    #[test]
    fn all_lanes_masks_reach_every_lane() {
        for f in [NV, AMD] {
            let mut group = vec![0u32];
            for &m in f.all_lanes_masks() {
                group = group.iter().flat_map(|&x| [x, x ^ m]).collect();
            }
            group.sort();
            assert_eq!(group, (0..f.lanes()).collect::<Vec<_>>(), "{f:?}");
        }
    }

    /// AMD CDNA3 ISA, *Matrix Arithmetic Instructions* / AMD Matrix Instruction Calculator for
    /// `v_mfma_f32_16x16x16_bf16` (gfx90a: `…bf16_1k`): element `i` (0..4) of lane `l` is
    /// `A[l%16][4·(l/16)+i]`, `B[4·(l/16)+i][l%16]` and `D[4·(l/16)+i][l%16]`, written out here
    /// from the ISA's formulas independently of [`Frag`].
    fn mfma_a(l: u32, i: u32) -> (u32, u32) {
        (l % 16, 4 * (l / 16) + i)
    }
    fn mfma_b(l: u32, i: u32) -> (u32, u32) {
        (4 * (l / 16) + i, l % 16)
    }
    fn mfma_d(l: u32, i: u32) -> (u32, u32) {
        (4 * (l / 16) + i, l % 16)
    }

    #[test]
    fn amd_row_layout_is_the_mfma_a_operand_and_the_transposed_accumulator() {
        for lane in 0..64 {
            for i in 0..4 {
                let (r, c) = at_in(AMD, AMD.tile_elem(Layout::Row, 16, i), lane);
                assert_eq!((r, c), mfma_a(lane, i));
                // Dᵀ in the accumulator pattern: D's (row, col) is the pattern's (col, row).
                let (dr, dc) = mfma_d(lane, i);
                assert_eq!((r, c), (dc, dr));
            }
        }
    }

    #[test]
    fn amd_col_layout_is_the_mfma_b_operand_and_feeds_the_a_operand_as_its_transpose() {
        for lane in 0..64 {
            for i in 0..4 {
                let (k, n) = at_in(AMD, AMD.tile_elem(Layout::Col, 16, i), lane);
                assert_eq!((k, n), mfma_b(lane, i));
                // As the instruction's A operand, Bᵀ[n][k] must be in the A pattern.
                assert_eq!((n, k), mfma_a(lane, i));
            }
        }
    }

    /// `v_mfma_f32_16x16x32_bf16` (CDNA4 ISA): element `j` (0..8) of lane `l` is
    /// `A[l%16][8·(l/16)+j]`. Feeding registers of two k-subtiles (4 + 4) maps the
    /// instruction's k to the tile's k by the same bijection for A and B.
    #[test]
    fn amd_k32_operands_permute_k_the_same_way_in_a_and_b() {
        let step = &mfma_steps(AB, (16, 32), (32, 16), (16, 16), true)[0];
        assert_eq!(step.k, MfmaK::K32);
        let mut ks = HashSet::new();
        for lane in 0..64 {
            for j in 0..8u32 {
                let instr_k = 8 * (lane / 16) + j;
                // Tile k of the A register (src_b) and of the B register (src_a).
                let (_, ka) = at_in(
                    AMD,
                    AMD.tile_elem(Layout::Row, 32, step.src_b[j as usize]),
                    lane,
                );
                let (kb, _) = at_in(
                    AMD,
                    AMD.tile_elem(Layout::Col, 16, step.src_a[j as usize]),
                    lane,
                );
                assert_eq!(ka, kb, "lane {lane} j {j}");
                ks.insert((instr_k, ka));
            }
        }
        // One tile k per instruction k: a bijection of 0..32.
        let firsts: HashSet<u32> = ks.iter().map(|p| p.0).collect();
        let seconds: HashSet<u32> = ks.iter().map(|p| p.1).collect();
        assert_eq!((ks.len(), firsts.len(), seconds.len()), (32, 32, 32));
    }

    const AB: tilekit_ir::MmaVariant = tilekit_ir::MmaVariant::AB;

    #[test]
    fn mfma_plans_cover_every_k_subtile_once_per_output_subtile() {
        for k32 in [false, true] {
            let steps = mfma_steps(AB, (32, 48), (48, 32), (32, 32), k32);
            let per_out: usize = steps
                .iter()
                .filter(|s| s.c[0] == 0)
                .map(|s| s.src_b.len())
                .sum();
            assert_eq!(per_out, 4 * 3, "k32 {k32}");
            let n32 = steps.iter().filter(|s| s.k == MfmaK::K32).count();
            assert_eq!(n32, if k32 { 4 } else { 0 });
        }
    }

    #[test]
    fn ldmatrix_delivers_the_register_layouts() {
        // Simulates ldmatrix as the PTX ISA defines it: destination register q of lane l is the
        // pair at row l/4, columns 2(l%4).. of matrix q (transposed: column l/4, rows 2(l%4)..),
        // and it lands in the tile registers of the order's pair for q.
        for order in [LdmatrixOrder::AOperand, LdmatrixOrder::BOperand] {
            for layout in [Layout::Row, Layout::Col] {
                for lane in 0..32 {
                    for q in 0..4 {
                        for half in 0..2 {
                            let src_lane = 8 * q
                                + match layout {
                                    Layout::Row => lane / 4,
                                    Layout::Col => 2 * (lane % 4) + half,
                                };
                            let (r0, c0) = ldmatrix_source(layout, order, src_lane);
                            let (r, c) = match layout {
                                Layout::Row => (r0, c0 + 2 * (lane % 4) + half),
                                Layout::Col => (r0, c0 + lane / 4),
                            };
                            let e = 2 * order.pairs()[q as usize] + half;
                            assert_eq!(
                                at(NV.tile_elem(layout, 16, e), lane),
                                (r, c),
                                "{layout:?} {order:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn ldmatrix_orders_deliver_each_mma_operand_in_consecutive_registers() {
        // The registers an mma.sync reads, in operand order, must be the ldmatrix destination
        // registers in order: A's a0..a7 as one group of four, each B half's b0..b3 as a pair.
        let delivered = |o: LdmatrixOrder| -> Vec<u32> {
            o.pairs().iter().flat_map(|&p| [2 * p, 2 * p + 1]).collect()
        };
        for variant in tilekit_ir::MmaVariant::ALL {
            let steps = mma_steps(variant, (16, 16), (16, 16), (16, 16));
            assert_eq!(steps.len(), 2);
            assert_eq!(steps[0].a.to_vec(), delivered(LdmatrixOrder::AOperand));
            let b: Vec<u32> = steps.iter().flat_map(|s| s.b).collect();
            assert_eq!(b, delivered(LdmatrixOrder::BOperand), "{variant:?}");
        }
    }

    #[test]
    fn swizzles_permute_whole_16_byte_chunks_within_128_bytes_rows() {
        for s in [Swizzle::None, Swizzle::B32, Swizzle::B64, Swizzle::B128] {
            let mut seen = HashSet::new();
            for off in 0..4096 {
                let x = swizzle(s, off);
                assert_eq!(x % 16, off % 16);
                assert_eq!(x / 128, off / 128);
                assert!(seen.insert(x));
            }
        }
        // 128-byte swizzle: row 1 (bytes 128..) of a 64-element bf16 tile has chunk 0 and 1
        // swapped.
        assert_eq!(swizzle(Swizzle::B128, 128), 144);
        assert_eq!(swizzle(Swizzle::B128, 7 * 128 + 16), 7 * 128 + 16 * 6);
    }

    /// Every byte of every shared tile shape the DSL allows (rows and columns multiples of 16,
    /// 2- and 4-byte elements) has exactly one place, inside the tile, and 16-byte chunks stay
    /// whole and in order.
    #[test]
    fn shared_tile_placement_is_a_bijection_onto_the_tile() {
        for s in [Swizzle::None, Swizzle::B32, Swizzle::B64, Swizzle::B128] {
            for rows in [16, 32, 48, 64] {
                for cols in [16, 32, 48, 64, 80, 128, 192, 256] {
                    for es in [2, 4] {
                        let rb = cols * es;
                        let mut seen = vec![false; (rows * rb) as usize];
                        for row in 0..rows {
                            for b in 0..rb {
                                let o = shared_tile_offset(s, rows, rb, row, b);
                                assert!(o < rows * rb, "{s:?} {rows}x{cols}x{es}: ({row}, {b})");
                                assert!(!seen[o as usize], "{s:?} {rows}x{cols}x{es}: twice {o}");
                                seen[o as usize] = true;
                                let chunk = shared_tile_offset(s, rows, rb, row, b - b % 16);
                                assert_eq!(o, chunk + b % 16);
                            }
                        }
                    }
                }
            }
        }
    }

    /// swz128 tiles wider than 128 bytes are 128-byte pieces side by side, each the TMA /
    /// CUTLASS 128-byte swizzle atom repeated down the rows: 16-byte chunk `k` of row `r` of
    /// piece `p` at `p·rows·128 + r·128 + 16·(k XOR r % 8)` (written here from that description,
    /// not from `swizzle`); each piece starts 1024-byte aligned within the tile, as the
    /// pattern, which hardware takes from address bits 4–9, requires.
    #[test]
    fn wide_swz128_tiles_are_128_byte_swizzle_atoms_side_by_side() {
        for rows in [16, 32, 64, 128] {
            for row_bytes in [256, 384, 512] {
                assert_eq!(shared_piece_bytes(Swizzle::B128, row_bytes), 128);
                for row in 0..rows {
                    for b in 0..row_bytes {
                        let (p, k) = (b / 128, (b % 128) / 16);
                        let want = p * rows * 128 + row * 128 + 16 * (k ^ (row % 8)) + b % 16;
                        assert_eq!(
                            shared_tile_offset(Swizzle::B128, rows, row_bytes, row, b),
                            want
                        );
                    }
                }
                for p in 0..row_bytes / 128 {
                    assert_eq!(
                        shared_tile_offset(Swizzle::B128, rows, row_bytes, 0, 128 * p) % 1024,
                        0
                    );
                }
            }
        }
        // Tiles whose rows fit the atom, and other swizzles, stay row-major.
        for (s, rb) in [
            (Swizzle::B128, 128),
            (Swizzle::B128, 64),
            (Swizzle::B64, 256),
            (Swizzle::None, 512),
        ] {
            assert_eq!(shared_piece_bytes(s, rb), rb);
            assert_eq!(
                shared_tile_offset(s, 16, rb, 3, 16),
                swizzle(s, 3 * rb + 16)
            );
        }
    }
}

/// Bank conflicts of the shared-memory accesses the lowering makes, computed from the layout
/// data above. Shared memory has 32 banks of 4 bytes and serves 128 bytes per cycle; the
/// accesses of one *phase* (a whole warp for accesses of up to 4 bytes per lane; a quarter-warp,
/// 8 lanes, for 16-byte accesses; one 8×8 matrix, i.e. 8 lanes' 16-byte rows, for each of the
/// four phases of `ldmatrix.x4` — PTX ISA, *Warp-level matrix load instruction: ldmatrix*)
/// conflict when two of them touch the same bank at different 4-byte words (same word is a
/// broadcast, not a conflict). Shared tiles start 1024-byte aligned when swizzled, 128-byte
/// aligned otherwise, so the bank of a byte is that of its offset within the tile.
#[cfg(test)]
mod bank_conflicts {
    use super::*;
    use std::collections::{HashMap, HashSet};

    const BF16: u32 = 2;
    const SWIZZLES: [Swizzle; 4] = [Swizzle::None, Swizzle::B32, Swizzle::B64, Swizzle::B128];

    /// Byte offset of element (row, col) of a shared tile of `rows × cols` elements of `es`
    /// bytes: what `shared_tile_ptr` in `lower/memory.rs` computes on NVIDIA.
    fn addr(swz: Swizzle, rows: u32, cols: u32, es: u32, row: u32, col: u32) -> u32 {
        shared_tile_offset(swz, rows, cols * es, row, col * es)
    }

    /// The worst bank conflict of one phase: accesses `(byte offset, bytes)`, each covering
    /// whole 4-byte words (or part of one); the most distinct words that share a bank
    /// (1 = conflict-free).
    fn ways(phase: &[(u32, u32)]) -> usize {
        let mut banks: HashMap<u32, HashSet<u32>> = HashMap::new();
        for &(a, n) in phase {
            for w in a / 4..(a + n).div_ceil(4) {
                banks.entry(w % 32).or_default().insert(w);
            }
        }
        banks.values().map(HashSet::len).max().unwrap_or(0)
    }

    /// Worst phase of `ldmatrix.x4` over a register tile of `rows×cols` (one instruction per
    /// 16×16 subtile, at `ldmatrix_source` of each lane) at every 16-aligned origin of a shared
    /// tile `srows×scols` of bf16, over both operand orders (each phase reads one quadrant;
    /// the orders only change which phase reads which).
    fn ldmatrix_ways(swz: Swizzle, srows: u32, scols: u32, layout: Layout) -> usize {
        let mut worst = 0;
        let orders = [LdmatrixOrder::AOperand, LdmatrixOrder::BOperand];
        for r0 in (0..srows).step_by(16) {
            for c0 in (0..scols).step_by(16) {
                for (order, q) in orders.into_iter().flat_map(|o| (0..4).map(move |q| (o, q))) {
                    let phase: Vec<(u32, u32)> = (8 * q..8 * q + 8)
                        .map(|lane| {
                            let (r, c) = ldmatrix_source(layout, order, lane);
                            (addr(swz, srows, scols, BF16, r0 + r, c0 + c), 16)
                        })
                        .collect();
                    // Each lane's row is 16 contiguous bytes: the swizzle keeps chunks whole.
                    for &(a, _) in &phase {
                        assert_eq!(a % 16, 0);
                    }
                    worst = worst.max(ways(&phase));
                }
            }
        }
        worst
    }

    /// Worst phase of the stores of a register tile (`store` of a tile to a shared tile: one
    /// `st.shared` of `es` bytes per register, all 32 lanes in one phase) at every 16-aligned
    /// origin of a shared tile `srows×scols`.
    fn store_ways(swz: Swizzle, srows: u32, scols: u32, layout: Layout, es: u32) -> usize {
        let mut worst = 0;
        for r0 in (0..srows).step_by(16) {
            for c0 in (0..scols).step_by(16) {
                for e in 0..SUBTILE_REGS {
                    let (r, c) = Frag::MmaSync.tile_elem(layout, 16, e);
                    let phase: Vec<(u32, u32)> = (0..WARP_LANES)
                        .map(|l| {
                            (
                                addr(
                                    swz,
                                    srows,
                                    scols,
                                    es,
                                    r0 + r.at(Frag::MmaSync, l),
                                    c0 + c.at(Frag::MmaSync, l),
                                ),
                                es,
                            )
                        })
                        .collect();
                    worst = worst.max(ways(&phase));
                }
            }
        }
        worst
    }

    /// Worst phase of a global → shared `copy` by `threads` threads: `cp.async` of 16-byte
    /// chunks `rank + k·threads` in row-major order (phases of 8 lanes), and the element-wise
    /// fallback (`rank + k·threads`-th element, one phase per warp).
    fn copy_ways(swz: Swizzle, srows: u32, scols: u32, es: u32) -> (usize, usize) {
        let per_row = scols * es / 16;
        let chunk = |i: u32| {
            (
                addr(swz, srows, scols, es, i / per_row, (i % per_row) * 16 / es),
                16,
            )
        };
        let elem = |i: u32| (addr(swz, srows, scols, es, i / scols, i % scols), es);
        let chunks: Vec<_> = (0..srows * per_row).map(chunk).collect();
        let elems: Vec<_> = (0..srows * scols).map(elem).collect();
        let worst = |v: &[(u32, u32)], n: usize| v.chunks(n).map(ways).max().unwrap_or(0);
        (worst(&chunks, 8), worst(&elems, WARP_LANES as usize))
    }

    /// Bytes of the 16-byte-chunk window that a swizzle permutes rows over: rows of a tile
    /// must fit in it for the eight rows of an `ldmatrix` phase to land in eight distinct
    /// chunks of a 128-byte bank line.
    fn span(swz: Swizzle) -> u32 {
        match swz {
            Swizzle::None => 16,
            Swizzle::B32 => 32,
            Swizzle::B64 => 64,
            Swizzle::B128 => 128,
        }
    }

    /// The rule, checked for every swizzle and bf16 tile width 16–256: `ldmatrix` (both
    /// layouts) and the lowering's stores of bf16 register tiles (both layouts) are free of
    /// bank conflicts for every width with swz128 (rows wider than 128 bytes are stored as
    /// 128-byte pieces, [`shared_piece_bytes`]), and with the narrower swizzles exactly when a
    /// tile row (`2·cols` bytes) fits in the swizzle's span; beyond it `ldmatrix` conflicts
    /// `2·cols / span` ways (at most 8). So swz32 serves 16-column tiles, swz64 up to 32
    /// columns, swz128 any width; unswizzled tiles of 16 columns or more always conflict.
    #[test]
    fn ldmatrix_and_tile_stores_are_conflict_free_with_swz128_or_rows_within_the_span() {
        for swz in SWIZZLES {
            for cols in [16, 32, 64, 128, 256] {
                let want = if swz == Swizzle::B128 {
                    1
                } else {
                    (BF16 * cols / span(swz)).clamp(1, 8) as usize
                };
                for layout in [Layout::Row, Layout::Col] {
                    let ld = ldmatrix_ways(swz, 64, cols, layout);
                    assert_eq!(ld, want, "ldmatrix {layout:?} {swz:?} {cols} cols");
                    let st = store_ways(swz, 64, cols, layout, BF16);
                    assert_eq!(
                        st == 1,
                        want == 1,
                        "store {layout:?} {swz:?} {cols} cols: {st}"
                    );
                }
            }
        }
    }

    /// The shared tiles of the library and example kernels (`st<bf16, 64x64, swz128>`,
    /// `32x64 swz128`, `64x16 swz128`, `64x32 swz64`; the GEMM B rings `32x128`, `32x256` and
    /// `16x256` and the head-dim-128 attention K/V rings `32x128`, all swz128) are
    /// conflict-free for every access the lowering makes; `64x64` with swz64 or swz32
    /// (accepted, used only in swizzle tests) costs 2 and 4 ways on `ldmatrix` and the
    /// lowering's users should avoid them.
    #[test]
    fn the_kernels_shared_tiles_are_conflict_free() {
        for (swz, rows, cols) in [
            (Swizzle::B128, 64, 64),
            (Swizzle::B128, 32, 64),
            (Swizzle::B128, 64, 16),
            (Swizzle::B64, 64, 32),
            (Swizzle::B128, 32, 128),
            (Swizzle::B128, 32, 256),
            (Swizzle::B128, 16, 256),
            (Swizzle::B128, 128, 128),
        ] {
            for layout in [Layout::Row, Layout::Col] {
                assert_eq!(
                    ldmatrix_ways(swz, rows, cols, layout),
                    1,
                    "{swz:?} {rows}x{cols}"
                );
                assert_eq!(
                    store_ways(swz, rows, cols, layout, BF16),
                    1,
                    "{swz:?} {rows}x{cols}"
                );
            }
            assert_eq!(
                copy_ways(swz, rows, cols, BF16),
                (1, 1),
                "{swz:?} {rows}x{cols}"
            );
        }
        assert_eq!(ldmatrix_ways(Swizzle::B64, 64, 64, Layout::Row), 2);
        assert_eq!(ldmatrix_ways(Swizzle::B32, 64, 64, Layout::Row), 4);
    }

    /// Global → shared copies (16-byte `cp.async` chunks, phases of 8 lanes, and the element
    /// fallback) are conflict-free for every swizzle and width: consecutive lanes take
    /// consecutive chunks, i.e. one 128-byte line per phase, which every swizzle permutes onto
    /// itself.
    #[test]
    fn copies_are_conflict_free_for_every_swizzle() {
        for swz in SWIZZLES {
            for cols in [16, 32, 64, 128, 256] {
                assert_eq!(copy_ways(swz, 64, cols, BF16), (1, 1), "{swz:?} {cols}");
                assert_eq!(copy_ways(swz, 64, cols, 4), (1, 1), "f32 {swz:?} {cols}");
            }
        }
    }

    /// f32 register tiles stored to a shared tile (no kernel does so today) cannot be
    /// conflict-free with 16-byte swizzles and scalar stores: a row-layout register touches
    /// words `2t` of 8 rows, two per 16-byte chunk, so 8 rows need 16 chunk slots of the 8 in a
    /// bank line. swz128 keeps it at the minimum, 2 ways, for every width.
    #[test]
    fn f32_tile_stores_are_at_best_two_way() {
        for cols in [16, 32, 64, 128] {
            assert_eq!(store_ways(Swizzle::B128, 64, cols, Layout::Row, 4), 2);
        }
    }

    /// AMD: worst cycle of the scalar element accesses of an MFMA register tile `16×16` (32
    /// lanes per cycle for accesses of up to 4 bytes: CDNA LDS serves 128 bytes per cycle from
    /// 32 banks of 4 bytes) at every 16-aligned origin of an LDS tile `srows×scols` of `es`-byte
    /// elements placed by `place(row_bytes, row, byte_in_row)`.
    fn amd_tile_ways(
        place: impl Fn(u32, u32, u32) -> u32,
        srows: u32,
        scols: u32,
        layout: Layout,
        es: u32,
    ) -> usize {
        let f = Frag::Mfma;
        let mut worst = 0;
        for r0 in (0..srows).step_by(16) {
            for c0 in (0..scols).step_by(16) {
                for e in 0..f.subtile_regs() {
                    let (r, c) = f.tile_elem(layout, 16, e);
                    for half in 0..2 {
                        let phase: Vec<(u32, u32)> = (32 * half..32 * half + 32)
                            .map(|l| {
                                let (row, col) = (r0 + r.at(f, l), c0 + c.at(f, l));
                                (place(scols * es, row, col * es), es)
                            })
                            .collect();
                        worst = worst.max(ways(&phase));
                    }
                }
            }
        }
        worst
    }

    /// AMD: worst cycle of the 8-byte group accesses of a 16-bit row-layout MFMA register tile
    /// (`lds_row_groups` in `lower/memory.rs`: registers `4s .. 4s+4`, columns `4t .. 4t+4` of
    /// row `g`; 16 lanes of an 8-byte access per cycle).
    fn amd_group_ways(srows: u32, scols: u32) -> usize {
        let f = Frag::Mfma;
        let mut worst = 0;
        for r0 in (0..srows).step_by(16) {
            for c0 in (0..scols).step_by(16) {
                let (r, c) = f.tile_elem(Layout::Row, 16, 0);
                for quarter in 0..4 {
                    let phase: Vec<(u32, u32)> = (16 * quarter..16 * quarter + 16)
                        .map(|l| {
                            let (row, col) = (r0 + r.at(f, l), c0 + c.at(f, l));
                            let a = lds_offset(scols * BF16, row, col * BF16);
                            assert_eq!(a % 8, 0, "8-byte groups stay aligned");
                            (a, 8)
                        })
                        .collect();
                    worst = worst.max(ways(&phase));
                }
            }
        }
        worst
    }

    /// AMD: worst cycle of a global → LDS copy, element `rank + k·threads` per lane.
    fn amd_copy_ways(srows: u32, scols: u32, es: u32) -> usize {
        let elems: Vec<(u32, u32)> = (0..srows * scols)
            .map(|i| (lds_offset(scols * es, i / scols, (i % scols) * es), es))
            .collect();
        elems.chunks(32).map(ways).max().unwrap_or(0)
    }

    /// The lowering's 8-byte group accesses read and write the bytes the element accesses do.
    #[test]
    fn lds_placement_keeps_aligned_8_byte_groups_whole_and_in_order() {
        for row_bytes in [32, 64, 128, 256] {
            for row in 0..32 {
                for group in (0..row_bytes).step_by(8) {
                    let start = lds_offset(row_bytes, row, group);
                    assert_eq!(start % 8, 0);
                    for b in 0..8 {
                        assert_eq!(lds_offset(row_bytes, row, group + b), start + b);
                    }
                }
            }
        }
    }

    #[test]
    fn lds_placement_permutes_each_row_onto_itself() {
        for row_bytes in [32, 64, 96, 128, 256, 384] {
            for row in 0..32 {
                let mut seen = HashSet::new();
                for b in 0..row_bytes {
                    let o = lds_offset(row_bytes, row, b);
                    assert_eq!(o / row_bytes, row);
                    assert!(seen.insert(o));
                }
            }
        }
    }

    /// The AMD rule, for the accesses the lowering makes: 16-bit row-layout register tiles
    /// (8-byte groups) and global → LDS copies are conflict-free for every tile width of 16
    /// columns or more; 16-bit col-layout registers (scalar reads) are conflict-free for tiles
    /// of 32 columns or more (the kernels' `64x64`, `32x64`, `64x32`) and 2-way for `64x16` (a
    /// col register reads rows `i` and `i + 4` whole, 8 words each, and four such rows fill one
    /// bank line whatever the permutation within a row). Scalar row-layout accesses (f32 tiles,
    /// which no kernel keeps in LDS) are 2-way. Without the placement scalar row-layout
    /// accesses would be 16-way.
    #[test]
    fn amd_lds_accesses_are_conflict_free() {
        let placed = |rb: u32, r: u32, b: u32| lds_offset(rb, r, b);
        let plain = |rb: u32, r: u32, b: u32| r * rb + b;
        for (rows, cols) in [(64, 64), (32, 64), (16, 64), (64, 128), (64, 32), (64, 16)] {
            assert_eq!(amd_group_ways(rows, cols), 1, "{rows}x{cols}");
            let col_ways = if cols == 16 { 2 } else { 1 };
            let w = amd_tile_ways(placed, rows, cols, Layout::Col, BF16);
            assert_eq!(w, col_ways, "{rows}x{cols} col");
            assert_eq!(amd_tile_ways(placed, rows, cols, Layout::Row, 4), 2);
            assert_eq!(amd_copy_ways(rows, cols, BF16), 1);
            assert_eq!(amd_copy_ways(rows, cols, 4), 1);
        }
        assert_eq!(amd_tile_ways(plain, 64, 64, Layout::Row, BF16), 16);
    }

    /// AMD, a 16-bit tile placed transposed ([`lds_transposed_offset`]): worst cycle of the
    /// col-layout register group reads (`lds_col_groups` in `lower/memory.rs`: one 8-byte
    /// access per group at [`lds_col_group`], 16 lanes per cycle) at every 16-aligned origin,
    /// and of the staged copy's 2-byte writes (chunk `lane` of 8 elements along a row, element
    /// `j` of every lane in one instruction, 32 lanes per cycle).
    fn amd_transposed_ways(srows: u32, scols: u32) -> (usize, usize) {
        let f = Frag::Mfma;
        let mut read = 0;
        for r0 in (0..srows).step_by(16) {
            for c0 in (0..scols).step_by(16) {
                let (r, c) = lds_col_group(16, 0);
                for quarter in 0..4 {
                    let phase: Vec<(u32, u32)> = (16 * quarter..16 * quarter + 16)
                        .map(|l| {
                            let (row, col) = (r0 + r.at(f, l), c0 + c.at(f, l));
                            let a = lds_transposed_offset(srows, BF16, row, col);
                            assert_eq!(a % 8, 0, "8-byte groups stay aligned");
                            (a, 8)
                        })
                        .collect();
                    read = read.max(ways(&phase));
                }
            }
        }
        let per_row = scols / 8;
        let mut write = 0;
        for first in (0..srows * per_row).step_by(32) {
            for j in 0..8 {
                let phase: Vec<(u32, u32)> = (first..(first + 32).min(srows * per_row))
                    .map(|ch| {
                        let (row, col) = (ch / per_row, 8 * (ch % per_row) + j);
                        (lds_transposed_offset(srows, BF16, row, col), BF16)
                    })
                    .collect();
                write = write.max(ways(&phase));
            }
        }
        (read, write)
    }

    /// The transposed placement keeps each column's 4-row groups whole and in order, and is
    /// a bijection onto the tile's bytes.
    #[test]
    fn lds_transposed_placement_keeps_column_groups_of_four_rows_contiguous() {
        for (rows, cols) in [(16, 16), (16, 64), (32, 64), (32, 128), (64, 64), (48, 32)] {
            let mut seen = HashSet::new();
            for row in 0..rows {
                for col in 0..cols {
                    let o = lds_transposed_offset(rows, BF16, row, col);
                    assert!(o + BF16 <= rows * cols * BF16);
                    assert!(seen.insert(o), "{rows}x{cols}: ({row}, {col}) collides");
                    if row % 4 != 0 {
                        let first = lds_transposed_offset(rows, BF16, row - row % 4, col);
                        assert_eq!(o, first + BF16 * (row % 4));
                    }
                }
            }
        }
    }

    /// The col-layout reads of the kernels' transposed tiles (GEMM B rings `32x64`,
    /// `32x128`, `32x256`, `16x256`; attention V rings `16x64`, `16x128`, `64x64`) are
    /// conflict-free. The copy's 2-byte writes are not: a cycle's 32 lanes take consecutive
    /// chunks of a few rows, and their element `j` lands in one transposed row per chunk
    /// column; the placement's XOR takes only the low bits of the transposed row (which the
    /// reads need), so those rows share banks: `cols / 16` ways (4 at 64 columns, 16 at 256).
    /// Measured here so that a change to either side shows.
    #[test]
    fn amd_transposed_reads_are_conflict_free() {
        for (rows, cols, writes) in [
            (32, 64, 4),
            (32, 128, 8),
            (32, 256, 16),
            (16, 256, 16),
            (16, 64, 4),
            (16, 128, 8),
            (64, 64, 4),
        ] {
            let (r, w) = amd_transposed_ways(rows, cols);
            assert_eq!(r, 1, "{rows}x{cols} reads");
            assert!(w <= writes, "{rows}x{cols} writes: {w} ways");
        }
    }
}
