//! What a target contributes to the shared lowering: its fragment geometry, its hardware
//! operations (thread coordinates, barriers, shuffles, fast math, matrix instructions), its
//! capabilities (ldmatrix, cp.async, transaction-counting barriers) and its resource limits.
//! The lowering rules in this module's siblings are written once and consult a [`Rules`]
//! where the hardware differs; [`crate::nvidia`] and [`crate::amd`] implement it.

use tilekit_ir::{Dim3, MmaVariant, ScalarType};

use super::emit::Emit;
use crate::layout::Frag;
use crate::{CodegenError, Target};

/// An f32 function the lowering asks the target for (each has a fast hardware form).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HwMath {
    Exp2,
    Log2,
    Rsqrt,
    Tanh,
}

/// The pieces of a lowered kernel that the target wraps into an MLIR module.
pub(crate) struct KernelText<'a> {
    pub name: &'a str,
    /// Parameter declarations (`%p0: !llvm.ptr<1>`, …).
    pub sig: &'a str,
    pub prologue: &'a str,
    pub body: &'a str,
    /// Threads per block.
    pub threads: u32,
    pub shared_bytes: u64,
    /// Whether the shared buffer is dynamic (sized at launch).
    pub dynamic_shared: bool,
    /// Whether the kernel reallocates registers (`setmaxnreg`), so its entry must tell the
    /// assembler what it starts with.
    pub reallocates_registers: bool,
}

/// A matrix multiply-accumulate of register fragments: `D = op(A)·op(B) + C` on this lane's
/// registers of A (stored `a_dims`), B (stored `b_dims`) and C (`mn`).
pub(crate) struct MmaRegs<'a> {
    pub dtype: ScalarType,
    pub variant: MmaVariant,
    pub a_dims: (u32, u32),
    pub b_dims: (u32, u32),
    pub mn: (u32, u32),
    pub a: &'a [String],
    pub b: &'a [String],
    pub c: Vec<String>,
}

/// The per-target rules of the lowering.
pub(crate) trait Rules {
    fn target(&self) -> Target;

    /// Register fragment geometry (lanes, which lane holds which element).
    fn frag(&self) -> Frag;

    /// Defines, in the prologue, the thread index in the block and the lane parts that
    /// [`Emit::affine`] uses (`e.lane`, `e.g`, `e.t`); returns the thread index.
    fn thread_coords(&self, e: &mut Emit) -> String;

    /// The block index along `d`.
    fn block_index(&self, e: &mut Emit, d: Dim3) -> String;

    /// The grid size in blocks along `d`.
    fn grid_dim(&self, e: &mut Emit, d: Dim3) -> String;

    /// A barrier of the whole block that also orders its shared-memory accesses.
    fn barrier(&self, e: &mut Emit);

    /// Orders the shared-memory accesses of one warp's lanes (stores of one lane before loads
    /// of another) and reconverges the warp.
    fn warp_sync(&self, e: &mut Emit);

    /// An acquire-release fence at block scope.
    fn fence_block(&self, e: &mut Emit);

    /// The value of `x` (MLIR type `t`) in lane `lane ^ mask`.
    fn shuffle_xor(&self, e: &mut Emit, x: &str, t: &str, mask: u32) -> String;

    /// `f(x)` on f32 with the target's fast instruction.
    fn math(&self, e: &mut Emit, f: HwMath, x: &str) -> String;

    /// `x` (f32) rounded to bf16 (to nearest even) by the target's own sequence, where it
    /// beats LLVM's lowering of `fptrunc`; `None` leaves it to LLVM.
    fn f32_to_bf16(&self, _e: &mut Emit, _x: &str) -> Option<String> {
        None
    }

    /// `x` (i32) hidden from LLVM's scalar evolution (see `copy` in `memory.rs`), where the
    /// target needs it.
    fn opaque_i32(&self, e: &mut Emit, x: &str) -> String;

    /// The matrix instructions of a warp-scope `mma`; returns C's new registers. Operand dtypes
    /// the target's instructions do not take are an error (`reason` of an `Unsupported`).
    fn mma(&self, e: &mut Emit, m: MmaRegs<'_>) -> Result<Vec<String>, String>;

    /// Bytes of shared memory one block may use.
    fn shared_limit(&self) -> u64;

    /// Static shared memory above this size is dynamic (sized at launch).
    fn static_shared_limit(&self) -> u64;

    /// 32-bit registers a thread may use for values (not counting AMD's accumulation registers).
    fn register_limit(&self) -> u64;

    /// `ldmatrix` for 16-bit shared → register tiles.
    fn ldmatrix(&self) -> bool;

    /// 16-byte asynchronous global → shared copies (`cp.async`).
    fn cp_async(&self) -> bool;

    /// `copy_async` as a pipeline of `cp.async` groups counted late on software semaphores.
    fn async_copy_queue(&self) -> bool;

    /// Shared tiles placed with LDS's row-indexed word permutation
    /// ([`crate::layout::lds_row_xor_bits`]) instead of the 16-byte-chunk swizzles.
    fn lds_row_xor(&self) -> bool;

    /// Loads of register tiles from shared tiles are emitted at their first use (or before the
    /// next op that writes memory, synchronizes or opens a region) instead of where the IR has
    /// them, which shortens the live ranges of the loaded registers.
    fn defer_shared_loads(&self) -> bool;

    /// Hardware barriers with transaction counts (`mbarrier.expect_tx`) for semaphores.
    fn mbarrier_tx(&self) -> bool;

    /// Register reallocation between warpgroups (`setmaxnreg`); without it the op emits
    /// nothing (see `lower/sync.rs`).
    fn setmaxnreg(&self) -> bool {
        false
    }

    /// The MLIR module around a lowered kernel.
    fn module(&self, k: &KernelText<'_>) -> String;
}

/// The rules of `target`.
pub(crate) fn rules(target: Target) -> Box<dyn Rules> {
    if target.is_nvidia() {
        Box::new(crate::nvidia::Nvidia { target })
    } else {
        Box::new(crate::amd::Amd { target })
    }
}

/// A resource error of `kernel` on `target`.
pub(crate) fn over_limit(
    kernel: &str,
    target: Target,
    resource: &str,
    needed: u64,
    limit: u64,
) -> CodegenError {
    CodegenError::Resources {
        kernel: kernel.to_string(),
        target,
        resource: resource.to_string(),
        needed,
        limit,
    }
}
