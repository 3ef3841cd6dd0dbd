//! Structured control flow and calls: `for`, `if`, `while`, `call`, and what each region must
//! end in (`yield`, `condition`, `return`) with which operand types.

use std::collections::HashMap;

use super::expect::OpCx;
use super::func::RegionEnd;
use super::VerifyErrorKind;
use crate::module::{Func, Module, Op, Value};
use crate::ops::OpKind;
use crate::types::{ScalarType, Type};

/// The module's functions by name, built once per verification so that resolving a call (or
/// finding a duplicate name) is one hash lookup instead of a scan of the module.
pub(super) struct FuncTable<'a> {
    pub module: &'a Module,
    /// The first function of each name.
    by_name: HashMap<&'a str, usize>,
}

impl<'a> FuncTable<'a> {
    pub(super) fn new(module: &'a Module) -> FuncTable<'a> {
        let mut by_name = HashMap::with_capacity(module.funcs.len());
        for (i, f) in module.funcs.iter().enumerate() {
            by_name.entry(f.name.as_str()).or_insert(i);
        }
        FuncTable { module, by_name }
    }

    /// The index of the first function named `name`.
    pub(super) fn first(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The function a `call[@name]` calls: an existing helper of the module, by index.
    pub(super) fn callee(&self, name: &str) -> Result<usize, String> {
        match self.first(name) {
            None => Err(format!(
                "call to unknown function @{name}: the module has no function of that name"
            )),
            Some(i) if self.module.funcs[i].is_kernel() => Err(format!(
                "call to kernel @{name}: only helper functions can be called (kernels are launched over a grid)"
            )),
            Some(i) => Ok(i),
        }
    }
}

/// What the body of `func` ends in: `return` of the helper's results, or of nothing.
pub(super) fn body_end(func: &Func) -> RegionEnd {
    let (role, operands) = if func.is_kernel() {
        ("kernels return nothing".to_string(), Vec::new())
    } else {
        let operands = func
            .results
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), format!("result {i} of @{}", func.name)))
            .collect();
        (format!("the results of @{}", func.name), operands)
    };
    RegionEnd {
        kind: OpKind::Return,
        owner: format!("the body of @{}", func.name),
        role,
        operands: Some(operands),
    }
}

/// What region `ri` of `op` (described as `owner`) must end in, for the ops with regions.
pub(super) fn region_end(func: &Func, op: &Op, ri: usize, owner: &str) -> Option<RegionEnd> {
    let types = |vals: &[Value], why: &dyn Fn(usize) -> String| -> Option<Vec<(Type, String)>> {
        vals.iter()
            .enumerate()
            .map(|(i, v)| Some((func.value_types.get(v.index())?.clone(), why(i))))
            .collect()
    };
    let end = |kind: OpKind, role: &str, operands| RegionEnd {
        kind,
        owner: owner.to_string(),
        role: role.to_string(),
        operands,
    };
    match (&op.kind, ri) {
        (OpKind::For, 0) => {
            let inits = op.operands.get(3..).unwrap_or_default();
            let operands = types(inits, &|i| format!("carried value {i} of the `for`"));
            Some(end(
                OpKind::Yield,
                "the carried values of the `for`",
                operands,
            ))
        }
        (OpKind::If, 0 | 1) => {
            let operands = types(&op.results, &|i| format!("result {i} of the `if`"));
            Some(end(OpKind::Yield, "the results of the `if`", operands))
        }
        (OpKind::While, 0) => {
            let results = types(&op.results, &|i| format!("result {i} of the `while`"));
            let operands = results.map(|rs| {
                let cond = (Type::Scalar(ScalarType::Bool), "the condition".to_string());
                std::iter::once(cond).chain(rs).collect()
            });
            let role = "a bool condition, then the results of the `while`";
            Some(end(OpKind::Condition, role, operands))
        }
        (OpKind::While, 1) => {
            let operands = types(&op.operands, &|i| {
                format!("initial value {i} of the `while`")
            });
            let role = "the values of the next iteration, typed as the `while`'s initial values";
            Some(end(OpKind::Yield, role, operands))
        }
        _ => None,
    }
}

