//! Harnesses `bundle_pack` (`Bundle::from_bytes` on mutated packs) and `bundle_dir`
//! (`Bundle::load_dir` on mutated directories).
//!
//! Seeds are bundles written by today's `Bundle` writer for a few registered kernels (their
//! real parameters, stand-in code) on an NVIDIA and an AMD target, plus packs of the older
//! line-based format. Mutations know the container (tar headers: names, sizes, entry types,
//! link names, checksums recomputed or not; entries duplicated, dropped, reordered) and the
//! metadata (JSON values swapped for interesting numbers and hostile strings, fields dropped
//! or added), plus byte-level mutation of everything.
//!
//! A directory input is itself a tar archive (the same mutations apply) that the harness
//! unpacks into an empty directory: regular files (a size beyond the data makes a sparse file),
//! symbolic links (to `../sentinel.ptx` beside the directory, `/dev/zero`, …), directories and
//! FIFOs. Names that would leave the directory are not created.
//!
//! Whatever loads must hold up: it packs and loads back to the same bundle, its names have no
//! control characters, its ranks, block sizes and file names are in range, none of its code
//! came from outside the directory (the sentinel's text), and writing it to a directory creates
//! nothing outside that directory.

use std::path::{Path, PathBuf};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tilekit::bundle::{
    code_file_name, Bundle, BundleKernel, BundleParam, ParamKind, METADATA_FILE,
};
use tilekit::ir::Type;

use super::mutate::{self, pick, INTERESTING_INTS};
use super::{Harness, Pool, Stage};

/// Strings that names and paths in a bundle should never get away with.
const HOSTILE: &[&str] = &[
    "",
    ".",
    "..",
    "../outside.ptx",
    "../sentinel.ptx",
    "/dev/zero",
    "/etc/passwd",
    "sub/x.ptx",
    "a\\b.ptx",
    "x\n.ptx",
    "x\0.ptx",
    "bundle.json",
    "bundle.tkb",
    "gemm\nkernel evil",
    "<bf16, 64>\n",
    "\u{202e}gemm",
    "sm_90a",
    "gfx942",
    "sm_1000",
    "bf16",
    "f64",
    "global",
    "scalar",
    "ptr",
    "a:ptr",
    "0123456789abcdef",
    "zz",
];

/// Text in the sentinel files beside a bundle directory: code that holds it was read from
/// outside the directory.
const SENTINEL: &str = "FUZZ-SENTINEL: outside the bundle directory";

/// Stand-in code: loaders check names, sizes and metadata, not what the code does.
fn fake_ptx(name: &str) -> String {
    format!(".version 8.3\n.target sm_90a\n.address_size 64\n.visible .entry {name}()\n{{\n  ret;\n}}\n")
}

/// Bundles for a few registered kernels, one NVIDIA and one AMD.
pub fn seed_bundles() -> Vec<Bundle> {
    let kernels = tilekit::registry::kernels();
    let mut out = Vec::new();
    for (target, amd) in [("sm_90a", false), ("gfx942", true)] {
        let mut ks = Vec::new();
        for info in kernels.iter().take(4) {
            let Some(v) = info.variants.first() else {
                continue;
            };
            let module = (v.module)();
            let Some(func) = module.kernel(info.name) else {
                continue;
            };
            let params = func
                .params
                .iter()
                .map(|p| {
                    let name = func.value_names[p.index()]
                        .clone()
                        .unwrap_or_else(|| "p".into());
                    match &func.value_types[p.index()] {
                        Type::Global {
                            dtype,
                            rank,
                            mutable,
                        } => BundleParam {
                            name,
                            dtype: *dtype,
                            kind: ParamKind::Global {
                                rank: *rank,
                                mutable: *mutable,
                            },
                        },
                        t => BundleParam {
                            name,
                            dtype: t.as_scalar().unwrap_or(tilekit::ir::ScalarType::I32),
                            kind: ParamKind::Scalar,
                        },
                    }
                })
                .collect();
            let ptx = fake_ptx(info.name);
            ks.push(BundleKernel {
                name: info.name.to_string(),
                variant: v.args.to_string(),
                code_file: code_file_name(info.name, v.args, if amd { "hsaco" } else { "ptx" }),
                code_object: amd.then(|| {
                    // ELF-looking, with the kernel descriptor's symbol name in it.
                    let mut elf = b"\x7fELF\x02\x01\x01\x40".to_vec();
                    elf.extend_from_slice(ptx.as_bytes());
                    elf.extend_from_slice(format!("\0{}.kd\0", info.name).as_bytes());
                    elf
                }),
                ptx: if amd { String::new() } else { ptx },
                params,
                block_threads: func.warps().unwrap_or(1) * if amd { 64 } else { 32 },
                shared_bytes: 4096,
                dynamic_shared: false,
                ir_hash: tilekit::abi::ir_hash(module, info.name),
                aligned16: Vec::new(),
                tensor_maps: Vec::new(),
            });
        }
        out.push(Bundle {
            target: target.to_string(),
            kernels: ks,
        });
    }
    out
}

