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

/// `NT_AMDGPU_METADATA`: the note type of the code object metadata (LLVM AMDGPUUsage, *Code
/// Object V3 and Above Note Records*), in a note named `AMDGPU`.
const NT_AMDGPU_METADATA: object::elf::NoteType = object::elf::NoteType(32);

/// How deep the metadata's MessagePack may nest: the metadata is a map of arrays of maps
/// (kernels, their arguments), a few levels; the bound keeps hostile input from recursing deep.
const MAX_DEPTH: usize = 16;

/// Why a code object's resource report could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// The bytes are not a well-formed ELF64 object (header, section table or note section).
    #[error("not a well-formed ELF64 code object: {0}")]
    Elf(String),
    /// No note section holds an `AMDGPU` note of type `NT_AMDGPU_METADATA` (32).
    #[error("the code object has no AMDGPU metadata note (ELF note `AMDGPU`, type 32)")]
    NoNote,
    /// The note's descriptor is not one complete MessagePack value.
    #[error("the AMDGPU metadata note is not valid MessagePack: {0}")]
    MessagePack(String),
    /// The metadata has no `amdhsa.kernels` array of maps.
    #[error("the AMDGPU metadata has no `amdhsa.kernels` array of kernel maps")]
    NoKernels,
    /// A resource field of the kernel is not an unsigned 32-bit integer.
    #[error("`{field}` of kernel `{kernel}` in the AMDGPU metadata is {value}, expected an unsigned 32-bit integer")]
    Field {
        kernel: String,
        field: &'static str,
        value: String,
    },
}

/// The descriptor of the `AMDGPU` metadata note: the first note named `AMDGPU` with type
/// `NT_AMDGPU_METADATA` in any `SHT_NOTE` section of an ELF64 object.
fn metadata_note(elf: &[u8]) -> Result<&[u8], MetadataError> {
    use object::read::elf::{FileHeader as _, SectionHeader as _};
    let bad = |e: object::read::Error| MetadataError::Elf(e.to_string());
    let header = object::elf::FileHeader64::<object::Endianness>::parse(elf).map_err(bad)?;
    let endian = header.endian().map_err(bad)?;
    let sections = header.sections(endian, elf).map_err(bad)?;
    for section in sections.iter() {
        let Some(mut notes) = section.notes(endian, elf).map_err(bad)? else {
            continue;
        };
        while let Some(note) = notes.next().map_err(bad)? {
            if note.name() == b"AMDGPU" && note.n_type(endian) == NT_AMDGPU_METADATA {
                return Ok(note.desc());
            }
        }
    }
    Err(MetadataError::NoNote)
}

/// The value under string key `key` of a MessagePack map.
fn get<'v>(map: &'v rmpv::Value, key: &str) -> Option<&'v rmpv::Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// The metadata map of every kernel in the note's descriptor (`amdhsa.kernels`).
fn kernel_maps(desc: &[u8]) -> Result<Vec<rmpv::Value>, MetadataError> {
    let mut rest = desc;
    let meta = rmpv::decode::read_value_with_max_depth(&mut rest, MAX_DEPTH)
        .map_err(|e| MetadataError::MessagePack(e.to_string()))?;
    match get(&meta, "amdhsa.kernels") {
        Some(rmpv::Value::Array(kernels)) if kernels.iter().all(rmpv::Value::is_map) => {
            Ok(kernels.clone())
        }
        _ => Err(MetadataError::NoKernels),
    }
}

/// The report of kernel `kernel` in code object `elf`: `Ok(None)` when the metadata is well
/// formed but names no such kernel; an error when the object or its metadata is malformed.
pub fn try_report(elf: &[u8], kernel: &str) -> Result<Option<Report>, MetadataError> {
    let kernels = kernel_maps(metadata_note(elf)?)?;
    let Some(k) = kernels
        .iter()
        .find(|k| get(k, ".name").and_then(rmpv::Value::as_str) == Some(kernel))
    else {
        return Ok(None);
    };
    // A field the code object leaves out (`.agpr_count` before gfx90a) is zero.
    let n = |field: &'static str| -> Result<u32, MetadataError> {
        match get(k, field) {
            None => Ok(0),
            Some(v) => v
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| MetadataError::Field {
                    kernel: kernel.to_string(),
                    field,
                    value: v.to_string(),
                }),
        }
    };
    Ok(Some(Report {
        vgprs: n(".vgpr_count")?,
        agprs: n(".agpr_count")?,
        sgprs: n(".sgpr_count")?,
        lds_bytes: n(".group_segment_fixed_size")?,
        scratch_bytes: n(".private_segment_fixed_size")?,
        vgpr_spills: n(".vgpr_spill_count")?,
        sgpr_spills: n(".sgpr_spill_count")?,
        wavefront_size: n(".wavefront_size")?,
    }))
}

