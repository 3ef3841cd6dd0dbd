//! Warpgroup-scope `mma` on sm_90a as `wgmma.mma_async` (PTX ISA, *Asynchronous Warpgroup Level
//! Matrix Multiply-Accumulate*): B, and A where it can, read from shared memory through matrix
//! descriptors, the accumulator in the registers of the IR's row tile.
//!
//! An op qualifies when its operands are bf16 or f16 (or fp8, either format on each side, as
//! `mma.abt` with both operands shared and K-major: `.e4m3`/`.e5m2` wgmma is K-major only and
//! takes K 32 per instruction, with no transposition immediates) and its shared operands are in one of
//! wgmma's canonical swizzled layouts ([`operand_plan`]): the tile placement of
//! [`layout::shared_tile_offset`] (row-major pieces, swizzled) equals the canonical K-major
//! layout when the contiguous dimension is K, and the MN-major one when it is M or N, exactly
//! when a piece is as wide as the swizzle span. Other ops keep `mma.sync` ([`super::mma`]),
//! which computes the same product. A shared A is read through a descriptor when each warp owns
//! 16 rows (one m64 instruction covers the group); with more rows per warp the rows of one
//! instruction are not evenly spaced in the tile, so each warp loads its rows into registers and
//! the register-A form is used.
//!
//! Each op is synchronous, as the IR defines it: `fence.proxy.async` (the operands were written
//! through the generic proxy, by `st.shared` or `cp.async`; PTX ISA *Memory Consistency Model:
//! Proxies*), then per 64×N block of the accumulator one inline-asm sequence `wgmma.fence;
//! wgmma.mma_async` × K/16 `; wgmma.commit_group; wgmma.wait_group 0` whose accumulator
//! operands are tied to the tile's registers, so no instruction between the fence and the wait
//! touches them.
//!
//! The asynchronous form (`mma_async` / `mma_commit` / `mma_wait[n]`) leaves the groups to the
//! author: on sm_90a `mma_async` is the same sequence without the commit and the wait (its
//! operands must qualify: the verifier requires canonical shared A and B, 16 rows of C per
//! warp, N ≤ 256, so one inline asm covers the op), `mma_commit` is `wgmma.commit_group` and
//! `mma_wait[n]` is `wgmma.wait_group n` in one inline asm whose operands are tied to the
//! registers of the accumulators it retires: LLVM sees the values after the wait come from the
//! wait, so nothing reads the registers the tensor cores are still writing (a chained
//! `mma_async` ties them too, and a loop carries them round unchanged). On every other target
//! `mma_async` is the synchronous `mma` (its result is ready before anything may read it: a
//! valid schedule of the IR's semantics), and `mma_commit` and `mma_wait` are nothing.
//!
//! Zero-started accumulators ([`ZeroStarts`]). Measured (ptxas 13.5): a K loop whose
//! accumulator starts as zeros gets a zero-trip exit on which LLVM materializes the zeros in the
//! accumulator registers; that definition reaches the `wgmma.wait_group` after the loop, and
//! ptxas then serializes every wgmma of the kernel (info C7515, "non wgmma instructions defining
//! accumulator registers of a wgmma between start and end of the pipeline stage"; deleting those
//! moves from the PTX, or branching the zero-trip exit past the wait, removes it). So a
//! loop-carried accumulator that starts as `zeros()` and whose only use in the loop is the C of
//! an `mma_async` in the loop body is not materialized: it enters the loop undefined, the first
//! iteration's mma issues with `scale-d` = 0 (D = A·B, the old D not read: CUTLASS's mainloop
//! does the same), and the `mma_wait` that retires the loop's result writes the zeros after its
//! `wgmma.wait_group`, in the same inline asm, predicated on the loop having run no iteration.
//! No instruction but a wgmma then defines the registers between the fence and the wait.

use std::collections::HashMap;

use tilekit_ir::{Layout, MmaVariant, Op, OpKind, Region, ScalarType, Scope, Swizzle, Type, Value};

use super::{Lowerer, Lv, R};
use crate::layout::{self, WGMMA_M, WGMMA_MAX_N};
use crate::nvidia::Nvidia;
use crate::Target;

/// K of one `wgmma.mma_async` with 16-bit operands.
const WGMMA_K: u32 = 16;

/// What an fp8 `mma` needs to lower (PTX ISA, *wgmma.mma_async*: `.e4m3`/`.e5m2` operands are
/// K-major, K 32 per instruction).
const FP8_WGMMA_ONLY: &str = "fp8 operands multiply on sm_90a's wgmma only: a warpgroup mma.abt or mma_async.abt with A and B K-major in canonical swizzled shared tiles (A stored M×K with 16 rows of C per warp, B stored N×K), K a multiple of 32";

/// Which dimension of a shared operand is contiguous in memory (`imm-trans-a/b`: 0 is K-major,
/// 1 is M-major for A and N-major for B; transposition is valid for 16-bit types only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Major {
    K,
    MN,
}

impl Major {
    fn imm_trans(self) -> u32 {
        match self {
            Major::K => 0,
            Major::MN => 1,
        }
    }
}

/// A shared-memory matrix descriptor of sm_90's `wgmma` (PTX ISA, *Matrix Descriptor Format*),
/// byte quantities in bytes: bits 0–13 start address / 16, 16–29 leading dimension byte
/// offset / 16, 32–45 stride dimension byte offset / 16, 49–51 base offset, 62–63 swizzle
/// mode (0 none, 1 128-byte, 2 64-byte, 3 32-byte). sm_100's `tcgen05` descriptor has another
/// layout: it gets its own encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sm90Descriptor {
    pub start: u32,
    pub leading_byte_offset: u32,
    pub stride_byte_offset: u32,
    pub base_offset: u32,
    pub swizzle: Swizzle,
}

