//! The runtime's modules import in one direction (DESIGN.md, "Runtime"): errors and the
//! description of compiled code at the bottom, then devices, tensors, launch, the registry, and
//! bundles, the kernel library and the CLI on top. A module that needs something from a higher
//! one is a sign that the thing belongs lower; this test keeps the lower layers from reaching up.

/// Each checked source file and the top-level modules its code may name through `crate::`.
const LAYERS: &[(&str, &str, &[&str])] = &[
    ("error.rs", include_str!("error.rs"), &["ir"]),
    ("abi.rs", include_str!("abi.rs"), &["ir"]),
    (
        "module_cache.rs",
        include_str!("module_cache.rs"),
        &["ir", "error"],
    ),
    ("device/mod.rs", include_str!("device/mod.rs"), DEVICE),
    ("device/args.rs", include_str!("device/args.rs"), DEVICE),
    ("device/checks.rs", include_str!("device/checks.rs"), DEVICE),
    ("device/codec.rs", include_str!("device/codec.rs"), DEVICE),
    ("device/cpu.rs", include_str!("device/cpu.rs"), DEVICE),
    ("device/cuda.rs", include_str!("device/cuda.rs"), DEVICE),
    ("device/emu.rs", include_str!("device/emu.rs"), DEVICE),
    ("device/hip.rs", include_str!("device/hip.rs"), DEVICE),
    ("device/memory.rs", include_str!("device/memory.rs"), DEVICE),
    ("device/table.rs", include_str!("device/table.rs"), DEVICE),
    ("tensor_map.rs", include_str!("tensor_map.rs"), DEVICE),
    (
        "tensor.rs",
        include_str!("tensor.rs"),
        &["ir", "error", "abi", "device"],
    ),
    (
        "launch.rs",
        include_str!("launch.rs"),
        &[
            "ir",
            "error",
            "abi",
            "module_cache",
            "device",
            "tensor",
            "dsl",
        ],
    ),
    (
        "tensor_list.rs",
        include_str!("tensor_list.rs"),
        &["ir", "error", "device", "tensor", "launch", "dsl"],
    ),
    (
        "contract.rs",
        include_str!("contract.rs"),
        &["error", "device", "launch"],
    ),
    (
        "registry.rs",
        include_str!("registry.rs"),
        &[
            "ir", "error", "device", "tensor", "launch", "dsl", "contract",
        ],
    ),
];

/// What the device layer may name: nothing above it.
const DEVICE: &[&str] = &["ir", "error", "abi", "module_cache", "device", "tensor_map"];

/// The code of a source file without its comments (doc links may point anywhere).
fn code_lines(source: &str) -> impl Iterator<Item = (usize, &str)> {
    source.lines().enumerate().filter_map(|(i, line)| {
        let code = line.split("//").next().unwrap_or("");
        (!code.trim().is_empty()).then_some((i + 1, code))
    })
}

/// The top-level module names a line reaches through `crate::`, and whether it uses a
/// `crate::{…}` group (which this check cannot read, so lower layers do not use it).
fn crate_paths(line: &str) -> Vec<&str> {
    line.match_indices("crate::")
        .filter(|(at, _)| {
            // `tilekit_crate::` or `some_crate::` are other paths.
            !line[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_')
        })
        .map(|(at, m)| {
            let rest = &line[at + m.len()..];
            if rest.starts_with('{') {
                return &rest[..1];
            }
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

#[test]
fn lower_modules_never_import_higher_ones() {
    let mut upward = Vec::new();
    for (file, source, allowed) in LAYERS {
        for (line_no, code) in code_lines(source) {
            for root in crate_paths(code) {
                if !allowed.contains(&root) {
                    upward.push(format!("{file}:{line_no}: crate::{root} ({})", code.trim()));
                }
            }
            if code.contains("super::super") {
                upward.push(format!("{file}:{line_no}: super::super ({})", code.trim()));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that run upward (or cannot be checked):\n{}",
        upward.join("\n")
    );
}

/// The check itself sees the paths it must refuse.
#[test]
fn the_layering_check_sees_crate_paths() {
    assert_eq!(
        crate_paths("use crate::launch::{Grid}; x = crate::Tensor::zeros"),
        ["launch", "Tensor"]
    );
    assert_eq!(crate_paths("use crate::{device, launch};"), ["{"]);
    assert_eq!(crate_paths("tilekit_crate::x"), Vec::<&str>::new());
    let lines: Vec<_> = code_lines("// crate::bundle\nlet x = 1; // crate::cli\n").collect();
    assert_eq!(lines, [(2, "let x = 1; ")]);
}
