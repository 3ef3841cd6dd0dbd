//! `wgmma.mma_async.sync.aligned.m64nNk{16,32}` (sm_90a): one warpgroup (four warps, 128
//! threads) computes D (64×N) = A (64×K) · B (K×N) + D, with A from registers or a shared-memory
//! descriptor and B from a descriptor (PTX ISA "Asynchronous Warpgroup Level Matrix Multiply-
//! Accumulate", "Register Fragments", "Matrix Descriptor Format").
//!
//! The asynchrony (`wgmma.fence`, `commit_group`, `wait_group`) lives in the executor's state
//! (`crate::asynchrony`); here the instruction is computed at once, as the latest point it could
//! complete is the matching wait, and the executor decides when its result becomes visible.
//!
//! Thread `t` of the warpgroup is warp `t / 32`, lane `t % 32`, split as `group = lane / 4`,
//! `thread = lane % 4`. Warp `w` owns rows `16 w .. 16 w + 16` of A (register form) and of D.

use super::elements::{Accumulation, AccumulatorType, OperandType};
use super::smem_matrix::{Major, MatrixDescriptor};
use super::TensorCoreError;

/// Threads in a warpgroup.
pub const WARPGROUP: usize = 128;

/// Rows of every wgmma (m64).
pub const M: usize = 64;

/// One `wgmma.mma_async` form: `.m64nNkK.dtype.atype.btype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WgmmaSpec {
    /// N: a multiple of 8 in 8..=256.
    pub n: usize,
    /// The accumulator type.
    pub d: AccumulatorType,
    /// A's element type.
    pub a: OperandType,
    /// B's element type.
    pub b: OperandType,
}

/// Row and column of D held by element `index` of register `reg` of warpgroup thread `thread`:
/// every 8 columns repeat mma.sync's 16×8 C fragment, `d_{4j..4j+3}` covering columns 8j..8j+8.
pub fn accumulator_position(
    acc: AccumulatorType,
    thread: usize,
    reg: usize,
    index: usize,
) -> (usize, usize) {
    let (warp, lane) = (thread / 32, thread % 32);
    let (group, quad) = (lane / 4, lane % 4);
    let i = reg * acc.per_register() + index;
    (
        16 * warp + group + 8 * ((i >> 1) & 1),
        8 * (i >> 2) + 2 * quad + (i & 1),
    )
}

/// Row and column of A (64×K) held by element `index` of register `reg` (0..4) of `thread` when
/// A comes from registers: 16-bit types as mma.m16n8k16's A fragment (columns 2q, 2q+1, +8),
/// 8-bit types four to a register (columns 4q..4q+4, +16); rows +8 in registers 1 and 3.
pub fn a_register_position(
    a: OperandType,
    thread: usize,
    reg: usize,
    index: usize,
) -> (usize, usize) {
    let (warp, lane) = (thread / 32, thread % 32);
    let (group, quad) = (lane / 4, lane % 4);
    let per = a.per_register();
    (
        16 * warp + group + 8 * (reg & 1),
        (reg >> 1) * 4 * per + quad * per + index,
    )
}

/// Where A comes from.
#[derive(Debug, Clone, Copy)]
pub enum WgmmaA<'a> {
    /// Four registers per thread (`{a0, a1, a2, a3}`), 128 threads.
    Registers(&'a [[u32; 4]]),
    /// A shared-memory matrix descriptor.
    Descriptor(u64),
}

/// The instruction's non-matrix operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WgmmaOperands {
    /// `scale-d`: when false, D = A·B (the old D is not added).
    pub scale_d: bool,
    /// `imm-scale-a` = -1.
    pub negate_a: bool,
    /// `imm-scale-b` = -1.
    pub negate_b: bool,
    /// `imm-trans-a`: 0 is K-major, 1 is M-major (descriptor A of 16-bit types only).
    pub a_major: Major,
    /// `imm-trans-b`: 0 is K-major, 1 is N-major (16-bit types only).
    pub b_major: Major,
}

