//! The seed corpus: the Tile IR texts checked in under `tests/fuzz/corpus/tile/` (copies of
//! the snapshot texts of the acceptance kernels, the grammar tour of the parser's tests and
//! small kernels that the interpreter runs quickly), plus the Tile IR snapshots under
//! `tests/tests/snapshots/` as they are now, so that a new snapshot seeds the fuzzer without a
//! copy.

use std::path::Path;

/// The folder of checked-in seeds.
pub fn corpus_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus"))
}

/// The text of an insta snapshot after its `---` header.
fn snapshot_body(s: &str) -> &str {
    let mut rest = s;
    for _ in 0..2 {
        match rest.find("---\n") {
            Some(i) => rest = &rest[i + 4..],
            None => return s,
        }
    }
    rest
}

/// Every seed Tile IR text (distinct, in a stable order).
pub fn tile_texts() -> Vec<String> {
    let mut texts = Vec::new();
    let read = |dir: &Path, ext: &str| -> Vec<(String, String)> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut v: Vec<(String, String)> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == ext))
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                std::fs::read_to_string(e.path()).ok().map(|t| (name, t))
            })
            .collect();
        v.sort();
        v
    };
    for (_, t) in read(&corpus_dir().join("tile"), "tile") {
        texts.push(t);
    }
    let snapshots = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots"));
    for (_, t) in read(snapshots, "snap") {
        let body = snapshot_body(&t);
        // Only Tile IR snapshots (the codegen ones live in codegen/).
        if body.trim_start().starts_with("kernel ") || body.trim_start().starts_with("func ") {
            texts.push(body.to_string());
        }
    }
    let mut seen = std::collections::HashSet::new();
    texts.retain(|t| seen.insert(t.clone()));
    texts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_checked_in_seed_parses_and_most_verify() {
        // A seed that does not parse only seeds the parser's error paths; the checked-in ones
        // are meant to reach the verifier and (most) the interpreter.
        let texts = tile_texts();
        assert!(texts.len() >= 20, "only {} seeds", texts.len());
        let mut verified = 0;
        for t in &texts {
            let m = tilekit::ir::parse_module(t).unwrap_or_else(|e| panic!("{e}\n{t}"));
            if let Err(e) = tilekit::ir::verify(&m) {
                eprintln!(
                    "seed does not verify: {:?}\n{t}",
                    e.first().map(|e| e.to_string())
                );
            } else {
                verified += 1;
            }
        }
        assert!(
            verified * 10 >= texts.len() * 9,
            "{verified} of {} seeds verify",
            texts.len()
        );
    }
}
