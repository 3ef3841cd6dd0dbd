//! Facts a launch guarantees about its arguments, which a kernel may be compiled to rely on.
//!
//! A kernel compiled with no facts (the *general* variant) is correct for every launch. A
//! kernel compiled with [`Facts`] is correct only for launches whose arguments satisfy them;
//! the runtime decides once per launch which variant it takes (as Triton specializes on
//! divisibility), never inside a loop.
//!
//! One fact exists today, per global-view parameter: [`Facts::aligned16`]. A view is
//! *16-byte aligned* when its base pointer is a multiple of 16 bytes, its last dimension is
//! contiguous (stride 1), every other stride is a multiple of 16 bytes and so is its last
//! extent. Then every 16-byte chunk of a row starts 16-byte aligned and lies wholly inside or
//! wholly outside the view, so a global → shared tile copy moves whole chunks (`cp.async` of
//! 16 bytes with a source size of 16 or 0) and needs neither a run-time alignment test nor an
//! element-wise fallback.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// What a compile may assume about a launch's arguments; the empty set is the general variant.
///
/// Displayed (and parsed) as `general` or `aligned16(a, b)`, naming the parameters; the text
/// form is what bundle metadata and cache keys record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Facts {
    aligned16: BTreeSet<String>,
}

impl Facts {
    /// No facts: the general variant, correct for every launch.
    pub fn general() -> Facts {
        Facts::default()
    }

    /// The views named by `params` are 16-byte aligned (see the module documentation).
    pub fn aligned16<S: AsRef<str>>(params: impl IntoIterator<Item = S>) -> Facts {
        Facts {
            aligned16: params.into_iter().map(|p| p.as_ref().to_string()).collect(),
        }
    }

    /// Every global-view parameter of kernel `func` is 16-byte aligned.
    pub fn all_aligned16(func: &tilekit_ir::Func) -> Facts {
        Facts::aligned16(global_params(func))
    }

    /// Whether the compile may assume that view `param` is 16-byte aligned.
    pub fn is_aligned16(&self, param: &str) -> bool {
        self.aligned16.contains(param)
    }

    /// Whether these are no facts at all (the general variant).
    pub fn is_general(&self) -> bool {
        self.aligned16.is_empty()
    }

    /// The parameters assumed 16-byte aligned, in name order.
    pub fn aligned16_params(&self) -> impl Iterator<Item = &str> {
        self.aligned16.iter().map(String::as_str)
    }

    /// Whether a launch that satisfies `self` also satisfies `other` (every fact of `other`
    /// is one of `self`): a kernel compiled for `other` may run it.
    pub fn implies(&self, other: &Facts) -> bool {
        other.aligned16.is_subset(&self.aligned16)
    }

    /// Checks that every parameter these facts name is a global view of kernel `func`; one
    /// that is not is [`FactsError::UnknownParam`].
    pub fn check_against(&self, func: &tilekit_ir::Func) -> Result<(), FactsError> {
        let globals: Vec<String> = global_params(func);
        for p in &self.aligned16 {
            if !globals.contains(p) {
                return Err(FactsError::UnknownParam {
                    param: p.clone(),
                    kernel: func.name.clone(),
                    globals: globals.join(", "),
                });
            }
        }
        Ok(())
    }
}

/// The names of `func`'s global-view parameters, in order.
fn global_params(func: &tilekit_ir::Func) -> Vec<String> {
    func.params
        .iter()
        .filter(|&&p| matches!(func.value_type(p), tilekit_ir::Type::Global { .. }))
        .map(|&p| func.value_name(p).unwrap_or("arg").to_string())
        .collect()
}

impl fmt::Display for Facts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.aligned16.is_empty() {
            return f.write_str("general");
        }
        let names: Vec<&str> = self.aligned16_params().collect();
        write!(f, "aligned16({})", names.join(", "))
    }
}

/// Facts text that does not parse, or names no parameter of the kernel.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FactsError {
    #[error("cannot read facts `{given}`: expected `general` or `aligned16(<param>, …)`")]
    Syntax { given: String },
    #[error("facts name `{param}`, which is not a global-view parameter of `{kernel}` (those are: {globals})")]
    UnknownParam {
        param: String,
        kernel: String,
        globals: String,
    },
}

impl FromStr for Facts {
    type Err = FactsError;

    fn from_str(s: &str) -> Result<Facts, FactsError> {
        let t = s.trim();
        if t == "general" || t.is_empty() {
            return Ok(Facts::general());
        }
        let syntax = || FactsError::Syntax {
            given: s.to_string(),
        };
        let inner = t
            .strip_prefix("aligned16(")
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(syntax)?;
        let names: Vec<&str> = inner.split(',').map(str::trim).collect();
        let ident = |n: &&str| {
            !n.is_empty()
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !n.starts_with(|c: char| c.is_ascii_digit())
        };
        if !names.iter().all(ident) {
            return Err(syntax());
        }
        Ok(Facts::aligned16(names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_print_and_parse_back() {
        for f in [
            Facts::general(),
            Facts::aligned16(["a"]),
            Facts::aligned16(["b", "a", "c_2"]),
        ] {
            let text = f.to_string();
            assert_eq!(text.parse::<Facts>(), Ok(f.clone()), "{text}");
        }
        assert_eq!(Facts::aligned16(["b", "a"]).to_string(), "aligned16(a, b)");
        assert_eq!(Facts::general().to_string(), "general");
    }

    #[test]
    fn malformed_facts_are_errors() {
        for bad in [
            "aligned16",
            "aligned16()",
            "aligned8(a)",
            "aligned16(a b)",
            "x",
        ] {
            assert!(bad.parse::<Facts>().is_err(), "{bad}");
        }
    }

    #[test]
    fn more_facts_imply_fewer() {
        let ab = Facts::aligned16(["a", "b"]);
        let a = Facts::aligned16(["a"]);
        assert!(ab.implies(&a));
        assert!(!a.implies(&ab));
        assert!(a.implies(&Facts::general()));
        assert!(!Facts::general().implies(&a));
    }
}