/// Packs of the older line-based format (which a loader must reject, saying how to rebuild).
const LEGACY_PACKS: &[&[u8]] = &[
    b"tilekit-bundle-pack 2\nfile bundle.txt 18446744073709551615\nxx\n",
    b"tilekit-bundle-pack 2\nfile bundle.txt 28\ntilekit-bundle 2\ntarget sm_90a\n\n",
    b"tilekit-bundle-pack 1\nfile bundle.txt 0\n\n",
];

// ---- tar, by hand: the mutations need headers the `tar` crate refuses to write ----

const BLOCK: usize = 512;

/// One archive entry as the mutator sees it.
#[derive(Clone, Debug)]
struct Entry {
    name: Vec<u8>,
    kind: u8,
    link: Vec<u8>,
    data: Vec<u8>,
    /// The size the header claims, when it is not the data's length.
    claimed: Option<u64>,
}

fn put(h: &mut [u8], at: usize, len: usize, value: &[u8]) {
    let n = value.len().min(len);
    h[at..at + n].copy_from_slice(&value[..n]);
}

fn fix_checksum(h: &mut [u8]) {
    h[148..156].fill(b' ');
    let sum: u32 = h[..BLOCK].iter().map(|&b| u32::from(b)).sum();
    put(h, 148, 8, format!("{sum:06o}\0 ").as_bytes());
}

fn header(e: &Entry) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    put(&mut h, 0, 100, &e.name);
    put(&mut h, 100, 8, b"0000644\0");
    put(&mut h, 108, 8, b"0000000\0");
    put(&mut h, 116, 8, b"0000000\0");
    let size = e.claimed.unwrap_or(e.data.len() as u64);
    if size < 0o77777777777 {
        put(&mut h, 124, 12, format!("{size:011o}\0").as_bytes());
    } else {
        // GNU base-256 size.
        h[124] = 0x80;
        put(&mut h, 128, 8, &size.to_be_bytes());
    }
    put(&mut h, 136, 12, b"00000000000\0");
    h[156] = e.kind;
    put(&mut h, 157, 100, &e.link);
    put(&mut h, 257, 8, b"ustar  \0");
    fix_checksum(&mut h);
    h
}

fn pack(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(&header(e));
        out.extend_from_slice(&e.data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    }
    out.resize(out.len() + 2 * BLOCK, 0);
    out
}

fn octal(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        return Some(
            field[field.len() - 8..]
                .iter()
                .fold(0u64, |a, &b| (a << 8) | u64::from(b)),
        );
    }
    let s: String = field
        .iter()
        .take_while(|&&b| b != 0 && b != b' ')
        .map(|&b| b as char)
        .collect();
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

fn cstr(field: &[u8]) -> Vec<u8> {
    field.iter().take_while(|&&b| b != 0).copied().collect()
}

