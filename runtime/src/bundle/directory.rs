//! Reading and writing the files of a bundle directory without ever leaving it: names are plain
//! file names (checked by the caller with `validate::check_file_name`), a file is read only
//! when it is a regular file of bounded size (never a link, FIFO, device or directory, and
//! opened so that a FIFO swapped in at the last moment cannot block), and a file is written
//! by creating a new file beside it and renaming it into place, which replaces a link rather
//! than writing through it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use super::BundleError;

/// What kind of file system entry `t` is, for messages.
fn kind(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading without following a final symbolic link and without blocking.
fn open_for_reading(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: opening a FIFO for reading would wait for a writer; regular files ignore
        // it. O_NOFOLLOW: a link put in place after the type check is refused (ELOOP).
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    options.open(path)
}

/// Whether `dir/name` exists as anything at all (a dangling link included), without opening it.
pub(super) fn exists(dir: &Path, name: &str) -> bool {
    std::fs::symlink_metadata(dir.join(name)).is_ok()
}

/// The bytes of `dir/name`, a regular file of at most `limit` bytes.
pub(super) fn read(
    origin: &str,
    dir: &Path,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>, BundleError> {
    let path = dir.join(name);
    let io = |source: std::io::Error| BundleError::Io {
        path: path.clone(),
        source,
    };
    let not_regular = |t: std::fs::FileType| BundleError::NotAFile {
        bundle: origin.to_string(),
        file: name.to_string(),
        kind: kind(t),
    };
    let too_large = |size: u64| BundleError::TooLarge {
        bundle: origin.to_string(),
        file: name.to_string(),
        size,
        limit,
    };
    // The type is checked before opening: opening a FIFO or a device has effects of its own.
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BundleError::MissingFile {
                bundle: origin.to_string(),
                file: name.to_string(),
            })
        }
        Err(e) => return Err(io(e)),
    };
    if !meta.file_type().is_file() {
        return Err(not_regular(meta.file_type()));
    }
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    let file = open_for_reading(&path).map_err(io)?;
    // Again on what was opened: the entry may have been replaced since.
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(not_regular(meta.file_type()));
    }
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    // `meta.len() <= limit`, which fits in memory's address range on any target tilekit runs on.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // One byte past the limit tells a file that grew while being read.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Writes `bytes` to `dir/name`: into a new file `.name.<pid>.tmp` first, then renamed over
/// `name`, so that an existing link named `name` is replaced, never followed.
pub(super) fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), BundleError> {
    let path = dir.join(name);
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BundleError::Io { path, source }
    };
    // A leftover of an interrupted write (removing a link removes the link only).
    match std::fs::remove_file(&temporary) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&temporary)(e)),
        _ => {}
    }
    // `create_new` (O_EXCL) fails on anything already there, links included.
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(io(&temporary))
        .and_then(|()| std::fs::rename(&temporary, &path).map_err(io(&path)));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// Removes `dir/name` if it is a regular file or a link (the link itself), leaving anything
/// else (a directory, a FIFO someone made) alone.
pub(super) fn remove_stale(dir: &Path, name: &str) -> Result<(), BundleError> {
    let path = dir.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_file() || meta.file_type().is_symlink() => {
            std::fs::remove_file(&path).map_err(|source| BundleError::Io { path, source })
        }
        _ => Ok(()),
    }
}
