//! The parser rejects malformed text with the line, the column and what it expected, and never
//! panics, whatever it is given.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tilekit_ir::{parse_module, print_module, ParseError};

/// Parses `src`, which must fail, and returns the error.
fn parse_err(src: &str) -> ParseError {
    match parse_module(src) {
        Ok(m) => panic!("parsed:\n{}", print_module(&m)),
        Err(e) => e,
    }
}

fn assert_error(src: &str, line: u32, col: u32, message: &str) {
    let e = parse_err(src);
    assert_eq!(
        (e.line, e.col, e.message.as_str()),
        (line, col, message),
        "source:\n{src}"
    );
}

#[test]
fn use_of_an_undefined_value() {
    assert_error(
        "kernel @k() warps(1) {\n  %0 = map.neg (%x) : f32\n  return ()\n}\n",
        2,
        17,
        "use of undefined value %x",
    );
}

#[test]
fn values_of_a_region_are_not_visible_after_it() {
    let src = "\
kernel @k(%n: i32) warps(1) {
  %0 = const[0] () : i32
  for (%0, %n, %0) (%i: i32) {
    %sq = map.mul (%i, %i) : i32
    yield ()
  }
  %1 = map.add (%sq, %0) : i32
  return ()
}
";
    assert_error(
        src,
        7,
        17,
        "use of undefined value %sq: its definition at line 4, column 5 is not visible here",
    );
}

#[test]
fn an_op_cannot_use_its_own_result() {
    assert_error(
        "kernel @k() warps(1) {\n  %a = map.neg (%a) : f32\n}\n",
        2,
        17,
        "use of undefined value %a: its definition at line 2, column 3 is not visible here",
    );
}

#[test]
fn redefinition_of_a_value() {
    let src = "\
func @f(%x: f32) -> (f32) {
  %y = map.neg (%x) : f32
  %y = map.abs (%x) : f32
  return (%y)
}
";
    assert_error(
        src,
        3,
        3,
        "redefinition of %y (first defined at line 2, column 3)",
    );
}

#[test]
fn region_arguments_cannot_reuse_a_name_of_the_function() {
    let src = "\
kernel @k(%n: i32) warps(1) {
  %0 = const[0] () : i32
  for (%0, %n, %0) (%n: i32) {
    yield ()
  }
}
";
    assert_error(
        src,
        3,
        21,
        "redefinition of %n (first defined at line 1, column 11)",
    );
}

#[test]
fn redefinition_of_a_function() {
    let src = "func @f() -> () {\n  return ()\n}\n\nfunc @f() -> () {\n  return ()\n}\n";
    assert_error(
        src,
        5,
        6,
        "redefinition of function @f (first defined at line 1, column 6)",
    );
}

#[test]
fn unknown_op() {
    assert_error(
        "kernel @k(%x: f32) warps(1) {\n  %0 = map.exp3 (%x) : f32\n}\n",
        2,
        8,
        "unknown op 'map.exp3'",
    );
}

#[test]
fn unknown_type() {
    assert_error(
        "kernel @k(%x: tile<f32, 16x16>) warps(1) {\n}\n",
        1,
        15,
        "unknown type 'tile'",
    );
}

#[test]
fn unknown_element_type() {
    assert_error(
        "kernel @k(%x: gl<f31, 2>) warps(1) {\n}\n",
        1,
        18,
        "unknown element type 'f31'",
    );
}

#[test]
fn malformed_tile_shape() {
    assert_error(
        "kernel @k() warps(1) {\n  %0 = fill[0.0] () : rt<bf16, 64x, row>\n}\n",
        2,
        32,
        "malformed tile shape '64x', expected ROWSxCOLS like '64x16'",
    );
}

#[test]
fn unknown_layout() {
    assert_error(
        "kernel @k() warps(1) {\n  %0 = fill[0.0] () : rt<bf16, 64x16, diag>\n}\n",
        2,
        39,
        "unknown layout 'diag', expected 'row' or 'col'",
    );
}

