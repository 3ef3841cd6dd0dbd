//! Loops nested in the hot loop count once per trip: hand-written SASS and AMDGPU assembly
//! with an inner loop of known trips (the figure grows with them), of unknown trips (counted
//! once and said so), and none (the count of the hot loop alone).

use tilekit_codegen::hot_loop::{amdgpu_hot_loop, sass_hot_loop, HotLoop, InnerLoop};

/// `nvdisasm -c` text of the lines: labels as written, instructions at consecutive addresses.
fn sass(lines: &[&str]) -> String {
    let mut s = String::from("\t.section\t.text.k,\"ax\",@progbits\nk:\n.text.k:\n");
    for (i, l) in lines.iter().enumerate() {
        if l.ends_with(':') {
            s.push_str(l);
        } else {
            s.push_str(&format!(
                "        /*{:04x}*/                   {l} ;",
                i * 16
            ));
        }
        s.push('\n');
    }
    s
}

/// AMDGPU assembly of a kernel `k` with the body, as LLVM prints it (with its metadata).
fn amdgpu(body: &[&str]) -> String {
    let lines: Vec<String> = body
        .iter()
        .map(|l| match l.ends_with(':') {
            true => l.to_string(),
            false => format!("\t{l}"),
        })
        .collect();
    format!(
        "\t.text\n\t.globl\tk\nk:\n{}\n.Lfunc_end0:\n\t.amdgpu_metadata\namdhsa.kernels:\n  - .name: k\n\t.end_amdgpu_metadata\n",
        lines.join("\n")
    )
}

fn sass_loop(s: &str) -> HotLoop {
    sass_hot_loop(s)
        .expect("the SASS reads")
        .expect("the SASS has a loop")
}

/// A hot loop (1 HMMA, 2 more instructions around) holding a copy loop of 5 instructions whose
/// counter steps by 8 from `init` up to `8 · trips` (the compare after the step).
fn sass_copy_loop(init: &str, compare: &str) -> String {
    sass(&[
        "MOV R1, c[0x0][0x28]",
        ".L_x_0:",
        "HMMA.16816.F32.BF16 R16, R12, R14, R16",
        init,
        ".L_x_1:",
        "LDG.E R8, [R2.64]",
        "STS [R3], R8",
        "VIADD R5, R5, 0x8",
        compare,
        "@P1 BRA `(.L_x_1)",
        "BAR.SYNC.DEFER_BLOCKING 0x0",
        "@P0 BRA `(.L_x_0)",
        "EXIT",
    ])
}

#[test]
fn the_figure_grows_with_the_trips_of_a_constant_inner_loop() {
    for trips in [1u64, 4, 17, 130] {
        let cmp = format!("ISETP.NE.U32.AND P1, PT, R5, {:#x}, PT", 8 * trips);
        let h = sass_loop(&sass_copy_loop("IMAD.MOV.U32 R5, RZ, RZ, RZ", &cmp));
        assert_eq!(h.header, ".L_x_0");
        let want = 4 + 5 * trips as usize;
        assert_eq!((h.instructions, h.tensor, h.tensor_flops), (want, 1, 4096));
        assert_eq!(
            h.inner_loops,
            vec![InnerLoop {
                header: ".L_x_1".into(),
                trips: Some(trips),
                instructions: 5
            }]
        );
        assert_eq!(h.mix.get("LDG"), Some(&(trips as usize)));
        let figure = (want - 1) as f64 / 4.096;
        assert!((h.figure().unwrap() - figure).abs() < 1e-12, "{h}");
        assert!(h
            .to_string()
            .contains(&format!("(inner loop .L_x_1: {trips} trips of 5 instrs)")));
    }
}

#[test]
fn an_inner_loop_bounded_by_a_run_time_value_is_counted_once_and_flagged() {
    let cases = [
        // The bound is a kernel parameter.
        sass_copy_loop(
            "IMAD.MOV.U32 R5, RZ, RZ, RZ",
            "ISETP.NE.U32.AND P1, PT, R5, c[0x0][0x17c], PT",
        ),
        // The counter starts at a loaded value.
        sass_copy_loop("LDG.E R5, [R6.64]", "ISETP.NE.U32.AND P1, PT, R5, 0x80, PT"),
        // The branch tests a combination of two predicates.
        sass_copy_loop(
            "IMAD.MOV.U32 R5, RZ, RZ, RZ",
            "ISETP.NE.U32.AND P1, PT, R5, 0x80, P2",
        ),
    ];
    for s in &cases {
        let h = sass_loop(s);
        assert_eq!((h.instructions, h.tensor), (4 + 5, 1));
        assert_eq!(h.inner_loops.len(), 1);
        assert_eq!(h.inner_loops[0].trips, None);
        assert!(h
            .to_string()
            .contains("inner loop .L_x_1 of unknown trip count counted once"));
    }
}

