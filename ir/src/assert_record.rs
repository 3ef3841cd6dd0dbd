//! The record a failed [`DeviceAssert`](crate::OpKind::DeviceAssert) leaves on an NVIDIA GPU
//! before it traps.
//!
//! A trapped context's device memory can no longer be read, so the compiled kernel declares a
//! module-scope 64-bit global, [`SYMBOL`], which the host points at [`BYTES`] bytes of
//! host-mapped pinned memory before launching. The first lane whose condition is false claims
//! the record (compare-and-swap of [`STATE`] from 0 to 1), writes where it failed and the
//! message, makes the writes visible to the host with a system-scope fence and traps. A kernel
//! whose [`SYMBOL`] holds 0 (nobody pointed it anywhere) only traps.
//!
//! All fields are little-endian `u32` words at the byte offsets below.

use std::fmt;

/// The module-scope `.global .u64` that holds the record's address (0: no record).
pub const SYMBOL: &str = "__tilekit_assert_record";
/// Size of the record in bytes.
pub const BYTES: usize = 128;
/// Offset of the state word: 0 while no assert failed, 1 once a lane claimed the record.
pub const STATE: usize = 0;
/// Offset of the failing block's index (x, y, z: three words).
pub const BLOCK: usize = 4;
/// Offset of the failing thread's index within its block.
pub const THREAD: usize = 16;
/// Offset of the message's length in bytes (as written, at most [`MESSAGE_CAPACITY`]).
pub const LENGTH: usize = 20;
/// Offset of the message's UTF-8 bytes.
pub const MESSAGE: usize = 32;
/// The most message bytes the record holds; longer messages are cut at a character boundary.
pub const MESSAGE_CAPACITY: usize = BYTES - MESSAGE;

/// What a failed assert wrote: where it failed and its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssertRecord {
    /// The failing block's index (x, y, z).
    pub block: [u32; 3],
    /// The failing thread's index within its block.
    pub thread: u32,
    /// The assert's message (cut to [`MESSAGE_CAPACITY`] bytes).
    pub message: String,
}

impl fmt::Display for AssertRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [x, y, z] = self.block;
        write!(
            f,
            "device_assert failed: {} (block ({x}, {y}, {z}), thread {})",
            self.message, self.thread
        )
    }
}

/// The message as the record stores it: its bytes cut to [`MESSAGE_CAPACITY`] at a character
/// boundary, as little-endian words (the last one zero-padded), and its length in bytes.
pub fn message_words(message: &str) -> (Vec<u32>, u32) {
    let mut end = message.len().min(MESSAGE_CAPACITY);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let words = message.as_bytes()[..end]
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
        .collect();
    (words, end as u32)
}

/// Reads a record: `None` when no assert claimed it (or `bytes` is shorter than [`BYTES`]).
pub fn decode(bytes: &[u8]) -> Option<AssertRecord> {
    if bytes.len() < BYTES {
        return None;
    }
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    if word(STATE) == 0 {
        return None;
    }
    let length = (word(LENGTH) as usize).min(MESSAGE_CAPACITY);
    Some(AssertRecord {
        block: [word(BLOCK), word(BLOCK + 4), word(BLOCK + 8)],
        thread: word(THREAD),
        message: String::from_utf8_lossy(&bytes[MESSAGE..MESSAGE + length]).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as a device would write it, from the layout alone.
    fn written(state: u32, block: [u32; 3], thread: u32, message: &str) -> Vec<u8> {
        let mut bytes = vec![0u8; BYTES];
        let mut put = |at: usize, v: u32| bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
        put(STATE, state);
        for (i, b) in block.into_iter().enumerate() {
            put(BLOCK + 4 * i, b);
        }
        put(THREAD, thread);
        let (words, length) = message_words(message);
        put(LENGTH, length);
        for (i, w) in words.into_iter().enumerate() {
            put(MESSAGE + 4 * i, w);
        }
        bytes
    }

    #[test]
    fn a_written_record_reads_back() {
        let bytes = written(1, [2, 0, 7], 45, "row sums are finite");
        let r = decode(&bytes).unwrap();
        assert_eq!(r.block, [2, 0, 7]);
        assert_eq!(r.thread, 45);
        assert_eq!(r.message, "row sums are finite");
        assert_eq!(
            r.to_string(),
            "device_assert failed: row sums are finite (block (2, 0, 7), thread 45)"
        );
    }

    #[test]
    fn an_unclaimed_or_short_record_is_none() {
        assert_eq!(decode(&written(0, [1, 1, 1], 3, "x")), None);
        assert_eq!(decode(&[1u8; BYTES - 1]), None);
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        // 95 ASCII bytes then a 2-byte character: the character does not fit.
        let message = format!("{}é and more", "a".repeat(MESSAGE_CAPACITY - 1));
        let (words, length) = message_words(&message);
        assert_eq!(length as usize, MESSAGE_CAPACITY - 1);
        assert_eq!(words.len(), MESSAGE_CAPACITY / 4);
        let r = decode(&written(1, [0; 3], 0, &message)).unwrap();
        assert_eq!(r.message, "a".repeat(MESSAGE_CAPACITY - 1));
        let (words, length) = message_words("abcde");
        assert_eq!((words, length), (vec![0x6463_6261, 0x65], 5));
    }
}
