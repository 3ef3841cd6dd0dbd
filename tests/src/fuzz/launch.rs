//! Harness `launch`: random launches of registered kernels (`tilekit::registry::kernels()`) on
//! the CPU device through `Device::launch_by_name`: shapes with 0, 1, awkward and
//! huge-but-empty dimensions, wrong dtypes and ranks, views (narrow, transpose) including empty
//! ones at any offset, outputs that alias inputs, grids with 0 and huge dimensions, `-inf`
//! runs in the inputs; sometimes a kernel's shape rule is called on its own with arguments the
//! signature check would have refused (it is public).
//!
//! Launches run on a cpu device with a small op budget, a memory budget and a cancel token
//! that a watchdog fires after two seconds: a big grid or a loop over a huge dimension is legal
//! and merely slow, and the fuzzer is after wrong checks, not slow kernels.
//!
//! An input is a small text (one `key value…` line per item) so that reproducers can be read
//! and edited:
//!
//! ```text
//! kernel gemm
//! variant <f32, 64, 64, 32, 32, 32>
//! grid 2 1 1
//! check 0
//! arg t bf16 64,32 narrow=1:8:16 transpose=- alias=- seed=42
//! arg s f32 1.5
//! ```
//!
//! `t` is a tensor (dtype, the shape of the tensor made, a `narrow=dim:start:len` view of it,
//! then a `transpose=a:b`, or `alias=k`: the same tensor as argument k), `s` a scalar.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tilekit::device::CpuOptions;
use tilekit::ir::{ScalarType, Type};
use tilekit::{Device, Error, LaunchArg, Tensor};

use super::mutate::pick;
use super::{Harness, Pool, Stage, Watchdog};

/// Ops per launch: the library kernels at the harness's small shapes and grids need far fewer.
const OP_BUDGET: u64 = 200_000;
/// Bytes the interpreter may hold per launch.
const MEMORY_BUDGET: u64 = 256 << 20;
/// A launch still running after this long is cancelled.
const CANCEL_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// The most elements of one tensor made (the CPU device holds them as f64).
const MAX_ELEMENTS: u128 = 1 << 15;

const SCALARS: [ScalarType; 10] = [
    ScalarType::F32,
    ScalarType::F16,
    ScalarType::BF16,
    ScalarType::F8E4M3,
    ScalarType::F8E5M2,
    ScalarType::I8,
    ScalarType::I32,
    ScalarType::U32,
    ScalarType::I64,
    ScalarType::Bool,
];

const DIMS: &[usize] = &[
    0,
    1,
    2,
    3,
    15,
    16,
    17,
    31,
    32,
    33,
    63,
    64,
    65,
    100,
    128,
    2147483647,
    2147483648,
    1 << 40,
    usize::MAX / 4,
];

#[derive(Clone, Debug, PartialEq)]
enum ArgSpec {
    Tensor {
        dtype: ScalarType,
        shape: Vec<usize>,
        narrow: Option<(usize, usize, usize)>,
        transpose: Option<(usize, usize)>,
        alias: Option<usize>,
        seed: u64,
    },
    Scalar(ScalarType, f64),
}

#[derive(Clone, Debug, PartialEq)]
struct Spec {
    kernel: String,
    variant: String,
    grid: [u32; 3],
    check_only: bool,
    args: Vec<ArgSpec>,
}

fn list(v: &[usize]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
    }
}

impl Spec {
    fn to_text(&self) -> String {
        let mut s = format!(
            "kernel {}\nvariant {}\ngrid {} {} {}\ncheck {}\n",
            self.kernel,
            self.variant,
            self.grid[0],
            self.grid[1],
            self.grid[2],
            u8::from(self.check_only)
        );
        for a in &self.args {
            match a {
                ArgSpec::Tensor {
                    dtype,
                    shape,
                    narrow,
                    transpose,
                    alias,
                    seed,
                } => {
                    let narrow = narrow.map_or("-".into(), |(d, s, l)| format!("{d}:{s}:{l}"));
                    let transpose = transpose.map_or("-".into(), |(a, b)| format!("{a}:{b}"));
                    let alias = alias.map_or("-".into(), |k| k.to_string());
                    s.push_str(&format!(
                        "arg t {dtype} {} narrow={narrow} transpose={transpose} alias={alias} seed={seed}\n",
                        list(shape)
                    ));
                }
                ArgSpec::Scalar(t, v) => s.push_str(&format!("arg s {t} {v:?}\n")),
            }
        }
        s
    }

