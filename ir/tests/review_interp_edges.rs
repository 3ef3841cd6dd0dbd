//! Review probes: a verified module with arbitrary arguments must never panic the interpreter.

use tilekit_ir::interp::{self, Arg, HostTensor, InterpError};
use tilekit_ir::ScalarType::*;
use tilekit_ir::*;

fn run_text(src: &str, grid: [u32; 3], args: &mut [Arg]) -> Result<interp::RunStats, InterpError> {
    let m = parse_module(src).unwrap();
    let k = m.kernels().next().unwrap().name.clone();
    interp::run(&m, &k, grid, args)
}

#[test]
fn a_huge_register_tile_is_an_error_not_a_panic() {
    let src = "kernel @k(%x: gl<f32, 2, mut>) warps(1) {
      %0 = fill[1] () : rt<f32, 4294967280x4294967280, row>
      %1 = const[0] () : i32
      store (%x, %0, %1, %1)
      return ()
    }";
    let mut args = vec![Arg::Tensor(HostTensor::zeros(F32, &[16, 16]))];
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_text(src, [1, 1, 1], &mut args)
    }));
    assert!(matches!(r, Ok(Err(_))), "{r:?}");
}

#[test]
fn a_huge_shared_array_is_an_error_not_a_panic() {
    let src = "kernel @k(%x: gl<f32, 2>) warps(1) {
      %s = alloc_shared @block () : [4294967295 x st<f32, 4294967280x4294967280, none>]
      %sem = alloc_shared @block () : sem
      %0 = const[0] () : i32
      %t = shared.index (%s, %0) : st<f32, 4294967280x4294967280, none>
      sem.init[1] (%sem)
      copy_async (%t, %x, %sem, %0, %0)
      return ()
    }";
    let mut args = vec![Arg::Tensor(HostTensor::zeros(F32, &[16, 16]))];
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_text(src, [1, 1, 1], &mut args)
    }));
    assert!(matches!(r, Ok(Err(_))), "{r:?}");
}

#[test]
fn host_tensor_shapes_whose_size_overflows_are_errors() {
    let r = std::panic::catch_unwind(|| HostTensor::new(F32, &[usize::MAX, 4], &[]));
    assert!(matches!(r, Ok(Err(_))), "{r:?}");
}

#[test]
fn sem_ops_on_a_shared_tile_do_not_verify_or_panic() {
    let src = "kernel @k(%x: gl<f32, 2>) warps(1) {
      %s = alloc_shared @block () : [2 x sem]
      sem.init[1] (%s)
      return ()
    }";
    let mut args = vec![Arg::Tensor(HostTensor::zeros(F32, &[16, 16]))];
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_text(src, [1, 1, 1], &mut args)
    }));
    assert!(matches!(r, Ok(Err(_))), "{r:?}");
}

#[test]
fn zero_sized_dims_and_negative_tile_coordinates_are_masked() {
    let src = "kernel @k(%x: gl<f32, 2, mut>, %i: i32) warps(1) {
      %0 = load (%x, %i, %i) : rt<f32, 16x16, row>
      store (%x, %0, %i, %i)
      atomic_add (%x, %0, %i, %i)
      return ()
    }";
    for shape in [[0usize, 16], [16, 0], [0, 0], [17, 17]] {
        for i in [i32::MIN, -1, 0, 1, i32::MAX] {
            let mut args = vec![Arg::Tensor(HostTensor::zeros(F32, &shape)), Arg::i32(i)];
            run_text(src, [1, 1, 1], &mut args).unwrap();
        }
    }
}

#[test]
fn helpers_with_shared_arguments_run() {
    let src = "func @h(%s: st<f32, 16x16, none>, %x: gl<f32, 2>) -> () {
      %0 = const[0] () : i32
      copy @block (%s, %x, %0, %0)
      barrier @block ()
      %t = load (%s) : rt<f32, 16x16, row>
      return ()
    }
    kernel @k(%x: gl<f32, 2>) warps(2) {
      %s = alloc_shared @block () : st<f32, 16x16, none>
      call[@h] (%s, %x)
      return ()
    }";
    let mut args = vec![Arg::Tensor(HostTensor::zeros(F32, &[16, 16]))];
    run_text(src, [1, 1, 1], &mut args).unwrap();
}

#[test]
fn empty_host_tensors_with_huge_dims_have_zero_elements() {
    let big = usize::MAX / 2;
    for shape in [[big, big, 0], [0, big, big]] {
        let t = HostTensor::new(F32, &shape, &[]).unwrap();
        assert_eq!(t.len(), 0);
        assert!(t.to_vec().is_empty());
        let z = HostTensor::zeros(F32, &shape);
        assert!(z.is_empty());
    }
}

