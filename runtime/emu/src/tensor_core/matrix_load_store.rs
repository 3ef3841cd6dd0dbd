//! `ldmatrix.sync.aligned.m8n8.{x1,x2,x4}{.trans}.shared.b16` and its inverse `stmatrix`
//! (PTX ISA "Warp-level matrix load instruction: ldmatrix", "... store instruction: stmatrix").
//!
//! Each 8×8 matrix of 16-bit elements is eight rows of 16 bytes. For matrix `j`, lane `8j + i`
//! supplies the address of row `i` (so `.x1` reads addresses from lanes 0–7 only, `.x2` from
//! 0–15). Register `j` of lane `l` then holds row `l / 4`, columns `2 (l % 4)` and `2 (l % 4) + 1`
//! of matrix `j` (the lower column in the low half); with `.trans` it holds column `l / 4`, rows
//! `2 (l % 4)` and `2 (l % 4) + 1` instead, i.e. the matrix as if stored column-major.

use super::mma_sync::{WarpFragment, WARP};
use super::TensorCoreError;

/// Which of `ldmatrix` / `stmatrix` a spec describes (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatrixTransfer {
    /// Shared memory to registers.
    Load,
    /// Registers to shared memory (sm_90).
    Store,
}

/// One `ldmatrix`/`stmatrix` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatrixLoadStoreSpec {
    /// Load or store.
    pub transfer: MatrixTransfer,
    /// Matrices moved: 1, 2 or 4 (`.x1`, `.x2`, `.x4`); also the registers per lane.
    pub count: usize,
    /// `.trans`.
    pub trans: bool,
}

/// Bytes in one row of an m8n8 .b16 matrix, and the alignment its address needs.
pub const ROW_BYTES: usize = 16;

impl MatrixLoadStoreSpec {
    /// Reads `ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16` and the like (`.shared::cta` and
    /// no state space are accepted: the address is then generic and must point into shared memory,
    /// which the executor checks).
    pub fn parse(opcode: &str) -> Result<Self, TensorCoreError> {
        let unsupported = |message: &str| TensorCoreError::UnsupportedForm {
            opcode: opcode.to_string(),
            message: message.to_string(),
        };
        let mut parts = opcode.split('.').peekable();
        let transfer = match parts.next() {
            Some("ldmatrix") => MatrixTransfer::Load,
            Some("stmatrix") => MatrixTransfer::Store,
            _ => return Err(unsupported("expected ldmatrix or stmatrix")),
        };
        for want in ["sync", "aligned", "m8n8"] {
            if parts.next() != Some(want) {
                return Err(unsupported(
                    "expected .sync.aligned.m8n8 (the only b16 shape modelled)",
                ));
            }
        }
        let count = match parts.next() {
            Some("x1") => 1,
            Some("x2") => 2,
            Some("x4") => 4,
            _ => return Err(unsupported("expected .x1, .x2 or .x4")),
        };
        let mut trans = false;
        let rest: Vec<&str> = parts.collect();
        let mut type_seen = false;
        for part in rest {
            match part {
                "trans" if !trans && !type_seen => trans = true,
                "shared" | "shared::cta" if !type_seen => {}
                "b16" if !type_seen => type_seen = true,
                _ => return Err(unsupported("expected {.trans}{.shared}.b16")),
            }
        }
        if !type_seen {
            return Err(unsupported("expected the .b16 element type"));
        }
        Ok(MatrixLoadStoreSpec {
            transfer,
            count,
            trans,
        })
    }

    /// The opcode this spec stands for.
    pub fn opcode(&self) -> String {
        let name = match self.transfer {
            MatrixTransfer::Load => "ldmatrix",
            MatrixTransfer::Store => "stmatrix",
        };
        let trans = if self.trans { ".trans" } else { "" };
        format!("{name}.sync.aligned.m8n8.x{}{trans}.shared.b16", self.count)
    }

    /// The lanes whose addresses the instruction uses (8 per matrix, the rest are ignored).
    pub fn address_lanes(&self) -> std::ops::Range<usize> {
        0..8 * self.count
    }

