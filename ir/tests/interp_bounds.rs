//! Bounded execution on the interpreter: modules that verify but would exhaust memory or never
//! end stop with an error naming the budget, the kernel and the op reached; a run can be
//! cancelled from another thread. Kernels within their budgets give the same results as without
//! them.

use std::time::{Duration, Instant};

use tilekit_ir::interp::{
    self, Arg, CancelToken, HostTensor, InterpError, Launch, DEFAULT_MEMORY_BUDGET,
    DEFAULT_OP_BUDGET, MAX_SHARED_ELEMENTS,
};
use tilekit_ir::ScalarType::*;
use tilekit_ir::{parse_module, verify, Module};

fn module(src: &str) -> Module {
    let m = parse_module(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    verify(&m).unwrap_or_else(|e| panic!("{e:?}"));
    m
}

fn run(src: &str, launch: Launch, args: &mut [Arg]) -> Result<interp::RunStats, InterpError> {
    interp::run_with(&module(src), "k", launch, args)
}

/// A loop that never ends: `while` on a constant true.
const WHILE_TRUE: &str = "kernel @k() warps(1) {
  %t = const[true] () : bool
  while () {
    condition (%t)
  } {
    yield ()
  }
  return ()
}";

// ---- memory ---------------------------------------------------------------------------------

#[test]
fn two_billion_semaphores_are_too_large_before_anything_is_allocated() {
    let src = "kernel @k() warps(1) {
  %s = alloc_shared @block () : [2147483648 x sem]
  return ()
}";
    let start = Instant::now();
    let e = run(src, Launch::grid([1, 1, 1]), &mut []).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2));
    let InterpError::TooLarge { func, message } = &e else {
        panic!("expected TooLarge, got {e}");
    };
    assert_eq!(func, "k");
    assert!(
        message.contains("2147483648 elements of shared memory"),
        "{e}"
    );
    assert!(message.contains(&MAX_SHARED_ELEMENTS.to_string()), "{e}");
}

#[test]
fn semaphores_count_against_the_memory_budget() {
    // A million semaphores are within the shared-element limit; the interpreter's state for them
    // is tens of megabytes, which a 1 MiB budget refuses and the default allows.
    let src = "kernel @k() warps(1) {
  %s = alloc_shared @block () : [1048576 x sem]
  return ()
}";
    let e = run(
        src,
        Launch::grid([1, 1, 1])
            .memory_budget(1 << 20)
            .race_check(false),
        &mut [],
    )
    .unwrap_err();
    let InterpError::MemoryBudget {
        kernel,
        budget,
        needed,
        ..
    } = &e
    else {
        panic!("expected MemoryBudget, got {e}");
    };
    assert_eq!((kernel.as_str(), *budget), ("k", 1 << 20));
    assert!(*needed >= 8 << 20, "{e}");
    assert!(e.to_string().contains("Launch::memory_budget"), "{e}");
    let stats = run(src, Launch::grid([1, 1, 1]), &mut []).unwrap();
    assert!(stats.peak_bytes >= 8 << 20, "{stats:?}");
}

#[test]
fn three_large_tiles_in_32_warps_exceed_the_default_memory_budget_before_running() {
    // Each value is within the per-value cap (2^24 elements), but 3 values × 32 warps × 128 MiB
    // is 12 GiB.
    let src = "kernel @k() warps(32) {
  %a = fill[1.0] () : rt<f32, 4096x4096, row>
  %b = fill[2.0] () : rt<f32, 4096x4096, row>
  %c = map.add (%a, %b) : rt<f32, 4096x4096, row>
  return ()
}";
    let start = Instant::now();
    let e = run(src, Launch::grid([1, 1, 1]), &mut []).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2));
    let InterpError::MemoryBudget {
        kernel,
        site,
        budget,
        needed,
        detail,
    } = &e
    else {
        panic!("expected MemoryBudget, got {e}");
    };
    assert_eq!(kernel, "k");
    assert!(site.is_none(), "checked before any op runs: {e}");
    assert_eq!(*budget, DEFAULT_MEMORY_BUDGET);
    assert!(*needed >= 12 << 30, "{e}");
    assert!(detail.contains("32 warps"), "{e}");
}

#[test]
fn a_call_that_would_exceed_the_memory_budget_stops_at_the_call() {
    let src = "kernel @k() warps(1) {
  %0 = call[@big] () : f32
  return ()
}

