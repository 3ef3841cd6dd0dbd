//! AMD CDNA targets (`gfx90a`, `gfx942`, `gfx950`): the lowering's rules for wave64 and MFMA
//! (`Amd`, implementing the lowering's `Rules`), the code object link with `ld.lld` ([`lld`])
//! and the resource report read back from the code object ([`resources`]).
//!
//! The kernel is an `llvm.func` marked `rocdl.kernel` (calling convention `amdgpu_kernel`) with
//! `rocdl.flat_work_group_size` and `rocdl.reqd_work_group_size` set to the block's threads;
//! shared tiles live in one LDS buffer (address space 3), globals in address space 1. Thread
//! coordinates come from `rocdl.workitem.id.x`, a wavefront is 64 lanes (CDNA3 ISA, *Wave64*),
//! cross-lane reductions use `ds_bpermute_b32` (`rocdl.ds_bpermute`: each lane reads the lane
//! whose byte address it gives), barriers are `s_barrier` between work-group-scope release and
//! acquire fences (LLVM AMDGPUUsage, *Memory Model GFX942*: the fences make LDS and global
//! accesses visible across the work-group), and fast math uses LLVM's `llvm.exp2.f32` /
//! `llvm.log2.f32` (`v_exp_f32` / `v_log_f32`) and `llvm.amdgcn.rsq` (`v_rsq_f32`).

pub mod lld;
pub mod resources;

use tilekit_ir::{Dim3, ScalarType};

use crate::layout::{self, Frag, MfmaK};
use crate::lower::emit::Emit;
use crate::lower::mty;
use crate::lower::rules::{HwMath, KernelText, MmaRegs, Rules};
use crate::Target;

/// LDS bytes one work-group may allocate: 64 KiB on gfx90a and gfx942 (CDNA2/CDNA3 ISA, *Local
/// Data Share*), 160 KiB on gfx950 (CDNA4 ISA, *Local Data Share*).
pub fn lds_limit(target: Target) -> u64 {
    match target {
        Target::Gfx950 => 160 * 1024,
        _ => 64 * 1024,
    }
}

/// SIMDs (execution units) of a compute unit: a work-group's wavefronts are spread over them
/// (CDNA3 ISA, *Compute Unit*).
const SIMDS_PER_CU: u64 = 4;

/// The occupancy, in wavefronts per SIMD, that the back end schedules an MFMA kernel for: 2,
/// or 1 where the kernel's LDS leaves room for fewer work-groups than that per compute unit
/// (LDS per compute unit: [`lds_limit`]). Left to itself, LLVM aims for the highest
/// occupancy the LDS allows and shrinks register use to reach it: an attention step at 8
/// wavefronts then reloads one MFMA operand at a time, each behind its own `s_waitcnt`. At
/// two wavefronts per SIMD it keeps a step's operands in flight together (the knob Triton's
/// AMD back end exposes as `waves_per_eu`). The attribute is the range `1,w`: the scheduler aims
/// for `w`, and the register budget stays that of one wavefront (512), so a kernel that needs more
/// than 256 registers runs at one wavefront instead of spilling (`w,w` caps it at 256: the
/// gfx950 warpgroup GEMMs spilled 43–48 registers).
fn mfma_waves_per_eu(target: Target, threads: u32, shared_bytes: u64) -> u64 {
    let waves = u64::from(threads).div_ceil(64);
    let groups = lds_limit(target) / shared_bytes.max(1);
    (groups * waves / SIMDS_PER_CU).clamp(1, 2)
}

/// Vector registers a lane may use: the unified register file of gfx90a and later holds 512
/// per lane at one wave per SIMD, 256 architectural VGPRs plus 256 accumulation VGPRs (AGPRs)
/// (LLVM AMDGPUUsage, *AMDGPU Processors*, "gfx90a: … unified VGPR file").
pub const VGPR_LIMIT: u64 = 512;

/// The rules of an AMD CDNA target.
pub(crate) struct Amd {
    pub target: Target,
}

