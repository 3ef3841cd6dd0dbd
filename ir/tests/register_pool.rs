//! The verifier's register-pool rules for `setmaxnreg` (PTX ISA, *setmaxnreg*): every warp of a
//! warpgroup runs it, and the counts the warpgroups may hold together fit the registers the
//! block holds at entry (the 64K register file divided among its threads, rounded down to a
//! multiple of 8: 168 for three warpgroups, 256 for two).

use tilekit_ir::*;

/// A kernel of `warps` warps that runs `body` (which may use `%w` = warp_idx, `%g` =
/// warpgroup_idx, `%n` an i32 parameter and the constants `%c0`..`%c3`).
fn kernel(warps: u32, body: &str) -> String {
    format!(
        "kernel @k(%y: gl<f32, 2, mut>, %n: i32) warps({warps}) {{
  %c0 = const[0] () : i32
  %c1 = const[1] () : i32
  %c2 = const[2] () : i32
  %c3 = const[3] () : i32
  %w = warp_idx () : i32
  %g = warpgroup_idx () : i32
{body}
  return ()
}}
"
    )
}

/// Warpgroup 0 runs `producer`; the others run `consumer` (warp specialization).
fn split(warps: u32, producer: &str, consumer: &str) -> String {
    kernel(
        warps,
        &format!(
            "  %is_producer = cmp.eq (%g, %c0) : bool
  if (%is_producer) {{
    {producer}
    yield ()
  }} {{
    {consumer}
    yield ()
  }}"
        ),
    )
}

fn errors(text: &str) -> Vec<String> {
    let m = parse_module(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    match verify(&m) {
        Ok(()) => Vec::new(),
        Err(es) => es.iter().map(|e| e.to_string()).collect(),
    }
}

const DEC40: &str = "setmaxnreg.dec[40] @warpgroup ()";
const INC232: &str = "setmaxnreg.inc[232] @warpgroup ()";
const INC240: &str = "setmaxnreg.inc[240] @warpgroup ()";

#[test]
fn a_producer_and_two_consumers_fill_the_pool_exactly() {
    // 40 + 232 + 232 = 504 = 3 × 168, the split of a cooperative Hopper GEMM.
    assert_eq!(errors(&split(12, DEC40, INC232)), Vec::<String>::new());
    // Two warpgroups start at 256 each.
    assert_eq!(errors(&split(8, DEC40, INC232)), Vec::<String>::new());
}

#[test]
fn counts_over_the_pool_are_refused_with_the_sum() {
    let e = errors(&split(12, DEC40, INC240));
    assert_eq!(e.len(), 1, "{e:?}");
    for part in [
        "in @k",
        "40 + 240 + 240 = 520",
        "3 × 168 = 504",
        "65536 registers / 384 threads",
    ] {
        assert!(e[0].contains(part), "{part} missing from: {}", e[0]);
    }
    // A producer that gives nothing up keeps its 168.
    let e = errors(&split(12, "", INC232));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("168 + 232 + 232 = 632"), "{}", e[0]);
    // Four warpgroups start at 128 each.
    let e = errors(&kernel(16, &format!("  {INC232}")));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("232 + 232 + 232 + 232 = 928"), "{}", e[0]);
    assert!(e[0].contains("4 × 128 = 512"), "{}", e[0]);
}

#[test]
fn a_count_under_an_unknown_condition_counts_as_asked_for() {
    // Warpgroup 0 gives up registers only when %n > 0: it may keep its 168, and the consumers'
    // 232 do not fit beside it.
    let e = errors(&split(
        12,
        &format!(
            "%p = cmp.gt (%n, %c0) : bool
    if (%p) {{
      {DEC40}
      yield ()
    }} {{
      yield ()
    }}"
        ),
        INC232,
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("168 + 232 + 232 = 632"), "{}", e[0]);
    // In a loop the count may be asked for: 240 per consumer is too many.
    let e = errors(&split(
        12,
        DEC40,
        &format!(
            "for (%c0, %n, %c1) (%i: i32) {{
      {INC240}
      yield ()
    }}"
        ),
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("40 + 240 + 240 = 520"), "{}", e[0]);
}

#[test]
fn warps_of_one_warpgroup_that_disagree_are_refused() {
    // Warps 0 and 1 give registers up, warps 2 and 3 of the same warpgroup do not.
    let e = errors(&kernel(
        8,
        &format!(
            "  %first = cmp.lt (%w, %c2) : bool
  if (%first) {{
    {DEC40}
    yield ()
  }} {{
    yield ()
  }}"
        ),
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    for part in [
        "setmaxnreg.dec[40] runs in warps 0, 1 of warpgroup 0 but not in warps 2, 3",
        "every warp of a warpgroup",
        "`setmaxnreg.dec`",
    ] {
        assert!(e[0].contains(part), "{part} missing from: {}", e[0]);
    }
    // warp_idx / 4 is the warpgroup: every warp of warpgroup 1 agrees.
    let e = errors(&kernel(
        8,
        &format!(
            "  %four = const[4] () : i32
  %group = map.div (%w, %four) : i32
  %second = cmp.eq (%group, %c1) : bool
  if (%second) {{
    {DEC40}
    yield ()
  }} {{
    {INC232}
    yield ()
  }}"
        ),
    ));
    assert!(e.is_empty(), "{e:?}");
}

#[test]
fn helpers_are_read_with_their_call_sites_warps() {
    let text = format!(
        "func @consumer() -> () {{
  {INC240}
  return ()
}}
{}",
        split(12, DEC40, "call[@consumer] ()")
    );
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("40 + 240 + 240 = 520"), "{}", e[0]);
}
