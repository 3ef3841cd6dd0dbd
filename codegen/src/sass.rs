//! The nvdisasm driver: SASS text of an assembled kernel and its instruction mix.

use std::collections::BTreeMap;
use std::process::Command;

use crate::ptxas::{find_tool, scratch};
use crate::CodegenError;

/// Disassembles a cubin (`nvdisasm -c`: code only).
pub fn disassemble(cubin: &[u8]) -> Result<String, CodegenError> {
    let tool = find_tool("nvdisasm", "TILEKIT_NVDISASM")?;
    let path = scratch("cubin");
    let io = |e: std::io::Error| CodegenError::Tool {
        tool: "nvdisasm".into(),
        message: e.to_string(),
    };
    std::fs::write(&path, cubin).map_err(io)?;
    let out = Command::new(&tool)
        .arg("-c")
        .arg(&path)
        .output()
        .map_err(io);
    let _ = std::fs::remove_file(&path);
    let out = out?;
    if !out.status.success() {
        return Err(CodegenError::Tool {
            tool: "nvdisasm".into(),
            message: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// How many instructions of each opcode (without modifiers: `HMMA.16816.F32.BF16` counts as
/// `HMMA`) the SASS text holds.
pub fn instruction_mix(sass: &str) -> BTreeMap<String, usize> {
    let mut mix = BTreeMap::new();
    for line in sass.lines() {
        // Instruction lines look like `/*0040*/   @!P0 HMMA.16816.F32.BF16 R4, R8, R12, R4 ;`.
        let Some(rest) = line.trim_start().strip_prefix("/*") else {
            continue;
        };
        let Some((_, body)) = rest.split_once("*/") else {
            continue;
        };
        let mut words = body.split_whitespace();
        let mut w = words.next();
        if w.is_some_and(|x| x.starts_with('@')) {
            w = words.next();
        }
        if let Some(op) = w {
            let op = op.split('.').next().unwrap_or(op).trim_end_matches(';');
            if !op.is_empty()
                && op
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                *mix.entry(op.to_string()).or_insert(0) += 1;
            }
        }
    }
    mix
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_opcodes_without_modifiers_or_predicates() {
        let sass = "        /*0000*/                   LDC R1, c[0x0][0x28] ;\n\
                    /*0010*/   @!P0 HMMA.16816.F32.BF16 R4, R8, R12, R4 ;\n\
                    /*0020*/        HMMA.16816.F32.BF16 R4, R8, R12, R4 ;\n\
                    /*0030*/        EXIT ;\n";
        let mix = instruction_mix(sass);
        assert_eq!(mix.get("HMMA"), Some(&2));
        assert_eq!(mix.get("LDC"), Some(&1));
        assert_eq!(mix.get("EXIT"), Some(&1));
    }
}
