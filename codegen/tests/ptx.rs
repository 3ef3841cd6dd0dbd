//! Every kernel that lowers is assembled by ptxas for its target; what does not lower is an
//! error naming the op and the target; resource limits are checked before PTX emission.

mod acceptance;
mod kernels;

use tilekit_codegen::{compile, ptxas, sass, CodegenError, Compiled, Stage, Target};
use tilekit_ir::ScalarType::{BF16, F32};
use tilekit_ir::{
    rt, rt_col, BcastAxis, BinaryFn, FuncBuilder, MmaVariant, Module, ReduceAxis, ReduceFn, Scope,
    Swizzle, Type,
};

const NVIDIA: [Target; 2] = [Target::Sm80, Target::Sm90a];

/// The small kernels of both vendors' tests with the NVIDIA tests' `mma_global` variants.
fn small_kernels() -> Vec<(&'static str, Module)> {
    let mut ks = vec![
        ("mma_global", kernels::mma_global(2, 2, MmaVariant::AB)),
        ("mma_global", kernels::mma_global(1, 2, MmaVariant::ABt)),
        ("mma_global", kernels::mma_global(2, 1, MmaVariant::AtB)),
        ("mma_global", kernels::mma_global(1, 1, MmaVariant::AtBt)),
    ];
    ks.extend(kernels::small());
    ks
}

fn assemble(c: &Compiled) -> ptxas::Assembled {
    ptxas::assemble(c.ptx(), c.target).unwrap_or_else(|e| panic!("{} {}: {e}", c.kernel, c.target))
}

#[test]
fn small_kernels_assemble_without_spills_on_both_targets() {
    for (name, m) in small_kernels() {
        for t in NVIDIA {
            let c = compile(&m, name, t).unwrap_or_else(|e| panic!("{name} {t}: {e}"));
            let a = assemble(&c);
            assert_eq!(
                (a.report.spill_store_bytes, a.report.spill_load_bytes),
                (0, 0),
                "{name} {t}: {:?}",
                a.report
            );
            assert!(a.report.registers > 0 && a.report.registers <= 255);
            assert_eq!(
                u64::from(a.report.shared_bytes),
                c.shared_bytes,
                "{name} {t}"
            );
        }
    }
}

/// Every acceptance kernel lowers and assembles on both targets; GEMM and attention (default
/// configurations, causal or not) with HMMA, LDSM and LDGSTS (`cp.async`) in their SASS and
/// no spills.
#[test]
fn acceptance_kernels_assemble_on_both_targets() {
    for (snap, kernel) in acceptance::KERNELS {
        let m = acceptance::module(snap);
        for t in NVIDIA {
            let c = compile(&m, kernel, t).unwrap_or_else(|e| panic!("{snap} {t}: {e}"));
            let a = assemble(&c);
            println!("{snap} {t}: {:?}", a.report);
            if matches!(
                snap,
                "gemm" | "gemm_bf16_out" | "attention" | "attention_causal"
            ) {
                assert_eq!(a.report.spill_store_bytes, 0, "{snap} {t} spills");
                let mix = sass::instruction_mix(&sass::disassemble(&a.cubin).unwrap());
                assert!(
                    mix.get("HMMA").copied().unwrap_or(0) > 0,
                    "{snap} {t}: {mix:?}"
                );
                assert!(
                    mix.get("LDSM").copied().unwrap_or(0) > 0,
                    "{snap} {t}: {mix:?}"
                );
                let moved = hmma_operands_after_moves(&sass::disassemble(&a.cubin).unwrap());
                assert!(moved.is_empty(), "{snap} {t}: {moved:#?}");
            }
        }
    }
}

