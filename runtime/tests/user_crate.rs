//! A crate outside the tilekit workspace (runtime/tests/user_crate, copied to a temporary
//! directory with path dependencies on this workspace) gets the `tilekit` command over its own
//! kernels from one line, `tilekit::cli_main!(user_kernels);`, and snapshot-tests its kernel's
//! Tile IR, PTX and AMD assembly with `tilekit::testing`.
//!
//! Ignored by `cargo test` (it runs cargo twice on a fresh crate: about a minute when the
//! workspace's dependencies are built, several on a cold target directory); `make
//! test-user-crate` runs it. runtime/tests/user_kernels.rs checks the same surface inside the
//! workspace on every `make test`. The build is `--offline` with this workspace's Cargo.lock,
//! so it needs nothing beyond what building the workspace fetched.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runtime/ is inside the workspace")
        .to_path_buf()
}

/// The `[env]` of the workspace's `.cargo/config.toml` (where LLVM and MLIR are), which cargo
/// does not read for a crate outside the workspace's directory: a user sets the same.
fn cargo_env(ws: &Path) -> Vec<(String, String)> {
    let config = std::fs::read_to_string(ws.join(".cargo/config.toml")).unwrap_or_default();
    config
        .lines()
        .skip_while(|l| l.trim() != "[env]")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Runs `cargo args…` in `dir`; its stdout, or a panic with both streams.
fn cargo(dir: &Path, ws: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(dir)
        .args(args)
        // The workspace's target directory: its dependencies are built there already.
        .env("CARGO_TARGET_DIR", ws.join("target"))
        .envs(cargo_env(ws))
        .envs(env.iter().copied());
    let out = cmd.output().expect("cargo runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(
        out.status.success(),
        "cargo {args:?} in {}: {}\n{stdout}\n{stderr}",
        dir.display(),
        out.status
    );
    stdout
}

fn tilekit(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{} {args:?}: {}\n{stdout}\n{}",
        bin.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
#[ignore = "builds a crate outside the workspace (minutes); `make test-user-crate` runs it"]
fn a_crate_outside_the_workspace_gets_the_cli_and_snapshot_tests_from_one_line_each() {
    let ws = workspace();
    let fixture = ws.join("runtime/tests/user_crate");
    let dir = std::env::temp_dir().join(format!("tilekit-user-crate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&fixture.join("src"), &dir.join("src"));
    copy_dir(&fixture.join("tests"), &dir.join("tests"));
    // The workspace's profiles, so that its builds of the dependencies are reused.
    let root = std::fs::read_to_string(ws.join("Cargo.toml")).unwrap();
    let profiles = &root[root.find("[profile.").unwrap_or(root.len())..];
    let manifest = std::fs::read_to_string(fixture.join("Cargo.toml.in"))
        .unwrap()
        .replace("@WORKSPACE@", &ws.to_string_lossy())
        .replace("@PROFILES@", profiles);
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::copy(ws.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    // The snapshots the in-workspace test (user_kernels.rs, the same file name) keeps.
    let snapshots = dir.join("tests/snapshots");
    std::fs::create_dir_all(&snapshots).unwrap();
    let mut copied = 0;
    for entry in std::fs::read_dir(ws.join("runtime/tests/snapshots")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("user_kernels__") && name.ends_with(".snap") {
            std::fs::copy(&path, snapshots.join(&name)).unwrap();
            copied += 1;
        }
    }
    assert_eq!(copied, 3, "the Tile IR, PTX and AMD assembly snapshots");

    cargo(
        &dir,
        &ws,
        &["build", "--offline", "--bin", "user-kernels-tilekit"],
        &[],
    );
    let bin = ws.join("target/debug/user-kernels-tilekit");

    let list = tilekit(&bin, &["list"]);
    for want in [
        "row_scale<f32, 1>  (x: Gl<f32, 2>, s: Scalar<f32>, y: GlMut<f32, 2>)",
        "row_scale<bf16, 2>  (x: Gl<bf16, 2>, s: Scalar<f32>, y: GlMut<f32, 2>)",
        // The library's kernels are there too.
        "softmax_rows<f32, 16, 64, 4>",
    ] {
        assert!(list.contains(want), "no `{want}` in:\n{list}");
    }
    let ptx = tilekit(
        &bin,
        &[
            "emit",
            "row_scale<bf16,2>",
            "--target",
            "sm_90a",
            "--stage",
            "ptx",
        ],
    );
    assert!(ptx.contains(".entry row_scale"), "{ptx}");
    let check = tilekit(
        &bin,
        &[
            "check",
            "row_scale",
            "--const",
            "0=f32",
            "--target",
            "sm_80",
        ],
    );
    assert!(check.contains("registers"), "{check}");
    let selftest = tilekit(&bin, &["selftest", "--device", "cpu"]);
    assert!(
        selftest.contains("ok   row_scale: 4 runs against the f64 reference")
            && selftest.contains(", 0 failed"),
        "{selftest}"
    );

    // Stored snapshots only: a difference fails instead of writing a new one.
    let tests = cargo(
        &dir,
        &ws,
        &["test", "--offline", "--test", "user_kernels"],
        &[("INSTA_UPDATE", "no"), ("INSTA_FORCE_PASS", "0")],
    );
    assert!(tests.contains("test result: ok. 1 passed"), "{tests}");
    let _ = std::fs::remove_dir_all(&dir);
}
