//! The packed bundle ([`super::PACKED_FILE`]): a tar archive (GNU format, which `tar tf`
//! lists) of regular files with plain names, the metadata first, then each kernel's code file
//! in the metadata's order. Written deterministically (mode 0644, owner 0, time 0), so the same
//! bundle packs to the same bytes.
//!
//! Reading checks each entry before it allocates for it: a regular file, a plain name, no name
//! twice, its size within the limit for its kind and within what the input still holds.

use std::collections::HashSet;
use std::io::Read;

use super::limits::{MAX_CODE_FILE_BYTES, MAX_KERNELS, MAX_METADATA_BYTES};
use super::validate::{self, shown};
use super::{BundleError, METADATA_FILE};

/// Where the magic of a ustar/GNU header is, and what it starts with (POSIX *pax*, "ustar
/// Interchange Format": `ustar\0` for POSIX, `ustar ` for GNU).
const MAGIC_AT: usize = 257;
const MAGIC: &[u8] = b"ustar";
const BLOCK: usize = 512;

/// A tar archive of `files` (name, bytes), in that order.
pub(super) fn pack(origin: &str, files: &[(&str, &[u8])]) -> Result<Vec<u8>, BundleError> {
    let invalid = |message: String| BundleError::Invalid {
        bundle: origin.to_string(),
        message,
    };
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        builder
            .append_data(&mut header, name, *bytes)
            .map_err(|e| invalid(format!("packing `{}`: {e}", shown(name))))?;
    }
    builder
        .into_inner()
        .map_err(|e| invalid(format!("packing: {e}")))
}

/// The files of a packed bundle, in the archive's order.
pub(super) fn unpack(origin: &str, bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, BundleError> {
    let invalid = |message: String| BundleError::Invalid {
        bundle: origin.to_string(),
        message,
    };
    if bytes.len() < BLOCK || !bytes[MAGIC_AT..].starts_with(MAGIC) {
        return Err(invalid(format!(
            "not a packed bundle: a packed bundle is a tar archive holding `{METADATA_FILE}` and \
             the code files (the contents of {}, as `tilekit bundle` writes it)",
            super::PACKED_FILE
        )));
    }
    let damaged = |e: std::io::Error| invalid(format!("the tar archive is damaged: {e}"));
    let mut archive = tar::Archive::new(bytes);
    let mut files = Vec::new();
    let mut names = HashSet::new();
    for entry in archive.entries().map_err(damaged)? {
        let mut entry = entry.map_err(damaged)?;
        let name_bytes = entry.path_bytes().into_owned();
        let name = String::from_utf8(name_bytes).map_err(|e| {
            invalid(format!(
                "an entry's name is not UTF-8: `{}`",
                shown(&String::from_utf8_lossy(e.as_bytes()))
            ))
        })?;
        let entry_type = entry.header().entry_type();
        if entry_type != tar::EntryType::Regular {
            return Err(invalid(format!(
                "entry `{}` is not a regular file ({entry_type:?}); a packed bundle holds regular \
                 files only",
                shown(&name)
            )));
        }
        if name != METADATA_FILE {
            validate::check_file_name(origin, &name)?;
        }
        if !names.insert(name.clone()) {
            return Err(invalid(format!(
                "the archive holds `{}` twice",
                shown(&name)
            )));
        }
        if names.len() > MAX_KERNELS + 1 {
            return Err(invalid(format!(
                "the archive holds more than {} files",
                MAX_KERNELS + 1
            )));
        }
        let limit = if name == METADATA_FILE {
            MAX_METADATA_BYTES
        } else {
            MAX_CODE_FILE_BYTES
        };
        let size = entry.size();
        if size > limit {
            return Err(BundleError::TooLarge {
                bundle: origin.to_string(),
                file: name,
                size,
                limit,
            });
        }
        // The archive is in memory: an entry longer than what follows its header is cut off,
        // whatever its header says, and nothing is allocated for it.
        let remaining = (bytes.len() as u64).saturating_sub(entry.raw_file_position());
        if size > remaining {
            return Err(invalid(format!(
                "file `{name}` is cut off: {size} bytes announced, {remaining} remain"
            )));
        }
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        entry.read_to_end(&mut data).map_err(damaged)?;
        if data.len() as u64 != size {
            return Err(invalid(format!(
                "file `{name}` is cut off: {size} bytes announced, {} read",
                data.len()
            )));
        }
        files.push((name, data));
    }
    Ok(files)
}
