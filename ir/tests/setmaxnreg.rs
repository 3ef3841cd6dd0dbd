//! `setmaxnreg.{inc,dec}[n] @warpgroup`: the verifier takes counts that are multiples of 8 in
//! [24, 256] at warpgroup scope only; the interpreter leaves every value as it was and reports
//! a warpgroup whose warps do not all execute it.

use tilekit_ir::interp::{self, Arg, HostTensor};
use tilekit_ir::ScalarType::*;
use tilekit_ir::*;

/// Irregular values from a seed (no zeros, no constant runs).
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 4.0 + 0.03
        })
        .collect()
}

/// Eight warps (two warpgroups): each warp loads its 16-row tile of `x`, warpgroup 0 runs
/// `producer` and warpgroup 1 `consumer` (under an `if` on the warpgroup index), and each warp
/// stores its tile, plus 1, to `y`.
fn split(producer: &str, consumer: &str) -> String {
    format!(
        "kernel @k(%x: gl<f32, 2>, %y: gl<f32, 2, mut>) warps(8) {{
  %z = const[0] () : i32
  %wi = warp_idx () : i32
  %g = warpgroup_idx () : i32
  %t = load (%x, %wi, %z) : rt<f32, 16x16, row>
  %is_producer = cmp.eq (%g, %z) : bool
  if (%is_producer) {{
{producer}
    yield ()
  }} {{
{consumer}
    yield ()
  }}
  %one = fill[1.0] () : rt<f32, 16x16, row>
  %u = map.add (%t, %one) : rt<f32, 16x16, row>
  store (%y, %u, %wi, %z)
  return ()
}}
"
    )
}

fn parse(text: &str) -> Module {
    parse_module(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn verify_errors(text: &str) -> String {
    match verify(&parse(text)) {
        Ok(()) => panic!("verifies:\n{text}"),
        Err(errs) => errs.iter().map(|e| format!("{e}\n")).collect(),
    }
}

/// Runs `k` of `m` on random x (128×16); returns y and x + 1.
fn run(m: &Module, seed: u64) -> Result<(Vec<f64>, Vec<f64>), String> {
    let xv = values(128 * 16, seed);
    let x = HostTensor::new(F32, &[128, 16], &xv).unwrap();
    let mut args = vec![
        Arg::Tensor(x),
        Arg::Tensor(HostTensor::zeros(F32, &[128, 16])),
    ];
    interp::run(m, "k", [1, 1, 1], &mut args).map_err(|e| e.to_string())?;
    // x is f32 already; x + 1 rounds once, as the kernel's f32 add does.
    let want = xv.iter().map(|v| f64::from(*v as f32 + 1.0)).collect();
    Ok((args[1].tensor().unwrap().to_vec(), want))
}

const DEC: &str = "    setmaxnreg.dec[40] @warpgroup ()";
const INC: &str = "    setmaxnreg.inc[232] @warpgroup ()";

#[test]
fn a_register_split_between_warpgroups_leaves_values_as_they_were() {
    let m = parse(&split(DEC, INC));
    verify(&m).unwrap();
    for seed in 1..4 {
        let (got, want) = run(&m, seed).unwrap();
        assert_eq!(got, want, "seed {seed}");
    }
}

#[test]
fn counts_off_the_grid_or_outside_24_to_256_are_verifier_errors() {
    for ok in [24, 40, 232, 256] {
        let text = split(&format!("    setmaxnreg.dec[{ok}] @warpgroup ()"), INC);
        verify(&parse(&text)).unwrap_or_else(|e| panic!("{ok}: {e:?}"));
    }
    for bad in [0, 16, 36, 260, 264] {
        let e = verify_errors(&split(
            &format!("    setmaxnreg.dec[{bad}] @warpgroup ()"),
            INC,
        ));
        assert!(
            e.contains("register count n") && e.contains("multiple of 8 in 24..=256"),
            "{bad}: {e}"
        );
        assert!(e.contains(&bad.to_string()), "{bad}: {e}");
    }
}

#[test]
fn setmaxnreg_outside_warpgroup_scope_is_a_verifier_error() {
    for scope in ["", " @block"] {
        let e = verify_errors(&split(&format!("    setmaxnreg.dec[40]{scope} ()"), INC));
        assert!(e.contains("scope"), "{scope}: {e}");
    }
}

#[test]
fn a_warp_of_the_warpgroup_that_skips_it_is_an_error() {
    // Only warp 0 of the producer warpgroup gives its registers up: the verifier evaluates the
    // condition for each warp.
    let only_warp_0 = "    %w0 = cmp.eq (%wi, %z) : bool
    if (%w0) {
      setmaxnreg.dec[40] @warpgroup ()
      yield ()
    } {
      yield ()
    }";
    let e = verify_errors(&split(only_warp_0, INC));
    assert!(
        e.contains("runs in warps 0 of warpgroup 0 but not in warps 1, 2, 3"),
        "{e}"
    );
    // The same through a loop variable, which the verifier does not evaluate: the interpreter
    // reports the run.
    let through_loop = "    %step = const[1] () : i32
    for (%z, %step, %step) (%i: i32) {
      %wk = map.add (%wi, %i) : i32
      %w0 = cmp.eq (%wk, %z) : bool
      if (%w0) {
        setmaxnreg.dec[40] @warpgroup ()
        yield ()
      } {
        yield ()
      }
      yield ()
    }";
    let m = parse(&split(through_loop, INC));
    verify(&m).unwrap();
    let e = run(&m, 5).unwrap_err();
    assert!(
        e.contains("only 1 of the 4 warps of its warpgroup executed this collective op"),
        "{e}"
    );
}
