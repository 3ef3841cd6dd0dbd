//! Deeply nested modules: one nesting limit, [`MAX_NESTING`], shared by the parser and the
//! verifier, is an error when exceeded (never a stack overflow); printing, walking and dropping
//! work at any depth. Every test runs on an ordinary test thread (2 MiB of stack).

use tilekit_ir::interp::{self, Arg, HostTensor};
use tilekit_ir::ScalarType::*;
use tilekit_ir::{
    parse_module, print_module, verify, BinaryFn, Dim3, Func, FuncBuilder, Module, Op, OpKind,
    Region, Scope, Type, VerifyErrorKind, MAX_NESTING,
};

/// A kernel whose body holds `ifs` nested `if`s on a true condition; the innermost stores 1.0 at
/// element `block_idx.x` of its argument. Its deepest region is at level `ifs + 1`. Built op by
/// op, without recursion, as a program generating IR might.
fn nested_ifs(ifs: usize) -> Module {
    let mut b = FuncBuilder::kernel("deep", 1);
    let x = b.param("x", Type::global(F32, 1, true));
    let c = b.const_bool(true);
    let i = b.block_idx(Dim3::X);
    let v = b.const_f32(1.0);
    let mut f: Func = b.finish();
    let yield_op = || Op::new(OpKind::Yield, Scope::Warp, vec![], vec![]);
    // The innermost region also defines a value, so its text has a type at the deepest level.
    let i2 = f.new_value(Type::scalar(I32), None);
    let mut inner = vec![
        Op::new(
            OpKind::Binary(BinaryFn::Add),
            Scope::Warp,
            vec![i, i],
            vec![i2],
        ),
        Op::new(OpKind::Store, Scope::Warp, vec![x, v, i], vec![]),
        yield_op(),
    ];
    for level in 0..ifs {
        let mut op = Op::new(OpKind::If, Scope::Warp, vec![c], vec![]);
        op.regions = vec![
            Region {
                args: vec![],
                ops: inner,
            },
            Region {
                args: vec![],
                ops: vec![yield_op()],
            },
        ];
        let last = if level + 1 == ifs {
            Op::new(OpKind::Return, Scope::Warp, vec![], vec![])
        } else {
            yield_op()
        };
        inner = vec![op, last];
    }
    // The builder's body: the three constants and `return`; the nest goes before the return.
    f.body.ops.pop();
    f.body.ops.extend(inner);
    let mut m = Module::new();
    m.push(f);
    m
}

/// The message of the one nesting error of a module that must not verify.
fn nesting_error(m: &Module) -> String {
    let errors = verify(m).expect_err("a module nested too deep must not verify");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        matches!(errors[0].kind, VerifyErrorKind::Structure { .. }),
        "{}",
        errors[0]
    );
    errors[0].to_string()
}

#[test]
fn a_module_at_the_nesting_limit_verifies_prints_parses_back_and_runs() {
    let m = nested_ifs(MAX_NESTING - 1);
    assert_eq!(verify(&m), Ok(()));
    let text = print_module(&m);
    let back = parse_module(&text).expect("the printed text parses back");
    assert_eq!(print_module(&back), text);

    let x = HostTensor::new(F32, &[3], &[5.0, 6.0, 7.0]).unwrap();
    let mut args = vec![Arg::Tensor(x)];
    interp::run(&back, "deep", [2, 1, 1], &mut args).unwrap();
    assert_eq!(args[0].tensor().unwrap().to_vec(), vec![1.0, 1.0, 7.0]);
}

