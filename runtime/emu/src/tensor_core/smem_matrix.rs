//! wgmma's shared-memory matrix descriptor and the address of each operand element it names
//! (PTX ISA "Matrix Descriptor Format", "Shared Memory Matrix Layout", "Strides",
//! "Swizzling modes").
//!
//! The unit of every layout is the *core matrix*: 8 rows of 16 bytes. The ISA's two byte
//! offsets place core matrices relative to each other:
//!
//! | layout | within a row (16 B) | 8 rows at | next along K | next along M/N |
//! |---|---|---|---|---|
//! | K-major, no swizzle | K | 16 B | LBO | SBO |
//! | K-major, swizzle S | K (up to S bytes) | S bytes | (inside the S-byte row) | SBO |
//! | MN-major, no swizzle | M/N | 16 B along K | LBO | SBO |
//! | MN-major, swizzle S | M/N (up to S bytes) | S bytes along K | SBO (per 8 k) | LBO (per S bytes of M/N) |
//!
//! The swizzle is an XOR of address bits: the 16-byte chunk index (bits 4..) is XORed with the
//! row-within-pattern index (bits 7..): 128B swizzle XORs bits 4–6 with bits 7–9, 64B bits 4–5
//! with 7–8, 32B bit 4 with bit 7. It is applied to the absolute shared-memory address, as TMA
//! writes it; that is what lets kernels step through K by adding the step's byte offset to the
//! descriptor's start address inside a swizzled row.

use super::TensorCoreError;

/// The swizzle mode of a descriptor (bits 62–63).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Swizzle {
    /// 0: no swizzle ("interleave": plain core matrices).
    None,
    /// 1: 128-byte swizzle.
    B128,
    /// 2: 64-byte swizzle.
    B64,
    /// 3: 32-byte swizzle.
    B32,
}

impl Swizzle {
    /// The mode held in a descriptor's bits 62–63.
    pub fn from_field(field: u64) -> Self {
        match field & 3 {
            0 => Swizzle::None,
            1 => Swizzle::B128,
            2 => Swizzle::B64,
            _ => Swizzle::B32,
        }
    }

    /// The descriptor field value of this mode.
    pub fn field(self) -> u64 {
        match self {
            Swizzle::None => 0,
            Swizzle::B128 => 1,
            Swizzle::B64 => 2,
            Swizzle::B32 => 3,
        }
    }

    /// Bytes in one swizzled row (16 for no swizzle: one core-matrix row).
    pub fn row_bytes(self) -> u32 {
        match self {
            Swizzle::None => 16,
            Swizzle::B32 => 32,
            Swizzle::B64 => 64,
            Swizzle::B128 => 128,
        }
    }

    /// Address bits XORed: log2 of the number of 16-byte chunks permuted.
    fn bits(self) -> u32 {
        match self {
            Swizzle::None => 0,
            Swizzle::B32 => 1,
            Swizzle::B64 => 2,
            Swizzle::B128 => 3,
        }
    }

    /// The swizzled address of `address`: bits [4, 4 + b) XORed with bits [7, 7 + b).
    pub fn apply(self, address: u32) -> u32 {
        let mask = ((1u32 << self.bits()) - 1) << 4;
        address ^ ((address >> 3) & mask)
    }
}

/// Whether the contiguous dimension of an operand in shared memory is K or M/N
/// (`imm-trans` 0 is K-major for both A and B; 1 is M-major A / N-major B).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Major {
    /// K contiguous ("no transpose").
    K,
    /// M (for A) or N (for B) contiguous ("transpose").
    MN,
}

/// A decoded wgmma shared-memory matrix descriptor. Byte quantities are in bytes (the
/// descriptor stores them shifted right by 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatrixDescriptor {
    /// Shared-memory address of the matrix (bits 0–13, ×16).
    pub start: u32,
    /// Leading dimension byte offset (bits 16–29, ×16).
    pub leading_byte_offset: u32,
    /// Stride dimension byte offset (bits 32–45, ×16).
    pub stride_byte_offset: u32,
    /// Matrix base offset (bits 49–51).
    pub base_offset: u8,
    /// Swizzle mode (bits 62–63).
    pub swizzle: Swizzle,
}

