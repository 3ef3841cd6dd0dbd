//! The interpreter's race check on global memory: accesses to one element of a global tensor
//! by different blocks, or by warps of one block with no barrier or semaphore phase between
//! them, are reported when one is a write (or one is plain and the other atomic), naming the
//! kernel, the tensor, the element, both blocks and warps, and both ops; reads among
//! themselves, atomics among themselves and a warp's own accesses are not.

use tilekit_ir::interp::{self, Arg, HostTensor, InterpError, Launch, Schedule, TensorTable};
use tilekit_ir::parse_module;
use tilekit_ir::ScalarType::F32;

fn run(src: &str, launch: Launch, args: &mut [Arg]) -> Result<(), InterpError> {
    let m = parse_module(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    let name = m.funcs[0].name.clone();
    interp::run_with(&m, &name, launch, args).map(|_| ())
}

fn tensor(values: &[f64]) -> Arg {
    Arg::Tensor(HostTensor::new(F32, &[values.len()], values).unwrap())
}

fn values(a: &Arg) -> Vec<f64> {
    a.tensor().unwrap().to_vec()
}

/// The fields of a global race report.
struct Report {
    tensor: String,
    element: String,
    earlier: (Box<interp::Site>, &'static str),
    later: (Box<interp::Site>, &'static str),
    message: String,
}

fn report(e: InterpError) -> Report {
    let message = e.to_string();
    match e {
        InterpError::GlobalRace {
            tensor,
            element,
            earlier,
            earlier_kind,
            later,
            later_kind,
            ..
        } => Report {
            tensor,
            element,
            earlier: (earlier, earlier_kind),
            later: (later, later_kind),
            message,
        },
        other => panic!("expected a global race, got: {other}"),
    }
}

/// Every block stores `x[0]` into `y[i]`: with `i` the block index each block has its own
/// element; with `i` = 0 every block writes the same one.
fn store_kernel(index: &str) -> String {
    format!(
        "kernel @put(%x: gl<f32, 1>, %y: gl<f32, 1, mut>) warps(1) {{
           %0 = const[0] () : i32
           %b = block_idx.x () : i32
           %v = load (%x, %0) : f32
           store (%y, %v, {index})
           return ()
         }}"
    )
}

#[test]
fn two_blocks_writing_one_element_race_and_blocks_writing_their_own_do_not() {
    let mut args = vec![tensor(&[2.5]), tensor(&[0.0; 3])];
    run(&store_kernel("%b"), Launch::grid([3, 1, 1]), &mut args).unwrap();
    assert_eq!(values(&args[1]), [2.5; 3]);

    let mut args = vec![tensor(&[2.5]), tensor(&[0.0; 3])];
    let e = run(&store_kernel("%0"), Launch::grid([3, 1, 1]), &mut args).unwrap_err();
    let r = report(e);
    assert_eq!(r.tensor, "`y`");
    assert_eq!(r.element, "[0], storage offset 0");
    assert_eq!((r.earlier.0.block, r.earlier.0.warp), ([0, 0, 0], 0));
    assert_eq!((r.later.0.block, r.later.0.warp), ([1, 0, 0], 0));
    assert_eq!((r.earlier.1, r.later.1), ("write", "write"));
    assert_eq!(
        (r.earlier.0.op.as_str(), r.later.0.op.as_str()),
        ("store", "store")
    );
    assert!(
        r.message.contains("kernel @put") && r.message.contains("different blocks"),
        "{}",
        r.message
    );
}

#[test]
fn the_race_check_off_lets_the_last_block_win() {
    let mut args = vec![tensor(&[2.5]), tensor(&[0.0; 3])];
    let launch = Launch::grid([3, 1, 1]).race_check(false);
    run(&store_kernel("%0"), launch, &mut args).unwrap();
    assert_eq!(values(&args[1]), [2.5, 0.0, 0.0]);
}

/// Block b reads `x[b + 1]` and writes its double to `x[b]`: block b + 1 then overwrites
/// what block b read.
const SHIFT: &str = "kernel @shift(%x: gl<f32, 1, mut>) warps(1) {
  %1 = const[1] () : i32
  %b = block_idx.x () : i32
  %n = map.add (%b, %1) : i32
  %v = load (%x, %n) : f32
  %d = map.add (%v, %v) : f32
  store (%x, %d, %b)
  return ()
}";