/// The entries of a well-formed archive (ours or the writer's), or `None`.
fn unpack(bytes: &[u8]) -> Option<Vec<Entry>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + BLOCK <= bytes.len() {
        let h = &bytes[at..at + BLOCK];
        if h.iter().all(|&b| b == 0) {
            return Some(out);
        }
        if &h[257..262] != b"ustar" {
            return None;
        }
        let size = usize::try_from(octal(&h[124..136])?).ok()?;
        let data = bytes
            .get(at + BLOCK..(at + BLOCK).checked_add(size)?)?
            .to_vec();
        out.push(Entry {
            name: cstr(&h[..100]),
            kind: h[156],
            link: cstr(&h[157..257]),
            data,
            claimed: None,
        });
        at += BLOCK + size.div_ceil(BLOCK) * BLOCK;
    }
    None
}

// ---- metadata ----

/// A mutant of JSON text: a value swapped, a field dropped or added, an array element
/// duplicated or dropped; or, at the text level, a number swapped for a huge one.
fn mutate_json(rng: &mut SmallRng, text: &[u8], other_names: &[String]) -> Vec<u8> {
    if rng.gen_bool(0.15) {
        // Numbers past what serde's u64 holds, at the text level.
        let s = String::from_utf8_lossy(text).into_owned();
        let digits: Vec<usize> = s
            .char_indices()
            .filter(|(i, c)| {
                c.is_ascii_digit() && (*i == 0 || !s.as_bytes()[i - 1].is_ascii_alphanumeric())
            })
            .map(|(i, _)| i)
            .collect();
        if let Some(&at) = digits.get(rng.gen_range(0..digits.len().max(1))) {
            let end = s[at..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(s.len(), |e| at + e);
            return format!("{}{}{}", &s[..at], pick(rng, INTERESTING_INTS), &s[end..])
                .into_bytes();
        }
        return text.to_vec();
    }
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(text) else {
        let mut t = text.to_vec();
        mutate::bytes(rng, &mut t, b"");
        return t;
    };
    let rounds = 1 + usize::from(rng.gen_bool(0.3));
    for _ in 0..rounds {
        let mut count = 0;
        count_nodes(&v, &mut count);
        let target = rng.gen_range(0..count);
        let mut i = 0;
        mutate_node(rng, &mut v, target, &mut i, other_names);
    }
    if rng.gen_bool(0.5) {
        serde_json::to_vec_pretty(&v).unwrap_or_default()
    } else {
        serde_json::to_vec(&v).unwrap_or_default()
    }
}

fn count_nodes(v: &serde_json::Value, n: &mut usize) {
    *n += 1;
    match v {
        serde_json::Value::Array(a) => a.iter().for_each(|x| count_nodes(x, n)),
        serde_json::Value::Object(o) => o.values().for_each(|x| count_nodes(x, n)),
        _ => {}
    }
}

fn hostile_value(rng: &mut SmallRng, other_names: &[String]) -> serde_json::Value {
    use serde_json::Value;
    match rng.gen_range(0..10) {
        0..=3 => Value::String(pick(rng, HOSTILE).to_string()),
        4 if !other_names.is_empty() => {
            Value::String(other_names[rng.gen_range(0..other_names.len())].clone())
        }
        5 => Value::String("x".repeat(mutate::log_len(rng, 100_000))),
        6 => Value::Null,
        7 => Value::Bool(rng.gen()),
        8 => Value::Array(Vec::new()),
        _ => {
            let s = pick(rng, INTERESTING_INTS);
            serde_json::from_str(s).unwrap_or(Value::Null)
        }
    }
}

/// Mutates the `target`-th node (pre-order) of `v`.
fn mutate_node(
    rng: &mut SmallRng,
    v: &mut serde_json::Value,
    target: usize,
    i: &mut usize,
    names: &[String],
) -> bool {
    use serde_json::Value;
    if *i == target {
        match v {
            Value::Number(_) => {
                *v = if rng.gen_bool(0.85) {
                    serde_json::from_str(pick(rng, INTERESTING_INTS)).unwrap_or(Value::Null)
                } else {
                    hostile_value(rng, names)
                }
            }
            Value::String(_) => *v = hostile_value(rng, names),
            Value::Bool(b) => {
                *v = if rng.gen_bool(0.7) {
                    Value::Bool(!*b)
                } else {
                    hostile_value(rng, names)
                }
            }
            Value::Null => *v = hostile_value(rng, names),
            Value::Array(a) => match rng.gen_range(0..4) {
                0 if !a.is_empty() => {
                    let k = rng.gen_range(0..a.len());
                    let x = a[k].clone();
                    a.insert(k, x);
                }
                1 if !a.is_empty() => {
                    let k = rng.gen_range(0..a.len());
                    a.remove(k);
                }
                2 => a.clear(),
                _ => a.push(hostile_value(rng, names)),
            },
            Value::Object(o) => match rng.gen_range(0..3) {
                0 if !o.is_empty() => {
                    let keys: Vec<String> = o.keys().cloned().collect();
                    o.remove(&keys[rng.gen_range(0..keys.len())]);
                }
                1 => {
                    o.insert(
                        pick(rng, &["unknown", "rank", "name", "schema", ""]).to_string(),
                        hostile_value(rng, names),
                    );
                }
                _ => *v = hostile_value(rng, names),
            },
        }
        return true;
    }
    *i += 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|x| mutate_node(rng, x, target, i, names)),
        Value::Object(o) => o
            .values_mut()
            .any(|x| mutate_node(rng, x, target, i, names)),
        _ => false,
    }
}

