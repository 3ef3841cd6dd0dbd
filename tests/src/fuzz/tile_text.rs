//! Structure-aware mutation of Tile IR text: at the level of tokens (swap a type, a dimension,
//! an op, an operand, a number for an interesting one) and of lines (delete, duplicate, move,
//! splice from another module, wrap a balanced run of lines in `if`/`for`/`while`, nest deeply),
//! so that most mutants still lex and parse and reach the verifier.

use rand::rngs::SmallRng;
use rand::Rng;

use super::mutate::{self, pick, INTERESTING_DIMS, INTERESTING_FLOATS, INTERESTING_INTS};

/// A piece of Tile IR text as the mutator sees it; joining the pieces' text gives the input back.
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Space(String),
    Ident(String),
    Number(String),
    Value(String),
    Symbol(String),
    Punct(char),
}

fn word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// Cuts `src` into pieces. Unlike the real lexer this never rejects anything: an unknown
/// character is a piece of its own, so mutants of mutants still cut.
fn tokens(src: &str) -> Vec<Tok> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let word = |mut j: usize| {
        while j < chars.len() && word_char(chars[j]) {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            out.push(Tok::Space(chars[start..i].iter().collect()));
        } else if c == '%' || c == '@' {
            i += 1;
            if i < chars.len() && chars[i] == '"' {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i = (i + 1).min(chars.len());
            } else {
                i = word(i);
            }
            let name: String = chars[start + 1..i].iter().collect();
            out.push(if c == '%' {
                Tok::Value(name)
            } else {
                Tok::Symbol(name)
            });
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(|&d| word_char(d)))
        {
            i += 1;
            while i < chars.len() {
                let d = chars[i];
                let exponent_sign = (d == '-' || d == '+')
                    && matches!(chars[i - 1], 'e' | 'E')
                    && chars[start..i]
                        .iter()
                        .all(|c| !c.is_ascii_alphabetic() || *c == 'e' || *c == 'E');
                if word_char(d) || exponent_sign {
                    i += 1;
                } else {
                    break;
                }
            }
            out.push(Tok::Number(chars[start..i].iter().collect()));
        } else if c.is_ascii_alphabetic() || c == '_' {
            i = word(i);
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else {
            i += 1;
            out.push(Tok::Punct(c));
        }
    }
    out
}

fn join(toks: &[Tok]) -> String {
    let mut out = String::with_capacity(toks.len() * 4);
    for t in toks {
        match t {
            Tok::Space(s) | Tok::Ident(s) | Tok::Number(s) => out.push_str(s),
            Tok::Value(s) => {
                out.push('%');
                out.push_str(s);
            }
            Tok::Symbol(s) => {
                out.push('@');
                out.push_str(s);
            }
            Tok::Punct(c) => out.push(*c),
        }
    }
    out
}