#[test]
fn a_write_of_what_another_block_read_races() {
    let mut args = vec![tensor(&[1.0, 2.0, 3.0, 4.0])];
    // One block reads x[1] and writes x[0]: nothing else touches them.
    run(SHIFT, Launch::grid([1, 1, 1]), &mut args).unwrap();
    assert_eq!(values(&args[0]), [4.0, 2.0, 3.0, 4.0]);

    let mut args = vec![tensor(&[1.0, 2.0, 3.0, 4.0])];
    let r = report(run(SHIFT, Launch::grid([3, 1, 1]), &mut args).unwrap_err());
    assert_eq!(r.element, "[1], storage offset 1");
    assert_eq!((r.earlier.0.block, r.earlier.1), ([0, 0, 0], "read"));
    assert_eq!((r.later.0.block, r.later.1), ([1, 0, 0], "write"));
    assert_eq!(r.earlier.0.op, "load");
}

/// Warp 0 writes `s[0]`; warp 1 reads it and copies it to `y[0]`, with `SYNC` between them.
fn scratch_kernel(sync: &str) -> String {
    format!(
        "kernel @scratch(%s: gl<f32, 1, mut>, %y: gl<f32, 1, mut>) warps(2) {{
           %w = warp_idx () : i32
           %0 = const[0] () : i32
           %1 = const[1] () : i32
           %first = cmp.eq (%w, %0) : bool
           if (%first) {{
             %x = const[2.5] () : f32
             store (%s, %x, %0)
             yield ()
           }} {{
             yield ()
           }}
           {sync}
           %second = cmp.eq (%w, %1) : bool
           if (%second) {{
             %v = load (%s, %0) : f32
             store (%y, %v, %0)
             yield ()
           }} {{
             yield ()
           }}
           return ()
         }}"
    )
}

fn schedules() -> [Schedule; 3] {
    [
        Schedule::UntilBlocked,
        Schedule::RoundRobin { quantum: 1 },
        Schedule::RoundRobin { quantum: 3 },
    ]
}

#[test]
fn a_missing_barrier_between_warps_writing_and_reading_global_scratch_races_under_every_schedule() {
    for schedule in schedules() {
        let launch = Launch::grid([1, 1, 1]).schedule(schedule);
        let mut args = vec![tensor(&[0.0]), tensor(&[0.0])];
        let e = run(&scratch_kernel(""), launch.clone(), &mut args).unwrap_err();
        let r = report(e);
        assert_eq!(r.tensor, "`s`", "{schedule:?}");
        // Whichever warp the schedule ran first, the pair is warp 0's store and warp 1's load.
        let mut pair = [
            (r.earlier.0.warp, r.earlier.0.op.clone()),
            (r.later.0.warp, r.later.0.op.clone()),
        ];
        pair.sort();
        assert_eq!(
            pair,
            [(0, "store".to_string()), (1, "load".to_string())],
            "{schedule:?}: {}",
            r.message
        );
        assert_eq!(r.earlier.0.block, r.later.0.block);
        assert!(
            r.message.contains("no barrier or semaphore wait"),
            "{}",
            r.message
        );

        let mut args = vec![tensor(&[0.0]), tensor(&[0.0])];
        run(&scratch_kernel("barrier @block ()"), launch, &mut args).unwrap();
        assert_eq!(values(&args[1]), [2.5], "{schedule:?}");
    }
}

