//! `transpose` and layout-changing `convert` of register tiles: a round trip through a per-warp
//! scratch buffer in shared memory, since an element changes lanes. The buffer is row-major;
//! rows of 32-bit elements whose width is a power of two of at least 32 words have their words
//! permuted by the row ([`SCRATCH_ROW_BITS`]), so that neither the lanes' stores of rows nor
//! their loads of columns meet in a bank. The target's warp sync (`bar.warp.sync`; a wavefront
//! fence on AMD) orders the warp's stores before its loads and its loads before the next use of
//! the buffer.

use tilekit_ir::{Op, OpKind, ScalarType, Type};

use super::{Lowerer, Lv, R};

impl Lowerer<'_> {
    pub(super) fn relayout(&mut self, op: &Op) -> R<()> {
        let (src, res) = (op.operands[0], op.results[0]);
        let (
            Type::Tile {
                dtype: sd,
                rows,
                cols,
                layout: sl,
            },
            Type::Tile {
                dtype: rd,
                layout: rl,
                ..
            },
        ) = (self.ty(src).clone(), self.ty(res).clone())
        else {
            return Err(self.unsupported(op, "relayout of a non-tile value"));
        };
        let transpose = op.kind == OpKind::Transpose;
        let bytes = u64::from(rows * cols * sd.size_bytes());
        let base = self.scratch(bytes);
        let xs = self.regs(src);
        // Stores: src (r, c) at r·cols + c.
        let coords = self.tile_coords(sl, rows, cols, None, None);
        for ((r, c), x) in coords.iter().zip(&xs) {
            let p = self.relayout_ptr(&base, r, c, cols, sd);
            self.store_shared(&p, x, sd);
        }
        self.rules.warp_sync(&mut self.e);
        // Loads: result (i, j) is src (j, i) for a transpose, src (i, j) otherwise.
        let (rr, rc) = if transpose {
            (cols, rows)
        } else {
            (rows, cols)
        };
        let coords = self.tile_coords(rl, rr, rc, None, None);
        let mut out = Vec::with_capacity(coords.len());
        for (i, j) in coords {
            let (r, c) = if transpose { (j, i) } else { (i, j) };
            let p = self.relayout_ptr(&base, &r, &c, cols, sd);
            let v = self.load_shared(&p, sd);
            out.push(self.convert(sd, rd, &v));
        }
        self.rules.warp_sync(&mut self.e);
        self.set(res, Lv::Regs(out));
        Ok(())
    }

    /// Element (r, c) of the relayout buffer of `cols` columns: column `c` XOR the row's bits of
    /// [`SCRATCH_ROW_BITS`]
    /// where [`scratch_is_permuted`] (a permutation of each row's words: the buffer's size does
    /// not change), else `c`.
    fn relayout_ptr(&mut self, base: &str, r: &str, c: &str, cols: u32, d: ScalarType) -> String {
        if !scratch_is_permuted(cols, d) {
            return self.scratch_ptr(base, r, c, cols, d);
        }
        let mut c = c.to_string();
        for &(rbit, wbit) in &SCRATCH_ROW_BITS {
            let moved = if wbit > rbit {
                let k = self.e.i32(i64::from(wbit - rbit));
                self.e.op(&format!("arith.shli {r}, {k} : i32"))
            } else {
                r.to_string()
            };
            let m = self.e.i32(1 << wbit);
            let bit = self.e.op(&format!("arith.andi {moved}, {m} : i32"));
            c = self.e.op(&format!("arith.xori {c}, {bit} : i32"));
        }
        self.scratch_ptr(base, r, &c, cols, d)
    }

    /// This warp's part of the relayout scratch buffer, grown to `bytes` per warp.
    pub(super) fn scratch(&mut self, bytes: u64) -> String {
        self.scratch_bytes = self.scratch_bytes.max(bytes);
        let per_warp = self.scratch_per_warp.clone();
        let start = self.scratch_start.clone();
        let w = self.warp_idx_value();
        let off = self.e.op(&format!("arith.muli {w}, {per_warp} : i32"));
        self.e.add_i32(&start, &off)
    }

    fn warp_idx_value(&mut self) -> String {
        let c = self.e.i32(i64::from(self.frag.lanes()));
        let tid = self.tid.clone();
        self.e.hoist(&format!("arith.divui {tid}, {c} : i32"))
    }

    pub(super) fn scratch_ptr(
        &mut self,
        base: &str,
        r: &str,
        c: &str,
        cols: u32,
        d: ScalarType,
    ) -> String {
        let es = i64::from(d.size_bytes());
        let rb = self.e.mul_i32_const(r, i64::from(cols) * es);
        let cb = self.e.mul_i32_const(c, es);
        let off = self.e.add_i32(&rb, &cb);
        let total = self.e.add_i32(base, &off);
        self.shared_ptr(&total)
    }
}

/// Whether the relayout buffer of a tile with `cols` columns of `d` permutes its rows' words:
/// 32-bit elements in rows of a power of two of at least 32 words, so that every XOR value of
/// [`SCRATCH_ROW_BITS`] (at most 25) stays inside the row.
pub(crate) fn scratch_is_permuted(cols: u32, d: ScalarType) -> bool {
    d.size_bytes() == 4 && cols.is_power_of_two() && cols >= 32
}

