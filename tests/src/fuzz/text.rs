//! Harness `text`: Tile IR text → parse → verify → print → parse → print. The two printed texts
//! must be equal (printing is canonical) and the verifier must report the same errors (up to
//! source locations) for the module parsed from the input and the one parsed from its print.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tilekit::ir::{parse_module, print_module, verify, VerifyError};

use super::{corpus, tile_text, Harness, Pool, Stage};

/// See the module documentation.
#[derive(Debug)]
pub struct TextHarness {
    seeds: Vec<String>,
    pool: Pool,
    rng: SmallRng,
}

impl TextHarness {
    pub fn new() -> TextHarness {
        TextHarness {
            seeds: corpus::tile_texts(),
            pool: Pool::new(512, 64 << 10),
            rng: SmallRng::seed_from_u64(1),
        }
    }
}

impl Default for TextHarness {
    fn default() -> Self {
        TextHarness::new()
    }
}

/// What the verifier says, without source locations (the printed text moves ops to other lines).
fn verdict(r: &Result<(), Vec<VerifyError>>) -> Vec<String> {
    match r {
        Ok(()) => Vec::new(),
        Err(es) => es
            .iter()
            .map(|e| format!("@{} {} `{}`: {:?}", e.func, e.path, e.op, e.kind))
            .collect(),
    }
}

/// The first line where `a` and `b` differ, for the failure message.
pub fn first_difference(a: &str, b: &str) -> String {
    let n = a.lines().zip(b.lines()).take_while(|(x, y)| x == y).count();
    format!(
        "line {}: {:?} vs {:?}",
        n + 1,
        a.lines().nth(n).unwrap_or("<end>"),
        b.lines().nth(n).unwrap_or("<end>")
    )
}

impl Harness for TextHarness {
    fn generate(&mut self, rng: &mut SmallRng) -> Vec<u8> {
        let other = &self.seeds[rng.gen_range(0..self.seeds.len())];
        let base = match self.pool.pick(rng) {
            Some(p) if rng.gen_bool(0.4) => String::from_utf8_lossy(p).into_owned(),
            _ => self.seeds[rng.gen_range(0..self.seeds.len())].clone(),
        };
        // Mostly one mutation, so that most inputs still parse and reach the verifier; more
        // now and then, and bytes for the parser's own error paths.
        let rounds = 1 + (rng.gen::<u32>() | 0x10).trailing_zeros().saturating_sub(1) as usize;
        tile_text::mutate(rng, &base, other, rounds, 0.05)
    }

    fn execute(&mut self, input: &[u8]) -> Result<Stage, String> {
        let src = String::from_utf8_lossy(input);
        let Ok(m1) = parse_module(&src) else {
            return Ok(Stage::Tried);
        };
        let v1 = verify(&m1);
        let t1 = print_module(&m1);
        let m2 = parse_module(&t1)
            .map_err(|e| format!("the printed form of a parsed module does not parse: {e}"))?;
        let t2 = print_module(&m2);
        if t1 != t2 {
            return Err(format!(
                "printing is not canonical: print(parse(print(m))) differs from print(m) at {}",
                first_difference(&t1, &t2)
            ));
        }
        let v2 = verify(&m2);
        let (d1, d2) = (verdict(&v1), verdict(&v2));
        if d1 != d2 {
            return Err(format!(
                "the verifier disagrees on a module and its printed form: {d1:?} vs {d2:?}"
            ));
        }
        Ok(if v1.is_ok() {
            Stage::Ran
        } else {
            Stage::Verified
        })
    }

    fn keep(&mut self, input: &[u8], stage: Stage) {
        if stage >= Stage::Verified {
            self.pool.add(&mut self.rng, input);
        }
    }
}
