//! Bundles: the formats round-trip; every kind of bad input is an error that names the problem,
//! quickly, without a panic and without reading or writing outside the bundle directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::ir::ScalarType;

/// A fresh, empty directory under the system's temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tilekit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A bundle of one kernel whose "PTX" is just what the reader checks.
fn tiny(target: &str) -> Bundle {
    Bundle {
        target: target.to_string(),
        kernels: vec![BundleKernel {
            name: "scale".into(),
            variant: "<f32, 16>".into(),
            code_file: ptx_file_name("scale", "<f32, 16>"),
            ptx: format!(".version 8.3\n.target {target}\n.visible .entry scale(\n)\n{{\n}}\n"),
            code_object: None,
            params: vec![
                BundleParam {
                    name: "x".into(),
                    dtype: ScalarType::BF16,
                    kind: ParamKind::Global {
                        rank: 2,
                        mutable: false,
                    },
                },
                BundleParam {
                    name: "y".into(),
                    dtype: ScalarType::F32,
                    kind: ParamKind::Global {
                        rank: 1,
                        mutable: true,
                    },
                },
                BundleParam {
                    name: "alpha".into(),
                    dtype: ScalarType::F32,
                    kind: ParamKind::Scalar,
                },
            ],
            block_threads: 128,
            shared_bytes: 65536,
            dynamic_shared: true,
            ir_hash: "0123456789abcdef".into(),
            aligned16: Vec::new(),
            tensor_maps: Vec::new(),
        }],
    }
}

/// The tiny bundle for an AMD target: a small ELF-looking code object with the descriptor.
fn tiny_amd(target: &str) -> Bundle {
    let mut b = tiny(target);
    let k = &mut b.kernels[0];
    k.ptx = String::new();
    k.code_file = code_file_name("scale", "<f32, 16>", "hsaco");
    let mut object = b"\x7fELF\x02\x01\x01\x40".to_vec();
    object.extend((0..=255u8).chain(*b"\0scale.kd\0\xff\n\n"));
    k.code_object = Some(object);
    k.shared_bytes = 4096;
    k.dynamic_shared = false;
    b
}

/// The tiny bundle's metadata as a JSON value, to edit.
fn metadata_json(b: &Bundle) -> Value {
    serde_json::from_str(&b.metadata().unwrap()).unwrap()
}

/// A tar archive of `files`, as `tilekit bundle` would pack them.
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    pack::pack("test", files).unwrap()
}

/// Runs `f` on another thread and fails the test if it takes longer than `limit` (a reader
/// that blocks, e.g. on a FIFO, would otherwise hang the test run).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(f());
    });
    receive
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

/// The error of loading the tiny sm_80 bundle with its metadata edited by `edit`, as text.
fn load_error(edit: impl FnOnce(&mut Value)) -> String {
    let b = tiny("sm_80");
    let mut meta = metadata_json(&b);
    edit(&mut meta);
    let text = serde_json::to_vec(&meta).unwrap();
    let k = &b.kernels[0];
    let packed = tar_of(&[(METADATA_FILE, &text), (&k.code_file, k.code())]);
    let started = Instant::now();
    let result = Bundle::from_bytes(&packed);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "slow: {result:?}"
    );
    match result {
        Ok(b) => panic!("loaded {b:?}"),
        Err(e) => e.to_string(),
    }
}

/// `load_error` for one field of the kernel set to `value`.
fn kernel_field_error(field: &str, value: Value) -> String {
    load_error(|m| m["kernels"][0][field] = value)
}

/// `load_error` for one field of the first parameter set to `value`.
fn param_field_error(field: &str, value: Value) -> String {
    load_error(|m| m["kernels"][0]["params"][0][field] = value)
}

#[test]
fn the_abi_is_pointer_sizes_strides_per_view_then_scalars() {
    let b = tiny("sm_80");
    assert_eq!(
        format::abi_names(&b.kernels[0]).join(" "),
        "x:ptr x:size0 x:size1 x:stride0 x:stride1 y:ptr y:size0 y:stride0 alpha:f32"
    );
    assert_eq!(b.kernels[0].abi().len(), 9);
    assert_eq!(b.kernels[0].code_file, "scale_f32_16.ptx");
}

/// The metadata is the documented JSON: every field of the schema, nothing else.
#[test]
fn the_metadata_is_json_with_a_schema_version() {
    let m = metadata_json(&tiny("sm_90a"));
    assert_eq!(m["format"], "tilekit-bundle");
    assert_eq!(m["schema"], FORMAT_VERSION);
    assert_eq!(m["target"], "sm_90a");
    let k = &m["kernels"][0];
    let mut fields: Vec<&str> = k.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "abi",
            "aligned16",
            "block_threads",
            "code_file",
            "dynamic_shared",
            "ir_hash",
            "name",
            "params",
            "shared_bytes",
            "variant"
        ]
    );
    assert_eq!(
        k["params"][0],
        json!({"kind": "global", "name": "x", "dtype": "bf16", "rank": 2, "writable": false})
    );
    assert_eq!(
        k["params"][2],
        json!({"kind": "scalar", "name": "alpha", "dtype": "f32"})
    );
    assert_eq!(k["block_threads"], 128);
    assert_eq!(k["shared_bytes"], 65536);
    assert_eq!(k["dynamic_shared"], true);
}