/// The XOR applied to the word index of row `r` of the relayout buffer, as (row bit, word bit)
/// pairs (row bits only move up): bits 1–2 of the row move to word bits 3–4, bit 0 stays bit 0.
/// An mma fragment's register is held by the lanes (g, t) = (lane / 4, lane % 4) at row g,
/// column 2t (+ constants): with rows a multiple of 32 words apart, the 8 rows fall in one bank
/// set (8-way), and the permutation gives each row g its own word bits {0, 3, 4}, disjoint from
/// the 2t's bits 1–2. A load of the transposed register reads rows 2t (+ 1) and columns g: its
/// rows 0, 2, 4, 6 (or 1, 3, 5, 7) take distinct word bits 3–4, so the eight columns g of each
/// sit in their own eight banks.
const SCRATCH_ROW_BITS: [(u32, u32); 3] = [(0, 0), (1, 3), (2, 4)];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Frag;
    use tilekit_ir::Layout;

    /// The XOR of row `r`'s word indices ([`SCRATCH_ROW_BITS`]).
    fn scratch_word_xor(r: u32) -> u32 {
        SCRATCH_ROW_BITS
            .iter()
            .map(|&(rbit, wbit)| ((r >> rbit) & 1) << wbit)
            .fold(0, |a, b| a ^ b)
    }

    /// The most lanes of one 32-lane access that hit the same bank at different words (1 is
    /// conflict-free), for 32-bit elements at word `cols·r + c` (`c` permuted as the lowering
    /// does).
    fn ways(coords: &[(u32, u32)], cols: u32) -> usize {
        let mut banks: Vec<Vec<u32>> = vec![Vec::new(); 32];
        for &(r, c) in coords {
            let c = if scratch_is_permuted(cols, ScalarType::F32) {
                c ^ scratch_word_xor(r)
            } else {
                c
            };
            let w = r * cols + c;
            if !banks[(w % 32) as usize].contains(&w) {
                banks[(w % 32) as usize].push(w);
            }
        }
        banks.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// Each register's (row, col) in the buffer over the 32 lanes of an NVIDIA warp, for the
    /// stores of a `rows × cols` tile in `src` layout and the loads of the relayout's result in
    /// `dst` layout (transposed or not).
    fn accesses(
        src: Layout,
        dst: Layout,
        rows: u32,
        cols: u32,
        transpose: bool,
    ) -> Vec<Vec<(u32, u32)>> {
        let f = Frag::MmaSync;
        // The lanes' (row, col) of register `reg` of a tile of `c` columns, swapped for the
        // loads of a transpose (result (i, j) is source (j, i)).
        let lane_coords = |layout: Layout, c: u32, reg: u32, swap: bool| -> Vec<(u32, u32)> {
            (0..32)
                .map(|lane| {
                    let (ar, ac) = f.tile_elem(layout, c, reg);
                    let (i, j) = (ar.at(f, lane), ac.at(f, lane));
                    if swap {
                        (j, i)
                    } else {
                        (i, j)
                    }
                })
                .collect()
        };
        let mut out: Vec<Vec<(u32, u32)>> = (0..f.tile_regs(rows, cols))
            .map(|reg| lane_coords(src, cols, reg, false))
            .collect();
        let (rr, rc) = if transpose {
            (cols, rows)
        } else {
            (rows, cols)
        };
        out.extend((0..f.tile_regs(rr, rc)).map(|reg| lane_coords(dst, rc, reg, transpose)));
        out
    }

    #[test]
    fn permuted_rows_make_f32_transposes_and_layout_changes_conflict_free() {
        for (rows, cols) in [
            (16, 32),
            (16, 64),
            (32, 32),
            (32, 64),
            (64, 32),
            (64, 64),
            (16, 128),
        ] {
            assert!(scratch_is_permuted(cols, ScalarType::F32));
            for (src, dst, transpose) in [
                (Layout::Row, Layout::Row, true),
                (Layout::Row, Layout::Col, false),
                (Layout::Col, Layout::Row, false),
                (Layout::Col, Layout::Col, true),
            ] {
                for (i, a) in accesses(src, dst, rows, cols, transpose).iter().enumerate() {
                    assert_eq!(
                        ways(a, cols),
                        1,
                        "{rows}x{cols} {src:?} -> {dst:?} transpose {transpose}: access {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_permutation_keeps_each_row_in_place() {
        for cols in [32u32, 64, 128, 256] {
            for r in 0..64 {
                let mut seen: Vec<u32> = (0..cols).map(|c| c ^ scratch_word_xor(r)).collect();
                seen.sort_unstable();
                assert_eq!(seen, (0..cols).collect::<Vec<_>>(), "row {r} of {cols}");
            }
        }
        assert!(!scratch_is_permuted(16, ScalarType::F32));
        assert!(!scratch_is_permuted(48, ScalarType::F32));
        assert!(!scratch_is_permuted(64, ScalarType::BF16));
        // Every XOR value stays inside the narrowest permuted row.
        assert!((0..64).all(|r| scratch_word_xor(r) < 32));
    }
}
