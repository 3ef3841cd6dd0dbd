//! The bank model seen through a launch: a hand-written kernel stores one word per lane at a
//! stride of `s` words, reads 16 bytes per lane, and loads four 8×8 matrices whose rows are `r`
//! bytes apart; the report's wavefronts per instruction must match the closed forms of the
//! 32-bank layout (a stride of `s` words puts gcd(s, 32) lanes on one bank; rows `r` bytes apart
//! put gcd(r / 16, 8) of a matrix's eight rows on the same four banks).

use tilekit_emu::{Emulator, GlobalMemory, LaunchConfig};

const KERNEL: &str = r#"
.version 8.0
.target sm_80
.address_size 64
.visible .entry banks(.param .u32 stride, .param .u32 row)
{
    .reg .b32 %r<16>;
    .shared .align 16 .b8 smem[16384];
    ld.param.u32 %r1, [stride];
    ld.param.u32 %r2, [row];
    mov.u32 %r3, %tid.x;
    mov.u32 %r4, smem;
    mul.lo.u32 %r5, %r3, %r1;
    shl.b32 %r5, %r5, 2;
    add.u32 %r6, %r4, %r5;
    st.shared.u32 [%r6], %r3;
    shl.b32 %r7, %r3, 4;
    add.u32 %r8, %r4, %r7;
    bar.sync 0;
    ld.shared.v4.u32 {%r9, %r10, %r11, %r12}, [%r8];
    mul.lo.u32 %r13, %r3, %r2;
    add.u32 %r13, %r4, %r13;
    ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%r9, %r10, %r11, %r12}, [%r13];
    ret;
}
"#;

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[test]
fn strided_stores_vector_loads_and_ldmatrix_count_their_conflicts() {
    let emu = Emulator::new(KERNEL).unwrap();
    let seed: u64 = rand::random();
    let mut state = seed | 1;
    let mut next = |n: u32| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % u64::from(n)) as u32
    };
    // Always the two extremes, then random strides and row pitches.
    let mut cases = vec![(1, 16), (32, 128)];
    cases.extend((0..12).map(|_| (1 + next(64), 16 * (1 + next(16)))));
    for (stride, row) in cases {
        let params = emu
            .param_buffer(
                "banks",
                &[stride.to_le_bytes().to_vec(), row.to_le_bytes().to_vec()],
            )
            .unwrap();
        let report = emu
            .launch(
                "banks",
                &LaunchConfig::new([1, 1, 1], [64, 1, 1]),
                &params,
                &mut GlobalMemory::new(),
            )
            .unwrap();
        let at = |op: &str| {
            report
                .shared_accesses
                .iter()
                .find(|s| s.opcode.starts_with(op))
                .unwrap_or_else(|| panic!("no {op} in {:?}", report.shared_accesses))
        };
        let ctx = format!("stride {stride} words, rows {row} bytes (seed {seed})");
        // Two warps, each one execution of each instruction.
        let st = at("st.shared");
        let ways = gcd(stride, 32);
        assert_eq!(st.executions, 2, "{ctx}");
        assert_eq!(
            (st.wavefronts, st.ideal, st.worst_ways),
            (2 * u64::from(ways), 2, ways),
            "{ctx}"
        );
        assert_eq!(st.conflicted(), ways > 1, "{ctx}");
        let v4 = at("ld.shared.v4");
        assert_eq!((v4.wavefronts, v4.ideal, v4.worst_ways), (8, 8, 1), "{ctx}");
        let lm = at("ldmatrix");
        let ways = gcd(row / 16, 8);
        assert_eq!(
            (lm.wavefronts, lm.ideal, lm.worst_ways),
            (8 * u64::from(ways), 8, ways),
            "{ctx}"
        );
        assert_eq!(
            report.bank_conflicts().count(),
            usize::from(gcd(stride, 32) > 1) + usize::from(ways > 1),
            "{ctx}"
        );
    }
}

#[test]
fn a_collect_scope_sums_every_launch_of_a_kernel_and_keeps_nothing_outside_it() {
    let emu = Emulator::new(KERNEL).unwrap();
    let run = |stride: u32| {
        let params = emu
            .param_buffer(
                "banks",
                &[stride.to_le_bytes().to_vec(), 16u32.to_le_bytes().to_vec()],
            )
            .unwrap();
        emu.launch(
            "banks",
            &LaunchConfig::new([1, 1, 1], [32, 1, 1]),
            &params,
            &mut GlobalMemory::new(),
        )
        .unwrap()
    };
    run(2); // outside any scope: not collected
    let (_, kernels) = tilekit_emu::banks::collect(|| {
        run(1);
        run(4);
    });
    assert_eq!(kernels.len(), 1);
    let k = &kernels[0];
    assert_eq!(k.kernel, "banks");
    let st = k
        .accesses
        .iter()
        .find(|s| s.opcode.starts_with("st.shared"))
        .unwrap();
    // One warp per launch: 1 wavefront (stride 1) + 4 (stride 4, 4-way) against 2 ideal.
    assert_eq!(
        (st.executions, st.wavefronts, st.ideal, st.worst_ways),
        (2, 5, 2, 4)
    );
    assert_eq!(st.conflicted_executions, 1);
    assert_eq!(k.conflicts().count(), 1);
}
