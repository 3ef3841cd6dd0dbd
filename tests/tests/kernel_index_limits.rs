//! Index arithmetic at the i32 limit: launches accept extents up to `i32::MAX`, so every tile
//! count and index a kernel computes must be exact there. Tensors of 2³¹ elements cannot be
//! allocated here, so the kernels are checked two ways: the tile-count helpers run on the
//! interpreter with scalar extents at and near `i32::MAX`; and each library and example kernel's
//! scalar index arithmetic is evaluated from its IR at the largest shapes (every extent
//! `i32::MAX`), in the first and last block and warp of its documented grid and the first and
//! last iteration of each loop, checking that every loop runs over the right number of tiles and
//! that no i32 operation wraps.

use std::collections::HashMap;

use tilekit::dsl::*;
use tilekit::ir::interp::{self, Arg, HostTensor};
use tilekit::ir::{
    BinaryFn, CmpPred, Const, Dim3, FuncBuilder, Module, Op, OpKind, Region, ScalarType, Type,
    Value,
};
use tilekit::{Device, ScalarArg};

const MAX: i64 = i32::MAX as i64;

/// Tile sizes of the helpers' tests: 1, small, the library's, a non-power of two, a huge one.
const TILES: [usize; 7] = [1, 2, 16, 32, 64, 100, 1 << 30];

/// Extents at both ends of i32 (negative ones too: the helper rounds up there as well).
const EXTENTS: [i32; 12] = [
    0,
    1,
    63,
    64,
    65,
    i32::MAX - 64,
    i32::MAX - 63,
    i32::MAX - 1,
    i32::MAX,
    -1,
    -65,
    i32::MIN + 1,
];

/// `⌈n / t⌉` in i64 (exact).
fn ceil_div_exact(n: i64, t: i64) -> i64 {
    (n + t - 1).div_euclid(t)
}

#[tilekit::kernel(warps = 1)]
fn tile_counts(n: Scalar<i32>, out: GlMut<i32, 1>) {
    for (i, t) in TILES.into_iter().enumerate() {
        store(out.at(i), ceil_div(n, t));
    }
}

#[test]
fn dsl_ceil_div_is_exact_up_to_i32_max() {
    for n in EXTENTS {
        let mut out = HostTensor::zeros(ScalarType::I32, &[TILES.len()]);
        tile_counts::launch(&Device::Cpu, 1, ScalarArg::from(n), &mut out).unwrap();
        let want: Vec<f64> = TILES
            .iter()
            .map(|&t| ceil_div_exact(i64::from(n), t as i64) as f64)
            .collect();
        assert_eq!(out.to_vec(), want, "ceil_div({n}, {TILES:?})");
    }
}

#[test]
fn examples_tiles_ir_is_exact_up_to_i32_max() {
    let mut b = FuncBuilder::kernel("tile_counts", 1);
    let n = b.param("n", Type::scalar(ScalarType::I32));
    let out = b.param("out", Type::global(ScalarType::I32, 1, true));
    for (i, &t) in TILES.iter().enumerate() {
        let count = tilekit_examples::tiling::tiles_ir(&mut b, n, t as u32);
        let i = b.const_i32(i as i32);
        b.store(out, count, &[i]);
    }
    let mut module = Module::new();
    module.push(b.finish());
    for n in EXTENTS {
        let mut args = vec![
            Arg::i32(n),
            Arg::Tensor(HostTensor::zeros(ScalarType::I32, &[TILES.len()])),
        ];
        interp::run(&module, "tile_counts", [1, 1, 1], &mut args).unwrap();
        let want: Vec<f64> = TILES
            .iter()
            .map(|&t| ceil_div_exact(i64::from(n), t as i64) as f64)
            .collect();
        let got = args[1].tensor().unwrap().to_vec();
        assert_eq!(got, want, "tiles_ir({n}, {TILES:?})");
    }
}

/// Where a kernel runs: the extents of its tensor parameters (by parameter position), its block
/// and warp.
struct Site<'a> {
    dims: &'a HashMap<usize, Vec<i64>>,
    grid: [i64; 3],
    block: [i64; 3],
    warp: i64,
    warps: i64,
}

/// What evaluating a kernel's scalar index arithmetic found.
#[derive(Default)]
struct Findings {
    /// `(lo, hi)` of every `for` whose bounds are known, in program order.
    loops: Vec<(i64, i64)>,
    /// Every i32 operation whose exact result does not fit i32.
    wraps: Vec<String>,
}

