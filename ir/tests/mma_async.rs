//! `mma_async` / `mma_commit` / `mma_wait`: the interpreter computes what the synchronous mma
//! computes once a wait retires the accumulator, and reports waits that do not cover their mma
//! and mmas never waited for; the verifier reports every read of an accumulator that may still
//! be in flight, through loops, branches and calls.

use tilekit_ir::interp::{self, Arg, HostTensor};
use tilekit_ir::ScalarType::*;
use tilekit_ir::*;

/// Irregular values from a seed (no zeros, no constant runs).
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 4.0 + 0.03
        })
        .collect()
}

/// A kernel that accumulates `n` times `A·B` (A the 64×16 group tile of `x`, B 16×16 of `w`)
/// with `mma_async`, `body_tail` after each mma in the loop, then `after` (which must define
/// `%done`) before storing each warp's 16 rows.
fn kernel(body_tail: &str, after: &str) -> String {
    format!(
        "kernel @k(%x: gl<bf16, 2>, %w: gl<bf16, 2>, %y: gl<f32, 2, mut>, %n: i32) warps(4) {{
  %sa = alloc_shared @block () : st<bf16, 64x16, swz32>
  %sb = alloc_shared @block () : st<bf16, 16x16, swz32>
  %z = const[0] () : i32
  %one = const[1] () : i32
  %wi = warp_idx () : i32
  copy @block (%sa, %x, %z, %z)
  copy @block (%sb, %w, %z, %z)
  barrier @block ()
  %acc0 = fill[0.0] () : rt<f32, 16x16, row>
  %acc = for (%z, %n, %one, %acc0) (%i: i32, %c: rt<f32, 16x16, row>) {{
    %d = mma_async.ab @warpgroup (%sa, %sb, %c) : rt<f32, 16x16, row>
{body_tail}
    yield (%d)
  }} : rt<f32, 16x16, row>
{after}
  store (%y, %done, %wi, %z)
  return ()
}}
"
    )
}

const COMMIT: &str = "    mma_commit @warpgroup ()\n    mma_wait[1] @warpgroup ()";
const RETIRE: &str = "  %done = mma_wait[0] @warpgroup (%acc) : rt<f32, 16x16, row>";

fn parse(text: &str) -> Module {
    parse_module(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Runs kernel `k` of `m` for `n` iterations; returns C and `n`·A·B in f64.
fn run(m: &Module, n: i32, seed: u64) -> Result<(Vec<f64>, Vec<f64>), String> {
    let x = HostTensor::new(BF16, &[64, 16], &values(64 * 16, seed)).unwrap();
    let w = HostTensor::new(BF16, &[16, 16], &values(256, seed + 1)).unwrap();
    let (xv, wv) = (x.to_vec(), w.to_vec());
    let mut args = vec![
        Arg::Tensor(x),
        Arg::Tensor(w),
        Arg::Tensor(HostTensor::zeros(F32, &[64, 16])),
        Arg::Scalar(I32, f64::from(n)),
    ];
    interp::run(m, "k", [1, 1, 1], &mut args).map_err(|e| e.to_string())?;
    let mut want = vec![0.0; 64 * 16];
    for i in 0..64 {
        for j in 0..16 {
            let dot: f64 = (0..16).map(|k| xv[i * 16 + k] * wv[k * 16 + j]).sum();
            want[i * 16 + j] = f64::from(n) * dot;
        }
    }
    Ok((args[2].tensor().unwrap().to_vec(), want))
}

#[test]
fn retired_accumulators_hold_the_products() {
    let m = parse(&kernel(COMMIT, RETIRE));
    verify(&m).unwrap();
    for (n, seed) in [(1, 1), (3, 2), (5, 3)] {
        let (got, want) = run(&m, n, seed).unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                "n {n}: {g} vs {w}"
            );
        }
    }
    // No iteration: the wait passes the zeros that were never in flight.
    let (got, _) = run(&m, 0, 4).unwrap();
    assert!(got.iter().all(|&v| v == 0.0));
}