#[test]
fn attribute_of_the_wrong_kind() {
    assert_error(
        "kernel @k() warps(1) {\n  %s = alloc_shared @block () : sem\n  sem.init[1.5] (%s)\n}\n",
        3,
        12,
        "bad attribute of 'sem.init': expected an unsigned 32-bit integer, found '1.5'",
    );
    assert_error(
        "kernel @k() warps(1) {\n  %c = const[@f] () : i32\n}\n",
        2,
        14,
        "bad attribute of 'const': expected a number, 'true' or 'false', found '@f'",
    );
    assert_error(
        "kernel @k() warps(1) {\n  call[3] ()\n}\n",
        2,
        8,
        "bad attribute of 'call': expected a function name like '@f', found '3'",
    );
}

#[test]
fn missing_attribute() {
    assert_error(
        "kernel @k() warps(1) {\n  %c = const () : i32\n}\n",
        2,
        14,
        "expected '[' and the attribute of 'const', found '('",
    );
}

#[test]
fn attribute_on_an_op_that_takes_none() {
    assert_error(
        "kernel @k(%g: gl<f32, 1>) warps(1) {\n  %t = load[3] (%g) : f32\n}\n",
        2,
        12,
        "'load' takes no attribute",
    );
}

#[test]
fn unknown_scope() {
    assert_error(
        "kernel @k() warps(1) {\n  barrier @grid ()\n}\n",
        2,
        11,
        "unknown scope '@grid', expected '@warp', '@warpgroup' or '@block'",
    );
}

#[test]
fn extra_token_in_a_list() {
    assert_error(
        "kernel @k() warps(4,) {\n}\n",
        1,
        20,
        "expected ')', found ','",
    );
    assert_error(
        "kernel @k(%a: i32) warps(1) {\n  return (%a,, %a)\n}\n",
        2,
        14,
        "expected an operand like '%x', found ','",
    );
}

#[test]
fn result_names_and_types_must_agree() {
    assert_error(
        "kernel @k() warps(1) {\n  %a, %b = const[1] () : i32\n}\n",
        2,
        24,
        "'const' defines 2 values but has 1 result type",
    );
    assert_error(
        "kernel @k(%s: sem) warps(1) {\n  sem.arrive (%s) : i32\n}\n",
        2,
        19,
        "'sem.arrive' defines 0 values but has 1 result type",
    );
}

#[test]
fn results_need_their_types() {
    assert_error(
        "kernel @k(%g: gl<f32, 1>) warps(1) {\n  %t = load (%g)\n  return ()\n}\n",
        3,
        3,
        "expected ':' and the result types, found 'return'",
    );
}

#[test]
fn unexpected_end_of_input() {
    assert_error(
        "kernel @k() warps(1) {\n  %0 = warp_idx () : i32\n",
        3,
        1,
        "expected an op or '}', found end of input",
    );
    assert_error(
        "kernel @k(",
        1,
        11,
        "expected a parameter like '%x', found end of input",
    );
}

#[test]
fn helpers_declare_their_results() {
    assert_error(
        "func @f(%x: f32) {\n  return ()\n}\n",
        1,
        18,
        "expected '->' and the result types, found '{'",
    );
}

#[test]
fn top_level_holds_only_functions() {
    assert_error(
        "%0 = const[1] () : i32\n",
        1,
        1,
        "expected 'kernel' or 'func', found '%0'",
    );
}

#[test]
fn unreadable_characters_and_names() {
    assert_error(
        "kernel @k() warps(1) {\n  %0 = const[1] () : i32 $\n}\n",
        2,
        26,
        "unexpected character '$'",
    );
    assert_error(
        "kernel @k() warps(1) {\n  %1a = const[1] () : i32\n}\n",
        2,
        3,
        "invalid value name '%1a': a name starts with a letter or '_', a number has digits only",
    );
    assert_error(
        "kernel @\"k() warps(1) {\n}\n",
        1,
        8,
        "unterminated quoted name",
    );
}