impl Amd {
    /// `vector<n x t>` of `xs`, built element by element.
    fn vector(e: &mut Emit, t: &str, xs: &[String]) -> String {
        let vt = format!("vector<{}x{t}>", xs.len());
        let mut v = e.hoist(&format!("llvm.mlir.poison : {vt}"));
        for (i, x) in xs.iter().enumerate() {
            let k = e.hoist(&format!("llvm.mlir.constant({i} : i32) : i32"));
            v = e.op(&format!("llvm.insertelement {x}, {v}[{k} : i32] : {vt}"));
        }
        v
    }

    /// `ds_bpermute_b32` of an i32: the value of lane `lane ^ mask`.
    fn bpermute(e: &mut Emit, x: &str, mask: u32) -> String {
        let m = e.i32(i64::from(mask));
        let two = e.i32(2);
        let lane = e.lane.clone();
        let src = e.hoist(&format!("arith.xori {lane}, {m} : i32"));
        let addr = e.hoist(&format!("arith.shli {src}, {two} : i32"));
        e.op(&format!(
            "rocdl.ds_bpermute {addr}, {x} : (i32, i32) -> i32"
        ))
    }
}

impl Rules for Amd {
    fn target(&self) -> Target {
        self.target
    }

    fn frag(&self) -> Frag {
        Frag::Mfma
    }

    fn thread_coords(&self, e: &mut Emit) -> String {
        let tid = e.hoist("rocdl.workitem.id.x : i32");
        let c64 = e.i32(64);
        e.lane = e.hoist(&format!("arith.remui {tid}, {c64} : i32"));
        let c16 = e.i32(16);
        e.g = e.hoist(&format!("arith.remui {}, {c16} : i32", e.lane));
        e.t = e.hoist(&format!("arith.divui {}, {c16} : i32", e.lane));
        tid
    }

    fn block_index(&self, e: &mut Emit, d: Dim3) -> String {
        e.op(&format!("rocdl.workgroup.id.{} : i32", d.name()))
    }

    /// The grid size in work-groups, from the hidden kernel arguments of code object v5
    /// (`hidden_block_count_x/y/z`, the first three u32 of the implicit arguments; LLVM
    /// AMDGPUUsage, *Code Object V5 Metadata*, "Hidden kernel arguments").
    fn grid_dim(&self, e: &mut Emit, d: Dim3) -> String {
        let p =
            e.hoist("llvm.call_intrinsic \"llvm.amdgcn.implicitarg.ptr\"() : () -> !llvm.ptr<4>");
        let k = match d {
            Dim3::X => 0,
            Dim3::Y => 1,
            Dim3::Z => 2,
        };
        let q = e.hoist(&format!(
            "llvm.getelementptr {p}[{k}] : (!llvm.ptr<4>) -> !llvm.ptr<4>, i32"
        ));
        e.op(&format!("llvm.load {q} invariant : !llvm.ptr<4> -> i32"))
    }

    fn barrier(&self, e: &mut Emit) {
        e.line("llvm.fence syncscope(\"workgroup\") release");
        e.line("rocdl.s.barrier");
        e.line("llvm.fence syncscope(\"workgroup\") acquire");
    }

    /// A wavefront executes in lockstep and its own LDS operations are performed in order
    /// (LLVM AMDGPUUsage, *Memory Model GFX942*: `s_waitcnt lgkmcnt(0)` is needed to order LDS
    /// operations between wavefronts of a work-group, not within one), so only the compiler
    /// must not move one lane's LDS accesses across the point: a wavefront-scope fence, which
    /// the back end emits as no instruction.
    fn warp_sync(&self, e: &mut Emit) {
        e.line("llvm.fence syncscope(\"wavefront\") acq_rel");
    }

    fn fence_block(&self, e: &mut Emit) {
        e.line("llvm.fence syncscope(\"workgroup\") acq_rel");
    }

