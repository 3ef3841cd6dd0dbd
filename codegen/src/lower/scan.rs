//! Scans (prefix sums, products, maxima, minima) along the rows or columns of a register tile.
//!
//! A row's elements are spread over several lanes in every fragment layout, so the tile goes
//! through the warp's relayout scratch buffer in shared memory (row-major): each lane then
//! walks whole lines (rows, or columns) in order, `lanes` lines at a time, and the warp reloads
//! its registers. The walk is sequential along a line (C steps for a 16×C row scan), which keeps
//! one rule for every layout and target; 16-bit floats accumulate in f32 and round per element.

use tilekit_ir::{BcastAxis, BinaryFn, Op, OpKind, ReduceFn, ScalarType, Type};

use super::{mty, Lowerer, Lv, R};

/// The identity of `f` in dtype `d` (sum 0, product 1, max the lowest value, min the highest).
fn identity(f: ReduceFn, d: ScalarType) -> f64 {
    let (lo, hi) = match d {
        ScalarType::I8 => (f64::from(i8::MIN), f64::from(i8::MAX)),
        ScalarType::I32 => (f64::from(i32::MIN), f64::from(i32::MAX)),
        ScalarType::U32 => (0.0, f64::from(u32::MAX)),
        _ => (f64::NEG_INFINITY, f64::INFINITY),
    };
    match f {
        ReduceFn::Sum => 0.0,
        ReduceFn::Prod => 1.0,
        ReduceFn::Max => lo,
        ReduceFn::Min => hi,
    }
}

impl Lowerer<'_> {
    pub(super) fn scan(&mut self, op: &Op) -> R<()> {
        let OpKind::Scan { axis, f, exclusive } = op.kind else {
            return Err(self.unsupported(op, "not a scan"));
        };
        let (src, res) = (op.operands[0], op.results[0]);
        let Type::Tile {
            dtype: d,
            rows,
            cols,
            layout,
        } = self.ty(src).clone()
        else {
            return Err(self.unsupported(op, "scan of a non-tile value"));
        };
        let wide = if matches!(d, ScalarType::BF16 | ScalarType::F16) {
            ScalarType::F32
        } else {
            d
        };
        let combine = match f {
            ReduceFn::Sum => BinaryFn::Add,
            ReduceFn::Prod => BinaryFn::Mul,
            ReduceFn::Max => BinaryFn::Max,
            ReduceFn::Min => BinaryFn::Min,
        };
        let base = self.scratch(u64::from(rows * cols * wide.size_bytes()));
        let xs = self.regs(src);
        let coords = self.tile_coords(layout, rows, cols, None, None);
        for ((r, c), x) in coords.iter().zip(&xs) {
            let w = self.convert(d, wide, x);
            let p = self.scratch_ptr(&base, r, c, cols, wide);
            self.store_shared(&p, &w, wide);
        }
        self.rules.warp_sync(&mut self.e);
        let (lines, len) = match axis {
            BcastAxis::Row => (rows, cols),
            BcastAxis::Col => (cols, rows),
        };
        let lanes = self.frag.lanes();
        let wt = mty(wide);
        let (zero, one, n_lines, n_len) = (
            self.e.i32(0),
            self.e.i32(1),
            self.e.i32(i64::from(lines)),
            self.e.i32(i64::from(len)),
        );
        let init = self.e.constant(wide, identity(f, wide));
        let lane = self.e.lane.clone();
        for j in 0..lines.div_ceil(lanes) {
            let first = self.e.i32(i64::from(j * lanes));
            let line = self.e.add_i32(&lane, &first);
            let inside = self
                .e
                .op(&format!("arith.cmpi ult, {line}, {n_lines} : i32"));
            self.e.open(&format!("scf.if {inside} {{"));
            let (i, acc, done) = (self.e.fresh(), self.e.fresh(), self.e.fresh());
            self.e.open(&format!(
                "{done} = scf.for {i} = {zero} to {n_len} step {one} iter_args({acc} = {init}) -> ({wt}) : i32 {{"
            ));
            let (r, c) = match axis {
                BcastAxis::Row => (line.clone(), i.clone()),
                BcastAxis::Col => (i.clone(), line.clone()),
            };
            let p = self.scratch_ptr(&base, &r, &c, cols, wide);
            let x = self.load_shared(&p, wide);
            let next = self.binary(combine, wide, &acc, &x);
            self.store_shared(&p, if exclusive { &acc } else { &next }, wide);
            self.e.line(&format!("scf.yield {next} : {wt}"));
            self.e.close("}");
            self.e.line("scf.yield");
            self.e.close("}");
        }
        self.rules.warp_sync(&mut self.e);
        let mut out = Vec::with_capacity(coords.len());
        for (r, c) in &coords {
            let p = self.scratch_ptr(&base, r, c, cols, wide);
            let v = self.load_shared(&p, wide);
            out.push(self.convert(wide, d, &v));
        }
        self.rules.warp_sync(&mut self.e);
        self.set(res, Lv::Regs(out));
        Ok(())
    }
}
