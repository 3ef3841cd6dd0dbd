//! The NVIDIA rules of the lowering (`sm_80`, `sm_90a`): `mma.sync` fragments, PTX special
//! registers, `bar.sync`, `shfl.sync`, the `.approx` math instructions and `mma.sync`
//! itself, mostly as `llvm.inline_asm` (instructions without an MLIR op of stable syntax).

use tilekit_ir::{Dim3, ScalarType};

use crate::layout::{self, Frag};
use crate::lower::emit::Emit;
use crate::lower::mty;
use crate::lower::rules::{HwMath, KernelText, MmaRegs, Rules};
use crate::Target;

/// Static shared memory above this size must be dynamic (PTX: a `.shared` variable over 48 KiB
/// is rejected; larger allocations need the opt-in of dynamic shared memory).
const STATIC_SHARED_LIMIT: u64 = 48 * 1024;

/// 32-bit registers a thread may use.
pub const REGISTER_LIMIT: u64 = 255;

/// The largest shared memory one block may use: 227 KiB on sm_90 and 163 KiB on sm_80 (CUDA C
/// Programming Guide, *Compute Capabilities*, "maximum amount of shared memory per thread
/// block"; the SM has 1 KiB more, which the system reserves per block). On AMD targets, the
/// LDS of a work-group ([`crate::amd::lds_limit`]).
pub fn shared_limit(target: Target) -> u64 {
    match target {
        Target::Sm80 => 163 * 1024,
        Target::Sm90a => 227 * 1024,
        amd => crate::amd::lds_limit(amd),
    }
}

/// The rules of an NVIDIA target.
pub(crate) struct Nvidia {
    pub target: Target,
}

impl Nvidia {
    /// A one-operand PTX instruction on f32 (`ex2.approx.f32`, …).
    fn asm_f32(e: &mut Emit, instr: &str, x: &str) -> String {
        e.op(&format!(
            "llvm.inline_asm \"{instr} $0, $1;\", \"=f,f\" {x} : (f32) -> f32"
        ))
    }

    /// Two 16-bit elements in one 32-bit register, the first in the low half (the order of
    /// fragment elements in a `.b32` register, PTX ISA *Matrix Fragments for mma.m16n8k16*).
    pub(crate) fn pack(e: &mut Emit, t: &str, lo: &str, hi: &str) -> String {
        let vt = format!("vector<2x{t}>");
        let u = e.hoist(&format!("llvm.mlir.poison : {vt}"));
        let i0 = e.hoist("llvm.mlir.constant(0 : i32) : i32");
        let i1 = e.hoist("llvm.mlir.constant(1 : i32) : i32");
        let v0 = e.op(&format!("llvm.insertelement {lo}, {u}[{i0} : i32] : {vt}"));
        let v1 = e.op(&format!("llvm.insertelement {hi}, {v0}[{i1} : i32] : {vt}"));
        e.op(&format!("llvm.bitcast {v1} : {vt} to i32"))
    }
}

impl Rules for Nvidia {
    fn target(&self) -> Target {
        self.target
    }

    fn frag(&self) -> Frag {
        Frag::MmaSync
    }

    fn thread_coords(&self, e: &mut Emit) -> String {
        let tid = e.hoist("nvvm.read.ptx.sreg.tid.x : i32");
        let c32 = e.i32(32);
        e.lane = e.hoist(&format!("arith.remui {tid}, {c32} : i32"));
        let c4 = e.i32(4);
        e.g = e.hoist(&format!("arith.divui {}, {c4} : i32", e.lane));
        e.t = e.hoist(&format!("arith.remui {}, {c4} : i32", e.lane));
        tid
    }

    fn block_index(&self, e: &mut Emit, d: Dim3) -> String {
        e.op(&format!("nvvm.read.ptx.sreg.ctaid.{} : i32", d.name()))
    }

    fn grid_dim(&self, e: &mut Emit, d: Dim3) -> String {
        e.op(&format!("nvvm.read.ptx.sreg.nctaid.{} : i32", d.name()))
    }

    fn barrier(&self, e: &mut Emit) {
        e.line("nvvm.barrier0");
    }

    fn warp_sync(&self, e: &mut Emit) {
        let all = e.i32(-1);
        e.line(&format!("nvvm.bar.warp.sync {all} : i32"));
    }

    fn fence_block(&self, e: &mut Emit) {
        e.line("llvm.inline_asm has_side_effects \"fence.acq_rel.cta;\", \"\" : () -> ()");
    }

    fn shuffle_xor(&self, e: &mut Emit, x: &str, t: &str, mask: u32) -> String {
        let all = e.i32(-1);
        let clamp = e.i32(31);
        let off = e.i32(i64::from(mask));
        e.op(&format!(
            "nvvm.shfl.sync bfly {all}, {x}, {off}, {clamp} : {t} -> {t}"
        ))
    }

    fn math(&self, e: &mut Emit, f: HwMath, x: &str) -> String {
        // The IR lets these flush subnormals (`tilekit_ir::numeric`): without `.ftz`, ptxas
        // rescales subnormal inputs and results around each MUFU (3 more instructions per call).
        // `tanh.approx.f32` has no `.ftz` form.
        let instr = match f {
            HwMath::Exp2 => "ex2.approx.ftz.f32",
            HwMath::Log2 => "lg2.approx.ftz.f32",
            HwMath::Rsqrt => "rsqrt.approx.ftz.f32",
            HwMath::Tanh => "tanh.approx.f32",
        };
        Self::asm_f32(e, instr, x)
    }