/// `for (lo, hi, step, init…) (iv, carried…) {…} : T…` — i32 bounds; the body's arguments are
/// the i32 induction variable and the carried values; results, carried values and initial
/// values have one type each.
pub(super) fn check_for(cx: &mut OpCx<'_, '_>) {
    for (i, name) in ["lo", "hi", "step"].into_iter().enumerate() {
        let ty = cx.operand(i);
        cx.expect_i32(name, ty);
    }
    let inits = cx.operands_from(3);
    check_results_match(cx, &inits, "initial value");
    let op = cx.op;
    let args = &op.regions[0].args;
    if args.len() != inits.len() + 1 {
        cx.report(VerifyErrorKind::Arity {
            what: "arguments of the body".into(),
            expected: format!(
                "{} (the i32 induction variable, then one per initial value)",
                inits.len() + 1
            ),
            found: args.len(),
        });
        return;
    }
    if let Some(ty) = cx.value_type(args[0]) {
        cx.expect_i32("argument 0 of the body (the induction variable)", ty);
    }
    for (k, init) in inits.iter().enumerate() {
        if let Some(ty) = cx.value_type(args[k + 1]) {
            let what = format!("argument {} of the body", k + 1);
            cx.expect_type(&what, ty, init, &format!("the type of initial value {k}"));
        }
    }
}

/// `if (c) {…} {…} : T…` — a bool condition and two regions without arguments.
pub(super) fn check_if(cx: &mut OpCx<'_, '_>) {
    let c = cx.operand(0);
    cx.expect_scalar("c", c, ScalarType::Bool);
    let op = cx.op;
    for (ri, region) in op.regions.iter().enumerate() {
        if !region.args.is_empty() {
            cx.report(VerifyErrorKind::Arity {
                what: format!("arguments of region {ri}"),
                expected: "0 (the branches of an `if` take no arguments)".into(),
                found: region.args.len(),
            });
        }
    }
}

/// `while (init…) (args…) {… condition} (args…) {… yield} : T…` — the results and both
/// regions' arguments have the types of the initial values.
pub(super) fn check_while(cx: &mut OpCx<'_, '_>) {
    let inits = cx.operands_from(0);
    check_results_match(cx, &inits, "initial value");
    let op = cx.op;
    for (ri, region) in op.regions.iter().enumerate() {
        let args = &region.args;
        if args.len() != inits.len() {
            cx.report(VerifyErrorKind::Arity {
                what: format!("arguments of region {ri}"),
                expected: format!("{} (one per initial value)", inits.len()),
                found: args.len(),
            });
            continue;
        }
        for (k, init) in inits.iter().enumerate() {
            if let Some(ty) = cx.value_type(args[k]) {
                let what = format!("argument {k} of region {ri}");
                cx.expect_type(&what, ty, init, &format!("the type of initial value {k}"));
            }
        }
    }
}

/// One result per value of `expected`, of its type.
fn check_results_match(cx: &mut OpCx<'_, '_>, expected: &[&Type], each: &str) {
    if cx.results.len() != expected.len() {
        cx.report(VerifyErrorKind::Arity {
            what: "results".into(),
            expected: format!("{} (one per {each})", expected.len()),
            found: cx.results.len(),
        });
        return;
    }
    for (i, ty) in expected.iter().enumerate() {
        let found = cx.result(i);
        cx.expect_type(
            &format!("result {i}"),
            found,
            ty,
            &format!("the type of {each} {i}"),
        );
    }
}

/// `call[@f] (args…) : T…` — the arguments have the callee's parameter types and the results
/// its result types. (Whether @f exists and is a helper is checked with the op's placement.)
pub(super) fn check_call(cx: &mut OpCx<'_, '_>, name: &str) {
    let Ok(index) = cx.funcs.callee(name) else {
        return;
    };
    let callee = &cx.funcs.module.funcs[index];
    if cx.operands.len() != callee.params.len() {
        cx.report(VerifyErrorKind::Arity {
            what: "arguments".into(),
            expected: format!("{} (the parameters of @{name})", callee.params.len()),
            found: cx.operands.len(),
        });
    } else {
        for (i, &p) in callee.params.iter().enumerate() {
            if let Some(param) = callee.value_types.get(p.index()) {
                let found = cx.operand(i);
                let why = format!("parameter {i} of @{name}");
                cx.expect_type(&format!("argument {i}"), found, param, &why);
            }
        }
    }
    if cx.results.len() != callee.results.len() {
        cx.report(VerifyErrorKind::Arity {
            what: "results".into(),
            expected: format!("{} (the results of @{name})", callee.results.len()),
            found: cx.results.len(),
        });
    } else {
        for (i, ty) in callee.results.iter().enumerate() {
            let found = cx.result(i);
            let why = format!("result {i} of @{name}");
            cx.expect_type(&format!("result {i}"), found, ty, &why);
        }
    }
}