/// Entry kinds: regular, hard link, symbolic link, directory, FIFO, GNU long name, pax.
const KINDS: &[u8] = b"0125 6Lxg7";
const LINK_TARGETS: &[&str] = &[
    "../sentinel.ptx",
    "../outside.ptx",
    "/dev/zero",
    "/dev/null",
    "/proc/self/status",
    "bundle.json",
    ".",
    "..",
    "missing.ptx",
];

/// A structure-aware mutant of an archive: its entries changed and packed again, or its
/// headers edited in place; byte-level sometimes.
fn mutate_archive(rng: &mut SmallRng, bytes: &[u8], other: &[u8], dir: bool) -> Vec<u8> {
    let Some(mut entries) = unpack(bytes) else {
        let mut b = bytes.to_vec();
        mutate::bytes(rng, &mut b, other);
        return b;
    };
    if entries.is_empty() {
        return pack(&[]);
    }
    let names: Vec<String> = entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .collect();
    let rounds = 1 + usize::from(rng.gen_bool(0.3));
    for _ in 0..rounds {
        let k = rng.gen_range(0..entries.len());
        match rng.gen_range(0..16) {
            // The metadata most: it is where the checks are.
            0..=6 => {
                let m = entries
                    .iter()
                    .position(|e| e.name == METADATA_FILE.as_bytes())
                    .unwrap_or(k);
                entries[m].data = mutate_json(rng, &entries[m].data, &names);
            }
            7 => {
                let other_data = entries[rng.gen_range(0..entries.len())].data.clone();
                mutate::bytes(rng, &mut entries[k].data, &other_data);
            }
            8 => entries[k].name = pick(rng, HOSTILE).as_bytes().to_vec(),
            9 => entries[k].name = names[rng.gen_range(0..names.len())].as_bytes().to_vec(),
            10 => {
                entries[k].kind = KINDS[rng.gen_range(0..KINDS.len())];
                entries[k].link = pick(rng, LINK_TARGETS).as_bytes().to_vec();
                if entries[k].kind != b'0' && rng.gen_bool(0.7) {
                    entries[k].data.clear();
                }
            }
            11 => {
                let e = entries[k].clone();
                entries.insert(rng.gen_range(0..=entries.len()), e);
            }
            12 => {
                entries.remove(k);
                if entries.is_empty() {
                    break;
                }
            }
            13 => {
                let j = rng.gen_range(0..entries.len());
                entries.swap(k, j);
            }
            14 => {
                // A size beyond the data: a truncated archive, or (directories) a sparse file.
                entries[k].claimed = Some(
                    pick(rng, INTERESTING_INTS)
                        .trim_start_matches('-')
                        .parse()
                        .unwrap_or(u64::MAX),
                );
            }
            _ => {
                let name = format!("extra{}.ptx", rng.gen_range(0..3));
                entries.push(Entry {
                    name: name.into_bytes(),
                    kind: b'0',
                    link: Vec::new(),
                    data: fake_ptx("extra").into_bytes(),
                    claimed: None,
                });
            }
        }
    }
    let mut out = pack(&entries);
    if !dir && rng.gen_bool(0.15) {
        // A header field edited in place (checksum fixed or not).
        let headers: Vec<usize> = (0..out.len() / BLOCK)
            .map(|b| b * BLOCK)
            .filter(|&at| out.get(at + 257..at + 262) == Some(b"ustar"))
            .collect();
        if let Some(&at) = headers.get(rng.gen_range(0..headers.len().max(1))) {
            let fields = [
                (0, 100),
                (100, 8),
                (124, 12),
                (156, 1),
                (157, 100),
                (257, 8),
                (345, 155),
            ];
            let (off, len) = fields[rng.gen_range(0..fields.len())];
            let value = if rng.gen_bool(0.5) {
                pick(rng, INTERESTING_INTS)
            } else {
                pick(rng, HOSTILE)
            };
            out[at + off..at + off + len].fill(0);
            put(&mut out[at..at + BLOCK], off, len, value.as_bytes());
            if rng.gen_bool(0.8) {
                fix_checksum(&mut out[at..at + BLOCK]);
            }
        }
    }
    if !dir && rng.gen_bool(0.1) {
        mutate::bytes(rng, &mut out, other);
    }
    out
}