impl WgmmaOperands {
    /// Reads the immediates as written in PTX (`imm-scale-*` ∈ {1, -1}, `imm-trans-*` ∈ {0, 1};
    /// `imm_trans_a` is `None` in the register-A form, which has no such operand).
    pub fn from_immediates(
        spec: &WgmmaSpec,
        scale_d: bool,
        imm_scale_a: i64,
        imm_scale_b: i64,
        imm_trans_a: Option<i64>,
        imm_trans_b: Option<i64>,
    ) -> Result<Self, TensorCoreError> {
        let bad = |message: String| TensorCoreError::UnsupportedForm {
            opcode: spec.opcode(),
            message,
        };
        let negate = |v: i64, name: &str| match v {
            1 => Ok(false),
            -1 => Ok(true),
            _ => Err(bad(format!("{name} must be 1 or -1, got {v}"))),
        };
        let major = |v: Option<i64>, name: &str| match v {
            None | Some(0) => Ok(Major::K),
            Some(1) if spec.a.bytes() == 2 => Ok(Major::MN),
            Some(1) => Err(bad(format!(
                "{name} = 1 (transpose) is valid for .f16/.bf16 only; fp8 operands must be K-major"
            ))),
            Some(v) => Err(bad(format!("{name} must be 0 or 1, got {v}"))),
        };
        Ok(WgmmaOperands {
            scale_d,
            negate_a: negate(imm_scale_a, "imm-scale-a")?,
            negate_b: negate(imm_scale_b, "imm-scale-b")?,
            a_major: major(imm_trans_a, "imm-trans-a")?,
            b_major: major(imm_trans_b, "imm-trans-b")?,
        })
    }
}

impl WgmmaSpec {
    /// Reads `wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16` and the like.
    pub fn parse(opcode: &str) -> Result<Self, TensorCoreError> {
        let bad = |message: &str| TensorCoreError::UnsupportedForm {
            opcode: opcode.to_string(),
            message: message.to_string(),
        };
        let parts: Vec<&str> = opcode.split('.').collect();
        if parts.len() != 8 || parts[..4] != ["wgmma", "mma_async", "sync", "aligned"] {
            return Err(bad(
                "expected wgmma.mma_async.sync.aligned.m64nNkK.<d>.<a>.<b>",
            ));
        }
        let shape = parts[4];
        let (n, k) = shape
            .strip_prefix("m64n")
            .and_then(|rest| rest.split_once('k'))
            .and_then(|(n, k)| Some((n.parse::<usize>().ok()?, k.parse::<usize>().ok()?)))
            .ok_or_else(|| bad("expected a shape .m64nNkK"))?;
        if n == 0 || n % 8 != 0 || n > 256 {
            return Err(bad("N must be a multiple of 8 from 8 to 256"));
        }
        let d = AccumulatorType::from_ptx(parts[5]).ok_or_else(|| bad("d must be .f32 or .f16"))?;
        let a = OperandType::from_ptx(parts[6])
            .ok_or_else(|| bad("a must be .f16, .bf16, .e4m3 or .e5m2"))?;
        let b = OperandType::from_ptx(parts[7])
            .ok_or_else(|| bad("b must be .f16, .bf16, .e4m3 or .e5m2"))?;
        let spec = WgmmaSpec { n, d, a, b };
        match (a, b) {
            (OperandType::F16, OperandType::F16) => {}
            (OperandType::Bf16, OperandType::Bf16) if d == AccumulatorType::F32 => {}
            (OperandType::Bf16, OperandType::Bf16) => {
                return Err(bad("bf16 accumulates in .f32 only"))
            }
            (x, y) if x.bytes() == 1 && y.bytes() == 1 => {}
            _ => {
                return Err(bad(
                    "A and B must be both f16, both bf16, or both 8-bit floats",
                ))
            }
        }
        if k != spec.k() {
            return Err(bad(&format!(
                "K is {} for .{} operands",
                spec.k(),
                a.ptx_name()
            )));
        }
        Ok(spec)
    }

    /// The opcode this spec stands for.
    pub fn opcode(&self) -> String {
        let d = match self.d {
            AccumulatorType::F32 => "f32",
            AccumulatorType::F16 => "f16",
        };
        format!(
            "wgmma.mma_async.sync.aligned.m64n{}k{}.{d}.{}.{}",
            self.n,
            self.k(),
            self.a.ptx_name(),
            self.b.ptx_name()
        )
    }