impl Sm90Descriptor {
    /// The swizzle mode field (bits 62–63).
    fn swizzle_field(s: Swizzle) -> u64 {
        match s {
            Swizzle::None => 0,
            Swizzle::B128 => 1,
            Swizzle::B64 => 2,
            Swizzle::B32 => 3,
        }
    }

    /// The 64-bit descriptor (the low 4 bits of each byte quantity are dropped, as the format
    /// stores them shifted).
    pub fn encode(&self) -> u64 {
        let field14 = |v: u32| u64::from((v >> 4) & 0x3fff);
        field14(self.start)
            | field14(self.leading_byte_offset) << 16
            | field14(self.stride_byte_offset) << 32
            | u64::from(self.base_offset & 7) << 49
            | Self::swizzle_field(self.swizzle) << 62
    }
}

/// How one shared tile feeds wgmma as an operand: its descriptor with the start relative to
/// the tile (the lowering adds the tile's address), and where each instruction's start is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OperandPlan {
    pub major: Major,
    pub desc: Sm90Descriptor,
    /// The swizzle span S in bytes (the width of a piece).
    span: u32,
    /// Bytes from one piece of the tile to the next.
    piece: u32,
    /// Bytes per element.
    es: u32,
}

impl OperandPlan {
    /// The start, relative to the tile, of the instruction reading k-step `ks` (K from
    /// `16·ks`) and M/N from `mn0` (a multiple of 8, and for an MN-major operand of a piece).
    pub fn start(&self, ks: u32, mn0: u32) -> u32 {
        let (span, piece) = (self.span, self.piece);
        match self.major {
            // 32 bytes along the row per k-step, into the next piece past the span; 8-row groups
            // of M/N 8·S apart.
            Major::K => {
                let k0 = ks * WGMMA_K * self.es;
                (k0 / span) * piece + k0 % span + (mn0 / 8) * 8 * span
            }
            // 16 rows of S bytes per k-step; M/N in whole pieces.
            Major::MN => ks * WGMMA_K * span + (mn0 * self.es / span) * piece,
        }
    }
}

/// The canonical-layout plan of a shared tile of `rows × cols` elements of `es` bytes with
/// swizzle `swz` read `major` (K-major: rows are M or N, columns K; MN-major: rows are K,
/// columns M or N), or why it is not canonical.
///
/// The tile is pieces of `w` bytes per row ([`layout::shared_piece_bytes`]), piece `p` at
/// `p·rows·w`, each row-major and swizzled on its offset; shared tiles holding a swizzle start
/// 1024-byte aligned in a 1024-byte aligned buffer, so offsets and absolute addresses swizzle
/// alike (the descriptor's base offset stays 0). With `w` the swizzle span S:
/// - K-major: the canonical layout is 8-row × S-byte atoms, 8-row groups `SBO = 8·S` apart,
///   K running along the row (LBO unused for swizzled K-major); a k-step of 16 advances the
///   start 32 bytes inside the row (the hardware swizzles the address it forms, as the tile
///   placement does) and K beyond the piece is the next piece.
/// - MN-major: atoms of S bytes of M/N × 8 rows of K, `SBO = 8·S` from one 8 of K to the next,
///   `LBO = rows·S` from one S-wide piece of M/N to the next; a k-step is 16 rows.
///
/// Unswizzled tiles are never canonical: their 8-row core matrices would need 16-byte rows.
pub(crate) fn operand_plan(
    major: Major,
    swz: Swizzle,
    rows: u32,
    cols: u32,
    es: u32,
) -> Result<OperandPlan, String> {
    let row_bytes = cols * es;
    let w = layout::shared_piece_bytes(swz, row_bytes);
    let span = match swz {
        Swizzle::None => return Err("an unswizzled shared tile".into()),
        Swizzle::B32 => 32,
        Swizzle::B64 => 64,
        Swizzle::B128 => 128,
    };
    if w != span {
        return Err(format!(
            "rows of {row_bytes} bytes stored in pieces of {w} with a {span}-byte swizzle (wgmma's canonical layouts need pieces as wide as the swizzle)"
        ));
    }
    if rows % 8 != 0 {
        return Err(format!("{rows} rows (a multiple of 8 is canonical)"));
    }
    let plan = match major {
        Major::K => OperandPlan {
            major,
            desc: Sm90Descriptor {
                start: 0,
                leading_byte_offset: 16,
                stride_byte_offset: 8 * span,
                base_offset: 0,
                swizzle: swz,
            },
            span,
            piece: rows * w,
            es,
        },
        Major::MN => OperandPlan {
            major,
            desc: Sm90Descriptor {
                start: 0,
                leading_byte_offset: rows * w,
                stride_byte_offset: 8 * span,
                base_offset: 0,
                swizzle: swz,
            },
            span,
            piece: rows * w,
            es,
        },
    };
    // The fields hold 14 bits of 16-byte units.
    if plan.desc.leading_byte_offset >= 1 << 18 || plan.desc.stride_byte_offset >= 1 << 18 {
        return Err(format!(
            "a tile of {rows} rows: LBO past the descriptor field"
        ));
    }
    Ok(plan)
}

/// The loop-carried accumulators of a function that start at zero without being materialized
/// (see the module documentation), found by [`Lowerer::wgmma_zero_starts`] at their loop.
#[derive(Debug, Default)]
pub(crate) struct ZeroStarts {
    /// The loop's region argument (the C of the first `mma_async`) → the loop's induction
    /// variable and lower bound: the mma is the chain's first when they are equal.
    first: HashMap<Value, (String, String)>,
    /// The loop's result → its bounds: the loop ran no iteration (the accumulator holds no
    /// value and its wait writes zeros) unless lower < upper.
    ran: HashMap<Value, (String, String)>,
}

/// Calls `f` on every op of `r` and of the regions nested in it.
fn walk_ops(r: &Region, f: &mut dyn FnMut(&Op)) {
    for op in &r.ops {
        f(op);
        for inner in &op.regions {
            walk_ops(inner, f);
        }
    }
}