    fn parse(text: &str) -> Option<Spec> {
        let mut spec = Spec {
            kernel: String::new(),
            variant: String::new(),
            grid: [1, 1, 1],
            check_only: false,
            args: Vec::new(),
        };
        for line in text.lines() {
            let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "kernel" => spec.kernel = rest.to_string(),
                "variant" => spec.variant = rest.to_string(),
                "grid" => {
                    let g: Vec<u32> = rest.split(' ').filter_map(|x| x.parse().ok()).collect();
                    spec.grid = [*g.first()?, *g.get(1)?, *g.get(2)?];
                }
                "check" => spec.check_only = rest == "1",
                "arg" => spec.args.push(parse_arg(rest)?),
                _ => return None,
            }
        }
        Some(spec)
    }
}

fn parse_arg(rest: &str) -> Option<ArgSpec> {
    let f: Vec<&str> = rest.split(' ').collect();
    let dtype = ScalarType::from_name(f.get(1)?)?;
    if f[0] == "s" {
        return Some(ArgSpec::Scalar(dtype, f.get(2)?.parse().ok()?));
    }
    let shape = if f.get(2)? == &"-" {
        Vec::new()
    } else {
        f[2].split(',')
            .map(|d| d.parse().ok())
            .collect::<Option<Vec<usize>>>()?
    };
    let field = |key: &str| {
        f.iter()
            .find_map(|x| x.strip_prefix(key))
            .filter(|v| *v != "-")
    };
    let nums = |v: &str| {
        v.split(':')
            .map(|x| x.parse().ok())
            .collect::<Option<Vec<usize>>>()
    };
    let narrow = match field("narrow=") {
        Some(v) => {
            let n = nums(v)?;
            Some((*n.first()?, *n.get(1)?, *n.get(2)?))
        }
        None => None,
    };
    let transpose = match field("transpose=") {
        Some(v) => {
            let n = nums(v)?;
            Some((*n.first()?, *n.get(1)?))
        }
        None => None,
    };
    Some(ArgSpec::Tensor {
        dtype,
        shape,
        narrow,
        transpose,
        alias: field("alias=").and_then(|v| v.parse().ok()),
        seed: field("seed=").and_then(|v| v.parse().ok()).unwrap_or(0),
    })
}

/// Element count of `shape`, exactly (no overflow).
fn count(shape: &[usize]) -> u128 {
    shape
        .iter()
        .try_fold(1u128, |a, &d| a.checked_mul(d as u128))
        .unwrap_or(u128::MAX)
}

/// A shape of `rank` dims drawn mostly from `pool`, made small enough to allocate (a huge
/// dimension stays only beside a zero one).
fn shape(rng: &mut SmallRng, rank: usize, pool: &[usize]) -> Vec<usize> {
    let mut s: Vec<usize> = (0..rank)
        .map(|_| {
            if rng.gen_bool(0.85) {
                pool[rng.gen_range(0..pool.len())]
            } else {
                DIMS[rng.gen_range(0..DIMS.len())]
            }
        })
        .collect();
    if count(&s) > MAX_ELEMENTS {
        if rng.gen_bool(0.5) {
            let i = rng.gen_range(0..s.len());
            s[i] = 0;
        } else {
            for d in &mut s {
                if *d > 128 {
                    *d = 64;
                }
            }
        }
    }
    s
}