    /// K: 32 bytes of elements.
    pub fn k(&self) -> usize {
        32 / self.a.bytes()
    }

    /// Accumulator registers per thread.
    pub fn d_registers(&self) -> usize {
        M * self.n / WARPGROUP / self.d.per_register()
    }

    /// Every shared-memory byte range `(address, length)` the instruction reads, one per operand
    /// element: what the executor checks for bounds and what the hazard tracker holds until the
    /// matching `wgmma.wait_group`.
    pub fn shared_reads(
        &self,
        ops: &WgmmaOperands,
        a: &WgmmaA<'_>,
        b_desc: u64,
    ) -> Result<Vec<(u32, u32)>, TensorCoreError> {
        let mut reads = Vec::new();
        for warp in 0..WARPGROUP / 32 {
            if let WgmmaA::Descriptor(bits) = a {
                reads.extend(self.a_reads(ops, *bits, warp)?);
            }
        }
        reads.extend(self.b_reads(ops, b_desc)?);
        Ok(reads)
    }

    /// The shared-memory reads of A's rows owned by warp `warp` (0..4) of the warpgroup, when A
    /// comes from a descriptor.
    pub fn a_reads(
        &self,
        ops: &WgmmaOperands,
        a_desc: u64,
        warp: usize,
    ) -> Result<Vec<(u32, u32)>, TensorCoreError> {
        let desc = self.descriptor(a_desc)?;
        let mut reads = Vec::with_capacity(16 * self.k());
        for m in 16 * warp..16 * warp + 16 {
            for k in 0..self.k() {
                let addr =
                    desc.element_address(ops.a_major, self.a.bytes() as u32, m as u32, k as u32);
                reads.push((addr, self.a.bytes() as u32));
            }
        }
        Ok(reads)
    }

    /// The shared-memory reads of B (all of it: every warp's rows of D need every column).
    pub fn b_reads(
        &self,
        ops: &WgmmaOperands,
        b_desc: u64,
    ) -> Result<Vec<(u32, u32)>, TensorCoreError> {
        let desc = self.descriptor(b_desc)?;
        let mut reads = Vec::with_capacity(self.n * self.k());
        for n in 0..self.n {
            for k in 0..self.k() {
                let addr =
                    desc.element_address(ops.b_major, self.b.bytes() as u32, n as u32, k as u32);
                reads.push((addr, self.b.bytes() as u32));
            }
        }
        Ok(reads)
    }

    fn descriptor(&self, bits: u64) -> Result<MatrixDescriptor, TensorCoreError> {
        let desc = MatrixDescriptor::decode(bits);
        desc.check(bits)?;
        Ok(desc)
    }

    fn read_element<E>(
        t: OperandType,
        addr: u32,
        read: &mut impl FnMut(u32) -> Result<u8, E>,
    ) -> Result<f64, E> {
        let mut bits = 0u32;
        for byte in 0..t.bytes() as u32 {
            bits |= (read(addr + byte)? as u32) << (8 * byte);
        }
        Ok(t.decode(bits))
    }