    /// (row, column) of matrix `reg` held by `half` of register `reg` of `lane`.
    pub fn element_position(&self, lane: usize, half: usize) -> (usize, usize) {
        let (row, col) = (lane / 4, 2 * (lane % 4) + half);
        if self.trans {
            (col, row)
        } else {
            (row, col)
        }
    }

    fn check_addresses(&self, addresses: &[u64; WARP]) -> Result<(), TensorCoreError> {
        for lane in self.address_lanes() {
            if addresses[lane] % ROW_BYTES as u64 != 0 {
                return Err(TensorCoreError::Misaligned {
                    opcode: self.opcode(),
                    lane,
                    address: addresses[lane],
                    required: ROW_BYTES as u64,
                });
            }
        }
        Ok(())
    }

    /// Executes an `ldmatrix`: `addresses[lane]` is each lane's address operand, `read_row(lane,
    /// address)` returns the 16 bytes of one row (called once per row, by the lane that supplied
    /// it). Returns each lane's destination registers (the first `count` are written).
    pub fn load<E: From<TensorCoreError>>(
        &self,
        addresses: &[u64; WARP],
        mut read_row: impl FnMut(usize, u64) -> Result<[u8; ROW_BYTES], E>,
    ) -> Result<WarpFragment<4>, E> {
        self.check_addresses(addresses)?;
        let mut rows = vec![[0u16; 8]; 8 * self.count];
        for lane in self.address_lanes() {
            let bytes = read_row(lane, addresses[lane])?;
            for (e, chunk) in bytes.chunks_exact(2).enumerate() {
                rows[lane][e] = u16::from_le_bytes([chunk[0], chunk[1]]);
            }
        }
        let mut regs = [[0u32; 4]; WARP];
        for (lane, lane_regs) in regs.iter_mut().enumerate() {
            for (matrix, reg) in lane_regs.iter_mut().enumerate().take(self.count) {
                for half in 0..2 {
                    let (row, col) = self.element_position(lane, half);
                    *reg |= (rows[8 * matrix + row][col] as u32) << (16 * half);
                }
            }
        }
        Ok(regs)
    }