    fn shuffle_xor(&self, e: &mut Emit, x: &str, t: &str, mask: u32) -> String {
        match t {
            "i32" => Self::bpermute(e, x, mask),
            "f32" => {
                let i = e.op(&format!("llvm.bitcast {x} : f32 to i32"));
                let r = Self::bpermute(e, &i, mask);
                e.op(&format!("llvm.bitcast {r} : i32 to f32"))
            }
            "i1" | "i8" => {
                let i = e.op(&format!("arith.extui {x} : {t} to i32"));
                let r = Self::bpermute(e, &i, mask);
                e.op(&format!("arith.trunci {r} : i32 to {t}"))
            }
            "f16" | "bf16" => {
                let h = e.op(&format!("llvm.bitcast {x} : {t} to i16"));
                let i = e.op(&format!("arith.extui {h} : i16 to i32"));
                let r = Self::bpermute(e, &i, mask);
                let h = e.op(&format!("arith.trunci {r} : i32 to i16"));
                e.op(&format!("llvm.bitcast {h} : i16 to {t}"))
            }
            _ => {
                // i64: both halves.
                let c32 = e.i64(32);
                let lo = e.op(&format!("arith.trunci {x} : i64 to i32"));
                let hi = e.op(&format!("arith.shrui {x}, {c32} : i64"));
                let hi = e.op(&format!("arith.trunci {hi} : i64 to i32"));
                let lo = Self::bpermute(e, &lo, mask);
                let hi = Self::bpermute(e, &hi, mask);
                let lo = e.op(&format!("arith.extui {lo} : i32 to i64"));
                let hi = e.op(&format!("arith.extui {hi} : i32 to i64"));
                let hi = e.op(&format!("arith.shli {hi}, {c32} : i64"));
                e.op(&format!("arith.ori {hi}, {lo} : i64"))
            }
        }
    }

    fn math(&self, e: &mut Emit, f: HwMath, x: &str) -> String {
        match f {
            // The bare `v_exp_f32`/`v_log_f32` (1 ulp): `llvm.exp2`/`llvm.log2` add a rescaling
            // of subnormal inputs around them, which the IR does not ask for (it lets these
            // functions flush; `tilekit_ir::numeric`).
            HwMath::Exp2 => e.op(&format!(
                "llvm.call_intrinsic \"llvm.amdgcn.exp2\"({x}) : (f32) -> f32"
            )),
            HwMath::Log2 => e.op(&format!(
                "llvm.call_intrinsic \"llvm.amdgcn.log\"({x}) : (f32) -> f32"
            )),
            HwMath::Rsqrt => e.op(&format!(
                "llvm.call_intrinsic \"llvm.amdgcn.rsq\"({x}) : (f32) -> f32"
            )),
            HwMath::Tanh => {
                // No tanh instruction: 1 − 2 / (2^(2x·log2 e) + 1), which saturates to ±1.
                let k = e.constant(ScalarType::F32, 2.0 * std::f64::consts::LOG2_E);
                let y = e.op(&format!("arith.mulf {x}, {k} : f32"));
                let ex = e.op(&format!(
                    "llvm.call_intrinsic \"llvm.amdgcn.exp2\"({y}) : (f32) -> f32"
                ));
                let one = e.constant(ScalarType::F32, 1.0);
                let two = e.constant(ScalarType::F32, 2.0);
                let den = e.op(&format!("arith.addf {ex}, {one} : f32"));
                let q = e.op(&format!("arith.divf {two}, {den} : f32"));
                e.op(&format!("arith.subf {one}, {q} : f32"))
            }
        }
    }

