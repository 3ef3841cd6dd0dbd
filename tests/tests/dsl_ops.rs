//! Every DSL op builds the Tile IR op its documentation names, with types the verifier accepts;
//! the ones the acceptance kernels do not use are exercised here and run on the interpreter.

use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::ir::{print_module, verify};
use tilekit::Device;

#[tilekit::kernel(warps = 4)]
fn warp_and_group_ops(a: Gl<bf16, 2>, b: Gl<bf16, 2>, c: GlMut<f32, 2>, sums: GlMut<f32, 1>) {
    let a_smem: St<bf16, 64, 16> = alloc_shared();
    let b_smem: St<bf16, 16, 16> = alloc_shared();
    let v_smem: Sv<f32, 16> = alloc_shared();
    copy_block(a_smem, a.tile(0, 0));
    copy_warpgroup(b_smem, b.tile(0, 0));
    barrier();
    let w = warp_idx();
    // Warpgroup mma with A and B shared, then with A in registers (this warp's rows).
    let acc = mma_ab_wg(zeros(), a_smem, b_smem);
    let a_rows: Rt<bf16, 16, 16> = load_warpgroup(a_smem);
    let acc = mma_ab_wg(acc, a_rows, b_smem);
    // The four warp-scope transposition variants on the same operands (acc += 4·A·B).
    let a_row: Rt<bf16, 16, 16> = load(a_smem.tile(w, 0));
    let a_col: Rt<bf16, 16, 16, Col> = convert(transpose(a_row));
    let b_col: Rt<bf16, 16, 16, Col> = load(b_smem);
    let b_row: Rt<bf16, 16, 16> = convert(transpose(b_col));
    let acc = mma_ab(acc, a_row, b_col);
    let acc = mma_abt(acc, a_row, b_row);
    let acc = mma_atb(acc, a_col, b_col);
    let acc = mma_atbt(acc, a_col, b_row);
    store(c.tile(w, 0), acc);
    // Column sums of warp 0's tile through a shared vector, added atomically by every warp.
    if w.eq(0) {
        store(v_smem, col_sum(acc));
    }
    barrier();
    let v: Rv<f32, 16, Rows> = load(v_smem);
    let total = reduce_all(Red::Sum, v);
    atomic_add(sums.at(0), total);
}

#[test]
fn warpgroup_and_transposed_mma_agree_with_plain_mma() {
    let vals = |n: usize, s: usize| {
        (0..n)
            .map(|i| ((i * s) % 7) as f64 - 3.0)
            .collect::<Vec<_>>()
    };
    let a = HostTensor::new(BF16, &[64, 16], &vals(1024, 3)).unwrap();
    let b = HostTensor::new(BF16, &[16, 16], &vals(256, 5)).unwrap();
    let mut c = HostTensor::zeros(F32, &[64, 16]);
    let mut sums = HostTensor::zeros(F32, &[16]);
    warp_and_group_ops::launch(&Device::Cpu, 1, &a, &b, &mut c, &mut sums).unwrap();
    let (av, bv) = (a.to_vec(), b.to_vec());
    let ab = |i: usize, j: usize| {
        (0..16)
            .map(|k| av[i * 16 + k] * bv[k * 16 + j])
            .sum::<f64>()
    };
    for (i, j) in [(0, 0), (17, 5), (63, 15)] {
        assert_eq!(c.get(&[i, j]), Some(6.0 * ab(i, j)), "C[{i}][{j}]");
    }
    let warp0: f64 = (0..16)
        .flat_map(|i| (0..16).map(move |j| (i, j)))
        .map(|(i, j)| 6.0 * ab(i, j))
        .sum();
    assert_eq!(sums.get(&[0]), Some(4.0 * warp0));
}

#[tilekit::kernel]
fn elementwise_ops(x: Gl<f32, 2>, lim: Scalar<f32>, y: GlMut<f32, 2>) {
    let t: Rt<f32, 16, 16> = load(x.tile(0, 0));
    let rows: Rt<f32, 16, 16> = iota_rows();
    let cols: Rt<f32, 16, 16> = iota_cols();
    let s: Rt<f32, 16, 16> = splat(lim);
    let clipped = t.min(s).max(-s);
    let masked = mask_anticausal(mask_rows(clipped, 0, 8, 100.0), 0, 0, -1.0);
    let z = add_col(masked, col_max(rows + cols));
    let pick = select(lim.gt(0.0), z, -z);
    store(y.tile(0, 0), pick);
}

#[test]
fn creation_masks_selects_and_broadcasts_compose() {
    let x = HostTensor::new(
        F32,
        &[16, 16],
        &(0..256).map(|i| f64::from(i) - 128.0).collect::<Vec<_>>(),
    )
    .unwrap();
    let mut y = HostTensor::zeros(F32, &[16, 16]);
    elementwise_ops::launch(&Device::Cpu, 1, &x, 5.0f32.into(), &mut y).unwrap();
    // Element (r, c): clamp(x, ±5); rows ≥ 8 → 100; below the diagonal → -1; plus col_max(r + c) = 15 + c.
    let want = |r: usize, c: usize| {
        let v = if c < r {
            -1.0
        } else if r >= 8 {
            100.0
        } else {
            (x.get(&[r, c]).unwrap()).clamp(-5.0, 5.0)
        };
        v + 15.0 + c as f64
    };
    for (r, c) in [(0, 0), (3, 9), (9, 2), (12, 14), (15, 15)] {
        assert_eq!(y.get(&[r, c]), Some(want(r, c)), "({r}, {c})");
    }
    verify(elementwise_ops::module()).unwrap();
    let text = print_module(elementwise_ops::module());
    for op in [
        "iota.rows",
        "iota.cols",
        "splat",
        "select",
        "mask.rows",
        "mask.anticausal",
        "bcast_col.add",
        "reduce_col.max",
        "map.min",
        "map.max",
        "map.neg",
    ] {
        assert!(text.contains(op), "{op} missing:\n{text}");
    }
}