fn scalar_value(rng: &mut SmallRng, t: ScalarType) -> f64 {
    if rng.gen_bool(0.2) {
        let s = pick(
            rng,
            &[
                "0",
                "1",
                "-1",
                "2147483647",
                "-2147483648",
                "4294967296",
                "inf",
                "-inf",
                "NaN",
                "1e-30",
                "3.5e38",
            ],
        );
        return s.parse().unwrap_or(0.0);
    }
    if t.is_int() || t == ScalarType::Bool {
        f64::from(rng.gen_range(0..4))
    } else {
        rng.gen_range(0.05..2.0)
    }
}

fn fresh(rng: &mut SmallRng) -> Spec {
    // A kernel registered without variants (one tested directly, not launched by name) has
    // nothing to launch.
    let kernels: Vec<_> = tilekit::registry::kernels()
        .into_iter()
        .filter(|k| !k.variants.is_empty())
        .collect();
    let k = kernels[rng.gen_range(0..kernels.len())];
    let v = &k.variants[rng.gen_range(0..k.variants.len())];
    let types = (v.module)()
        .kernel(k.name)
        .map(|f| f.param_types())
        .unwrap_or_default();
    // A few sizes shared by every argument, so shape rules (A [M, K], B [K, N]) hold often.
    const COMMON: [usize; 9] = [1, 16, 16, 32, 32, 64, 64, 17, 100];
    let pool: Vec<usize> = (0..rng.gen_range(1..=3))
        .map(|_| COMMON[rng.gen_range(0..COMMON.len())])
        .collect();
    let mut args = Vec::new();
    for (i, t) in types.iter().enumerate() {
        let a = match t {
            Type::Global {
                dtype,
                rank,
                mutable,
            } => {
                let dtype = if rng.gen_bool(0.93) {
                    *dtype
                } else {
                    SCALARS[rng.gen_range(0..SCALARS.len())]
                };
                let rank = if rng.gen_bool(0.93) {
                    *rank as usize
                } else {
                    rng.gen_range(0..=5)
                };
                let want = shape(rng, rank, &pool);
                let mut base = want.clone();
                let mut narrow = None;
                let mut transpose = None;
                if rank > 0 && rng.gen_bool(0.25) {
                    let d = rng.gen_range(0..rank);
                    let extra = [0, 1, 7, 64][rng.gen_range(0..4)];
                    base[d] = want[d].saturating_add(extra);
                    let start = if want[d] == 0 {
                        rng.gen_range(0..=base[d].min(1 << 20))
                    } else {
                        rng.gen_range(0..=extra)
                    };
                    narrow = Some((d, start, want[d]));
                    if count(&base) > MAX_ELEMENTS {
                        base = want.clone();
                        narrow = Some((d, 0, want[d]));
                    }
                }
                if rank > 1 && rng.gen_bool(0.15) {
                    let (a, b) = (rng.gen_range(0..rank), rng.gen_range(0..rank));
                    base.swap(a, b);
                    if let Some((d, s, l)) = narrow {
                        // The narrow applies to the base, before the transpose.
                        let d = if d == a {
                            b
                        } else if d == b {
                            a
                        } else {
                            d
                        };
                        narrow = Some((d, s, l));
                    }
                    transpose = Some((a, b));
                }
                let alias = (*mutable && i > 0 && rng.gen_bool(0.1)).then(|| rng.gen_range(0..i));
                ArgSpec::Tensor {
                    dtype,
                    shape: base,
                    narrow,
                    transpose,
                    alias,
                    seed: rng.gen(),
                }
            }
            t => {
                let s = t.as_scalar().unwrap_or(ScalarType::I32);
                let s = if rng.gen_bool(0.95) {
                    s
                } else {
                    SCALARS[rng.gen_range(0..SCALARS.len())]
                };
                ArgSpec::Scalar(s, scalar_value(rng, s))
            }
        };
        args.push(a);
    }
    if rng.gen_bool(0.03) && !args.is_empty() {
        args.pop();
    }
    Spec {
        kernel: k.name.to_string(),
        variant: v.args.to_string(),
        grid: grid(rng),
        check_only: rng.gen_bool(0.04),
        args,
    }
}

