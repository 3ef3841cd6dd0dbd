//! The parsed form of a PTX module: what the executor runs.
//!
//! Registers are resolved at parse time to dense indices per function (scoped `{ ... }` blocks,
//! as LLVM emits around inline assembly, may redeclare names; each declaration gets its own
//! index). Branch targets are resolved to instruction indices. Symbols (parameters, shared and
//! global variables) stay names until launch, when their addresses are known.

/// A scalar type of an instruction or declaration (`.u32`, `.f16x2`, `.pred`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    /// `.pred`
    Pred,
    /// `.b8` .. `.b128`
    B8,
    /// `.b16`
    B16,
    /// `.b32`
    B32,
    /// `.b64`
    B64,
    /// `.b128`
    B128,
    /// `.u8`
    U8,
    /// `.u16`
    U16,
    /// `.u32`
    U32,
    /// `.u64`
    U64,
    /// `.s8`
    S8,
    /// `.s16`
    S16,
    /// `.s32`
    S32,
    /// `.s64`
    S64,
    /// `.f16`
    F16,
    /// `.f16x2`
    F16x2,
    /// `.bf16`
    Bf16,
    /// `.bf16x2`
    Bf16x2,
    /// `.tf32`
    Tf32,
    /// `.f32`
    F32,
    /// `.f64`
    F64,
    /// `.e4m3` (fp8)
    E4m3,
    /// `.e5m2` (fp8)
    E5m2,
    /// `.e4m3x2`
    E4m3x2,
    /// `.e5m2x2`
    E5m2x2,
}

impl Ty {
    /// Parses a type modifier without its leading dot.
    pub fn from_name(s: &str) -> Option<Ty> {
        Some(match s {
            "pred" => Ty::Pred,
            "b8" => Ty::B8,
            "b16" => Ty::B16,
            "b32" => Ty::B32,
            "b64" => Ty::B64,
            "b128" => Ty::B128,
            "u8" => Ty::U8,
            "u16" => Ty::U16,
            "u32" => Ty::U32,
            "u64" => Ty::U64,
            "s8" => Ty::S8,
            "s16" => Ty::S16,
            "s32" => Ty::S32,
            "s64" => Ty::S64,
            "f16" => Ty::F16,
            "f16x2" => Ty::F16x2,
            "bf16" => Ty::Bf16,
            "bf16x2" => Ty::Bf16x2,
            "tf32" => Ty::Tf32,
            "f32" => Ty::F32,
            "f64" => Ty::F64,
            "e4m3" => Ty::E4m3,
            "e5m2" => Ty::E5m2,
            "e4m3x2" => Ty::E4m3x2,
            "e5m2x2" => Ty::E5m2x2,
            _ => return None,
        })
    }

    /// Size in bytes (a predicate counts as 1).
    pub fn bytes(self) -> u32 {
        match self {
            Ty::Pred | Ty::B8 | Ty::U8 | Ty::S8 | Ty::E4m3 | Ty::E5m2 => 1,
            Ty::B16 | Ty::U16 | Ty::S16 | Ty::F16 | Ty::Bf16 | Ty::E4m3x2 | Ty::E5m2x2 => 2,
            Ty::B32 | Ty::U32 | Ty::S32 | Ty::F32 | Ty::F16x2 | Ty::Bf16x2 | Ty::Tf32 => 4,
            Ty::B64 | Ty::U64 | Ty::S64 | Ty::F64 => 8,
            Ty::B128 => 16,
        }
    }

    /// Size in bits.
    pub fn bits(self) -> u32 {
        self.bytes() * 8
    }

    /// Signed integer type.
    pub fn is_signed(self) -> bool {
        matches!(self, Ty::S8 | Ty::S16 | Ty::S32 | Ty::S64)
    }

    /// A floating-point type (scalar or packed).
    pub fn is_float(self) -> bool {
        matches!(
            self,
            Ty::F16 | Ty::F16x2 | Ty::Bf16 | Ty::Bf16x2 | Ty::Tf32 | Ty::F32 | Ty::F64
        )
    }
}

