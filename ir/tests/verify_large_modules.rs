//! The verifier on modules with very many functions: names and calls are resolved through a
//! table, so 100k functions verify in well under a second in a release build (the time is not
//! asserted; `cargo test --release -p tilekit-ir --test verify_large_modules -- --nocapture`
//! prints it). These tests check that the answers stay right at that size.

use std::time::Instant;

use tilekit_ir::ScalarType::*;
use tilekit_ir::{rt, verify, Func, FuncBuilder, Module, Scope, Swizzle, Type, VerifyErrorKind};

const FUNCS: usize = 100_000;

/// CPU time this thread has used, in ticks of 10 ms (Linux: /proc/thread-self/stat), so that the
/// printed time means something on a busy machine.
fn thread_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // The fields after the command name (which ends with the last ')'): utime is the 12th and
    // stime the 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Helper `h{i}` returns its i32 argument plus one; for i > 0 through a call of `h{i-1}`, so the
/// helpers form one call chain as long as the module.
fn helper(i: usize) -> Func {
    let mut b = FuncBuilder::helper(format!("h{i}"), vec![Type::scalar(I32)]);
    let x = b.param("x", Type::scalar(I32));
    let y = if i == 0 {
        x
    } else {
        b.call(&format!("h{}", i - 1), &[x], vec![Type::scalar(I32)])[0]
    };
    let one = b.const_i32(1);
    let r = b.add(y, one);
    b.ret(&[r]);
    b.finish()
}

/// Kernel `k{i}` calls helper `h{callee}` once.
fn kernel(i: usize, callee: usize) -> Func {
    let mut b = FuncBuilder::kernel(format!("k{i}"), 1);
    let x = b.block_idx(tilekit_ir::Dim3::X);
    b.call(&format!("h{callee}"), &[x], vec![Type::scalar(I32)]);
    b.finish()
}

/// Half helpers in one long call chain, half kernels calling helpers all along the chain.
fn large_module() -> Module {
    let half = FUNCS / 2;
    let mut m = Module::new();
    for i in 0..half {
        m.push(helper(i));
    }
    for i in 0..half {
        m.push(kernel(i, (i * 7919) % half));
    }
    m
}

#[test]
fn a_module_of_100k_functions_verifies() {
    let m = large_module();
    let (start, cpu) = (Instant::now(), thread_cpu_ticks());
    let result = verify(&m);
    let elapsed = start.elapsed();
    let cpu = thread_cpu_ticks().zip(cpu).map(|(b, a)| (b - a) * 10);
    eprintln!(
        "verified {} functions in {elapsed:?} ({} ms of this thread's CPU time)",
        m.funcs.len(),
        cpu.map_or("?".to_string(), |ms| ms.to_string())
    );
    assert_eq!(result, Ok(()));
}

#[test]
fn a_duplicate_name_among_100k_functions_is_reported_with_both_positions() {
    let mut m = large_module();
    m.push(helper(FUNCS / 4));
    let errors = verify(&m).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(e.func, format!("h{}", FUNCS / 4));
    let VerifyErrorKind::Structure { message } = &e.kind else {
        panic!("expected a structure error, got {e}");
    };
    assert!(
        message.contains(&format!(
            "function {} of the module has the name of function {}",
            FUNCS,
            FUNCS / 4
        )),
        "{message}"
    );
}

#[test]
fn calls_to_missing_functions_and_kernels_are_reported_among_100k_functions() {
    let mut m = large_module();
    m.push(kernel(FUNCS, FUNCS)); // calls h100000, which does not exist
    let mut b = FuncBuilder::kernel("calls_a_kernel", 1);
    let x = b.block_idx(tilekit_ir::Dim3::X);
    b.call("k3", &[x], vec![]);
    m.push(b.finish());
    let errors = verify(&m).unwrap_err();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 2, "{text:#?}");
    assert!(
        text[0].contains(&format!("call to unknown function @h{FUNCS}")),
        "{text:#?}"
    );
    assert!(text[1].contains("call to kernel @k3"), "{text:#?}");
}

#[test]
fn a_warpgroup_op_at_the_end_of_a_long_call_chain_reaches_the_kernel_at_its_start() {
    // h0 runs a warpgroup op; h{i} calls h{i-1}; a kernel of 1 warp calls the last helper. The
    // need for a multiple of 4 warps travels up the whole chain.
    let n = 20_000;
    let st = Type::shared_tile(F32, 64, 16, Swizzle::None);
    let mut m = Module::new();
    for i in 0..n {
        let mut b = FuncBuilder::helper(format!("h{i}"), vec![]);
        let s = b.param("s", st.clone());
        if i == 0 {
            b.load_at(Scope::Warpgroup, rt(F32, 16, 16), s, &[]);
        } else {
            b.call(&format!("h{}", i - 1), &[s], vec![]);
        }
        b.ret(&[]);
        m.push(b.finish());
    }
    let mut b = FuncBuilder::kernel("k", 1);
    let s = b.alloc_shared(st);
    b.call(&format!("h{}", n - 1), &[s], vec![]);
    m.push(b.finish());
    let errors = verify(&m).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let text = errors[0].to_string();
    assert!(
        text.contains(&format!(
            "@h{} (called here) runs warpgroup-scope ops",
            n - 1
        )),
        "{text}"
    );
}

#[test]
fn a_long_recursive_chain_is_reported_once_per_back_edge_with_its_ends() {
    // h{i} calls h{i+1}; the last calls h0 back: one cycle through 20k helpers.
    let n = 20_000;
    let mut m = Module::new();
    for i in 0..n {
        let mut b = FuncBuilder::helper(format!("h{i}"), vec![]);
        b.call(&format!("h{}", (i + 1) % n), &[], vec![]);
        b.ret(&[]);
        m.push(b.finish());
    }
    let errors = verify(&m).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let text = errors[0].to_string();
    assert!(
        text.contains("recursive call: @h0 → @h1 →")
            && text.contains(&format!("@h{} → @h0", n - 1)),
        "{text}"
    );
    assert!(text.contains("more"), "{text}");
    assert!(text.len() < 1000, "{text}");
}
