//! Hashes this crate's sources into `TILEKIT_CODEGEN_SOURCE`, which the compile cache puts in its
//! key: a disk cache written by one build of the code generator is never read by a build whose
//! lowering differs, even when the crate version is the same.

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn main() {
    println!("cargo:rerun-if-changed=src");
    let mut paths = Vec::new();
    files(Path::new("src"), &mut paths);
    paths.sort();
    // FNV-1a over each file's path and bytes (the same function as the cache's file names).
    let mut h = 0xcbf29ce484222325u64;
    for p in &paths {
        let bytes = std::fs::read(p).unwrap_or_default();
        for b in p.to_string_lossy().bytes().chain([0]).chain(bytes) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
    }
    println!("cargo:rustc-env=TILEKIT_CODEGEN_SOURCE={h:016x}");
}