    /// Executes the instruction: `d[thread]` holds each thread's accumulator registers (read as C
    /// when `scale_d`, overwritten with D); `read_shared(address)` returns one byte of shared
    /// memory. Products are exact; the sum follows `accumulation` (see [`Accumulation`]).
    pub fn execute<E: From<TensorCoreError>>(
        &self,
        ops: &WgmmaOperands,
        a: WgmmaA<'_>,
        b_desc: u64,
        d: &mut [Vec<u32>],
        accumulation: Accumulation,
        mut read_shared: impl FnMut(u32) -> Result<u8, E>,
    ) -> Result<(), E> {
        let count =
            |operand: &'static str, got: usize, expected: usize| TensorCoreError::OperandCount {
                opcode: self.opcode(),
                operand,
                got,
                expected,
            };
        if d.len() != WARPGROUP {
            return Err(count("d (threads)", d.len(), WARPGROUP).into());
        }
        if let WgmmaA::Registers(regs) = a {
            if regs.len() != WARPGROUP {
                return Err(count("a (threads)", regs.len(), WARPGROUP).into());
            }
        }
        for (warp, d_warp) in d.chunks_mut(32).enumerate() {
            let a_warp = match a {
                WgmmaA::Registers(regs) => WgmmaA::Registers(&regs[32 * warp..32 * warp + 32]),
                desc => desc,
            };
            self.execute_warp(
                ops,
                warp,
                a_warp,
                b_desc,
                d_warp,
                accumulation,
                &mut read_shared,
            )?;
        }
        Ok(())
    }

    /// The part of the instruction that warp `warp` (0..4) of the warpgroup owns: rows
    /// `16 warp .. 16 warp + 16` of D, which depend on the same rows of A and all of B. The
    /// executor runs each warp's share when that warp reaches the instruction; `a` (register
    /// form) and `d` hold that warp's 32 lanes.
    #[allow(clippy::too_many_arguments)]
    pub fn execute_warp<E: From<TensorCoreError>>(
        &self,
        ops: &WgmmaOperands,
        warp: usize,
        a: WgmmaA<'_>,
        b_desc: u64,
        d: &mut [Vec<u32>],
        accumulation: Accumulation,
        read_shared: &mut impl FnMut(u32) -> Result<u8, E>,
    ) -> Result<(), E> {
        let k = self.k();
        let count =
            |operand: &'static str, got: usize, expected: usize| TensorCoreError::OperandCount {
                opcode: self.opcode(),
                operand,
                got,
                expected,
            };
        if warp >= WARPGROUP / 32 {
            return Err(count("warp index", warp, WARPGROUP / 32).into());
        }
        if d.len() != 32 {
            return Err(count("d (lanes)", d.len(), 32).into());
        }
        if let Some(regs) = d.iter().find(|r| r.len() != self.d_registers()) {
            return Err(count("d", regs.len(), self.d_registers()).into());
        }
        let row0 = 16 * warp;
        let mut a_dense = vec![0.0; 16 * k];
        match a {
            WgmmaA::Registers(regs) => {
                if regs.len() != 32 {
                    return Err(count("a (lanes)", regs.len(), 32).into());
                }
                for (lane, lane_regs) in regs.iter().enumerate() {
                    for (reg, bits) in lane_regs.iter().enumerate() {
                        for index in 0..self.a.per_register() {
                            let (row, col) =
                                a_register_position(self.a, 32 * warp + lane, reg, index);
                            a_dense[(row - row0) * k + col] = self.a.unpack(*bits, index);
                        }
                    }
                }
            }
            WgmmaA::Descriptor(bits) => {
                for (i, (addr, _)) in self.a_reads(ops, bits, warp)?.into_iter().enumerate() {
                    a_dense[i] = Self::read_element(self.a, addr, read_shared)?;
                }
            }
        }
        let mut b_dense = vec![0.0; k * self.n];
        for (i, (addr, _)) in self.b_reads(ops, b_desc)?.into_iter().enumerate() {
            let (n, kk) = (i / k, i % k);
            b_dense[kk * self.n + n] = Self::read_element(self.b, addr, read_shared)?;
        }
        let sign = if ops.negate_a != ops.negate_b {
            -1.0
        } else {
            1.0
        };
        let mut products = vec![0.0; k];
        for (lane, regs) in d.iter_mut().enumerate() {
            for (reg, bits) in regs.iter_mut().enumerate() {
                for index in 0..self.d.per_register() {
                    let (row, col) = accumulator_position(self.d, 32 * warp + lane, reg, index);
                    let acc = if ops.scale_d {
                        self.d.unpack(*bits, index)
                    } else {
                        0.0
                    };
                    for (kk, p) in products.iter_mut().enumerate() {
                        *p = sign * a_dense[(row - row0) * k + kk] * b_dense[kk * self.n + col];
                    }
                    *bits = self.d.pack(*bits, index, accumulation.sum(acc, &products));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // tests index lanes and registers as the ISA's figures do
mod tests {
    use super::*;
    use crate::tensor_core::smem_matrix::Swizzle;
    use half::{bf16, f16};
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use std::collections::HashSet;

    /// CuTe's layout evaluation: (thread, value) → offset with colexicographic mode order.
    fn cute_offset(
        ts: &[usize],
        td: &[usize],
        vs: &[usize],
        vd: &[usize],
        t: usize,
        v: usize,
    ) -> usize {
        let mut off = 0;
        let mut t = t;
        for (s, d) in ts.iter().zip(td) {
            off += (t % s) * d;
            t /= s;
        }
        let mut v = v;
        for (s, d) in vs.iter().zip(vd) {
            off += (v % s) * d;
            v /= s;
        }
        off
    }

    #[test]
    fn accumulator_layout_is_a_bijection_and_agrees_with_cutes_clayout_64xn() {
        // CLayout_64xN = ((4,8,4),(2,2,N/8)):((128,1,16),(64,8,512)) over M×N column-major.
        for n in [8usize, 16, 64, 136, 256] {
            let mut seen = HashSet::new();
            for thread in 0..WARPGROUP {
                for v in 0..n / 2 {
                    let off = cute_offset(
                        &[4, 8, 4],
                        &[128, 1, 16],
                        &[2, 2, n / 8],
                        &[64, 8, 512],
                        thread,
                        v,
                    );
                    let pos = accumulator_position(AccumulatorType::F32, thread, v, 0);
                    assert_eq!(pos, (off % 64, off / 64), "n{n} thread {thread} value {v}");
                    assert_eq!(
                        accumulator_position(AccumulatorType::F16, thread, v / 2, v % 2),
                        pos
                    );
                    assert!(seen.insert(pos));
                }
            }
            assert_eq!(seen.len(), 64 * n);
        }
    }

    #[test]
    fn register_a_layout_agrees_with_cutes_alayouts() {
        // ALayout_64x16 = ((4,8,4),(2,2,2)):((128,1,16),(64,8,512)) (16-bit),
        // ALayout_64x32 = ((4,8,4),(4,2,2)):((256,1,16),(64,8,1024)) (8-bit), over M×K column-major.
        for (t, td, vs, vd, k) in [
            (
                OperandType::Bf16,
                [128usize, 1, 16],
                [2usize, 2, 2],
                [64usize, 8, 512],
                16usize,
            ),
            (
                OperandType::E4m3,
                [256, 1, 16],
                [4, 2, 2],
                [64, 8, 1024],
                32,
            ),
        ] {
            let mut seen = HashSet::new();
            for thread in 0..WARPGROUP {
                for v in 0..4 * t.per_register() {
                    let off = cute_offset(&[4, 8, 4], &td, &vs, &vd, thread, v);
                    // CuTe's value index runs over the elements of the registers in order.
                    let pos =
                        a_register_position(t, thread, v / t.per_register(), v % t.per_register());
                    assert_eq!(pos, (off % 64, off / 64), "{t:?} thread {thread} value {v}");
                    assert!(seen.insert(pos));
                }
            }
            assert_eq!(seen.len(), 64 * k);
        }
    }

    /// A shared-memory image written the way a TMA box with 128-byte swizzle lays out a tile
    /// whose inner (contiguous) extent is 128 bytes: row r, byte b at swizzle(base + 128 r + b).
    struct Smem(Vec<u8>);

    impl Smem {
        fn put(&mut self, addr: u32, bits: u32, bytes: usize) {
            for i in 0..bytes {
                self.0[addr as usize + i] = (bits >> (8 * i)) as u8;
            }
        }
    }

    fn random_element(rng: &mut SmallRng, t: OperandType) -> (u32, f64) {
        loop {
            let bits = match t {
                OperandType::F16 => f16::from_f32(rng.gen_range(-2.0..2.0)).to_bits() as u32,
                OperandType::Bf16 => bf16::from_f32(rng.gen_range(-2.0..2.0)).to_bits() as u32,
                _ => rng.gen_range(0..256u32),
            };
            let v = t.decode(bits);
            if v.is_finite() && v.abs() < 500.0 {
                return (bits, v);
            }
        }
    }

    #[test]
    fn random_gemms_from_swizzled_tiles_match_f64() {
        let seed = 0x36_aa_u64;
        let mut rng = SmallRng::seed_from_u64(seed);
        let base = 0x400u32; // 1024-aligned, as 128B-swizzled tiles must be
        for (a_t, d_t, n, a_major, b_major, a_in_regs) in [
            (
                OperandType::Bf16,
                AccumulatorType::F32,
                64usize,
                Major::K,
                Major::K,
                false,
            ),
            (
                OperandType::F16,
                AccumulatorType::F32,
                128,
                Major::MN,
                Major::MN,
                false,
            ),
            (
                OperandType::F16,
                AccumulatorType::F16,
                32,
                Major::K,
                Major::MN,
                true,
            ),
            (
                OperandType::E4m3,
                AccumulatorType::F32,
                64,
                Major::K,
                Major::K,
                false,
            ),
            (
                OperandType::E5m2,
                AccumulatorType::F32,
                24,
                Major::K,
                Major::K,
                true,
            ),
        ] {
            let spec = WgmmaSpec {
                n,
                d: d_t,
                a: a_t,
                b: a_t,
            };
            let k = spec.k();
            let eb = a_t.bytes();
            let mut smem = Smem(vec![0; 64 * 1024]);
            // A: 64×k. K-major: rows of 32 bytes inside 128-byte swizzled rows (the k-step 0 slice
            // of a 64-element-wide tile). M-major: 64 M elements = 128 bytes per k row.
            let a_base = base;
            let mut a_dense = vec![0.0; 64 * k];
            let mut a_bits = vec![0u32; 64 * k];
            for m in 0..64 {
                for kk in 0..k {
                    let (bits, v) = random_element(&mut rng, a_t);
                    a_dense[m * k + kk] = v;
                    a_bits[m * k + kk] = bits;
                    let off = match a_major {
                        Major::K => m * 128 + kk * eb,
                        Major::MN => kk * 128 + m * eb,
                    };
                    smem.put(Swizzle::B128.apply(a_base + off as u32), bits, eb);
                }
            }
            // B: k×n. K-major: n rows of 128 bytes (k in the first 32). N-major: boxes of 64 n
            // (128 bytes) × k rows, the next 64 n in the next box (k × 128 bytes later).
            let b_base = base + 0x4000;
            let mut b_dense = vec![0.0; k * n];
            for kk in 0..k {
                for nn in 0..n {
                    let (bits, v) = random_element(&mut rng, a_t);
                    b_dense[kk * n + nn] = v;
                    let off = match b_major {
                        Major::K => nn * 128 + kk * eb,
                        Major::MN => (nn / 64) * (k * 128) + kk * 128 + (nn % 64) * eb,
                    };
                    smem.put(Swizzle::B128.apply(b_base + off as u32), bits, eb);
                }
            }
            let desc = |start: u32, major: Major| {
                let (lbo, sbo) = match major {
                    Major::K => (16, 1024),
                    Major::MN => (k as u32 * 128, 1024),
                };
                MatrixDescriptor {
                    start,
                    leading_byte_offset: lbo,
                    stride_byte_offset: sbo,
                    base_offset: 0,
                    swizzle: Swizzle::B128,
                }
                .encode()
            };
            let mut a_regs = vec![[0u32; 4]; WARPGROUP];
            for (thread, regs) in a_regs.iter_mut().enumerate() {
                for (reg, r) in regs.iter_mut().enumerate() {
                    for index in 0..a_t.per_register() {
                        let (m, kk) = a_register_position(a_t, thread, reg, index);
                        *r |= a_bits[m * k + kk] << (8 * eb * index);
                    }
                }
            }
            let a = if a_in_regs {
                WgmmaA::Registers(&a_regs)
            } else {
                WgmmaA::Descriptor(desc(a_base, a_major))
            };
            let mut d = vec![vec![0u32; spec.d_registers()]; WARPGROUP];
            let mut c_dense = vec![0.0; 64 * n];
            for (thread, regs) in d.iter_mut().enumerate() {
                for (reg, r) in regs.iter_mut().enumerate() {
                    for index in 0..d_t.per_register() {
                        *r = d_t.pack(*r, index, rng.gen_range(-3.0..3.0));
                        let (m, nn) = accumulator_position(d_t, thread, reg, index);
                        c_dense[m * n + nn] = d_t.unpack(*r, index);
                    }
                }
            }
            let (negate_a, negate_b) = (rng.gen_bool(0.5), rng.gen_bool(0.5));
            let ops = WgmmaOperands {
                scale_d: true,
                negate_a,
                negate_b,
                a_major,
                b_major,
            };
            spec.execute(
                &ops,
                a,
                desc(b_base, b_major),
                &mut d,
                Accumulation::Exact,
                |addr| Ok::<_, TensorCoreError>(smem.0[addr as usize]),
            )
            .unwrap();
            let sign = if negate_a != negate_b { -1.0 } else { 1.0 };
            let tol = if d_t == AccumulatorType::F16 {
                4e-3
            } else {
                1e-6
            };
            for (thread, regs) in d.iter().enumerate() {
                for (reg, r) in regs.iter().enumerate() {
                    for index in 0..d_t.per_register() {
                        let (m, nn) = accumulator_position(d_t, thread, reg, index);
                        let want = c_dense[m * n + nn]
                            + sign
                                * (0..k)
                                    .map(|kk| a_dense[m * k + kk] * b_dense[kk * n + nn])
                                    .sum::<f64>();
                        let got = d_t.unpack(*r, index);
                        assert!(
                            (got - want).abs() <= tol * (1.0 + want.abs()),
                            "seed {seed:#x} {spec:?} {ops:?}: D[{m}][{nn}] = {got}, want {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn scale_d_false_discards_the_old_accumulator() {
        let spec = WgmmaSpec::parse("wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16").unwrap();
        let mut rng = SmallRng::seed_from_u64(11);
        let mut smem = vec![0u8; 4096];
        for byte in smem.iter_mut() {
            *byte = rng.gen_range(0x30..0x40); // modest bf16 values in either byte order
        }
        let desc = MatrixDescriptor {
            start: 0,
            leading_byte_offset: 128,
            stride_byte_offset: 256,
            base_offset: 0,
            swizzle: Swizzle::None,
        }
        .encode();
        let run = |scale_d: bool, init: u32| {
            let mut d = vec![vec![init; spec.d_registers()]; WARPGROUP];
            let ops = WgmmaOperands {
                scale_d,
                negate_a: false,
                negate_b: false,
                a_major: Major::K,
                b_major: Major::K,
            };
            spec.execute(
                &ops,
                WgmmaA::Descriptor(desc),
                desc + (2048 >> 4),
                &mut d,
                Accumulation::Exact,
                |a| Ok::<_, TensorCoreError>(smem[a as usize]),
            )
            .unwrap();
            d
        };
        let fresh = run(false, 7.5f32.to_bits());
        assert_eq!(fresh, run(false, (-100.0f32).to_bits()));
        let accumulated = run(true, 7.5f32.to_bits());
        for (x, y) in fresh.iter().flatten().zip(accumulated.iter().flatten()) {
            assert!((f32::from_bits(*x) + 7.5 - f32::from_bits(*y)).abs() < 1e-4);
        }
    }

    #[test]
    fn fp8_reduced_precision_accumulation_loses_bits_that_exact_keeps() {
        // A long K accumulated over many k32 instructions, all products positive and of one
        // size: under the narrow-adder model each instruction's products are truncated against
        // a growing accumulator, so the result falls short of the exact sum, by less than one
        // quantum per addend.
        let spec = WgmmaSpec::parse("wgmma.mma_async.sync.aligned.m64n8k32.f32.e4m3.e4m3").unwrap();
        let mut rng = SmallRng::seed_from_u64(0xfe);
        let steps = 64;
        let mut exact = vec![vec![0u32; spec.d_registers()]; WARPGROUP];
        let mut narrow = exact.clone();
        let mut reference = 0.0f64;
        let mut bound = 0.0f64;
        let desc = MatrixDescriptor {
            start: 0,
            leading_byte_offset: 512,
            stride_byte_offset: 128,
            base_offset: 0,
            swizzle: Swizzle::None,
        };
        for _ in 0..steps {
            // Every element of A and B is the same random e4m3 value in [1, 2): thread 0's D[0][0]
            // is then Σ a·b over all of K, which the reference tracks.
            let bits = 0x38 | rng.gen_range(0..8u8);
            let v = OperandType::E4m3.decode(bits as u32);
            let smem = vec![bits; 4096];
            let ops = WgmmaOperands {
                scale_d: true,
                negate_a: false,
                negate_b: false,
                a_major: Major::K,
                b_major: Major::K,
            };
            let b = MatrixDescriptor {
                start: 2048,
                ..desc
            }
            .encode();
            spec.execute(
                &ops,
                WgmmaA::Descriptor(desc.encode()),
                b,
                &mut exact,
                Accumulation::Exact,
                |a| Ok::<_, TensorCoreError>(smem[a as usize]),
            )
            .unwrap();
            spec.execute(
                &ops,
                WgmmaA::Descriptor(desc.encode()),
                b,
                &mut narrow,
                Accumulation::AlignedTruncation { kept_bits: 14 },
                |a| Ok::<_, TensorCoreError>(smem[a as usize]),
            )
            .unwrap();
            reference += 32.0 * v * v;
            bound += 33.0 * 2f64.powi(reference.log2().floor() as i32 - 13);
        }
        let e = f32::from_bits(exact[0][0]) as f64;
        let t = f32::from_bits(narrow[0][0]) as f64;
        assert!(
            (e - reference).abs() <= 1e-6 * reference,
            "exact {e} vs {reference}"
        );
        assert!(t < e, "truncation must lose something here: {t} vs {e}");
        assert!(
            e - t <= bound,
            "loss {} exceeds the model's bound {bound}",
            e - t
        );
    }

    #[test]
    fn parse_and_immediates_follow_the_isa_rules() {
        let s = WgmmaSpec::parse("wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16").unwrap();
        assert_eq!((s.n, s.k(), s.d_registers()), (256, 16, 128));
        let s8 = WgmmaSpec::parse("wgmma.mma_async.sync.aligned.m64n64k32.f16.e4m3.e5m2").unwrap();
        assert_eq!((s8.k(), s8.d_registers()), (32, 16));
        for bad in [
            "wgmma.mma_async.sync.aligned.m64n260k16.f32.f16.f16",
            "wgmma.mma_async.sync.aligned.m64n12k16.f32.f16.f16",
            "wgmma.mma_async.sync.aligned.m64n64k32.f32.bf16.bf16",
            "wgmma.mma_async.sync.aligned.m64n64k16.f16.bf16.bf16",
            "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.bf16",
        ] {
            assert!(WgmmaSpec::parse(bad).is_err(), "{bad}");
        }
        assert!(WgmmaOperands::from_immediates(&s8, true, 1, 1, Some(1), Some(0)).is_err());
        assert!(WgmmaOperands::from_immediates(&s, true, 2, 1, Some(0), Some(0)).is_err());
        let ops = WgmmaOperands::from_immediates(&s, false, -1, 1, Some(1), None).unwrap();
        assert_eq!(
            (ops.negate_a, ops.a_major, ops.b_major, ops.scale_d),
            (true, Major::MN, Major::K, false)
        );
    }

    #[test]
    fn shared_reads_cover_both_operands_once_per_element() {
        let s = WgmmaSpec::parse("wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16").unwrap();
        let ops = WgmmaOperands {
            scale_d: true,
            negate_a: false,
            negate_b: false,
            a_major: Major::K,
            b_major: Major::K,
        };
        let d = |start| {
            MatrixDescriptor {
                start,
                leading_byte_offset: 16,
                stride_byte_offset: 1024,
                base_offset: 0,
                swizzle: Swizzle::B128,
            }
            .encode()
        };
        let reads = s
            .shared_reads(&ops, &WgmmaA::Descriptor(d(0)), d(8192))
            .unwrap();
        assert_eq!(reads.len(), 64 * 16 + 16 * 16);
        let distinct: HashSet<u32> = reads.iter().map(|r| r.0).collect();
        assert_eq!(distinct.len(), reads.len());
        assert!(reads.iter().all(|(a, len)| *len == 2 && a % 2 == 0));
    }
}
