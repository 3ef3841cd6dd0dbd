//! Whatever PTX it is given, the emulator answers with a result or an error, never a panic:
//! mutated compiler output (opcodes, types, operands, deleted lines) is parsed and, when it
//! parses, launched with a small budget.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tilekit_emu::{Emulator, GlobalMemory, LaunchConfig};

const FIXTURES: [&str; 4] = [
    include_str!("ptx/gemm.sm_80.ptx"),
    include_str!("ptx/softmax.sm_90a.ptx"),
    include_str!("ptx/masks.sm_80.ptx"),
    include_str!("ptx/adamw.sm_80.ptx"),
];

const WORDS: [&str; 24] = [
    ".u8", ".s16", ".b128", ".f16x2", ".bf16x2", ".e4m3x2", ".pred", ".v4", ".v8", ".wide", ".hi",
    ".sat", ".ftz", ".rz", ".shared", ".global", ".local", ".param", ".aligned", ".trans", ".x4",
    ".up", ".idx", ".sync",
];
const OPERANDS: [&str; 10] = [
    "%r1",
    "%rd1",
    "%p1",
    "-1",
    "0x7fffffff",
    "0f7F800000",
    "[%rd1+-8]",
    "{%r1, %r2}",
    "%tid.x",
    "%laneid",
];

fn mutate(text: &str, rng: &mut StdRng) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for _ in 0..rng.gen_range(1..6) {
        let i = rng.gen_range(0..lines.len());
        let line = lines[i].clone();
        lines[i] = match rng.gen_range(0..5) {
            0 => String::new(),
            1 => match line.find([' ', '\t']) {
                // Add a modifier to the opcode.
                Some(at)
                    if line
                        .trim_start()
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic()) =>
                {
                    format!(
                        "{}{}{}",
                        &line[..at],
                        WORDS.choose(rng).unwrap_or(&".u32"),
                        &line[at..]
                    )
                }
                _ => line,
            },
            2 => line
                .replacen(".b32", WORDS.choose(rng).unwrap_or(&".b64"), 1)
                .replacen(".f32", WORDS.choose(rng).unwrap_or(&".f64"), 1),
            3 => {
                let mut parts: Vec<String> = line.split(", ").map(String::from).collect();
                if parts.len() > 1 {
                    let k = rng.gen_range(1..parts.len());
                    let end = if parts[k].ends_with(';') { ";" } else { "" };
                    parts[k] = format!("{}{end}", OPERANDS.choose(rng).unwrap_or(&"0"));
                }
                parts.join(", ")
            }
            _ => {
                let j = rng.gen_range(0..lines.len());
                lines[j].clone()
            }
        };
    }
    lines.join("\n")
}

#[test]
fn mutated_compiler_output_never_panics_the_parser_or_the_executor() {
    let s = rand::random::<u64>();
    eprintln!("seed {s}");
    let mut rng = StdRng::seed_from_u64(s);
    let rounds: usize = std::env::var("EMU_FUZZ_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(150);
    let mut launched = 0;
    for _ in 0..rounds {
        let base = FIXTURES.choose(&mut rng).copied().unwrap_or(FIXTURES[0]);
        let text = mutate(base, &mut rng);
        let Ok(emu) = Emulator::new(&text) else {
            continue;
        };
        let Some(kernel) = emu.module().kernels().next().map(String::from) else {
            continue;
        };
        let Ok(params) = emu.params(&kernel).map(|p| p.to_vec()) else {
            continue;
        };
        let mut g = GlobalMemory::new();
        // Pointer parameters point at a small buffer; everything else is small numbers.
        let buf = g.alloc("buf", vec![0x3c; 4096]);
        let args: Vec<Vec<u8>> = params
            .iter()
            .map(|p| match p.size {
                8 => buf.to_le_bytes().to_vec(),
                4 => 16u32.to_le_bytes().to_vec(),
                n => vec![1; n as usize],
            })
            .collect();
        let Ok(bytes) = emu.param_buffer(&kernel, &args) else {
            continue;
        };
        let mut cfg = LaunchConfig::new([1, 1, 1], [rng.gen_range(1..=128), 1, 1]);
        cfg.budget = 20_000;
        cfg.dynamic_shared = rng.gen_range(0..2) * 1024;
        let _ = emu.launch(&kernel, &cfg, &bytes, &mut g);
        launched += 1;
    }
    assert!(launched > 0, "no mutant parsed");
}

fn run_one(body: &str) -> Result<u64, tilekit_emu::EmuError> {
    let ptx = format!(
        ".version 8.0\n.target sm_80\n.address_size 64\n.visible .entry k(.param .u64 p)\n{{\n\
         .reg .pred %p<3>;\n.reg .b32 %r<8>;\n.reg .b64 %rd<8>;\n.reg .b128 %q<2>;\n\
         ld.param.u64 %rd1, [p];\nsetp.ne.u32 %p1, %r1, 0;\n{body}\nret;\n}}\n"
    );
    let emu = Emulator::new(&ptx)?;
    let mut g = GlobalMemory::new();
    let buf = g.alloc("buf", vec![0; 256]);
    let params = emu.param_buffer("k", &[buf.to_le_bytes().to_vec()])?;
    emu.launch(
        "k",
        &LaunchConfig::new([1, 1, 1], [32, 1, 1]),
        &params,
        &mut g,
    )
    .map(|r| r.profile.total)
}

#[test]
fn forms_the_emulator_does_not_model_are_errors_not_panics() {
    for body in [
        "clz.b128 %r1, %q1;",
        "brev.b128 %q1, %q1;",
        "mov.b128 {%rd1, %rd2}, %q1;",
        "atom.global.exch.b128 %q1, [%rd1], %q1;",
        "ld.global.b128 %q1, [%rd1];",
        "cvt.u32.b128 %r1, %q1;",
        "mul.wide.u64 %rd2, %rd1, %rd1;",
        "shfl.sync.bfly.b32;",
        "vote.sync.ballot.b32 %r1;",
        "bar.sync 16;",
        "bar.sync 0, 33;",
    ] {
        assert!(run_one(body).is_err(), "{body} should be refused");
    }
}

#[test]
fn instructions_guarded_off_in_every_lane_do_nothing() {
    // %r1 is 0 in every lane, so %p1 is false: none of these runs.
    for body in [
        "@%p1 elect.sync %r2|%p2, -1;",
        "@%p1 st.global.u32 [%rd1+1000000], %r1;",
        "@%p1 cp.async.wait_group 0;",
    ] {
        assert!(run_one(body).is_ok(), "{body}: {:?}", run_one(body));
    }
}