func @big() -> (f32) {
  %a = fill[1.0] () : rt<f32, 1024x1024, row>
  %s = reduce.sum (%a) : f32
  return (%s)
}";
    let e = run(src, Launch::grid([1, 1, 1]).memory_budget(4 << 20), &mut []).unwrap_err();
    let InterpError::MemoryBudget { site, detail, .. } = &e else {
        panic!("expected MemoryBudget, got {e}");
    };
    let site = site.as_ref().expect("the call op");
    assert_eq!((site.func.as_str(), site.op.as_str()), ("k", "call"));
    assert!(detail.contains("calling @big"), "{e}");
    // With room for the helper's tile the run finishes and reports what it held.
    let stats = run(
        src,
        Launch::grid([1, 1, 1]).memory_budget(16 << 20),
        &mut [],
    )
    .unwrap();
    assert!(stats.peak_bytes > 8 << 20, "{stats:?}");
}

#[test]
fn async_copies_that_never_complete_stop_at_the_memory_budget() {
    // The semaphore expects one arrival that never comes, so every copy stays pending.
    let src = "kernel @k(%x: gl<f32, 2>) warps(1) {
  %t = alloc_shared @block () : st<f32, 64x64, none>
  %sem = alloc_shared @block () : sem
  sem.init[1] (%sem)
  %0 = const[0] () : i32
  %1 = const[1] () : i32
  %n = const[1000000] () : i32
  for (%0, %n, %1) (%i: i32) {
    copy_async (%t, %x, %sem, %0, %0)
    yield ()
  }
  return ()
}";
    let mut args = vec![Arg::Tensor(HostTensor::zeros(F32, &[64, 64]))];
    let start = Instant::now();
    let e = run(
        src,
        // The copies overlap without ordering (a race, which the race check would report
        // first); this test is about their bookkeeping against the budget.
        Launch::grid([1, 1, 1])
            .memory_budget(8 << 20)
            .race_check(false),
        &mut args,
    )
    .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    let InterpError::MemoryBudget { site, detail, .. } = &e else {
        panic!("expected MemoryBudget, got {e}");
    };
    assert_eq!(site.as_ref().map(|s| s.op.as_str()), Some("copy_async"));
    assert!(detail.contains("async copy"), "{e}");
}

#[test]
fn copies_dropped_by_reinitializing_their_semaphore_no_longer_count() {
    // Each iteration re-initializes the semaphore, dropping the copy the one before left
    // pending: one copy (64 KiB of bookkeeping) is pending at a time, within a 1 MiB budget.
    let src = "kernel @k(%x: gl<f32, 2>) warps(1) {
  %t = alloc_shared @block () : st<f32, 64x64, none>
  %sem = alloc_shared @block () : sem
  %0 = const[0] () : i32
  %1 = const[1] () : i32
  %n = const[1000] () : i32
  for (%0, %n, %1) (%i: i32) {
    sem.init[1] (%sem)
    copy_async (%t, %x, %sem, %0, %0)
    yield ()
  }
  return ()
}";
    let mut args = vec![Arg::Tensor(HostTensor::zeros(F32, &[64, 64]))];
    let stats = run(
        src,
        Launch::grid([1, 1, 1])
            .memory_budget(1 << 20)
            .race_check(false),
        &mut args,
    )
    .unwrap();
    assert!(stats.peak_bytes < 1 << 20, "{stats:?}");
    assert!(stats.peak_bytes > 64 * 64 * 16, "{stats:?}");
}

// ---- ops ------------------------------------------------------------------------------------

#[test]
fn an_endless_while_loop_stops_at_the_op_budget_naming_the_op_reached() {
    let start = Instant::now();
    let e = run(
        WHILE_TRUE,
        Launch::grid([1, 1, 1]).op_budget(1_000_000),
        &mut [],
    )
    .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    let InterpError::OpBudget {
        kernel,
        site,
        budget,
        ..
    } = &e
    else {
        panic!("expected OpBudget, got {e}");
    };
    assert_eq!((kernel.as_str(), *budget), ("k", 1_000_000));
    let site = site.as_ref().expect("an op");
    // The loop's regions hold only their terminators.
    assert!(
        ["condition", "yield", "while"].contains(&site.op.as_str()),
        "{site}"
    );
    let text = e.to_string();
    assert!(
        text.contains("op budget of 1000000 ops") && text.contains("Launch::op_budget"),
        "{text}"
    );
}

#[test]
fn a_for_loop_to_the_i32_limit_stops_at_the_op_budget() {
    let src = "kernel @k(%x: gl<f32, 1, mut>) warps(1) {
  %0 = const[0] () : i32
  %1 = const[1] () : i32
  %n = const[2147483647] () : i32
  %v = const[1.0] () : f32
  for (%0, %n, %1) (%i: i32) {
    store (%x, %v, %0)
    yield ()
  }
  return ()
}";
    let mut args = vec![Arg::Tensor(HostTensor::zeros(F32, &[1]))];
    let e = run(src, Launch::grid([1, 1, 1]).op_budget(100_000), &mut args).unwrap_err();
    let InterpError::OpBudget { site, .. } = &e else {
        panic!("expected OpBudget, got {e}");
    };
    let site = site.as_ref().expect("an op");
    assert!(site.path.starts_with("4.0."), "inside the loop: {site}");
}