    /// On gfx90a and gfx942, which have no conversion instruction to bf16, the rounding on the
    /// bits: `(bits + 0x7fff + bit 16) >> 16` rounds to nearest even (a carry out of the
    /// mantissa steps the exponent, so the largest finite values round to infinity), and a NaN
    /// becomes the quiet NaN `0x7fff` (the IR keeps a NaN a NaN, not its sign or payload:
    /// `tilekit_ir::numeric`). Four instructions (`v_bfe_u32`, `v_add3_u32`, `v_cmp_o_f32`,
    /// `v_cndmask_b32`); LLVM's own expansion keeps the NaN's sign and payload for a fifth.
    /// gfx950 converts in hardware (`v_cvt_pk_bf16_f32`), so LLVM's `fptrunc` stays there.
    fn f32_to_bf16(&self, e: &mut Emit, x: &str) -> Option<String> {
        if self.target == Target::Gfx950 {
            return None;
        }
        let bits = e.op(&format!("llvm.bitcast {x} : f32 to i32"));
        let c16 = e.i32(16);
        let one = e.i32(1);
        let below_half = e.i32(0x7fff);
        let nan = e.i32(0x7fff_0000);
        let hi = e.op(&format!("arith.shrui {bits}, {c16} : i32"));
        let odd = e.op(&format!("arith.andi {hi}, {one} : i32"));
        let r = e.op(&format!("arith.addi {bits}, {below_half} : i32"));
        let r = e.op(&format!("arith.addi {r}, {odd} : i32"));
        let is_nan = e.op(&format!("arith.cmpf uno, {x}, {x} : f32"));
        let r = e.op(&format!("arith.select {is_nan}, {nan}, {r} : i32"));
        // Without the freeze, InstCombine moves the select past the shift onto the 16-bit
        // halves, and the back end shifts every element down before packing two with
        // `v_perm_b32`, which takes the high halves as they are.
        let r = e.op(&format!("llvm.freeze {r} : i32"));
        let r = e.op(&format!("arith.shrui {r}, {c16} : i32"));
        let h = e.op(&format!("arith.trunci {r} : i32 to i16"));
        Some(e.op(&format!("llvm.bitcast {h} : i16 to bf16")))
    }

    /// A `v_mov_b32` that LLVM cannot see through, for the reason NVIDIA's `mov` has (see `copy`
    /// in `lower/memory.rs`): without it, loop strength reduction turns the element addresses
    /// of a copy in a loop whose trip count is bounded by a block index (causal attention) into
    /// 64-bit pointer induction variables, two VGPRs each.
    fn opaque_i32(&self, e: &mut Emit, x: &str) -> String {
        e.op(&format!(
            "llvm.inline_asm \"v_mov_b32 $0, $1\", \"=v,v\" {x} : (i32) -> i32"
        ))
    }

    /// One MFMA per [`layout::MfmaStep`]: `rocdl.mfma.f32.16x16x16bf16.1k` (operands as
    /// `vector<4xi16>`), `…16x16x16f16`, and on gfx950 `…16x16x32.bf16` / `…16x16x32.f16`.
    /// The accumulator stays a `vector<4xf32>` between the steps of one output subtile.
    fn mma(&self, e: &mut Emit, m: MmaRegs<'_>) -> Result<Vec<String>, String> {
        let d = m.dtype;
        if !matches!(d, ScalarType::BF16 | ScalarType::F16) {
            return Err(format!(
                "mma of {d} (only bf16 × bf16 and f16 × f16 are lowered)"
            ));
        }
        let t = mty(d);
        let k32 = self.target == Target::Gfx950;
        let mut rc = m.c;
        let z = e.hoist("llvm.mlir.constant(0 : i32) : i32");
        let acc_t = "vector<4xf32>";
        for step in layout::mfma_steps(m.variant, m.a_dims, m.b_dims, m.mn, k32) {
            let pick = |regs: &[String], idx: &[u32]| -> Vec<String> {
                idx.iter().map(|&i| regs[i as usize].clone()).collect()
            };
            let a = Self::vector(e, t, &pick(m.b, &step.src_a));
            let b = Self::vector(e, t, &pick(m.a, &step.src_b));
            let c = Self::vector(e, "f32", &pick(&rc, &step.c));
            let n = step.src_a.len();
            let (name, a, b, opt) = match (step.k, d) {
                (MfmaK::K16, ScalarType::BF16) => {
                    let vt = format!("vector<{n}x{t}>");
                    let ai = e.op(&format!("llvm.bitcast {a} : {vt} to vector<{n}xi16>"));
                    let bi = e.op(&format!("llvm.bitcast {b} : {vt} to vector<{n}xi16>"));
                    (
                        "mfma.f32.16x16x16bf16.1k",
                        ai,
                        bi,
                        format!("vector<{n}xi16>"),
                    )
                }
                (MfmaK::K16, _) => ("mfma.f32.16x16x16f16", a, b, format!("vector<{n}x{t}>")),
                (MfmaK::K32, ScalarType::BF16) => {
                    ("mfma.f32.16x16x32.bf16", a, b, format!("vector<{n}x{t}>"))
                }
                (MfmaK::K32, _) => ("mfma.f32.16x16x32.f16", a, b, format!("vector<{n}x{t}>")),
            };
            let r = e.op(&format!(
                "rocdl.{name} {a}, {b}, {c}, {z}, {z}, {z} : ({opt}, {opt}, {acc_t}, i32, i32, i32) -> {acc_t}"
            ));
            for (q, &ci) in step.c.iter().enumerate() {
                let k = e.hoist(&format!("llvm.mlir.constant({q} : i32) : i32"));
                rc[ci as usize] = e.op(&format!("llvm.extractelement {r}[{k} : i32] : {acc_t}"));
            }
        }
        Ok(rc)
    }

