//! # tilekit-codegen
//!
//! Code generation for Tile IR kernels. This crate names the targets tilekit compiles for; the
//! lowering through MLIR and LLVM to PTX (NVIDIA) and code objects (AMD) is built on top of it.

use std::fmt;
use std::str::FromStr;

/// A GPU architecture tilekit generates code for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// NVIDIA Ampere: `mma.sync`, `ldmatrix`, `cp.async`.
    Sm80,
    /// NVIDIA Hopper with architecture-specific features: `wgmma`, TMA, `setmaxnreg`.
    Sm90a,
    /// AMD CDNA2 (MI200).
    Gfx90a,
    /// AMD CDNA3 (MI300).
    Gfx942,
    /// AMD CDNA4 (MI355).
    Gfx950,
}

impl Target {
    /// Every supported target, in the order the CLI lists them.
    pub const ALL: [Target; 5] = [
        Target::Sm80,
        Target::Sm90a,
        Target::Gfx90a,
        Target::Gfx942,
        Target::Gfx950,
    ];

    /// The name used on the command line and by LLVM (`-mcpu`).
    pub fn name(self) -> &'static str {
        match self {
            Target::Sm80 => "sm_80",
            Target::Sm90a => "sm_90a",
            Target::Gfx90a => "gfx90a",
            Target::Gfx942 => "gfx942",
            Target::Gfx950 => "gfx950",
        }
    }

    pub fn is_nvidia(self) -> bool {
        matches!(self, Target::Sm80 | Target::Sm90a)
    }

    /// Threads per warp (NVIDIA) or wavefront (AMD).
    pub fn lanes(self) -> u32 {
        if self.is_nvidia() {
            32
        } else {
            64
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown target name, with the list of supported ones.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown target `{given}`; supported targets: {}", Target::ALL.map(Target::name).join(", "))]
pub struct UnknownTarget {
    pub given: String,
}

impl FromStr for Target {
    type Err = UnknownTarget;

    fn from_str(s: &str) -> Result<Target, UnknownTarget> {
        Target::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| UnknownTarget {
                given: s.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_round_trip() {
        for t in Target::ALL {
            assert_eq!(t.name().parse::<Target>(), Ok(t));
        }
    }

    #[test]
    fn unknown_target_lists_the_supported_ones() {
        let e = "gfx1100".parse::<Target>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown target `gfx1100`; supported targets: sm_80, sm_90a, gfx90a, gfx942, gfx950"
        );
    }
}
