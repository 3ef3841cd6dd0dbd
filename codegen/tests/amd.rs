//! AMD targets (gfx90a, gfx942, gfx950): every acceptance kernel and every DSL kernel of the
//! kernel library compiles for all three chips and `ld.lld` links each code object; the code
//! objects say what a loader needs (wave64, work-group size, LDS) and use no scratch; GEMM and
//! attention run MFMA instructions in their inner loops, with AMDGPU assembly snapshots; LDS
//! over a chip's limit is an error with the numbers.
//!
//! Every kernel × chip is compiled once per test binary (in parallel, one thread per chip) and
//! shared by the tests.

mod acceptance;
mod kernels;

use std::collections::HashMap;
use std::sync::OnceLock;

use tilekit_codegen::amd::resources;
use tilekit_codegen::{compile, CodegenError, Compiled, Stage, Target};
use tilekit_ir::{FuncBuilder, Module, ScalarType, Scope, Swizzle, Type};

const CHIPS: [Target; 3] = [Target::Gfx90a, Target::Gfx942, Target::Gfx950];

/// (snapshot stem, kernel) of every registered kernel variant this crate can reach.
fn variants() -> Vec<(String, &'static str, Module)> {
    let examples = acceptance::KERNELS
        .iter()
        .map(|(s, k)| (format!("text_examples__{s}"), *k));
    let dsl = acceptance::DSL_KERNELS
        .iter()
        .map(|(s, k)| (s.to_string(), *k));
    examples
        .chain(dsl)
        .map(|(s, k)| {
            let m = acceptance::snapshot_module(&s);
            (s, k, m)
        })
        .collect()
}

type Results = HashMap<(String, Target), Result<Compiled, CodegenError>>;