/// Checks every loader must keep for a bundle it accepted; `Err` says which broke.
fn check_accepted(b: &Bundle, scratch: &Path) -> Result<(), String> {
    let control = |s: &str| s.chars().any(char::is_control);
    let squash = |s: &str| s.split_whitespace().collect::<String>();
    let mut pairs = std::collections::HashSet::new();
    for k in &b.kernels {
        if control(&k.name) || control(&k.variant) || k.params.iter().any(|p| control(&p.name)) {
            return Err(format!(
                "an accepted bundle has a name with a control character: {:?} {:?}",
                k.name, k.variant
            ));
        }
        if k.code_file.is_empty()
            || k.code_file.contains(['/', '\\'])
            || k.code_file == "."
            || k.code_file == ".."
        {
            return Err(format!(
                "an accepted bundle names a code file that is not a plain file name: {:?}",
                k.code_file
            ));
        }
        if let Some(p) = k
            .params
            .iter()
            .find(|p| matches!(p.kind, ParamKind::Global { rank, .. } if !(1..=4).contains(&rank)))
        {
            return Err(format!(
                "an accepted bundle has a parameter of rank outside 1..=4: {p:?}"
            ));
        }
        if !(1..=1024).contains(&k.block_threads) {
            return Err(format!(
                "an accepted bundle has a block of {} threads",
                k.block_threads
            ));
        }
        if !pairs.insert((k.name.clone(), squash(&k.variant))) {
            return Err(format!(
                "an accepted bundle holds {}{} twice",
                k.name, k.variant
            ));
        }
        if String::from_utf8_lossy(k.code()).contains(SENTINEL) {
            return Err(format!(
                "an accepted bundle's code file {:?} was read from outside its directory",
                k.code_file
            ));
        }
    }
    let packed = b
        .to_bytes()
        .map_err(|e| format!("an accepted bundle does not pack again: {e}"))?;
    let back = Bundle::from_bytes(&packed)
        .map_err(|e| format!("an accepted bundle, packed, does not load: {e}"))?;
    if &back != b {
        return Err("an accepted bundle, packed and loaded, differs from itself".into());
    }
    // Writing it creates files only inside the directory it is written to.
    let room = scratch.join("write");
    let _ = std::fs::remove_dir_all(&room);
    std::fs::create_dir_all(&room).map_err(|e| format!("scratch: {e}"))?;
    let _ = b.write_dir(room.join("out"));
    let escaped: Vec<String> = std::fs::read_dir(&room)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "out")
                .collect()
        })
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&room);
    if !escaped.is_empty() {
        return Err(format!(
            "writing an accepted bundle created {escaped:?} outside its directory"
        ));
    }
    Ok(())
}