/// A register of a function: a dense index into each lane's register file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegId(pub u32);

/// A special (read-only) register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    /// `%tid.{x,y,z}`
    Tid(u8),
    /// `%ntid.{x,y,z}`
    Ntid(u8),
    /// `%ctaid.{x,y,z}`
    Ctaid(u8),
    /// `%nctaid.{x,y,z}`
    Nctaid(u8),
    /// `%laneid`
    LaneId,
    /// `%warpid`
    WarpId,
    /// `%nwarpid`
    NWarpId,
    /// `%smid`
    SmId,
    /// `%nsmid`
    NSmId,
    /// `%gridid`
    GridId,
    /// `%lanemask_eq`, `_le`, `_lt`, `_ge`, `_gt`
    LaneMask(LaneMaskKind),
    /// `%clock`
    Clock,
    /// `%clock64`
    Clock64,
    /// `%globaltimer`
    GlobalTimer,
    /// `%dynamic_smem_size`
    DynamicSmemSize,
    /// `%total_smem_size`
    TotalSmemSize,
    /// `%clusterid.*`, `%cluster_ctaid.*` etc. of a one-block cluster: 0
    ClusterZero,
    /// `%nclusterid.*`, `%cluster_nctaid.*`: 1
    ClusterOne,
}

/// Which `%lanemask_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaneMaskKind {
    /// `_eq`
    Eq,
    /// `_le`
    Le,
    /// `_lt`
    Lt,
    /// `_ge`
    Ge,
    /// `_gt`
    Gt,
}

/// The base of an address operand `[base+offset]`.
#[derive(Clone, Debug, PartialEq)]
pub enum AddrBase {
    /// A register holding an address.
    Reg(RegId),
    /// A variable or parameter name.
    Sym(String),
    /// No base: `[0x1234]`.
    Abs,
}

/// An instruction operand.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// A register.
    Reg(RegId),
    /// A negated predicate `!%p`.
    NotPred(RegId),
    /// A predicate pair destination `%p|%q` (setp).
    PredPair(RegId, RegId),
    /// An integer immediate (its two's complement bits).
    Imm(i64),
    /// A float immediate given as f32 bits (`0fXXXXXXXX`).
    F32(u32),
    /// A float immediate given as f64 bits (`0dXXXXXXXXXXXXXXXX`, or a decimal float literal).
    F64(u64),
    /// A vector `{a, b, ...}`.
    Vec(Vec<Operand>),
    /// A memory address `[base+offset]`.
    Addr {
        /// Base register or symbol.
        base: AddrBase,
        /// Byte offset.
        offset: i64,
    },
    /// A name: variable, parameter, function.
    Sym(String),
    /// A resolved branch target (instruction index in the function body).
    Label(usize),
    /// A special register.
    Special(Special),
    /// The sink `_`.
    Sink,
}

/// A guard predicate `@%p` / `@!%p`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guard {
    /// The predicate register.
    pub reg: RegId,
    /// `@!%p`
    pub negated: bool,
}

/// One instruction.
#[derive(Clone, Debug, PartialEq)]
pub struct Instr {
    /// 1-based line in the PTX text.
    pub line: u32,
    /// Guard predicate.
    pub guard: Option<Guard>,
    /// The full opcode text, e.g. `ld.global.nc.v4.f32`.
    pub opcode: String,
    /// The first component, e.g. `ld`.
    pub head: String,
    /// Modifiers that are not types, in order, without dots (`global`, `nc`, `v4`).
    pub mods: Vec<String>,
    /// Type modifiers in order (`f32`; `cvt.f32.s32` gives `[F32, S32]`).
    pub types: Vec<Ty>,
    /// Operands in order.
    pub operands: Vec<Operand>,
}

impl Instr {
    /// Has modifier `m` (without dot).
    pub fn has(&self, m: &str) -> bool {
        self.mods.iter().any(|x| x == m)
    }

    /// The first type modifier, if any.
    pub fn ty(&self) -> Option<Ty> {
        self.types.first().copied()
    }

