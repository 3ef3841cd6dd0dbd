//! What a bundle may hold: the sizes and ranges a reader checks before it allocates anything
//! sized from its input, and a writer checks before it writes a file.
//!
//! The caps are far above what the kernel library needs (a whole registry for one target is a
//! few MiB) and far below what would exhaust a machine's memory.

/// Bytes of metadata ([`super::METADATA_FILE`]) a reader accepts.
pub const MAX_METADATA_BYTES: u64 = 16 << 20;
/// Bytes of one code file (PTX text or code object) a reader accepts.
pub const MAX_CODE_FILE_BYTES: u64 = 256 << 20;
/// Bytes of all code files of one bundle together.
pub const MAX_BUNDLE_BYTES: u64 = 1 << 30;
/// Kernel variants in one bundle.
pub const MAX_KERNELS: usize = 1 << 16;
/// Parameters of one kernel.
pub const MAX_PARAMS: usize = 1 << 10;
/// Bytes of a kernel or parameter name.
pub const MAX_NAME_BYTES: usize = 256;
/// Bytes of a variant (its comptime arguments as text).
pub const MAX_VARIANT_BYTES: usize = 4096;
/// Bytes of a code file's name: below the 255 of common file systems, leaving room for the
/// temporary name a file is written under before it is renamed into place.
pub const MAX_FILE_NAME_BYTES: usize = 200;
/// Ranks of a global view: the Tile IR's `gl<T, rank>` has rank 1 to 4 (its verifier says so).
pub const RANKS: std::ops::RangeInclusive<u32> = 1..=4;
/// Threads of a block: at least one, at most 1024 on every target (CUDA C Programming Guide,
/// *Compute Capabilities*, "maximum number of threads per block"; the largest AMD work-group).
pub const BLOCK_THREADS: std::ops::RangeInclusive<u32> = 1..=1024;

/// The most shared memory (LDS on AMD) one block may use on `target`, or `None` for a target
/// bundles do not hold. The same numbers as the compiler's `tilekit_codegen::shared_limit` (a
/// test with `jit` checks that they agree); repeated here because a runtime built without `jit`
/// links no compiler.
pub fn shared_limit(target: &str) -> Option<u64> {
    Some(match target {
        // CUDA C Programming Guide, *Compute Capabilities*: 163 KiB on 8.0, 227 KiB on 9.0.
        "sm_80" => 163 * 1024,
        "sm_90a" => 227 * 1024,
        // CDNA2/CDNA3 ISA, *Local Data Share*: 64 KiB per work-group; CDNA4: 160 KiB.
        "gfx90a" | "gfx942" => 64 * 1024,
        "gfx950" => 160 * 1024,
        _ => return None,
    })
}
