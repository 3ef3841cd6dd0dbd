//! Element formats of tensor-core operands and accumulators, as bit patterns inside 32-bit
//! registers (PTX ISA "Packed Data Types": `.f16x2`, `.bf16x2`, `.e4m3x4`, `.e5m2x4`), and the
//! model of how a tensor core sums its products.

use half::{bf16, f16};

/// The type of an A or B operand element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperandType {
    /// IEEE binary16.
    F16,
    /// bfloat16 (the high half of an f32).
    Bf16,
    /// OCP FP8 E4M3 ("FN": no infinities, one NaN pattern per sign, max 448).
    E4m3,
    /// OCP FP8 E5M2 (IEEE-like: the high byte of an f16).
    E5m2,
    /// TensorFloat-32, one per 32-bit register. The PTX ISA leaves its internal layout to the
    /// implementation and provides `cvt.{rna,rn,rz}{.satfinite}.tf32.f32` to make it; the
    /// emulator's `cvt` writes it as the f32 bit pattern with the 13 low fraction bits clear,
    /// and an operand is read as that f32 with the 13 low bits ignored.
    Tf32,
}

impl OperandType {
    /// Size of one element in bytes.
    pub fn bytes(self) -> usize {
        match self {
            OperandType::F16 | OperandType::Bf16 => 2,
            OperandType::E4m3 | OperandType::E5m2 => 1,
            OperandType::Tf32 => 4,
        }
    }

    /// Elements packed in one 32-bit register.
    pub fn per_register(self) -> usize {
        4 / self.bytes()
    }

    /// The PTX type suffix (`f16`, `bf16`, `e4m3`, `e5m2`, `tf32`).
    pub fn ptx_name(self) -> &'static str {
        match self {
            OperandType::F16 => "f16",
            OperandType::Bf16 => "bf16",
            OperandType::E4m3 => "e4m3",
            OperandType::E5m2 => "e5m2",
            OperandType::Tf32 => "tf32",
        }
    }

    /// Parses a PTX type suffix without its dot.
    pub fn from_ptx(name: &str) -> Option<Self> {
        match name {
            "f16" => Some(OperandType::F16),
            "bf16" => Some(OperandType::Bf16),
            "e4m3" => Some(OperandType::E4m3),
            "e5m2" => Some(OperandType::E5m2),
            "tf32" => Some(OperandType::Tf32),
            _ => None,
        }
    }

    /// The value of the element stored in the low `8 * bytes()` bits of `bits`.
    pub fn decode(self, bits: u32) -> f64 {
        match self {
            OperandType::F16 => f16::from_bits(bits as u16).to_f64(),
            OperandType::Bf16 => bf16::from_bits(bits as u16).to_f64(),
            OperandType::E4m3 => decode_e4m3(bits as u8),
            // E5M2 shares f16's exponent field and bias, so it is an f16 with 8 mantissa bits cut.
            OperandType::E5m2 => f16::from_bits(((bits as u8) as u16) << 8).to_f64(),
            OperandType::Tf32 => f64::from(f32::from_bits(bits & !0x1fff)),
        }
    }

    /// Element `index` (0 = least significant) of a packed register.
    pub fn unpack(self, reg: u32, index: usize) -> f64 {
        let width = 8 * self.bytes();
        let mask = if width == 32 {
            u32::MAX
        } else {
            (1u32 << width) - 1
        };
        self.decode((reg >> (width * index)) & mask)
    }
}

/// OCP E4M3 ("FN"): bias 7, 3 mantissa bits, exponent field 15 is a normal binade except the
/// all-ones mantissa, which is NaN.
fn decode_e4m3(bits: u8) -> f64 {
    let sign = if bits & 0x80 != 0 { -1.0 } else { 1.0 };
    let exp = ((bits >> 3) & 0xf) as i32;
    let man = (bits & 0x7) as f64;
    if exp == 0xf && bits & 0x7 == 0x7 {
        return f64::NAN;
    }
    if exp == 0 {
        sign * man / 8.0 * 2f64.powi(-6)
    } else {
        sign * (1.0 + man / 8.0) * 2f64.powi(exp - 7)
    }
}

/// The type of an accumulator (C and D) element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccumulatorType {
    /// One f32 per register.
    F32,
    /// Two f16 per register (`.f16x2`), element 0 in the low half.
    F16,
}

impl AccumulatorType {
    /// Accumulator elements packed in one register.
    pub fn per_register(self) -> usize {
        match self {
            AccumulatorType::F32 => 1,
            AccumulatorType::F16 => 2,
        }
    }

    /// Parses a PTX type suffix without its dot.
    pub fn from_ptx(name: &str) -> Option<Self> {
        match name {
            "f32" => Some(AccumulatorType::F32),
            "f16" => Some(AccumulatorType::F16),
            _ => None,
        }
    }

    /// Element `index` of a register.
    pub fn unpack(self, reg: u32, index: usize) -> f64 {
        match self {
            AccumulatorType::F32 => f32::from_bits(reg) as f64,
            AccumulatorType::F16 => f16::from_bits((reg >> (16 * index)) as u16).to_f64(),
        }
    }

    /// Replaces element `index` of `reg` by `value` rounded to nearest-even in this type.
    pub fn pack(self, reg: u32, index: usize, value: f64) -> u32 {
        match self {
            AccumulatorType::F32 => (value as f32).to_bits(),
            AccumulatorType::F16 => {
                let bits = f16::from_f64(value).to_bits() as u32;
                let shift = 16 * index;
                (reg & !(0xffff << shift)) | (bits << shift)
            }
        }
    }
}