const SCALARS: &[&str] = &[
    "f32", "f16", "bf16", "f8e4m3", "f8e5m2", "i8", "i32", "u32", "i64", "bool",
];
const TYPE_NAMES: &[&str] = &["rt", "rv", "st", "sv", "gl", "sem"];
const LAYOUT_WORDS: &[&str] = &[
    "row", "col", "rows", "cols", "none", "swz32", "swz64", "swz128", "mut",
];
const KEYWORDS: &[&str] = &["kernel", "func", "warps", "x", "true", "false"];
/// Every op name of the text form (`tilekit_ir` crate docs), so that ops absent from the seed
/// corpus get tried too.
const OPS: &[&str] = &[
    "const",
    "block_idx.x",
    "block_idx.y",
    "block_idx.z",
    "grid_dim.x",
    "grid_dim.y",
    "grid_dim.z",
    "warp_idx",
    "warpgroup_idx",
    "num_warps",
    "dim",
    "fill",
    "splat",
    "iota.rows",
    "iota.cols",
    "map.exp",
    "map.exp2",
    "map.log",
    "map.log2",
    "map.neg",
    "map.abs",
    "map.relu",
    "map.silu",
    "map.gelu_tanh",
    "map.sqrt",
    "map.rsqrt",
    "map.recip",
    "map.tanh",
    "map.sigmoid",
    "map.not",
    "map.add",
    "map.sub",
    "map.mul",
    "map.div",
    "map.max",
    "map.min",
    "map.pow",
    "map.rem",
    "map.and",
    "map.or",
    "map.xor",
    "map.shl",
    "map.shr",
    "cmp.lt",
    "cmp.le",
    "cmp.gt",
    "cmp.ge",
    "cmp.eq",
    "cmp.ne",
    "select",
    "convert",
    "transpose",
    "bcast_row.add",
    "bcast_row.mul",
    "bcast_row.sub",
    "bcast_col.add",
    "bcast_col.mul",
    "reduce_row.sum",
    "reduce_row.max",
    "reduce_row.min",
    "reduce_col.sum",
    "reduce_col.max",
    "reduce.sum",
    "reduce.max",
    "mask.causal",
    "mask.anticausal",
    "mask.rows",
    "mask.cols",
    "mma.ab",
    "mma.abt",
    "mma.atb",
    "mma.atbt",
    "alloc_shared",
    "shared.index",
    "load",
    "store",
    "copy",
    "copy_async",
    "gather_rows",
    "scatter_rows",
    "scatter_add_rows",
    "atomic_add",
    "barrier",
    "sem.init",
    "sem.arrive",
    "sem.expect",
    "sem.wait",
    "for",
    "if",
    "while",
    "yield",
    "condition",
    "return",
    "call",
];
const SCOPES: &[&str] = &[
    "block",
    "warpgroup",
    "warp",
    "\"\"",
    "\"a b\"",
    "\"\\u{0}\"",
];

/// Word lists for replacing an identifier with another of its kind (or any word).
fn replacement(rng: &mut SmallRng, word: &str) -> String {
    let classes: [&[&str]; 5] = [SCALARS, TYPE_NAMES, LAYOUT_WORDS, KEYWORDS, OPS];
    let own = classes.iter().find(|c| c.contains(&word));
    let class = match own {
        Some(c) if rng.gen_bool(0.95) => *c,
        _ => classes[rng.gen_range(0..classes.len())],
    };
    pick(rng, class).to_string()
}

fn number_replacement(rng: &mut SmallRng, old: &str) -> String {
    if let Some((r, c)) = old.split_once('x') {
        // `64x32` (tile dims): change one side.
        let d = pick(rng, INTERESTING_DIMS);
        return if rng.gen_bool(0.5) {
            format!("{d}x{c}")
        } else {
            format!("{r}x{d}")
        };
    }
    if rng.gen_bool(0.15) {
        if let Ok(v) = old.parse::<i64>() {
            return (v + rng.gen_range(-2..=2)).to_string();
        }
    }
    let floaty = old.contains('.') || old.contains("inf") || old.contains('e');
    if floaty && rng.gen_bool(0.7) {
        pick(rng, INTERESTING_FLOATS).to_string()
    } else {
        pick(rng, INTERESTING_INTS).to_string()
    }
}

