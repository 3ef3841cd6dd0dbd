//! The index check follows values loaded from memory through the values regions carry: an
//! index loaded inside a loop or a branch and used after it, or carried from one iteration to
//! the next, still makes a wholly-outside tile an error; an index computed without memory
//! never does.

use tilekit_ir::interp::{self, Arg, HostTensor, InterpError, Launch};
use tilekit_ir::ScalarType::{F32, I32};
use tilekit_ir::{parse_module, verify, Module};

fn module(src: &str) -> Module {
    let m = parse_module(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    verify(&m).unwrap_or_else(|e| panic!("{e:?}"));
    m
}

/// Copies column tile `which[n - 1]` of `x` to `y`, the index read in the loop's last
/// iteration and leaving the loop as its result.
const INDEX_FROM_A_LOOP: &str =
    "kernel @k(%x: gl<f32, 2>, %which: gl<i32, 1>, %n: i32, %y: gl<f32, 2, mut>) warps(1) {
  %0 = const[0] () : i32
  %1 = const[1] () : i32
  %j = for (%0, %n, %1, %0) (%i: i32, %prev: i32) {
    %v = load (%which, %i) : i32
    yield (%v)
  } : i32
  %t = load (%x, %0, %j) : rt<f32, 16x16, row>
  store (%y, %t, %0, %0)
  return ()
}";

/// Column tile `which[0]` of `x`, the index chosen in a branch and passed on through a
/// `while` loop's arguments (permuted each iteration) before it is used.
const INDEX_THROUGH_A_BRANCH_AND_A_WHILE: &str =
    "kernel @k(%x: gl<f32, 2>, %which: gl<i32, 1>, %n: i32, %y: gl<f32, 2, mut>) warps(1) {
  %0 = const[0] () : i32
  %1 = const[1] () : i32
  %c = cmp.gt (%n, %0) : bool
  %j0 = if (%c) {
    %v = load (%which, %0) : i32
    yield (%v)
  } {
    yield (%0)
  } : i32
  %k, %a, %b = while (%0, %j0, %0) (%k0: i32, %a0: i32, %b0: i32) {
    %go = cmp.lt (%k0, %n) : bool
    condition (%go, %k0, %a0, %b0)
  } (%k1: i32, %a1: i32, %b1: i32) {
    %k2 = map.add (%k1, %1) : i32
    yield (%k2, %b1, %a1)
  } : i32, i32, i32
  %t = load (%x, %0, %a) : rt<f32, 16x16, row>
  store (%y, %t, %0, %0)
  return ()
}";

/// Column tile `n - 1` of `x`, counted by a loop: no value from memory.
const INDEX_COUNTED: &str =
    "kernel @k(%x: gl<f32, 2>, %which: gl<i32, 1>, %n: i32, %y: gl<f32, 2, mut>) warps(1) {
  %0 = const[0] () : i32
  %1 = const[1] () : i32
  %j = for (%0, %n, %1, %0) (%i: i32, %prev: i32) {
    yield (%i)
  } : i32
  %t = load (%x, %0, %j) : rt<f32, 16x16, row>
  store (%y, %t, %0, %0)
  return ()
}";

fn run(src: &str, which: &[i32], n: i32, check: bool) -> Result<Vec<f64>, InterpError> {
    // 20 columns: column tile 1 is the edge tile (columns 16..20), tile 2 lies outside.
    let x: Vec<f64> = (0..16 * 20)
        .map(|i| f64::from(i % 97) * 0.5 + 1.0)
        .collect();
    let w: Vec<f64> = which.iter().map(|&i| f64::from(i)).collect();
    let mut args = vec![
        Arg::Tensor(HostTensor::new(F32, &[16, 20], &x).unwrap()),
        Arg::Tensor(HostTensor::new(I32, &[which.len()], &w).unwrap()),
        Arg::Scalar(I32, f64::from(n)),
        Arg::Tensor(HostTensor::full(F32, &[16, 16], -3.0)),
    ];
    let launch = Launch::grid([1, 1, 1]).index_check(check);
    interp::run_with(&module(src), "k", launch, &mut args)?;
    Ok(args[3].tensor().unwrap().to_vec())
}

fn expect_outside(r: Result<Vec<f64>, InterpError>, index: &str) {
    match r {
        Err(e @ InterpError::OutOfBounds { .. }) => {
            let text = e.to_string();
            assert!(text.contains("loaded from memory"), "{text}");
            assert!(text.contains(index), "{text}");
        }
        Err(e) => panic!("expected an out-of-bounds error, got {e}"),
        Ok(_) => panic!("a tile wholly outside the view from an index in memory ran"),
    }
}

#[test]
fn an_index_loaded_in_a_loop_is_checked_after_it() {
    expect_outside(run(INDEX_FROM_A_LOOP, &[0, 1, 2], 3, true), "[0, 2]");
    // An index inside the view (the edge tile) runs and reads its columns.
    let y = run(INDEX_FROM_A_LOOP, &[2, 5, 1], 3, true).unwrap();
    assert_eq!(y[0], f64::from(16 % 97) * 0.5 + 1.0);
    assert_eq!(y[4], 0.0, "columns past the view read as zero");
    // With the check off the IR's masking applies: zeros.
    let y = run(INDEX_FROM_A_LOOP, &[0, 1, 2], 3, false).unwrap();
    assert!(y.iter().all(|&v| v == 0.0));
}

#[test]
fn an_index_chosen_in_a_branch_and_carried_by_a_while_is_checked() {
    // Two iterations swap the carried pair twice: the loaded index comes back to `%a`.
    expect_outside(
        run(INDEX_THROUGH_A_BRANCH_AND_A_WHILE, &[3], 2, true),
        "[0, 3]",
    );
    // One iteration leaves it in `%b`; `%a` holds the constant 0.
    let y = run(INDEX_THROUGH_A_BRANCH_AND_A_WHILE, &[3], 1, true).unwrap();
    assert_eq!(y[0], 1.0);
    // Negative indices from memory too.
    expect_outside(
        run(INDEX_THROUGH_A_BRANCH_AND_A_WHILE, &[-1], 4, true),
        "[0, -1]",
    );
}

#[test]
fn a_counted_index_is_masked_as_the_ir_says_not_reported() {
    let y = run(INDEX_COUNTED, &[0], 3, true).unwrap();
    assert!(y.iter().all(|&v| v == 0.0), "tile 2 is outside: masked");
}
