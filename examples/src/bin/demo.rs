//! `make demo`: a tour of the kernel library (`tilekit::kernels`). Each case runs one library
//! kernel through its typed launcher on fresh random inputs — on a GPU when there is one
//! (`Device::best()`; the kernels are compiled on first launch, which needs the `jit` feature
//! that `make demo` turns on), else on the CPU interpreter — and compares the result with an
//! f64 reference written from the definition (the library's, or the one below for the MoE
//! projection).
//!
//! The seed comes from the clock and is printed first; `TILEKIT_SEED=<seed>` replays a run.
//! Exits non-zero when a kernel errors or misses its tolerance.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tilekit::dsl::bf16;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{self, BF16, F32};
use tilekit::ir::{verify, Func, Module};
use tilekit::kernels::attention::{self, attention_fwd};
use tilekit::kernels::gemm;
use tilekit::kernels::moe::{self, Routing};
use tilekit::kernels::optim::{self, reference::Adam64};
use tilekit::kernels::softmax::{self, softmax_rows};
use tilekit::kernels::ws_gemm::ws_gemm;
use tilekit::{Device, ScalarArg};

fn main() -> anyhow::Result<()> {
    let device = Device::best();
    println!(
        "tilekit demo: library kernels against their f64 references (then `gpu_targets` \
         compiles the whole library for every target and self-tests it)"
    );
    println!("device: {}", device.describe());
    let start = Instant::now();
    let mut rng = DemoRng::fresh()?;
    println!(
        "seed:   {} (replay with TILEKIT_SEED={})\n",
        rng.seed, rng.seed
    );

    let mut table = Table::default();
    gemm_case(&mut table, &device, &mut rng, F32);
    gemm_case(&mut table, &device, &mut rng, BF16);
    attention_case(&mut table, &device, &mut rng, false);
    attention_case(&mut table, &device, &mut rng, true);
    softmax_case(&mut table, &device, &mut rng);
    adamw_case(&mut table, &device, &mut rng);
    moe_case(&mut table, &device, &mut rng);
    ws_gemm_case(&mut table, &device, &mut rng);
    table.print();
    for (case, error) in &table.errors {
        eprintln!(
            "\nerror: {} ({}, {}): {error:#}",
            case.kernel, case.config, case.shape
        );
    }

    println!();
    println!(
        "max abs = max|out − ref|, norm = max|out − ref| / max|ref|, against the f64 reference"
    );
    println!("on the same (dtype-rounded) inputs; the tolerance names the error it bounds.");
    println!(
        "time = wall time of the launch (interpret; on a GPU: compile on first launch, copies, \
         launch)."
    );
    println!();

    let failed = &table.failed_cases;
    if !failed.is_empty() {
        bail!(
            "{} of {} kernels failed: {}; seed {}",
            failed.len(),
            table.cases,
            failed.join(", "),
            rng.seed
        );
    }
    println!(
        "all {} kernels pass ({:.1} s in all)",
        table.cases,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The kernels. Each verifies its kernel's module, runs it on fresh inputs and compares.

/// Tiled GEMM `C = A·B` (`kernels::gemm`): with f32 output on whole tiles (512³, the 128×128
/// block tile of 8 warps), with bf16 output on 500×700×300 (partial tiles in M, N and K).
fn gemm_case(table: &mut Table, device: &Device, rng: &mut DemoRng, out: ScalarType) {
    let (m, n, k) = if out == F32 {
        (512, 512, 512)
    } else {
        (500, 700, 300)
    };
    let (name, module) = if out == F32 {
        type G = gemm::gemm<f32, 128, 128, 32, 64, 32>;
        (G::NAME, G::module())
    } else {
        type G = gemm::gemm<bf16, 64, 64, 32, 32, 32>;
        (G::NAME, G::module())
    };
    let (bm, bn) = if out == F32 { (128, 128) } else { (64, 64) };
    let case = Case {
        kernel: "gemm",
        config: format!("{bm}×{bn}×32 tile, out {out}"),
        shape: format!("M×N×K {m}×{n}×{k}"),
    };
    // bf16 output: one rounding of each element (2⁻⁸ relative) on top of f32 accumulation.
    let tol = if out == F32 {
        Tolerance::Norm(1e-5)
    } else {
        Tolerance::Norm(1e-2)
    };
    table.record(case, || {
        let warps = verified_warps(module, name)?;
        let a = rng.tensor(BF16, &[m, k], -1.0, 1.0);
        let b = rng.tensor(BF16, &[k, n], -1.0, 1.0);
        let grid = gemm::grid(m, n, bm, bn);
        let mut c = HostTensor::zeros(out, &[m, n]);
        let ((), time) = timed(|| {
            if out == F32 {
                gemm::gemm::<f32, 128, 128, 32, 64, 32>::launch(device, grid, &a, &b, &mut c)
            } else {
                gemm::gemm::<bf16, 64, 64, 32, 32, 32>::launch(device, grid, &a, &b, &mut c)
            }
        })?;
        let want = gemm::reference(&a.to_vec(), &b.to_vec(), m, k, n);
        Ok(Measured {
            run: RunInfo::new(warps, grid, time),
            checks: vec![Check::new("C", &c, &want, tol)],
        })
    });
}

/// FlashAttention-style forward (`kernels::attention::attention_fwd`, 8 warps of 16 query rows)
/// over batch·heads 4 × 500 queries × 500 keys (partial query blocks and KV tiles): non-causal
/// with d = 64, causal with d = 128.
fn attention_case(table: &mut Table, device: &Device, rng: &mut DemoRng, causal: bool) {
    let (bh, seq, d) = (4, 500, if causal { 128 } else { 64 });
    let (name, module) = if causal {
        type A = attention_fwd<bf16, 128, 16, 32, 8, true>;
        (A::NAME, A::module())
    } else {
        type A = attention_fwd<bf16, 64, 16, 64, 8, false>;
        (A::NAME, A::module())
    };
    let case = Case {
        kernel: "attention",
        config: format!(
            "{}, d {d}, out bf16",
            if causal { "causal" } else { "non-causal" },
        ),
        shape: format!("bh×q×kv {bh}×{seq}×{seq}"),
    };
    table.record(case, || {
        let warps = verified_warps(module, name)?;
        let sm_scale = 1.0 / (d as f32).sqrt();
        let q = rng.tensor(BF16, &[bh, seq, d], -2.0, 2.0);
        let k = rng.tensor(BF16, &[bh, seq, d], -2.0, 2.0);
        let v = rng.tensor(BF16, &[bh, seq, d], -1.0, 1.0);
        let grid = attention::grid(bh, seq, 16 * 8);
        let mut o = HostTensor::zeros(BF16, &[bh, seq, d]);
        let mut lse = HostTensor::zeros(F32, &[bh, seq]);
        let s = ScalarArg::from(sm_scale);
        let ((), time) = timed(|| {
            if causal {
                attention_fwd::<bf16, 128, 16, 32, 8, true>::launch(
                    device, grid, &q, &k, &v, &mut o, &mut lse, s,
                )
            } else {
                attention_fwd::<bf16, 64, 16, 64, 8, false>::launch(
                    device, grid, &q, &k, &v, &mut o, &mut lse, s,
                )
            }
        })?;
        // seq_q = seq_kv: the reference's top-left causal diagonal is the kernel's bottom-right.
        let (o_ref, lse_ref) = attention::reference(
            &q.to_vec(),
            &k.to_vec(),
            &v.to_vec(),
            (bh, seq, seq, d),
            f64::from(sm_scale),
            causal,
        );
        Ok(Measured {
            run: RunInfo::new(warps, grid, time),
            checks: vec![
                // P is rounded to bf16 for P·V, and O to bf16 once more.
                Check::new("O", &o, &o_ref, Tolerance::Norm(1e-2)),
                // LSE is a log: its error is the relative error of Σ exp, a few f32 ulps.
                Check::new("LSE", &lse, &lse_ref, Tolerance::Norm(1e-5)),
            ],
        })
    });
}

/// Row softmax (`kernels::softmax::softmax_rows`, 4 warps of 16 rows, column tiles of 64) of
/// 1000 rows × 1000 columns (partial last row block and column tile), inputs in ±4.
fn softmax_case(table: &mut Table, device: &Device, rng: &mut DemoRng) {
    type S = softmax_rows<f32, 16, 64, 4>;
    let (rows, cols) = (1000, 1000);
    let case = Case {
        kernel: "softmax",
        config: "64 cols/tile, in f32".to_string(),
        shape: format!("rows×cols {rows}×{cols}"),
    };
    table.record(case, || {
        let warps = verified_warps(S::module(), S::NAME)?;
        let x = rng.tensor(F32, &[rows, cols], -4.0, 4.0);
        let grid = softmax::grid(rows, 16, 4);
        let mut y = HostTensor::zeros(F32, &[rows, cols]);
        let ((), time) = timed(|| S::launch(device, grid, &x, &mut y))?;
        let want = softmax::reference(&x.to_vec(), rows, cols);
        Ok(Measured {
            run: RunInfo::new(warps, grid, time),
            checks: vec![Check::new("Y", &y, &want, Tolerance::Norm(1e-5))],
        })
    });
}

/// One AdamW step (`kernels::optim::adamw_step`, step 10) over 1M + 3 parameters (a masked
/// tail).
fn adamw_case(table: &mut Table, device: &Device, rng: &mut DemoRng) {
    type K = optim::adamw_step<256, 4>;
    let n = (1 << 20) + 3;
    let hyper = optim::Hyper {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.1,
        step: 10,
    };
    let case = Case {
        kernel: "adamw",
        config: format!("chunk 256, step {}", hyper.step),
        shape: format!("n {n}"),
    };
    table.record(case, || {
        let warps = verified_warps(K::module(), K::NAME)?;
        let mut p = rng.tensor(F32, &[n], -1.0, 1.0);
        let mut m = rng.tensor(F32, &[n], -0.1, 0.1);
        let mut v = rng.tensor(F32, &[n], 0.0, 0.01);
        let g = rng.tensor(F32, &[n], -1.0, 1.0);
        let (mut p_ref, mut m_ref, mut v_ref) = (p.to_vec(), m.to_vec(), v.to_vec());
        let h64 = Adam64 {
            lr: f64::from(hyper.lr),
            beta1: f64::from(hyper.beta1),
            beta2: f64::from(hyper.beta2),
            eps: f64::from(hyper.eps),
            weight_decay: f64::from(hyper.weight_decay),
        };
        optim::reference::adamw(
            &mut p_ref,
            &g.to_vec(),
            &mut m_ref,
            &mut v_ref,
            &h64,
            hyper.step as i32,
        );
        let ((), time) = timed(|| optim::step(device, &mut p, &g, &mut m, &mut v, &hyper))?;
        // A handful of f32 roundings of terms no larger than max|ref|.
        let tol = Tolerance::Norm(1e-6);
        Ok(Measured {
            run: RunInfo::new(warps, [n.div_ceil(256 * 4) as u32, 1, 1], time),
            checks: vec![
                Check::new("p", &p, &p_ref, tol),
                Check::new("m", &m, &m_ref, tol),
                Check::new("v", &v, &v_ref, tol),
            ],
        })
    });
}

/// MoE up-projection (`kernels::moe::moe_expert_proj`): 500 tokens, each routed to 2 of 8
/// experts, d 256 → f 360 (partial column tiles; every expert's run of slots ends in a partial
/// tile).
fn moe_case(table: &mut Table, device: &Device, rng: &mut DemoRng) {
    type K = moe::moe_expert_proj<16, 4, 64, 32>;
    let (t, d, f, experts, top_k) = (500, 256, 360, 8, 2);
    let case = Case {
        kernel: "moe",
        config: format!("{experts} experts, top-{top_k}"),
        shape: format!("T×d×f {t}×{d}×{f}"),
    };
    table.record(case, || {
        let warps = verified_warps(K::module(), K::NAME)?;
        let x = rng.tensor(BF16, &[t, d], -1.0, 1.0);
        let w = rng.tensor(BF16, &[experts, d, f], -1.0, 1.0);
        let all: Vec<usize> = (0..experts).collect();
        let choices: Vec<Vec<(usize, f32)>> = (0..t)
            .map(|_| {
                all.choose_multiple(&mut rng.rng, top_k)
                    .map(|&e| (e, rng.rng.gen_range(0.1f32..1.0)))
                    .collect()
            })
            .collect();
        // Slot tiles of the kernel's 4 warps × 16 rows.
        let routing = Routing::from_top_k(experts, &choices, 64);
        let grid = [routing.tiles(), f.div_ceil(64) as u32, 1];
        let (y, time) = timed(|| moe::run(device, &x, &w, &routing))?;
        let want = moe_reference(&x.to_vec(), &w.to_vec(), &choices, d, f);
        Ok(Measured {
            run: RunInfo::new(warps, grid, time),
            checks: vec![Check::new("Y", &y, &want, Tolerance::Norm(1e-5))],
        })
    });
}

/// `Y[t] = Σ_{(e, w) ∈ choices[t]} w · (X[t] · W[e])` in f64, X row-major `[T, d]`, W `[E, d, f]`.
fn moe_reference(
    x: &[f64],
    w: &[f64],
    choices: &[Vec<(usize, f32)>],
    d: usize,
    f: usize,
) -> Vec<f64> {
    let mut y = vec![0.0; choices.len() * f];
    for (t, cs) in choices.iter().enumerate() {
        for &(e, weight) in cs {
            for j in 0..f {
                let dot: f64 = (0..d).map(|k| x[t * d + k] * w[(e * d + k) * f + j]).sum();
                y[t * f + j] += f64::from(weight) * dot;
            }
        }
    }
    y
}

/// Warp-specialized GEMM (`kernels::ws_gemm`: a producer warp, 2 consumers, a 2-stage ring) on
/// 500×700×300 (partial tiles).
fn ws_gemm_case(table: &mut Table, device: &Device, rng: &mut DemoRng) {
    type K = ws_gemm<f32, 64, 64, 32, 32, 2>;
    let (m, n, k) = (500, 700, 300);
    let case = Case {
        kernel: "ws_gemm",
        config: "2 consumers, 2 stages, out f32".to_string(),
        shape: format!("M×N×K {m}×{n}×{k}"),
    };
    table.record(case, || {
        let warps = verified_warps(K::module(), K::NAME)?;
        let a = rng.tensor(BF16, &[m, k], -1.0, 1.0);
        let b = rng.tensor(BF16, &[k, n], -1.0, 1.0);
        let grid = gemm::grid(m, n, 64, 64);
        let mut c = HostTensor::zeros(F32, &[m, n]);
        let ((), time) = timed(|| K::launch(device, grid, &a, &b, &mut c))?;
        let want = gemm::reference(&a.to_vec(), &b.to_vec(), m, k, n);
        Ok(Measured {
            run: RunInfo::new(warps, grid, time),
            checks: vec![Check::new("C", &c, &want, Tolerance::Norm(1e-5))],
        })
    });
}

// ---------------------------------------------------------------------------------------------
// Helpers: inputs, verification, timing, comparison.

/// A seeded generator of inputs; `seed` is printed so that a run can be replayed.
struct DemoRng {
    seed: u64,
    rng: SmallRng,
}

impl DemoRng {
    /// Seeded from `TILEKIT_SEED` when set, else from the clock.
    fn fresh() -> anyhow::Result<DemoRng> {
        let seed = match std::env::var("TILEKIT_SEED") {
            Ok(s) => s
                .trim()
                .parse()
                .with_context(|| format!("TILEKIT_SEED={s:?} is not a u64"))?,
            Err(_) => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x5eed),
        };
        Ok(DemoRng {
            seed,
            rng: SmallRng::seed_from_u64(seed),
        })
    }

    /// A row-major tensor with values uniform in `[lo, hi)`, rounded to `dtype` (references read
    /// the rounded values back with `to_vec`).
    fn tensor(&mut self, dtype: ScalarType, shape: &[usize], lo: f64, hi: f64) -> HostTensor {
        let n = shape.iter().product();
        let values: Vec<f64> = (0..n).map(|_| self.rng.gen_range(lo..hi)).collect();
        HostTensor::new(dtype, shape, &values).expect("the value count matches the shape")
    }
}

/// Verifies a built module and returns its kernel's warps per block.
fn verified_warps(module: &Module, kernel: &str) -> anyhow::Result<u32> {
    if let Err(errors) = verify(module) {
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        bail!("@{kernel} does not verify:\n{}", text.join("\n"));
    }
    module
        .func(kernel)
        .and_then(Func::warps)
        .ok_or_else(|| anyhow!("the module has no kernel @{kernel}"))
}

/// Runs `f` and measures its wall time.
fn timed<T>(f: impl FnOnce() -> Result<T, tilekit::Error>) -> anyhow::Result<(T, Duration)> {
    let start = Instant::now();
    let value = f()?;
    Ok((value, start.elapsed()))
}

/// What a tolerance bounds.
#[derive(Clone, Copy, Debug)]
enum Tolerance {
    /// `max|out − ref| / max|ref|`.
    Norm(f64),
}

impl std::fmt::Display for Tolerance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tolerance::Norm(t) => write!(f, "norm ≤ {t:.0e}"),
        }
    }
}