    /// The vector width of a `.v2`/`.v4`/`.v8` modifier, 1 without one.
    pub fn vec_width(&self) -> u32 {
        for m in &self.mods {
            match m.as_str() {
                "v2" => return 2,
                "v4" => return 4,
                "v8" => return 8,
                _ => {}
            }
        }
        1
    }
}

/// A state space of a variable or access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    /// Generic addressing (no space given).
    Generic,
    /// `.global`
    Global,
    /// `.shared` (`.shared::cta`)
    Shared,
    /// `.shared::cluster` (one-block clusters: the block's own shared memory)
    SharedCluster,
    /// `.local`
    Local,
    /// `.param`
    Param,
    /// `.const`
    Const,
}

impl Space {
    /// Parses a state-space modifier (without dot).
    pub fn from_mod(s: &str) -> Option<Space> {
        Some(match s {
            "global" => Space::Global,
            "shared" | "shared::cta" => Space::Shared,
            "shared::cluster" => Space::SharedCluster,
            "local" => Space::Local,
            "param" | "param::entry" | "param::func" => Space::Param,
            "const" => Space::Const,
            _ => return None,
        })
    }
}

/// A variable declaration (`.shared`, `.global`, `.const`, `.local`).
#[derive(Clone, Debug, PartialEq)]
pub struct VarDecl {
    /// Its name.
    pub name: String,
    /// Where it lives.
    pub space: Space,
    /// Alignment in bytes.
    pub align: u32,
    /// Size in bytes; `None` for `.extern .shared` arrays (the launch's dynamic shared memory).
    pub size: Option<u64>,
    /// Initial bytes (`= {...}`), zero-filled to `size`.
    pub init: Vec<u8>,
    /// Line of the declaration.
    pub line: u32,
}

/// A kernel or function parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// Its name.
    pub name: String,
    /// Size in bytes.
    pub size: u32,
    /// Alignment in bytes.
    pub align: u32,
    /// Byte offset in the parameter buffer (natural alignment, in order).
    pub offset: u32,
}

/// A register declaration.
#[derive(Clone, Debug, PartialEq)]
pub struct RegDecl {
    /// The name as written (`%r12`).
    pub name: String,
    /// Its declared type.
    pub ty: Ty,
}

/// A `.entry` or `.func`.
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    /// Its name.
    pub name: String,
    /// `.entry` (a kernel) rather than `.func`.
    pub is_entry: bool,
    /// Parameters in order with their offsets.
    pub params: Vec<Param>,
    /// Return parameters of a `.func`.
    pub rets: Vec<Param>,
    /// Every register, indexed by [`RegId`].
    pub regs: Vec<RegDecl>,
    /// Shared variables declared in the body.
    pub shared: Vec<VarDecl>,
    /// Local variables declared in the body (per thread).
    pub locals: Vec<VarDecl>,
    /// Instructions; labels resolved to indices here.
    pub body: Vec<Instr>,
    /// Line of the declaration.
    pub line: u32,
    /// `.maxntid` / `.reqntid`, if given.
    pub maxntid: Option<[u32; 3]>,
    /// Labels by name, for diagnostics (name, instruction index).
    pub labels: Vec<(String, usize)>,
}

/// A parsed PTX module.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Module {
    /// `.version`
    pub version: Option<String>,
    /// `.target` (e.g. `sm_90a`)
    pub target: Option<String>,
    /// `.address_size`
    pub address_size: u32,
    /// Entries and functions, in order.
    pub functions: Vec<Function>,
    /// Module-scope variables (`.global`, `.const`, `.shared`).
    pub globals: Vec<VarDecl>,
}

impl Module {
    /// The function (entry or `.func`) named `name`.
    pub fn function(&self, name: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// Names of the `.entry` kernels.
    pub fn kernels(&self) -> impl Iterator<Item = &str> {
        self.functions
            .iter()
            .filter(|f| f.is_entry)
            .map(|f| f.name.as_str())
    }
}
