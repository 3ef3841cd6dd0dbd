//! The `ld.lld` driver: links an AMDGPU relocatable object into a code object (`.hsaco`), a
//! shared ELF as the ROCm loader expects (LLVM AMDGPUUsage, *Code Object*: "the code object is
//! an ELF shared object … produced by linking with `ld.lld -shared`").
//!
//! `ld.lld` comes from Debian's `lld-22` package (`/usr/lib/llvm-22/bin/ld.lld`), which
//! `scripts/install-deps.sh` installs; `TILEKIT_LLD` overrides the path.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::CodegenError;

/// Where `ld.lld` is looked for after `$TILEKIT_LLD`: the LLVM 22 installation, then `PATH`.
const LLVM_LLD: &str = "/usr/lib/llvm-22/bin/ld.lld";

/// Finds `ld.lld`: `$TILEKIT_LLD`, `/usr/lib/llvm-22/bin/ld.lld`, then `ld.lld` on `PATH`.
pub fn find() -> Result<PathBuf, CodegenError> {
    if let Some(p) = std::env::var_os("TILEKIT_LLD") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(CodegenError::Tool {
            tool: "ld.lld".into(),
            message: format!(
                "$TILEKIT_LLD names {}, which does not exist; unset it to use {LLVM_LLD}",
                p.display()
            ),
        });
    }
    if Path::new(LLVM_LLD).is_file() {
        return Ok(PathBuf::from(LLVM_LLD));
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join("ld.lld");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(CodegenError::Tool {
        tool: "ld.lld".into(),
        message: format!(
            "`ld.lld` not found (looked at $TILEKIT_LLD, {LLVM_LLD} and PATH); AMD code objects \
             need it: install Debian's `lld-22` (`scripts/install-deps.sh` does)"
        ),
    })
}

/// Links `object` (an AMDGPU ELF relocatable) into a code object and returns its bytes.
pub fn link(object: &[u8]) -> Result<Vec<u8>, CodegenError> {
    let lld = find()?;
    let obj = crate::ptxas::scratch("o");
    let out = crate::ptxas::scratch("hsaco");
    let tool_err = |message: String| CodegenError::Tool {
        tool: "ld.lld".into(),
        message,
    };
    std::fs::write(&obj, object)
        .map_err(|e| tool_err(format!("cannot write {}: {e}", obj.display())))?;
    let run = Command::new(&lld)
        .arg("-shared")
        .arg("--no-undefined")
        .arg(&obj)
        .arg("-o")
        .arg(&out)
        .output();
    let _ = std::fs::remove_file(&obj);
    let run = run.map_err(|e| tool_err(format!("cannot run {}: {e}", lld.display())))?;
    if !run.status.success() {
        let _ = std::fs::remove_file(&out);
        return Err(tool_err(format!(
            "linking failed ({}): {}",
            run.status,
            String::from_utf8_lossy(&run.stderr).trim()
        )));
    }
    let bytes =
        std::fs::read(&out).map_err(|e| tool_err(format!("cannot read {}: {e}", out.display())));
    let _ = std::fs::remove_file(&out);
    bytes
}