impl MatrixDescriptor {
    /// Decodes the 64-bit descriptor operand.
    pub fn decode(bits: u64) -> Self {
        let field14 = |shift: u32| (((bits >> shift) & 0x3fff) as u32) << 4;
        MatrixDescriptor {
            start: field14(0),
            leading_byte_offset: field14(16),
            stride_byte_offset: field14(32),
            base_offset: ((bits >> 49) & 7) as u8,
            swizzle: Swizzle::from_field(bits >> 62),
        }
    }

    /// Encodes the descriptor (the low 4 bits of each byte quantity are dropped, as the
    /// hardware ignores them).
    pub fn encode(&self) -> u64 {
        let field14 = |v: u32| ((v >> 4) & 0x3fff) as u64;
        field14(self.start)
            | field14(self.leading_byte_offset) << 16
            | field14(self.stride_byte_offset) << 32
            | ((self.base_offset & 7) as u64) << 49
            | self.swizzle.field() << 62
    }

    /// Refuses what the emulator does not model: a nonzero base offset (the ISA's correction for
    /// swizzled matrices whose start is not aligned to the pattern; the emulator swizzles
    /// absolute addresses, which needs none) and, for 32-bit use, starts beyond the field.
    pub fn check(&self, raw: u64) -> Result<(), TensorCoreError> {
        if self.base_offset != 0 {
            return Err(TensorCoreError::BadDescriptor {
                descriptor: raw,
                message: format!(
                    "base offset {} is not modelled (only 0, as canonical layouts use)",
                    self.base_offset
                ),
            });
        }
        Ok(())
    }