fn grid(rng: &mut SmallRng) -> [u32; 3] {
    // Mostly one or two blocks: every block of a library kernel costs the interpreter
    // milliseconds, and the launch checks do not depend on the count.
    let g = |rng: &mut SmallRng| match rng.gen_range(0..60) {
        0 | 1 => 0,
        2 => [65535, 2147483647, 2147483648, u32::MAX][rng.gen_range(0..4)],
        3 => rng.gen_range(3..17),
        _ => rng.gen_range(1..=2),
    };
    [g(rng), g(rng), if rng.gen_bool(0.9) { 1 } else { g(rng) }]
}

/// A small change to a spec that got far.
fn mutate(rng: &mut SmallRng, mut s: Spec) -> Spec {
    let n = s.args.len();
    match rng.gen_range(0..6) {
        0 => s.grid = grid(rng),
        1 => s.check_only = !s.check_only,
        _ if n > 0 => {
            let i = rng.gen_range(0..n);
            match &mut s.args[i] {
                ArgSpec::Tensor {
                    shape,
                    narrow,
                    transpose,
                    alias,
                    seed,
                    ..
                } => match rng.gen_range(0..6) {
                    0 | 1 if !shape.is_empty() => {
                        let d = rng.gen_range(0..shape.len());
                        shape[d] = DIMS[rng.gen_range(0..DIMS.len())];
                        if count(shape) > MAX_ELEMENTS {
                            let z = rng.gen_range(0..shape.len());
                            shape[z] = 0;
                        }
                        *narrow = None;
                    }
                    2 if !shape.is_empty() => {
                        let d = rng.gen_range(0..shape.len());
                        let len = rng.gen_range(0..=shape[d].min(64));
                        let start = rng.gen_range(0..=(shape[d] - len).min(1 << 20));
                        *narrow = Some((d, start, len));
                    }
                    3 if shape.len() > 1 => *transpose = Some((0, shape.len() - 1)),
                    4 => *alias = (i > 0).then(|| rng.gen_range(0..i)),
                    _ => *seed = rng.gen(),
                },
                ArgSpec::Scalar(t, v) => *v = scalar_value(rng, *t),
            }
        }
        _ => s.grid = grid(rng),
    }
    s
}

/// Tensor values: never 0; runs of `-inf` sometimes (masked rows and tiles).
fn values(seed: u64, n: usize, dtype: ScalarType) -> Vec<f64> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            if dtype.is_int() || dtype == ScalarType::Bool {
                f64::from(rng.gen_range(0..4))
            } else {
                rng.gen_range(0.1..2.0) * if rng.gen_bool(0.5) { -1.0 } else { 1.0 }
            }
        })
        .collect();
    if n > 0 && dtype.is_float() && rng.gen_bool(0.2) {
        let start = rng.gen_range(0..n);
        let len = rng.gen_range(1..=(n - start).min(256));
        v[start..start + len].fill(f64::NEG_INFINITY);
    }
    v
}

/// The tensors and scalars of `spec` on the CPU device, or `None` when one cannot be made
/// (which the harness counts as rejected before the launch).
fn arguments(spec: &Spec, cpu: &Device) -> Option<Vec<LaunchArg>> {
    let mut tensors: Vec<Option<Tensor>> = Vec::new();
    let mut args = Vec::new();
    for a in &spec.args {
        match a {
            ArgSpec::Scalar(t, v) => {
                tensors.push(None);
                args.push(LaunchArg::Scalar(*t, *v));
            }
            ArgSpec::Tensor {
                dtype,
                shape,
                narrow,
                transpose,
                alias,
                seed,
            } => {
                // Another view of the same memory (`Tensor` is not `Clone`; the identity
                // transpose shares the storage).
                let shared = alias
                    .and_then(|k| tensors.get(k)?.as_ref())
                    .and_then(|t: &Tensor| t.transpose(0, 0).ok());
                let t = match shared {
                    Some(t) => t,
                    None => {
                        if count(shape) > MAX_ELEMENTS {
                            return None;
                        }
                        let n = count(shape) as usize;
                        let mut t =
                            Tensor::from_f64(*dtype, shape, &values(*seed, n, *dtype), cpu).ok()?;
                        if let Some((d, s, l)) = narrow {
                            t = t.narrow(*d, *s, *l).ok()?;
                        }
                        if let Some((a, b)) = transpose {
                            t = t.transpose(*a, *b).ok()?;
                        }
                        t
                    }
                };
                args.push(LaunchArg::from(&t));
                tensors.push(Some(t));
            }
        }
    }
    Some(args)
}