#[test]
fn the_first_error_in_the_text_is_reported() {
    // An unreadable character later in the text does not hide an earlier mistake.
    assert_error(
        "kernel @k() warps(1) {\n  %0 = nop () : i32\n  $\n}\n",
        2,
        8,
        "unknown op 'nop'",
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let mut src = String::from("kernel @k() warps(1) {\n");
    for _ in 0..5000 {
        src.push_str("if () {\n");
    }
    let e = parse_err(&src);
    assert!(
        e.message.starts_with(&format!(
            "nesting deeper than {} levels",
            tilekit_ir::MAX_NESTING
        )),
        "{}",
        e.message
    );

    let mut src = String::from("kernel @k(%x: ");
    for _ in 0..100_000 {
        src.push_str("[1 x ");
    }
    let e = parse_err(&src);
    assert!(
        e.message.starts_with(&format!(
            "nesting deeper than {} levels",
            tilekit_ir::MAX_NESTING
        )),
        "{}",
        e.message
    );
}

/// A valid program touching most of the grammar: attributes of every kind, scopes, regions with
/// and without arguments, several results, quoted names and comments.
const PROGRAM: &str = "\
kernel @gemm(%a: gl<bf16, 2>, %b: gl<bf16, 2>, %c: gl<f32, 2, mut>, %k: i32) warps(4) {
  %row = block_idx.y () : i32
  %ring = alloc_shared @block () : [2 x st<bf16, 64x16, swz128>]
  %full = alloc_shared @block () : sem
  sem.init[1] (%full)
  sem.expect[2048] (%full)
  %0 = fill[-inf] () : rt<f32, 64x64, row>
  %1 = const[0] () : i32
  %2 = const[1e-8] () : f32
  %3 = const[true] () : bool
  %4 = for (%1, %k, %1, %0) (%5: i32, %6: rt<f32, 64x64, row>) {
    %7 = shared.index (%ring, %1) : st<bf16, 64x16, swz128>
    copy_async (%7, %a, %full, %row, %5)
    sem.wait (%full, %1)
    %8 = load @warpgroup (%7) : rt<bf16, 16x16, row>
    %9 = load (%b, %5, %row) : rt<bf16, 16x64, col>
    %10 = mma.ab (%8, %9, %6) : rt<f32, 64x64, row>
    %11 = mask.causal[NaN] (%10, %row, %5) : rt<f32, 64x64, row>
    yield (%11)
  } : rt<f32, 64x64, row>
  %12, %13 = while (%1, %2) (%14: i32, %15: f32) {
    %16 = cmp.lt (%14, %k) : bool
    condition (%16, %14, %15)
  } (%17: i32, %18: f32) {
    %19, %20 = call[@\"pair<2>\"] (%17, %18) : i32, f32
    yield (%19, %20)
  } : i32, f32
  %21 = if (%3) {
    %22 = dim[1] (%c) : i32
    yield (%22)
  } {
    yield (%12)
  } : i32
  store (%c, %4, %row, %21)
  return ()
}

func @\"pair<2>\"(%i: i32, %x: f32) -> (i32, f32) {
  %y = map.mul (%x, %x) : f32
  return (%i, %y)
}
";

/// Parses `src` and reports a panic as a test failure that shows the input.
fn parse_without_panic(src: &str) -> Result<tilekit_ir::Module, ParseError> {
    match catch_unwind(AssertUnwindSafe(|| parse_module(src))) {
        Ok(result) => result,
        Err(_) => panic!("the parser panicked on {src:?}"),
    }
}

/// The round-trip law for text the parser accepted: its printed form is canonical.
fn assert_round_trips(src: &str) {
    let Ok(m) = parse_without_panic(src) else {
        return;
    };
    let printed = print_module(&m);
    let reparsed = parse_module(&printed)
        .unwrap_or_else(|e| panic!("{e}\nprinted:\n{printed}\nfrom:\n{src:?}"));
    assert_eq!(print_module(&reparsed), printed, "from:\n{src:?}");
}

