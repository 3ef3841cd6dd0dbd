//! MoE routing and permutation (`tilekit::kernels::moe_routing`) on the interpreter and the
//! sm_80 PTX emulator against plain-Rust f64 references written here from the definitions:
//! softmax top-k (Mixtral E=8 k=2, Qwen3 E=128 k=8), DeepSeek-V3 grouped sigmoid routing
//! (E=64 and E=256 in 8 groups keeping 4, k=8, scale 2.5), per-expert counts and the
//! contiguous and masked layouts, the deterministic combine and the bias update; with an
//! expert that every token chooses and one that none does, and rows full of exact ties (the
//! lower expert or group id wins).

#![cfg(feature = "jit")]

use std::cmp::Ordering;

use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32, I32};
use tilekit::kernels::check::Rng;
use tilekit::kernels::moe_routing::{self as mr, GroupedRouting, Layout};
use tilekit::Device;

fn emu() -> Device {
    Device::emulator("sm_80").unwrap()
}

/// Indices `0..n` ordered by descending key, equal keys by ascending index.
fn ranked(keys: &[f64]) -> Vec<usize> {
    let mut ix: Vec<usize> = (0..keys.len()).collect();
    ix.sort_by(|&a, &b| {
        keys[b]
            .partial_cmp(&keys[a])
            .unwrap_or(Ordering::Equal)
            .then(a.cmp(&b))
    });
    ix
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Softmax top-k of one row: ids by descending logit (ties: lower id), gates the softmax
/// renormalized over the k chosen.
fn softmax_topk(row: &[f64], k: usize) -> (Vec<usize>, Vec<f64>) {
    let ids: Vec<usize> = ranked(row).into_iter().take(k).collect();
    let m = row[ids[0]];
    let sum: f64 = ids.iter().map(|&i| (row[i] - m).exp()).sum();
    let gates = ids.iter().map(|&i| (row[i] - m).exp() / sum).collect();
    (ids, gates)
}

/// DeepSeek-V3 routing of one row, and the smallest gap between scores whose order decides
/// the result (where f32 rounding could flip it).
fn grouped_topk(row: &[f64], bias: &[f64], cfg: GroupedRouting) -> (Vec<usize>, Vec<f64>, f64) {
    let e = row.len();
    let width = e / cfg.groups;
    let s: Vec<f64> = row.iter().map(|&x| sigmoid(x)).collect();
    let b: Vec<f64> = s.iter().zip(bias).map(|(s, b)| s + b).collect();
    let group_score: Vec<f64> = (0..cfg.groups)
        .map(|g| {
            let members = &b[g * width..(g + 1) * width];
            let top = ranked(members);
            members[top[0]] + members[top[1]]
        })
        .collect();
    let groups = ranked(&group_score);
    let kept = &groups[..cfg.topk_groups];
    let mut margin = f64::INFINITY;
    if cfg.topk_groups < cfg.groups {
        margin = group_score[groups[cfg.topk_groups - 1]] - group_score[groups[cfg.topk_groups]];
    }
    let masked: Vec<f64> = (0..e)
        .map(|i| {
            if kept.contains(&(i / width)) {
                b[i]
            } else {
                f64::NEG_INFINITY
            }
        })
        .collect();
    let order = ranked(&masked);
    // The chosen experts' order and the boundary to the first one left out.
    for w in order[..=cfg.top_k.min(e - 1)].windows(2) {
        margin = margin.min(masked[w[0]] - masked[w[1]]);
    }
    let ids: Vec<usize> = order[..cfg.top_k].to_vec();
    let sum: f64 = ids.iter().map(|&i| s[i]).sum();
    let gates = ids
        .iter()
        .map(|&i| s[i] / sum * f64::from(cfg.scale))
        .collect();
    (ids, gates, margin)
}

fn compare_routing(what: &str, got: &mr::Routed, want: &[(Vec<usize>, Vec<f64>)], tol: f64) {
    let (ids, gates) = (got.experts.to_vec(), got.gates.to_vec());
    let k = want[0].0.len();
    for (t, (wi, wg)) in want.iter().enumerate() {
        let gi: Vec<usize> = ids[t * k..(t + 1) * k]
            .iter()
            .map(|&v| v as usize)
            .collect();
        assert_eq!(&gi, wi, "{what}: experts of token {t}");
        for c in 0..k {
            let g = gates[t * k + c];
            assert!(
                (g - wg[c]).abs() <= tol * wg[c].abs().max(1.0),
                "{what}: gate {c} of token {t}: got {g}, expected {}",
                wg[c]
            );
        }
    }
}

/// Random logits, with (when `extremes`) expert `hot` far above every other for every token
/// and `cold` far below.
fn logits(
    rng: &mut Rng,
    t: usize,
    e: usize,
    ties: bool,
    extremes: Option<(usize, usize)>,
) -> HostTensor {
    let mut v: Vec<f64> = (0..t * e)
        .map(|_| {
            if ties {
                // A few values only: rows full of exact ties.
                (rng.uniform(0.0, 4.0).floor() - 1.0) * 0.75
            } else {
                rng.uniform(-4.0, 4.0)
            }
        })
        .collect();
    if let Some((hot, cold)) = extremes {
        for r in 0..t {
            v[r * e + hot] = 30.0;
            v[r * e + cold] = -30.0;
        }
    }
    HostTensor::new(F32, &[t, e], &v).unwrap()
}

fn check_softmax(device: &Device) {
    let mut rng = Rng::fresh();
    let seed = rng.seed;
    // (tokens, experts, k): Mixtral, Qwen3, and shapes not a multiple of 16.
    for (t, e, k) in [(100, 8, 2), (70, 128, 8), (33, 40, 8), (17, 8, 2)] {
        for (ties, extremes) in [(false, None), (true, None), (false, Some((e - 1, 2)))] {
            let x = logits(&mut rng, t, e, ties, extremes);
            let xv = x.to_vec();
            let want: Vec<_> = xv.chunks(e).map(|r| softmax_topk(r, k)).collect();
            let got = mr::route_softmax(device, &x, k).unwrap();
            let what = format!(
                "softmax top-{k} of {e}, {t} tokens, ties {ties}, extremes {extremes:?} on {}, seed {seed}",
                device.name()
            );
            compare_routing(&what, &got, &want, 2e-6);
            if let Some((hot, _)) = extremes {
                let ids = got.experts.to_vec();
                assert!(
                    ids.chunks(k).all(|r| r[0] == hot as f64),
                    "{what}: hot expert"
                );
            }
        }
    }
}

const DEEPSEEK: GroupedRouting = GroupedRouting {
    top_k: 8,
    groups: 8,
    topk_groups: 4,
    scale: 2.5,
};

fn check_grouped(device: &Device, shapes: &[(usize, usize)]) {
    let mut rng = Rng::fresh();
    let seed = rng.seed;
    let cfg = DEEPSEEK;
    for &(t, e) in shapes {
        for case in ["random", "extremes", "ties"] {
            let what = format!(
                "grouped {case}, E={e}, {t} tokens on {}, seed {seed}",
                device.name()
            );
            let mut bias: Vec<f64> = (0..e)
                .map(|_| {
                    if case == "ties" {
                        0.0
                    } else {
                        rng.uniform(-0.1, 0.1)
                    }
                })
                .collect();
            let (hot, cold) = (e / 3, e / 2 + 1);
            if case == "extremes" {
                // The bias alone decides: `hot` in every token's list, `cold` in none.
                bias[hot] = 4.0;
                bias[cold] = -4.0;
            }
            let bias_t = HostTensor::new(F32, &[e], &bias).unwrap();
            let bias = bias_t.to_vec();
            let mut rows: Vec<f64> = Vec::with_capacity(t * e);
            let mut want = Vec::with_capacity(t);
            for _ in 0..t {
                // Redraw a token whose choice rests on a gap that f32 could round away.
                for attempt in 0.. {
                    let row: Vec<f64> = (0..e)
                        .map(|_| match case {
                            "ties" => [-2.0, 0.0, 3.0][rng.uniform(0.0, 3.0) as usize],
                            _ => f64::from(rng.uniform(-4.0, 4.0) as f32),
                        })
                        .collect();
                    let (ids, gates, margin) = grouped_topk(&row, &bias, cfg);
                    if case == "ties" || margin > 1e-4 || attempt > 100 {
                        rows.extend(&row);
                        want.push((ids, gates));
                        break;
                    }
                }
            }
            let x = HostTensor::new(F32, &[t, e], &rows).unwrap();
            let got = mr::route_sigmoid_grouped(device, &x, &bias_t, cfg).unwrap();
            compare_routing(&what, &got, &want, 1e-5);
            let ids = got.experts.to_vec();
            if case == "extremes" {
                assert!(
                    ids.chunks(8).all(|r| r[0] == hot as f64),
                    "{what}: hot expert"
                );
                assert!(!ids.contains(&(cold as f64)), "{what}: cold expert");
            }
        }
    }
}

/// Each token's `k` distinct experts: expert `hot` for every token, never `cold`, the rest
/// random.
fn random_choices(
    rng: &mut Rng,
    t: usize,
    e: usize,
    k: usize,
    hot: usize,
    cold: usize,
) -> Vec<Vec<usize>> {
    (0..t)
        .map(|_| {
            let mut ids = vec![hot];
            while ids.len() < k {
                let x = (rng.uniform(0.0, e as f64) as usize).min(e - 1);
                if x != cold && !ids.contains(&x) {
                    ids.push(x);
                }
            }
            // The hot expert anywhere in the list.
            let p = (rng.uniform(0.0, k as f64) as usize).min(k - 1);
            ids.swap(0, p);
            ids
        })
        .collect()
}

/// The permuted layout written from its definition.
struct WantLayout {
    counts: Vec<usize>,
    offsets: Vec<usize>,
    sorted: Vec<i64>,
    row_of: Vec<Vec<i64>>,
    tile_expert: Vec<i64>,
}

fn want_layout(
    choices: &[Vec<usize>],
    e: usize,
    align: usize,
    layout: Layout,
    rows: usize,
) -> WantLayout {
    let counts: Vec<usize> = (0..e)
        .map(|x| choices.iter().filter(|c| c.contains(&x)).count())
        .collect();
    let cap = match layout {
        Layout::Masked { capacity } => Some(capacity),
        Layout::Contiguous => None,
    };
    let mut offsets = vec![0];
    for x in 0..e {
        let next = match cap {
            Some(c) => (x + 1) * c,
            None => offsets[x] + counts[x].div_ceil(align) * align,
        };
        offsets.push(next);
    }
    let mut sorted = vec![-1i64; rows];
    let mut row_of: Vec<Vec<i64>> = choices.iter().map(|c| vec![-1; c.len()]).collect();
    let mut tile_expert = vec![-1i64; rows / align];
    for x in 0..e {
        let tokens: Vec<usize> = (0..choices.len())
            .filter(|&t| choices[t].contains(&x))
            .collect();
        let used = cap.map_or(tokens.len(), |c| tokens.len().min(c));
        for (rank, &t) in tokens.iter().take(used).enumerate() {
            let row = offsets[x] + rank;
            sorted[row] = t as i64;
            let slot = choices[t].iter().position(|&y| y == x).unwrap();
            row_of[t][slot] = row as i64;
        }
        for tile in (offsets[x] / align)..(offsets[x] + used).div_ceil(align) {
            tile_expert[tile] = x as i64;
        }
    }
    WantLayout {
        counts,
        offsets,
        sorted,
        row_of,
        tile_expert,
    }
}

fn ids_tensor(choices: &[Vec<usize>], k: usize) -> HostTensor {
    let v: Vec<f64> = choices.iter().flatten().map(|&x| x as f64).collect();
    HostTensor::new(I32, &[choices.len(), k], &v).unwrap()
}

fn as_i64(t: &HostTensor) -> Vec<i64> {
    t.to_vec().into_iter().map(|v| v as i64).collect()
}

fn check_permute(device: &Device) {
    let mut rng = Rng::fresh();
    let seed = rng.seed;
    // (tokens, experts, k, align, layout)
    let cases = [
        (100, 8, 2, 16, Layout::Contiguous),
        (70, 128, 8, 16, Layout::Contiguous),
        (50, 64, 8, 32, Layout::Contiguous),
        (37, 8, 2, 16, Layout::Masked { capacity: 16 }),
        (20, 64, 8, 16, Layout::Masked { capacity: 32 }),
    ];
    for (t, e, k, align, layout) in cases {
        let what = format!(
            "permute {t} tokens, E={e}, k={k}, align {align}, {layout:?} on {}, seed {seed}",
            device.name()
        );
        let (hot, cold) = (e - 1, 1);
        let choices = random_choices(&mut rng, t, e, k, hot, cold);
        let p = mr::permute(device, &ids_tensor(&choices, k), e, align, layout).unwrap();
        let rows = mr::permuted_rows(t, k, e, align, layout);
        let want = want_layout(&choices, e, align, layout, rows);
        assert_eq!(want.counts[hot], t, "{what}: the reference's hot expert");
        assert_eq!(want.counts[cold], 0, "{what}: the reference's cold expert");
        let counts: Vec<usize> = as_i64(&p.counts).into_iter().map(|v| v as usize).collect();
        assert_eq!(counts, want.counts, "{what}: counts");
        let offsets: Vec<usize> = as_i64(&p.offsets).into_iter().map(|v| v as usize).collect();
        assert_eq!(offsets, want.offsets, "{what}: offsets");
        assert_eq!(
            as_i64(&p.sorted_token),
            want.sorted,
            "{what}: sorted tokens"
        );
        let row_of = as_i64(&p.row_of);
        for (tok, wr) in want.row_of.iter().enumerate() {
            assert_eq!(
                &row_of[tok * k..(tok + 1) * k],
                &wr[..],
                "{what}: rows of token {tok}"
            );
        }
        assert_eq!(
            as_i64(&p.tile_expert),
            want.tile_expert,
            "{what}: tile experts"
        );
    }
}

fn check_combine(device: &Device) {
    let mut rng = Rng::fresh();
    let seed = rng.seed;
    for (t, e, k, d, dtype) in [
        (50, 8, 2, 100, F32),
        (33, 64, 8, 64, BF16),
        (20, 128, 8, 130, F32),
    ] {
        let what = format!(
            "combine {t} tokens, k={k}, D={d}, {dtype} on {}, seed {seed}",
            device.name()
        );
        let choices = random_choices(&mut rng, t, e, k, 0, 1);
        // A masked layout drops tokens: their rows are -1 and add nothing.
        let layout = Layout::Masked { capacity: 16 };
        let rows = mr::permuted_rows(t, k, e, 16, layout);
        let want = want_layout(&choices, e, 16, layout, rows);
        let row_of_v: Vec<f64> = want.row_of.iter().flatten().map(|&r| r as f64).collect();
        let row_of = HostTensor::new(I32, &[t, k], &row_of_v).unwrap();
        let x = rng.tensor(dtype, &[rows, d], -2.0, 2.0);
        let gates = rng.tensor(F32, &[t, k], 0.0, 1.0);
        let y = mr::combine(device, &x, &row_of, &gates).unwrap();
        let (xv, gv, yv) = (x.to_vec(), gates.to_vec(), y.to_vec());
        let mut dropped = 0;
        for tok in 0..t {
            for j in 0..d {
                let mut sum = 0.0;
                let mut mag = 0.0;
                for c in 0..k {
                    let r = want.row_of[tok][c];
                    if r < 0 {
                        dropped += usize::from(j == 0);
                        continue;
                    }
                    let term = gv[tok * k + c] * xv[r as usize * d + j];
                    sum += term;
                    mag += term.abs();
                }
                let got = yv[tok * d + j];
                assert!(
                    (got - sum).abs() <= 1e-6 * mag.max(1e-30) * k as f64,
                    "{what}: y[{tok}][{j}] = {got}, expected {sum}"
                );
            }
        }
        assert!(
            dropped > 0,
            "{what}: the hot expert's capacity drops tokens"
        );
    }
}

fn check_bias_update(device: &Device) {
    let mut rng = Rng::fresh();
    let seed = rng.seed;
    for e in [8usize, 64, 256, 40] {
        let what = format!("bias update E={e} on {}, seed {seed}", device.name());
        let mut counts: Vec<f64> = (0..e).map(|_| rng.uniform(0.0, 50.0).floor()).collect();
        counts[0] = 0.0;
        // Expert 1 exactly at the mean (its sign is 0): c1 = S / (e − 1) for S the sum of
        // the others, made divisible by e − 1.
        let others = |c: &[f64]| c.iter().sum::<f64>() - c[1];
        let short = (e - 1) - others(&counts) as usize % (e - 1);
        counts[2] += (short % (e - 1)) as f64;
        counts[1] = others(&counts) / (e - 1) as f64;
        let counts_t = HostTensor::new(I32, &[e], &counts).unwrap();
        let b0 = rng.tensor(F32, &[e], -0.5, 0.5);
        let mut bias = b0.clone();
        let rate = 1e-3f32;
        mr::update_bias(device, &counts_t, rate, &mut bias).unwrap();
        let mean = counts.iter().sum::<f64>() / e as f64;
        let (bv, b0v) = (bias.to_vec(), b0.to_vec());
        for x in 0..e {
            let sign = if mean > counts[x] {
                1.0
            } else if mean < counts[x] {
                -1.0
            } else {
                0.0
            };
            let want = b0v[x] + f64::from(rate) * sign;
            assert!(
                (bv[x] - want).abs() <= 1e-7,
                "{what}: bias[{x}] = {}, expected {want}",
                bv[x]
            );
        }
    }
}

/// Routing, permutation and combine chained with every expert the identity: each token gets
/// back its own row times the sum of its gates (1 for softmax routing).
fn check_chain(device: &Device) {
    let mut rng = Rng::fresh();
    let seed = rng.seed;
    let (t, e, k, d) = (45, 8, 2, 64);
    let what = format!(
        "route → permute → combine on {}, seed {seed}",
        device.name()
    );
    let logits = logits(&mut rng, t, e, false, Some((3, 5)));
    let r = mr::route_softmax(device, &logits, k).unwrap();
    let p = mr::permute(device, &r.experts, e, 16, Layout::Contiguous).unwrap();
    let x = rng.tensor(F32, &[t, d], -1.0, 1.0);
    let xv = x.to_vec();
    // The identity experts: permuted row i is token sorted_token[i]'s row (0 for padding).
    let sorted = as_i64(&p.sorted_token);
    let mut xp = vec![0.0; sorted.len() * d];
    for (i, &tok) in sorted.iter().enumerate() {
        if tok >= 0 {
            let tok = tok as usize;
            xp[i * d..(i + 1) * d].copy_from_slice(&xv[tok * d..(tok + 1) * d]);
        }
    }
    let xp = HostTensor::new(F32, &[sorted.len(), d], &xp).unwrap();
    let y = mr::combine(device, &xp, &p.row_of, &r.gates).unwrap();
    let yv = y.to_vec();
    for tok in 0..t {
        for j in 0..d {
            let want = xv[tok * d + j];
            assert!(
                (yv[tok * d + j] - want).abs() <= 1e-6,
                "{what}: y[{tok}][{j}]"
            );
        }
    }
}

#[test]
fn softmax_routing_on_the_interpreter() {
    check_softmax(&Device::Cpu);
}

#[test]
fn softmax_routing_on_the_sm_80_emulator() {
    check_softmax(&emu());
}

#[test]
fn grouped_routing_on_the_interpreter() {
    check_grouped(&Device::Cpu, &[(50, 64), (40, 256)]);
}

#[test]
fn grouped_routing_on_the_sm_80_emulator() {
    check_grouped(&emu(), &[(50, 64), (20, 256)]);
}

#[test]
fn permutation_on_the_interpreter() {
    check_permute(&Device::Cpu);
}

#[test]
fn permutation_on_the_sm_80_emulator() {
    check_permute(&emu());
}

#[test]
fn combine_on_the_interpreter() {
    check_combine(&Device::Cpu);
}

#[test]
fn combine_on_the_sm_80_emulator() {
    check_combine(&emu());
}

#[test]
fn bias_update_on_the_interpreter() {
    check_bias_update(&Device::Cpu);
}

#[test]
fn bias_update_on_the_sm_80_emulator() {
    check_bias_update(&emu());
}

#[test]
fn route_permute_combine_on_the_interpreter() {
    check_chain(&Device::Cpu);
}

#[test]
fn route_permute_combine_on_the_sm_80_emulator() {
    check_chain(&emu());
}

#[test]
fn bad_arguments_are_errors() {
    let x = HostTensor::zeros(F32, &[4, 8]);
    let e = mr::route_softmax(&Device::Cpu, &x, 9)
        .unwrap_err()
        .to_string();
    assert!(e.contains("k must be at most E"), "{e}");
    let e = mr::route_softmax(&Device::Cpu, &HostTensor::zeros(F32, &[64, 32]), 17)
        .unwrap_err()
        .to_string();
    assert!(e.contains("1 to 16"), "{e}");
    let ids = HostTensor::zeros(I32, &[4, 2]);
    let e = mr::permute(&Device::Cpu, &ids, 8, 16, Layout::Masked { capacity: 20 })
        .unwrap_err()
        .to_string();
    assert!(e.contains("multiple of align 16"), "{e}");
    let cfg = GroupedRouting {
        groups: 4,
        ..DEEPSEEK
    };
    let e = mr::route_sigmoid_grouped(&Device::Cpu, &x, &HostTensor::zeros(F32, &[8]), cfg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not instantiated"), "{e}");
}
