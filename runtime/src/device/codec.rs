//! Element bytes as a GPU holds them: little-endian IEEE `f32`, `f16` and `bf16` (through
//! `half`), OCP fp8 (E4M3FN, E5M2), two's-complement integers, `bool` as one byte 0 or 1.
//!
//! Host tensors hold `f64` values already representable in their dtype, so encoding is exact.

use crate::ir::numeric;
use crate::ir::ScalarType;

/// Bytes of `values` as `dtype` elements (each value rounded to `dtype` first).
pub fn encode(dtype: ScalarType, values: &[f64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * dtype.size_bytes() as usize);
    for &x in values {
        let x = numeric::round(dtype, x);
        match dtype {
            ScalarType::F32 => out.extend((x as f32).to_le_bytes()),
            ScalarType::F16 => out.extend(half::f16::from_f64(x).to_le_bytes()),
            ScalarType::BF16 => out.extend(half::bf16::from_f64(x).to_le_bytes()),
            ScalarType::F8E4M3 | ScalarType::F8E5M2 => out.push(numeric::fp8_to_bits(dtype, x)),
            ScalarType::I8 => out.push(x as i8 as u8),
            ScalarType::I32 => out.extend((x as i32).to_le_bytes()),
            ScalarType::U32 => out.extend((x as u32).to_le_bytes()),
            ScalarType::I64 => out.extend((x as i64).to_le_bytes()),
            ScalarType::Bool => out.push(u8::from(x != 0.0)),
        }
    }
    out
}

/// The values of `bytes` read as `dtype` elements (a trailing partial element is ignored).
pub fn decode(dtype: ScalarType, bytes: &[u8]) -> Vec<f64> {
    let size = dtype.size_bytes() as usize;
    bytes
        .chunks_exact(size)
        .map(|b| match dtype {
            ScalarType::F32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ScalarType::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f64(),
            ScalarType::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f64(),
            ScalarType::F8E4M3 | ScalarType::F8E5M2 => numeric::fp8_from_bits(dtype, b[0]),
            ScalarType::I8 => f64::from(b[0] as i8),
            ScalarType::I32 => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ScalarType::U32 => f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ScalarType::I64 => {
                i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f64
            }
            ScalarType::Bool => f64::from(u8::from(b[0] != 0)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dtype_round_trips_through_its_bytes() {
        let values = [0.0, 1.0, -2.5, 3.25, -7.0, 100.0, 0.375];
        for dtype in ScalarType::ALL {
            let want: Vec<f64> = values.iter().map(|&x| numeric::round(dtype, x)).collect();
            let bytes = encode(dtype, &values);
            assert_eq!(
                bytes.len(),
                values.len() * dtype.size_bytes() as usize,
                "{dtype}"
            );
            assert_eq!(decode(dtype, &bytes), want, "{dtype}");
        }
    }

    #[test]
    fn floats_use_the_ieee_and_ocp_bit_patterns() {
        assert_eq!(
            encode(ScalarType::F32, &[1.0]),
            0x3f80_0000u32.to_le_bytes()
        );
        assert_eq!(encode(ScalarType::BF16, &[1.0]), 0x3f80u16.to_le_bytes());
        assert_eq!(encode(ScalarType::F16, &[1.0]), 0x3c00u16.to_le_bytes());
        assert_eq!(encode(ScalarType::BF16, &[-2.0]), 0xc000u16.to_le_bytes());
        // E4M3: 1.0 = 0.0111.000, 448 = 0.1111.110; E5M2: 1.0 = 0.01111.00.
        assert_eq!(encode(ScalarType::F8E4M3, &[1.0, 448.0]), [0x38, 0x7e]);
        assert_eq!(encode(ScalarType::F8E5M2, &[1.0]), [0x3c]);
        assert_eq!(encode(ScalarType::I32, &[-1.0]), [0xff; 4]);
    }
}