#[test]
fn shared_bytes_of_a_huge_array_is_none_not_an_overflow() {
    let st = Type::shared_tile(F32, 4294967280, 4294967280, Swizzle::None);
    assert_eq!(st.shared_bytes(), None);
    assert_eq!(Type::shared_array(st, u32::MAX).shared_bytes(), None);
}

#[test]
fn grids_beyond_the_i32_range_of_block_idx_are_argument_errors() {
    // block_idx and grid_dim are i32: a grid of 2^31 blocks along x would give values that
    // are not i32s. (The kernel fails at once in block 0 if the grid is accepted.)
    let src = "kernel @k(%x: gl<i32, 1, mut>) warps(1) {
      %0 = grid_dim.x () : i32
      %1 = const[0] () : i32
      store (%x, %0, %1)
      %2 = const[5] () : i32
      store (%x, %0, %2)
      return ()
    }";
    for grid in [[1u32 << 31, 1, 1], [1, u32::MAX, 1], [1, 1, 1 << 31]] {
        let mut args = vec![Arg::Tensor(HostTensor::zeros(I32, &[1]))];
        let e = run_text(src, grid, &mut args).unwrap_err();
        assert!(matches!(e, InterpError::Argument { .. }), "{grid:?}: {e}");
        assert!(e.to_string().contains("2147483647"), "{e}");
    }
}

#[test]
fn a_collective_op_that_only_some_warps_execute_is_an_error() {
    // Only warp 0 runs the block-scope copy out: it writes its share (every other row) and
    // the rest of `y` would silently keep its old values.
    let src = "kernel @k(%x: gl<f32, 2>, %y: gl<f32, 2, mut>) warps(2) {
      %s = alloc_shared @block () : st<f32, 16x16, none>
      %0 = const[0] () : i32
      copy @block (%s, %x, %0, %0)
      barrier @block ()
      %w = warp_idx () : i32
      %c = cmp.eq (%w, %0) : bool
      if (%c) {
        copy @block (%y, %s, %0, %0)
        yield ()
      } {
        yield ()
      }
      return ()
    }";
    let mut args = vec![
        Arg::Tensor(HostTensor::full(F32, &[16, 16], 1.0)),
        Arg::Tensor(HostTensor::zeros(F32, &[16, 16])),
    ];
    let e = run_text(src, [1, 1, 1], &mut args).unwrap_err();
    assert!(matches!(e, InterpError::Runtime { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("only 1 of the 2 warps of its block"), "{msg}");
    assert!(msg.contains("copy"), "{msg}");
}

#[test]
fn int_fill_and_mask_values_round_to_nearest_even_and_saturate() {
    // `fill[v]` is "v rounded to the dtype" (round to nearest even); a mask value of -inf on
    // an integer tile is its most negative value, not 0.
    let src = "kernel @k(%y: gl<i32, 2, mut>) warps(1) {
      %0 = fill[1.5] () : rt<i32, 16x16, row>
      %z = const[0] () : i32
      %1 = mask.causal[-inf] (%0, %z, %z) : rt<i32, 16x16, row>
      %2 = mask.anticausal[inf] (%1, %z, %z) : rt<i32, 16x16, row>
      store (%y, %2, %z, %z)
      return ()
    }";
    let mut args = vec![Arg::Tensor(HostTensor::zeros(I32, &[16, 16]))];
    run_text(src, [1, 1, 1], &mut args).unwrap();
    let y = args[0].tensor().unwrap();
    assert_eq!(y.get(&[3, 3]), Some(2.0));
    assert_eq!(y.get(&[3, 4]), Some(f64::from(i32::MIN)));
    assert_eq!(y.get(&[4, 3]), Some(f64::from(i32::MAX)));
    let t = HostTensor::new(I32, &[2], &[2.5, -0.5]).unwrap();
    assert_eq!(t.to_vec(), vec![2.0, 0.0]);
}

#[test]
fn int_to_int_convert_saturates_as_the_spec_says() {
    let src = "kernel @k(%x: gl<i32, 1>, %y: gl<i32, 1, mut>, %u: gl<u32, 1, mut>) warps(1) {
      %i = block_idx.x () : i32
      %0 = load (%x, %i) : i32
      %1 = convert (%0) : i8
      %2 = convert (%1) : i32
      store (%y, %2, %i)
      %3 = convert (%0) : u32
      store (%u, %3, %i)
      return ()
    }";
    let x = HostTensor::new(I32, &[3], &[300.0, -300.0, 5.0]).unwrap();
    let mut args = vec![
        Arg::Tensor(x),
        Arg::Tensor(HostTensor::zeros(I32, &[3])),
        Arg::Tensor(HostTensor::zeros(U32, &[3])),
    ];
    run_text(src, [3, 1, 1], &mut args).unwrap();
    assert_eq!(args[1].tensor().unwrap().to_vec(), vec![127.0, -128.0, 5.0]);
    assert_eq!(args[2].tensor().unwrap().to_vec(), vec![300.0, 0.0, 5.0]);
}