/// The SASS lines of `HMMA.16816`s that read an A (four registers) or B (two registers)
/// operand register last written by a register move (`MOV`, `IMAD.MOV`), in program order.
/// `LDSM.x4` writes four consecutive registers and HMMA reads its operands from consecutive
/// registers, so an operand that `ldmatrix` delivered in the order the `mma` reads it needs no
/// move; a move here means ptxas had to reassemble an operand.
fn hmma_operands_after_moves(sass: &str) -> Vec<String> {
    let mut moved = std::collections::HashSet::new();
    let mut found = Vec::new();
    for line in sass.lines() {
        let Some((_, ins)) = line.split_once("*/") else {
            continue;
        };
        let mut ins = ins.trim().trim_end_matches(';').trim();
        if ins.starts_with('@') {
            ins = ins.split_once(' ').map_or("", |(_, rest)| rest.trim());
        }
        let Some((opcode, operands)) = ins.split_once(' ') else {
            continue;
        };
        let regs: Vec<Option<u32>> = operands
            .split(',')
            .map(|o| {
                let o = o.trim().trim_end_matches(".reuse");
                o.strip_prefix('R').and_then(|n| n.parse().ok())
            })
            .collect();
        let hmma = opcode.starts_with("HMMA.16816");
        if hmma {
            for (k, width) in [(1, 4), (2, 2)] {
                if let Some(&Some(r)) = regs.get(k) {
                    if (r..r + width).any(|x| moved.contains(&x)) {
                        found.push(line.trim().to_string());
                    }
                }
            }
        }
        if let Some(&Some(d)) = regs.first() {
            if opcode == "MOV" || opcode.starts_with("IMAD.MOV") {
                moved.insert(d);
            } else {
                // HMMA (f32 accumulators) and LDSM.x4 write four registers.
                let width = if hmma || opcode.starts_with("LDSM") {
                    4
                } else {
                    1
                };
                for x in d..d + width {
                    moved.remove(&x);
                }
            }
        }
    }
    found
}

#[test]
fn the_hmma_operand_move_check_finds_a_reassembled_operand() {
    // The shape ptxas produced when ldmatrix delivered B's pairs 0 and 2 apart.
    let sass = "
        /*0010*/ LDSM.16.MT88.4 R40, [R119+0x1000] ;
        /*0020*/ LDSM.16.M88.4 R72, [R123] ;
        /*0030*/ IMAD.MOV.U32 R36, RZ, RZ, R40 ;
        /*0040*/ IMAD.MOV.U32 R37, RZ, RZ, R42 ;
        /*0050*/ HMMA.16816.F32.BF16 R64, R72, R36, R64 ;
        /*0060*/ HMMA.16816.F32.BF16 R68, R72.reuse, R40, R68 ;
        /*0070*/ @P0 MOV R43, R1 ;
        /*0080*/ HMMA.16816.F32.BF16 R60, R72, R42, R60 ;
    ";
    let found = hmma_operands_after_moves(sass);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].contains("R64, R72, R36"));
    assert!(found[1].contains("R60, R72, R42"));
}

#[test]
fn semaphores_are_mbarriers_on_sm_90a_and_shared_atomics_on_sm_80() {
    let m = acceptance::module("ws_gemm");
    let hopper = compile(&m, "ws_gemm", Target::Sm90a).unwrap();
    for instr in [
        "mbarrier.init",
        "mbarrier.expect_tx",
        "mbarrier.try_wait.parity",
        "mbarrier.complete_tx",
    ] {
        assert!(hopper.ptx().contains(instr), "sm_90a: {instr}");
    }
    let ampere = compile(&m, "ws_gemm", Target::Sm80).unwrap();
    assert!(!ampere.ptx().contains("mbarrier"));
    assert!(ampere.ptx().contains("atom.shared.add.u64"));
}

#[test]
fn calls_are_inlined() {
    let c = compile(&kernels::with_helper(), "with_helper", Target::Sm80).unwrap();
    assert!(!c.ptx().contains("call"), "{}", c.ptx());
    assert!(!c.stage(Stage::Mlir).contains("axpy"));
}

#[test]
fn ptx_names_its_version_and_target() {
    let m = kernels::scale();
    for (t, version) in [
        (Target::Sm80, ".version 8.0"),
        (Target::Sm90a, ".version 8.3"),
    ] {
        let c = compile(&m, "scale", t).unwrap();
        assert!(c.ptx().contains(version), "{t}");
        assert!(c.ptx().contains(&format!(".target {}", t.name())), "{t}");
        assert!(c.ptx().contains(".entry scale("), "{t}");
    }
}