/// Where one wgmma's A comes from.
enum AOperand {
    /// A descriptor of the group's shared tile and its plan.
    Shared(String, OperandPlan),
    /// This warp's registers of op(A), stored `dims`, in the variant's layout.
    Regs(Vec<String>, (u32, u32)),
}

impl Lowerer<'_> {
    /// A warpgroup-scope `mma` on sm_90a whose operands qualify (see the module documentation)
    /// as wgmma; `Ok(false)`, having emitted nothing, for one that does not.
    pub(super) fn try_wgmma(&mut self, op: &Op) -> R<bool> {
        let OpKind::Mma(v) = op.kind else {
            return Ok(false);
        };
        let done = self.wgmma_op(op, v, Completion::Wait)?;
        if !done
            && self
                .ty(op.operands[1])
                .dtype()
                .is_some_and(ScalarType::is_fp8)
        {
            // mma.sync's fp8 form (m16n8k32) has other fragments than the 16-bit one the
            // warp-scope lowering builds: fp8 products run on wgmma only.
            return Err(self.unsupported(op, FP8_WGMMA_ONLY));
        }
        Ok(done)
    }

    /// The flattened initial values `names` of `for` op `op` (induction variable `iv`, bounds
    /// `lo..hi`), with every zero-started wgmma accumulator (see the module documentation)
    /// replaced by undefined registers, and those accumulators recorded for the `mma_async` and
    /// the `mma_wait`s that [`ZeroStarts`] says read them. An accumulator qualifies when, on
    /// sm_90a, it is an f32 register tile from `fill[0.0]`, its region argument's one use in the
    /// function is as the C of a warpgroup `mma_async` directly in the loop body (so that mma runs
    /// in every iteration, the first included, and nothing else reads the undefined value), and
    /// every use of the loop's result is an `mma_wait` (which writes the zeros of a zero-trip
    /// loop).
    pub(super) fn wgmma_zero_starts(
        &mut self,
        op: &Op,
        mut names: Vec<String>,
        iv: &str,
        (lo, hi): (&str, &str),
    ) -> Vec<String> {
        if self.target != Target::Sm90a {
            return names;
        }
        let body = &op.regions[0];
        let mut offset = 0;
        for (k, &init) in op.operands[3..].iter().enumerate() {
            let width = match self.vals.get(&init) {
                Some(Lv::Scalar(_)) => 1,
                Some(Lv::Regs(r)) => r.len(),
                _ => 0,
            };
            let (Some(&arg), Some(&res)) = (body.args.get(1 + k), op.results.get(k)) else {
                break;
            };
            if width > 0 && self.zero_started(init, arg, res, body) {
                let undef = self.e.op("llvm.mlir.undef : f32");
                for n in &mut names[offset..offset + width] {
                    *n = undef.clone();
                }
                let z = &mut self.wgmma_zero_starts;
                z.first.insert(arg, (iv.to_string(), lo.to_string()));
                z.ran.insert(res, (lo.to_string(), hi.to_string()));
            }
            offset += width;
        }
        names
    }

    /// Whether loop-carried value `init` → region argument `arg` → result `res` of a loop with
    /// body `body` is a zero-started accumulator (see [`Self::wgmma_zero_starts`]).
    fn zero_started(&self, init: Value, arg: Value, res: Value, body: &Region) -> bool {
        if !matches!(
            self.ty(init),
            Type::Tile {
                dtype: ScalarType::F32,
                ..
            }
        ) {
            return false;
        }
        let mut zero_fill = false;
        let mut arg_uses = 0;
        let mut res_uses_ok = true;
        walk_ops(&self.func.body, &mut |o| {
            if o.results.contains(&init) {
                zero_fill = matches!(o.kind, OpKind::Fill(v) if v == 0.0);
            }
            arg_uses += o.operands.iter().filter(|&&x| x == arg).count();
            if o.operands.contains(&res) && !matches!(o.kind, OpKind::MmaWait(_)) {
                res_uses_ok = false;
            }
        });
        let first_mma = body.ops.iter().any(|o| {
            matches!(o.kind, OpKind::MmaAsync(_))
                && o.scope == Scope::Warpgroup
                && o.operands.get(2) == Some(&arg)
                && o.operands.iter().filter(|&&x| x == arg).count() == 1
        });
        zero_fill && res_uses_ok && arg_uses == 1 && first_mma
    }

    /// `mma_async`, `mma_commit` and `mma_wait` (see the module documentation).
    pub(super) fn mma_async_family(&mut self, op: &Op) -> R<()> {
        let sm90 = self.target == Target::Sm90a;
        match op.kind {
            OpKind::MmaAsync(v) if sm90 => {
                if !self.wgmma_op(op, v, Completion::Async)? {
                    return Err(self.unsupported(
                        op,
                        "mma_async needs bf16 or f16 operands with A and B in canonical swizzled shared layouts and 16 rows of C per warp (the verifier checks these)",
                    ));
                }
                Ok(())
            }
            OpKind::MmaAsync(v) => {
                let sync = Op {
                    kind: OpKind::Mma(v),
                    ..op.clone()
                };
                self.mma(&sync)
            }
            OpKind::MmaCommit => {
                if sm90 {
                    self.e.line(
                        "llvm.inline_asm has_side_effects \"wgmma.commit_group.sync.aligned;\", \"\" : () -> ()",
                    );
                }
                Ok(())
            }
            OpKind::MmaWait(n) => {
                let regs: Vec<Vec<String>> = op.operands.iter().map(|&v| self.regs(v)).collect();
                if !sm90 {
                    for (&r, rs) in op.results.iter().zip(regs) {
                        self.set(r, Lv::Regs(rs));
                    }
                    return Ok(());
                }
                // Zero-started accumulators of a loop that may have run no iteration: the
                // predicate "it ran" per operand, its zeros written after the wait when false.
                let ran: Vec<Option<String>> = op
                    .operands
                    .iter()
                    .map(|v| {
                        let (lo, hi) = self.wgmma_zero_starts.ran.get(v)?.clone();
                        Some(self.e.op(&format!("arith.cmpi slt, {lo}, {hi} : i32")))
                    })
                    .collect();
                let mut zero_if = Vec::new();
                for (rs, p) in regs.iter().zip(ran) {
                    zero_if.extend(std::iter::repeat_n(p, rs.len()));
                }
                let all: Vec<String> = regs.iter().flatten().cloned().collect();
                let out = self.wgmma_wait_asm(n, &all, &zero_if);
                let mut k = 0;
                for (&r, rs) in op.results.iter().zip(&regs) {
                    self.set(r, Lv::Regs(out[k..k + rs.len()].to_vec()));
                    k += rs.len();
                }
                Ok(())
            }
            _ => unreachable!("dispatched by kind"),
        }
    }

    /// `wgmma.wait_group n` with the f32 registers `regs` tied through it; their values after
    /// the wait. Register `k` with `zero_unless[k]` = `Some(p)` is set to 0.0 after the wait
    /// when the i1 `p` is false (a zero-started accumulator whose loop ran no iteration).
    fn wgmma_wait_asm(
        &mut self,
        n: u32,
        regs: &[String],
        zero_unless: &[Option<String>],
    ) -> Vec<String> {
        let mut text = format!("wgmma.wait_group.sync.aligned {n};");
        if regs.is_empty() {
            self.e.line(&format!(
                "llvm.inline_asm has_side_effects \"{text}\", \"\" : () -> ()"
            ));
            return Vec::new();
        }
        let nd = regs.len();
        let mut cons: Vec<String> = vec!["=f".into(); nd];
        cons.extend((0..nd).map(|i| i.to_string()));
        let mut args: Vec<String> = regs.to_vec();
        let mut tys: Vec<&str> = vec!["f32"; nd];
        // One predicate operand per distinct loop, after the tied inputs.
        let mut preds: Vec<String> = Vec::new();
        for (k, p) in zero_unless.iter().enumerate() {
            let Some(p) = p else { continue };
            let q = match preds.iter().position(|x| x == p) {
                Some(q) => q,
                None => {
                    preds.push(p.clone());
                    args.push(p.clone());
                    tys.push("i1");
                    cons.push("b".into());
                    preds.len() - 1
                }
            };
            text.push_str(&format!("\\0A\\09@!${} mov.b32 ${k}, 0;", 2 * nd + q));
        }
        let st = format!("!llvm.struct<({})>", vec!["f32"; nd].join(", "));
        let res = self.e.op(&format!(
            "llvm.inline_asm has_side_effects \"{text}\", \"{}\" {} : ({}) -> {st}",
            cons.join(","),
            args.join(", "),
            tys.join(", ")
        ));
        (0..nd)
            .map(|q| self.e.op(&format!("llvm.extractvalue {res}[{q}] : {st}")))
            .collect()
    }

    /// A qualifying warpgroup mma as wgmma, completed as `done` says; `Ok(false)`, having
    /// emitted nothing, for one that does not qualify.
    fn wgmma_op(&mut self, op: &Op, v: MmaVariant, done: Completion) -> R<bool> {
        if self.target != Target::Sm90a || op.scope != Scope::Warpgroup {
            return Ok(false);
        }
        // The asynchronous form reads A through a descriptor only: registers of a register A
        // would have to stay unchanged until the wait, which nothing here guarantees.
        if done == Completion::Async && !self.ty(op.operands[0]).is_shared() {
            return Ok(false);
        }
        let (a, b, c) = (op.operands[0], op.operands[1], op.operands[2]);
        let Type::Tile {
            rows: m,
            cols: n,
            dtype: ScalarType::F32,
            ..
        } = self.ty(c).clone()
        else {
            return Ok(false);
        };
        let Type::SharedTile {
            dtype,
            rows: b_rows,
            cols: b_cols,
            swizzle: b_swz,
        } = self.ty(b).clone()
        else {
            return Ok(false);
        };
        let a_dtype = self.ty(a).dtype().unwrap_or(dtype);
        // fp8 (either format on each side) reads both operands K-major through descriptors.
        let fp8 = dtype.is_fp8() && a_dtype.is_fp8();
        if fp8 && (v != MmaVariant::ABt || !self.ty(a).is_shared()) {
            return Ok(false);
        }
        if !fp8 && (!matches!(dtype, ScalarType::BF16 | ScalarType::F16) || a_dtype != dtype) {
            return Ok(false);
        }
        let es = dtype.size_bytes();
        // B stored K×N is N-major; Bᵀ stored N×K is K-major.
        let (b_major, k) = if v.b_transposed() {
            (Major::K, b_cols)
        } else {
            (Major::MN, b_rows)
        };
        let Ok(b_plan) = operand_plan(b_major, b_swz, b_rows, b_cols, es) else {
            return Ok(false);
        };
        let a_val = self.wgmma_a(op, v, a, m)?;
        if (done == Completion::Async || fp8) && !matches!(a_val, AOperand::Shared(..)) {
            return Ok(false);
        }
        let b_base = self.wgmma_descriptor(b, &b_plan);
        // A zero-started accumulator's first mma: `scale-d` false in the loop's first iteration.
        let first_scale = match (done, self.wgmma_zero_starts.first.get(&c)) {
            (Completion::Async, Some((iv, lo))) => {
                let (iv, lo) = (iv.clone(), lo.clone());
                Some(self.e.op(&format!("arith.cmpi ne, {iv}, {lo} : i32")))
            }
            _ => None,
        };

        let mut rc = self.regs(c);
        self.e.line(
            "llvm.inline_asm has_side_effects \"fence.proxy.async.shared::cta;\", \"\" : () -> ()",
        );
        let name = |d: ScalarType| match d {
            ScalarType::BF16 => "bf16",
            ScalarType::F16 => "f16",
            ScalarType::F8E4M3 => "e4m3",
            _ => "e5m2",
        };
        // One instruction's K: 16 elements of 16-bit types, 32 of fp8 (32 bytes either way).
        let k_instr = if fp8 { 2 * WGMMA_K } else { WGMMA_K };
        let kind = format!("k{k_instr}.f32.{}.{}", name(a_dtype), name(dtype));
        let t = super::mty(dtype);
        for mi in 0..m / 16 {
            let mut n0 = 0;
            while n0 < n {
                let nn = (n - n0).min(WGMMA_MAX_N);
                let d: Vec<u32> = (0..nn / 2)
                    .map(|r| layout::wgmma_d_tile_reg(n, mi, n0, r))
                    .collect();
                let mut steps = Vec::new();
                for ks in 0..k / k_instr {
                    // `start` counts k-steps of 16 elements; an fp8 step is two of them.
                    let ks_16 = ks * (k_instr / WGMMA_K);
                    let a_op = match &a_val {
                        AOperand::Shared(base, plan) => {
                            WgA::Desc(self.advance(base, plan.start(ks_16, 0)))
                        }
                        AOperand::Regs(regs, dims) => {
                            let idx = layout::wgmma_a_tile_regs(v, *dims, mi, ks);
                            let r = |i: usize| regs[idx[i] as usize].clone();
                            WgA::Regs(
                                (0..4)
                                    .map(|p| Nvidia::pack(&mut self.e, t, &r(2 * p), &r(2 * p + 1)))
                                    .collect(),
                            )
                        }
                    };
                    let bd = self.advance(&b_base, b_plan.start(ks_16, n0));
                    steps.push((a_op, bd));
                }
                let a_major = match &a_val {
                    AOperand::Shared(_, plan) => Some(plan.major),
                    AOperand::Regs(..) => None,
                };
                let out = self.wgmma_asm(
                    &kind,
                    nn,
                    (&d, &rc, first_scale.as_deref()),
                    &steps,
                    (a_major, b_major),
                    done,
                );
                for (q, &ci) in d.iter().enumerate() {
                    rc[ci as usize] = out[q].clone();
                }
                n0 += nn;
            }
        }
        self.set(op.results[0], Lv::Regs(rc));
        Ok(true)
    }

    /// op(A) of a qualifying op: a descriptor of the group's shared tile where each warp owns 16
    /// rows and the tile is canonical, else this warp's rows of op(A) in registers (loaded from
    /// a shared A as `mma.sync` loads them).
    fn wgmma_a(&mut self, op: &Op, v: MmaVariant, a: Value, m: u32) -> R<AOperand> {
        let expect = if v.a_transposed() {
            Layout::Col
        } else {
            Layout::Row
        };
        if let Type::SharedTile {
            rows,
            cols,
            swizzle,
            dtype,
        } = self.ty(a).clone()
        {
            // A stored M×K is K-major; Aᵀ stored K×M is M-major.
            let major = if v.a_transposed() {
                Major::MN
            } else {
                Major::K
            };
            if m * 4 == WGMMA_M {
                if let Ok(plan) = operand_plan(major, swizzle, rows, cols, dtype.size_bytes()) {
                    let base = self.wgmma_descriptor(a, &plan);
                    return Ok(AOperand::Shared(base, plan));
                }
            }
        }
        let (_, dims, regs) = self.mma_operand(op, a, expect, Some(m), true)?;
        Ok(AOperand::Regs(regs, dims))
    }

    /// The descriptor (i64) of shared tile `v` read as `plan` says, its start at the tile.
    fn wgmma_descriptor(&mut self, v: Value, plan: &OperandPlan) -> String {
        let off = self.shared_off(v);
        let p = self.shared_ptr(&off);
        let addr = self
            .e
            .op(&format!("llvm.ptrtoint {p} : !llvm.ptr<3> to i32"));
        let four = self.e.i32(4);
        let units = self.e.op(&format!("arith.shrui {addr}, {four} : i32"));
        let mask = self.e.i32(0x3fff);
        let units = self.e.op(&format!("arith.andi {units}, {mask} : i32"));
        let wide = self.e.op(&format!("arith.extui {units} : i32 to i64"));
        let high = self.e.i64(plan.desc.encode() as i64);
        self.e.op(&format!("arith.ori {wide}, {high} : i64"))
    }

    /// Descriptor `base` with its start advanced by `bytes` (a multiple of 16 that keeps the
    /// start inside its 14-bit field: shared memory is below 256 KiB).
    fn advance(&mut self, base: &str, bytes: u32) -> String {
        if bytes == 0 {
            return base.to_string();
        }
        let k = self.e.i64(i64::from(bytes >> 4));
        self.e.op(&format!("arith.addi {base}, {k} : i64"))
    }

    /// One inline-asm sequence: `wgmma.fence`, a `wgmma.mma_async.m64n{nn}{kind}` per step (all
    /// accumulating into the same registers, tied to the tile's registers `d` of `rc`), then
    /// for [`Completion::Wait`] `commit_group` and `wait_group 0`. The first step's `scale-d`
    /// is the i1 `first_scale` where given (false: D = A·B), every other's true. Returns the
    /// new values of `d` (for [`Completion::Async`] still being written: only a tied
    /// `wgmma.wait_group` or another wgmma may take them).
    fn wgmma_asm(
        &mut self,
        kind: &str,
        nn: u32,
        (d, rc, first_scale): (&[u32], &[String], Option<&str>),
        steps: &[(WgA, String)],
        (a_major, b_major): (Option<Major>, Major),
        done: Completion,
    ) -> Vec<String> {
        let nd = d.len();
        let mut cons: Vec<String> = vec!["=f".into(); nd];
        cons.extend((0..nd).map(|i| i.to_string()));
        let mut args: Vec<String> = d.iter().map(|&i| rc[i as usize].clone()).collect();
        let mut tys: Vec<&str> = vec!["f32"; nd];
        // `scale-d` = true: D = A·B + D.
        let p = self.e.hoist("arith.constant true");
        args.push(p);
        tys.push("i1");
        cons.push("b".into());
        let pred = 2 * nd;
        let mut next = 2 * nd + 1;
        let first_pred = first_scale.map(|f| {
            args.push(f.to_string());
            tys.push("i1");
            cons.push("b".into());
            next += 1;
            next - 1
        });
        let dlist = (0..nd)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut text = String::from("wgmma.fence.sync.aligned;");
        for (step, (a, bd)) in steps.iter().enumerate() {
            let scale = match first_pred {
                Some(q) if step == 0 => q,
                _ => pred,
            };
            let a_text = match a {
                WgA::Desc(x) => {
                    args.push(x.clone());
                    tys.push("i64");
                    cons.push("l".into());
                    next += 1;
                    format!("${}", next - 1)
                }
                WgA::Regs(rs) => {
                    let first = next;
                    for r in rs {
                        args.push(r.clone());
                        tys.push("i32");
                        cons.push("r".into());
                        next += 1;
                    }
                    format!(
                        "{{${}, ${}, ${}, ${}}}",
                        first,
                        first + 1,
                        first + 2,
                        first + 3
                    )
                }
            };
            args.push(bd.clone());
            tys.push("i64");
            cons.push("l".into());
            let b_text = format!("${next}");
            next += 1;
            // imm-scale-a, imm-scale-b = 1; imm-trans-a only in the descriptor-A form, and
            // neither imm-trans for fp8 (its operands are K-major by definition).
            let trans = match a_major {
                _ if kind.contains("e4m3") || kind.contains("e5m2") => String::new(),
                Some(am) => format!(", {}, {}", am.imm_trans(), b_major.imm_trans()),
                None => format!(", {}", b_major.imm_trans()),
            };
            text.push_str(&format!(
                "\\0A\\09wgmma.mma_async.sync.aligned.m64n{nn}{kind} {{{dlist}}}, {a_text}, {b_text}, ${scale}, 1, 1{trans};"
            ));
        }
        if done == Completion::Wait {
            text.push_str(
                "\\0A\\09wgmma.commit_group.sync.aligned;\\0A\\09wgmma.wait_group.sync.aligned 0;",
            );
        }
        let st = format!("!llvm.struct<({})>", vec!["f32"; nd].join(", "));
        let res = self.e.op(&format!(
            "llvm.inline_asm has_side_effects \"{text}\", \"{}\" {} : ({}) -> {st}",
            cons.join(","),
            args.join(", "),
            tys.join(", ")
        ));
        (0..nd)
            .map(|q| self.e.op(&format!("llvm.extractvalue {res}[{q}] : {st}")))
            .collect()
    }
}

