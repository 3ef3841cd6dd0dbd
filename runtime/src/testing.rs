//! Snapshot tests of your own kernels' generated code (feature `testing`, on
//! [`insta`](https://insta.rs)).
//!
//! One line per snapshot: any stage of any kernel instantiation on any target.
//!
//! ```ignore
//! use tilekit::testing::{assert_stage_snapshot, Stage, Target};
//!
//! #[test]
//! fn row_scale_codegen() {
//!     assert_stage_snapshot!(row_scale::<2>, Target::Sm90a, Stage::Tile);
//!     assert_stage_snapshot!(row_scale::<2>, Target::Sm90a, Stage::Ptx);
//!     assert_stage_snapshot!(row_scale::<2>, Target::Gfx942, Stage::Asm);
//! }
//! ```
//!
//! The first run writes `tests/snapshots/<test file>__row_scale-2.sm_90a.ptx.snap` (as a
//! `.snap.new` under `cargo test`, accepted with `cargo insta review` or
//! `INSTA_UPDATE=always`); later runs fail when the generated code differs, and show the diff.
//!
//! What is in a snapshot: the stage's text as the compiler produced it, normalized so that only
//! the code can change it (line endings, trailing spaces, exactly one final newline; the
//! compiler's output is otherwise deterministic: no addresses, paths or timestamps). The
//! snapshot's header (its `description`) records the kernel instantiation, the target and
//! stage, and the tool versions that produced it ([`tool_versions`]: tilekit-codegen and
//! LLVM/MLIR), so a diff that comes with an LLVM upgrade says so. The header alone changing is
//! not a failure; a code diff is.
//!
//! In `Cargo.toml`:
//!
//! ```toml
//! [dev-dependencies]
//! tilekit = { version = "0.1", features = ["testing"] }
//! ```

use std::fmt;

use crate::ir::Module;

/// The snapshot library, re-exported for [`assert_stage_snapshot!`](crate::assert_stage_snapshot)
/// (its macros must expand in your test, where they find your crate's `tests/snapshots`).
#[doc(hidden)]
pub use insta;
pub use tilekit_codegen::{Stage, Target};

#[doc(inline)]
pub use crate::assert_stage_snapshot;

/// Why a stage could not be produced for a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The stage belongs to the other vendor (`ptx` on AMD, `asm` on NVIDIA).
    #[error("stage `{stage}` does not apply to {target}; its stages are {available}")]
    StageNotForTarget {
        stage: &'static str,
        target: Target,
        available: String,
    },
    /// `Stage::Hsaco` is the binary code object.
    #[error(
        "stage `hsaco` is the binary code object and has no text to snapshot; snapshot its \
         assembly (`Stage::Asm`), which the object is linked from"
    )]
    Binary,
    /// The kernel's body failed to build (an `assert!` on its comptime parameters).
    #[error("building `{kernel}`: {message}")]
    Build { kernel: String, message: String },
    /// The compiler rejected the kernel for the target.
    #[error("compiling `{kernel}` for {target}: {source}")]
    Compile {
        kernel: String,
        target: Target,
        #[source]
        source: tilekit_codegen::CodegenError,
    },
}

/// One stage of one kernel instantiation, ready to be compared with a stored snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageSnapshot {
    /// The snapshot's name: `<kernel>[-<comptime arguments>].<target>.<stage>`, e.g.
    /// `row_scale-2.sm_90a.ptx` (a file name without shell-special characters).
    pub name: String,
    /// What the header records: the instantiation, target, stage and [`tool_versions`].
    pub description: String,
    /// The stage's normalized text ([`normalize`]).
    pub text: String,
}

impl fmt::Display for StageSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The tools whose versions decide the generated code: `tilekit-codegen 0.1.0, LLVM/MLIR
/// 22.1.8`.
pub fn tool_versions() -> String {
    let (major, minor, patch) = tilekit_codegen::llvm_version();
    format!(
        "tilekit-codegen {}, LLVM/MLIR {major}.{minor}.{patch}",
        tilekit_codegen::VERSION
    )
}

/// `text` with `\r\n` as `\n`, no spaces or tabs at line ends, no blank lines at the end and
/// exactly one final newline: what differs between checkouts and editors, never between codes.
pub fn normalize(text: &str) -> String {
    let mut out: String = text
        .replace("\r\n", "\n")
        .lines()
        .map(|l| l.trim_end_matches([' ', '\t']))
        .collect::<Vec<_>>()
        .join("\n");
    let trimmed = out.trim_end_matches('\n').len();
    out.truncate(trimmed);
    out.push('\n');
    out
}

/// A Rust type name without its paths: `my_crate::k::gemm<half::bfloat::bf16, 64>` →
/// `gemm<bf16, 64>`.
pub fn plain_type_name(type_name: &str) -> String {
    let (mut plain, mut word) = (String::new(), String::new());
    let mut chars = type_name.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            word.clear();
        } else if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            plain.push_str(&word);
            word.clear();
            plain.push(c);
        }
    }
    plain.push_str(&word);
    plain
}

/// The snapshot name of an instantiation, from its Rust type name, then the target and the
/// stage: `my_crate::row_scale<2>` → `row_scale-2.sm_90a.ptx`, `gemm<half::bf16, 64>` →
/// `gemm-bf16-64.…` (only characters that need no quoting in a file name).
pub fn snapshot_name(type_name: &str, target: Target, stage: Stage) -> String {
    let mut name = String::new();
    for c in plain_type_name(type_name).chars() {
        if c.is_alphanumeric() || c == '_' || c == '.' {
            name.push(c);
        } else if !name.ends_with('-') && c != ' ' {
            name.push('-');
        }
    }
    let name = name.trim_end_matches('-');
    format!("{name}.{}.{}", target.name(), stage.name())
}