/// See the module documentation.
#[derive(Debug)]
pub struct LaunchHarness {
    pool: Pool,
    rng: SmallRng,
    watchdog: Watchdog,
}

impl LaunchHarness {
    pub fn new() -> LaunchHarness {
        LaunchHarness {
            pool: Pool::new(512, 4096),
            rng: SmallRng::seed_from_u64(5),
            watchdog: Watchdog::new(),
        }
    }
}

impl Default for LaunchHarness {
    fn default() -> Self {
        LaunchHarness::new()
    }
}

impl Harness for LaunchHarness {
    fn generate(&mut self, rng: &mut SmallRng) -> Vec<u8> {
        let spec = match self
            .pool
            .pick(rng)
            .and_then(|p| Spec::parse(&String::from_utf8_lossy(p)))
        {
            Some(s) if rng.gen_bool(0.6) => mutate(rng, s),
            _ => fresh(rng),
        };
        spec.to_text().into_bytes()
    }

    fn execute(&mut self, input: &[u8]) -> Result<Stage, String> {
        let Some(spec) = Spec::parse(&String::from_utf8_lossy(input)) else {
            return Ok(Stage::Tried);
        };
        // A device per input: its cancel token is this input's.
        let cpu = Device::cpu_with(
            CpuOptions::default()
                .op_budget(OP_BUDGET)
                .memory_budget(MEMORY_BUDGET)
                .cancel(self.watchdog.arm(CANCEL_AFTER)),
        );
        let result = self.launch(&spec, &cpu);
        self.watchdog.disarm();
        result
    }

    fn keep(&mut self, input: &[u8], stage: Stage) {
        if stage >= Stage::Verified {
            self.pool.add(&mut self.rng, input);
        }
    }
}

impl LaunchHarness {
    fn launch(&self, spec: &Spec, cpu: &Device) -> Result<Stage, String> {
        let Some(mut args) = arguments(spec, cpu) else {
            return Ok(Stage::Tried);
        };
        if spec.check_only {
            // The shape rule on its own, as a user may call it (a public fn pointer).
            let kernels = tilekit::registry::kernels();
            if let Some(v) = kernels
                .iter()
                .filter(|k| k.name == spec.kernel)
                .flat_map(|k| k.variants.iter())
                .find(|v| v.args == spec.variant)
            {
                let _ = (v.check)(&args);
            }
            return Ok(Stage::Verified);
        }
        let r = cpu.launch_by_name(&spec.kernel, &spec.variant, spec.grid, &mut args);
        Ok(match r {
            Ok(()) => Stage::Ran,
            Err(Error::Interp(tilekit::ir::interp::InterpError::Argument { .. })) => {
                Stage::Verified
            }
            Err(Error::Interp(_)) => Stage::Ran,
            // Decided after the signature check: the kernel's shape rule, the grid, aliasing.
            Err(
                Error::Shape { .. }
                | Error::EmptyGrid { .. }
                | Error::GridTooLarge { .. }
                | Error::Overlap { .. },
            ) => Stage::Verified,
            Err(_) => Stage::Tried,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_read_back_as_written() {
        let mut rng = SmallRng::seed_from_u64(9);
        for _ in 0..200 {
            let s = fresh(&mut rng);
            let back = Spec::parse(&s.to_text()).expect("a written spec reads back");
            assert_eq!(back.to_text(), s.to_text());
        }
    }
}
