//! Byte-level mutation and the interesting values every structure-aware mutator draws from.
//!
//! Structure-aware mutators (Tile IR tokens and lines, bundle files) keep most inputs well-formed
//! enough to reach the checks behind the parser; the byte-level mutations here are the rest, so
//! that the parsers themselves see malformed input too.

use rand::rngs::SmallRng;
use rand::Rng;

/// Integers at the edges where arithmetic overflows, signedness flips or sizes wrap.
pub const INTERESTING_INTS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "3",
    "7",
    "8",
    "15",
    "16",
    "17",
    "31",
    "32",
    "33",
    "48",
    "63",
    "64",
    "65",
    "127",
    "128",
    "255",
    "256",
    "1023",
    "1024",
    "1025",
    "4096",
    "65535",
    "65536",
    "1048575",
    "1048576",
    "2147483647",
    "2147483648",
    "-2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
];

/// Floating-point edge values, as the text form writes them.
pub const INTERESTING_FLOATS: &[&str] = &[
    "0.0", "-0.0", "0.5", "-1.5", "1e-8", "1e-45", "1e-310", "65504", "65520", "3.4e38", "3.5e38",
    "1e39", "1e308", "1e309", "inf", "-inf", "NaN", "448", "240", "57344",
];

/// Tile and vector dimensions: multiples of 16, off-by-ones and sizes whose products overflow.
pub const INTERESTING_DIMS: &[&str] = &[
    "0",
    "1",
    "15",
    "16",
    "17",
    "32",
    "48",
    "64",
    "80",
    "128",
    "256",
    "1024",
    "4096",
    "65536",
    "1048576",
    "2147483648",
    "4294967280",
    "4294967296",
];

/// One of `values`.
pub fn pick<'a>(rng: &mut SmallRng, values: &[&'a str]) -> &'a str {
    values[rng.gen_range(0..values.len())]
}

/// A length drawn log-uniformly from `1..=max`: mostly small, sometimes large.
pub fn log_len(rng: &mut SmallRng, max: usize) -> usize {
    let bits = usize::BITS - max.leading_zeros();
    let b = rng.gen_range(0..=bits);
    let hi = (1usize << b.min(usize::BITS - 1)).min(max).max(1);
    rng.gen_range(1..=hi)
}

/// Applies one to four byte-level mutations to `data`: bit flips, byte and interesting-number
/// overwrites, insertions, deletions, duplication of a span, and splicing in part of `other`.
pub fn bytes(rng: &mut SmallRng, data: &mut Vec<u8>, other: &[u8]) {
    let n = 1 + (rng.gen_range(0..8u32)).trailing_zeros().min(3) as usize;
    for _ in 0..n {
        byte_once(rng, data, other);
    }
}

fn byte_once(rng: &mut SmallRng, data: &mut Vec<u8>, other: &[u8]) {
    if data.is_empty() {
        data.push(rng.gen());
        return;
    }
    let at = rng.gen_range(0..data.len());
    match rng.gen_range(0..9) {
        0 => data[at] ^= 1 << rng.gen_range(0..8),
        1 => data[at] = rng.gen(),
        2 => data[at] = *pick_byte(rng),
        3 => {
            let s = pick(rng, INTERESTING_INTS).as_bytes();
            let end = (at + s.len()).min(data.len());
            data.splice(at..end, s.iter().copied());
        }
        4 => {
            let len = log_len(rng, 64).min(data.len() - at);
            data.drain(at..at + len);
        }
        5 => {
            let len = log_len(rng, 64);
            let fill: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            data.splice(at..at, fill);
        }
        6 => {
            let len = log_len(rng, 256).min(data.len() - at);
            let copy = data[at..at + len].to_vec();
            let to = rng.gen_range(0..=data.len());
            data.splice(to..to, copy);
        }
        7 if !other.is_empty() => {
            let from = rng.gen_range(0..other.len());
            let len = log_len(rng, 512).min(other.len() - from);
            let end = (at + log_len(rng, 512)).min(data.len());
            data.splice(at..end, other[from..from + len].iter().copied());
        }
        _ => data.truncate(at),
    }
}

/// Bytes that separate or end things in the formats under test.
fn pick_byte(rng: &mut SmallRng) -> &'static u8 {
    const SPECIAL: &[u8] = b"\0\n\r\t ()[]{}<>,:=%@\"\\/.-0x7f\xff";
    &SPECIAL[rng.gen_range(0..SPECIAL.len())]
}

/// A stable 64-bit hash (FNV-1a) of `data`: names reproducer files and derives seeds.
pub fn hash(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn byte_mutation_changes_the_input_and_never_panics() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut changed = 0;
        for i in 0..2000 {
            let original: Vec<u8> = (0..(i % 50) as u8).collect();
            let mut data = original.clone();
            bytes(&mut rng, &mut data, b"other input");
            changed += usize::from(data != original);
        }
        // A mutation can undo itself (a flip back, a splice of equal bytes) but rarely.
        assert!(changed > 1800, "only {changed} of 2000 inputs changed");
    }

    #[test]
    fn log_len_stays_in_range() {
        let mut rng = SmallRng::seed_from_u64(1);
        for max in [1, 2, 3, 64, 1000] {
            for _ in 0..200 {
                let n = log_len(&mut rng, max);
                assert!((1..=max).contains(&n), "{n} outside 1..={max}");
            }
        }
    }
}