#[test]
fn output_is_deterministic() {
    let m = kernels::gemm_shared(BF16, Swizzle::B64);
    let a = compile(&m, "gemm_shared", Target::Sm80).unwrap();
    let b = compile(&m, "gemm_shared", Target::Sm80).unwrap();
    for s in Stage::ALL {
        assert_eq!(a.stage(s), b.stage(s), "{}", s.name());
        assert_eq!(
            a.stage(s).is_empty(),
            !s.applies_to(Target::Sm80),
            "{}",
            s.name()
        );
    }
}

#[test]
fn metadata_describes_the_launch() {
    let c = compile(
        &kernels::gemm_shared(F32, Swizzle::B64),
        "gemm_shared",
        Target::Sm80,
    )
    .unwrap();
    assert_eq!((c.warps, c.block_threads()), (4, 128));
    assert_eq!(c.shared_bytes, 2048 + 2048);
    assert!(!c.dynamic_shared);
    assert_eq!(c.args.len(), 3);
    assert!(c.ptx().contains(".maxntid 128, 1, 1"));
}

#[test]
fn exp2_is_ex2_approx_and_reductions_are_shuffles() {
    let c = compile(&kernels::softmax_rows(), "softmax_rows", Target::Sm80).unwrap();
    assert!(c.ptx().contains("ex2.approx.ftz.f32"));
    assert!(c.ptx().contains("shfl.sync.bfly.b32"));
    assert!(!c.ptx().contains("__nv_"), "no libdevice calls");
}

#[test]
fn bf16_conversion_rounds_to_nearest_even() {
    let c = compile(&kernels::vector_map(), "vector_map", Target::Sm80).unwrap();
    assert!(c.ptx().contains("cvt.rn.bf16.f32"), "{}", c.ptx());
}

fn one_alloc_kernel(rows: u32, cols: u32) -> Module {
    let mut b = FuncBuilder::kernel("big_smem", 4);
    let g = b.param("g", Type::global(F32, 2, false));
    let s = b.alloc_shared(Type::shared_tile(F32, rows, cols, Swizzle::None));
    let z = b.const_i32(0);
    b.copy(Scope::Block, s, g, &[z, z]);
    let mut m = Module::new();
    m.push(b.finish());
    m
}

#[test]
fn shared_memory_over_the_limit_is_rejected_with_the_numbers() {
    // 256×256 f32 = 256 KiB: over both targets' limits.
    let m = one_alloc_kernel(256, 256);
    for (t, limit) in [(Target::Sm80, 163 * 1024), (Target::Sm90a, 227 * 1024)] {
        match compile(&m, "big_smem", t) {
            Err(CodegenError::Resources {
                needed,
                limit: l,
                target,
                ..
            }) => assert_eq!((needed, l, target), (256 * 1024, limit, t)),
            other => panic!("{t}: {other:?}"),
        }
    }
    // 192×256 f32 = 192 KiB: fits sm_90a (as dynamic shared memory), not sm_80.
    let m = one_alloc_kernel(192, 256);
    assert!(matches!(
        compile(&m, "big_smem", Target::Sm80),
        Err(CodegenError::Resources { .. })
    ));
    let c = compile(&m, "big_smem", Target::Sm90a).unwrap();
    assert!(c.dynamic_shared);
    assemble(&c);
}