/// Evaluates the i32/bool scalar ops of `region` whose operands are known (constants, extents,
/// indices, loop counters at their ends), as exact integers. Values that depend on memory or on
/// loop-carried state stay unknown; every region is entered (both branches of an `if`), and a
/// `for` body once with its first and once with its last counter.
fn eval_region(
    module_fn: &tilekit::ir::Func,
    region: &Region,
    site: &Site<'_>,
    env: &mut HashMap<Value, i64>,
    found: &mut Findings,
) {
    for op in &region.ops {
        eval_op(module_fn, op, site, env, found);
    }
}

fn is_int_scalar(f: &tilekit::ir::Func, v: Value) -> bool {
    matches!(
        f.value_type(v),
        Type::Scalar(ScalarType::I32 | ScalarType::Bool)
    )
}

fn eval_op(
    f: &tilekit::ir::Func,
    op: &Op,
    site: &Site<'_>,
    env: &mut HashMap<Value, i64>,
    found: &mut Findings,
) {
    let known = |env: &HashMap<Value, i64>, i: usize| env.get(&op.operands[i]).copied();
    let result = match &op.kind {
        OpKind::Const(Const::Int(v)) => Some(*v),
        OpKind::Const(Const::Bool(b)) => Some(i64::from(*b)),
        OpKind::GlobalDim(k) => f
            .params
            .iter()
            .position(|p| *p == op.operands[0])
            .and_then(|i| site.dims.get(&i))
            .and_then(|d| d.get(*k as usize).copied()),
        OpKind::BlockIdx(d) => Some(
            site.block[match d {
                Dim3::X => 0,
                Dim3::Y => 1,
                Dim3::Z => 2,
            }],
        ),
        OpKind::GridDim(d) => Some(
            site.grid[match d {
                Dim3::X => 0,
                Dim3::Y => 1,
                Dim3::Z => 2,
            }],
        ),
        OpKind::WarpIdx => Some(site.warp),
        OpKind::NumWarps => Some(site.warps),
        OpKind::Binary(bf) if is_int_scalar(f, op.results[0]) => {
            match (known(env, 0), known(env, 1)) {
                (Some(x), Some(y)) => {
                    let exact = match bf {
                        BinaryFn::Add => Some(x + y),
                        BinaryFn::Sub => Some(x - y),
                        BinaryFn::Mul => Some(x * y),
                        BinaryFn::Div if y != 0 => Some(x / y),
                        BinaryFn::Rem if y != 0 => Some(x % y),
                        BinaryFn::Max => Some(x.max(y)),
                        BinaryFn::Min => Some(x.min(y)),
                        BinaryFn::And => Some(x & y),
                        BinaryFn::Or => Some(x | y),
                        BinaryFn::Xor => Some(x ^ y),
                        _ => None,
                    };
                    if let Some(e) = exact {
                        if i32::try_from(e).is_err() {
                            found.wraps.push(format!(
                                "map.{} ({x}, {y}) = {e} at {:?}",
                                bf.name(),
                                op.loc
                            ));
                        }
                    }
                    // Continue with the wrapped value, as the hardware would.
                    exact.map(|e| i64::from(e as i32))
                }
                _ => None,
            }
        }
        OpKind::Cmp(p) => match (known(env, 0), known(env, 1)) {
            (Some(x), Some(y)) => Some(i64::from(match p {
                CmpPred::Lt => x < y,
                CmpPred::Le => x <= y,
                CmpPred::Gt => x > y,
                CmpPred::Ge => x >= y,
                CmpPred::Eq => x == y,
                CmpPred::Ne => x != y,
            })),
            _ => None,
        },
        OpKind::Select if is_int_scalar(f, op.results[0]) => {
            match (known(env, 0), known(env, 1), known(env, 2)) {
                (Some(c), Some(x), Some(y)) => Some(if c != 0 { x } else { y }),
                _ => None,
            }
        }
        OpKind::For => {
            if let (Some(lo), Some(hi)) = (known(env, 0), known(env, 1)) {
                found.loops.push((lo, hi));
                let counter = op.regions[0].args[0];
                for i in [lo, hi - 1] {
                    if i >= lo && i < hi {
                        env.insert(counter, i);
                        eval_region(f, &op.regions[0], site, env, found);
                    }
                }
                env.remove(&counter);
            } else {
                eval_region(f, &op.regions[0], site, env, found);
            }
            None
        }
        _ => {
            for r in &op.regions {
                eval_region(f, r, site, env, found);
            }
            None
        }
    };
    if let (Some(v), Some(&res)) = (result, op.results.first()) {
        if is_int_scalar(f, res) {
            env.insert(res, v);
        }
    }
}