/// Compiles kernel `kernel` of `module` (the instantiation whose Rust type name is
/// `type_name`) for `target` and returns `stage` as a [`StageSnapshot`]. What
/// [`assert_stage_snapshot!`](crate::assert_stage_snapshot) compares; call it yourself to
/// snapshot with other insta settings.
pub fn stage_snapshot(
    module: &Module,
    kernel: &str,
    type_name: &str,
    target: Target,
    stage: Stage,
) -> Result<StageSnapshot, SnapshotError> {
    if stage == Stage::Hsaco {
        return Err(SnapshotError::Binary);
    }
    if !stage.applies_to(target) {
        let available = Stage::ALL
            .into_iter()
            .filter(|s| s.applies_to(target) && *s != Stage::Hsaco)
            .map(Stage::name)
            .collect::<Vec<_>>()
            .join(", ");
        return Err(SnapshotError::StageNotForTarget {
            stage: stage.name(),
            target,
            available,
        });
    }
    let compiled = tilekit_codegen::compile_cached(module, kernel, target).map_err(|source| {
        SnapshotError::Compile {
            kernel: type_name.to_string(),
            target,
            source,
        }
    })?;
    Ok(StageSnapshot {
        name: snapshot_name(type_name, target, stage),
        description: format!(
            "{} · {} · {} · {}",
            plain_type_name(type_name),
            target.name(),
            stage.name(),
            tool_versions()
        ),
        text: normalize(compiled.stage(stage)),
    })
}

/// For [`assert_stage_snapshot!`](crate::assert_stage_snapshot): the stage of kernel type `K`'s
/// module, or the error that says why there is none.
#[doc(hidden)]
pub fn __stage_of(
    module: Result<&'static Module, crate::Error>,
    kernel: &str,
    type_name: &str,
    target: Target,
    stage: Stage,
) -> Result<StageSnapshot, SnapshotError> {
    let module = module.map_err(|e| SnapshotError::Build {
        kernel: type_name.to_string(),
        message: e.to_string(),
    })?;
    stage_snapshot(module, kernel, type_name, target, stage)
}

/// Asserts that one stage of a kernel instantiation compiled for a target matches its stored
/// snapshot: `assert_stage_snapshot!(my_kernel::<f32, 64>, Target::Sm90a, Stage::Ptx)`.
///
/// The first argument is the instantiation (the type `#[tilekit::kernel]` makes, with its
/// comptime arguments), then a [`Target`](crate::testing::Target) and a
/// [`Stage`](crate::testing::Stage). The snapshot is stored beside your test, in
/// `snapshots/<test file>__<kernel>-<arguments>.<target>.<stage>.snap` (see
/// [`snapshot_name`](crate::testing::snapshot_name)), with the instantiation and the tool
/// versions in its header. A stage that does not apply to the target, a kernel that fails to
/// build or compile, or a snapshot that differs fails the test with the reason.
#[macro_export]
macro_rules! assert_stage_snapshot {
    ($kernel:ty, $target:expr, $stage:expr $(,)?) => {{
        let __tk_snapshot = match $crate::testing::__stage_of(
            <$kernel>::try_module(),
            <$kernel>::NAME,
            ::core::any::type_name::<$kernel>(),
            $target,
            $stage,
        ) {
            ::core::result::Result::Ok(s) => s,
            ::core::result::Result::Err(e) => ::core::panic!("{}", e),
        };
        let mut __tk_settings = $crate::testing::insta::Settings::clone_current();
        __tk_settings.set_description(__tk_snapshot.description.clone());
        __tk_settings.set_omit_expression(true);
        __tk_settings.bind(|| {
            $crate::testing::insta::assert_snapshot!(
                __tk_snapshot.name.clone(),
                __tk_snapshot.text.as_str()
            );
        });
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizing_removes_what_editors_and_checkouts_change() {
        assert_eq!(normalize("a  \r\n\tb\t\r\n\n\n"), "a\n\tb\n");
        assert_eq!(normalize("x"), "x\n");
        assert_eq!(normalize(""), "\n");
        // Leading indentation is code: kept.
        assert_eq!(normalize("  mov r1;\n"), "  mov r1;\n");
    }

    #[test]
    fn snapshot_names_are_the_kernel_and_its_arguments_without_paths() {
        assert_eq!(
            snapshot_name("my_crate::k::row_scale<2>", Target::Sm90a, Stage::Ptx),
            "row_scale-2.sm_90a.ptx"
        );
        assert_eq!(
            snapshot_name(
                "my_crate::gemm<half::bfloat::bf16, 64, true>",
                Target::Gfx942,
                Stage::Asm
            ),
            "gemm-bf16-64-true.gfx942.asm"
        );
        assert_eq!(
            snapshot_name("plain", Target::Sm80, Stage::Tile),
            "plain.sm_80.tile"
        );
    }

    #[test]
    fn stages_of_the_other_vendor_and_the_binary_object_are_errors() {
        let m = crate::kernels::softmax::softmax_rows::<f32, 16, 64, 4>::module();
        let e = stage_snapshot(
            m,
            "softmax_rows",
            "softmax_rows<f32>",
            Target::Gfx942,
            Stage::Ptx,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("`ptx` does not apply to gfx942")
                && e.to_string().contains("asm"),
            "{e}"
        );
        let e = stage_snapshot(
            m,
            "softmax_rows",
            "softmax_rows<f32>",
            Target::Gfx942,
            Stage::Hsaco,
        )
        .unwrap_err();
        assert!(matches!(e, SnapshotError::Binary), "{e}");
    }
}