/// One token-level mutation.
fn mutate_token(rng: &mut SmallRng, toks: &mut Vec<Tok>) {
    // Punctuation rarely survives a change, so words are picked far more often.
    let punct = rng.gen_bool(0.05);
    let solid: Vec<usize> = (0..toks.len())
        .filter(|&i| match toks[i] {
            Tok::Space(_) => false,
            Tok::Punct(_) => punct,
            _ => true,
        })
        .collect();
    if solid.is_empty() {
        return;
    }
    let at = solid[rng.gen_range(0..solid.len())];
    match rng.gen_range(0..20) {
        // Most often: change the token for another of its kind (the rest rarely parses).
        0..=16 => {
            let new = match &toks[at] {
                Tok::Number(n) => {
                    // Inside `<…>` a number is a type's size: mostly sizes there.
                    let in_type = toks[..at]
                        .iter()
                        .rev()
                        .find_map(|t| match t {
                            Tok::Punct('<') => Some(true),
                            Tok::Punct('>' | '(' | '{' | '[') => Some(false),
                            Tok::Space(s) if s.contains('\n') => Some(false),
                            _ => None,
                        })
                        .unwrap_or(false);
                    if in_type && !n.contains('x') && rng.gen_bool(0.8) {
                        Tok::Number(pick(rng, INTERESTING_DIMS).to_string())
                    } else {
                        Tok::Number(number_replacement(rng, n))
                    }
                }
                Tok::Ident(w) => Tok::Ident(replacement(rng, w)),
                Tok::Value(_) => {
                    // Mostly a value named before this point (the parser resolves names).
                    let earlier: Vec<&Tok> = toks[..at]
                        .iter()
                        .filter(|t| matches!(t, Tok::Value(_)))
                        .collect();
                    let values: Vec<&Tok> =
                        toks.iter().filter(|t| matches!(t, Tok::Value(_))).collect();
                    if !earlier.is_empty() && rng.gen_bool(0.9) {
                        earlier[rng.gen_range(0..earlier.len())].clone()
                    } else if rng.gen_bool(0.9) {
                        values[rng.gen_range(0..values.len())].clone()
                    } else {
                        Tok::Value(format!("{}", rng.gen_range(0..200)))
                    }
                }
                Tok::Symbol(_) => {
                    let symbols: Vec<&Tok> = toks
                        .iter()
                        .filter(|t| matches!(t, Tok::Symbol(_)))
                        .collect();
                    if rng.gen_bool(0.6) {
                        symbols[rng.gen_range(0..symbols.len())].clone()
                    } else {
                        Tok::Symbol(pick(rng, SCOPES).to_string())
                    }
                }
                Tok::Punct(_) => Tok::Punct(*pick_char(rng)),
                Tok::Space(s) => Tok::Space(s.clone()),
            };
            toks[at] = new;
        }
        17 => {
            toks.remove(at);
        }
        18 => {
            let t = toks[at].clone();
            toks.insert(at, Tok::Space(" ".into()));
            toks.insert(at, t);
        }
        _ => {
            let other = solid[rng.gen_range(0..solid.len())];
            toks.swap(at, other);
        }
    }
}

fn pick_char(rng: &mut SmallRng) -> &'static char {
    const PUNCT: &[char] = &['(', ')', '{', '}', '[', ']', '<', '>', ',', ':', '='];
    &PUNCT[rng.gen_range(0..PUNCT.len())]
}

/// How the brace depth changes over a line.
fn balance(line: &str) -> i64 {
    line.chars()
        .map(|c| match c {
            '{' => 1,
            '}' => -1,
            _ => 0,
        })
        .sum()
}

/// A run of lines `[s, e)` inside a body whose braces balance, if one is found.
fn balanced_run(rng: &mut SmallRng, lines: &[String]) -> Option<(usize, usize)> {
    if lines.len() < 3 {
        return None;
    }
    for _ in 0..8 {
        let s = rng.gen_range(1..lines.len());
        let mut depth = 0;
        let mut ends = Vec::new();
        for (e, line) in lines.iter().enumerate().skip(s) {
            depth += balance(line);
            if depth < 0 {
                break;
            }
            if depth == 0 {
                ends.push(e + 1);
            }
            if ends.len() > 16 {
                break;
            }
        }
        if !ends.is_empty() {
            return Some((s, ends[rng.gen_range(0..ends.len())]));
        }
    }
    None
}

/// Wraps `body` in one control-flow op: `if`, `for` or `while`, whose condition or bounds are
/// new constants named with `tag`.
fn wrap(rng: &mut SmallRng, body: &str, tag: u32) -> String {
    match rng.gen_range(0..4) {
        0 | 1 => format!(
            "%fzc{tag} = const[{}] () : bool\nif (%fzc{tag}) {{\n{body}yield ()\n}} {{\nyield ()\n}}\n",
            if rng.gen_bool(0.8) { "true" } else { "false" }
        ),
        2 => {
            let hi = if rng.gen_bool(0.9) {
                rng.gen_range(0..4).to_string()
            } else {
                pick(rng, INTERESTING_INTS).to_string()
            };
            format!(
                "%fzl{tag} = const[0] () : i32\n%fzh{tag} = const[{hi}] () : i32\n%fzs{tag} = const[1] () : i32\n\
                 for (%fzl{tag}, %fzh{tag}, %fzs{tag}) (%fzi{tag}: i32) {{\n{body}yield ()\n}}\n"
            )
        }
        _ => format!(
            "%fzc{tag} = const[{}] () : bool\nwhile () {{\ncondition (%fzc{tag})\n}} {{\n{body}yield ()\n}}\n",
            if rng.gen_bool(0.9) { "false" } else { "true" }
        ),
    }
}

