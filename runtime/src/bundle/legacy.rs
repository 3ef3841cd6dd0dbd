//! Bundles written by tilekit before the JSON metadata (text metadata `bundle.txt`, format
//! versions 1 and 2, packed as `tilekit-bundle-pack N`): not read, but recognized, and refused
//! with the command that rebuilds them.

use super::{BundleError, TARGETS};

/// The metadata file of those bundles.
pub(super) const METADATA_FILE: &str = "bundle.txt";

/// How far into an old file its `target` line is looked for (it is the second entry).
const TARGET_SEARCH_BYTES: usize = 4096;

/// Whether `bytes` are an old packed bundle or old metadata text.
pub(super) fn recognizes(bytes: &[u8]) -> bool {
    bytes.starts_with(b"tilekit-bundle-pack ")
        || bytes.starts_with(b"tilekit-bundle ")
        || bytes.starts_with(b"# tilekit AOT bundle")
}

/// The error for an old bundle: `text` is what of it was read (its `target` line makes the
/// command exact), `out` the directory to rebuild into.
pub(super) fn error(origin: &str, found: &str, text: &[u8], out: &str) -> BundleError {
    let head = &text[..text.len().min(TARGET_SEARCH_BYTES)];
    let target = String::from_utf8_lossy(head)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("target "))
        .map(str::trim)
        .find(|t| TARGETS.contains(t))
        .map_or_else(|| "<target>".to_string(), str::to_string);
    BundleError::Legacy {
        bundle: origin.to_string(),
        found: found.to_string(),
        rebuild: format!("tilekit bundle --target {target} --out {out}"),
    }
}