    /// Executes a `stmatrix`: the inverse of [`load`](Self::load); `write_row(lane, address,
    /// bytes)` stores one row at the address lane `lane` supplied.
    pub fn store<E: From<TensorCoreError>>(
        &self,
        addresses: &[u64; WARP],
        regs: &WarpFragment<4>,
        mut write_row: impl FnMut(usize, u64, [u8; ROW_BYTES]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.check_addresses(addresses)?;
        let mut rows = vec![[0u16; 8]; 8 * self.count];
        for (lane, lane_regs) in regs.iter().enumerate() {
            for (matrix, reg) in lane_regs.iter().enumerate().take(self.count) {
                for half in 0..2 {
                    let (row, col) = self.element_position(lane, half);
                    rows[8 * matrix + row][col] = (reg >> (16 * half)) as u16;
                }
            }
        }
        for lane in self.address_lanes() {
            let mut bytes = [0u8; ROW_BYTES];
            for (e, value) in rows[lane].iter().enumerate() {
                bytes[2 * e..2 * e + 2].copy_from_slice(&value.to_le_bytes());
            }
            write_row(lane, addresses[lane], bytes)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // tests index lanes and registers as the ISA's figures do
mod tests {
    use super::*;
    use crate::tensor_core::mma_sync::{a_position, b_position, MmaShape};
    use rand::rngs::SmallRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;

    /// A byte-addressed memory of 16-bit cells filled with random distinct-ish values.
    struct Memory(HashMap<u64, u16>);

    impl Memory {
        fn random(rng: &mut SmallRng, rows: u64) -> Self {
            let mut m = HashMap::new();
            for addr in (0..rows * 16).step_by(2) {
                m.insert(addr, rng.gen());
            }
            Memory(m)
        }
        fn row(&self, addr: u64) -> Result<[u8; 16], TensorCoreError> {
            let mut out = [0u8; 16];
            for e in 0..8 {
                out[2 * e..2 * e + 2]
                    .copy_from_slice(&self.0[&(addr + 2 * e as u64)].to_le_bytes());
            }
            Ok(out)
        }
    }

    fn random_row_addresses(rng: &mut SmallRng, rows: u64) -> [u64; WARP] {
        let mut slots: Vec<u64> = (0..rows).collect();
        slots.shuffle(rng);
        let mut addrs = [0u64; WARP];
        for (lane, a) in addrs.iter_mut().enumerate() {
            *a = slots[lane] * 16;
        }
        addrs
    }

    fn specs() -> Vec<MatrixLoadStoreSpec> {
        let mut v = Vec::new();
        for count in [1, 2, 4] {
            for trans in [false, true] {
                v.push(MatrixLoadStoreSpec {
                    transfer: MatrixTransfer::Load,
                    count,
                    trans,
                });
            }
        }
        v
    }

    #[test]
    fn load_follows_the_isa_statement_of_who_reads_and_who_receives() {
        let mut rng = SmallRng::seed_from_u64(0x1d_4a7);
        for spec in specs() {
            let mem = Memory::random(&mut rng, 64);
            let addrs = random_row_addresses(&mut rng, 64);
            let mut readers = Vec::new();
            let regs = spec
                .load(&addrs, |lane, a| {
                    readers.push(lane);
                    mem.row(a)
                })
                .unwrap();
            assert_eq!(readers, (0..8 * spec.count).collect::<Vec<_>>());
            for lane in 0..WARP {
                for j in 0..spec.count {
                    for half in 0..2 {
                        // ISA text: thread l receives, of matrix j, row l/4 and elements 2(l%4),
                        // 2(l%4)+1; with .trans, column l/4 of rows 2(l%4), 2(l%4)+1.
                        let (row, col) = if spec.trans {
                            (2 * (lane % 4) + half, lane / 4)
                        } else {
                            (lane / 4, 2 * (lane % 4) + half)
                        };
                        let want = mem.0[&(addrs[8 * j + row] + 2 * col as u64)];
                        assert_eq!(
                            (regs[lane][j] >> (16 * half)) as u16,
                            want,
                            "{spec:?} lane {lane} matrix {j}"
                        );
                    }
                }
                for j in spec.count..4 {
                    assert_eq!(
                        regs[lane][j], 0,
                        "registers beyond .x{} are untouched",
                        spec.count
                    );
                }
            }
        }
    }

    /// ldmatrix.x4 over a row-major 16×16 tile with lane l pointing at row l % 16, column
    /// 8 (l / 16), gives exactly mma.m16n8k16's A fragment; .x2.trans over a row-major
    /// 16(k)×8(n) tile with lane l at row l % 16 gives B's. Two tables of the ISA, one identity.
    #[test]
    fn load_produces_mma_fragments_from_row_major_tiles() {
        let mut rng = SmallRng::seed_from_u64(0xab);
        let tile: Vec<u16> = (0..256).map(|_| rng.gen()).collect();
        let mut mem = HashMap::new();
        for (i, v) in tile.iter().enumerate() {
            mem.insert(2 * i as u64, *v);
        }
        let mem = Memory(mem);
        let x4 = MatrixLoadStoreSpec {
            transfer: MatrixTransfer::Load,
            count: 4,
            trans: false,
        };
        let mut addrs = [0u64; WARP];
        for (lane, a) in addrs.iter_mut().enumerate() {
            *a = ((lane % 16) * 16 + 8 * (lane / 16)) as u64 * 2;
        }
        let regs = x4.load(&addrs, |_, a| mem.row(a)).unwrap();
        for lane in 0..WARP {
            for reg in 0..4 {
                for half in 0..2 {
                    let (r, c) = a_position(MmaShape::M16N8K16, lane, reg, half);
                    assert_eq!((regs[lane][reg] >> (16 * half)) as u16, tile[r * 16 + c]);
                }
            }
        }
        // B: a 16×8 row-major tile (rows of 16 bytes), lane l addresses row l % 16.
        let x2t = MatrixLoadStoreSpec {
            transfer: MatrixTransfer::Load,
            count: 2,
            trans: true,
        };
        for (lane, a) in addrs.iter_mut().enumerate() {
            *a = ((lane % 16) * 8) as u64 * 2;
        }
        let regs = x2t.load(&addrs, |_, a| mem.row(a)).unwrap();
        for lane in 0..WARP {
            for reg in 0..2 {
                for half in 0..2 {
                    let (k, n) = b_position(MmaShape::M16N8K16, lane, reg, half);
                    assert_eq!((regs[lane][reg] >> (16 * half)) as u16, tile[k * 8 + n]);
                }
            }
        }
    }

    #[test]
    fn trans_load_equals_plain_load_of_the_transposed_matrix() {
        let mut rng = SmallRng::seed_from_u64(7);
        for count in [1, 2, 4] {
            let mem = Memory::random(&mut rng, 32);
            let addrs = random_row_addresses(&mut rng, 32);
            // Write each matrix transposed into a second memory, rows at 0x1000 + 16*(8j+i).
            let mut transposed = HashMap::new();
            let mut t_addrs = [0u64; WARP];
            for j in 0..count {
                for i in 0..8 {
                    t_addrs[8 * j + i] = 0x1000 + 16 * (8 * j + i) as u64;
                    for c in 0..8 {
                        let v = mem.0[&(addrs[8 * j + c] + 2 * i as u64)];
                        transposed.insert(t_addrs[8 * j + i] + 2 * c as u64, v);
                    }
                }
            }
            let t_mem = Memory(transposed);
            let trans = MatrixLoadStoreSpec {
                transfer: MatrixTransfer::Load,
                count,
                trans: true,
            };
            let plain = MatrixLoadStoreSpec {
                trans: false,
                ..trans
            };
            assert_eq!(
                trans.load(&addrs, |_, a| mem.row(a)).unwrap(),
                plain.load(&t_addrs, |_, a| t_mem.row(a)).unwrap()
            );
        }
    }

    #[test]
    fn store_inverts_load_for_every_form() {
        let mut rng = SmallRng::seed_from_u64(99);
        for spec in specs() {
            let mem = Memory::random(&mut rng, 64);
            let addrs = random_row_addresses(&mut rng, 64);
            let regs = spec.load(&addrs, |_, a| mem.row(a)).unwrap();
            let store = MatrixLoadStoreSpec {
                transfer: MatrixTransfer::Store,
                ..spec
            };
            let mut written = HashMap::new();
            store
                .store(&addrs, &regs, |_, a, bytes| {
                    written.insert(a, bytes);
                    Ok::<_, TensorCoreError>(())
                })
                .unwrap();
            assert_eq!(written.len(), 8 * spec.count);
            for (a, bytes) in written {
                assert_eq!(bytes, mem.row(a).unwrap());
            }
        }
    }

    #[test]
    fn misaligned_row_addresses_name_the_lane() {
        let spec = MatrixLoadStoreSpec::parse("ldmatrix.sync.aligned.m8n8.x2.shared.b16").unwrap();
        let mut addrs = [0u64; WARP];
        addrs[9] = 8;
        addrs[20] = 4; // lane 20 is not used by .x2 and may hold anything
        let err = spec
            .load(&addrs, |_, _| Ok::<_, TensorCoreError>([0; 16]))
            .unwrap_err();
        assert!(
            matches!(
                err,
                TensorCoreError::Misaligned {
                    lane: 9,
                    address: 8,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn parse_reads_the_forms() {
        let s = MatrixLoadStoreSpec::parse("stmatrix.sync.aligned.m8n8.x4.trans.shared::cta.b16")
            .unwrap();
        assert_eq!(
            s,
            MatrixLoadStoreSpec {
                transfer: MatrixTransfer::Store,
                count: 4,
                trans: true
            }
        );
        assert_eq!(MatrixLoadStoreSpec::parse(&s.opcode()).unwrap(), s);
        assert!(MatrixLoadStoreSpec::parse("ldmatrix.sync.aligned.m8n8.x3.shared.b16").is_err());
        assert!(
            MatrixLoadStoreSpec::parse("ldmatrix.sync.aligned.m16n16.x1.trans.shared.b8").is_err()
        );
    }
}