/// A kernel at its largest shapes: its module, the extents of its tensor parameters, its grid,
/// and the trip count every `for` must have, by loop, in the first and the last block.
struct Case {
    name: String,
    module: Module,
    dims: HashMap<usize, Vec<i64>>,
    grid: [i64; 3],
    trips: Trips,
}

/// `trips(block)`: the expected `(lo, hi)` of a kernel's loops in that block.
type Trips = Box<dyn Fn([i64; 3]) -> Vec<(i64, i64)>>;

fn check_case(case: &Case) {
    let f = case
        .module
        .funcs
        .iter()
        .find(|f| f.is_kernel())
        .expect("a kernel");
    let tilekit::ir::FuncKind::Kernel { warps } = f.kind else {
        unreachable!()
    };
    let last = case.grid.map(|g| g - 1);
    for block in [[0, 0, 0], last] {
        let mut first_warp_loops = None;
        for warp in [0, i64::from(warps) - 1] {
            let site = Site {
                dims: &case.dims,
                grid: case.grid,
                block,
                warp,
                warps: i64::from(warps),
            };
            let mut found = Findings::default();
            eval_region(f, &f.body, &site, &mut HashMap::new(), &mut found);
            assert!(
                found.wraps.is_empty(),
                "{} in block {block:?}, warp {warp}: i32 arithmetic wraps: {:#?}",
                case.name,
                found.wraps
            );
            // Loops in the bodies of other loops are entered twice; the top-level trip counts
            // are what the expectation lists (in program order, first occurrence).
            let mut seen = Vec::new();
            for l in found.loops {
                if !seen.contains(&l) {
                    seen.push(l);
                }
            }
            first_warp_loops.get_or_insert(seen.clone());
            let want = (case.trips)(block);
            for w in &want {
                assert!(
                    covered(&seen, *w),
                    "{} in block {block:?}, warp {warp}: no loop over {w:?} tiles; loops found {seen:?}",
                    case.name
                );
            }
        }
    }
}

/// Whether the tiles `[w.0, w.1)` are walked exactly once by one loop or by consecutive loops
/// (a kernel may split its tile loop into a masked run, an unmasked interior and a masked
/// tail): a chain of non-empty loops from `w.0` to `w.1`, each starting where the last ended.
fn covered(loops: &[(i64, i64)], w: (i64, i64)) -> bool {
    if loops.contains(&w) {
        return true;
    }
    let mut at = w.0;
    while at < w.1 {
        let next = loops
            .iter()
            .filter(|&&(s, e)| s == at && e > s && e <= w.1)
            .map(|&(_, e)| e)
            .max();
        match next {
            Some(e) => at = e,
            None => return false,
        }
    }
    at == w.1
}

fn dims(entries: &[(usize, &[i64])]) -> HashMap<usize, Vec<i64>> {
    entries.iter().map(|(i, d)| (*i, d.to_vec())).collect()
}

fn cd(n: i64, t: i64) -> i64 {
    ceil_div_exact(n, t)
}

