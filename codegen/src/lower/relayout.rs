//! `transpose` and layout-changing `convert` of register tiles: a round trip through a per-warp
//! scratch buffer in shared memory (row-major, unswizzled), since an element changes lanes.
//! The target's warp sync (`bar.warp.sync`; a wavefront fence on AMD) orders the warp's stores
//! before its loads and its loads before the next use of the buffer.

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
            let p = self.scratch_ptr(&base, r, c, cols, sd);
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
            let p = self.scratch_ptr(&base, &r, &c, cols, sd);
            let v = self.load_shared(&p, sd);
            out.push(self.convert(sd, rd, &v));
        }
        self.rules.warp_sync(&mut self.e);
        self.set(res, Lv::Regs(out));
        Ok(())
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
