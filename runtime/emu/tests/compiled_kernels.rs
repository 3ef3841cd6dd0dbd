//! PTX that tilekit's compiler produced (fixtures under `tests/ptx`, used as inputs only) run on
//! the emulator against plain-Rust references; and the negative cases the sanitizer must catch
//! in them: a removed `bar.sync` in the staged GEMM (a race or a read of an unfinished copy,
//! naming the instruction) and an off-by-one global store (out of bounds).

use half::bf16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tilekit_emu::sanitizer::FindingKind;
use tilekit_emu::{EmuError, Emulator, GlobalMemory, LaunchConfig};

const GEMM: &str = include_str!("ptx/gemm.sm_80.ptx");

struct Gemm {
    a: Vec<bf16>,
    b: Vec<bf16>,
    m: usize,
    n: usize,
    k: usize,
}

impl Gemm {
    fn random(m: usize, n: usize, k: usize, rng: &mut StdRng) -> Gemm {
        let mut v = |len: usize| {
            (0..len)
                .map(|_| bf16::from_f32(rng.gen_range(-1.0..1.0)))
                .collect()
        };
        Gemm {
            a: v(m * k),
            b: v(k * n),
            m,
            n,
            k,
        }
    }

    fn reference(&self) -> Vec<f64> {
        let (m, n, k) = (self.m, self.n, self.k);
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|kk| self.a[i * k + kk].to_f64() * self.b[kk * n + j].to_f64())
                    .sum();
            }
        }
        c
    }

    /// Runs the fixture; `c_rows` is the row count the kernel is told C has (its allocation
    /// always has `m` rows).
    fn run(&self, ptx: &str, c_rows: usize) -> Result<Vec<f32>, EmuError> {
        let (m, n, k) = (self.m, self.n, self.k);
        let emu = Emulator::new(ptx)?;
        let mut g = GlobalMemory::new();
        let bytes = |v: &[bf16]| {
            v.iter()
                .flat_map(|x| x.to_bits().to_le_bytes())
                .collect::<Vec<u8>>()
        };
        let pa = g.alloc("a", bytes(&self.a));
        let pb = g.alloc("b", bytes(&self.b));
        let pc = g.alloc("c", vec![0u8; m * n * 4]);
        let u = |v: usize| (v as u32).to_le_bytes().to_vec();
        // The ABI of a 2-d view: pointer, sizes, strides (elements).
        let args = [
            pa.to_le_bytes().to_vec(),
            u(m),
            u(k),
            u(k),
            u(1),
            pb.to_le_bytes().to_vec(),
            u(k),
            u(n),
            u(n),
            u(1),
            pc.to_le_bytes().to_vec(),
            u(c_rows),
            u(n),
            u(n),
            u(1),
        ];
        let params = emu.param_buffer("gemm", &args)?;
        let grid = [n.div_ceil(64) as u32, m.div_ceil(64) as u32, 1];
        emu.launch(
            "gemm",
            &LaunchConfig::new(grid, [128, 1, 1]),
            &params,
            &mut g,
        )?;
        Ok(g.get(pc)
            .expect("c")
            .data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

fn rng() -> StdRng {
    let s = rand::random::<u64>();
    eprintln!("seed {s}");
    StdRng::seed_from_u64(s)
}

#[test]
fn compiled_gemm_matches_the_f64_product_at_full_and_partial_tiles() {
    let mut rng = rng();
    for (m, n, k) in [(64, 64, 64), (70, 33, 40), (128, 64, 96)] {
        let g = Gemm::random(m, n, k, &mut rng);
        let got = g.run(GEMM, m).unwrap();
        let want = g.reference();
        for (i, (x, y)) in got.iter().zip(&want).enumerate() {
            assert!(
                (f64::from(*x) - y).abs() <= 1e-4 * y.abs().max(1.0),
                "{m}×{n}×{k}: C[{i}] = {x}, expected {y}"
            );
        }
    }
}

#[test]
fn removing_a_barrier_from_the_staged_gemm_is_reported_naming_the_instruction() {
    let mut rng = rng();
    let g = Gemm::random(64, 64, 64, &mut rng);
    let lines: Vec<&str> = GEMM.lines().collect();
    let barriers: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("bar.sync"))
        .map(|(i, _)| i)
        .collect();
    assert!(!barriers.is_empty());
    for &at in &barriers {
        let ptx: String = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != at)
            .map(|(_, l)| format!("{l}\n"))
            .collect();
        let err = g.run(&ptx, 64).unwrap_err();
        let EmuError::Sanitizer { findings, .. } = &err else {
            panic!("line {}: expected findings, got {err}", at + 1)
        };
        let f = findings
            .iter()
            .find(|f| matches!(f.kind, FindingKind::Race | FindingKind::AsyncHazard))
            .unwrap_or_else(|| panic!("line {}: no race in {findings:?}", at + 1));
        assert!(
            ["ld.shared", "st.shared", "ldmatrix", "cp.async"]
                .iter()
                .any(|p| f.opcode.starts_with(p)),
            "line {}: {f}",
            at + 1
        );
    }
}

#[test]
fn telling_the_gemm_c_has_one_more_row_is_an_out_of_bounds_store() {
    let mut rng = rng();
    let g = Gemm::random(63, 64, 32, &mut rng);
    let err = g.run(GEMM, 64).unwrap_err();
    let EmuError::Sanitizer { findings, .. } = &err else {
        panic!("expected findings, got {err}")
    };
    let f = findings
        .iter()
        .find(|f| f.kind == FindingKind::OutOfBounds)
        .expect("an out-of-bounds finding");
    assert!(f.opcode.starts_with("st.global"), "{f}");
    assert!(f.message.contains("`c`"), "{f}");
}
