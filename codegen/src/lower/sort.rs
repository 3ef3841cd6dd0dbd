//! Row sorts and top-k of register tiles (`sort_row.*`, `topk_row`) with an i32 payload.
//!
//! A row's elements are spread over several lanes in every fragment layout, so the keys and
//! payloads go through the warp's relayout scratch buffer in shared memory (row-major, each
//! row padded to a power of two `W` with pairs that sort last). A bitonic network then sorts
//! every row at once: each of its log₂W·(log₂W+1)/2 stages is one compare-exchange per pair of
//! positions, the `rows·n/2` pairs of a stage shared among the warp's lanes, the stages
//! separated by warp syncs. The comparison is the IR's total order on (key, payload) pairs
//! ([`tilekit_ir::sort_before`]: NaN above every number, ties to the lower payload), so the
//! network's result is the interpreter's exactly. 16-bit float keys sort as f32 (exact).
//!
//! `topk_row[k]` sorts the row descending, writes the running list's first k pairs (the rest
//! empty) after the first 16 sorted positions, and sorts those 32 positions again: the first k
//! are the answer. Scratch per warp: `rows · W · (key bytes + 4)`, W = max(32, the next power
//! of two of the columns) for a top-k; composing 16- or 32-column tiles keeps it small.

use tilekit_ir::{topk_empty_key, Op, OpKind, ScalarType, Type};

use super::{mty, Lowerer, Lv, R};

/// A row region of the scratch buffer: where the keys and payloads start, the keys' dtype,
/// and the padded row length.
struct Rows {
    keys: String,
    payload: String,
    key: ScalarType,
    rows: u32,
    width: u32,
}

/// The payload of padding and of empty top-k entries.
const LAST_PAYLOAD: f64 = i32::MAX as f64;

/// The key that sorts after every other in the given direction (ties only with itself).
fn last_key(descending: bool, d: ScalarType) -> f64 {
    match (descending, d.is_float()) {
        (true, _) => topk_empty_key(d),
        (false, true) => f64::NAN,
        (false, false) => tilekit_ir::numeric::int_range(d).1,
    }
}

