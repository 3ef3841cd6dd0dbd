//! The types of Tile IR values.
//!
//! Every value has one [`Type`]. Register tiles and vectors live in a warp's registers (each warp
//! holds its own copy); shared tiles, shared vectors and semaphores live in the block's shared
//! memory; global views describe a tensor in device memory whose shape and strides are known only
//! at run time.

use std::fmt;

/// Element types of scalars, tiles, vectors and global views.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScalarType {
    F32,
    F16,
    BF16,
    /// 8-bit float, 4 exponent bits, 3 mantissa bits, no infinities (OCP "E4M3FN"); max ±448.
    F8E4M3,
    /// 8-bit float, 5 exponent bits, 2 mantissa bits; max finite ±57344.
    F8E5M2,
    I8,
    I32,
    U32,
    I64,
    Bool,
}

impl ScalarType {
    /// All scalar types, in the order of the text format's documentation.
    pub const ALL: [ScalarType; 10] = [
        ScalarType::F32,
        ScalarType::F16,
        ScalarType::BF16,
        ScalarType::F8E4M3,
        ScalarType::F8E5M2,
        ScalarType::I8,
        ScalarType::I32,
        ScalarType::U32,
        ScalarType::I64,
        ScalarType::Bool,
    ];

    /// The name used by the text format.
    pub fn name(self) -> &'static str {
        match self {
            ScalarType::F32 => "f32",
            ScalarType::F16 => "f16",
            ScalarType::BF16 => "bf16",
            ScalarType::F8E4M3 => "f8e4m3",
            ScalarType::F8E5M2 => "f8e5m2",
            ScalarType::I8 => "i8",
            ScalarType::I32 => "i32",
            ScalarType::U32 => "u32",
            ScalarType::I64 => "i64",
            ScalarType::Bool => "bool",
        }
    }

    /// Parses a name of the text format.
    pub fn from_name(name: &str) -> Option<ScalarType> {
        ScalarType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Size of one element in memory, in bytes (bool is stored as one byte).
    pub fn size_bytes(self) -> u32 {
        match self {
            ScalarType::F32 | ScalarType::I32 | ScalarType::U32 => 4,
            ScalarType::F16 | ScalarType::BF16 => 2,
            ScalarType::F8E4M3 | ScalarType::F8E5M2 | ScalarType::I8 | ScalarType::Bool => 1,
            ScalarType::I64 => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(
            self,
            ScalarType::F32
                | ScalarType::F16
                | ScalarType::BF16
                | ScalarType::F8E4M3
                | ScalarType::F8E5M2
        )
    }

    pub fn is_int(self) -> bool {
        matches!(
            self,
            ScalarType::I8 | ScalarType::I32 | ScalarType::U32 | ScalarType::I64
        )
    }

    pub fn is_fp8(self) -> bool {
        matches!(self, ScalarType::F8E4M3 | ScalarType::F8E5M2)
    }
}

impl fmt::Display for ScalarType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a register tile's elements are arranged across a warp's lanes. The interpreter ignores it;
/// lowerings use it to pick fragment layouts, and `mma` requires particular layouts of its operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    Row,
    Col,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Row => "row",
            Layout::Col => "col",
        }
    }
}

/// Which axis of a register tile a register vector runs along.
///
/// `Rows`: one element per row of a tile (what a row reduction produces, what `bcast_row.*` takes);
/// its length is the tile's row count. `Cols`: one element per column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VecAxis {
    Rows,
    Cols,
}

impl VecAxis {
    pub fn name(self) -> &'static str {
        match self {
            VecAxis::Rows => "rows",
            VecAxis::Cols => "cols",
        }
    }
}

/// Swizzle of a shared tile: how a lowering permutes 16-byte chunks within a row so that `ldmatrix`
/// and stores are free of bank conflicts. It does not change what an element index means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Swizzle {
    None,
    B32,
    B64,
    B128,
}

impl Swizzle {
    pub fn name(self) -> &'static str {
        match self {
            Swizzle::None => "none",
            Swizzle::B32 => "swz32",
            Swizzle::B64 => "swz64",
            Swizzle::B128 => "swz128",
        }
    }

    pub fn from_name(name: &str) -> Option<Swizzle> {
        [Swizzle::None, Swizzle::B32, Swizzle::B64, Swizzle::B128]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// The type of a Tile IR value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    /// A scalar, uniform across the warp that holds it.
    Scalar(ScalarType),
    /// A register tile: `rows × cols` elements held by one warp. Rows and cols are multiples of 16.
    Tile {
        dtype: ScalarType,
        rows: u32,
        cols: u32,
        layout: Layout,
    },
    /// A register vector of `len` elements (a multiple of 16) held by one warp.
    Vector {
        dtype: ScalarType,
        len: u32,
        axis: VecAxis,
    },
    /// A shared-memory tile of `rows × cols` elements (multiples of 16).
    SharedTile {
        dtype: ScalarType,
        rows: u32,
        cols: u32,
        swizzle: Swizzle,
    },
    /// A shared-memory vector of `len` elements (a multiple of 16).
    SharedVector { dtype: ScalarType, len: u32 },
    /// A view of a tensor in global memory: rank known, shape and strides given at launch.
    Global {
        dtype: ScalarType,
        rank: u32,
        mutable: bool,
    },
    /// A semaphore in shared memory (an arrival count, an expected byte count and a phase).
    Semaphore,
    /// `len` shared objects of one type (shared tiles, shared vectors or semaphores), such as the
    /// stages of a pipeline ring. Indexed at run time by `shared.index`.
    SharedArray { elem: Box<Type>, len: u32 },
}

