//! `mma.sync.aligned.m16n8k{8,16}.row.col` with f16/bf16 operands and f32 or f16 accumulators,
//! and `mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32`, from the PTX ISA sections "Matrix
//! Fragments for mma.m16n8k16 with floating point type" and "... mma.m16n8k8" (whose `.tf32`
//! figures hold one element per register).
//!
//! Lane `l` of the warp is split as `group = l / 4` ("groupID") and `thread = l % 4`
//! ("threadID_in_group"); every fragment map below is stated in those terms, as the ISA does.

use super::elements::{Accumulation, AccumulatorType, OperandType};
use super::TensorCoreError;

/// Lanes in a warp.
pub const WARP: usize = 32;

/// Per-lane registers of one warp-wide operand: `regs[lane][i]` is the lane's i-th register of
/// the operand's vector (`{a0, a1, ...}`); registers beyond the operand's count are ignored.
pub type WarpFragment<const R: usize> = [[u32; R]; WARP];

/// The shapes of `mma.sync` with 16-bit floating-point operands that the emulator runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MmaShape {
    /// 16×8 output, k = 16.
    M16N8K16,
    /// 16×8 output, k = 8.
    M16N8K8,
}

impl MmaShape {
    /// Rows of A and of the output.
    pub fn m(self) -> usize {
        16
    }
    /// Columns of B and of the output.
    pub fn n(self) -> usize {
        8
    }
    /// The reduction extent.
    pub fn k(self) -> usize {
        match self {
            MmaShape::M16N8K16 => 16,
            MmaShape::M16N8K8 => 8,
        }
    }
}

/// Row and column of A (m×k, row-major in the `.row` sense) held by `half` (0 = low 16 bits)
/// of register `reg` of `lane`, for 16-bit operands.
pub fn a_position(shape: MmaShape, lane: usize, reg: usize, half: usize) -> (usize, usize) {
    let (group, thread) = (lane / 4, lane % 4);
    match shape {
        // a0..a7, element i = 2*reg + half: rows groupID (+8 for a2,a3,a6,a7), columns
        // threadID_in_group*2 + (i & 1) (+8 for a4..a7).
        MmaShape::M16N8K16 => (group + 8 * (reg & 1), 2 * thread + half + 8 * (reg >> 1)),
        // a0..a3: rows groupID (+8 for a2,a3), columns threadID_in_group*2 + (i & 1).
        MmaShape::M16N8K8 => (group + 8 * reg, 2 * thread + half),
    }
}

/// Row and column of A (16×8) held by register `reg` of `lane` for `.m16n8k8` with `.tf32`
/// operands: a0..a3 at rows groupID (a0, a2) and groupID+8 (a1, a3), columns
/// threadID_in_group (a0, a1) and threadID_in_group+4 (a2, a3).
pub fn a_position_tf32(lane: usize, reg: usize) -> (usize, usize) {
    let (group, thread) = (lane / 4, lane % 4);
    (group + 8 * (reg & 1), thread + 4 * (reg >> 1))
}

/// Row (k) and column (n) of B (8×8) held by register `reg` of `lane` for `.m16n8k8` with
/// `.tf32` operands: b0, b1 at rows threadID_in_group and threadID_in_group+4, column groupID.
pub fn b_position_tf32(lane: usize, reg: usize) -> (usize, usize) {
    let (group, thread) = (lane / 4, lane % 4);
    (thread + 4 * reg, group)
}

/// Row (k) and column (n) of B (k×n, `.col`) held by `half` of register `reg` of `lane`.
pub fn b_position(shape: MmaShape, lane: usize, reg: usize, half: usize) -> (usize, usize) {
    let (group, thread) = (lane / 4, lane % 4);
    match shape {
        // b0..b3: rows threadID_in_group*2 + (i & 1) (+8 for b2,b3), column groupID.
        MmaShape::M16N8K16 => (2 * thread + half + 8 * reg, group),
        MmaShape::M16N8K8 => (2 * thread + half, group),
    }
}

