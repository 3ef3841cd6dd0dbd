//! How many tiles cover an extent — on the host (grid sizes) and inside a kernel (loop bounds) —
//! and the shared-memory swizzle a tile's row width calls for.

use tilekit::ir::{BinaryFn, FuncBuilder, ScalarType, Swizzle, Value};

/// Tiles of `tile` elements that cover `n` elements: `⌈n / tile⌉`.
pub fn tiles(n: usize, tile: u32) -> u32 {
    // Extents are i32-sized (the interpreter rejects larger tensors), so this fits a u32.
    n.div_ceil(tile as usize) as u32
}

/// `⌈n / tile⌉` in IR, for a runtime extent `n` (i32).
pub fn tiles_ir(b: &mut FuncBuilder, n: Value, tile: u32) -> Value {
    let bias = b.const_i32(tile as i32 - 1);
    let t = b.const_i32(tile as i32);
    let padded = b.add(n, bias);
    b.binary(BinaryFn::Div, padded, t)
}

/// The swizzle that makes a shared tile's 16-byte chunks conflict-free for `ldmatrix`: the widest
/// pattern that fits the row (128-byte rows use the 128-byte pattern, as TMA and wgmma expect).
pub fn swizzle_for(dtype: ScalarType, cols: u32) -> Swizzle {
    match cols * dtype.size_bytes() {
        b if b % 128 == 0 => Swizzle::B128,
        b if b % 64 == 0 => Swizzle::B64,
        b if b % 32 == 0 => Swizzle::B32,
        _ => Swizzle::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_round_up() {
        assert_eq!(tiles(0, 16), 0);
        assert_eq!(tiles(1, 16), 1);
        assert_eq!(tiles(64, 64), 1);
        assert_eq!(tiles(65, 64), 2);
    }

    #[test]
    fn swizzle_follows_the_row_width() {
        assert_eq!(swizzle_for(ScalarType::BF16, 64), Swizzle::B128);
        assert_eq!(swizzle_for(ScalarType::BF16, 32), Swizzle::B64);
        assert_eq!(swizzle_for(ScalarType::BF16, 16), Swizzle::B32);
        assert_eq!(swizzle_for(ScalarType::F32, 16), Swizzle::B64);
    }
}