/// How a lowered wgmma completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Completion {
    /// The synchronous `mma`: commit and `wait_group 0` in the same inline asm.
    Wait,
    /// `mma_async`: issued only; the IR's `mma_commit` and `mma_wait` complete it.
    Async,
}

/// The A operand of one wgmma instruction, lowered.
enum WgA {
    Desc(String),
    Regs(Vec<String>),
}

#[cfg(test)]
mod tests {
    //! Lane-level simulations of the lowering's data against the PTX ISA, read here
    //! independently of the encoder: descriptor bits → the address of every element of every
    //! instruction, against the tile placement of [`layout::shared_tile_offset`]; the
    //! accumulator and register-A fragments against the IR's register tiles.

    use super::*;
    use crate::layout::Frag;

    const SWIZZLES: [Swizzle; 3] = [Swizzle::B32, Swizzle::B64, Swizzle::B128];

    /// The shared address of element (mn, k) (mn: row of A or column of B; k < 16) of the
    /// operand that descriptor `bits` names, laid out `major`, from the PTX ISA: *Matrix
    /// Descriptor Format* for the fields; *Shared Memory Matrix Layout* for the canonical
    /// layouts, in units of core matrices (8 rows × 16 bytes): a K-major swizzled atom is 8 rows
    /// of S bytes along K, atoms `SBO` apart along M/N (LBO unused); an MN-major swizzled atom
    /// is S bytes of M/N × 8 rows along K, atoms `LBO` apart along M/N and `SBO` apart along K;
    /// the swizzle XORs the 16-byte chunk index (bits 4..) with the row within the pattern
    /// (bits 7..) of the address formed. `None` for a descriptor this reading does not cover
    /// (no swizzle; a nonzero base offset, which only unaligned starts need).
    fn isa_address(bits: u64, major: Major, es: u32, mn: u32, k: u32) -> Option<u32> {
        let start = ((bits & 0x3fff) << 4) as u32;
        let lbo = (((bits >> 16) & 0x3fff) << 4) as u32;
        let sbo = (((bits >> 32) & 0x3fff) << 4) as u32;
        let base_offset = (bits >> 49) & 7;
        let (span, xor_bits) = match bits >> 62 {
            1 => (128, 3),
            2 => (64, 2),
            3 => (32, 1),
            _ => return None,
        };
        if base_offset != 0 {
            return None;
        }
        let off = match major {
            Major::K => (mn % 8) * span + (mn / 8) * sbo + k * es,
            Major::MN => {
                let per_row = span / es;
                (mn % per_row) * es + (mn / per_row) * lbo + (k % 8) * span + (k / 8) * sbo
            }
        };
        let a = start + off;
        let mask = ((1u32 << xor_bits) - 1) << 4;
        Some(a ^ ((a >> 3) & mask))
    }