/// Row and column of the 16×8 accumulator held by element `index` of register `reg` of `lane`
/// (index is always 0 for f32; 0 or 1 for the halves of an f16x2 register).
pub fn c_position(acc: AccumulatorType, lane: usize, reg: usize, index: usize) -> (usize, usize) {
    let (group, thread) = (lane / 4, lane % 4);
    // c0..c3: rows groupID (+8 for c2, c3), columns threadID_in_group*2 + (i & 1).
    let i = reg * acc.per_register() + index;
    (group + 8 * (i >> 1), 2 * thread + (i & 1))
}

/// One `mma.sync` form: shape and element types (`.dtype.atype.btype.ctype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MmaSyncSpec {
    /// m16n8k16 or m16n8k8.
    pub shape: MmaShape,
    /// The type of A and B (the same for the 16-bit forms).
    pub operands: OperandType,
    /// The type of C.
    pub c: AccumulatorType,
    /// The type of D.
    pub d: AccumulatorType,
}

impl MmaSyncSpec {
    /// Reads the form from an opcode such as `mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32`.
    pub fn parse(opcode: &str) -> Result<Self, TensorCoreError> {
        let unsupported = |message: &str| TensorCoreError::UnsupportedForm {
            opcode: opcode.to_string(),
            message: message.to_string(),
        };
        let parts: Vec<&str> = opcode.split('.').collect();
        let expected = "expected mma.sync.aligned.{m16n8k16|m16n8k8}.row.col.<d>.<a>.<b>.<c>";
        if parts.len() != 10 || parts[0] != "mma" || parts[1] != "sync" || parts[2] != "aligned" {
            return Err(unsupported(expected));
        }
        let shape = match parts[3] {
            "m16n8k16" => MmaShape::M16N8K16,
            "m16n8k8" => MmaShape::M16N8K8,
            _ => {
                return Err(unsupported(
                    "only the m16n8k16 and m16n8k8 shapes are modelled",
                ))
            }
        };
        if parts[4] != "row" || parts[5] != "col" {
            return Err(unsupported(
                "the 16-bit floating-point forms require .row.col",
            ));
        }
        let d = AccumulatorType::from_ptx(parts[6])
            .ok_or_else(|| unsupported("d must be .f32 or .f16"))?;
        let a = OperandType::from_ptx(parts[7]);
        let b = OperandType::from_ptx(parts[8]);
        let c = AccumulatorType::from_ptx(parts[9])
            .ok_or_else(|| unsupported("c must be .f32 or .f16"))?;
        let operands = match (a, b) {
            (Some(OperandType::F16), Some(OperandType::F16)) => OperandType::F16,
            (Some(OperandType::Bf16), Some(OperandType::Bf16)) => OperandType::Bf16,
            (Some(OperandType::Tf32), Some(OperandType::Tf32)) => OperandType::Tf32,
            _ => {
                return Err(unsupported(
                    "A and B must both be .f16, both .bf16 or both .tf32",
                ))
            }
        };
        if operands == OperandType::Tf32
            && (shape != MmaShape::M16N8K8
                || c != AccumulatorType::F32
                || d != AccumulatorType::F32)
        {
            return Err(unsupported(
                "tf32 operands are modelled for .m16n8k8 with .f32 accumulators only",
            ));
        }
        if operands == OperandType::Bf16 && (c != AccumulatorType::F32 || d != AccumulatorType::F32)
        {
            return Err(unsupported("bf16 operands accumulate in .f32 only"));
        }
        Ok(MmaSyncSpec {
            shape,
            operands,
            c,
            d,
        })
    }

    /// Registers of A per lane.
    pub fn a_registers(&self) -> usize {
        self.shape.m() * self.shape.k() / WARP / self.operands.per_register()
    }
    /// Registers of B per lane.
    pub fn b_registers(&self) -> usize {
        self.shape.k() * self.shape.n() / WARP / self.operands.per_register()
    }
    /// Registers of C per lane.
    pub fn c_registers(&self) -> usize {
        self.shape.m() * self.shape.n() / WARP / self.c.per_register()
    }
    /// Registers of D per lane.
    pub fn d_registers(&self) -> usize {
        self.shape.m() * self.shape.n() / WARP / self.d.per_register()
    }