#[test]
fn the_program_round_trips() {
    let m = parse_module(PROGRAM).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(print_module(&m), PROGRAM);
}

#[test]
fn every_truncated_prefix_fails_cleanly() {
    // Only prefixes made of whole functions are programs.
    let complete = |p: &str| {
        let p = p.trim_end();
        p.is_empty() || p.ends_with("\n}")
    };
    for (cut, _) in PROGRAM.char_indices() {
        let prefix = &PROGRAM[..cut];
        let result = parse_without_panic(prefix);
        assert_eq!(
            result.is_ok(),
            complete(prefix),
            "prefix {prefix:?}: {result:?}"
        );
    }
}

#[test]
fn random_bytes_do_not_panic_the_parser() {
    for seed in 0..2000u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let len = rng.gen_range(0..200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let src = String::from_utf8_lossy(&bytes);
        // Garbage parses only when it is blank or a comment: to a module without functions.
        if let Ok(m) = parse_without_panic(&src) {
            assert!(m.funcs.is_empty(), "seed {seed}: {src:?}");
        }
    }
}

/// Words of the text form, for random programs that get further into the parser than bytes do.
const VOCABULARY: &[&str] = &[
    "kernel",
    "func",
    "@k",
    "@\"q r\"",
    "@block",
    "@warpgroup",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    "<",
    ">",
    ",",
    ":",
    "=",
    "->",
    "%0",
    "%1",
    "%x",
    "%x.1",
    "warps",
    "4",
    "0",
    "-1",
    "1.5",
    "-inf",
    "NaN",
    "1e-8",
    "64x16",
    "16x",
    "x",
    "rt",
    "rv",
    "st",
    "sv",
    "gl",
    "sem",
    "f32",
    "bf16",
    "i64",
    "row",
    "cols",
    "swz128",
    "mut",
    "const",
    "fill",
    "load",
    "store",
    "for",
    "if",
    "while",
    "yield",
    "condition",
    "return",
    "call",
    "map.add",
    "sem.init",
    "mma.ab",
    "\n",
    " ",
    "// c\n",
    "$",
];

#[test]
fn random_token_soup_fails_cleanly_or_round_trips() {
    for seed in 0..3000u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let len = rng.gen_range(0..60);
        let src: Vec<&str> = (0..len)
            .map(|_| VOCABULARY[rng.gen_range(0..VOCABULARY.len())])
            .collect();
        assert_round_trips(&src.join(" "));
    }
}

#[test]
fn random_edits_of_a_program_fail_cleanly_or_round_trip() {
    let mut accepted = 0;
    for seed in 0..3000u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut src: Vec<char> = PROGRAM.chars().collect();
        for _ in 0..rng.gen_range(1..4) {
            let at = rng.gen_range(0..src.len());
            match rng.gen_range(0..4) {
                0 => {
                    let end = (at + rng.gen_range(1..8)).min(src.len());
                    src.drain(at..end);
                }
                1 => {
                    let word = VOCABULARY[rng.gen_range(0..VOCABULARY.len())];
                    src.splice(at..at, word.chars());
                }
                2 => {
                    let end = (at + rng.gen_range(1..40)).min(src.len());
                    let copy: Vec<char> = src[at..end].to_vec();
                    src.splice(at..at, copy);
                }
                _ => src[at] = char::from(rng.gen_range(b' '..=b'~')),
            }
            if src.is_empty() {
                break;
            }
        }
        let src: String = src.into_iter().collect();
        if parse_without_panic(&src).is_ok() {
            accepted += 1;
        }
        assert_round_trips(&src);
    }
    // Some edits (in whitespace, names, numbers) keep the program valid; they must round-trip.
    assert!(accepted > 0);
}
