//! f32 operands of `mma`: the synchronous mma takes them (they multiply in tf32), the
//! asynchronous warpgroup mma refuses them with a message that points at the synchronous one;
//! the interpreter's product uses the tf32-rounded operands, checked against a rounding written
//! here from the definition (nearest with 10 fraction bits, ties away from zero).

use tilekit_ir::interp::{self, Arg, HostTensor};
use tilekit_ir::ScalarType::F32;
use tilekit_ir::{parse_module, verify, Module};

fn parse(text: &str) -> Module {
    parse_module(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn mma_async_refuses_f32_operands() {
    let text = "kernel @k(%y: gl<f32, 2, mut>) warps(4) {
  %sa = alloc_shared @block () : st<f32, 64x16, swz64>
  %sb = alloc_shared @block () : st<f32, 16x16, swz64>
  %acc0 = fill[0.0] () : rt<f32, 16x16, row>
  %d = mma_async.ab @warpgroup (%sa, %sb, %acc0) : rt<f32, 16x16, row>
  mma_commit @warpgroup ()
  %done = mma_wait[0] @warpgroup (%d) : rt<f32, 16x16, row>
  return ()
}
";
    let errs = verify(&parse(text)).expect_err("f32 mma_async");
    let e: String = errs.iter().map(|e| format!("{e}\n")).collect();
    assert!(
        e.contains("A and B of mma_async.ab") && e.contains("synchronous mma"),
        "{e}"
    );
}

/// `x` rounded to 11 significant bits, ties away from zero (normal range).
fn tf32(x: f64) -> f64 {
    let unit = 2f64.powi(x.abs().log2().floor() as i32 - 10);
    let q = x.abs() / unit;
    let r = if q - q.floor() >= 0.5 {
        q.floor() + 1.0
    } else {
        q.floor()
    };
    x.signum() * r * unit
}

#[test]
fn the_interpreter_multiplies_f32_tiles_in_tf32() {
    let text = "kernel @k(%a: gl<f32, 2>, %b: gl<f32, 2>, %y: gl<f32, 2, mut>) warps(1) {
  %z = const[0] () : i32
  %at = load (%a, %z, %z) : rt<f32, 16x16, row>
  %bt = load (%b, %z, %z) : rt<f32, 16x16, col>
  %c = fill[0.0] () : rt<f32, 16x16, row>
  %d = mma.ab (%at, %bt, %c) : rt<f32, 16x16, row>
  store (%y, %d, %z, %z)
  return ()
}
";
    let m = parse(text);
    verify(&m).unwrap_or_else(|e| panic!("{e:?}"));
    // Row i of A has one nonzero, a tie 1 + 2^-11 (rounds away to 1 + 2^-10) at column i;
    // B's entries are 1 + 3·2^-12 (rounds to 1 + 2^-10) on the diagonal and small values
    // 2^-20 · (1 + 2^-12) elsewhere (rounds to 2^-20), so D[i][j] = tf32(A[i][i])·tf32(B[i][j]).
    let tie = 1.0 + 2f64.powi(-11);
    let av: Vec<f64> = (0..256)
        .map(|k| {
            if k / 16 == k % 16 {
                tie * (1.0 + (k / 16) as f64)
            } else {
                0.0
            }
        })
        .collect();
    let bv: Vec<f64> = (0..256)
        .map(|k| {
            if k / 16 == k % 16 {
                1.0 + 3.0 * 2f64.powi(-12)
            } else {
                -(2f64.powi(-20)) * (1.0 + 2f64.powi(-12)) * (1 + k % 7) as f64
            }
        })
        .collect();
    let a = HostTensor::new(F32, &[16, 16], &av).unwrap();
    let b = HostTensor::new(F32, &[16, 16], &bv).unwrap();
    let mut args = vec![
        Arg::Tensor(a),
        Arg::Tensor(b),
        Arg::Tensor(HostTensor::full(F32, &[16, 16], 7.0)),
    ];
    interp::run(&m, "k", [1, 1, 1], &mut args).unwrap_or_else(|e| panic!("{e}"));
    let got = args[2].tensor().unwrap().to_vec();
    for i in 0..16 {
        for j in 0..16 {
            // B is read as stored (16×16, col layout: element (k, j) of B at row k).
            let want = tf32(av[i * 16 + i]) * tf32(bv[i * 16 + j]);
            assert_eq!(got[i * 16 + j], f64::from(want as f32), "D[{i}][{j}]");
        }
    }
}