    fn opaque_i32(&self, e: &mut Emit, x: &str) -> String {
        // An opaque `mov`, free after ptxas.
        e.op(&format!(
            "llvm.inline_asm \"mov.u32 $0, $1;\", \"=r,r\" {x} : (i32) -> i32"
        ))
    }

    /// `mma.sync.aligned.m16n8k16`, one instruction per [`layout::MmaStep`].
    fn mma(&self, e: &mut Emit, m: MmaRegs<'_>) -> Result<Vec<String>, String> {
        let ad = m.dtype;
        if !matches!(ad, ScalarType::BF16 | ScalarType::F16) {
            return Err(format!(
                "mma of {ad} (only bf16 × bf16 and f16 × f16 are lowered)"
            ));
        }
        let (ra, rb, mut rc) = (m.a, m.b, m.c);
        let t = mty(ad);
        let kind = if ad == ScalarType::BF16 {
            "bf16"
        } else {
            "f16"
        };
        let st = "!llvm.struct<(f32, f32, f32, f32)>";
        let tys = "i32, i32, i32, i32, i32, i32, f32, f32, f32, f32";
        for step in layout::mma_steps(m.variant, m.a_dims, m.b_dims, m.mn) {
            let r = |regs: &[String], i: u32| regs[i as usize].clone();
            let af: Vec<String> = (0..4)
                .map(|p| Self::pack(e, t, &r(ra, step.a[2 * p]), &r(ra, step.a[2 * p + 1])))
                .collect();
            let bf: Vec<String> = (0..2)
                .map(|p| Self::pack(e, t, &r(rb, step.b[2 * p]), &r(rb, step.b[2 * p + 1])))
                .collect();
            let args: Vec<String> = af
                .into_iter()
                .chain(bf)
                .chain(step.c.iter().map(|&i| r(&rc, i)))
                .collect();
            let d = e.op(&format!(
                "llvm.inline_asm \"mma.sync.aligned.m16n8k16.row.col.f32.{kind}.{kind}.f32 {{$0, $1, $2, $3}}, {{$4, $5, $6, $7}}, {{$8, $9}}, {{$10, $11, $12, $13}};\", \"=f,=f,=f,=f,r,r,r,r,r,r,f,f,f,f\" {} : ({tys}) -> {st}",
                args.join(", ")
            ));
            for (q, &ci) in step.c.iter().enumerate() {
                rc[ci as usize] = e.op(&format!("llvm.extractvalue {d}[{q}] : {st}"));
            }
        }
        Ok(rc)
    }

    fn shared_limit(&self) -> u64 {
        shared_limit(self.target)
    }

    fn static_shared_limit(&self) -> u64 {
        STATIC_SHARED_LIMIT
    }

    fn register_limit(&self) -> u64 {
        REGISTER_LIMIT
    }

    fn ldmatrix(&self) -> bool {
        true
    }

    fn cp_async(&self) -> bool {
        true
    }

    fn async_copy_queue(&self) -> bool {
        self.target == Target::Sm80
    }

    fn lds_row_xor(&self) -> bool {
        false
    }

    fn defer_shared_loads(&self) -> bool {
        // Not measured on NVIDIA (where ptxas schedules again); it would change every PTX
        // snapshot that loads from shared memory.
        false
    }

    fn mbarrier_tx(&self) -> bool {
        self.target == Target::Sm90a
    }

    fn setmaxnreg(&self) -> bool {
        self.target == Target::Sm90a
    }

    fn module(&self, k: &KernelText<'_>) -> String {
        let smem_decl = if k.dynamic_shared {
            // Dynamic shared memory: the launch passes the size (and opts in above 48 KiB).
            "llvm.mlir.global external @__tk_smem() {addr_space = 3 : i32, alignment = 1024 : i64} : !llvm.array<0 x i8>".to_string()
        } else {
            format!(
                "llvm.mlir.global internal @__tk_smem() {{addr_space = 3 : i32, alignment = 1024 : i64}} : !llvm.array<{} x i8>",
                k.shared_bytes.max(16)
            )
        };
        // ptxas honours `setmaxnreg` only when it knows the registers at entry: `.maxntid`
        // together with `.minnctapersm` gives them (DESIGN.md, facts measured; otherwise its
        // C7508 advisory, "unable to determine register count at entry").
        let min_blocks = if k.reallocates_registers && self.setmaxnreg() {
            ", nvvm.minctasm = 1 : i32"
        } else {
            ""
        };
        // The address of a failed assert's record (0: none), set by the host after loading;
        // declared where a `device_assert` refers to it.
        let record = tilekit_ir::assert_record::SYMBOL;
        let record_decl = if k.body.contains(&format!("@{record} ")) {
            format!(
                "\n  llvm.mlir.global external @{record}(0 : i64) {{addr_space = 1 : i32, alignment = 8 : i64}} : i64"
            )
        } else {
            String::new()
        };
        format!(
            "module attributes {{llvm.target_triple = \"nvptx64-nvidia-cuda\"}} {{\n  {smem_decl}{record_decl}\n  llvm.func @{name}({sig}) attributes {{nvvm.kernel, nvvm.maxntid = array<i32: {threads}, 1, 1>{min_blocks}}} {{\n{prologue}{body}  }}\n}}\n",
            name = k.name,
            sig = k.sig,
            threads = k.threads,
            prologue = k.prologue,
            body = k.body,
        )
    }
}