    /// A as a dense row-major m×k matrix gathered from the warp's registers.
    pub fn gather_a(&self, a: &WarpFragment<4>) -> Vec<f64> {
        let (m, k) = (self.shape.m(), self.shape.k());
        let mut dense = vec![0.0; m * k];
        for (lane, regs) in a.iter().enumerate() {
            for (reg, bits) in regs.iter().enumerate().take(self.a_registers()) {
                if self.operands == OperandType::Tf32 {
                    let (r, c) = a_position_tf32(lane, reg);
                    dense[r * k + c] = self.operands.decode(*bits);
                    continue;
                }
                for half in 0..2 {
                    let (r, c) = a_position(self.shape, lane, reg, half);
                    dense[r * k + c] = self.operands.unpack(*bits, half);
                }
            }
        }
        dense
    }

    /// B as a dense row-major k×n matrix gathered from the warp's registers.
    pub fn gather_b(&self, b: &WarpFragment<2>) -> Vec<f64> {
        let n = self.shape.n();
        let mut dense = vec![0.0; self.shape.k() * n];
        for (lane, regs) in b.iter().enumerate() {
            for (reg, bits) in regs.iter().enumerate().take(self.b_registers()) {
                if self.operands == OperandType::Tf32 {
                    let (r, c) = b_position_tf32(lane, reg);
                    dense[r * n + c] = self.operands.decode(*bits);
                    continue;
                }
                for half in 0..2 {
                    let (r, c) = b_position(self.shape, lane, reg, half);
                    dense[r * n + c] = self.operands.unpack(*bits, half);
                }
            }
        }
        dense
    }

    /// D = A·B + C for the whole warp. Each output element is
    /// `Accumulation::Exact.sum(c, [a·b for k in 0..K])` rounded to D's type: the products of
    /// 16-bit floats and of tf32 values are exact, the sum is carried in f64 and rounded once (see [`Accumulation`]).
    pub fn execute(
        &self,
        a: &WarpFragment<4>,
        b: &WarpFragment<2>,
        c: &WarpFragment<4>,
    ) -> WarpFragment<4> {
        let (k, n) = (self.shape.k(), self.shape.n());
        let a_dense = self.gather_a(a);
        let b_dense = self.gather_b(b);
        let mut d = [[0u32; 4]; WARP];
        let mut products = vec![0.0; k];
        for (lane, d_regs) in d.iter_mut().enumerate() {
            for (reg, d_reg) in d_regs.iter_mut().enumerate().take(self.d_registers()) {
                for index in 0..self.d.per_register() {
                    let (row, col) = c_position(self.d, lane, reg, index);
                    // C is laid out by its own type: find the same (row, col) in C's registers.
                    let (c_reg, c_index) = c_slot(self.c, row, col);
                    let acc = self.c.unpack(c[lane][c_reg], c_index);
                    for (kk, p) in products.iter_mut().enumerate() {
                        *p = a_dense[row * k + kk] * b_dense[kk * n + col];
                    }
                    let sum = Accumulation::Exact.sum(acc, &products);
                    *d_reg = self.d.pack(*d_reg, index, sum);
                }
            }
        }
        d
    }
}