#[test]
fn a_grid_of_two_billion_blocks_exceeds_the_default_op_budget_at_once() {
    let src = "kernel @k() warps(1) {
  return ()
}";
    let start = Instant::now();
    let e = run(src, Launch::grid([2147483647, 1, 1]), &mut []).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2));
    let InterpError::OpBudget {
        site,
        budget,
        detail,
        ..
    } = &e
    else {
        panic!("expected OpBudget, got {e}");
    };
    assert!(site.is_none());
    assert_eq!(*budget, DEFAULT_OP_BUDGET);
    assert!(detail.contains("2147483647 blocks of 1 warps"), "{e}");
    // The plain entry point uses the same defaults.
    assert!(matches!(
        interp::run(&module(src), "k", [2147483647, 1, 1], &mut []),
        Err(InterpError::OpBudget { .. })
    ));
}

#[test]
fn a_budget_of_exactly_the_ops_a_run_needs_is_enough_and_one_less_is_not() {
    // A grid-stride sum: each block adds its index into every element of x (with atomics), so
    // the result says the whole run happened.
    let src = "kernel @k(%x: gl<f32, 1, mut>) warps(2) {
  %b = block_idx.x () : i32
  %f = convert (%b) : f32
  %0 = const[0] () : i32
  %1 = const[1] () : i32
  %n = dim[0] (%x) : i32
  for (%0, %n, %1) (%i: i32) {
    atomic_add (%x, %f, %i)
    yield ()
  }
  return ()
}";
    let fresh = || vec![Arg::Tensor(HostTensor::zeros(F32, &[5]))];
    let mut args = fresh();
    let stats = run(src, Launch::grid([4, 1, 1]), &mut args).unwrap();
    // Blocks 0..4 each add b twice (two warps): 2·(0+1+2+3) = 12 per element.
    assert_eq!(args[0].tensor().unwrap().to_vec(), vec![12.0; 5]);
    assert_eq!(stats.blocks, 4);

    let mut exact = fresh();
    let same = run(
        src,
        Launch::grid([4, 1, 1]).op_budget(stats.ops),
        &mut exact,
    )
    .unwrap();
    assert_eq!(same, stats);
    assert_eq!(exact[0].tensor().unwrap().to_vec(), vec![12.0; 5]);

    let e = run(
        src,
        Launch::grid([4, 1, 1]).op_budget(stats.ops - 1),
        &mut fresh(),
    )
    .unwrap_err();
    let InterpError::OpBudget { site, .. } = &e else {
        panic!("expected OpBudget, got {e}");
    };
    // The last op of the run is the last warp's `return` in the last block.
    let site = site.as_ref().expect("an op");
    assert_eq!(
        (site.block, site.warp, site.op.as_str()),
        ([3, 0, 0], 1, "return")
    );
}

// ---- cancellation ---------------------------------------------------------------------------

#[test]
fn a_run_is_cancelled_from_another_thread() {
    let token = CancelToken::new();
    let canceller = {
        let token = token.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            token.cancel();
        })
    };
    let start = Instant::now();
    let launch = Launch::grid([1, 1, 1])
        .op_budget(u64::MAX)
        .cancel(token.clone());
    let e = run(WHILE_TRUE, launch, &mut []).unwrap_err();
    canceller.join().unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    let InterpError::Cancelled { kernel, site, ops } = &e else {
        panic!("expected Cancelled, got {e}");
    };
    assert_eq!(kernel, "k");
    assert!(site.is_some() && *ops > 0, "{e}");
    assert!(token.is_cancelled());
}

#[test]
fn a_token_cancelled_before_the_run_stops_it_before_the_first_block() {
    let token = CancelToken::new();
    token.cancel();
    let e = run(WHILE_TRUE, Launch::grid([1, 1, 1]).cancel(token), &mut []).unwrap_err();
    assert!(
        matches!(
            &e,
            InterpError::Cancelled {
                site: None,
                ops: 0,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn tokens_are_equal_when_they_share_a_flag() {
    let a = CancelToken::new();
    assert_eq!(a, a.clone());
    assert_ne!(a, CancelToken::new());
    assert_eq!(
        Launch::grid([1, 1, 1]).cancel(a.clone()),
        Launch::grid([1, 1, 1]).cancel(a)
    );
}
