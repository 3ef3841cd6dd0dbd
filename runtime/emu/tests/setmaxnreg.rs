//! `setmaxnreg` in whole kernels: a warp-specialized register split (warpgroup 0 gives
//! registers up, warpgroup 1 takes them) runs clean and leaves every value as it was; each
//! rule of the PTX ISA's *setmaxnreg* is reported when broken — a count off the multiple-of-8
//! grid or outside [24, 256], a warp of the warpgroup that skips it, warps of one warpgroup on
//! different instructions, part of a warp executing it, `.inc` lowering the count, and sm_80.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tilekit_emu::sanitizer::FindingKind;
use tilekit_emu::{EmuError, Emulator, GlobalMemory, LaunchConfig};

/// Two warpgroups (256 threads): each thread reads `in[tid]`, warpgroup 0 executes PRODUCER,
/// warpgroup 1 CONSUMER, and each thread writes `in[tid] + tid` to `out[tid]` — its value
/// carried across the `setmaxnreg` unchanged.
const SPLIT: &str = r#"
.version 8.3
.target TARGET
.address_size 64
.visible .entry split(.param .u64 pin, .param .u64 pout)
.maxntid 256, 1, 1
.minnctapersm 1
{
    .reg .pred %p<4>;
    .reg .b32 %r<10>;
    .reg .f32 %f<4>;
    .reg .b64 %rd<10>;
    ld.param.u64 %rd1, [pin];
    ld.param.u64 %rd2, [pout];
    mov.u32 %r1, %tid.x;
    mul.wide.u32 %rd3, %r1, 4;
    add.s64 %rd4, %rd1, %rd3;
    ld.global.f32 %f1, [%rd4];
    shr.u32 %r2, %r1, 7;
    shr.u32 %r3, %r1, 5;
    and.b32 %r4, %r1, 31;
    setp.ne.u32 %p1, %r2, 0;
    @%p1 bra CONSUMER;
    PRODUCER
    bra.uni DONE;
CONSUMER:
    CONSUMER_BODY
DONE:
    cvt.rn.f32.u32 %f2, %r1;
    add.f32 %f3, %f1, %f2;
    add.s64 %rd5, %rd2, %rd3;
    st.global.f32 [%rd5], %f3;
    ret;
}
"#;

const THREADS: usize = 256;

/// Runs SPLIT with the given producer and consumer code on `target`; the output or the error.
fn split(target: &str, producer: &str, consumer: &str, seed: u64) -> Result<(), EmuError> {
    let ptx = SPLIT
        .replace("TARGET", target)
        .replace("PRODUCER", producer)
        .replace("CONSUMER_BODY", consumer);
    let emu = Emulator::new(&ptx)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let input: Vec<f32> = (0..THREADS).map(|_| rng.gen_range(-2.0..2.0)).collect();
    let mut g = GlobalMemory::new();
    let pin = g.alloc("in", input.iter().flat_map(|x| x.to_le_bytes()).collect());
    let pout = g.alloc("out", vec![0u8; THREADS * 4]);
    let params = emu.param_buffer(
        "split",
        &[pin.to_le_bytes().to_vec(), pout.to_le_bytes().to_vec()],
    )?;
    emu.launch(
        "split",
        &LaunchConfig::new([1, 1, 1], [THREADS as u32, 1, 1]),
        &params,
        &mut g,
    )?;
    let out: Vec<f32> = g
        .get(pout)
        .expect("out")
        .data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    for (t, (x, y)) in input.iter().zip(&out).enumerate() {
        // One f32 rounding of x + t, as the reference computes it.
        assert_eq!(*y, x + t as f32, "thread {t}");
    }
    Ok(())
}

/// The findings of a run that must fail with the sanitizer.
fn findings(r: Result<(), EmuError>) -> Vec<String> {
    match r {
        Err(EmuError::Sanitizer { findings, .. }) => findings
            .iter()
            .map(|f| {
                assert_eq!(f.kind, FindingKind::Other, "{f:?}");
                f.message.clone()
            })
            .collect(),
        other => panic!("expected sanitizer findings, got {other:?}"),
    }
}