/// The register and element of the lane that holds accumulator (row, col); the lane is
/// `(row % 8) * 4 + col / 2` for both accumulator types.
fn c_slot(acc: AccumulatorType, row: usize, col: usize) -> (usize, usize) {
    let i = 2 * (row / 8) + (col & 1);
    (i / acc.per_register(), i % acc.per_register())
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // tests index lanes and registers as the ISA's figures do
mod tests {
    use super::*;
    use half::{bf16, f16};
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use std::collections::HashSet;

    const SHAPES: [MmaShape; 2] = [MmaShape::M16N8K16, MmaShape::M16N8K8];

    fn spec(shape: MmaShape, operands: OperandType, acc: AccumulatorType) -> MmaSyncSpec {
        MmaSyncSpec {
            shape,
            operands,
            c: acc,
            d: acc,
        }
    }

    #[test]
    fn tf32_fragments_are_bijections_and_the_form_parses() {
        let s = MmaSyncSpec::parse("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32").unwrap();
        assert_eq!((s.a_registers(), s.b_registers()), (4, 2));
        let mut seen = HashSet::new();
        for lane in 0..WARP {
            for reg in 0..4 {
                let (r, c) = a_position_tf32(lane, reg);
                assert!(r < 16 && c < 8 && seen.insert((r, c)));
            }
        }
        assert_eq!(seen.len(), 128);
        let mut seen = HashSet::new();
        for lane in 0..WARP {
            for reg in 0..2 {
                let (r, c) = b_position_tf32(lane, reg);
                assert!(r < 8 && c < 8 && seen.insert((r, c)));
            }
        }
        assert_eq!(seen.len(), 64);
        assert!(MmaSyncSpec::parse("mma.sync.aligned.m16n8k16.row.col.f32.tf32.tf32.f32").is_err());
        assert!(MmaSyncSpec::parse("mma.sync.aligned.m16n8k8.row.col.f32.tf32.bf16.f32").is_err());
    }

    #[test]
    fn fragment_maps_are_bijections_onto_their_matrices() {
        for shape in SHAPES {
            let s = spec(shape, OperandType::F16, AccumulatorType::F32);
            let mut seen = HashSet::new();
            for lane in 0..WARP {
                for reg in 0..s.a_registers() {
                    for half in 0..2 {
                        let (r, c) = a_position(shape, lane, reg, half);
                        assert!(r < shape.m() && c < shape.k());
                        assert!(seen.insert((r, c)), "A element ({r},{c}) held twice");
                    }
                }
            }
            assert_eq!(seen.len(), shape.m() * shape.k());
            let mut seen = HashSet::new();
            for lane in 0..WARP {
                for reg in 0..s.b_registers() {
                    for half in 0..2 {
                        let (r, c) = b_position(shape, lane, reg, half);
                        assert!(r < shape.k() && c < shape.n());
                        assert!(seen.insert((r, c)));
                    }
                }
            }
            assert_eq!(seen.len(), shape.k() * shape.n());
        }
        for acc in [AccumulatorType::F32, AccumulatorType::F16] {
            let mut seen = HashSet::new();
            for lane in 0..WARP {
                for reg in 0..(4 / acc.per_register()) {
                    for index in 0..acc.per_register() {
                        let (r, c) = c_position(acc, lane, reg, index);
                        assert!(seen.insert((r, c)));
                        assert_eq!(c_slot(acc, r, c), (reg, index));
                        assert_eq!((r % 8) * 4 + c / 2, lane);
                    }
                }
            }
            assert_eq!(seen.len(), 128);
        }
    }

    /// CuTe's statement of the same fragments (`mma_traits_sm80.hpp`, SM80_16x8x16_F32BF16BF16F32_TN
    /// and SM80_16x8x8_*): a layout maps (thread, value) to a column-major offset of the
    /// M×K (A), N×K (B) or M×N (C) matrix. Shapes/strides as CuTe writes them:
    /// A 16x16: ((4,8),(2,2,2)):((32,1),(16,8,128)); B 16x8x16: ((4,8),(2,2)):((16,1),(8,64));
    /// C 16x8: ((4,8),(2,2)):((32,1),(16,8)); A 16x8x8: ((4,8),(2,2)):((32,1),(16,8));
    /// B 16x8x8 (SM80_8x8_Row): ((4,8),2):((16,1),8). The thread index splits as t0 + 4*t1 and the value
    /// index as v0 + 2*v1 + 4*v2 (CuTe's colexicographic order).
    fn cute_offset(
        thread_shape: &[usize],
        thread_stride: &[usize],
        value_shape: &[usize],
        value_stride: &[usize],
        thread: usize,
        value: usize,
    ) -> usize {
        let mut offset = 0;
        let mut t = thread;
        for (s, d) in thread_shape.iter().zip(thread_stride) {
            offset += (t % s) * d;
            t /= s;
        }
        let mut v = value;
        for (s, d) in value_shape.iter().zip(value_stride) {
            offset += (v % s) * d;
            v /= s;
        }
        offset
    }

    #[test]
    fn fragment_maps_agree_with_cutes_sm80_layouts() {
        for lane in 0..WARP {
            // A, m16n8k16: value v is element a_v, i.e. register v/2, half v%2.
            for v in 0..8 {
                let off = cute_offset(&[4, 8], &[32, 1], &[2, 2, 2], &[16, 8, 128], lane, v);
                assert_eq!(
                    a_position(MmaShape::M16N8K16, lane, v / 2, v % 2),
                    (off % 16, off / 16)
                );
            }
            // B, m16n8k16: offsets index the N×K matrix column-major (n + 8k).
            for v in 0..4 {
                let off = cute_offset(&[4, 8], &[16, 1], &[2, 2], &[8, 64], lane, v);
                assert_eq!(
                    b_position(MmaShape::M16N8K16, lane, v / 2, v % 2),
                    (off / 8, off % 8)
                );
            }
            // C, f32: offsets index M×N column-major (m + 16n).
            for v in 0..4 {
                let off = cute_offset(&[4, 8], &[32, 1], &[2, 2], &[16, 8], lane, v);
                assert_eq!(
                    c_position(AccumulatorType::F32, lane, v, 0),
                    (off % 16, off / 16)
                );
                assert_eq!(
                    c_position(AccumulatorType::F16, lane, v / 2, v % 2),
                    (off % 16, off / 16)
                );
            }
            // A, m16n8k8 (16×8, column-major m + 16k).
            for v in 0..4 {
                let off = cute_offset(&[4, 8], &[32, 1], &[2, 2], &[16, 8], lane, v);
                assert_eq!(
                    a_position(MmaShape::M16N8K8, lane, v / 2, v % 2),
                    (off % 16, off / 16)
                );
            }
            // B, m16n8k8 (N×K = 8×8, column-major n + 8k).
            for v in 0..2 {
                let off = cute_offset(&[4, 8], &[16, 1], &[2], &[8], lane, v);
                assert_eq!(
                    b_position(MmaShape::M16N8K8, lane, 0, v),
                    (off / 8, off % 8)
                );
            }
        }
    }

    fn encode(t: OperandType, x: f32) -> (u16, f64) {
        match t {
            OperandType::F16 => {
                let h = f16::from_f32(x);
                (h.to_bits(), h.to_f64())
            }
            _ => {
                let h = bf16::from_f32(x);
                (h.to_bits(), h.to_f64())
            }
        }
    }

    /// Builds the fragments of random A, B, C from dense matrices through the position maps and
    /// compares D with an f64 product of the same dense matrices.
    #[test]
    fn random_products_match_an_f64_reference() {
        let seed = 0x5eed_0001u64;
        let mut rng = SmallRng::seed_from_u64(seed);
        for shape in SHAPES {
            for operands in [OperandType::F16, OperandType::Bf16] {
                for acc in [AccumulatorType::F32, AccumulatorType::F16] {
                    if operands == OperandType::Bf16 && acc == AccumulatorType::F16 {
                        continue;
                    }
                    let s = spec(shape, operands, acc);
                    let (m, n, k) = (shape.m(), shape.n(), shape.k());
                    let mut a_dense = vec![0.0; m * k];
                    let mut b_dense = vec![0.0; k * n];
                    let mut c_dense = vec![0.0; m * n];
                    let mut a = [[0u32; 4]; WARP];
                    let mut b = [[0u32; 2]; WARP];
                    let mut c = [[0u32; 4]; WARP];
                    for lane in 0..WARP {
                        for reg in 0..s.a_registers() {
                            for half in 0..2 {
                                let (bits, v) = encode(operands, rng.gen_range(-2.0..2.0));
                                let (r, col) = a_position(shape, lane, reg, half);
                                a_dense[r * k + col] = v;
                                a[lane][reg] |= (bits as u32) << (16 * half);
                            }
                        }
                        for reg in 0..s.b_registers() {
                            for half in 0..2 {
                                let (bits, v) = encode(operands, rng.gen_range(-2.0..2.0));
                                let (r, col) = b_position(shape, lane, reg, half);
                                b_dense[r * n + col] = v;
                                b[lane][reg] |= (bits as u32) << (16 * half);
                            }
                        }
                        for reg in 0..s.c_registers() {
                            for index in 0..acc.per_register() {
                                let x: f64 = rng.gen_range(-4.0..4.0);
                                c[lane][reg] = acc.pack(c[lane][reg], index, x);
                                let (r, col) = c_position(acc, lane, reg, index);
                                c_dense[r * n + col] = acc.unpack(c[lane][reg], index);
                            }
                        }
                    }
                    let d = s.execute(&a, &b, &c);
                    let tol = if acc == AccumulatorType::F16 {
                        1e-2
                    } else {
                        1e-5
                    };
                    for lane in 0..WARP {
                        for reg in 0..s.d_registers() {
                            for index in 0..acc.per_register() {
                                let (r, col) = c_position(acc, lane, reg, index);
                                let want: f64 = c_dense[r * n + col]
                                    + (0..k)
                                        .map(|kk| a_dense[r * k + kk] * b_dense[kk * n + col])
                                        .sum::<f64>();
                                let got = acc.unpack(d[lane][reg], index);
                                assert!(
                                    (got - want).abs() <= tol * (1.0 + want.abs()),
                                    "seed {seed:#x} {s:?}: D[{r}][{col}] = {got}, want {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn parse_reads_the_forms_and_rejects_others() {
        let s = MmaSyncSpec::parse("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32").unwrap();
        assert_eq!(
            s,
            spec(MmaShape::M16N8K16, OperandType::Bf16, AccumulatorType::F32)
        );
        let s = MmaSyncSpec::parse("mma.sync.aligned.m16n8k8.row.col.f16.f16.f16.f32").unwrap();
        assert_eq!((s.d, s.c), (AccumulatorType::F16, AccumulatorType::F32));
        assert!(MmaSyncSpec::parse("mma.sync.aligned.m16n8k16.col.row.f32.f16.f16.f32").is_err());
        assert!(MmaSyncSpec::parse("mma.sync.aligned.m16n8k16.row.col.f16.bf16.bf16.f16").is_err());
        assert!(MmaSyncSpec::parse("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32").is_err());
    }

    #[test]
    fn mixed_accumulator_types_place_c_by_its_own_layout() {
        // D f32 from C f16: element (row, col) of C must land in the same (row, col) of D.
        let s = MmaSyncSpec {
            shape: MmaShape::M16N8K16,
            operands: OperandType::F16,
            c: AccumulatorType::F16,
            d: AccumulatorType::F32,
        };
        let mut c = [[0u32; 4]; WARP];
        for lane in 0..WARP {
            for reg in 0..2 {
                for index in 0..2 {
                    let (r, col) = c_position(AccumulatorType::F16, lane, reg, index);
                    c[lane][reg] =
                        AccumulatorType::F16.pack(c[lane][reg], index, (r * 8 + col) as f64);
                }
            }
        }
        let d = s.execute(&[[0; 4]; WARP], &[[0; 2]; WARP], &c);
        for (lane, regs) in d.iter().enumerate() {
            for (reg, bits) in regs.iter().enumerate() {
                let (r, col) = c_position(AccumulatorType::F32, lane, reg, 0);
                assert_eq!(f32::from_bits(*bits), (r * 8 + col) as f32);
            }
        }
    }
}