    /// Shared-memory byte address of element (mn, k) of the operand this descriptor names, for
    /// elements of `element_bytes` bytes laid out `major`. `mn` is the row of A or the column of
    /// B; `k` is within the instruction's K extent (32 bytes of elements).
    pub fn element_address(&self, major: Major, element_bytes: u32, mn: u32, k: u32) -> u32 {
        let per_chunk = 16 / element_bytes; // elements in 16 bytes ("T" in CuTe's notation)
        let row = self.swizzle.row_bytes();
        let (lbo, sbo) = (self.leading_byte_offset, self.stride_byte_offset);
        let offset = match (major, self.swizzle) {
            (Major::K, Swizzle::None) => {
                (mn % 8) * 16
                    + (mn / 8) * sbo
                    + (k / per_chunk) * lbo
                    + (k % per_chunk) * element_bytes
            }
            (Major::K, _) => (mn % 8) * row + (mn / 8) * sbo + k * element_bytes,
            (Major::MN, Swizzle::None) => {
                (mn % per_chunk) * element_bytes
                    + (mn / per_chunk) * sbo
                    + (k % 8) * 16
                    + (k / 8) * lbo
            }
            (Major::MN, _) => {
                let per_row = row / element_bytes;
                (mn % per_row) * element_bytes
                    + (mn / per_row) * lbo
                    + (k % 8) * row
                    + (k / 8) * sbo
            }
        };
        self.swizzle.apply(self.start.wrapping_add(offset))
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // tests index lanes and registers as the ISA's figures do
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    const SWIZZLES: [Swizzle; 4] = [Swizzle::None, Swizzle::B32, Swizzle::B64, Swizzle::B128];

    #[test]
    fn descriptor_fields_sit_at_the_isa_bit_positions() {
        let mut rng = SmallRng::seed_from_u64(3);
        for _ in 0..200 {
            let d = MatrixDescriptor {
                start: rng.gen_range(0..0x4000u32) << 4,
                leading_byte_offset: rng.gen_range(0..0x4000u32) << 4,
                stride_byte_offset: rng.gen_range(0..0x4000u32) << 4,
                base_offset: rng.gen_range(0..8),
                swizzle: SWIZZLES[rng.gen_range(0..4)],
            };
            let bits = d.encode();
            assert_eq!(MatrixDescriptor::decode(bits), d);
            // The same fields read by hand from the ISA's table.
            assert_eq!((bits & 0x3fff) << 4, d.start as u64);
            assert_eq!(((bits >> 16) & 0x3fff) << 4, d.leading_byte_offset as u64);
            assert_eq!(((bits >> 32) & 0x3fff) << 4, d.stride_byte_offset as u64);
            assert_eq!((bits >> 49) & 7, d.base_offset as u64);
            assert_eq!(bits >> 62, d.swizzle.field());
            assert_eq!(
                bits & (0b11 << 14 | 0b11 << 30 | 0b111 << 46 | 0x3ff << 52),
                0,
                "reserved bits stay zero"
            );
        }
        // The ISA's swizzle encoding: 1 = 128B, 2 = 64B, 3 = 32B.
        assert_eq!(MatrixDescriptor::decode(1 << 62).swizzle, Swizzle::B128);
        assert_eq!(MatrixDescriptor::decode(2 << 62).swizzle, Swizzle::B64);
        assert_eq!(MatrixDescriptor::decode(3 << 62).swizzle, Swizzle::B32);
    }

    #[test]
    fn swizzles_permute_16_byte_chunks_as_the_isa_figures_show() {
        // 128B: in an 8-row × 128-byte pattern, chunk c of row r lands at chunk c XOR r.
        // 64B: rows of 64 bytes; the pattern's row index is r / 2 (bits 7–8 of the address).
        // 32B: rows of 32 bytes; chunk c of row r lands at c XOR ((r / 4) & 1).
        for r in 0..16u32 {
            for c in 0..8u32 {
                let a = r * 128 + c * 16;
                assert_eq!(Swizzle::B128.apply(a), r * 128 + (c ^ (r % 8)) * 16);
            }
            for c in 0..4u32 {
                let a = r * 64 + c * 16;
                assert_eq!(Swizzle::B64.apply(a), r * 64 + (c ^ ((r / 2) % 4)) * 16);
            }
            for c in 0..2u32 {
                let a = r * 32 + c * 16;
                assert_eq!(Swizzle::B32.apply(a), r * 32 + (c ^ ((r / 4) % 2)) * 16);
            }
        }
        // Bytes inside a chunk never move, and the swizzle is an involution.
        for a in 0..4096u32 {
            for s in SWIZZLES {
                assert_eq!(s.apply(a) % 16, a % 16);
                assert_eq!(s.apply(s.apply(a)), a);
            }
        }
    }

    /// CuTe's statement (`mma_traits_sm90_gmma.hpp`): a tile is `tile_to_shape` of a layout atom,
    /// MN-mode first. K-major atoms are 8 rows × (S bytes) with K contiguous (Layout_K_SW*_Atom:
    /// (8, S·8 bits):(S·8, 1)); MN-major atoms are (S bytes of MN) × 8 k (Layout_MN_SW*_Atom:
    /// (S·8 bits, 8):(1, S·8)); S = 16 for INTERLEAVE. Swizzle<B,4,3> then acts on the byte
    /// offset of a 1024-byte-aligned tile. A wgmma k-step `ks` is fed by a descriptor whose start
    /// is the byte offset of element (0, 16·ks) (for 16-bit data), with LBO/SBO from
    /// `make_gmma_desc`. This function is CuTe's byte offset of element (mn, k) of the tile.
    fn cute_tile_offset(major: Major, s: Swizzle, eb: u32, mn_extent: u32, mn: u32, k: u32) -> u32 {
        let atom_bytes = s.row_bytes();
        let linear = match major {
            Major::K => {
                let atom_k = atom_bytes / eb;
                let atoms_mn = mn_extent / 8;
                let atom = (mn / 8) + atoms_mn * (k / atom_k);
                atom * 8 * atom_bytes + (mn % 8) * atom_bytes + (k % atom_k) * eb
            }
            Major::MN => {
                let atom_mn = atom_bytes / eb;
                let atoms_mn = mn_extent / atom_mn;
                let atom = (mn / atom_mn) + atoms_mn * (k / 8);
                atom * 8 * atom_bytes + (mn % atom_mn) * eb + (k % 8) * atom_bytes
            }
        };
        s.apply(linear)
    }

    /// The descriptor CuTe's make_gmma_desc builds for k-step `ks` of such a tile: strides from
    /// its canonical forms (K-major: SBO = 8 rows of atoms, LBO = next K atom for INTERLEAVE;
    /// MN-major: SBO/LBO swapped for the swizzled modes).
    fn cute_descriptor(
        major: Major,
        s: Swizzle,
        eb: u32,
        mn_extent: u32,
        base: u32,
        ks: u32,
    ) -> MatrixDescriptor {
        let atom_bytes = s.row_bytes();
        let k_step = 32 / eb;
        let (start, lbo, sbo) = match (major, s) {
            (Major::K, Swizzle::None) => {
                let k_atom_stride = (mn_extent / 8) * 128;
                (
                    base + (ks * k_step / (16 / eb)) * k_atom_stride,
                    k_atom_stride,
                    128,
                )
            }
            (Major::K, _) => {
                let atom_k = atom_bytes / eb;
                let k0 = ks * k_step;
                let k_atom_stride = (mn_extent / 8) * 8 * atom_bytes;
                (
                    base + (k0 / atom_k) * k_atom_stride + (k0 % atom_k) * eb,
                    16,
                    8 * atom_bytes,
                )
            }
            (Major::MN, Swizzle::None) => {
                let k_atom_stride = (mn_extent / (16 / eb)) * 128;
                (base + ks * (k_step / 8) * k_atom_stride, k_atom_stride, 128)
            }
            (Major::MN, _) => {
                let atom_mn = atom_bytes / eb;
                let k_atom_stride = (mn_extent / atom_mn) * 8 * atom_bytes;
                (
                    base + ks * (k_step / 8) * k_atom_stride,
                    8 * atom_bytes,
                    k_atom_stride,
                )
            }
        };
        MatrixDescriptor {
            start,
            leading_byte_offset: lbo,
            stride_byte_offset: sbo,
            base_offset: 0,
            swizzle: s,
        }
    }

    #[test]
    fn element_addresses_agree_with_cutes_canonical_tiles() {
        for eb in [2u32, 1] {
            let k_step = 32 / eb;
            for major in [Major::K, Major::MN] {
                for s in SWIZZLES {
                    let mn_extent = 128;
                    let k_extent = 128 / eb; // four or more k-steps, more than one swizzle row
                    let base = 0x2000;
                    for ks in 0..k_extent / k_step {
                        let desc = cute_descriptor(major, s, eb, mn_extent, base, ks);
                        for mn in 0..mn_extent {
                            for k in 0..k_step {
                                let want = base
                                    + cute_tile_offset(
                                        major,
                                        s,
                                        eb,
                                        mn_extent,
                                        mn,
                                        ks * k_step + k,
                                    );
                                let got = desc.element_address(major, eb, mn, k);
                                assert_eq!(
                                    got, want,
                                    "{major:?} {s:?} {eb}-byte k-step {ks} element ({mn},{k})"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn nonzero_base_offset_is_refused_by_name() {
        let d = MatrixDescriptor::decode(3 << 49);
        assert!(matches!(
            d.check(3 << 49),
            Err(TensorCoreError::BadDescriptor { .. })
        ));
        assert!(MatrixDescriptor::decode(1 << 62).check(1 << 62).is_ok());
    }
}
