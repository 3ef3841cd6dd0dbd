//! ptxas's performance advisories fail the compile: a wgmma kernel whose accumulator a non-wgmma
//! instruction defines inside the pipeline stage (C7515, serialized wgmma) and a `setmaxnreg`
//! kernel whose entry does not declare what ptxas needs (C7508, `setmaxnreg` ignored) are
//! refused naming the kernel, the target and ptxas's text, unless the author accepts them
//! (`TILEKIT_ALLOW_PTXAS_ADVISORIES`, or the policy as an argument); the cache keeps code
//! compiled under the opt-out apart.

use tilekit_codegen::ptxas::{self, AdvisoryPolicy, SpillPolicy};
use tilekit_codegen::{cache, compile, compile_with_advisories, CodegenError, Facts, Target};

/// One warpgroup accumulates `A·B` over `n` steps with `mma_async`, but only on steps after the
/// first: the `if` yields the accumulator unchanged on the other path, so its registers are
/// defined by a move between the wgmma's issue and its wait.
const CONDITIONAL_MMA: &str =
    "kernel @k(%x: gl<bf16, 2>, %w: gl<bf16, 2>, %y: gl<f32, 2, mut>, %n: i32) warps(4) {
  %sa = alloc_shared @block () : st<bf16, 64x16, swz32>
  %sb = alloc_shared @block () : st<bf16, 16x16, swz32>
  %z = const[0] () : i32
  %one = const[1] () : i32
  %wi = warp_idx () : i32
  copy @block (%sa, %x, %z, %z)
  copy @block (%sb, %w, %z, %z)
  barrier @block ()
  %acc0 = fill[0.0] () : rt<f32, 16x16, row>
  %acc = for (%z, %n, %one, %acc0) (%i: i32, %c: rt<f32, 16x16, row>) {
    %t = cmp.gt (%i, %one) : bool
    %d = if (%t) {
      %q = mma_async.ab @warpgroup (%sa, %sb, %c) : rt<f32, 16x16, row>
      yield (%q)
    } {
      yield (%c)
    } : rt<f32, 16x16, row>
    mma_commit @warpgroup ()
    mma_wait[1] @warpgroup ()
    yield (%d)
  } : rt<f32, 16x16, row>
  %done = mma_wait[0] @warpgroup (%acc) : rt<f32, 16x16, row>
  store (%y, %done, %wi, %z)
  return ()
}
";

/// Two warpgroups: the first gives registers up, the second takes them.
const REGISTER_SPLIT: &str = "kernel @split(%x: gl<f32, 2>, %y: gl<f32, 2, mut>) warps(8) {
  %z = const[0] () : i32
  %wi = warp_idx () : i32
  %g = warpgroup_idx () : i32
  %t = load (%x, %wi, %z) : rt<f32, 16x16, row>
  %is_producer = cmp.eq (%g, %z) : bool
  if (%is_producer) {
    setmaxnreg.dec[40] @warpgroup ()
    yield ()
  } {
    setmaxnreg.inc[232] @warpgroup ()
    yield ()
  }
  store (%y, %t, %wi, %z)
  return ()
}
";

fn module(text: &str) -> tilekit_ir::Module {
    tilekit_ir::parse_module(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The environment is read by every compile, so the checks that set it are one test.
#[test]
fn serialized_wgmma_fails_the_compile_unless_accepted() {
    let m = module(CONDITIONAL_MMA);
    let e = compile(&m, "k", Target::Sm90a).unwrap_err();
    match &e {
        CodegenError::PerformanceAdvisory {
            kernel,
            target,
            advisories,
        } => {
            assert_eq!((kernel.as_str(), *target), ("k", Target::Sm90a));
            assert_eq!(advisories.len(), 1, "{advisories:?}");
            assert!(
                advisories[0].starts_with("(C7515) Potential Performance Loss: wgmma.mma_async instructions are serialized"),
                "{advisories:?}"
            );
        }
        other => panic!("expected PerformanceAdvisory, got {other:?}"),
    }
    let text = e.to_string();
    for part in [
        "kernel `k` on sm_90a",
        "(C7515)",
        "non wgmma instructions defining accumulator registers",
        "TILEKIT_ALLOW_PTXAS_ADVISORIES=1",
    ] {
        assert!(text.contains(part), "{part} missing from: {text}");
    }
    // sm_80 has no wgmma: the same kernel is synchronous mma there, and compiles.
    compile(&m, "k", Target::Sm80).unwrap();

    // Accepted explicitly, the PTX comes back with the serialization still in it.
    let facts = Facts::general();
    let c = compile_with_advisories(&m, "k", Target::Sm90a, &facts, AdvisoryPolicy::Allow).unwrap();
    let log = ptxas::assemble(c.ptx(), Target::Sm90a).unwrap().log;
    assert_eq!(ptxas::performance_advisories(&log).len(), 1, "{log}");

    // Accepted through the environment; the cache key says so, so code compiled that way is
    // never taken by a compile that refuses it.
    let refusing_key = cache::key(&m, "k", Target::Sm90a);
    for (value, policy) in [
        ("1", AdvisoryPolicy::Allow),
        ("yes", AdvisoryPolicy::Allow),
        ("0", AdvisoryPolicy::Refuse),
        ("", AdvisoryPolicy::Refuse),
    ] {
        std::env::set_var(AdvisoryPolicy::ENV, value);
        assert_eq!(AdvisoryPolicy::from_env(), policy, "{value:?}");
    }
    std::env::set_var(AdvisoryPolicy::ENV, "1");
    let accepted = compile(&m, "k", Target::Sm90a);
    let accepting_key = cache::key(&m, "k", Target::Sm90a);
    std::env::remove_var(AdvisoryPolicy::ENV);
    assert_eq!(accepted.unwrap().ptx(), c.ptx());
    assert_ne!(accepting_key, refusing_key);
    assert_eq!(cache::key(&m, "k", Target::Sm90a), refusing_key);
}

/// ptxas ignores `setmaxnreg` without `.minnctapersm` beside `.maxntid` (C7508): the PTX the
/// compile emits declares it; the same PTX without the declaration is refused by the check.
#[test]
fn ignored_setmaxnreg_is_refused_by_the_ptxas_check() {
    let m = module(REGISTER_SPLIT);
    let c = compile(&m, "split", Target::Sm90a).unwrap();
    let check = |ptx: &str, policy| {
        ptxas::check_compiled(ptx, Target::Sm90a, "split", SpillPolicy::Refuse, policy)
    };
    assert!(check(c.ptx(), AdvisoryPolicy::Refuse).unwrap().is_some());
    let undeclared: String = c
        .ptx()
        .lines()
        .filter(|l| !l.contains(".minnctapersm"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(c.ptx().contains(".minnctapersm 1"), "{}", c.ptx());
    let e = check(&undeclared, AdvisoryPolicy::Refuse).unwrap_err();
    let text = e.to_string();
    for part in ["kernel `split` on sm_90a", "(C7508)", "setmaxnreg"] {
        assert!(text.contains(part), "{part} missing from: {text}");
    }
    assert!(check(&undeclared, AdvisoryPolicy::Allow).unwrap().is_some());
}