#[test]
fn a_hot_loop_without_inner_loops_is_counted_as_it_stands() {
    let s = sass(&[
        ".L_x_0:",
        "LDSM.16.M88.4 R12, [R2]",
        "HMMA.16816.F32.BF16 R16, R12, R14, R16",
        "HMMA.16816.F32.BF16 R20, R12, R15, R20",
        "IADD3 R0, R0, 0x1, RZ",
        "ISETP.NE.AND P0, PT, R0, 0x10, PT",
        "@P0 BRA `(.L_x_0)",
        "EXIT",
    ]);
    let h = sass_loop(&s);
    assert_eq!((h.instructions, h.tensor, h.tensor_flops), (6, 2, 8192));
    assert!(h.inner_loops.is_empty());
    assert!(!h.to_string().contains("inner loop"));
    assert!((h.figure().unwrap() - 4.0 / 8.192).abs() < 1e-12);
}

/// The trips and the instructions per trip of an inner loop made of `inner` (its back-branch
/// last), entered after `init` in the hot loop's header block; checks that the hot loop counts
/// them once per trip besides its HMMA, `init` and 2 more instructions.
fn trips_of(init: &[&str], inner: &[&str]) -> (Option<u64>, usize) {
    let mut lines = vec![".L_x_0:", "HMMA.16816.F32.BF16 R16, R12, R14, R16"];
    lines.extend(init);
    lines.push(".L_x_1:");
    lines.extend(inner);
    lines.extend(["BAR.SYNC.DEFER_BLOCKING 0x0", "@P0 BRA `(.L_x_0)", "EXIT"]);
    let h = sass_loop(&sass(&lines));
    assert_eq!(h.inner_loops.len(), 1, "{h}");
    let l = &h.inner_loops[0];
    let outside = 1 + init.len() + 2;
    assert_eq!(
        h.instructions,
        outside + l.instructions * l.trips.unwrap_or(1) as usize
    );
    (l.trips, l.instructions)
}

#[test]
fn counters_read_in_the_forms_ptxas_writes_them() {
    // Counting down to zero from a `MOV`.
    let down = trips_of(
        &["MOV R5, 0x6"],
        &[
            "STS [R3], R8",
            "IADD3 R5, R5, -0x1, RZ",
            "ISETP.NE.AND P1, PT, R5, RZ, PT",
            "@P1 BRA `(.L_x_1)",
        ],
    );
    assert_eq!(down, (Some(6), 4));
    // Compared before the step, the branch on the negated predicate, the start a half
    // constant of `HFMA2.MMA` (bits 0x0000_0002): seen 2, 3, 4, 5.
    let before = trips_of(
        &["HFMA2.MMA R5, -RZ, RZ, 0, 1.1920928955078125e-07"],
        &[
            "LDS R8, [R3]",
            "ISETP.GE.AND P1, PT, R5, 0x5, PT",
            "IADD3 R5, R5, 0x1, RZ",
            "@!P1 BRA `(.L_x_1)",
        ],
    );
    assert_eq!(before, (Some(4), 4));
    // A uniform counter and `BRA.U`.
    let uniform = trips_of(
        &["UMOV UR4, URZ"],
        &[
            "STS [R3], R8",
            "UIADD3 UR4, UR4, 0x1, URZ",
            "UISETP.NE.AND UP0, UPT, UR4, 0x3, UPT",
            "BRA.U UP0, `(.L_x_1)",
        ],
    );
    assert_eq!(uniform, (Some(3), 4));
    // The bound in a register set before the loop, the counter on the right, zeroed by CS2R
    // together with its neighbour.
    let bound = trips_of(
        &["MOV R7, 0x4", "CS2R R4, SRZ"],
        &[
            "STS [R3], R8",
            "VIADD R5, R5, 0x1",
            "ISETP.GT.AND P1, PT, R7, R5, PT",
            "@P1 BRA `(.L_x_1)",
        ],
    );
    assert_eq!(bound, (Some(4), 4));
}

#[test]
fn counters_that_are_not_constant_steps_have_unknown_trips() {
    let cmp = ["ISETP.NE.AND P1, PT, R5, 0x8, PT", "@P1 BRA `(.L_x_1)"];
    // Stepped under a predicate.
    let predicated = trips_of(
        &["MOV R5, RZ"],
        &["STS [R3], R8", "@P2 VIADD R5, R5, 0x1", cmp[0], cmp[1]],
    );
    assert_eq!(predicated.0, None);
    // Stepped by a register.
    let by_register = trips_of(
        &["MOV R5, RZ"],
        &["STS [R3], R8", "IADD3 R5, R5, R9, RZ", cmp[0], cmp[1]],
    );
    assert_eq!(by_register.0, None);
    // Started differently on the two ways into the loop.
    let s = sass(&[
        ".L_x_0:",
        "HMMA.16816.F32.BF16 R16, R12, R14, R16",
        "MOV R5, RZ",
        "@P3 BRA `(.L_x_1)",
        "MOV R5, 0x4",
        ".L_x_1:",
        "STS [R3], R8",
        "VIADD R5, R5, 0x1",
        cmp[0],
        cmp[1],
        "@P0 BRA `(.L_x_0)",
        "EXIT",
    ]);
    assert_eq!(sass_loop(&s).inner_loops[0].trips, None);
    // Never meeting its bound in 32 bits (steps of 2 from 1 towards 8).
    let never = trips_of(
        &["MOV R5, 0x1"],
        &["STS [R3], R8", "VIADD R5, R5, 0x2", cmp[0], cmp[1]],
    );
    assert_eq!(never.0, None);
}

