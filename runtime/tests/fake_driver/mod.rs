//! What the fake-driver tests share: the kernel the fakes run by name, building a fake vendor
//! library with `cc`, and re-running the calling test as a child process that loads it (glibc
//! reads `LD_LIBRARY_PATH` once, at start).

use std::path::Path;

use tilekit::dsl::*;

/// `y = a·x + b` over 16-element chunks, one block per chunk. The fake drivers run it by name
/// from the launch's argument buffer (pointers, sizes, strides, then `a` and `b`), so a wrong
/// buffer gives wrong numbers.
#[tilekit::kernel(warps = 1)]
pub fn axpb(x: Gl<f32, 1>, y: GlMut<f32, 1>, a: Scalar<f32>, b: Scalar<i32>) {
    let i = block_idx_x();
    let v: Rv<f32, 16> = load(x.chunk(i));
    let av: Rv<f32, 16> = splat(a);
    let bv: Rv<f32, 16> = splat(b.cast::<f32>());
    store(y.chunk(i), v * av + bv);
}

/// Set in the child process.
pub const CHILD: &str = "TILEKIT_FAKE_DRIVER_CHILD";

/// Whether this process is the child that should run the checks.
pub fn is_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// Builds `source` (a C file under `tests/`) as the shared library `library` in a fresh
/// directory, which it returns (the caller removes it).
pub fn build_library(source: &str, library: &str, tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tilekit-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(source);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let built = std::process::Command::new(&cc)
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(dir.join(library))
        .arg(&source)
        .status()
        .unwrap_or_else(|e| panic!("`{cc}` (a C compiler, to build the fake {library}): {e}"));
    assert!(built.success(), "building the fake {library} failed");
    dir
}

/// Builds the fake library (see [`build_library`]), re-runs test `test` of this binary with it
/// first on the library path and `env` set, and returns the child's stdout and stderr after
/// checking that it succeeded and said `child: all checks passed`.
#[allow(dead_code)] // each test binary uses what it needs of this module
pub fn run_child(
    source: &str,
    library: &str,
    test: &str,
    env: &[(&str, &str)],
) -> (String, String) {
    let dir = build_library(source, library, test);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("LD_LIBRARY_PATH", &dir)
        .env_remove("TILEKIT_SYNC")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("child: all checks passed"),
        "{stdout}\n{stderr}"
    );
    (stdout, stderr)
}
