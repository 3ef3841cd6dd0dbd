//! The parser: fixtures produced by tilekit's compiler parse; malformed text gives errors naming
//! the line; no text makes it panic.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tilekit_emu::ptx::{parse, Operand};
use tilekit_emu::EmuError;

fn fixtures() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ptx");
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("fixture dir") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "ptx") {
            out.push((
                p.display().to_string(),
                std::fs::read_to_string(&p).expect("read"),
            ));
        }
    }
    assert!(!out.is_empty());
    out
}

#[test]
fn every_fixture_parses_with_its_kernels_and_resolved_branches() {
    for (name, text) in fixtures() {
        let m = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(m.kernels().count() >= 1, "{name}");
        for f in &m.functions {
            for i in &f.body {
                if i.head == "bra" {
                    assert!(
                        matches!(i.operands[0], Operand::Label(t) if t <= f.body.len()),
                        "{name}: {i:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn scoped_blocks_may_redeclare_registers_and_labels() {
    let text = r#"
.version 8.3
.target sm_90a
.address_size 64
.visible .entry k(.param .align 8 .b8 tmap[128], .param .u64 p)
{
    .reg .pred %p<2>;
    .reg .b32 %r<3>;
    {
    .reg .pred P1;
    LAB_WAIT:
    setp.eq.u32 P1, %r1, 0;
    @!P1 bra LAB_WAIT;
    }
    {
    .reg .pred P1;
    LAB_WAIT:
    setp.eq.u32 P1, %r2, 0x10;
    @P1 bra LAB_WAIT;
    }
    mov.b32 %r1, 0f3F800000;
    mov.b64 %rd1, 0d3FF0000000000000;
    ret;
}
"#;
    let err = parse(text).unwrap_err();
    // %rd1 was never declared: the error names the line.
    assert_eq!(
        err,
        EmuError::Parse {
            line: 22,
            message: "undeclared register `%rd1`".into()
        }
    );
    let ok = text.replace("    mov.b64 %rd1, 0d3FF0000000000000;\n", "");
    let m = parse(&ok).unwrap();
    let f = &m.functions[0];
    assert_eq!(f.params[0].size, 128);
    assert_eq!(f.params[1].offset, 128);
    // Each scope's branch goes to its own label.
    let bras: Vec<usize> = f
        .body
        .iter()
        .filter(|i| i.head == "bra")
        .map(|i| match i.operands[0] {
            Operand::Label(t) => t,
            _ => usize::MAX,
        })
        .collect();
    assert_eq!(bras, vec![0, 2]);
}

#[test]
fn malformed_text_names_the_line() {
    let cases = [
        (
            ".version 8.0\n.target sm_80\n.entry k()\n{\n  add.s32 %r1, %r2;\n}\n",
            5,
        ),
        (
            ".version 8.0\n.entry k()\n{\n  .reg .b32 %r<2>;\n  bra NOWHERE;\n}\n",
            5,
        ),
        (".version 8.0\n.entry k(\n", 2),
        (
            ".version 8.0\n\n\n.entry k() { ld.global.u32 %r1, [%rd1 + ]; }",
            4,
        ),
    ];
    for (text, line) in cases {
        match parse(text) {
            Err(EmuError::Parse { line: l, .. }) => assert_eq!(l, line, "{text}"),
            other => panic!("{text}: expected a parse error, got {other:?}"),
        }
    }
}

#[test]
fn random_and_mutated_text_never_panics() {
    let s = rand::random::<u64>();
    eprintln!("seed {s}");
    let mut rng = StdRng::seed_from_u64(s);
    let base: Vec<u8> = fixtures()
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes();
    let alphabet = b"{}[]();:,.%@!|<>=+-_ \n0123456789abcdefxXfF.regpredshared\"/*";
    for _ in 0..300 {
        let mut t = base[..base.len().min(4000)].to_vec();
        for _ in 0..rng.gen_range(1..20) {
            let i = rng.gen_range(0..t.len());
            match rng.gen_range(0..3) {
                0 => t[i] = alphabet[rng.gen_range(0..alphabet.len())],
                1 => {
                    t.remove(i);
                }
                _ => t.insert(i, alphabet[rng.gen_range(0..alphabet.len())]),
            }
        }
        let _ = parse(&String::from_utf8_lossy(&t));
        let junk: Vec<u8> = (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect();
        let _ = parse(&String::from_utf8_lossy(&junk));
    }
}