fn metadata_names(bundles: &[Bundle]) -> Vec<String> {
    bundles
        .iter()
        .flat_map(|b| {
            b.kernels
                .iter()
                .flat_map(|k| [k.name.clone(), k.variant.clone(), k.code_file.clone()])
        })
        .collect()
}

/// Harness `bundle_pack`: see the module documentation.
#[derive(Debug)]
pub struct PackHarness {
    seeds: Vec<Vec<u8>>,
    pool: Pool,
    rng: SmallRng,
    scratch: PathBuf,
}

impl PackHarness {
    pub fn new(scratch: &Path) -> PackHarness {
        let bundles = seed_bundles();
        let mut seeds: Vec<Vec<u8>> = bundles.iter().filter_map(|b| b.to_bytes().ok()).collect();
        let _ = metadata_names(&bundles);
        seeds.extend(LEGACY_PACKS.iter().map(|p| p.to_vec()));
        PackHarness {
            seeds,
            pool: Pool::new(256, 1 << 20),
            rng: SmallRng::seed_from_u64(3),
            scratch: scratch.to_path_buf(),
        }
    }
}

impl Harness for PackHarness {
    fn generate(&mut self, rng: &mut SmallRng) -> Vec<u8> {
        let other = self.seeds[rng.gen_range(0..self.seeds.len())].clone();
        let base = match self.pool.pick(rng) {
            Some(p) if rng.gen_bool(0.3) => p.to_vec(),
            _ => self.seeds[rng.gen_range(0..self.seeds.len())].clone(),
        };
        if rng.gen_bool(0.05) {
            return base;
        }
        mutate_archive(rng, &base, &other, false)
    }

    fn execute(&mut self, input: &[u8]) -> Result<Stage, String> {
        // Past the container: the archive is well-formed and starts with the metadata.
        let intact = unpack(input).is_some_and(|es| {
            es.first()
                .is_some_and(|e| e.name == METADATA_FILE.as_bytes() && e.kind == b'0')
        });
        match Bundle::from_bytes(input) {
            Ok(b) => {
                check_accepted(&b, &self.scratch)?;
                Ok(Stage::Ran)
            }
            Err(_) if intact => Ok(Stage::Verified),
            Err(_) => Ok(Stage::Tried),
        }
    }

    fn keep(&mut self, input: &[u8], stage: Stage) {
        if stage >= Stage::Verified && self.rng.gen_bool(0.2) {
            self.pool.add(&mut self.rng, input);
        }
    }
}

/// Harness `bundle_dir`: see the module documentation.
#[derive(Debug)]
pub struct DirHarness {
    seeds: Vec<Vec<u8>>,
    pool: Pool,
    rng: SmallRng,
    scratch: PathBuf,
}

impl DirHarness {
    pub fn new(scratch: &Path) -> DirHarness {
        let _ = std::fs::create_dir_all(scratch);
        for f in ["sentinel.ptx", "outside.ptx"] {
            let _ = std::fs::write(scratch.join(f), SENTINEL);
        }
        // Seeds: each bundle as its writer lays it out in a directory, read back as entries.
        let mut seeds = Vec::new();
        for (i, b) in seed_bundles().iter().enumerate() {
            let d = scratch.join(format!("seed{i}"));
            if b.write_dir(&d).is_ok() {
                let mut files: Vec<_> = std::fs::read_dir(&d)
                    .map(|r| r.flatten().map(|e| e.path()).collect())
                    .unwrap_or_default();
                files.sort();
                let entries: Vec<Entry> = files
                    .iter()
                    .filter_map(|p| {
                        Some(Entry {
                            name: p.file_name()?.to_string_lossy().as_bytes().to_vec(),
                            kind: b'0',
                            link: Vec::new(),
                            data: std::fs::read(p).ok()?,
                            claimed: None,
                        })
                    })
                    .collect();
                seeds.push(pack(&entries));
            }
            let _ = std::fs::remove_dir_all(&d);
        }
        DirHarness {
            seeds,
            pool: Pool::new(256, 1 << 20),
            rng: SmallRng::seed_from_u64(4),
            scratch: scratch.to_path_buf(),
        }
    }