/// The library's kernels and the IR builder's GEMM at `i32::MAX` in every extent.
fn cases() -> Vec<Case> {
    use tilekit::kernels::{attention, gemm, moe, optim, softmax, ws_gemm};
    use tilekit_examples as ex;
    let mut cases = Vec::new();

    // Softmax: x and y [MAX, MAX]; both column loops run ⌈MAX / 64⌉ times.
    let sm_dims = dims(&[(0, &[MAX, MAX]), (1, &[MAX, MAX])]);
    let sm_grid = [cd(MAX, 64), 1, 1];
    cases.push(Case {
        name: "softmax_rows<f32,16,64,4>".into(),
        module: softmax::softmax_rows::<f32, 16, 64, 4>::module().clone(),
        dims: sm_dims.clone(),
        grid: sm_grid,
        trips: Box::new(|_| vec![(0, cd(MAX, 64))]),
    });

    // GEMM and warp-specialized GEMM: A, B, C [MAX, MAX]; the K loop runs ⌈MAX / 32⌉ times.
    let mm_dims = dims(&[(0, &[MAX, MAX]), (1, &[MAX, MAX]), (2, &[MAX, MAX])]);
    let mm_grid = [cd(MAX, 64), cd(MAX, 64), 1];
    for (name, module) in [
        (
            "gemm<f32,64,64,32,32,32>",
            gemm::gemm::<f32, 64, 64, 32, 32, 32>::module().clone(),
        ),
        (
            "ws_gemm<f32,64,64,32,32,2>",
            ws_gemm::ws_gemm::<f32, 64, 64, 32, 32, 2>::module().clone(),
        ),
        (
            "examples::gemm",
            ex::gemm::build(&ex::gemm::GemmConfig::default()),
        ),
    ] {
        cases.push(Case {
            name: name.into(),
            module,
            dims: mm_dims.clone(),
            grid: mm_grid,
            trips: Box::new(|_| vec![(0, cd(MAX, 32))]),
        });
    }

    // Attention: q, k, v, o [bh, MAX, 64], lse [bh, MAX]; the KV loop runs ⌈MAX / 64⌉ times,
    // causal blocks up to their diagonal: ⌈64·(qb + 1) / 64⌉ = qb + 1 tiles for query block qb
    // (the library's causal kernel runs query block grid − 1 − block first).
    let bh = 3;
    let at_dims = dims(&[
        (0, &[bh, MAX, 64]),
        (1, &[bh, MAX, 64]),
        (2, &[bh, MAX, 64]),
        (3, &[bh, MAX, 64]),
        (4, &[bh, MAX]),
    ]);
    let at_grid = [cd(MAX, 64), bh, 1];
    for causal in [false, true] {
        let module = if causal {
            attention::attention_fwd::<bf16, 64, 16, 64, 4, true>::module().clone()
        } else {
            attention::attention_fwd::<bf16, 64, 16, 64, 4, false>::module().clone()
        };
        cases.push(Case {
            name: format!("attention_fwd causal={causal}"),
            module,
            dims: at_dims.clone(),
            grid: at_grid,
            trips: Box::new(move |block| {
                let all = cd(MAX, 64);
                // The causal kernel runs its query blocks in reverse.
                let qb = if causal {
                    at_grid[0] - 1 - block[0]
                } else {
                    block[0]
                };
                vec![(0, if causal { all.min(qb + 1) } else { all })]
            }),
        });
    }

    // MoE: x [MAX, MAX], w [E, MAX, MAX], y [MAX, MAX]; the d loop runs ⌈MAX / 32⌉ times.
    let experts = 2;
    let moe_dims = dims(&[
        (0, &[MAX, MAX]),
        (1, &[experts, MAX, MAX]),
        (2, &[experts]),
        (3, &[experts * 64]),
        (4, &[experts * 64]),
        (5, &[MAX, MAX]),
    ]);
    cases.push(Case {
        name: "moe_expert_proj<16,4,64,32>".into(),
        module: moe::moe_expert_proj::<16, 4, 64, 32>::module().clone(),
        dims: moe_dims.clone(),
        grid: [experts, cd(MAX, 64), 1],
        trips: Box::new(|_| vec![(0, cd(MAX, 32))]),
    });

    // AdamW: p, g, m, v [MAX]; no loop, the chunk index of the last warp must not wrap.
    let ad_dims = dims(&[(0, &[MAX]), (1, &[MAX]), (2, &[MAX]), (3, &[MAX])]);
    cases.push(Case {
        name: "adamw_step<256,4>".into(),
        module: optim::adamw_step::<256, 4>::module().clone(),
        dims: ad_dims.clone(),
        grid: [cd(MAX, 1024), 1, 1],
        trips: Box::new(|_| vec![]),
    });
    cases
}

#[test]
fn every_kernel_counts_its_tiles_exactly_at_i32_max_and_no_index_wraps() {
    let cases = cases();
    assert_eq!(cases.len(), 8);
    for case in &cases {
        check_case(case);
    }
}