/// How the products of one tensor-core instruction are summed into the accumulator.
///
/// The PTX ISA leaves the order and internal precision of the sum unspecified. The default,
/// [`Accumulation::Exact`], adds the incoming accumulator and every product (products of f16,
/// bf16 and fp8 elements are exact in f64) in f64 and rounds once to the accumulator type:
/// the result does not depend on an order the hardware does not document, and it differs from
/// any real tensor core by at most that core's own rounding error, so kernels checked against
/// f64 references with the usual tolerances pass on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accumulation {
    /// f64 sum of the accumulator and all products, rounded once (nearest-even).
    #[default]
    Exact,
    /// A model of the narrow adder DeepSeek-V3 (section 3.3.2) measured in H800 fp8 wgmma: all
    /// addends of one instruction (the incoming accumulator and its products) are aligned to the
    /// largest exponent among them and truncated to `kept_bits` significant bits relative to it
    /// (the report says about 14), then summed. Repeated over many instructions the
    /// accumulator's own low bits are lost, which is what kernels that promote partial sums to
    /// f32 registers every few k-steps guard against.
    AlignedTruncation {
        /// Significant bits kept relative to the largest addend's exponent.
        kept_bits: u32,
    },
}

impl Accumulation {
    /// `acc + Σ products` under this model, in f64 (the caller rounds to the accumulator type).
    pub fn sum(self, acc: f64, products: &[f64]) -> f64 {
        match self {
            Accumulation::Exact => products.iter().fold(acc, |s, p| s + p),
            Accumulation::AlignedTruncation { kept_bits } => {
                let largest = products
                    .iter()
                    .chain(std::iter::once(&acc))
                    .filter(|x| x.is_finite() && **x != 0.0)
                    .map(|x| x.abs())
                    .fold(0.0f64, f64::max);
                if largest == 0.0 || products.iter().any(|p| !p.is_finite()) || !acc.is_finite() {
                    return products.iter().fold(acc, |s, p| s + p);
                }
                let emax = largest.log2().floor() as i32;
                // Every addend becomes a multiple of the last kept bit's weight, rounded toward zero
                // (the alignment shifter drops the bits it pushes out).
                let quantum = 2f64.powi(emax - kept_bits as i32 + 1);
                let cut = |x: f64| (x / quantum).trunc() * quantum;
                products.iter().fold(cut(acc), |s, p| s + cut(*p))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // tests index lanes and registers as the ISA's figures do
mod tests {
    use super::*;

    #[test]
    fn e4m3_decodes_the_ocp_table_corners() {
        // Independent statement: OCP 8-bit floating point spec, table of E4M3 extremes.
        assert_eq!(decode_e4m3(0x7e), 448.0);
        assert_eq!(decode_e4m3(0x08), 2f64.powi(-6));
        assert_eq!(decode_e4m3(0x01), 2f64.powi(-9));
        assert_eq!(decode_e4m3(0x38), 1.0);
        assert_eq!(decode_e4m3(0xb8), -1.0);
        assert!(decode_e4m3(0x7f).is_nan());
        assert!(decode_e4m3(0xff).is_nan());
    }

    #[test]
    fn e5m2_decodes_the_ocp_table_corners() {
        assert_eq!(OperandType::E5m2.decode(0x7b), 57344.0);
        assert_eq!(OperandType::E5m2.decode(0x3c), 1.0);
        assert_eq!(OperandType::E5m2.decode(0x01), 2f64.powi(-16));
        assert_eq!(OperandType::E5m2.decode(0x7c), f64::INFINITY);
    }

    #[test]
    fn packed_registers_hold_element_zero_in_the_low_bits() {
        let reg =
            (f16::from_f32(-2.5).to_bits() as u32) << 16 | f16::from_f32(0.75).to_bits() as u32;
        assert_eq!(OperandType::F16.unpack(reg, 0), 0.75);
        assert_eq!(OperandType::F16.unpack(reg, 1), -2.5);
        let reg = 0x38_b8_40_c0u32; // e4m3 bytes, low to high: -2, 2, -1, 1
        let got: Vec<f64> = (0..4).map(|i| OperandType::E4m3.unpack(reg, i)).collect();
        assert_eq!(got, vec![-2.0, 2.0, -1.0, 1.0]);
        let acc = AccumulatorType::F16.pack(0, 1, 3.0);
        assert_eq!(AccumulatorType::F16.unpack(acc, 1), 3.0);
        assert_eq!(AccumulatorType::F16.unpack(acc, 0), 0.0);
    }

    #[test]
    fn aligned_truncation_drops_small_addends_that_exact_keeps() {
        let exact = Accumulation::Exact.sum(1024.0, &[0.01, 0.02]);
        let narrow = Accumulation::AlignedTruncation { kept_bits: 14 }.sum(1024.0, &[0.01, 0.02]);
        // 2^10 with 14 bits kept has a quantum of 2^-3: both products fall below it.
        assert_eq!(narrow, 1024.0);
        assert!((exact - 1024.03).abs() < 1e-12);
        // With addends of one magnitude nothing is lost beyond the 14th bit.
        let narrow = Accumulation::AlignedTruncation { kept_bits: 14 }.sum(1.5, &[0.25, 0.125]);
        assert_eq!(narrow, 1.875);
    }
}