    fn shared_limit(&self) -> u64 {
        lds_limit(self.target)
    }

    fn static_shared_limit(&self) -> u64 {
        // LDS is always allocated statically in the kernel descriptor.
        lds_limit(self.target)
    }

    fn register_limit(&self) -> u64 {
        VGPR_LIMIT
    }

    fn ldmatrix(&self) -> bool {
        false
    }

    fn cp_async(&self) -> bool {
        false
    }

    fn async_copy_queue(&self) -> bool {
        false
    }

    fn lds_row_xor(&self) -> bool {
        true
    }

    fn defer_shared_loads(&self) -> bool {
        true
    }

    fn mbarrier_tx(&self) -> bool {
        false
    }

    /// The kernel function carries two back-end attributes (LLVM AMDGPUUsage, *LLVM IR
    /// Attributes*):
    /// - `amdgpu-ieee` = false: the mode register's IEEE bit off (kernel descriptor
    ///   `.amdhsa_ieee_mode 0`). With it on, `v_max_f32`/`v_min_f32` quiet signaling NaNs, so
    ///   LLVM puts a canonicalizing `v_max_f32 x, x` before every `maxnum`/`minnum` operand it
    ///   cannot prove canonical; with it off they treat every NaN as missing data, which is
    ///   what `maxnum`/`minnum` ask (their result for a signaling NaN may be either), and other
    ///   arithmetic still propagates NaN.
    /// - `amdgpu-waves-per-eu` for kernels that issue MFMA ([`mfma_waves_per_eu`]).
    fn module(&self, k: &KernelText<'_>) -> String {
        let mut attrs = vec![("amdgpu-ieee", "false".to_string())];
        if k.body.contains("rocdl.mfma") {
            let w = mfma_waves_per_eu(self.target, k.threads, k.shared_bytes);
            attrs.push(("amdgpu-waves-per-eu", format!("1,{w}")));
        }
        let passthrough = attrs
            .iter()
            .map(|(key, v)| format!("[\"{key}\", \"{v}\"]"))
            .collect::<Vec<_>>()
            .join(", ");
        let smem_decl = format!(
            "llvm.mlir.global internal @__tk_smem() {{addr_space = 3 : i32, alignment = 1024 : i64}} : !llvm.array<{} x i8>",
            k.shared_bytes.max(16)
        );
        format!(
            "module attributes {{llvm.target_triple = \"amdgcn-amd-amdhsa\"}} {{\n  {smem_decl}\n  llvm.func @{name}({sig}) attributes {{rocdl.kernel, rocdl.flat_work_group_size = \"{threads},{threads}\", rocdl.reqd_work_group_size = array<i32: {threads}, 1, 1>, passthrough = [{passthrough}]}} {{\n{prologue}{body}  }}\n}}\n",
            name = k.name,
            sig = k.sig,
            threads = k.threads,
            prologue = k.prologue,
            body = k.body,
        )
    }
}