/// `body` inside `depth` nested `if`s on one constant condition.
fn nest(body: &str, depth: usize, tag: u32) -> String {
    let mut s = format!("%fzd{tag} = const[true] () : bool\n");
    s.push_str(&format!("if (%fzd{tag}) {{\n").repeat(depth));
    s.push_str(body);
    s.push_str(&"yield ()\n} {\nyield ()\n}\n".repeat(depth));
    s
}

/// `line` with the values it defines (left of ` = `) renamed with `suffix`.
fn rename_definitions(line: &str, suffix: &str) -> String {
    let Some((defs, rest)) = line.split_once(" = ") else {
        return line.to_string();
    };
    let mut toks = tokens(defs);
    for t in &mut toks {
        if let Tok::Value(v) = t {
            if !v.starts_with('"') {
                v.push_str(suffix);
            }
        }
    }
    format!("{} = {rest}", join(&toks))
}

/// `text` with its function names (not the scopes `@block`, `@warpgroup`) renamed, so that it
/// can be appended to a module without clashing.
fn rename_functions(text: &str, suffix: &str) -> String {
    let mut toks = tokens(text);
    for t in &mut toks {
        if let Tok::Symbol(s) = t {
            if s == "block" || s == "warpgroup" || s == "warp" {
                continue;
            }
            if let Some(inner) = s.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
                *s = format!("\"{inner}{suffix}\"");
            } else {
                s.push_str(suffix);
            }
        }
    }
    join(&toks)
}

/// Whether a value defined in `lines[s..e]` is named in a later line.
fn defines_used_later(lines: &[String], s: usize, e: usize) -> bool {
    let defs: Vec<String> = lines[s..e]
        .iter()
        .filter_map(|l| l.split_once(" = "))
        .flat_map(|(d, _)| {
            tokens(d).into_iter().filter_map(|t| match t {
                Tok::Value(v) => Some(format!("%{v}")),
                _ => None,
            })
        })
        .collect();
    lines[e..].iter().any(|l| {
        defs.iter().any(|d| {
            l.match_indices(d.as_str())
                .any(|(i, _)| !l[i + d.len()..].starts_with(|c: char| word_char(c)))
        })
    })
}

/// One line-level mutation.
fn mutate_lines(rng: &mut SmallRng, text: &str, other: &str) -> String {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    if lines.is_empty() {
        return text.to_string();
    }
    let at = rng.gen_range(0..lines.len());
    let tag = rng.gen_range(0..1_000_000);
    match rng.gen_range(0..20) {
        0 | 1 => {
            // Lines that define nothing, so no later use loses its definition.
            let plain: Vec<usize> = (0..lines.len())
                .filter(|&i| !lines[i].contains(" = ") && balance(&lines[i]) == 0)
                .collect();
            let i = if plain.is_empty() || rng.gen_bool(0.1) {
                at
            } else {
                plain[rng.gen_range(0..plain.len())]
            };
            lines.remove(i);
        }
        2 | 3 => {
            let l = rename_definitions(&lines[at], &format!("_fz{tag}"));
            lines.insert(at + 1, l);
        }
        4 => {
            let to = rng.gen_range(0..lines.len());
            lines.swap(at, to);
        }
        5 => {
            let l = lines.remove(at);
            let to = rng.gen_range(0..=lines.len());
            lines.insert(to, l);
        }
        6 => {
            let theirs: Vec<&str> = other.split_inclusive('\n').collect();
            if !theirs.is_empty() {
                let from = rng.gen_range(0..theirs.len());
                let n = mutate::log_len(rng, 8).min(theirs.len() - from);
                for (k, l) in theirs[from..from + n].iter().enumerate() {
                    lines.insert(at + k, l.to_string());
                }
            }
        }
        7..=17 => {
            // A run whose values are not used after it, so the wrapped text still parses (the
            // parser resolves names by scope); any run if none is found quickly.
            let mut run = balanced_run(rng, &lines);
            for _ in 0..6 {
                match run {
                    Some((s, e)) if defines_used_later(&lines, s, e) => {
                        run = balanced_run(rng, &lines)
                    }
                    _ => break,
                }
            }
            if let Some((s, e)) = run {
                let body: String = lines[s..e].concat();
                let wrapped = if rng.gen_bool(0.03) {
                    nest(&body, mutate::log_len(rng, 5000), tag)
                } else {
                    wrap(rng, &body, tag)
                };
                lines.splice(s..e, [wrapped]);
            }
        }
        _ => {
            // The other module's functions, renamed, appended.
            let mut s = lines.concat();
            s.push('\n');
            s.push_str(&rename_functions(other, &format!("_fz{tag}")));
            return s;
        }
    }
    lines.concat()
}