#[test]
fn loop_carried_registers_over_the_limit_are_rejected_with_the_numbers() {
    let mut b = FuncBuilder::kernel("fat", 1);
    let g = b.param("g", Type::global(F32, 2, true));
    let z = b.const_i32(0);
    let one = b.const_i32(1);
    let acc = b.zeros(rt(F32, 128, 128)); // 512 f32 per lane
    let r = b.for_range(z, one, one, &[acc], |_, _, c| vec![c[0]]);
    b.store(g, r[0], &[z, z]);
    let mut m = Module::new();
    m.push(b.finish());
    let e = compile(&m, "fat", Target::Sm80).unwrap_err();
    assert!(
        matches!(
            e,
            CodegenError::Resources {
                needed: 512,
                limit: 255,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("512"), "{e}");
}

#[test]
fn ops_without_a_lowering_name_the_op_and_the_target() {
    // A row vector that meets a row tile and a col tile needs two distributions at once.
    let mut b = FuncBuilder::kernel("mixed", 1);
    let g = b.param("g", Type::global(F32, 2, true));
    let z = b.const_i32(0);
    let t = b.load(rt(F32, 16, 16), g, &[z, z]);
    let u = b.load(rt_col(F32, 16, 16), g, &[z, z]);
    let s = b.reduce(ReduceAxis::Row, ReduceFn::Sum, t);
    let u = b.bcast(BcastAxis::Row, BinaryFn::Add, u, s);
    b.store(g, u, &[z, z]);
    let mut m = Module::new();
    m.push(b.finish());
    tilekit_ir::verify(&m).unwrap();
    let e = compile(&m, "mixed", Target::Sm90a).unwrap_err();
    assert!(
        matches!(&e, CodegenError::Unsupported { op, target: Target::Sm90a, .. } if op == "bcast_row.add"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("`bcast_row.add` cannot be lowered for sm_90a"),
        "{e}"
    );

    // The same rule names the AMD target.
    let e = compile(&m, "mixed", Target::Gfx942).unwrap_err();
    assert!(
        e.to_string()
            .contains("`bcast_row.add` cannot be lowered for gfx942"),
        "{e}"
    );
}

#[test]
fn transposes_and_layout_changes_go_through_per_warp_scratch() {
    let m = kernels::relayout();
    for t in NVIDIA {
        let c = compile(&m, "relayout", t).unwrap_or_else(|e| panic!("{t}: {e}"));
        // Two warps × 16×32 f32.
        assert_eq!(c.shared_bytes, 2 * 16 * 32 * 4, "{t}");
        assert!(c.ptx().contains("bar.warp.sync"), "{t}");
        assemble(&c);
    }
}

#[test]
fn unknown_kernels_list_the_available_ones() {
    let e = compile(&kernels::scale(), "nope", Target::Sm80).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no kernel `nope` in the module; kernels: scale"
    );
}

/// Conversions between every pair of non-fp8 dtypes, and every unary and binary map on every
/// dtype it is defined for, lower and assemble (scalars; tiles share the per-element rules).
#[test]
fn every_conversion_and_map_assembles() {
    use tilekit_ir::ScalarType::*;
    use tilekit_ir::{BinaryFn, UnaryFn};
    let dtypes = [F32, F16, BF16, I8, I32, U32, I64, Bool];
    let mut b = FuncBuilder::kernel("conversions", 1);
    let params: Vec<_> = dtypes
        .iter()
        .map(|&d| {
            let x = b.param(&format!("x_{d}"), Type::scalar(d));
            let g = b.param(&format!("g_{d}"), Type::global(d, 1, true));
            (d, x, g)
        })
        .collect();
    let z = b.const_i32(0);
    for &(from, x, _) in &params {
        for &(to, _, g) in &params {
            let y = b.convert_dtype(x, to);
            b.store(g, y, &[z]);
        }
        for f in UnaryFn::ALL {
            let ok = if from.is_float() {
                f != UnaryFn::Not
            } else if matches!(from, Bool | U32) {
                f == UnaryFn::Not
            } else {
                !f.float_only()
            };
            if ok {
                let y = b.unary(f, x);
                b.store(params.iter().find(|p| p.0 == from).unwrap().2, y, &[z]);
            }
        }
        for f in BinaryFn::ALL {
            let ok = if from.is_float() {
                !f.int_only()
            } else if from == Bool {
                matches!(f, BinaryFn::And | BinaryFn::Or | BinaryFn::Xor)
            } else {
                !f.float_only()
            };
            if ok {
                let y = b.binary(f, x, x);
                b.store(params.iter().find(|p| p.0 == from).unwrap().2, y, &[z]);
            }
        }
    }
    let mut m = Module::new();
    m.push(b.finish());
    tilekit_ir::verify(&m).unwrap();
    for t in NVIDIA {
        let c = compile(&m, "conversions", t).unwrap_or_else(|e| panic!("{t}: {e}"));
        assemble(&c);
    }
}

/// `copy_async` on sm_80 is a multi-stage `cp.async` pipeline: each copy issues its chunks and
/// commits a group without waiting for it; the group's bytes are counted on the semaphore only
/// when the warp would block (a semaphore wait that is not yet satisfied, a block barrier, the
/// kernel's end) or when more than four groups are in flight (`cp.async.wait_group 3`).
/// That is the variant for 16-byte aligned views; the general variant copies element by
/// element (its views guarantee no more than their element's alignment).
#[test]
fn copy_async_on_sm_80_is_an_asynchronous_cp_async_pipeline() {
    let m = acceptance::module("ws_gemm");
    let func = m
        .funcs
        .iter()
        .find(|f| f.name == "ws_gemm")
        .expect("kernel");
    let facts = tilekit_codegen::Facts::all_aligned16(func);
    let c = tilekit_codegen::compile_with(&m, "ws_gemm", Target::Sm80, &facts).unwrap();
    let a = assemble(&c);
    println!("ws_gemm sm_80: {:?}", a.report);
    let ptx = c.ptx();
    for instr in [
        "cp.async.cg.shared.global",
        "cp.async.commit_group;",
        "cp.async.wait_group 3;",
        "cp.async.wait_group 0;",
    ] {
        assert!(ptx.contains(instr), "{instr}");
    }
    assert!(!ptx.contains("mbarrier"));
    // One group per `copy_async` (A and B tiles), none waited for where it is committed: the
    // synchronous lowering was `commit_group` then `wait_group 0` right away.
    let lines: Vec<&str> = ptx
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .collect();
    let commits: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i] == "cp.async.commit_group;")
        .collect();
    assert_eq!(commits.len(), 2);
    for i in commits {
        assert!(
            !lines[i + 1].starts_with("cp.async.wait_group"),
            "{}",
            lines[i + 1]
        );
    }
    // The queue of committed groups lives in registers (its `alloca`s promoted): no stack.
    assert_eq!(
        (
            a.report.spill_store_bytes,
            a.report.spill_load_bytes,
            a.report.stack_frame_bytes
        ),
        (0, 0, 0),
        "{:?}",
        a.report
    );
}