#[test]
fn a_module_one_level_past_the_limit_is_rejected_by_the_verifier_and_its_text_by_the_parser() {
    let m = nested_ifs(MAX_NESTING);
    let message = nesting_error(&m);
    assert!(
        message.contains(&format!("regions nest at most {MAX_NESTING} deep")),
        "{message}"
    );
    // The op whose regions go too deep is the innermost `if`, at level MAX_NESTING: its path has
    // one op index per level.
    let path_len = message
        .split(", op ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .map(|path| path.split('.').count())
        .unwrap_or(0);
    assert_eq!(path_len, 2 * MAX_NESTING - 1, "{message}");

    let text = print_module(&m);
    let e = parse_module(&text).expect_err("text nested too deep must not parse");
    assert!(
        e.message
            .contains(&format!("nesting deeper than {MAX_NESTING} levels")),
        "{e}"
    );
    // The kernel header is line 1 and the body's four ops lines 2 to 5; each `if` opens one more
    // line, so the region that goes too deep opens on the line of the innermost `if`.
    assert_eq!(e.line as usize, 4 + MAX_NESTING, "{e}");
    assert!(interp::run(&m, "deep", [1, 1, 1], &mut []).is_err());
}

#[test]
fn verifying_thousands_of_nested_ifs_is_an_error_not_a_stack_overflow() {
    for ifs in [2_000, 3_000] {
        let m = nested_ifs(ifs);
        let message = nesting_error(&m);
        assert!(message.contains(&MAX_NESTING.to_string()), "{message}");
        let e = interp::run(&m, "deep", [1, 1, 1], &mut []).unwrap_err();
        assert!(e.to_string().contains("regions nest at most"), "{e}");
    }
}

#[test]
fn a_20000_deep_module_walks_and_drops_without_overflow() {
    let depth = 20_000;
    let m = nested_ifs(depth);
    let mut ifs = 0;
    m.funcs[0].walk(|op| ifs += usize::from(op.kind == OpKind::If));
    assert_eq!(ifs, depth);
    drop(m);
}

#[test]
fn a_clone_prints_as_the_original_and_clones_20000_levels_without_overflow() {
    let m = nested_ifs(MAX_NESTING - 1);
    let copy = m.clone();
    assert_eq!(print_module(&copy), print_module(&m));
    assert_eq!(verify(&copy), Ok(()));

    let depth = 20_000;
    let deep = nested_ifs(depth);
    let copy = deep.clone();
    drop(deep);
    let (mut ifs, mut stores) = (0, 0);
    copy.funcs[0].walk(|op| {
        ifs += usize::from(op.kind == OpKind::If);
        stores += usize::from(op.kind == OpKind::Store);
    });
    assert_eq!((ifs, stores), (depth, 1));
}

#[test]
fn a_3000_deep_module_prints_and_its_text_is_rejected_by_the_parser() {
    // Printing is iterative like walking; 3,000 levels (not 20,000) keep the indented text to a
    // few megabytes.
    let depth = 3_000;
    let m = nested_ifs(depth);
    let text = print_module(&m);
    assert_eq!(text.matches("if (").count(), depth);
    assert!(text.contains(&format!("\n{}store (", "  ".repeat(depth + 1))));
    let e = parse_module(&text).unwrap_err();
    assert!(e.message.contains("nesting deeper than"), "{e}");
}

#[test]
fn deep_text_is_rejected_at_the_line_that_goes_too_deep() {
    let mut src = String::from("kernel @k() warps(1) {\n");
    for _ in 0..20_000 {
        src.push_str("if () {\n");
    }
    let e = parse_module(&src).unwrap_err();
    assert_eq!(e.line as usize, MAX_NESTING + 1, "{e}");
}

#[test]
fn parsing_verifying_and_running_at_the_limit_fit_in_half_a_test_threads_stack() {
    // Measured: at MAX_NESTING, parsing, verifying and running need under 1 MiB of stack in an
    // unoptimized build (opt-level 0) and under 512 KiB at the workspace's opt-levels; a test or
    // spawned thread has 2 MiB.
    let m = nested_ifs(MAX_NESTING - 1);
    let text = print_module(&m);
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let back = parse_module(&text).unwrap();
            verify(&back).unwrap();
            let x = HostTensor::new(F32, &[3], &[5.0, 6.0, 7.0]).unwrap();
            let mut args = vec![Arg::Tensor(x)];
            interp::run(&back, "deep", [1, 1, 1], &mut args).unwrap();
            assert_eq!(args[0].tensor().unwrap().to_vec(), vec![1.0, 6.0, 7.0]);
        })
        .unwrap()
        .join()
        .unwrap();
}
