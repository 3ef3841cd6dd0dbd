//! How many tiles cover an extent — on the host (grid sizes) and inside a kernel (loop bounds) —
//! and the shared-memory swizzle a tile's row width calls for.

use tilekit::ir::{BinaryFn, FuncBuilder, ScalarType, Swizzle, Value};

/// Tiles of `tile` elements that cover `n` elements: `⌈n / tile⌉`.
pub fn tiles(n: usize, tile: u32) -> u32 {
    // Extents are i32-sized (the interpreter rejects larger tensors), so this fits a u32.
    n.div_ceil(tile as usize) as u32
}

/// `⌈n / tile⌉` in IR, for a runtime extent `n` (i32), as `n / tile + (n % tile + tile − 1) /
/// tile`: no step leaves `n`'s magnitude, so it is exact for every `n` up to `i32::MAX` (the DSL's
/// `ceil_div`), where `(n + tile − 1) / tile` wraps to a negative count.
///
/// # Panics
/// When `tile` is 0 or above `i32::MAX` (a configuration's tiling).
pub fn tiles_ir(b: &mut FuncBuilder, n: Value, tile: u32) -> Value {
    let tile = match i32::try_from(tile) {
        Ok(t) if t >= 1 => t,
        _ => panic!("tiles_ir: the tile must be in 1..=i32::MAX, got {tile}"),
    };
    let t = b.const_i32(tile);
    let whole = b.binary(BinaryFn::Div, n, t);
    let rem = b.binary(BinaryFn::Rem, n, t);
    let bias = b.const_i32(tile - 1);
    let rem = b.add(rem, bias);
    let partial = b.binary(BinaryFn::Div, rem, t);
    b.add(whole, partial)
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
