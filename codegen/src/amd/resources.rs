//! The resource report of an AMD code object, read from the object itself: the AMDGPU
//! metadata note (ELF note `AMDGPU`, type `NT_AMDGPU_METADATA` = 32, a MessagePack map; LLVM
//! AMDGPUUsage, *Code Object V5 Metadata*) holds, per kernel, `.vgpr_count`, `.agpr_count`,
//! `.sgpr_count`, `.group_segment_fixed_size` (LDS bytes), `.private_segment_fixed_size`
//! (scratch bytes per lane) and the spill counts. The MFMA count is the number of `v_mfma`
//! instructions in the assembly the same compilation printed ([`mfma_count`]).

use crate::{CodegenError, Target};

/// What the code object says one kernel uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Vector registers per lane, architectural and accumulation together: on gfx90a and later
    /// the metadata's `.vgpr_count` is the unified count (the architectural registers, rounded
    /// up to the accumulation offset, then the AGPRs), at most 512.
    pub vgprs: u32,
    /// Accumulation vector registers per lane.
    pub agprs: u32,
    /// Scalar registers per wavefront.
    pub sgprs: u32,
    /// LDS bytes per work-group.
    pub lds_bytes: u32,
    /// Scratch (private segment) bytes per lane: spills and stack.
    pub scratch_bytes: u32,
    pub vgpr_spills: u32,
    pub sgpr_spills: u32,
    pub wavefront_size: u32,
}

/// A MessagePack value (the subset the metadata uses).
#[derive(Clone, Debug, PartialEq)]
enum Mp {
    Nil,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Bin,
    Array(Vec<Mp>),
    Map(Vec<(Mp, Mp)>),
}