fn compiled() -> &'static Results {
    static ALL: OnceLock<Results> = OnceLock::new();
    ALL.get_or_init(|| {
        let vs = variants();
        std::thread::scope(|scope| {
            let handles: Vec<_> = CHIPS
                .iter()
                .map(|&t| {
                    let vs = &vs;
                    scope.spawn(move || {
                        vs.iter()
                            .map(|(s, k, m)| ((s.clone(), t), compile(m, k, t)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("compile thread"))
                .collect()
        })
    })
}

fn get(stem: &str, t: Target) -> &'static Compiled {
    match &compiled()[&(stem.to_string(), t)] {
        Ok(c) => c,
        Err(e) => panic!("{stem} on {t}: {e}"),
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

#[test]
fn every_kernel_compiles_and_links_for_every_amd_chip() {
    let mut failures = Vec::new();
    for ((stem, t), r) in compiled() {
        match r {
            Err(e) => failures.push(format!("{stem} on {t}: {e}")),
            Ok(c) => {
                let co = c.code_object().expect("an AMD target has a code object");
                // ELF64, shared object (ET_DYN = 3), machine EM_AMDGPU = 224.
                assert_eq!(&co[..4], b"\x7fELF", "{stem} {t}");
                assert_eq!((le16(co, 0x10), le16(co, 0x12)), (3, 224), "{stem} {t}");
                assert!(c.stage(Stage::Ptx).is_empty());
                assert!(
                    c.stage(Stage::Asm)
                        .contains(&format!(".amdgcn_target \"amdgcn-amd-amdhsa--{t}\"")),
                    "{stem} {t}"
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(compiled().len(), CHIPS.len() * variants().len());
}

#[test]
fn code_objects_are_v5_wave64_with_the_block_size_and_lds_of_the_kernel() {
    for ((stem, t), r) in compiled() {
        let Ok(c) = r else { continue };
        let asm = c.stage(Stage::Asm);
        assert!(asm.contains(".amdhsa_code_object_version 5"), "{stem} {t}");
        let threads = c.block_threads();
        assert_eq!(threads, c.warps * 64);
        assert!(
            asm.contains(&format!(".max_flat_workgroup_size: {threads}\n")),
            "{stem} {t}: flat work-group size {threads}"
        );
        let r = c.amd_resources().expect("metadata note");
        assert_eq!(r.wavefront_size, 64, "{stem} {t}");
        // The LDS buffer is the kernel's shared memory (a kernel without any declares 16
        // bytes, which the back end may drop).
        if c.shared_bytes > 0 {
            assert_eq!(u64::from(r.lds_bytes), c.shared_bytes, "{stem} {t}");
        } else {
            assert!(r.lds_bytes <= 16, "{stem} {t}: {}", r.lds_bytes);
        }
    }
}

#[test]
fn no_kernel_uses_scratch_at_its_default_configuration() {
    let mut spills = Vec::new();
    for ((stem, t), r) in compiled() {
        let Ok(c) = r else { continue };
        let r = c.amd_resources().expect("metadata note");
        if r.scratch_bytes != 0 || r.vgpr_spills != 0 || r.sgpr_spills != 0 {
            spills.push(format!("{stem} on {t}: {r:?}"));
        }
    }
    assert!(spills.is_empty(), "{}", spills.join("\n"));
}

/// The instruction lines between each loop header label and the backward branch that closes
/// the loop.
fn loop_bodies(asm: &str) -> Vec<Vec<&str>> {
    let lines: Vec<&str> = asm.lines().map(str::trim).collect();
    let mut labels = HashMap::new();
    for (i, l) in lines.iter().enumerate() {
        if let Some(name) = l.strip_suffix(':').filter(|n| n.starts_with(".LBB")) {
            labels.insert(name.to_string(), i);
        }
    }
    let mut bodies = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if !(l.starts_with("s_branch") || l.starts_with("s_cbranch")) {
            continue;
        }
        let Some(target) = l.split_whitespace().last() else {
            continue;
        };
        if let Some(&start) = labels.get(target).filter(|&&s| s < i) {
            bodies.push(lines[start..=i].to_vec());
        }
    }
    bodies
}

#[test]
fn gemm_and_attention_inner_loops_issue_the_chips_mfma() {
    let want = |t: Target| match t {
        Target::Gfx90a => "v_mfma_f32_16x16x16bf16_1k",
        Target::Gfx942 => "v_mfma_f32_16x16x16_bf16",
        _ => "v_mfma_f32_16x16x32_bf16",
    };
    for stem in [
        "text_examples__gemm",
        "text_examples__attention",
        "text_examples__attention_causal",
        "dsl_gemm__dsl_gemm_tile_ir",
        "dsl_attention__dsl_attention",
        "text_examples__ws_gemm",
    ] {
        for t in CHIPS {
            let asm = get(stem, t).stage(Stage::Asm);
            // The library attention computes scores and P·V 16 keys at a time (K/V read per k16
            // slice to free registers), so on gfx950 its K-16 products take the 16x16x16 form.
            let also = if stem.starts_with("dsl_attention") && t == Target::Gfx950 {
                "v_mfma_f32_16x16x16_bf16"
            } else {
                want(t)
            };
            let in_loops = loop_bodies(asm)
                .iter()
                .map(|b| {
                    b.iter()
                        .filter(|l| l.starts_with(want(t)) || l.starts_with(also))
                        .count()
                })
                .max()
                .unwrap_or(0);
            assert!(
                in_loops > 0,
                "{stem} on {t}: no {} in a loop ({} MFMAs in all)",
                want(t),
                resources::mfma_count(asm)
            );
        }
    }
}

/// The AMDGPU assembly of a kernel without the metadata and directives after the code (the
/// register counts are checked above; the snapshot shows the instructions).
fn code_only(asm: &str) -> String {
    let end = asm.find("\t.section\t.rodata").unwrap_or(asm.len());
    asm[..end]
        .lines()
        .filter(|l| !l.trim_start().starts_with(';'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn gemm_and_attention_assembly_snapshots() {
    for (stem, name) in [
        ("text_examples__gemm", "gemm"),
        ("text_examples__attention", "attention"),
    ] {
        for t in [Target::Gfx942, Target::Gfx950] {
            let asm = code_only(get(stem, t).stage(Stage::Asm));
            insta::assert_snapshot!(format!("{name}.{t}.asm"), asm);
        }
    }
}

/// A block of 8 wavefronts copying a `rows × 64` f32 shared tile in and out.
fn lds_kernel(rows: u32) -> Module {
    let mut b = FuncBuilder::kernel("lds", 8);
    let g = b.param("g", Type::global(ScalarType::F32, 2, true));
    let s = b.alloc_shared(Type::shared_tile(ScalarType::F32, rows, 64, Swizzle::None));
    let z = b.const_i32(0);
    b.copy(Scope::Block, s, g, &[z, z]);
    b.barrier();
    b.copy(Scope::Block, g, s, &[z, z]);
    let mut m = Module::new();
    m.push(b.finish());
    tilekit_ir::verify(&m).unwrap();
    m
}

#[test]
fn lds_over_the_chips_limit_is_rejected_with_the_numbers() {
    // 384 rows of 64 f32: 96 KiB, over gfx942's 64 KiB and within gfx950's 160 KiB.
    let m = lds_kernel(384);
    let e = compile(&m, "lds", Target::Gfx942).unwrap_err();
    assert!(
        matches!(
            e,
            CodegenError::Resources {
                target: Target::Gfx942,
                needed: 98304,
                limit: 65536,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("98304"), "{e}");
    let c = compile(&m, "lds", Target::Gfx950).unwrap();
    assert_eq!(c.amd_resources().unwrap().lds_bytes, 98304);
}

#[test]
fn vgpr_overflow_is_rejected_with_the_numbers() {
    // One wavefront loads eight 64×128 f32 register tiles (1024 values a lane) before it stores
    // any: the stores may alias the loads, so every value is live at once, far over 512.
    let mut b = FuncBuilder::kernel("spill", 1);
    let g = b.param("g", Type::global(ScalarType::F32, 2, true));
    let z = b.const_i32(0);
    let tiles: Vec<_> = (0..8)
        .map(|i| {
            let row = b.const_i32(i);
            b.load(
                Type::tile(ScalarType::F32, 64, 128, tilekit_ir::Layout::Row),
                g,
                &[row, z],
            )
        })
        .collect();
    for (i, t) in tiles.into_iter().enumerate() {
        let row = b.const_i32(8 + i as i32);
        b.store(g, t, &[row, z]);
    }
    let mut m = Module::new();
    m.push(b.finish());
    let e = compile(&m, "spill", Target::Gfx950).unwrap_err();
    match &e {
        CodegenError::Resources {
            target: Target::Gfx950,
            needed,
            limit: 512,
            resource,
            ..
        } => {
            assert!(*needed > 512, "{e}");
            assert!(resource.contains("spilled to scratch"), "{e}");
        }
        other => panic!("expected a register overflow, got {other}"),
    }
}

/// The small kernels of the NVIDIA tests (every mma variant, shared-memory GEMMs, vector maps,
/// masks, warpgroup mma, helpers, scalar control flow, layout changes) compile and link for
/// gfx942 without scratch.
#[test]
fn small_kernels_compile_and_link_without_scratch() {
    use tilekit_ir::MmaVariant;
    let mut ks = kernels::small();
    ks.push(("mask_kinds", kernels::mask_kinds(tilekit_ir::Layout::Row)));
    for v in MmaVariant::ALL {
        ks.push(("mma_global", kernels::mma_global(2, 2, v)));
    }
    for (name, m) in ks {
        let c = compile(&m, name, Target::Gfx942).unwrap_or_else(|e| panic!("{name}: {e}"));
        let r = c.amd_resources().expect("metadata note");
        assert_eq!(r.scratch_bytes, 0, "{name}: {r:?}");
        if name.starts_with("mma") || name == "gemm_shared" {
            assert!(resources::mfma_count(c.stage(Stage::Asm)) > 0, "{name}");
        }
    }
}

#[test]
fn sass_of_an_amd_kernel_is_an_error_pointing_at_its_assembly() {
    let e = get("text_examples__gemm", Target::Gfx942)
        .sass()
        .unwrap_err();
    assert!(
        e.to_string().contains("gfx942") && e.to_string().contains("asm"),
        "{e}"
    );
}

/// On AMD a shared → register load is emitted at its first use: in attention, V's loads come
/// after the first MFMA (S = Q·Kᵀ), not before it where the IR has them.
#[test]
fn shared_loads_are_emitted_at_their_first_use() {
    let mlir = get("text_examples__attention", Target::Gfx942).stage(Stage::Mlir);
    let first_mfma = mlir.find("rocdl.mfma").expect("an MFMA");
    // K (row layout) and V (col layout, LDS holds it transposed) are both read as 8-byte
    // groups: K's before the first MFMA, V's after it.
    let group = "!llvm.ptr<3> -> vector<4xbf16>";
    assert!(
        mlir[..first_mfma].contains(group),
        "K is loaded before S is computed"
    );
    assert!(
        mlir[first_mfma..].contains(group),
        "V is loaded before S is computed"
    );
}

/// …but never past an op that writes shared memory: the load of `t` stays before the store
/// that overwrites the tile, although `t` is used only after it.
#[test]
fn deferred_shared_loads_do_not_move_past_stores() {
    let mut b = FuncBuilder::kernel("wr", 1);
    let g = b.param("g", Type::global(ScalarType::F32, 2, true));
    let s = b.alloc_shared(Type::shared_tile(ScalarType::F32, 16, 16, Swizzle::None));
    let z = b.const_i32(0);
    b.copy(Scope::Warp, s, g, &[z, z]);
    let t = b.load(
        Type::tile(ScalarType::F32, 16, 16, tilekit_ir::Layout::Row),
        s,
        &[],
    );
    let ones = b.fill(
        Type::tile(ScalarType::F32, 16, 16, tilekit_ir::Layout::Row),
        1.0,
    );
    b.store(s, ones, &[]);
    b.store(g, t, &[z, z]);
    let mut m = Module::new();
    m.push(b.finish());
    tilekit_ir::verify(&m).unwrap();
    let c = compile(&m, "wr", Target::Gfx942).unwrap();
    let mlir = c.stage(Stage::Mlir);
    let load = mlir.find("!llvm.ptr<3> -> f32").expect("the tile load");
    let last_lds_store = mlir.rfind(": f32, !llvm.ptr<3>").expect("the tile store");
    assert!(load < last_lds_store, "the load moved past the store");
}

/// f16 operands take the f16 MFMAs: `v_mfma_f32_16x16x16_f16` (gfx90a: `…16x16x16f16`) and on
/// gfx950, for a K of 32, `v_mfma_f32_16x16x32_f16`.
#[test]
fn f16_mma_uses_the_f16_mfma() {
    use tilekit_ir::Layout::{Col, Row};
    use tilekit_ir::ScalarType::{F16, F32};
    let mut b = FuncBuilder::kernel("mma_f16", 1);
    let a = b.param("a", Type::global(F16, 2, false));
    let bm = b.param("b", Type::global(F16, 2, false));
    let c = b.param("c", Type::global(F32, 2, true));
    let z = b.const_i32(0);
    let af = b.load(Type::tile(F16, 16, 32, Row), a, &[z, z]);
    let bf = b.load(Type::tile(F16, 32, 16, Col), bm, &[z, z]);
    let acc = b.zeros(Type::tile(F32, 16, 16, Row));
    let d = b.mma(tilekit_ir::MmaVariant::AB, af, bf, acc);
    b.store(c, d, &[z, z]);
    let mut m = Module::new();
    m.push(b.finish());
    tilekit_ir::verify(&m).unwrap();
    for (t, want) in [
        (Target::Gfx90a, "v_mfma_f32_16x16x16f16"),
        (Target::Gfx942, "v_mfma_f32_16x16x16_f16"),
        (Target::Gfx950, "v_mfma_f32_16x16x32_f16"),
    ] {
        let c = compile(&m, "mma_f16", t).unwrap_or_else(|e| panic!("{t}: {e}"));
        let asm = c.stage(Stage::Asm);
        assert!(asm.contains(want), "{t}: no {want}");
    }
}

/// 32 warps are 1024 threads on NVIDIA but 2048 in wavefronts of 64: more than a work-group may
/// have.
#[test]
fn too_many_wavefronts_are_rejected_with_the_numbers() {
    let mut b = FuncBuilder::kernel("wide", 32);
    let g = b.param("g", Type::global(ScalarType::F32, 1, true));
    let z = b.const_i32(0);
    let x = b.const_f32(1.0);
    b.store(g, x, &[z]);
    let mut m = Module::new();
    m.push(b.finish());
    tilekit_ir::verify(&m).unwrap();
    assert!(compile(&m, "wide", Target::Sm80).is_ok());
    let e = compile(&m, "wide", Target::Gfx942).unwrap_err();
    assert!(
        matches!(
            e,
            CodegenError::Resources {
                needed: 2048,
                limit: 1024,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("32 warps of 64 lanes"), "{e}");
}

/// Block and grid coordinates: `rocdl.workgroup.id.*` and the grid size from the code object
/// v5 hidden arguments (`hidden_block_count_*`, read through `llvm.amdgcn.implicitarg.ptr`),
/// which the metadata then declares.
#[test]
fn grid_dimensions_come_from_the_hidden_kernel_arguments() {
    use tilekit_ir::Dim3;
    let mut b = FuncBuilder::kernel("coords", 1);
    let g = b.param("g", Type::global(ScalarType::I32, 1, true));
    let mut acc = b.const_i32(0);
    for d in [Dim3::X, Dim3::Y, Dim3::Z] {
        let n = b.grid_dim(d);
        let i = b.block_idx(d);
        let w = b.warp_idx();
        acc = b.add(acc, n);
        acc = b.add(acc, i);
        acc = b.add(acc, w);
    }
    let z = b.const_i32(0);
    b.store(g, acc, &[z]);
    let mut m = Module::new();
    m.push(b.finish());
    tilekit_ir::verify(&m).unwrap();
    let c = compile(&m, "coords", Target::Gfx942).unwrap();
    assert!(c
        .stage(Stage::Llvm)
        .contains("@llvm.amdgcn.implicitarg.ptr"));
    let asm = c.stage(Stage::Asm);
    assert!(
        asm.contains(".value_kind:     hidden_block_count_x"),
        "no hidden args"
    );
    assert!(
        asm.contains(".value_kind:     hidden_block_count_z"),
        "no hidden args"
    );
}

/// A transpose and a layout change go through each wavefront's scratch buffer in LDS, ordered
/// by wavefront-scope fences.
#[test]
fn transposes_go_through_per_wavefront_lds_scratch() {
    let m = kernels::relayout();
    for t in CHIPS {
        let c = compile(&m, "relayout", t).unwrap_or_else(|e| panic!("{t}: {e}"));
        // Two wavefronts × 16×32 f32.
        assert_eq!(c.shared_bytes, 2 * 16 * 32 * 4, "{t}");
        assert!(
            c.stage(Stage::Mlir).contains("syncscope(\"wavefront\")"),
            "{t}"
        );
        assert_eq!(c.amd_resources().unwrap().scratch_bytes, 0, "{t}");
    }
}

/// The GEMM and attention hot loops of the kernel library load global memory in 16-byte
/// chunks (`global_load_dwordx4`), with no element-wise `global_load_ushort` and no more
/// exec-masked branches than 16-byte loads, in the variant for launches whose views are
/// 16-byte aligned (the general variant copies element by element). LDS is written 8 or 16
/// bytes at a time, except the tiles LDS holds transposed (the B operands), whose elements
/// are written from the loaded dwords' halves (`ds_write_b16` and `ds_write_b16_d16_hi` in
/// equal numbers: nothing unpacks them); every register tile is read 8 bytes at a time (no
/// `ds_read_u16`).
#[test]
fn gemm_and_attention_hot_loops_load_global_memory_in_16_byte_chunks() {
    use tilekit_codegen::hot_loop::amdgpu_hot_loop;
    use tilekit_codegen::{compile_with, Facts};
    for (stem, kernel) in [
        ("dsl_gemm__dsl_gemm_tile_ir", "gemm"),
        ("dsl_attention__dsl_attention", "attention_fwd"),
    ] {
        let m = acceptance::snapshot_module(stem);
        let func = m.funcs.iter().find(|f| f.name == kernel).expect("kernel");
        for facts in [Facts::all_aligned16(func)] {
            for t in [Target::Gfx942, Target::Gfx950] {
                let c = compile_with(&m, kernel, t, &facts)
                    .unwrap_or_else(|e| panic!("{stem} {facts} on {t}: {e}"));
                let hl = amdgpu_hot_loop(c.stage(Stage::Asm))
                    .expect("parsable assembly")
                    .expect("a hot loop");
                let n = |op: &str| hl.mix.get(op).copied().unwrap_or(0);
                let what = format!("{stem} {facts} on {t}: {:?}", hl.mix);
                assert!(n("global_load_dwordx4") > 0, "{what}");
                for narrow in ["global_load_ushort", "global_load_short_d16", "ds_read_u16"] {
                    assert_eq!(n(narrow), 0, "{narrow}: {what}");
                }
                assert_eq!(n("ds_write_b16"), n("ds_write_b16_d16_hi"), "{what}");
                assert!(
                    n("s_cbranch_execz") <= n("global_load_dwordx4"),
                    "one exec branch per 16-byte load at most: {what}"
                );
            }
        }
    }
}