    /// A shared tile in a test: stored `rows × cols` of `es`-byte elements, read `major`.
    #[derive(Clone, Copy, Debug)]
    struct Tile {
        major: Major,
        swz: Swizzle,
        rows: u32,
        cols: u32,
        es: u32,
    }

    impl Tile {
        /// (M/N extent, K extent).
        fn extents(self) -> (u32, u32) {
            match self.major {
                Major::K => (self.rows, self.cols),
                Major::MN => (self.cols, self.rows),
            }
        }

        /// Where the lowering's placement puts element (mn, k), relative to the tile.
        fn placed(self, mn: u32, k: u32) -> u32 {
            let (row, col) = match self.major {
                Major::K => (mn, k),
                Major::MN => (k, mn),
            };
            layout::shared_tile_offset(self.swz, self.rows, self.cols * self.es, row, col * self.es)
        }
    }

    /// Every canonical tile the library's shapes give: K-major with rows of one swizzle span
    /// (and, with the 128-byte swizzle, of several 128-byte pieces), MN-major likewise.
    fn canonical_tiles() -> Vec<Tile> {
        let mut v = Vec::new();
        for swz in SWIZZLES {
            let span = match swz {
                Swizzle::B32 => 32,
                Swizzle::B64 => 64,
                _ => 128,
            };
            for es in [2u32] {
                let wide: &[u32] = if swz == Swizzle::B128 {
                    &[1, 2, 4]
                } else {
                    &[1]
                };
                for &pieces in wide {
                    let cols = pieces * span / es;
                    for rows in [64, 128, 256] {
                        v.push(Tile {
                            major: Major::K,
                            swz,
                            rows,
                            cols,
                            es,
                        });
                    }
                    for rows in [16, 32, 64] {
                        v.push(Tile {
                            major: Major::MN,
                            swz,
                            rows,
                            cols,
                            es,
                        });
                    }
                }
            }
        }
        v
    }