/// One warp waits on the phase that its own `copy_async` completes: the wait finds the phase
/// open, so the warp first counts its queued copy (`cp.async.wait_group 0`), then sees the
/// phase complete. Lowers and assembles on both targets.
#[test]
fn a_warp_may_wait_for_its_own_copy_async() {
    let text = "kernel @self_wait(%a: gl<bf16, 2>, %c: gl<bf16, 2, mut>) warps(1) {
  %t = alloc_shared @block () : [1 x st<bf16, 64x64, swz128>]
  %ss = alloc_shared @block () : [1 x sem]
  %z = const[0] () : i32
  %s = shared.index (%ss, %z) : sem
  %ti = shared.index (%t, %z) : st<bf16, 64x64, swz128>
  sem.init[1] (%s)
  barrier @block ()
  %b = block_idx.x () : i32
  sem.expect[8192] (%s)
  sem.arrive (%s)
  copy_async (%ti, %a, %s, %b, %z)
  sem.wait (%s, %z)
  %x = load (%ti) : rt<bf16, 64x64, row>
  store (%c, %x, %b, %z)
  return ()
}
";
    let m = tilekit_ir::parse_module(text).unwrap();
    tilekit_ir::verify(&m).unwrap();
    for t in NVIDIA {
        let c = compile(&m, "self_wait", t).unwrap_or_else(|e| panic!("{t}: {e}"));
        let a = assemble(&c);
        assert_eq!(
            (a.report.spill_store_bytes, a.report.stack_frame_bytes),
            (0, 0),
            "{t}: {:?}",
            a.report
        );
        if t == Target::Sm80 {
            assert!(c.ptx().contains("cp.async.wait_group 0;"));
        }
    }
}