#[test]
fn waits_that_do_not_cover_the_mma_are_interpreter_errors() {
    // The last group is the most recent one, which `mma_wait[1]` leaves in flight.
    let m = parse(&kernel(
        COMMIT,
        "  %done = mma_wait[1] @warpgroup (%acc) : rt<f32, 16x16, row>",
    ));
    verify(&m).unwrap();
    let e = run(&m, 2, 5).unwrap_err();
    assert!(e.contains("mma_wait[1] cannot retire"), "{e}");
    assert!(e.contains("most recent committed groups"), "{e}");
    // Never committed: the mma is in the open group.
    let m = parse(&kernel("", RETIRE));
    let e = run(&m, 2, 6).unwrap_err();
    assert!(e.contains("mma_wait[0] cannot retire"), "{e}");
    assert!(e.contains("open group"), "{e}");
    // Committed, but nothing ever waits for it.
    let m = parse(&kernel(
        "    mma_commit @warpgroup ()",
        "  %done = fill[1.0] () : rt<f32, 16x16, row>",
    ));
    verify(&m).unwrap();
    let e = run(&m, 2, 7).unwrap_err();
    assert!(e.contains("not completed"), "{e}");
}

/// The verifier's errors for `m`, one string.
fn verify_errors(text: &str) -> String {
    match verify(&parse(text)) {
        Ok(()) => panic!("verifies:\n{text}"),
        Err(errs) => errs.iter().map(|e| format!("{e}\n")).collect(),
    }
}

#[test]
fn reads_of_accumulators_in_flight_are_verifier_errors() {
    // The loop's result, stored without a wait.
    let e = verify_errors(&kernel(
        COMMIT,
        "  %done = map.add (%acc, %acc) : rt<f32, 16x16, row>",
    ));
    assert!(e.contains("`map.add` reads %acc"), "{e}");
    assert!(e.contains("before an mma_wait retires it"), "{e}");
    // The carried value, read in the body: in flight from the second iteration on.
    let e = verify_errors(&kernel(
        &format!("{COMMIT}\n    %r = reduce.sum (%c) : f32"),
        RETIRE,
    ));
    assert!(e.contains("`reduce.sum` reads %c"), "{e}");
    // Through an `if` whose one branch yields the accumulator in flight.
    let e = verify_errors(&kernel(
        COMMIT,
        "  %t = cmp.gt (%n, %z) : bool
  %done = if (%t) {
    yield (%acc)
  } {
    yield (%acc0)
  } : rt<f32, 16x16, row>",
    ));
    assert!(e.contains("`store` reads %done"), "{e}");
    // The A operand of another mma.
    let e = verify_errors(&kernel(
        COMMIT,
        "  %b = convert (%acc) : rt<bf16, 16x16, row>
  %done = mma_wait[0] @warpgroup (%acc) : rt<f32, 16x16, row>",
    ));
    assert!(e.contains("`convert` reads %acc"), "{e}");
}

#[test]
fn mma_async_shapes_and_waits_are_checked() {
    // Rows of C other than 16 per warp, and a wait whose result type differs from its operand.
    let e = verify_errors(
        "kernel @k(%y: gl<f32, 2, mut>) warps(4) {
  %sa = alloc_shared @block () : st<bf16, 128x16, swz32>
  %sb = alloc_shared @block () : st<bf16, 16x16, swz32>
  %acc0 = fill[0.0] () : rt<f32, 32x16, row>
  %d = mma_async.ab @warpgroup (%sa, %sb, %acc0) : rt<f32, 32x16, row>
  mma_commit @warpgroup ()
  %done = mma_wait[0] @warpgroup (%d) : rt<f32, 16x16, row>
  return ()
}
",
    );
    assert!(e.contains("16 rows per warp"), "{e}");
    assert!(e.contains("result 0 of mma_wait"), "{e}");
    // At warp scope.
    let e = verify_errors(
        "kernel @k(%y: gl<f32, 2, mut>) warps(4) {
  %sa = alloc_shared @block () : st<bf16, 64x16, swz32>
  %sb = alloc_shared @block () : st<bf16, 16x16, swz32>
  %acc0 = fill[0.0] () : rt<f32, 16x16, row>
  %d = mma_async.ab (%sa, %sb, %acc0) : rt<f32, 16x16, row>
  mma_commit @warpgroup ()
  %done = mma_wait[0] @warpgroup (%d) : rt<f32, 16x16, row>
  return ()
}
",
    );
    assert!(e.contains("scope"), "{e}");
}
