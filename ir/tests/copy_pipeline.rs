//! `copy_start` / `copy_commit` / `copy_wait`: a multistage ring computes what the synchronous
//! copy computes, and the interpreter reports a read of a copy that was never waited and a copy
//! into a slot whose earlier copy is still in flight.

use tilekit_ir::interp::{self, Arg, HostTensor};
use tilekit_ir::ScalarType::*;
use tilekit_ir::*;

fn module(f: Func) -> Module {
    let mut m = Module::new();
    m.push(f);
    m
}

/// Irregular values from a seed (no zeros, no constant runs).
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 8.0 + 0.03
        })
        .collect()
}

/// A block of `warps` warps sums the 16×16 tiles of column block 0 of `x` (`rows × 16`, rows
/// ragged) into `y` (16×16) through a ring of `stages` slots. With `wait = None` the pipeline
/// waits as CUTLASS's mainloop does (`copy_wait[stages-2]`, one barrier); `Some(n)` waits with
/// `n` instead (too large a count is a bug the interpreter must catch).
fn ring_sum(stages: u32, warps: u32, wait: Option<u32>) -> Module {
    let mut b = FuncBuilder::kernel("ring_sum", warps);
    let x = b.param("x", Type::global(F32, 2, false));
    let y = b.param("y", Type::global(F32, 2, true));
    let tile = Type::shared_tile(F32, 16, 16, Swizzle::None);
    let ring = b.alloc_shared(Type::shared_array(tile, stages));
    let z = b.const_i32(0);
    let one = b.const_i32(1);
    let s_c = b.const_i32(stages as i32);
    let rows = b.dim(x, 0);
    let c15 = b.const_i32(15);
    let c16 = b.const_i32(16);
    let r15 = b.binary(BinaryFn::Add, rows, c15);
    let tiles = b.binary(BinaryFn::Div, r15, c16);
    // Prologue: stages - 1 groups (past the last tile the copy is masked: zeros).
    for s in 0..stages - 1 {
        let si = b.const_i32(s as i32);
        let slot = b.shared_index(ring, si);
        b.copy_start(Scope::Block, slot, x, &[si, z]);
        b.copy_commit(Scope::Block);
    }
    let acc0 = b.fill(Type::tile(F32, 16, 16, Layout::Row), 0.0);
    let out = b.for_range(z, tiles, one, &[acc0], |b, kt, carried| {
        b.copy_wait(Scope::Block, wait.unwrap_or(stages - 2));
        b.barrier();
        let ahead = b.const_i32(stages as i32 - 1);
        let next = b.binary(BinaryFn::Add, kt, ahead);
        let ns = b.binary(BinaryFn::Rem, next, s_c);
        let nslot = b.shared_index(ring, ns);
        b.copy_start(Scope::Block, nslot, x, &[next, z]);
        b.copy_commit(Scope::Block);
        let cs = b.binary(BinaryFn::Rem, kt, s_c);
        let cslot = b.shared_index(ring, cs);
        let t = b.load(Type::tile(F32, 16, 16, Layout::Row), cslot, &[]);
        vec![b.binary(BinaryFn::Add, carried[0], t)]
    });
    let w = b.warp_idx();
    let first = b.cmp(CmpPred::Eq, w, z);
    b.if_then(first, |b| b.store(y, out[0], &[z, z]));
    module(b.finish())
}

fn run_ring(m: &Module, rows: usize, seed: u64) -> Result<(Vec<f64>, Vec<f64>), String> {
    let xv: Vec<f64> = values(rows * 16, seed)
        .into_iter()
        .map(|v| f64::from(v as f32))
        .collect();
    let mut args = vec![
        Arg::Tensor(HostTensor::new(F32, &[rows, 16], &xv).unwrap()),
        Arg::Tensor(HostTensor::zeros(F32, &[16, 16])),
    ];
    interp::run(m, "ring_sum", [1, 1, 1], &mut args).map_err(|e| e.to_string())?;
    // Reference: the sum over the tiles in f64, element (r, c) from rows r, r + 16, r + 32, ….
    let mut want = vec![0.0; 256];
    for (i, v) in xv.iter().enumerate() {
        want[(i / 16 % 16) * 16 + i % 16] += v;
    }
    Ok((args[1].tensor().unwrap().to_vec(), want))
}

#[test]
fn a_multistage_ring_sums_every_tile_once() {
    for (stages, warps) in [(2, 1), (3, 2), (4, 4)] {
        let m = ring_sum(stages, warps, None);
        verify(&m).unwrap();
        // Ragged row counts, fewer tiles than stages, and many tiles.
        for (rows, seed) in [(16, 1), (23, 2), (70, 3), (300, 4)] {
            let (got, want) = run_ring(&m, rows, seed).unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                    "{stages} stages, {warps} warps, {rows} rows: {g} vs {w}"
                );
            }
        }
    }
}

#[test]
fn reading_a_slot_whose_copy_was_not_waited_is_an_error() {
    // 3 stages keep 2 groups in flight; waiting for all but 2 leaves the current slot in flight.
    let m = ring_sum(3, 2, Some(2));
    let e = run_ring(&m, 70, 5).unwrap_err();
    assert!(e.contains("in flight") && e.contains("copy_wait"), "{e}");
}

#[test]
fn a_copy_into_a_slot_still_in_flight_is_an_error() {
    // With 2 stages and `copy_wait[1]` the first iteration reads slot 0 before its group landed;
    // here the ring of 1 stage reuses the only slot while its copy is in flight.
    let mut b = FuncBuilder::kernel("reuse", 1);
    let x = b.param("x", Type::global(F32, 2, false));
    let s = b.alloc_shared(Type::shared_tile(F32, 16, 16, Swizzle::None));
    let z = b.const_i32(0);
    b.copy_start(Scope::Block, s, x, &[z, z]);
    b.copy_commit(Scope::Block);
    b.copy_start(Scope::Block, s, x, &[z, z]);
    let m = module(b.finish());
    let mut args = vec![Arg::Tensor(
        HostTensor::new(F32, &[16, 16], &values(256, 6)).unwrap(),
    )];
    let e = interp::run(&m, "reuse", [1, 1, 1], &mut args).unwrap_err();
    assert!(
        e.to_string().contains("earlier copy into it is in flight"),
        "{e}"
    );
}

#[test]
fn copy_ops_round_trip_through_the_text_format() {
    let m = ring_sum(3, 2, None);
    let text = print_module(&m);
    assert!(
        text.contains("copy_start @block") && text.contains("copy_wait[1] @block"),
        "{text}"
    );
    let back = parse_module(&text).unwrap();
    assert_eq!(print_module(&back), text);
}

#[test]
fn copy_start_into_a_register_value_is_a_verify_error() {
    let src = "kernel @k(%x: gl<f32, 2>) warps(1) {
      %0 = const[0] () : i32
      %t = fill[0.0] () : rt<f32, 16x16, row>
      copy_start @block (%t, %x, %0, %0)
      return ()
    }";
    let m = parse_module(src).unwrap();
    let e = verify(&m).unwrap_err();
    assert!(format!("{e:?}").contains("dst"), "{e:?}");
}