/// A mutant of `text`: `rounds` structure-aware mutations (tokens or lines), and a byte-level
/// one with probability `bytes`. `other` is another seed to splice from.
pub fn mutate(rng: &mut SmallRng, text: &str, other: &str, rounds: usize, bytes: f64) -> Vec<u8> {
    let mut s = text.to_string();
    for _ in 0..rounds {
        if rng.gen_bool(0.7) {
            let mut toks = tokens(&s);
            mutate_token(rng, &mut toks);
            s = join(&toks);
        } else {
            s = mutate_lines(rng, &s, other);
        }
    }
    let mut out = s.into_bytes();
    if rng.gen_bool(bytes) {
        mutate::bytes(rng, &mut out, other.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const SRC: &str = "kernel @k(%x: gl<f32, 1, mut>) warps(1) {
  %0 = block_idx.x () : i32
  %1 = load (%x, %0) : rv<f32, 16, rows>
  %2 = map.add (%1, %1) : rv<f32, 16, rows>
  store (%x, %2, %0)
  return ()
}
";

    #[test]
    fn cutting_and_joining_gives_the_text_back() {
        for src in [SRC, "%\"a \\\" b\" = const[-1.5e-8] : f32 @x 64x16 ~ é"] {
            assert_eq!(join(&tokens(src)), src);
        }
        let toks = tokens("const[-1.5e-8] 64x16 %v @\"q\"");
        assert!(toks.contains(&Tok::Number("-1.5e-8".into())), "{toks:?}");
        assert!(toks.contains(&Tok::Number("64x16".into())), "{toks:?}");
        assert!(toks.contains(&Tok::Value("v".into())), "{toks:?}");
        assert!(toks.contains(&Tok::Symbol("\"q\"".into())), "{toks:?}");
    }

    #[test]
    fn every_wrapper_parses_and_verifies_around_a_store() {
        // The wrappers are only useful if the parser reads them: each must keep a valid kernel
        // valid when it wraps a line that uses no value defined inside it.
        let mut rng = SmallRng::seed_from_u64(3);
        let mut verified = 0;
        for tag in 0..64 {
            let body = "  store (%x, %2, %0)\n";
            let wrapped = if tag % 8 == 0 {
                nest(body, 3, tag)
            } else {
                wrap(&mut rng, body, tag)
            };
            let src = SRC.replace(body, &wrapped);
            let m = tilekit::ir::parse_module(&src).unwrap_or_else(|e| panic!("{e}\n{src}"));
            // A loop bound from the interesting values may be out of the i32 range.
            verified += usize::from(tilekit::ir::verify(&m).is_ok());
        }
        assert!(verified >= 56, "{verified} of 64 wrapped kernels verify");
    }

    #[test]
    fn most_single_mutations_still_parse() {
        let mut rng = SmallRng::seed_from_u64(11);
        let n = 2000;
        let parsed = (0..n)
            .filter(|_| {
                let m = mutate(&mut rng, SRC, SRC, 1, 0.0);
                tilekit::ir::parse_module(&String::from_utf8_lossy(&m)).is_ok()
            })
            .count();
        assert!(
            parsed * 4 > n,
            "only {parsed} of {n} single mutations parse"
        );
    }
}