/// Warp 0 writes `s[0]` and arrives on a semaphore; warp 1 waits on it and reads.
const HANDOFF: &str = "kernel @handoff(%s: gl<f32, 1, mut>, %y: gl<f32, 1, mut>) warps(2) {
  %sem = alloc_shared @block () : sem
  %w = warp_idx () : i32
  %0 = const[0] () : i32
  %first = cmp.eq (%w, %0) : bool
  if (%first) {
    sem.init[1] (%sem)
    yield ()
  } {
    yield ()
  }
  barrier @block ()
  if (%first) {
    %x = const[2.5] () : f32
    store (%s, %x, %0)
    sem.arrive (%sem)
    yield ()
  } {
    sem.wait (%sem, %0)
    %v = load (%s, %0) : f32
    store (%y, %v, %0)
    yield ()
  }
  return ()
}";

#[test]
fn a_semaphore_phase_orders_one_warps_global_write_before_anothers_read() {
    for schedule in schedules() {
        let mut args = vec![tensor(&[0.0]), tensor(&[0.0])];
        run(
            HANDOFF,
            Launch::grid([1, 1, 1]).schedule(schedule),
            &mut args,
        )
        .unwrap();
        assert_eq!(values(&args[1]), [2.5], "{schedule:?}");
    }
}

/// Each warp of every block adds 1 to `y[0]` atomically, then runs `then` (`%me` numbers
/// the warp in the grid).
fn atomic_kernel(then: &str) -> String {
    format!(
        "kernel @count(%y: gl<f32, 1, mut>, %z: gl<f32, 1, mut>) warps(2) {{
           %0 = const[0] () : i32
           %b = block_idx.x () : i32
           %w = warp_idx () : i32
           %2 = const[2] () : i32
           %b2 = map.mul (%b, %2) : i32
           %me = map.add (%b2, %w) : i32
           %one = const[1.0] () : f32
           atomic_add (%y, %one, %0)
           {then}
           return ()
         }}"
    )
}

#[test]
fn atomics_and_plain_reads_of_their_element_do_not_race_but_a_plain_write_does() {
    let mut args = vec![tensor(&[0.5]), tensor(&[0.0; 3])];
    run(&atomic_kernel(""), Launch::grid([3, 1, 1]), &mut args).unwrap();
    // Two warps in each of three blocks.
    assert_eq!(values(&args[0]), [6.5]);

    // A plain read sees one of the values the atomics leave (a first guess, a poll).
    let mut args = vec![tensor(&[0.5]), tensor(&[0.0; 6])];
    let read = "%v = load (%y, %0) : f32
                store (%z, %v, %me)";
    run(&atomic_kernel(read), Launch::grid([3, 1, 1]), &mut args).unwrap();
    assert!(values(&args[1]).iter().all(|&v| (1.5..=6.5).contains(&v)));

    // A plain write loses the updates of the atomics it is not ordered with.
    let mut args = vec![tensor(&[0.5]), tensor(&[0.0; 3])];
    let write = "%z0 = const[0.0] () : f32
                 store (%y, %z0, %0)";
    let e = run(&atomic_kernel(write), Launch::grid([3, 1, 1]), &mut args).unwrap_err();
    let r = report(e);
    assert_eq!(r.tensor, "`y`");
    // Warp 1's atomic in block 0 is not ordered after warp 0's write.
    assert_eq!((r.earlier.0.block, r.earlier.0.warp), ([0, 0, 0], 0));
    assert_eq!((r.later.0.block, r.later.0.warp), ([0, 0, 0], 1));
    assert_eq!(
        (r.earlier.1, r.later.1),
        ("write", "atomic update"),
        "{}",
        r.message
    );
}

/// Every block doubles element 0 of entry 0 of the table, or element b of entry b.
fn table_kernel(index: &str) -> String {
    format!(
        "kernel @bump(%t: gl<i64, 2>) warps(1) {{
           %b = block_idx.x () : i32
           %0 = const[0] () : i32
           %g = table_view (%t, {index}) : gl<f32, 1, mut>
           %v = load (%g, {index}) : f32
           %d = map.add (%v, %v) : f32
           store (%g, %d, {index})
           return ()
         }}"
    )
}