#[test]
fn nested_inner_loops_multiply_their_trips() {
    let s = sass(&[
        ".L_x_0:",
        "HMMA.16816.F32.BF16 R16, R12, R14, R16",
        "MOV R5, RZ",
        ".L_x_1:",
        "CS2R R6, SRZ",
        ".L_x_2:",
        "LDS R8, [R3]",
        "IADD3 R6, R6, 0x1, RZ",
        "ISETP.NE.AND P2, PT, R6, 0x4, PT",
        "@P2 BRA `(.L_x_2)",
        "VIADD R5, R5, 0x1",
        "ISETP.LT.AND P1, PT, R5, 0x3, PT",
        "@P1 BRA `(.L_x_1)",
        "BAR.SYNC.DEFER_BLOCKING 0x0",
        "@P0 BRA `(.L_x_0)",
        "EXIT",
    ]);
    let h = sass_loop(&s);
    // 2 once, CS2R 3 times, the LDS loop 4 · 3 times, the middle latch 3 times, 2 once.
    assert_eq!(h.instructions, 2 + 3 + 4 * 12 + 3 * 3 + 2);
    assert_eq!(h.mix.get("LDS"), Some(&12));
    let trips: Vec<Option<u64>> = h.inner_loops.iter().map(|l| l.trips).collect();
    assert_eq!(trips, vec![Some(3), Some(4)]);
}

#[test]
fn amdgpu_scalar_counted_inner_loops_count_once_per_trip() {
    let with_exit = |test: &[&str]| {
        let mut body = vec![
            "s_mov_b32 s4, 0",
            ".LBB0_1:",
            "v_mfma_f32_16x16x16_bf16 v[10:13], v[8:9], v[8:9], v[10:13]",
            "s_mov_b32 s6, 0",
            ".LBB0_2:",
            "global_load_dword v2, v[0:1], off",
            "s_waitcnt vmcnt(0)",
            "ds_write_b32 v3, v2",
        ];
        body.extend(test);
        body.extend([
            "; %bb.3:",
            "s_barrier",
            "s_add_i32 s4, s4, 1",
            "s_cmp_lg_u32 s4, s5",
            "s_cbranch_scc1 .LBB0_1",
            "s_endpgm",
        ]);
        amdgpu_hot_loop(&amdgpu(&body))
            .expect("the assembly reads")
            .expect("the assembly has a loop")
    };
    let h = with_exit(&[
        "s_add_i32 s6, s6, 1",
        "s_cmp_lg_u32 s6, 8",
        "s_cbranch_scc1 .LBB0_2",
    ]);
    assert_eq!(h.header, ".LBB0_1");
    assert_eq!(
        (h.instructions, h.tensor, h.tensor_flops),
        (2 + 6 * 8 + 4, 1, 8192)
    );
    assert_eq!(h.inner_loops[0].trips, Some(8));
    assert!((h.figure().unwrap() - 53.0 / 8.192).abs() < 1e-12);
    // The same loop leaving on equality, with `s_addk_i32`.
    let eq = with_exit(&[
        "s_addk_i32 s6, 0x10",
        "s_cmpk_eq_u32 s6, 0x80",
        "s_cbranch_scc0 .LBB0_2",
    ]);
    assert_eq!(eq.inner_loops[0].trips, Some(8));
    // A vector compare: no known count.
    let vector = with_exit(&[
        "v_add_u32_e32 v6, 1, v6",
        "v_cmp_ne_u32_e32 vcc, 8, v6",
        "s_cbranch_vccnz .LBB0_2",
    ]);
    assert_eq!(vector.inner_loops[0].trips, None);
    assert_eq!(vector.instructions, 2 + 6 + 4);
    assert!(vector
        .to_string()
        .contains("inner loop .LBB0_2 of unknown trip count counted once"));
    // An instruction that sets SCC between the compare and the branch.
    let clobbered = with_exit(&[
        "s_cmp_lg_u32 s6, 8",
        "s_add_i32 s6, s6, 1",
        "s_cbranch_scc1 .LBB0_2",
    ]);
    assert_eq!(clobbered.inner_loops[0].trips, None);
}