/// The report of kernel `kernel` in code object `elf`; `None` when the object has no
/// metadata for it or cannot be read ([`try_report`] says why).
pub fn report(elf: &[u8], kernel: &str) -> Option<Report> {
    try_report(elf, kernel).ok().flatten()
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
/// scratch) is over the limit by its spills; LDS at most [`super::lds_limit`]. With
/// [`SpillPolicy::Refuse`](crate::ptxas::SpillPolicy) (what [`crate::compile`] uses unless the
/// kernel allows spills) spilled VGPRs are a register overflow with the code object's numbers;
/// with `Allow` the code object only has to fit the unified register file and LDS.
pub fn check_with(
    kernel: &str,
    target: Target,
    elf: &[u8],
    policy: crate::ptxas::SpillPolicy,
) -> Result<Report, CodegenError> {
    let tool_err = |message: String| CodegenError::Tool {
        tool: "ld.lld".into(),
        message,
    };
    let r = try_report(elf, kernel)
        .map_err(|e| tool_err(format!("reading the resources of kernel `{kernel}`: {e}")))?
        .ok_or_else(|| {
            tool_err(format!(
                "the code object has no AMDGPU metadata for kernel `{kernel}`"
            ))
        })?;
    // Refused spills keep the register-overflow form (`Resources`, the VGPRs plus the spilled
    // ones against the unified limit) that callers match on; allowed ones only have to fit the
    // unified register file.
    let regs = u64::from(r.vgprs) + u64::from(r.vgpr_spills);
    let refuse = policy == crate::ptxas::SpillPolicy::Refuse;
    if (refuse && r.vgpr_spills > 0) || u64::from(r.vgprs) > super::VGPR_LIMIT {
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

    use rand::{Rng, SeedableRng};
    use rmpv::Value;

    /// An ELF64 little-endian shared object with a null section, one `SHT_NOTE` section
    /// holding a single note and the section name table, laid out by hand from the ELF
    /// specification (header, note, names, then the section table) so the test does not build
    /// objects with the library the code under test reads them with.
    fn elf_with_note(name: &[u8], ty: object::elf::NoteType, desc: &[u8]) -> Vec<u8> {
        let pad4 = |v: &mut Vec<u8>| v.resize(v.len().div_ceil(4) * 4, 0);
        let mut note = Vec::new();
        note.extend((name.len() as u32 + 1).to_le_bytes());
        note.extend((desc.len() as u32).to_le_bytes());
        note.extend(ty.0.to_le_bytes());
        note.extend(name);
        note.push(0);
        pad4(&mut note);
        note.extend(desc);
        pad4(&mut note);
        let names = b"\0.note\0.shstrtab\0";
        let note_at = 64u64;
        let names_at = note_at + note.len() as u64;
        let shoff = (names_at + names.len() as u64).div_ceil(8) * 8;
        let mut elf = Vec::new();
        elf.extend(b"\x7fELF\x02\x01\x01\x40\x04");
        elf.resize(16, 0);
        elf.extend(3u16.to_le_bytes()); // ET_DYN
        elf.extend(224u16.to_le_bytes()); // EM_AMDGPU
        elf.extend(1u32.to_le_bytes());
        elf.extend(0u64.to_le_bytes()); // entry
        elf.extend(0u64.to_le_bytes()); // program headers: none
        elf.extend(shoff.to_le_bytes());
        elf.extend(0u32.to_le_bytes()); // flags
        for half in [64u16, 56, 0, 64, 3, 2] {
            // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
            elf.extend(half.to_le_bytes());
        }
        assert_eq!(elf.len(), 64);
        elf.extend(&note);
        elf.extend(names);
        elf.resize(shoff as usize, 0);
        elf.extend([0u8; 64]); // the null section
                               // (name, type, offset, size, alignment): SHT_NOTE, SHT_STRTAB
        for (name, ty, at, size, align) in [
            (1u32, 7u32, note_at, note.len() as u64, 4u64),
            (7, 3, names_at, names.len() as u64, 1),
        ] {
            elf.extend(name.to_le_bytes());
            elf.extend(ty.to_le_bytes());
            elf.extend(0u64.to_le_bytes()); // flags
            elf.extend(0u64.to_le_bytes()); // addr
            elf.extend(at.to_le_bytes());
            elf.extend(size.to_le_bytes());
            elf.extend(0u32.to_le_bytes()); // link
            elf.extend(0u32.to_le_bytes()); // info
            elf.extend(align.to_le_bytes());
            elf.extend(0u64.to_le_bytes()); // entsize
        }
        elf
    }

    fn msgpack(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }

    /// Metadata in the shape LLVM writes: `amdhsa.version`, then `amdhsa.kernels`, an array
    /// of maps with the resource fields (and others the report ignores).
    fn metadata(kernels: Vec<Vec<(&str, Value)>>) -> Value {
        let kernels = kernels
            .into_iter()
            .map(|fields| {
                Value::Map(
                    fields
                        .into_iter()
                        .map(|(k, v)| (Value::from(k), v))
                        .collect(),
                )
            })
            .collect();
        Value::Map(vec![
            (
                Value::from("amdhsa.version"),
                Value::Array(vec![Value::from(1), Value::from(2)]),
            ),
            (Value::from("amdhsa.kernels"), Value::Array(kernels)),
        ])
    }

    fn kernel(name: &str, base: u32) -> Vec<(&'static str, Value)> {
        vec![
            (".name", Value::from(name)),
            (".symbol", Value::from(format!("{name}.kd"))),
            (".vgpr_count", Value::from(base)),
            (".agpr_count", Value::from(base + 1)),
            (".sgpr_count", Value::from(base + 2)),
            (".group_segment_fixed_size", Value::from(base + 3)),
            (".private_segment_fixed_size", Value::from(base + 4)),
            (".vgpr_spill_count", Value::from(base + 5)),
            (".sgpr_spill_count", Value::from(base + 6)),
            (".wavefront_size", Value::from(64)),
            (
                ".args",
                Value::Array(vec![Value::Map(vec![(
                    Value::from(".size"),
                    Value::from(8),
                )])]),
            ),
        ]
    }

    #[test]
    fn the_report_reads_each_kernels_fields_from_the_metadata_note() {
        let meta = metadata(vec![kernel("first", 10), kernel("gemm", 70000)]);
        let elf = elf_with_note(b"AMDGPU", NT_AMDGPU_METADATA, &msgpack(&meta));
        let r = try_report(&elf, "gemm").unwrap().unwrap();
        assert_eq!(
            r,
            Report {
                vgprs: 70000,
                agprs: 70001,
                sgprs: 70002,
                lds_bytes: 70003,
                scratch_bytes: 70004,
                vgpr_spills: 70005,
                sgpr_spills: 70006,
                wavefront_size: 64,
            }
        );
        assert_eq!(report(&elf, "first").unwrap().vgprs, 10);
        assert_eq!(try_report(&elf, "other"), Ok(None));
        // Fields the object leaves out are zero.
        let meta = metadata(vec![vec![(".name", Value::from("k"))]]);
        let elf = elf_with_note(b"AMDGPU", NT_AMDGPU_METADATA, &msgpack(&meta));
        assert_eq!(try_report(&elf, "k"), Ok(Some(Report::default())));
    }

    /// A code object whose kernel spilled 95 VGPRs: refused with the numbers by default,
    /// accepted when spills are allowed; one over the unified register file is refused either
    /// way.
    #[test]
    fn spilled_vgprs_are_refused_unless_allowed() {
        use crate::ptxas::SpillPolicy::{Allow, Refuse};
        let fields = |vgprs: u32, spills: u32| {
            vec![
                (".name", Value::from("k")),
                (".vgpr_count", Value::from(vgprs)),
                (".private_segment_fixed_size", Value::from(4 * spills)),
                (".vgpr_spill_count", Value::from(spills)),
            ]
        };
        let elf = |vgprs, spills| {
            let meta = msgpack(&metadata(vec![fields(vgprs, spills)]));
            elf_with_note(b"AMDGPU", NT_AMDGPU_METADATA, &meta)
        };
        let spilling = elf(256, 95);
        let e = check_with("k", Target::Gfx942, &spilling, Refuse).unwrap_err();
        match &e {
            CodegenError::Resources {
                needed, resource, ..
            } => {
                assert_eq!(*needed, 351, "{e}");
                assert!(
                    resource.contains("256 allocated, 95 spilled to scratch"),
                    "{e}"
                );
            }
            other => panic!("expected a register overflow, got {other:?}"),
        }
        let r = check_with("k", Target::Gfx942, &spilling, Allow).unwrap();
        assert_eq!((r.vgpr_spills, r.scratch_bytes), (95, 380));
        assert!(check_with("k", Target::Gfx942, &elf(200, 0), Refuse).is_ok());
        assert!(check_with("k", Target::Gfx942, &elf(520, 0), Allow).is_err());
    }

    #[test]
    fn notes_of_another_name_or_type_are_not_the_metadata() {
        let desc = msgpack(&metadata(vec![kernel("k", 1)]));
        for (name, ty) in [
            (&b"AMD"[..], NT_AMDGPU_METADATA),
            (b"AMDGPU", object::elf::NoteType(1)),
        ] {
            let elf = elf_with_note(name, ty, &desc);
            assert_eq!(try_report(&elf, "k"), Err(MetadataError::NoNote));
        }
    }

    #[test]
    fn malformed_metadata_is_an_error_naming_what_is_wrong() {
        let good = msgpack(&metadata(vec![kernel("k", 1)]));
        let elf = elf_with_note(b"AMDGPU", NT_AMDGPU_METADATA, &good[..good.len() - 3]);
        assert!(
            matches!(try_report(&elf, "k"), Err(MetadataError::MessagePack(_))),
            "{:?}",
            try_report(&elf, "k")
        );
        let no_kernels = msgpack(&Value::Map(vec![(Value::from("a"), Value::from(1))]));
        let elf = elf_with_note(b"AMDGPU", NT_AMDGPU_METADATA, &no_kernels);
        assert_eq!(try_report(&elf, "k"), Err(MetadataError::NoKernels));
        let negative = metadata(vec![vec![
            (".name", Value::from("k")),
            (".sgpr_count", Value::from(-3)),
        ]]);
        let elf = elf_with_note(b"AMDGPU", NT_AMDGPU_METADATA, &msgpack(&negative));
        let e = try_report(&elf, "k").unwrap_err();
        assert!(e.to_string().contains("`.sgpr_count` of kernel `k`"), "{e}");
        let huge = metadata(vec![vec![
            (".name", Value::from("k")),
            (".vgpr_count", Value::from(1u64 << 32)),
        ]]);
        let elf = elf_with_note(b"AMDGPU", NT_AMDGPU_METADATA, &msgpack(&huge));
        assert!(matches!(
            try_report(&elf, "k"),
            Err(MetadataError::Field { .. })
        ));
        // Nesting deeper than the metadata ever does is refused before it recurses far.
        let mut deep = Value::from(1);
        for _ in 0..10_000 {
            deep = Value::Array(vec![deep]);
        }
        let elf = elf_with_note(b"AMDGPU", NT_AMDGPU_METADATA, &msgpack(&deep));
        assert!(matches!(
            try_report(&elf, "k"),
            Err(MetadataError::MessagePack(_))
        ));
        // A map that claims 2^32 - 1 entries but holds none is an error, not an allocation.
        let elf = elf_with_note(
            b"AMDGPU",
            NT_AMDGPU_METADATA,
            &[0xdf, 0xff, 0xff, 0xff, 0xff],
        );
        assert!(matches!(
            try_report(&elf, "k"),
            Err(MetadataError::MessagePack(_))
        ));
    }

    #[test]
    fn truncated_or_garbage_objects_are_errors_not_panics() {
        let desc = msgpack(&metadata(vec![kernel("k", 1)]));
        let elf = elf_with_note(b"AMDGPU", NT_AMDGPU_METADATA, &desc);
        assert!(try_report(&elf, "k").unwrap().is_some());
        // The section table is last: every proper prefix lacks it.
        for len in 0..elf.len() {
            assert!(
                try_report(&elf[..len], "k").is_err(),
                "prefix of {len} bytes"
            );
        }
        assert!(matches!(
            try_report(b"\x7fELF\x02\x01", "k"),
            Err(MetadataError::Elf(_))
        ));
        assert!(matches!(
            try_report(&[0u8; 8], "k"),
            Err(MetadataError::Elf(_))
        ));
        assert_eq!(report(&[0u8; 8], "k"), None);
        // Random corruptions of a valid object and random bytes behind a valid ELF magic:
        // whatever they decode to, reading returns.
        let seed: u64 = rand::random();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        for _ in 0..2000 {
            let mut bad = elf.clone();
            for _ in 0..rng.gen_range(1..8) {
                let at = rng.gen_range(0..bad.len());
                bad[at] = rng.gen();
            }
            let _ = try_report(&bad, "k");
            let mut noise: Vec<u8> = (0..rng.gen_range(0..512)).map(|_| rng.gen()).collect();
            noise.splice(0..noise.len().min(6), *b"\x7fELF\x02\x01");
            let _ = try_report(&noise, "k");
        }
        eprintln!("seed {seed}");
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
}