fn table() -> Arg {
    let entries = (0..3)
        .map(|e| HostTensor::new(F32, &[3], &[1.0 + e as f64, 2.0, 3.0]).unwrap())
        .collect();
    Arg::Table(TensorTable::new(entries).unwrap())
}

#[test]
fn pointer_table_entries_are_watched_as_parameters_are() {
    let mut args = vec![table()];
    run(&table_kernel("%b"), Launch::grid([3, 1, 1]), &mut args).unwrap();
    let Arg::Table(t) = &args[0] else {
        unreachable!()
    };
    let diagonal: Vec<f64> = (0..3).map(|e| t.entries()[e].to_vec()[e]).collect();
    assert_eq!(diagonal, [2.0, 4.0, 6.0]);

    let mut args = vec![table()];
    let e = run(&table_kernel("%0"), Launch::grid([2, 1, 1]), &mut args).unwrap_err();
    let r = report(e);
    assert_eq!(r.tensor, "entry 0 of pointer table `t`");
    assert_eq!(r.element, "[0], storage offset 0");
    assert_eq!((r.earlier.0.block, r.later.0.block), ([0, 0, 0], [1, 0, 0]));
}

#[test]
fn a_warp_rereading_and_rewriting_its_own_elements_does_not_race() {
    // Each block updates its own element twice in place.
    let src = "kernel @twice(%x: gl<f32, 1, mut>) warps(1) {
      %b = block_idx.x () : i32
      %v = load (%x, %b) : f32
      %d = map.add (%v, %v) : f32
      store (%x, %d, %b)
      %u = load (%x, %b) : f32
      %e = map.add (%u, %u) : f32
      store (%x, %e, %b)
      return ()
    }";
    let mut args = vec![tensor(&[1.0, 2.0, 3.0])];
    run(src, Launch::grid([3, 1, 1]), &mut args).unwrap();
    assert_eq!(values(&args[0]), [4.0, 8.0, 12.0]);
}

/// Stores a tile into entry 0 of the table, then reloads its first row as a vector (other
/// lanes than the ones that stored it, on a GPU), with `sync` between.
fn reload_kernel(sync: &str) -> String {
    format!(
        "kernel @reload(%t: gl<i64, 2>, %z: gl<f32, 1, mut>) warps(1) {{
           %0 = const[0] () : i32
           %g = table_view (%t, %0) : gl<f32, 2, mut>
           %x = load (%g, %0, %0) : rt<f32, 16x16, row>
           store (%g, %x, %0, %0)
           {sync}
           %r = load (%g, %0, %0) : rv<f32, 16, cols>
           store (%z, %r, %0)
           return ()
         }}"
    )
}

#[test]
fn a_reload_of_a_pointer_table_entry_through_other_lanes_needs_a_barrier() {
    let entry_values: Vec<f64> = (0..256).map(|i| i as f64 * 0.25 - 7.0).collect();
    let args = || {
        let entry = HostTensor::new(F32, &[16, 16], &entry_values).unwrap();
        vec![
            Arg::Table(TensorTable::new(vec![entry]).unwrap()),
            tensor(&[0.0; 16]),
        ]
    };
    let mut racy = args();
    let e = run(&reload_kernel(""), Launch::grid([1, 1, 1]), &mut racy).unwrap_err();
    let message = e.to_string();
    assert!(
        matches!(e, InterpError::Runtime { .. })
            && message.contains("entry 0 of pointer table `t`")
            && message.contains("another lane"),
        "{message}"
    );
    let mut synced = args();
    run(
        &reload_kernel("barrier @block ()"),
        Launch::grid([1, 1, 1]),
        &mut synced,
    )
    .unwrap();
    assert_eq!(values(&synced[1]), entry_values[..16]);
}