impl Lowerer<'_> {
    pub(super) fn sort_row(&mut self, op: &Op) -> R<()> {
        let descending = match op.kind {
            OpKind::SortRow { descending } => descending,
            _ => return Err(self.unsupported(op, "not a sort_row")),
        };
        let (d, rows, cols, layout) = self.sort_tile(op, op.operands[0])?;
        let width = cols.next_power_of_two();
        let sr = self.sort_scratch(d, rows, width);
        self.stage_pairs(&sr, op.operands[0], op.operands[1], 0, None)?;
        self.pad(&sr, cols, width, descending);
        self.rules.warp_sync(&mut self.e);
        self.bitonic(&sr, width, descending);
        let (k, i) = self.read_pairs(&sr, d, layout, cols, None);
        self.set(op.results[0], Lv::Regs(k));
        self.set(op.results[1], Lv::Regs(i));
        Ok(())
    }

    pub(super) fn topk_row(&mut self, op: &Op) -> R<()> {
        let OpKind::TopkRow(k) = op.kind else {
            return Err(self.unsupported(op, "not a topk_row"));
        };
        let (d, rows, cols, layout) = self.sort_tile(op, op.operands[0])?;
        let first = cols.next_power_of_two();
        let width = first.max(32);
        let sr = self.sort_scratch(d, rows, width);
        self.stage_pairs(&sr, op.operands[0], op.operands[1], 0, None)?;
        self.pad(&sr, cols, first, true);
        self.rules.warp_sync(&mut self.e);
        self.bitonic(&sr, first, true);
        // The running list goes after the 16 best of the row; its columns from k on are empty.
        self.stage_pairs(&sr, op.operands[2], op.operands[3], 16, Some(k))?;
        self.rules.warp_sync(&mut self.e);
        self.bitonic(&sr, 32, true);
        let (keys, idx) = self.read_pairs(&sr, d, layout, 16, Some(k));
        self.set(op.results[0], Lv::Regs(keys));
        self.set(op.results[1], Lv::Regs(idx));
        Ok(())
    }

    fn sort_tile(
        &self,
        op: &Op,
        v: tilekit_ir::Value,
    ) -> R<(ScalarType, u32, u32, tilekit_ir::Layout)> {
        match self.ty(v) {
            Type::Tile {
                dtype,
                rows,
                cols,
                layout,
            } => Ok((*dtype, *rows, *cols, *layout)),
            _ => Err(self.unsupported(op, "a sort of a non-tile value")),
        }
    }

    fn sort_scratch(&mut self, d: ScalarType, rows: u32, width: u32) -> Rows {
        let key = if d.is_float() { ScalarType::F32 } else { d };
        let key_bytes = u64::from(rows * width * key.size_bytes());
        let keys = self.scratch(key_bytes + u64::from(rows * width * 4));
        let off = self.e.i32(key_bytes as i64);
        let payload = self.e.add_i32(&keys, &off);
        Rows {
            keys,
            payload,
            key,
            rows,
            width,
        }
    }

    fn key_ptr(&mut self, sr: &Rows, r: &str, c: &str) -> String {
        let (base, w, d) = (sr.keys.clone(), sr.width, sr.key);
        self.scratch_ptr(&base, r, c, w, d)
    }

    fn payload_ptr(&mut self, sr: &Rows, r: &str, c: &str) -> String {
        let (base, w) = (sr.payload.clone(), sr.width);
        self.scratch_ptr(&base, r, c, w, ScalarType::I32)
    }

    /// Stores tile `t` and payload `idx` at column offset `col0` of the scratch rows; with
    /// `keep = Some(k)`, the columns from k on are stored as empty pairs instead.
    fn stage_pairs(
        &mut self,
        sr: &Rows,
        t: tilekit_ir::Value,
        idx: tilekit_ir::Value,
        col0: u32,
        keep: Option<u32>,
    ) -> R<()> {
        let Type::Tile {
            dtype,
            rows,
            cols,
            layout,
        } = self.ty(t).clone()
        else {
            unreachable!("verified IR: sort operands are tiles")
        };
        let (ks, is) = (self.regs(t), self.regs(idx));
        let coords = self.tile_coords(layout, rows, cols, None, None);
        let empty_key = self.e.constant(sr.key, last_key(true, sr.key));
        let empty_idx = self.e.i32(i32::MAX.into());
        let (kt, limit, shift) = (
            mty(sr.key),
            self.e.i32(keep.unwrap_or(cols).into()),
            self.e.i32(col0.into()),
        );
        for (((r, c), x), i) in coords.iter().zip(&ks).zip(&is) {
            let mut key = self.convert(dtype, sr.key, x);
            let mut pay = i.clone();
            if keep.is_some() {
                let kept = self.e.op(&format!("arith.cmpi ult, {c}, {limit} : i32"));
                key = self
                    .e
                    .op(&format!("arith.select {kept}, {key}, {empty_key} : {kt}"));
                pay = self
                    .e
                    .op(&format!("arith.select {kept}, {pay}, {empty_idx} : i32"));
            }
            let c = self.e.add_i32(c, &shift);
            let p = self.key_ptr(sr, r, &c);
            self.store_shared(&p, &key, sr.key);
            let p = self.payload_ptr(sr, r, &c);
            self.store_shared(&p, &pay, ScalarType::I32);
        }
        Ok(())
    }

    /// Fills columns `cols..width` of every row with pairs that sort last.
    fn pad(&mut self, sr: &Rows, cols: u32, width: u32, descending: bool) {
        if cols == width {
            return;
        }
        let n = width - cols;
        let key = self.e.constant(sr.key, last_key(descending, sr.key));
        let pay = self.e.constant(ScalarType::I32, LAST_PAYLOAD);
        let q = self.lane_loop(sr.rows * n);
        let nn = self.e.i32(n.into());
        let c0 = self.e.i32(cols.into());
        let r = self.e.op(&format!("arith.divui {q}, {nn} : i32"));
        let c = self.e.op(&format!("arith.remui {q}, {nn} : i32"));
        let c = self.e.add_i32(&c, &c0);
        let p = self.key_ptr(sr, &r, &c);
        self.store_shared(&p, &key, sr.key);
        let p = self.payload_ptr(sr, &r, &c);
        self.store_shared(&p, &pay, ScalarType::I32);
        self.e.close("}");
    }

    /// Opens `scf.for %q = lane to n step lanes`; returns `%q`. The caller closes it.
    fn lane_loop(&mut self, n: u32) -> String {
        let lane = self.e.lane.clone();
        let (end, step) = (self.e.i32(n.into()), self.e.i32(self.frag.lanes().into()));
        let q = self.e.fresh();
        self.e.open(&format!(
            "scf.for {q} = {lane} to {end} step {step} : i32 {{"
        ));
        q
    }

    /// Sorts columns `0..n` (a power of two) of every scratch row with a bitonic network.
    fn bitonic(&mut self, sr: &Rows, n: u32, descending: bool) {
        let half = n / 2;
        let mut size = 2;
        while size <= n {
            let mut stride = size / 2;
            while stride >= 1 {
                let q = self.lane_loop(sr.rows * half);
                let hh = self.e.i32(half.into());
                let r = self.e.op(&format!("arith.divui {q}, {hh} : i32"));
                let t = self.e.op(&format!("arith.remui {q}, {hh} : i32"));
                let (s, s2) = (self.e.i32(stride.into()), self.e.i32((2 * stride).into()));
                let hi = self.e.op(&format!("arith.divui {t}, {s} : i32"));
                let lo = self.e.op(&format!("arith.remui {t}, {s} : i32"));
                let hi = self.e.op(&format!("arith.muli {hi}, {s2} : i32"));
                let i = self.e.add_i32(&hi, &lo);
                let l = self.e.add_i32(&i, &s);
                let (pki, ppi) = (self.key_ptr(sr, &r, &i), self.payload_ptr(sr, &r, &i));
                let (pkl, ppl) = (self.key_ptr(sr, &r, &l), self.payload_ptr(sr, &r, &l));
                let ki = self.load_shared(&pki, sr.key);
                let pi = self.load_shared(&ppi, ScalarType::I32);
                let kl = self.load_shared(&pkl, sr.key);
                let pl = self.load_shared(&ppl, ScalarType::I32);
                // Within the final merge every block runs in the requested direction; before
                // it, blocks alternate so that each pair of blocks forms a bitonic sequence.
                let swap = if size == n {
                    self.before(descending, sr.key, (&kl, &pl), (&ki, &pi))
                } else {
                    let sz = self.e.i32(size.into());
                    let bit = self.e.op(&format!("arith.andi {i}, {sz} : i32"));
                    let zero = self.e.i32(0);
                    let up = self.e.op(&format!("arith.cmpi eq, {bit}, {zero} : i32"));
                    // The other direction is the exact reverse of the order (ties by the
                    // higher payload too), as the network needs.
                    let a = self.before(descending, sr.key, (&kl, &pl), (&ki, &pi));
                    let b = self.before(descending, sr.key, (&ki, &pi), (&kl, &pl));
                    self.e.op(&format!("arith.select {up}, {a}, {b} : i1"))
                };
                let kt = mty(sr.key);
                let nki = self
                    .e
                    .op(&format!("arith.select {swap}, {kl}, {ki} : {kt}"));
                let nkl = self
                    .e
                    .op(&format!("arith.select {swap}, {ki}, {kl} : {kt}"));
                let npi = self.e.op(&format!("arith.select {swap}, {pl}, {pi} : i32"));
                let npl = self.e.op(&format!("arith.select {swap}, {pi}, {pl} : i32"));
                self.store_shared(&pki, &nki, sr.key);
                self.store_shared(&pkl, &nkl, sr.key);
                self.store_shared(&ppi, &npi, ScalarType::I32);
                self.store_shared(&ppl, &npl, ScalarType::I32);
                self.e.close("}");
                self.rules.warp_sync(&mut self.e);
                stride /= 2;
            }
            size *= 2;
        }
    }

    /// Whether pair `a` comes before pair `b` ([`tilekit_ir::sort_before`]), as an i1.
    fn before(
        &mut self,
        descending: bool,
        d: ScalarType,
        a: (&str, &str),
        b: (&str, &str),
    ) -> String {
        let ((x, i), (y, j)) = (a, b);
        let t = mty(d);
        let first_idx = self.e.op(&format!("arith.cmpi slt, {i}, {j} : i32"));
        let (strict, tie) = if d.is_float() {
            let pred = if descending { "ogt" } else { "olt" };
            let ordered = self.e.op(&format!("arith.cmpf {pred}, {x}, {y} : {t}"));
            let x_nan = self.e.op(&format!("arith.cmpf uno, {x}, {x} : {t}"));
            let y_nan = self.e.op(&format!("arith.cmpf uno, {y}, {y} : {t}"));
            // NaN is above every number: first when descending, last when ascending.
            let (nan_side, num_side) = if descending { (x, y) } else { (y, x) };
            let side_nan = self
                .e
                .op(&format!("arith.cmpf uno, {nan_side}, {nan_side} : {t}"));
            let other_num = self
                .e
                .op(&format!("arith.cmpf ord, {num_side}, {num_side} : {t}"));
            let by_nan = self.e.and_i1(&side_nan, &other_num);
            let strict = self.e.op(&format!("arith.ori {ordered}, {by_nan} : i1"));
            let eq = self.e.op(&format!("arith.cmpf oeq, {x}, {y} : {t}"));
            let both_nan = self.e.and_i1(&x_nan, &y_nan);
            let tie = self.e.op(&format!("arith.ori {eq}, {both_nan} : i1"));
            (strict, tie)
        } else {
            let u = d == ScalarType::U32;
            let pred = match (descending, u) {
                (true, false) => "sgt",
                (true, true) => "ugt",
                (false, false) => "slt",
                (false, true) => "ult",
            };
            let strict = self.e.op(&format!("arith.cmpi {pred}, {x}, {y} : {t}"));
            let tie = self.e.op(&format!("arith.cmpi eq, {x}, {y} : {t}"));
            (strict, tie)
        };
        let by_idx = self.e.and_i1(&tie, &first_idx);
        self.e.op(&format!("arith.ori {strict}, {by_idx} : i1"))
    }

    /// This lane's registers of the first `cols` scratch columns as a tile of dtype `d`
    /// (keys) and i32 (payloads); with `keep = Some(k)`, columns from k on are empty pairs.
    fn read_pairs(
        &mut self,
        sr: &Rows,
        d: ScalarType,
        layout: tilekit_ir::Layout,
        cols: u32,
        keep: Option<u32>,
    ) -> (Vec<String>, Vec<String>) {
        let coords = self.tile_coords(layout, sr.rows, cols, None, None);
        let empty_key = self.e.constant(d, topk_empty_key(d));
        let empty_idx = self.e.i32(i32::MAX.into());
        let limit = self.e.i32(keep.unwrap_or(cols).into());
        let (mut keys, mut idx) = (Vec::new(), Vec::new());
        for (r, c) in &coords {
            let p = self.key_ptr(sr, r, c);
            let k = self.load_shared(&p, sr.key);
            let mut k = self.convert(sr.key, d, &k);
            let p = self.payload_ptr(sr, r, c);
            let mut i = self.load_shared(&p, ScalarType::I32);
            if keep.is_some() {
                let kept = self.e.op(&format!("arith.cmpi ult, {c}, {limit} : i32"));
                let t = mty(d);
                k = self
                    .e
                    .op(&format!("arith.select {kept}, {k}, {empty_key} : {t}"));
                i = self
                    .e
                    .op(&format!("arith.select {kept}, {i}, {empty_idx} : i32"));
            }
            keys.push(k);
            idx.push(i);
        }
        self.rules.warp_sync(&mut self.e);
        (keys, idx)
    }
}