    /// The descriptor of the instruction reading k-step `ks`, M/N from `mn0`, of a tile at
    /// shared address `base`.
    fn descriptor(plan: &OperandPlan, base: u32, ks: u32, mn0: u32) -> Sm90Descriptor {
        Sm90Descriptor {
            start: base + plan.start(ks, mn0),
            ..plan.desc
        }
    }

    /// Element-by-element disagreements between the ISA reading of `desc` and the placement,
    /// over the instruction's `mn_len × 16` elements from (mn0, 16·ks).
    fn mismatches(
        t: Tile,
        desc: &Sm90Descriptor,
        base: u32,
        ks: u32,
        mn0: u32,
        mn_len: u32,
    ) -> usize {
        let bits = desc.encode();
        let mut bad = 0;
        for mn in 0..mn_len {
            for k in 0..WGMMA_K {
                let want = base + t.placed(mn0 + mn, WGMMA_K * ks + k);
                if isa_address(bits, t.major, t.es, mn, k) != Some(want) {
                    bad += 1;
                }
            }
        }
        bad
    }

    /// The instructions of a tile: (k-step, mn0, mn extent) — M/N in chunks of at most 256 (64
    /// for an A operand, which is where 64-row K-major tiles are used).
    fn instructions(t: Tile) -> Vec<(u32, u32, u32)> {
        let (mn_ext, k_ext) = t.extents();
        let mut v = Vec::new();
        for ks in 0..k_ext / WGMMA_K {
            let mut mn0 = 0;
            while mn0 < mn_ext {
                let len = (mn_ext - mn0).min(WGMMA_MAX_N);
                v.push((ks, mn0, len));
                mn0 += len;
            }
        }
        v
    }