    /// Lays `entries` out in a fresh `scratch/d`; true when the metadata is a regular file.
    fn materialize(&self, entries: &[Entry]) -> (PathBuf, bool) {
        let dir = self.scratch.join("d");
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::create_dir_all(&dir);
        let mut metadata_regular = false;
        for e in entries {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            // Never outside `dir`: one level of subdirectory at most, no `..`, no root.
            let parts: Vec<&str> = name.split('/').collect();
            if name.is_empty()
                || name.starts_with('/')
                || parts.len() > 2
                || parts
                    .iter()
                    .any(|p| p.is_empty() || *p == ".." || *p == ".")
                || name.contains('\0')
            {
                continue;
            }
            let path = dir.join(&name);
            // An entry named like an earlier one replaces it: writing into an earlier FIFO
            // would block this harness itself.
            let _ = std::fs::remove_file(&path);
            if parts.len() == 2 {
                let _ = std::fs::create_dir_all(dir.join(parts[0]));
            }
            match e.kind {
                b'2' => {
                    let _ = std::os::unix::fs::symlink(
                        String::from_utf8_lossy(&e.link).as_ref(),
                        &path,
                    );
                }
                b'5' => {
                    let _ = std::fs::create_dir_all(&path);
                }
                b'6' => make_fifo(&path),
                _ => {
                    if std::fs::write(&path, &e.data).is_ok() {
                        if name == METADATA_FILE {
                            metadata_regular = true;
                        }
                        if let Some(size) = e.claimed {
                            // Sparse: no disk used, but a reader that trusts the size would try
                            // to hold it all.
                            if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) {
                                let _ = f.set_len(size.min(1 << 42));
                            }
                        }
                    }
                }
            }
        }
        (dir, metadata_regular)
    }
}

fn make_fifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: `c` is a NUL-terminated path that lives across the call; mkfifo only reads it.
    unsafe {
        libc::mkfifo(c.as_ptr(), 0o644);
    }
}

impl Harness for DirHarness {
    fn generate(&mut self, rng: &mut SmallRng) -> Vec<u8> {
        let other = self.seeds[rng.gen_range(0..self.seeds.len())].clone();
        let base = match self.pool.pick(rng) {
            Some(p) if rng.gen_bool(0.3) => p.to_vec(),
            _ => self.seeds[rng.gen_range(0..self.seeds.len())].clone(),
        };
        if rng.gen_bool(0.05) {
            return base;
        }
        mutate_archive(rng, &base, &other, true)
    }

    fn execute(&mut self, input: &[u8]) -> Result<Stage, String> {
        let Some(entries) = unpack(input) else {
            return Ok(Stage::Tried);
        };
        let (dir, metadata_regular) = self.materialize(&entries);
        let result = Bundle::load_dir(&dir);
        let stage = match result {
            Ok(b) => {
                check_accepted(&b, &self.scratch)?;
                Stage::Ran
            }
            Err(_) if metadata_regular => Stage::Verified,
            Err(_) => Stage::Tried,
        };
        Ok(stage)
    }

    fn keep(&mut self, input: &[u8], stage: Stage) {
        if stage >= Stage::Verified && self.rng.gen_bool(0.2) {
            self.pool.add(&mut self.rng, input);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hand_written_archive_reads_back_and_the_loader_accepts_its_seeds() {
        let e = Entry {
            name: b"a.ptx".to_vec(),
            kind: b'0',
            link: Vec::new(),
            data: b"hello".to_vec(),
            claimed: None,
        };
        let back = unpack(&pack(&[e.clone(), e])).expect("our own archive");
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].data, b"hello");
        // The seeds are only useful if they load: mutants of them then reach every check.
        let bundles = seed_bundles();
        assert!(bundles.iter().all(|b| !b.kernels.is_empty()));
        for b in &bundles {
            let packed = b.to_bytes().expect("a seed bundle packs");
            assert!(
                unpack(&packed).is_some(),
                "our reader reads the writer's archive"
            );
            assert_eq!(
                &Bundle::from_bytes(&packed).expect("a seed bundle loads"),
                b
            );
        }
    }
}