impl Mp {
    fn get(&self, key: &str) -> Option<&Mp> {
        match self {
            Mp::Map(kv) => kv
                .iter()
                .find(|(k, _)| matches!(k, Mp::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    fn int(&self) -> Option<i128> {
        match self {
            Mp::Int(i) => Some(*i),
            _ => None,
        }
    }
}

/// A MessagePack decoder over a byte slice (MessagePack specification, *Formats*).
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn uint(&mut self, n: usize) -> Option<u64> {
        Some(
            self.take(n)?
                .iter()
                .fold(0u64, |a, &x| (a << 8) | u64::from(x)),
        )
    }

    fn sint(&mut self, n: usize) -> Option<i64> {
        let u = self.uint(n)?;
        let shift = 64 - 8 * n as u32;
        Some(((u << shift) as i64) >> shift)
    }

    fn str(&mut self, n: usize) -> Option<Mp> {
        Some(Mp::Str(String::from_utf8_lossy(self.take(n)?).into_owned()))
    }

    fn array(&mut self, n: usize, depth: u32) -> Option<Mp> {
        let mut v = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            v.push(self.value(depth + 1)?);
        }
        Some(Mp::Array(v))
    }

    fn map(&mut self, n: usize, depth: u32) -> Option<Mp> {
        let mut v = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let k = self.value(depth + 1)?;
            v.push((k, self.value(depth + 1)?));
        }
        Some(Mp::Map(v))
    }

    fn value(&mut self, depth: u32) -> Option<Mp> {
        if depth > 64 {
            return None;
        }
        let t = *self.take(1)?.first()?;
        Some(match t {
            0x00..=0x7f => Mp::Int(i128::from(t)),
            0x80..=0x8f => return self.map(usize::from(t & 0x0f), depth),
            0x90..=0x9f => return self.array(usize::from(t & 0x0f), depth),
            0xa0..=0xbf => return self.str(usize::from(t & 0x1f)),
            0xc0 => Mp::Nil,
            0xc2 => Mp::Bool(false),
            0xc3 => Mp::Bool(true),
            0xc4..=0xc6 => {
                let n = self.uint(1 << (t - 0xc4))? as usize;
                self.take(n)?;
                Mp::Bin
            }
            0xc7..=0xc9 => {
                let n = self.uint(1 << (t - 0xc7))? as usize;
                self.take(n + 1)?;
                Mp::Bin
            }
            0xca => Mp::Float(f64::from(f32::from_bits(self.uint(4)? as u32))),
            0xcb => Mp::Float(f64::from_bits(self.uint(8)?)),
            0xcc..=0xcf => Mp::Int(i128::from(self.uint(1 << (t - 0xcc))?)),
            0xd0..=0xd3 => Mp::Int(i128::from(self.sint(1 << (t - 0xd0))?)),
            0xd4..=0xd8 => {
                self.take(1 + (1 << (t - 0xd4)))?;
                Mp::Bin
            }
            0xd9..=0xdb => {
                let n = self.uint(1 << (t - 0xd9))? as usize;
                return self.str(n);
            }
            0xdc | 0xdd => {
                let n = self.uint(if t == 0xdc { 2 } else { 4 })? as usize;
                return self.array(n, depth);
            }
            0xde | 0xdf => {
                let n = self.uint(if t == 0xde { 2 } else { 4 })? as usize;
                return self.map(n, depth);
            }
            0xe0..=0xff => Mp::Int(i128::from(t as i8)),
            0xc1 => return None,
        })
    }
}

fn le(b: &[u8], at: usize, n: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(n)?)?;
    Some(s.iter().rev().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
}

/// The descriptor of the `AMDGPU` metadata note of an ELF64 little-endian object (ELF
/// specification: section headers at `e_shoff`, notes as name size, descriptor size, type,
/// then name and descriptor each padded to 4 bytes).
fn metadata_note(elf: &[u8]) -> Option<&[u8]> {
    if elf.get(..4)? != b"\x7fELF" || *elf.get(4)? != 2 || *elf.get(5)? != 1 {
        return None;
    }
    let shoff = le(elf, 0x28, 8)? as usize;
    let shentsize = le(elf, 0x3a, 2)? as usize;
    let shnum = le(elf, 0x3c, 2)? as usize;
    for i in 0..shnum {
        let sh = shoff.checked_add(i.checked_mul(shentsize)?)?;
        if le(elf, sh + 4, 4)? != 7 {
            continue; // not SHT_NOTE
        }
        let (off, size) = (
            le(elf, sh + 0x18, 8)? as usize,
            le(elf, sh + 0x20, 8)? as usize,
        );
        let notes = elf.get(off..off.checked_add(size)?)?;
        let mut at = 0;
        while at + 12 <= notes.len() {
            let namesz = le(notes, at, 4)? as usize;
            let descsz = le(notes, at + 4, 4)? as usize;
            let ty = le(notes, at + 8, 4)?;
            let name_at = at + 12;
            let desc_at = name_at + namesz.div_ceil(4) * 4;
            let name = notes.get(name_at..name_at + namesz)?;
            let desc = notes.get(desc_at..desc_at.checked_add(descsz)?)?;
            if ty == 32 && name.starts_with(b"AMDGPU") {
                return Some(desc);
            }
            at = desc_at + descsz.div_ceil(4) * 4;
        }
    }
    None
}

/// The report of kernel `kernel` in code object `elf`; `None` when the object has no
/// metadata for it.
pub fn report(elf: &[u8], kernel: &str) -> Option<Report> {
    let desc = metadata_note(elf)?;
    let meta = Reader { b: desc, at: 0 }.value(0)?;
    let Mp::Array(kernels) = meta.get("amdhsa.kernels")? else {
        return None;
    };
    let k = kernels
        .iter()
        .find(|k| matches!(k.get(".name"), Some(Mp::Str(n)) if n == kernel))?;
    let n = |key: &str| -> u32 {
        k.get(key)
            .and_then(Mp::int)
            .and_then(|i| u32::try_from(i).ok())
            .unwrap_or(0)
    };
    Some(Report {
        vgprs: n(".vgpr_count"),
        agprs: n(".agpr_count"),
        sgprs: n(".sgpr_count"),
        lds_bytes: n(".group_segment_fixed_size"),
        scratch_bytes: n(".private_segment_fixed_size"),
        vgpr_spills: n(".vgpr_spill_count"),
        sgpr_spills: n(".sgpr_spill_count"),
        wavefront_size: n(".wavefront_size"),
    })
}

/// The instructions of AMDGPU assembly text: the mnemonic of every line that is neither a
/// directive, a label nor a comment.
fn instructions(asm: &str) -> impl Iterator<Item = &str> {
    asm.lines().filter_map(|l| {
        let w = l.split_whitespace().next()?;
        let first = w.chars().next()?;
        (first.is_ascii_lowercase() && !w.ends_with(':')).then_some(w)
    })
}

/// `v_mfma…` instructions in AMDGPU assembly text.
pub fn mfma_count(asm: &str) -> usize {
    instructions(asm)
        .filter(|w| w.starts_with("v_mfma"))
        .count()
}

/// How many times each instruction (mnemonic) occurs in AMDGPU assembly text.
pub fn instruction_mix(asm: &str) -> std::collections::BTreeMap<String, usize> {
    let mut mix = std::collections::BTreeMap::new();
    for w in instructions(asm) {
        *mix.entry(w.to_string()).or_insert(0) += 1;
    }
    mix
}

/// Checks a linked code object against the target's limits: a kernel whose values do not fit
/// the [`super::VGPR_LIMIT`] vector registers (the back end spilled vector registers to
/// scratch) is over the limit by its spills; LDS at most [`super::lds_limit`].
pub(crate) fn check(kernel: &str, target: Target, elf: &[u8]) -> Result<Report, CodegenError> {
    let r = report(elf, kernel).ok_or_else(|| CodegenError::Tool {
        tool: "ld.lld".into(),
        message: format!("the code object has no AMDGPU metadata for kernel `{kernel}`"),
    })?;
    let regs = u64::from(r.vgprs) + u64::from(r.vgpr_spills);
    if r.vgpr_spills > 0 || regs > super::VGPR_LIMIT {
        return Err(crate::lower::rules::over_limit(
            kernel,
            target,
            &format!(
                "vector registers per lane ({} allocated, {} spilled to scratch)",
                r.vgprs, r.vgpr_spills
            ),
            regs,
            super::VGPR_LIMIT,
        ));
    }
    let lds = u64::from(r.lds_bytes);
    if lds > super::lds_limit(target) {
        return Err(crate::lower::rules::over_limit(
            kernel,
            target,
            "bytes of LDS",
            lds,
            super::lds_limit(target),
        ));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messagepack_values_decode() {
        // {"a": [1, -2, 300], "b": "xy", "c": true, "d": 70000, "e": -200}
        let bytes = [
            0x85, 0xa1, b'a', 0x93, 0x01, 0xfe, 0xcd, 0x01, 0x2c, 0xa1, b'b', 0xa2, b'x', b'y',
            0xa1, b'c', 0xc3, 0xa1, b'd', 0xce, 0x00, 0x01, 0x11, 0x70, 0xa1, b'e', 0xd1, 0xff,
            0x38,
        ];
        let v = Reader { b: &bytes, at: 0 }.value(0).unwrap();
        assert_eq!(
            v.get("a"),
            Some(&Mp::Array(vec![Mp::Int(1), Mp::Int(-2), Mp::Int(300)]))
        );
        assert_eq!(v.get("b"), Some(&Mp::Str("xy".into())));
        assert_eq!(v.get("c"), Some(&Mp::Bool(true)));
        assert_eq!(v.get("d").and_then(Mp::int), Some(70000));
        assert_eq!(v.get("e").and_then(Mp::int), Some(-200));
    }

    #[test]
    fn instructions_are_counted_without_directives_labels_or_comments() {
        let asm = "\t.text\ngemm:\n\tv_mfma_f32_16x16x16_bf16 v[0:3], v[4:5], v[6:7], v[0:3]\n.LBB0_1:\n\tds_read_b64 v[4:5], v8\n\tv_mfma_f32_16x16x16_bf16 v[0:3], v[4:5], v[6:7], v[0:3]\n; NumVgprs: 9\n\ts_endpgm\n";
        assert_eq!(mfma_count(asm), 2);
        let mix = instruction_mix(asm);
        assert_eq!(mix.len(), 3);
        assert_eq!(mix["ds_read_b64"], 1);
        assert_eq!(mix["s_endpgm"], 1);
    }

    #[test]
    fn truncated_input_is_none_not_a_panic() {
        let bytes = [0x85, 0xa1, b'a', 0x93, 0x01];
        assert_eq!(Reader { b: &bytes, at: 0 }.value(0), None);
        assert_eq!(metadata_note(b"\x7fELF\x02\x01"), None);
        assert_eq!(report(&[0u8; 8], "k"), None);
    }
}