    #[test]
    fn descriptor_fields_sit_at_the_isa_bit_positions() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |bound: u32| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % u64::from(bound)) as u32
        };
        for _ in 0..500 {
            let swizzle =
                [Swizzle::None, Swizzle::B32, Swizzle::B64, Swizzle::B128][next(4) as usize];
            let d = Sm90Descriptor {
                start: next(0x4000) << 4,
                leading_byte_offset: next(0x4000) << 4,
                stride_byte_offset: next(0x4000) << 4,
                base_offset: next(8),
                swizzle,
            };
            let bits = d.encode();
            assert_eq!((bits & 0x3fff) << 4, u64::from(d.start));
            assert_eq!(
                ((bits >> 16) & 0x3fff) << 4,
                u64::from(d.leading_byte_offset)
            );
            assert_eq!(
                ((bits >> 32) & 0x3fff) << 4,
                u64::from(d.stride_byte_offset)
            );
            assert_eq!((bits >> 49) & 7, u64::from(d.base_offset));
            let mode = match swizzle {
                Swizzle::None => 0,
                Swizzle::B128 => 1,
                Swizzle::B64 => 2,
                Swizzle::B32 => 3,
            };
            assert_eq!(bits >> 62, mode);
            // Reserved bits 14–15, 30–31, 46–48 and 52–61 stay zero.
            assert_eq!(
                bits & (0b11 << 14 | 0b11 << 30 | 0b111 << 46 | 0x3ff << 52),
                0
            );
        }
    }

    #[test]
    fn descriptors_address_every_element_where_the_tile_placement_puts_it() {
        let base = 0x2400; // 1024-byte aligned, as swizzled tiles are placed
        let mut checked = 0;
        for t in canonical_tiles() {
            let plan = operand_plan(t.major, t.swz, t.rows, t.cols, t.es)
                .unwrap_or_else(|e| panic!("{t:?} is canonical: {e}"));
            for (ks, mn0, len) in instructions(t) {
                let d = descriptor(&plan, base, ks, mn0);
                let bad = mismatches(t, &d, base, ks, mn0, len);
                assert_eq!(
                    bad, 0,
                    "{t:?} k-step {ks} from {mn0}: {bad} elements elsewhere"
                );
                checked += 1;
            }
        }
        assert!(checked > 100, "{checked} instructions checked");
    }

    #[test]
    fn changing_any_descriptor_field_the_layout_uses_misaddresses_elements() {
        let base = 0x2400;
        for t in canonical_tiles() {
            let plan = operand_plan(t.major, t.swz, t.rows, t.cols, t.es).unwrap();
            let (mn_ext, _) = t.extents();
            // LBO places M/N pieces of an MN-major operand: used when one instruction spans
            // more than one piece. K-major swizzled layouts do not read it (PTX ISA).
            let span = plan.span;
            let lbo_used = t.major == Major::MN && mn_ext.min(WGMMA_MAX_N) * t.es > span;
            // The second k-step where there is one: its start is inside a swizzled row.
            let ks = if t.extents().1 > WGMMA_K { 1 } else { 0 };
            let good = descriptor(&plan, base, ks, 0);
            let len = mn_ext.min(WGMMA_MAX_N);
            assert_eq!(mismatches(t, &good, base, ks, 0, len), 0, "{t:?}");
            let mut variants = vec![
                (
                    "start + 16",
                    Sm90Descriptor {
                        start: good.start + 16,
                        ..good
                    },
                ),
                (
                    "start + 128",
                    Sm90Descriptor {
                        start: good.start + 128,
                        ..good
                    },
                ),
                (
                    "SBO × 2",
                    Sm90Descriptor {
                        stride_byte_offset: 2 * good.stride_byte_offset,
                        ..good
                    },
                ),
                (
                    "base offset 1",
                    Sm90Descriptor {
                        base_offset: 1,
                        ..good
                    },
                ),
            ];
            for s in [Swizzle::None, Swizzle::B32, Swizzle::B64, Swizzle::B128] {
                if s != good.swizzle {
                    variants.push(("another swizzle", Sm90Descriptor { swizzle: s, ..good }));
                }
            }
            if lbo_used {
                variants.push((
                    "LBO + 1024",
                    Sm90Descriptor {
                        leading_byte_offset: good.leading_byte_offset + 1024,
                        ..good
                    },
                ));
            }
            for (what, d) in variants {
                assert!(
                    mismatches(t, &d, base, ks, 0, len) > 0,
                    "{t:?}: {what} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn tiles_outside_the_canonical_layouts_are_refused() {
        // Unswizzled; rows of two 32-byte spans with the 32-byte swizzle; 128-byte rows with the
        // 64-byte swizzle; 192-byte rows (not whole 128-byte pieces).
        for (swz, cols) in [
            (Swizzle::None, 64),
            (Swizzle::B32, 32),
            (Swizzle::B64, 64),
            (Swizzle::B128, 96),
        ] {
            for major in [Major::K, Major::MN] {
                assert!(
                    operand_plan(major, swz, 64, cols, 2).is_err(),
                    "{swz:?} {cols} cols"
                );
            }
        }
    }

    #[test]
    fn the_wgmma_accumulator_is_the_row_tiles_registers_in_order() {
        let f = Frag::MmaSync;
        for n in [16, 48, 64, 128, 256, 320] {
            for rows in [16, 32] {
                for mi in 0..rows / 16 {
                    let mut n0 = 0;
                    while n0 < n {
                        let nn = (n - n0).min(WGMMA_MAX_N);
                        for thread in 0..128 {
                            let (w, lane) = (thread / 32, thread % 32);
                            for reg in 0..nn / 2 {
                                let (r, c) = layout::wgmma_d_position(thread, reg);
                                // Warp w's rows of the instruction are its tile's rows 16·mi ..
                                assert_eq!(r / 16, w);
                                let e = layout::wgmma_d_tile_reg(n, mi, n0, reg);
                                let (tr, tc) = f.tile_elem(Layout::Row, n, e);
                                assert_eq!(
                                    (tr.at(f, lane), tc.at(f, lane)),
                                    (16 * mi + r % 16, n0 + c),
                                    "n {n} rows {rows} mi {mi} n0 {n0} thread {thread} reg {reg}"
                                );
                            }
                        }
                        n0 += nn;
                    }
                }
            }
        }
    }

    /// PTX ISA, "WGMMA .m64nNk16 register fragment layout for matrix A": per warp, `a_i` of
    /// `.b32` register `i / 2`'s half `i % 2` at row `g + 8·((i / 2) mod 2)`, column
    /// `8·(i / 4) + 2t + i mod 2` of the warp's 16 rows.
    #[test]
    fn register_a_operands_are_the_isa_fragment_of_op_a() {
        let f = Frag::MmaSync;
        for (v, dims) in [
            (MmaVariant::AB, (16, 64)),
            (MmaVariant::ABt, (32, 32)),
            (MmaVariant::AtB, (64, 16)),
            (MmaVariant::AtBt, (32, 32)),
        ] {
            let layout = if v.a_transposed() {
                Layout::Col
            } else {
                Layout::Row
            };
            let (m, k) = if v.a_transposed() {
                (dims.1, dims.0)
            } else {
                dims
            };
            for mi in 0..m / 16 {
                for ki in 0..k / 16 {
                    let regs = layout::wgmma_a_tile_regs(v, dims, mi, ki);
                    for lane in 0..32 {
                        let (g, t) = (lane / 4, lane % 4);
                        for i in 0..8u32 {
                            let want = (g + 8 * ((i / 2) % 2), 8 * (i / 4) + 2 * t + i % 2);
                            let (sr, sc) = f.tile_elem(layout, dims.1, regs[i as usize]);
                            let (sr, sc) = (sr.at(f, lane), sc.at(f, lane));
                            // op(A)'s (row, col) of the stored element.
                            let (r, c) = if v.a_transposed() { (sc, sr) } else { (sr, sc) };
                            assert_eq!(
                                (r, c),
                                (16 * mi + want.0, 16 * ki + want.1),
                                "{v:?} {dims:?} ({mi},{ki}) lane {lane} a{i}"
                            );
                        }
                    }
                }
            }
        }
    }
}