/// The evaluation above must be able to fail: the expression the kernels used before,
/// `(n + tile − 1) / tile`, wraps at `i32::MAX` and gives a negative trip count.
#[test]
fn the_evaluation_catches_a_tile_count_that_wraps() {
    let mut b = FuncBuilder::kernel("wrapping", 1);
    let x = b.param("x", Type::global(ScalarType::F32, 2, false));
    let n = b.dim(x, 1);
    let bias = b.const_i32(63);
    let t = b.const_i32(64);
    let padded = b.add(n, bias);
    let count = b.binary(BinaryFn::Div, padded, t);
    let (zero, one) = (b.const_i32(0), b.const_i32(1));
    b.for_range(zero, count, one, &[], |_, _, _| vec![]);
    let mut module = Module::new();
    module.push(b.finish());
    let case = Case {
        name: "wrapping".into(),
        module,
        dims: dims(&[(0, &[1, MAX])]),
        grid: [1, 1, 1],
        trips: Box::new(|_| vec![(0, cd(MAX, 64))]),
    };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_case(&case)));
    let message = r
        .expect_err("the wrapping count must fail the check")
        .downcast::<String>()
        .map(|s| *s)
        .unwrap_or_default();
    assert!(message.contains("i32 arithmetic wraps"), "{message}");
}

/// A tensor of `shape` whose every element is the one value `v` (all strides 0), so extents of
/// `i32::MAX` need no memory.
fn broadcast(dtype: ScalarType, shape: &[usize], v: f64) -> Arg {
    let strides = vec![0; shape.len()];
    Arg::Tensor(HostTensor::strided(dtype, shape, &strides, &[v]).unwrap())
}

/// Each loop-carrying library kernel launched on the interpreter with its looped extent at
/// `i32::MAX` (broadcast inputs, one block) must start its loop over the 2²⁵-odd tiles and so
/// run out of a small op budget. With the wrapping tile count the loop ran zero times and the
/// launch returned `Ok` with nothing computed (gemm: C = 0; softmax: nothing written).
#[test]
fn library_kernels_at_i32_max_run_their_loops_instead_of_returning_ok() {
    use tilekit::kernels::{attention, gemm, moe, softmax, ws_gemm};
    use ScalarType::{BF16, F32, I32};
    let big = i32::MAX as usize;
    let out = |dtype, shape: &[usize]| Arg::Tensor(HostTensor::zeros(dtype, shape));
    let mm = || {
        vec![
            broadcast(BF16, &[64, big], 1.0),
            broadcast(BF16, &[big, 64], 1.0),
            out(F32, &[64, 64]),
        ]
    };
    let runs: Vec<(&str, &Module, Vec<Arg>)> = vec![
        (
            "gemm",
            gemm::gemm::<f32, 64, 64, 32, 32, 32>::module(),
            mm(),
        ),
        (
            "ws_gemm",
            ws_gemm::ws_gemm::<f32, 64, 64, 32, 32, 2>::module(),
            mm(),
        ),
        (
            "softmax_rows",
            softmax::softmax_rows::<f32, 16, 64, 4>::module(),
            vec![
                broadcast(F32, &[64, big], 1.0),
                broadcast(F32, &[64, big], 0.0),
            ],
        ),
        (
            "attention_fwd",
            attention::attention_fwd::<bf16, 64, 16, 64, 4, false>::module(),
            vec![
                broadcast(BF16, &[1, 64, 64], 0.5),
                broadcast(BF16, &[1, big, 64], 0.5),
                broadcast(BF16, &[1, big, 64], 0.5),
                out(BF16, &[1, 64, 64]),
                out(F32, &[1, 64]),
                Arg::f32(0.125),
            ],
        ),
        (
            "moe_expert_proj",
            moe::moe_expert_proj::<16, 4, 64, 32>::module(),
            vec![
                broadcast(BF16, &[64, big], 1.0),
                broadcast(BF16, &[1, big, 64], 1.0),
                out(I32, &[1]),
                broadcast(I32, &[64], 0.0),
                broadcast(F32, &[64], 1.0),
                out(F32, &[64, 64]),
            ],
        ),
    ];
    for (name, module, mut args) in runs {
        let launch = interp::Launch::grid([1, 1, 1]).op_budget(20_000);
        let r = interp::run_with(module, name, launch, &mut args);
        assert!(
            matches!(r, Err(interp::InterpError::OpBudget { .. })),
            "{name} at extent i32::MAX: expected the op budget to stop the loop, got {r:?}"
        );
    }
}