/// One output compared with its reference.
#[derive(Debug)]
struct Check {
    output: &'static str,
    max_abs: f64,
    norm: f64,
    tol: Tolerance,
}

impl Check {
    /// Compares `got` with `want`; NaN, infinities and a length mismatch are infinitely wrong.
    fn new(output: &'static str, got: &HostTensor, want: &[f64], tol: Tolerance) -> Check {
        let got = got.to_vec();
        let max_abs = if got.len() != want.len() {
            f64::INFINITY
        } else {
            got.iter()
                .zip(want)
                .map(|(o, r)| (o - r).abs())
                .map(|d| if d.is_finite() { d } else { f64::INFINITY })
                .fold(0.0, f64::max)
        };
        let scale = want.iter().fold(0.0f64, |m, r| m.max(r.abs()));
        Check {
            output,
            max_abs,
            norm: max_abs / scale,
            tol,
        }
    }

    fn passes(&self) -> bool {
        match self.tol {
            Tolerance::Norm(t) => self.norm <= t,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The table.

/// What was run: a kernel in a configuration on a shape.
#[derive(Debug)]
struct Case {
    kernel: &'static str,
    config: String,
    shape: String,
}

/// How a kernel was launched and how long its run took.
#[derive(Debug)]
struct RunInfo {
    warps: u32,
    grid: [u32; 3],
    time: Duration,
}

impl RunInfo {
    fn new(warps: u32, grid: [u32; 3], time: Duration) -> RunInfo {
        RunInfo { warps, grid, time }
    }
}

/// A run and its compared outputs.
#[derive(Debug)]
struct Measured {
    run: RunInfo,
    checks: Vec<Check>,
}

const HEADER: [&str; 11] = [
    "kernel",
    "config",
    "shape",
    "warps",
    "grid",
    "time",
    "out",
    "max abs",
    "norm",
    "tolerance",
    "result",
];
/// Columns aligned right (numbers).
const RIGHT: [bool; 11] = [
    false, false, false, true, true, true, false, true, true, false, false,
];

#[derive(Debug, Default)]
struct Table {
    rows: Vec<[String; 11]>,
    /// Kernels run (one per `record`).
    cases: usize,
    /// `kernel (config)` of each kernel that errored or missed a tolerance.
    failed_cases: Vec<String>,
    errors: Vec<(Case, anyhow::Error)>,
}

impl Table {
    /// Runs one kernel case and adds its rows: one per compared output, or one for the error.
    fn record(&mut self, case: Case, f: impl FnOnce() -> anyhow::Result<Measured>) {
        self.cases += 1;
        let name = format!("{} ({})", case.kernel, case.config);
        match f() {
            Ok(measured) => {
                if !measured.checks.iter().all(Check::passes) {
                    self.failed_cases.push(name);
                }
                for (i, check) in measured.checks.iter().enumerate() {
                    let first = i == 0;
                    self.rows.push(row(
                        first.then_some(&case),
                        first.then_some(&measured.run),
                        check,
                    ));
                }
            }
            Err(error) => {
                self.failed_cases.push(name);
                let mut cells: [String; 11] = Default::default();
                cells[0] = case.kernel.to_string();
                cells[1] = case.config.clone();
                cells[2] = case.shape.clone();
                cells[10] = "ERROR".to_string();
                self.rows.push(cells);
                self.errors.push((case, error));
            }
        }
    }

    fn print(&self) {
        let header = HEADER.map(String::from);
        let mut widths = [0; 11];
        for cells in std::iter::once(&header).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(cells) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let rule: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        print_row(&header, &widths);
        println!("{}", "─".repeat(rule));
        for cells in &self.rows {
            print_row(cells, &widths);
        }
    }
}

/// The cells of one compared output; the case and run columns only on a kernel's first row.
fn row(case: Option<&Case>, run: Option<&RunInfo>, check: &Check) -> [String; 11] {
    let (kernel, config, shape) = case.map_or_else(Default::default, |c| {
        (c.kernel.to_string(), c.config.clone(), c.shape.clone())
    });
    let (warps, grid, time) = run.map_or_else(Default::default, |r| {
        (
            r.warps.to_string(),
            format!("{}×{}×{}", r.grid[0], r.grid[1], r.grid[2]),
            format!("{:.1} ms", r.time.as_secs_f64() * 1e3),
        )
    });
    [
        kernel,
        config,
        shape,
        warps,
        grid,
        time,
        check.output.to_string(),
        format!("{:.2e}", check.max_abs),
        format!("{:.2e}", check.norm),
        check.tol.to_string(),
        if check.passes() { "PASS" } else { "FAIL" }.to_string(),
    ]
}

/// Prints cells padded to `widths`, two spaces apart, numbers right-aligned.
fn print_row(cells: &[String; 11], widths: &[usize; 11]) {
    let line: Vec<String> = cells
        .iter()
        .zip(widths)
        .zip(RIGHT)
        .map(|((cell, &w), right)| {
            if right {
                format!("{cell:>w$}")
            } else {
                format!("{cell:<w$}")
            }
        })
        .collect();
    println!("{}", line.join("  ").trim_end());
}