#[test]
fn a_producer_consumer_register_split_runs_clean_and_keeps_values() {
    for seed in 0..3 {
        split(
            "sm_90a",
            "setmaxnreg.dec.sync.aligned.u32 40;",
            "setmaxnreg.inc.sync.aligned.u32 232;",
            seed,
        )
        .unwrap();
        // Lowering twice, then raising twice, is within the rules.
        split(
            "sm_90a",
            "setmaxnreg.dec.sync.aligned.u32 56; setmaxnreg.dec.sync.aligned.u32 24;",
            "setmaxnreg.inc.sync.aligned.u32 200; setmaxnreg.inc.sync.aligned.u32 256;",
            seed,
        )
        .unwrap();
    }
}

#[test]
fn counts_off_the_grid_or_outside_the_range_are_reported() {
    for (bad, count) in [(36, "36"), (16, "16"), (264, "264")] {
        let f = findings(split(
            "sm_90a",
            &format!("setmaxnreg.dec.sync.aligned.u32 {bad};"),
            "setmaxnreg.inc.sync.aligned.u32 232;",
            1,
        ));
        assert!(
            f.iter()
                .any(|m| m.contains(&format!("setmaxnreg {count}")) && m.contains("multiple of 8")),
            "{f:?}"
        );
    }
}

#[test]
fn a_warp_of_the_warpgroup_that_skips_it_is_reported() {
    // Only warp 0 of the producer warpgroup lowers its count.
    let f = findings(split(
        "sm_90a",
        "setp.ne.u32 %p2, %r3, 0; @%p2 bra SKIP; setmaxnreg.dec.sync.aligned.u32 40; SKIP:",
        "setmaxnreg.inc.sync.aligned.u32 232;",
        2,
    ));
    assert!(
        f.iter()
            .any(|m| m.contains("never executed by warp(s) 1, 2, 3")),
        "{f:?}"
    );
}

#[test]
fn warps_of_one_warpgroup_on_different_instructions_are_reported() {
    // Warp 0 takes one setmaxnreg, warps 1..3 another, with the same count.
    let f = findings(split(
        "sm_90a",
        "setp.ne.u32 %p2, %r3, 0; @%p2 bra OTHER; setmaxnreg.dec.sync.aligned.u32 40; bra.uni JOIN; \
         OTHER: setmaxnreg.dec.sync.aligned.u32 40; JOIN:",
        "setmaxnreg.inc.sync.aligned.u32 232;",
        3,
    ));
    assert!(
        f.iter()
            .any(|m| m.contains("is .aligned over the warpgroup")),
        "{f:?}"
    );
}

#[test]
fn part_of_a_warp_executing_it_is_reported() {
    let f = findings(split(
        "sm_90a",
        "setp.ne.u32 %p2, %r4, 0; @%p2 setmaxnreg.dec.sync.aligned.u32 40;",
        "",
        4,
    ));
    assert!(f.iter().any(|m| m.contains("only lanes")), "{f:?}");
}

#[test]
fn inc_below_and_dec_above_the_current_count_are_reported() {
    let f = findings(split(
        "sm_90a",
        "setmaxnreg.dec.sync.aligned.u32 40; setmaxnreg.dec.sync.aligned.u32 48;",
        "setmaxnreg.inc.sync.aligned.u32 232; setmaxnreg.inc.sync.aligned.u32 200;",
        5,
    ));
    assert!(f.iter().any(|m| m.contains(".dec only releases")), "{f:?}");
    assert!(f.iter().any(|m| m.contains(".inc only adds")), "{f:?}");
}

#[test]
fn setmaxnreg_on_sm_80_is_reported() {
    let f = findings(split(
        "sm_80",
        "setmaxnreg.dec.sync.aligned.u32 40;",
        "setmaxnreg.inc.sync.aligned.u32 232;",
        6,
    ));
    assert!(f.iter().any(|m| m.contains("needs sm_90a")), "{f:?}");
}