#[test]
fn a_bundle_round_trips_through_bytes_and_a_directory() {
    let bundles = TARGETS.map(|t| if is_amd(t) { tiny_amd(t) } else { tiny(t) });
    for b in bundles {
        let packed = b.to_bytes().unwrap();
        assert_eq!(Bundle::from_bytes(&packed).unwrap(), b);
        let dir = scratch(&format!("tiny-{}", b.target));
        b.write_dir(&dir).unwrap();
        assert_eq!(Bundle::load_dir(&dir).unwrap(), b);
        let written = std::fs::read(dir.join(PACKED_FILE)).unwrap();
        assert_eq!(written, packed, "packing is deterministic");
        let metadata = std::fs::read_to_string(dir.join(METADATA_FILE)).unwrap();
        assert_eq!(metadata, b.metadata().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The packed bundle is a tar archive that the system's `tar` lists: the metadata, then the
/// code files (checked only where a `tar` program is installed).
#[test]
fn the_packed_bundle_is_a_tar_archive() {
    let b = tiny("sm_80");
    let dir = scratch("tar-list");
    b.write_dir(&dir).unwrap();
    let listed = std::process::Command::new("tar")
        .arg("tf")
        .arg(dir.join(PACKED_FILE))
        .output();
    if let Ok(out) = listed {
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{METADATA_FILE}\n{}\n", b.kernels[0].code_file)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kernels_are_found_by_name_and_variant_and_unknown_ones_are_listed() {
    let b = tiny("sm_90a");
    assert_eq!(b.kernel("scale", "<f32,16>").unwrap().block_threads, 128);
    let e = b.kernel("scale", "<f32, 32>").unwrap_err().to_string();
    assert!(
        e.contains("no kernel `scale<f32, 32>`") && e.contains("holds: scale<f32, 16>"),
        "{e}"
    );
}

/// Issue 11's reproductions for the metadata: each field out of its range is an error that
/// names the field and the range.
#[test]
fn every_metadata_field_is_range_checked() {
    let cases = [
        (
            param_field_error("rank", json!(4294967295u64)),
            "parameter `x` has rank 4294967295; a global view has rank 1 to 4",
        ),
        (
            param_field_error("rank", json!(0)),
            "parameter `x` has rank 0; a global view has rank 1 to 4",
        ),
        (
            param_field_error("rank", json!(7)),
            "parameter `x` has rank 7; a global view has rank 1 to 4",
        ),
        (
            param_field_error("rank", json!(100_000_000)),
            "has rank 100000000",
        ),
        (
            param_field_error("rank", json!(u64::MAX)),
            "has rank 18446744073709551615",
        ),
        (param_field_error("rank", json!(-1)), "invalid value"),
        (param_field_error("rank", json!("one")), "invalid type"),
        (
            kernel_field_error("block_threads", json!(0)),
            "a block of 0 threads; blocks have 1 to 1024 threads",
        ),
        (
            kernel_field_error("block_threads", json!(1025)),
            "a block of 1025 threads",
        ),
        (
            kernel_field_error("block_threads", json!(u64::MAX)),
            "a block of 18446744073709551615 threads",
        ),
        (
            kernel_field_error("shared_bytes", json!(u64::MAX)),
            "18446744073709551615 bytes of shared memory; a block on sm_80 has at most 166912",
        ),
        (
            kernel_field_error("shared_bytes", json!(163 * 1024 + 1)),
            "166913 bytes of shared memory",
        ),
        (
            kernel_field_error("shared_bytes", json!(1e30)),
            "invalid type: floating point",
        ),
        (
            kernel_field_error("variant", json!("<f32, 16>\nkernel evil")),
            "the variant has the control character `\\n`",
        ),
        (
            kernel_field_error("variant", json!("x".repeat(5000))),
            "the variant is 5000 bytes long; at most 4096",
        ),
        (
            kernel_field_error("name", json!("scale\u{1b}[2J")),
            "the kernel name `scale\\u{1b}[2J` is not an identifier",
        ),
        (
            kernel_field_error("name", json!("")),
            "the kernel name `` is not an identifier",
        ),
        (
            param_field_error("name", json!("x y")),
            "parameter `x y` is not an identifier",
        ),
        (
            param_field_error("dtype", json!("bf17")),
            "parameter `x`: unknown dtype `bf17`; dtypes: f32",
        ),
        (
            param_field_error("kind", json!("texture")),
            "unknown variant `texture`",
        ),
        (param_field_error("writable", json!("yes")), "invalid type"),
        (
            kernel_field_error("ir_hash", json!("0123")),
            "`ir_hash` wants 16 hex digits, found `0123`",
        ),
        (
            kernel_field_error("ir_hash", json!("0123456789abcdeg")),
            "`ir_hash` wants 16 hex digits",
        ),
        (
            load_error(|m| m["target"] = json!("sm_75")),
            "unknown target `sm_75`; bundles hold code for: sm_80, sm_90a, gfx90a",
        ),
        (
            load_error(|m| m["schema"] = json!(2)),
            "format version 2, but this tilekit reads version 4",
        ),
        // Schema 3 (no `aligned16`, one entry per variant) is refused with the rebuild hint.
        (
            load_error(|m| m["schema"] = json!(3)),
            "format version 3, but this tilekit reads version 4; rebuild the bundle",
        ),
        (load_error(|m| m["schema"] = json!(5)), "format version 5"),
        (
            kernel_field_error("aligned16", json!(["alpha"])),
            "`aligned16` names `alpha`, which is not a global-view parameter",
        ),
        (
            kernel_field_error("aligned16", json!(["z"])),
            "`aligned16` names `z`, which is not a global-view parameter",
        ),
        (
            kernel_field_error("aligned16", json!(["y", "x"])),
            "`aligned16` must list parameter names once each, in name order",
        ),
        (
            kernel_field_error("aligned16", json!(["x", "x"])),
            "`aligned16` must list parameter names once each, in name order",
        ),
        (
            load_error(|m| {
                m["kernels"][0].as_object_mut().unwrap().remove("aligned16");
            }),
            "missing field `aligned16`",
        ),
        (
            load_error(|m| {
                m.as_object_mut().unwrap().remove("schema");
            }),
            "format version (none)",
        ),
        (
            load_error(|m| m["format"] = json!("something-else")),
            "is not bundle metadata: its `format` should be \"tilekit-bundle\"",
        ),
        (
            load_error(|m| {
                m["kernels"][0]["params"].as_array_mut().unwrap().remove(1);
            }),
            "its `abi` disagrees with its `params`, which give `x:ptr",
        ),
        (
            load_error(|m| {
                m["kernels"][0]["params"][1]["name"] = json!("x");
                m["kernels"][0]["abi"] = json!([
                    "x:ptr",
                    "x:size0",
                    "x:size1",
                    "x:stride0",
                    "x:stride1",
                    "x:ptr",
                    "x:size0",
                    "x:stride0",
                    "alpha:f32"
                ]);
            }),
            "two parameters are named `x`",
        ),
        (
            load_error(|m| m["kernels"][0]["flavour"] = json!(1)),
            "unknown field `flavour`",
        ),
        (
            load_error(|m| {
                m["kernels"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("block_threads");
            }),
            "missing field `block_threads`",
        ),
        (load_error(|m| *m = json!([])), "is not valid"),
    ];
    for (e, want) in cases {
        assert!(e.contains(want), "want `{want}`, got: {e}");
    }
}

/// Code files are named by plain file names in the bundle: a path is refused before anything
/// is opened, whatever the file system holds.
#[test]
fn code_files_are_plain_file_names() {
    let cases = [
        ("../outside.ptx", "is a path"),
        ("/dev/zero", "is a path"),
        ("sub/x.ptx", "is a path"),
        ("sub\\x.ptx", "is a path"),
        ("..", "starts with `.`"),
        (".hidden.ptx", "starts with `.`"),
        ("", "is empty"),
        ("x\ny.ptx", "has the character `\\n`"),
        ("x y.ptx", "has the character ` `"),
        ("scale.hsaco", "a bundle for sm_80 holds `.ptx` files"),
        (&format!("{}.ptx", "x".repeat(300)), "at most 200"),
    ];
    for (name, want) in cases {
        let e = kernel_field_error("code_file", json!(name));
        assert!(e.contains(want), "{name:?}: want `{want}`, got: {e}");
    }
    // From a directory, too: nothing outside it is touched.
    let dir = scratch("plain-names");
    let b = tiny("sm_80");
    b.write_dir(&dir).unwrap();
    for name in ["../outside.ptx", "/dev/zero"] {
        let mut m = metadata_json(&b);
        m["kernels"][0]["code_file"] = json!(name);
        std::fs::write(dir.join(METADATA_FILE), serde_json::to_vec(&m).unwrap()).unwrap();
        let e = within(Duration::from_secs(5), {
            let dir = dir.clone();
            move || Bundle::load_dir(&dir).unwrap_err().to_string()
        });
        assert!(e.contains("is a path"), "{e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A bundle holds each kernel variant once (spaces in the variant do not make another one,
/// as lookups ignore them) and each code file once.
#[test]
fn kernels_and_code_files_are_unique() {
    let twice = |edit: fn(&mut Value)| {
        load_error(|m| {
            let k = m["kernels"][0].clone();
            m["kernels"].as_array_mut().unwrap().push(k);
            edit(&mut m["kernels"][1]);
        })
    };
    let e = twice(|k| k["code_file"] = json!("other.ptx"));
    assert!(
        e.contains("kernel `scale<f32, 16>` assuming general is in the bundle twice"),
        "{e}"
    );
    // The same variant assuming other facts is another entry.
    let b = tiny("sm_80");
    let mut meta = metadata_json(&b);
    let mut aligned = meta["kernels"][0].clone();
    aligned["code_file"] = json!("scale_f32_16.aligned16.ptx");
    aligned["aligned16"] = json!(["x", "y"]);
    meta["kernels"].as_array_mut().unwrap().push(aligned);
    let text = serde_json::to_vec(&meta).unwrap();
    let k = &b.kernels[0];
    let packed = tar_of(&[
        (METADATA_FILE, &text),
        (&k.code_file, k.code()),
        ("scale_f32_16.aligned16.ptx", k.code()),
    ]);
    let loaded = Bundle::from_bytes(&packed).unwrap();
    assert_eq!(loaded.kernels.len(), 2);
    assert_eq!(loaded.kernels[1].facts(), "aligned16(x, y)");
    // A lookup by name and variant finds the general entry.
    assert!(loaded
        .kernel("scale", "<f32, 16>")
        .unwrap()
        .aligned16
        .is_empty());
    let e = twice(|k| {
        k["code_file"] = json!("other.ptx");
        k["variant"] = json!("<f32,16>");
    });
    assert!(e.contains("is in the bundle twice"), "{e}");
    let e = twice(|k| k["variant"] = json!("<f32, 32>"));
    assert!(
        e.contains("code file `scale_f32_16.ptx` is named by two kernels"),
        "{e}"
    );
}

#[test]
fn code_for_another_target_or_without_the_entry_is_refused() {
    let mut b = tiny("sm_90a");
    b.kernels[0].ptx = b.kernels[0].ptx.replace("sm_90a", "sm_80");
    let e = b.to_bytes().unwrap_err().to_string();
    assert!(
        e.contains("is PTX for sm_80, but the bundle is for sm_90a"),
        "{e}"
    );
    let mut b = tiny("sm_90a");
    b.kernels[0].ptx = b.kernels[0].ptx.replace("entry scale", "entry other");
    let e = b.to_bytes().unwrap_err().to_string();
    assert!(e.contains("has no entry `.entry scale(`"), "{e}");

    // The same checks on reading: a code file swapped after writing.
    let b = tiny("sm_80");
    let dir = scratch("swapped-code");
    b.write_dir(&dir).unwrap();
    std::fs::write(dir.join(&b.kernels[0].code_file), "not ptx").unwrap();
    let e = Bundle::load_dir(&dir).unwrap_err().to_string();
    assert!(e.contains("is PTX for no target"), "{e}");
    std::fs::write(dir.join(&b.kernels[0].code_file), b"\xff\xfe").unwrap();
    let e = Bundle::load_dir(&dir).unwrap_err().to_string();
    assert!(e.contains("`scale_f32_16.ptx` is not UTF-8 text"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An AMD bundle holds binary code objects: a file that is not an ELF object with the
/// kernel's descriptor, or PTX, is refused.
#[test]
fn amd_bundles_hold_code_objects() {
    let b = tiny_amd("gfx942");
    assert!(b
        .metadata()
        .unwrap()
        .contains("\"code_file\": \"scale_f32_16.hsaco\""));
    let mut bad = b.clone();
    bad.kernels[0].code_object = Some(b"not an object".to_vec());
    let e = bad.to_bytes().unwrap_err().to_string();
    assert!(e.contains("is not an ELF code object"), "{e}");
    let mut bad = b.clone();
    bad.kernels[0].code_object = Some(b"\x7fELF other.kd".to_vec());
    let e = bad.to_bytes().unwrap_err().to_string();
    assert!(e.contains("has no kernel descriptor `scale.kd`"), "{e}");
    let mut bad = b.clone();
    bad.kernels[0].code_object = None;
    let e = bad.to_bytes().unwrap_err().to_string();
    assert!(
        e.contains("but a bundle for gfx942 holds code objects"),
        "{e}"
    );
    // LDS: 64 KiB on gfx942.
    let mut bad = b.clone();
    bad.kernels[0].shared_bytes = 64 * 1024 + 1;
    let e = bad.to_bytes().unwrap_err().to_string();
    assert!(e.contains("a block on gfx942 has at most 65536"), "{e}");
}

/// The shared-memory limits a reader checks are the compiler's.
#[cfg(feature = "jit")]
#[test]
fn shared_limits_are_the_compilers() {
    for target in tilekit_codegen::Target::ALL {
        assert_eq!(
            limits::shared_limit(target.name()),
            Some(tilekit_codegen::shared_limit(target)),
            "{target}"
        );
    }
    assert_eq!(limits::shared_limit("sm_75"), None);
}

/// Issue 11's reproduction: the old pack with a length of u64::MAX panicked; now it and every
/// other file of the old formats is refused with the command that rebuilds the bundle.
#[test]
fn bundles_of_the_old_formats_are_refused_with_how_to_rebuild_them() {
    let e =
        Bundle::from_bytes(b"tilekit-bundle-pack 2\nfile bundle.txt 18446744073709551615\nxx\n")
            .unwrap_err()
            .to_string();
    assert!(
        e.contains("written by an older tilekit")
            && e.contains("rebuild it with `tilekit bundle --target <target> --out <dir>`"),
        "{e}"
    );
    let old_text = "# tilekit AOT bundle: written by `tilekit bundle`, read by tilekit::Bundle\n\
                    tilekit-bundle 2\ntarget sm_90a\n";
    let e = Bundle::from_bytes(
        format!(
            "tilekit-bundle-pack 2\nfile bundle.txt {}\n{old_text}\n",
            old_text.len()
        )
        .as_bytes(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("`tilekit bundle --target sm_90a --out <dir>`"),
        "{e}"
    );

    let dir = scratch("old-format");
    std::fs::write(dir.join("bundle.txt"), old_text).unwrap();
    let e = Bundle::load_dir(&dir).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "`tilekit bundle --target sm_90a --out {}`",
            dir.display()
        )),
        "{e}"
    );
    // Even when the old metadata is a FIFO: it is recognized by name, never opened.
    std::fs::remove_file(dir.join("bundle.txt")).unwrap();
    if make_fifo(&dir.join("bundle.txt")) {
        let e = within(Duration::from_secs(5), {
            let dir = dir.clone();
            move || Bundle::load_dir(&dir).unwrap_err().to_string()
        });
        assert!(e.contains("--target <target>"), "{e}");
    }
    // Writing a bundle there replaces the old metadata.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bundle.txt"), old_text).unwrap();
    tiny("sm_80").write_dir(&dir).unwrap();
    assert!(!dir.join("bundle.txt").exists());
    assert_eq!(Bundle::load_dir(&dir).unwrap(), tiny("sm_80"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Makes a FIFO at `path` with the system's `mkfifo`; false where there is none.
fn make_fifo(path: &Path) -> bool {
    std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

/// A FIFO, a device, a directory or a link where a bundle file should be is refused without
/// being opened (opening a FIFO would wait for a writer forever).
#[cfg(unix)]
#[test]
fn only_regular_files_are_read_from_a_bundle_directory() {
    let b = tiny("sm_80");
    let code = b.kernels[0].code_file.clone();
    let dir = scratch("file-types");
    let load = |dir: &Path| {
        let dir = dir.to_path_buf();
        within(Duration::from_secs(5), move || {
            Bundle::load_dir(&dir).unwrap_err().to_string()
        })
    };

    b.write_dir(&dir).unwrap();
    std::fs::remove_file(dir.join(METADATA_FILE)).unwrap();
    assert!(make_fifo(&dir.join(METADATA_FILE)), "mkfifo");
    let e = load(&dir);
    assert!(
        e.contains("`bundle.json` is a FIFO, not a regular file"),
        "{e}"
    );

    b.write_dir(&dir).unwrap();
    std::fs::remove_file(dir.join(&code)).unwrap();
    assert!(make_fifo(&dir.join(&code)));
    let e = load(&dir);
    assert!(e.contains("`scale_f32_16.ptx` is a FIFO"), "{e}");

    std::fs::remove_file(dir.join(&code)).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join(&code)).unwrap();
    let e = load(&dir);
    assert!(e.contains("`scale_f32_16.ptx` is a symbolic link"), "{e}");

    // A link to a good file outside the directory is refused just the same.
    let outside = scratch("file-types-outside");
    std::fs::write(outside.join(&code), &b.kernels[0].ptx).unwrap();
    std::fs::remove_file(dir.join(&code)).unwrap();
    std::os::unix::fs::symlink(outside.join(&code), dir.join(&code)).unwrap();
    let e = load(&dir);
    assert!(e.contains("is a symbolic link"), "{e}");

    std::fs::remove_file(dir.join(&code)).unwrap();
    std::fs::create_dir(dir.join(&code)).unwrap();
    let e = load(&dir);
    assert!(e.contains("`scale_f32_16.ptx` is a directory"), "{e}");
    std::fs::remove_dir(dir.join(&code)).unwrap();

    let e = load(&dir);
    assert!(
        e.contains(&format!(
            "{}: missing file `scale_f32_16.ptx`",
            dir.display()
        )),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&outside).unwrap();
    let e = load(&dir);
    assert!(e.contains("missing file `bundle.json`"), "{e}");
}

/// Files over the limits are refused by their size, before they are read (the files here are
/// sparse: nothing that large is written).
#[test]
fn files_over_the_size_limits_are_refused_before_reading() {
    let b = tiny("sm_80");
    let dir = scratch("too-large");
    b.write_dir(&dir).unwrap();
    let code = dir.join(&b.kernels[0].code_file);
    std::fs::File::options()
        .write(true)
        .open(&code)
        .unwrap()
        .set_len(limits::MAX_CODE_FILE_BYTES + 1)
        .unwrap();
    let started = Instant::now();
    let e = Bundle::load_dir(&dir).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "`scale_f32_16.ptx` is {} bytes; at most {} are read",
            limits::MAX_CODE_FILE_BYTES + 1,
            limits::MAX_CODE_FILE_BYTES
        )),
        "{e}"
    );
    std::fs::File::options()
        .write(true)
        .open(dir.join(METADATA_FILE))
        .unwrap()
        .set_len(limits::MAX_METADATA_BYTES + 1)
        .unwrap();
    let e = Bundle::load_dir(&dir).unwrap_err().to_string();
    assert!(
        e.contains("`bundle.json` is 16777217 bytes; at most 16777216"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `write_dir` checks the bundle first: a code file named like a path is refused and nothing
/// is written, inside the directory or out; an existing link in the directory is replaced,
/// never written through.
#[test]
fn write_dir_never_writes_outside_the_directory() {
    let parent = scratch("write-outside");
    let dir = parent.join("out");
    let mut b = tiny("sm_80");
    b.kernels[0].code_file = "../x.ptx".into();
    let e = b.write_dir(&dir).unwrap_err().to_string();
    assert!(e.contains("`../x.ptx` is a path"), "{e}");
    assert!(!parent.join("x.ptx").exists() && !dir.exists());
    let e = b.to_bytes().unwrap_err().to_string();
    assert!(e.contains("is a path"), "{e}");

    let mut b = tiny("sm_80");
    b.kernels[0].variant = "<f32, 16>\nkernel evil".into();
    let e = b.write_dir(&dir).unwrap_err().to_string();
    assert!(e.contains("control character"), "{e}");
    assert!(!dir.exists());

    #[cfg(unix)]
    {
        let b = tiny("sm_80");
        let victim = parent.join("victim.ptx");
        std::fs::write(&victim, "untouched").unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join(&b.kernels[0].code_file)).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join(METADATA_FILE)).unwrap();
        b.write_dir(&dir).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(Bundle::load_dir(&dir).unwrap(), b);
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
    std::fs::remove_dir_all(&parent).unwrap();
}

/// The longest name a code file may have is written (under its longer temporary name first),
/// packed and read back.
#[test]
fn the_longest_code_file_name_round_trips() {
    let mut b = tiny("sm_80");
    let long = format!("{}.ptx", "x".repeat(limits::MAX_FILE_NAME_BYTES - 4));
    assert_eq!(long.len(), limits::MAX_FILE_NAME_BYTES);
    b.kernels[0].code_file = long;
    let dir = scratch("long-name");
    b.write_dir(&dir).unwrap();
    assert_eq!(Bundle::load_dir(&dir).unwrap(), b);
    assert_eq!(Bundle::from_bytes(&b.to_bytes().unwrap()).unwrap(), b);
    b.kernels[0].code_file.insert(0, 'x');
    let e = b.to_bytes().unwrap_err().to_string();
    assert!(e.contains("is 201 bytes long; at most 200"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A tar header of a regular file named `name` of `size` bytes (set as written, without the
/// tar crate's checks), for archives `tilekit bundle` would never write.
fn raw_header(name: &[u8], size: u64, kind: tar::EntryType) -> [u8; 512] {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(kind);
    h.set_cksum();
    let mut out = [0u8; 512];
    out.copy_from_slice(h.as_bytes());
    out
}

/// An archive of the raw entries (header, data), padded to blocks, with the closing blocks.
fn raw_tar(entries: &[([u8; 512], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (header, data) in entries {
        out.extend_from_slice(header);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

/// Issue 11's reproductions for the pack: duplicates, entries that are not plain regular files,
/// sizes beyond the input or the limits, truncated and garbage archives.
#[test]
fn damaged_or_hostile_packs_are_errors() {
    let b = tiny("sm_80");
    let meta = b.metadata().unwrap();
    let k = &b.kernels[0];
    let ptx = k.ptx.as_bytes();
    let regular = tar::EntryType::Regular;
    let from = |bytes: &[u8]| {
        let started = Instant::now();
        let e = Bundle::from_bytes(bytes).unwrap_err().to_string();
        assert!(started.elapsed() < Duration::from_secs(2), "{e}");
        e
    };
    let good = raw_tar(&[
        (
            raw_header(b"bundle.json", meta.len() as u64, regular),
            meta.as_bytes(),
        ),
        (
            raw_header(k.code_file.as_bytes(), ptx.len() as u64, regular),
            ptx,
        ),
    ]);
    assert_eq!(
        Bundle::from_bytes(&good).unwrap(),
        b,
        "the raw archive is right"
    );

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            raw_tar(&[
                (
                    raw_header(b"bundle.json", meta.len() as u64, regular),
                    meta.as_bytes(),
                ),
                (
                    raw_header(k.code_file.as_bytes(), ptx.len() as u64, regular),
                    ptx,
                ),
                (
                    raw_header(k.code_file.as_bytes(), ptx.len() as u64, regular),
                    ptx,
                ),
            ]),
            "the archive holds `scale_f32_16.ptx` twice",
        ),
        (
            raw_tar(&[
                (
                    raw_header(b"bundle.json", meta.len() as u64, regular),
                    meta.as_bytes(),
                ),
                (raw_header(b"../x.ptx", ptx.len() as u64, regular), ptx),
            ]),
            "`../x.ptx` is a path",
        ),
        (
            raw_tar(&[
                (
                    raw_header(b"bundle.json", meta.len() as u64, regular),
                    meta.as_bytes(),
                ),
                (raw_header(b"/etc/x.ptx", ptx.len() as u64, regular), ptx),
            ]),
            "is a path",
        ),
        (
            raw_tar(&[
                (
                    raw_header(b"bundle.json", meta.len() as u64, regular),
                    meta.as_bytes(),
                ),
                (
                    raw_header(k.code_file.as_bytes(), 0, tar::EntryType::Symlink),
                    b"",
                ),
            ]),
            "entry `scale_f32_16.ptx` is not a regular file (Symlink)",
        ),
        (
            raw_tar(&[(
                raw_header(b"bundle.json", 0, tar::EntryType::Directory),
                b"",
            )]),
            "is not a regular file (Directory)",
        ),
        (
            raw_tar(&[
                (
                    raw_header(b"bundle.json", meta.len() as u64, regular),
                    meta.as_bytes(),
                ),
                (
                    raw_header(k.code_file.as_bytes(), ptx.len() as u64, regular),
                    ptx,
                ),
                (raw_header(b"extra.ptx", 3, regular), b"abc"),
            ]),
            "holds `extra.ptx`, which no kernel names",
        ),
        (
            raw_tar(&[(
                raw_header(b"bundle.json", meta.len() as u64, regular),
                meta.as_bytes(),
            )]),
            "missing file `scale_f32_16.ptx`",
        ),
        (
            raw_tar(&[(
                raw_header(k.code_file.as_bytes(), ptx.len() as u64, regular),
                ptx,
            )]),
            "missing file `bundle.json`",
        ),
        // A header declaring 8 GiB (octal 77777777777) in a 2 KiB archive.
        (
            raw_tar(&[(raw_header(b"bundle.json", 0o77777777777, regular), b"{}")]),
            "`bundle.json` is 8589934591 bytes; at most 16777216",
        ),
        (
            raw_tar(&[(raw_header(b"x.ptx", 0o77777777777, regular), b"")]),
            "`x.ptx` is 8589934591 bytes; at most 268435456",
        ),
        // Sizes of 2^33 bytes and more take the GNU base-256 form.
        (
            raw_tar(&[(raw_header(k.code_file.as_bytes(), 1 << 40, regular), b"")]),
            "`scale_f32_16.ptx` is 1099511627776 bytes; at most 268435456",
        ),
        (
            raw_tar(&[(raw_header(k.code_file.as_bytes(), u64::MAX, regular), b"")]),
            "the tar archive is damaged",
        ),
        (
            raw_tar(&[(
                raw_header(b"bundle.json", 1 << 20, regular),
                meta.as_bytes(),
            )]),
            "file `bundle.json` is cut off: 1048576 bytes announced",
        ),
        (good[..good.len() - 1024 - 512].to_vec(), "cut off"),
        (
            {
                let mut bad = good.clone();
                bad[600] ^= 0x55; // inside the metadata's JSON text
                bad
            },
            "`bundle.json` is not valid",
        ),
        (
            {
                let mut bad = good.clone();
                bad[0] ^= 0x01; // the first header's name: its checksum no longer matches
                bad
            },
            "the tar archive is damaged: archive header checksum mismatch",
        ),
        (
            vec![0xa5; 4096],
            "not a packed bundle: a packed bundle is a tar archive",
        ),
        (Vec::new(), "not a packed bundle"),
        (meta.clone().into_bytes(), "not a packed bundle"),
        (vec![0; 1024], "not a packed bundle"),
    ];
    for (bytes, want) in cases {
        let e = from(&bytes);
        assert!(e.contains(want), "want `{want}`, got: {e}");
    }
    // Every truncation of a good archive is an error or (past the data) the bundle itself.
    for len in 0..good.len() {
        if let Ok(loaded) = Bundle::from_bytes(&good[..len]) {
            assert_eq!(loaded, b, "cut at {len}");
        }
    }
}

/// `from_bytes` is total: random damage to a good pack gives a result, never a panic, and
/// quickly. (The fuzz harness searches much further; this keeps the property in `cargo test`.)
#[test]
fn from_bytes_never_panics_on_damaged_input() {
    let good = tiny("sm_80").to_bytes().unwrap();
    let good_amd = tiny_amd("gfx90a").to_bytes().unwrap();
    // xorshift64*: a fixed stream, printed on failure through the iteration number.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let started = Instant::now();
    let mut loaded = 0;
    for i in 0..3000 {
        let mut bytes = if i % 2 == 0 {
            good.clone()
        } else {
            good_amd.clone()
        };
        for _ in 0..1 + next() % 8 {
            let at = (next() % bytes.len() as u64) as usize;
            match next() % 4 {
                0 => bytes[at] = next() as u8,
                1 => bytes[at] ^= 1 << (next() % 8),
                2 => bytes.truncate(at.max(1)),
                _ => bytes[at] = b"0123456789{}\"\\:,[] \n\x00\xff"[(next() % 20) as usize],
            }
        }
        if Bundle::from_bytes(&bytes).is_ok() {
            loaded += 1;
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // Most damage is detected; some (in padding, or in the PTX body) is harmless.
    assert!(loaded < 3000, "{loaded}");
}

/// Every registered variant, compiled for every target, survives writing and loading; its
/// `abi` has one entry per `.param` of the PTX entry.
#[cfg(feature = "jit")]
#[test]
fn the_registry_compiles_to_bundles_that_load_back_for_every_target() {
    for target in tilekit_codegen::Target::ALL {
        let b = compile_registry(target).unwrap();
        let variants: usize = crate::registry::kernels()
            .iter()
            .flat_map(|k| k.variants)
            .filter(|v| v.is_for(target.name()))
            .count();
        // One general entry per variant, and an aligned one where assuming the views aligned
        // changes the code: on sm_80 and sm_90a the GEMM's tile copies lose their fallback.
        let general = b.kernels.iter().filter(|k| k.aligned16.is_empty()).count();
        assert_eq!(general, variants);
        if target.is_nvidia() {
            let aligned: Vec<&BundleKernel> = b
                .kernels
                .iter()
                .filter(|k| k.name == "gemm" && !k.aligned16.is_empty())
                .collect();
            assert!(!aligned.is_empty(), "{target}: no aligned gemm entry");
            for k in aligned {
                assert_eq!(k.facts(), "aligned16(a, b, c)");
                assert!(k.code_file.ends_with(".aligned16.ptx"), "{}", k.code_file);
            }
        }
        for k in &b.kernels {
            if target.is_nvidia() {
                assert!(k.code_object.is_none() && k.code_file.ends_with(".ptx"));
                let entry = k.ptx.split(&format!(".entry {}(", k.name)).nth(1).unwrap();
                let params = entry.split(')').next().unwrap().matches(".param").count();
                assert_eq!(params, k.abi().len(), "{}{}", k.name, k.variant);
            } else {
                let object = k.code_object.as_deref().unwrap();
                assert!(object.starts_with(b"\x7fELF") && k.ptx.is_empty());
                assert!(k.code_file.ends_with(".hsaco"), "{}", k.code_file);
            }
        }
        let gemm = b.kernel("gemm", "<bf16, 64, 64, 32, 32, 32>").unwrap();
        assert_eq!(
            gemm.params.iter().map(|p| p.kind).collect::<Vec<_>>(),
            [
                ParamKind::Global {
                    rank: 2,
                    mutable: false
                },
                ParamKind::Global {
                    rank: 2,
                    mutable: false
                },
                ParamKind::Global {
                    rank: 2,
                    mutable: true
                },
            ]
        );

        let dir = scratch(&format!("registry-{target}"));
        b.write_dir(&dir).unwrap();
        assert_eq!(Bundle::load_dir(&dir).unwrap(), b);
        let packed = std::fs::read(dir.join(PACKED_FILE)).unwrap();
        assert_eq!(Bundle::from_bytes(&packed).unwrap(), b);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(not(feature = "jit"))]
#[test]
fn bundle_needs_the_jit_feature() {
    let e = crate::cli::run(&["bundle", "--target", "sm_80", "--out", "x"].map(String::from))
        .unwrap_err();
    assert!(e.message.contains("without the `jit` feature"), "{e}");
}

/// The same, on the binary: `tilekit` built without `jit` has no LLVM or MLIR, neither as a
/// shared library (`ldd`) nor linked in statically (their C API's symbols).
#[test]
fn the_runtime_only_binary_links_no_llvm_or_mlir() {
    let target_dir = std::env::temp_dir().join("tilekit-runtime-only-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "-p", "tilekit", "--no-default-features", "--bins"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success());
    let has_compiler = |bytes: &[u8]| {
        [&b"LLVMContextCreate"[..], b"mlirContextCreate"]
            .iter()
            .any(|sym| bytes.windows(sym.len()).any(|w| w == *sym))
    };
    for name in ["tilekit", "tilekit-gpucheck"] {
        let bin = target_dir.join("debug").join(name);
        let ldd = std::process::Command::new("ldd")
            .arg(&bin)
            .output()
            .unwrap();
        let libs = String::from_utf8_lossy(&ldd.stdout).to_lowercase();
        assert!(
            ldd.status.success()
                && !libs.contains("llvm")
                && !libs.contains("mlir")
                && !libs.contains("libcuda"),
            "{name}: {libs}"
        );
        assert!(!has_compiler(&std::fs::read(&bin).unwrap()), "{name}");
    }
    // The check can fail: this test's own executable, built with `jit`, has them.
    if cfg!(feature = "jit") {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(has_compiler(&me));
    }

    // The runtime-only checker loads a bundle this (jit) build wrote and finds every kernel
    // variant in it by Tile IR hash; a bundle with one hash changed is refused.
    #[cfg(feature = "jit")]
    {
        // The library's kernels: the checker binary registers those and no test's kernels.
        let library: Vec<&str> = crate::registry::kernels()
            .iter()
            .filter(|k| k.file.contains("kernels/"))
            .map(|k| k.name)
            .collect();
        let mut bundle = compile_registry(tilekit_codegen::Target::Sm80).unwrap();
        bundle
            .kernels
            .retain(|k| library.contains(&k.name.as_str()));
        assert!(!bundle.kernels.is_empty());
        let dir = scratch("runtime-only-load");
        bundle.write_dir(&dir).unwrap();
        let inspect = |dir: &Path| {
            std::process::Command::new(target_dir.join("debug").join("tilekit-gpucheck"))
                .arg("--bundle")
                .arg(dir)
                .arg("--inspect")
                .output()
                .unwrap()
        };
        let out = inspect(&dir);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{text}");
        assert!(text.contains(": 0 missing"), "{text}");
        // One line per variant (its general entry; aligned entries are the same variant).
        assert_eq!(
            text.matches("in the bundle").count(),
            bundle
                .kernels
                .iter()
                .filter(|k| k.aligned16.is_empty())
                .count(),
            "{text}"
        );
        // Every entry of the first variant (its general entry and, where its code differs, its
        // aligned one: both carry the variant's Tile IR hash).
        let mut other = bundle.clone();
        let stale = other.kernels[0].ir_hash.clone();
        for k in other.kernels.iter_mut().filter(|k| k.ir_hash == stale) {
            k.ir_hash = "0000000000000000".into();
        }
        let dir2 = scratch("runtime-only-load-stale");
        other.write_dir(&dir2).unwrap();
        let out = inspect(&dir2);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(!out.status.success(), "{text}");
        assert!(text.contains(": 1 missing"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&dir2);
    }
}

/// The runtime-only build (what loads bundles on a GPU machine) must not link LLVM or MLIR:
/// its dependency graph has no compiler crate; the default build's does (so the check can
/// fail).
#[test]
fn without_jit_the_runtime_depends_on_no_llvm_or_mlir() {
    let tree = |extra: &[&str]| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args(["tree", "-p", "tilekit", "-e", "normal", "--prefix", "none"])
            .args(extra)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo tree failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let compiler = [
        "tilekit-codegen",
        "melior",
        "inkwell",
        "mlir-sys",
        "llvm-sys",
    ];
    let crates = |tree: &str| -> Vec<String> {
        tree.lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|c| compiler.contains(c))
            .map(String::from)
            .collect()
    };
    let runtime_only = tree(&["--no-default-features"]);
    assert!(runtime_only.contains("tilekit-ir"), "{runtime_only}");
    assert_eq!(
        crates(&runtime_only),
        Vec::<String>::new(),
        "{runtime_only}"
    );
    let with_jit = crates(&tree(&["--features", "jit"]));
    for c in ["tilekit-codegen", "melior", "inkwell"] {
        assert!(with_jit.iter().any(|d| d == c), "{c} not in {with_jit:?}");
    }
}