impl Type {
    pub fn scalar(dtype: ScalarType) -> Type {
        Type::Scalar(dtype)
    }

    pub fn tile(dtype: ScalarType, rows: u32, cols: u32, layout: Layout) -> Type {
        Type::Tile {
            dtype,
            rows,
            cols,
            layout,
        }
    }

    pub fn vector(dtype: ScalarType, len: u32, axis: VecAxis) -> Type {
        Type::Vector { dtype, len, axis }
    }

    pub fn shared_tile(dtype: ScalarType, rows: u32, cols: u32, swizzle: Swizzle) -> Type {
        Type::SharedTile {
            dtype,
            rows,
            cols,
            swizzle,
        }
    }

    pub fn shared_vector(dtype: ScalarType, len: u32) -> Type {
        Type::SharedVector { dtype, len }
    }

    pub fn global(dtype: ScalarType, rank: u32, mutable: bool) -> Type {
        Type::Global {
            dtype,
            rank,
            mutable,
        }
    }

    pub fn shared_array(elem: Type, len: u32) -> Type {
        Type::SharedArray {
            elem: Box::new(elem),
            len,
        }
    }

    /// The element type, for every type that has one.
    pub fn dtype(&self) -> Option<ScalarType> {
        match self {
            Type::Scalar(d) => Some(*d),
            Type::Tile { dtype, .. }
            | Type::Vector { dtype, .. }
            | Type::SharedTile { dtype, .. }
            | Type::SharedVector { dtype, .. }
            | Type::Global { dtype, .. } => Some(*dtype),
            Type::Semaphore | Type::SharedArray { .. } => None,
        }
    }

    pub fn as_scalar(&self) -> Option<ScalarType> {
        match self {
            Type::Scalar(d) => Some(*d),
            _ => None,
        }
    }

    pub fn is_scalar(&self) -> bool {
        matches!(self, Type::Scalar(_))
    }

    /// Register values: scalars, register tiles and register vectors.
    pub fn is_register(&self) -> bool {
        matches!(
            self,
            Type::Scalar(_) | Type::Tile { .. } | Type::Vector { .. }
        )
    }

    /// Objects in shared memory (or arrays of them).
    pub fn is_shared(&self) -> bool {
        matches!(
            self,
            Type::SharedTile { .. }
                | Type::SharedVector { .. }
                | Type::Semaphore
                | Type::SharedArray { .. }
        )
    }

    /// Rows and cols of a register or shared tile.
    pub fn tile_shape(&self) -> Option<(u32, u32)> {
        match self {
            Type::Tile { rows, cols, .. } | Type::SharedTile { rows, cols, .. } => {
                Some((*rows, *cols))
            }
            _ => None,
        }
    }

    /// Number of elements of a tile or vector (register or shared); 1 for a scalar.
    pub fn num_elements(&self) -> Option<u64> {
        match self {
            Type::Scalar(_) => Some(1),
            Type::Tile { rows, cols, .. } | Type::SharedTile { rows, cols, .. } => {
                Some(u64::from(*rows) * u64::from(*cols))
            }
            Type::Vector { len, .. } | Type::SharedVector { len, .. } => Some(u64::from(*len)),
            _ => None,
        }
    }

    /// Bytes of shared memory an allocation of this type takes (semaphores: 8 bytes, as an mbarrier);
    /// `None` for a type not in shared memory, or a size that does not fit in a u64.
    pub fn shared_bytes(&self) -> Option<u64> {
        match self {
            Type::SharedTile { dtype, .. } | Type::SharedVector { dtype, .. } => self
                .num_elements()?
                .checked_mul(u64::from(dtype.size_bytes())),
            Type::Semaphore => Some(8),
            Type::SharedArray { elem, len } => elem.shared_bytes()?.checked_mul(u64::from(*len)),
            _ => None,
        }
    }

    /// The same kind of value with another element type.
    pub fn with_dtype(&self, d: ScalarType) -> Type {
        let mut t = self.clone();
        match &mut t {
            Type::Scalar(x) => *x = d,
            Type::Tile { dtype, .. }
            | Type::Vector { dtype, .. }
            | Type::SharedTile { dtype, .. }
            | Type::SharedVector { dtype, .. }
            | Type::Global { dtype, .. } => *dtype = d,
            Type::Semaphore | Type::SharedArray { .. } => {}
        }
        t
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Scalar(d) => write!(f, "{d}"),
            Type::Tile {
                dtype,
                rows,
                cols,
                layout,
            } => write!(f, "rt<{dtype}, {rows}x{cols}, {}>", layout.name()),
            Type::Vector { dtype, len, axis } => write!(f, "rv<{dtype}, {len}, {}>", axis.name()),
            Type::SharedTile {
                dtype,
                rows,
                cols,
                swizzle,
            } => write!(f, "st<{dtype}, {rows}x{cols}, {}>", swizzle.name()),
            Type::SharedVector { dtype, len } => write!(f, "sv<{dtype}, {len}>"),
            Type::Global {
                dtype,
                rank,
                mutable,
            } => {
                if *mutable {
                    write!(f, "gl<{dtype}, {rank}, mut>")
                } else {
                    write!(f, "gl<{dtype}, {rank}>")
                }
            }
            Type::Semaphore => f.write_str("sem"),
            Type::SharedArray { elem, len } => write!(f, "[{len} x {elem}]"),
        }
    }
}
