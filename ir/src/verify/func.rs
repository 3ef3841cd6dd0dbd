//! Checks of one function: its signature, SSA scoping (every value defined once, before its uses,
//! in the same region or an enclosing one), regions and their terminators, and for every op its
//! scope and arity before its family's own rules.

use std::fmt;

use super::control::FuncTable;
use super::expect::{mismatch, OpCx};
use super::{
    arity, atomic, control, copy, creation, elementwise, gather, memory, mma, rowcol, scalar, sort,
    sync, table, types,
};
use super::{VerifyError, VerifyErrorKind};
use crate::module::{Func, Loc, Op, Region, Value, MAX_NESTING};
use crate::ops::{OpKind, Scope};
use crate::types::Type;

/// Where something is in a function, for errors reported later (by the call-graph checks).
#[derive(Clone, Debug)]
pub(super) struct Site {
    pub path: String,
    pub op: String,
    pub loc: Loc,
}

/// A call of a helper: which function of the module, and where.
#[derive(Clone, Debug)]
pub(super) struct CallSite {
    pub callee: usize,
    pub site: Site,
}

/// What the module-level checks need to know about a function.
#[derive(Clone, Debug, Default)]
pub(super) struct FuncSummary {
    /// Calls of existing helpers, in program order.
    pub calls: Vec<CallSite>,
    /// The first op at warpgroup scope, if any.
    pub warpgroup_op: Option<Site>,
}

/// What a region must end in, and with which operand types.
#[derive(Clone, Debug)]
pub(super) struct RegionEnd {
    /// `Yield`, `Condition` or `Return`.
    pub kind: OpKind,
    /// The region, for errors: `region 0 of `for` (op 3)`, `the body of @f`.
    pub owner: String,
    /// What the terminator's operands are, for errors: `the carried values of …`.
    pub role: String,
    /// The expected operand types, each with why it is expected; `None` when they cannot be
    /// known (the owner's own operands are missing from the value table).
    pub operands: Option<Vec<(Type, String)>>,
}

/// Which definition introduced a value.
#[derive(Clone, Debug)]
enum DefSite {
    Param(usize),
    Result(String),
    RegionArg {
        path: String,
        region: usize,
        index: usize,
    },
}

impl fmt::Display for DefSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefSite::Param(i) => write!(f, "as parameter {i}"),
            DefSite::Result(path) => write!(f, "by op {path}"),
            DefSite::RegionArg {
                path,
                region,
                index,
            } => write!(f, "as argument {index} of region {region} of op {path}"),
        }
    }
}

/// Where an error goes: the function as a whole, or an op at a path.
#[derive(Clone, Copy)]
enum At<'o> {
    Func,
    Op(&'o str, &'o Op),
}

/// How a value is written in errors: `%name` when it has one, `%index` otherwise.
pub(super) fn value_text(func: &Func, v: Value) -> String {
    match func.value_name(v) {
        Some(name) => format!("%{name}"),
        None => format!("%{}", v.0),
    }
}

/// The path of op `i` of the region at `prefix` (the body's prefix is empty).
fn child_path(prefix: &str, i: usize) -> String {
    if prefix.is_empty() {
        i.to_string()
    } else {
        format!("{prefix}.{i}")
    }
}

/// Checks `func`, appending its errors; returns what the module-level checks need.
pub(super) fn check<'a>(
    funcs: &'a FuncTable<'a>,
    func: &'a Func,
    errors: &mut Vec<VerifyError>,
) -> FuncSummary {
    let n = func.value_types.len();
    let mut walker = Walker {
        funcs,
        func,
        errors,
        visible: vec![false; n],
        defined: vec![false; n],
        ill_typed: vec![false; n],
        def_sites: None,
        summary: FuncSummary::default(),
        depth: 1,
    };
    walker.check_signature();
    let end = control::body_end(func);
    walker.walk_region(&func.body, "", None, Some(&end), At::Func);
    walker.summary
}

/// The first definition of every value, in the order the walker visits definitions.
fn def_sites(func: &Func) -> Vec<Option<DefSite>> {
    fn record(sites: &mut [Option<DefSite>], v: Value, site: DefSite) {
        if let Some(slot @ None) = sites.get_mut(v.index()) {
            *slot = Some(site);
        }
    }
    fn go(region: &Region, prefix: &str, depth: usize, sites: &mut [Option<DefSite>]) {
        for (i, op) in region.ops.iter().enumerate() {
            let path = child_path(prefix, i);
            for &r in &op.results {
                record(sites, r, DefSite::Result(path.clone()));
            }
            for (ri, sub) in op.regions.iter().enumerate() {
                for (index, &a) in sub.args.iter().enumerate() {
                    let site = DefSite::RegionArg {
                        path: path.clone(),
                        region: ri,
                        index,
                    };
                    record(sites, a, site);
                }
                // Regions past the nesting limit are reported, not walked (see `check_op`).
                if depth < MAX_NESTING {
                    go(sub, &format!("{path}.{ri}"), depth + 1, sites);
                }
            }
        }
    }
    let mut sites = vec![None; func.value_types.len()];
    for (i, &p) in func.params.iter().enumerate() {
        record(&mut sites, p, DefSite::Param(i));
    }
    go(&func.body, "", 1, &mut sites);
    sites
}

struct Walker<'a, 'e> {
    funcs: &'a FuncTable<'a>,
    func: &'a Func,
    errors: &'e mut Vec<VerifyError>,
    /// Values defined before the current op in its region or an enclosing one.
    visible: Vec<bool>,
    /// Values whose definition has been seen (to catch a second one).
    defined: Vec<bool>,
    /// Values whose type is ill formed (already reported; their uses are not checked further).
    ill_typed: Vec<bool>,
    /// Where each value is defined, computed when an error first needs it (most functions
    /// have no error, and the paths cost an allocation per op).
    def_sites: Option<Vec<Option<DefSite>>>,
    summary: FuncSummary,
    /// How many regions enclose the ops being checked (the body is 1); at most [`MAX_NESTING`],
    /// which keeps the walk's recursion within a fixed stack depth.
    depth: usize,
}

impl<'a> Walker<'a, '_> {
    fn report(&mut self, at: At<'_>, kind: VerifyErrorKind) {
        self.errors.push(match at {
            At::Func => VerifyError::at_func(self.func, kind),
            At::Op(path, op) => VerifyError {
                func: self.func.name.clone(),
                path: path.to_string(),
                op: op.kind.name(),
                loc: op.loc,
                kind,
            },
        });
    }

    fn structure(&mut self, at: At<'_>, message: String) {
        self.report(at, VerifyErrorKind::Structure { message });
    }

    /// Kernel warps, parameter and result types; defines the parameters.
    fn check_signature(&mut self) {
        let func = self.func;
        if let Some(warps) = func.warps() {
            if !(1..=32).contains(&warps) {
                self.report(
                    At::Func,
                    VerifyErrorKind::Attribute {
                        what: "warps".into(),
                        expected: "1..=32 warps per block".into(),
                        found: warps.to_string(),
                    },
                );
            }
            if !func.results.is_empty() {
                self.report(
                    At::Func,
                    VerifyErrorKind::Arity {
                        what: "results of a kernel".into(),
                        expected: "0 (kernels return nothing)".into(),
                        found: func.results.len(),
                    },
                );
            }
        }
        for (i, ty) in func.results.iter().enumerate() {
            if let Some(kind) = types::problem(ty, &format!("result type {i}")) {
                self.report(At::Func, kind);
            }
        }
        for (i, &p) in func.params.iter().enumerate() {
            let what = || format!("parameter {i} {}", value_text(func, p));
            let Some(ty) = self.declare(p, At::Func, what, &[]) else {
                continue;
            };
            self.visible[p.index()] = true;
            if func.is_kernel() && !matches!(ty, Type::Global { .. } | Type::Scalar(_)) {
                self.report(
                    At::Func,
                    VerifyErrorKind::Type {
                        what: format!("kernel {}", what()),
                        expected:
                            "a global view (gl) or a scalar: kernels take tensors and scalars"
                                .into(),
                        found: ty.to_string(),
                    },
                );
            }
        }
    }

    /// Records the definition of `v` (named `what` in errors): it must be in the value table,
    /// defined once, and of a well-formed type. Returns its type when all three hold.
    ///
    /// An ill-formed type among `reported` (the types of the op's ill-typed operands) has been
    /// reported at the operand's definition: a result or region argument of that type is the
    /// same mistake carried along, and is not reported again.
    fn declare(
        &mut self,
        v: Value,
        at: At<'_>,
        what: impl Fn() -> String,
        reported: &[&Type],
    ) -> Option<&'a Type> {
        let func = self.func;
        let Some(ty) = func.value_types.get(v.index()) else {
            self.structure(
                at,
                format!(
                    "{} is %{}, which is not in the function's value table ({} values)",
                    what(),
                    v.0,
                    func.value_types.len()
                ),
            );
            return None;
        };
        if self.defined[v.index()] {
            let first = self.def_sites()[v.index()]
                .as_ref()
                .map_or_else(String::new, |s| format!(" {s}"));
            self.structure(
                at,
                format!(
                    "{} redefines a value already defined{first}; each value is defined once",
                    what()
                ),
            );
            return None;
        }
        self.defined[v.index()] = true;
        // The description is built only for an error (this runs for every value).
        if let Some(kind) = types::problem(ty, "").and_then(|_| types::problem(ty, &what())) {
            if !reported.contains(&ty) {
                self.report(at, kind);
            }
            self.ill_typed[v.index()] = true;
            return None;
        }
        Some(ty)
    }

    /// Where every value of the function is defined.
    fn def_sites(&mut self) -> &[Option<DefSite>] {
        let func = self.func;
        self.def_sites.get_or_insert_with(|| def_sites(func))
    }

    /// Why `v` (in the value table) is not visible at a use.
    fn undefined_text(&mut self, v: Value) -> String {
        let name = value_text(self.func, v);
        match &self.def_sites()[v.index()] {
            None => format!("{name} (not defined anywhere in @{})", self.func.name),
            Some(site) => format!(
                "{name} (defined {site}, which does not come before this use in the same or an enclosing region)"
            ),
        }
    }

    /// Walks the ops of `region`; `inside` describes it (None for the function body) and `end`
    /// says what it must end in.
    fn walk_region(
        &mut self,
        region: &'a Region,
        prefix: &str,
        inside: Option<&str>,
        end: Option<&RegionEnd>,
        owner: At<'_>,
    ) {
        let mut defined_here = Vec::new();
        let count = region.ops.len();
        for (i, op) in region.ops.iter().enumerate() {
            let path = child_path(prefix, i);
            if op.kind.is_terminator() && i + 1 < count {
                self.report(
                    At::Op(&path, op),
                    VerifyErrorKind::Terminator {
                        expected: format!("`{}` only as the last op of its region", op.kind.name()),
                        found: format!("`{}` at position {i} of {count} ops", op.kind.name()),
                    },
                );
            }
            self.check_op(op, &path, inside);
            for &r in &op.results {
                if let Some(slot) = self.visible.get_mut(r.index()) {
                    *slot = true;
                    defined_here.push(r);
                }
            }
        }
        if let Some(end) = end {
            self.check_region_end(region, prefix, end, owner);
        }
        for v in defined_here {
            self.visible[v.index()] = false;
        }
    }

    /// Checks that `region` ends in `end.kind` with operands of the expected types.
    fn check_region_end(&mut self, region: &Region, prefix: &str, end: &RegionEnd, owner: At<'_>) {
        let term = end.kind.name();
        let Some(last) = region.ops.last() else {
            self.report(
                owner,
                VerifyErrorKind::Terminator {
                    expected: format!("`{term}` as the last op of {}", end.owner),
                    found: "an empty region".into(),
                },
            );
            return;
        };
        let path = child_path(prefix, region.ops.len() - 1);
        if last.kind != end.kind {
            let (at, expected) = if last.kind.is_terminator() {
                (
                    At::Op(&path, last),
                    format!("`{term}` to end {}", end.owner),
                )
            } else {
                (owner, format!("`{term}` as the last op of {}", end.owner))
            };
            self.report(
                at,
                VerifyErrorKind::Terminator {
                    expected,
                    found: format!("`{}` as the last op", last.kind.name()),
                },
            );
            return;
        }
        // A terminator with too few operands for its kind has been reported as such.
        if !arity::signature(&last.kind)
            .operands
            .accepts(last.operands.len())
        {
            return;
        }
        let (Some(expected), Some(found)) = (&end.operands, self.operand_types(last)) else {
            return;
        };
        let at = At::Op(&path, last);
        if found.len() != expected.len() {
            self.report(
                at,
                VerifyErrorKind::Arity {
                    what: format!("operands of `{term}`"),
                    expected: format!("{} ({})", expected.len(), end.role),
                    found: found.len(),
                },
            );
            return;
        }
        for (i, (found, (ty, why))) in found.iter().zip(expected).enumerate() {
            if *found != ty {
                let kind = mismatch(&format!("operand {i}"), ty, found, why);
                self.report(at, kind);
            }
        }
    }

    /// The types of `op`'s operands, when all are in the value table and well formed.
    fn operand_types(&self, op: &Op) -> Option<Vec<&'a Type>> {
        op.operands
            .iter()
            .map(|v| {
                let ty = self.func.value_types.get(v.index())?;
                (!self.ill_typed[v.index()]).then_some(ty)
            })
            .collect()
    }

    /// Checks one op and walks its regions.
    ///
    /// Regions recurse through here: the op's own checks run in a function of their own
    /// ([`Walker::check_op_itself`]), so that each level of nesting keeps only this small frame
    /// on the stack (see [`MAX_NESTING`]).
    fn check_op(&mut self, op: &'a Op, path: &str, inside: Option<&str>) {
        let ill_operand_types = self.check_op_itself(op, path, inside);
        if !op.regions.is_empty() {
            self.walk_regions(op, path, &ill_operand_types);
        }
    }

    /// The checks of one op apart from its regions' contents; returns the ill-formed types of its
    /// operands (already reported).
    #[inline(never)]
    fn check_op_itself(&mut self, op: &'a Op, path: &str, inside: Option<&str>) -> Vec<&'a Type> {
        let at = At::Op(path, op);
        let mut resolved = true;

        let mut operand_types = Vec::with_capacity(op.operands.len());
        let mut ill_operand_types = Vec::new();
        for &v in &op.operands {
            match self.func.value_types.get(v.index()) {
                None => {
                    let value = format!(
                        "%{} (the function has only {} values)",
                        v.0,
                        self.func.value_types.len()
                    );
                    self.report(at, VerifyErrorKind::Undefined { value });
                    resolved = false;
                }
                Some(ty) => {
                    if !self.visible[v.index()] {
                        let value = self.undefined_text(v);
                        self.report(at, VerifyErrorKind::Undefined { value });
                    }
                    if self.ill_typed[v.index()] {
                        resolved = false;
                        ill_operand_types.push(ty);
                    }
                    operand_types.push(ty);
                }
            }
        }

        let mut result_types = Vec::with_capacity(op.results.len());
        for (i, &r) in op.results.iter().enumerate() {
            let func = self.func;
            let what = || format!("result {i} {}", value_text(func, r));
            match self.declare(r, at, what, &ill_operand_types) {
                Some(ty) => result_types.push(ty),
                None => resolved = false,
            }
        }

        let allowed = op.kind.allowed_scopes();
        let scope_ok = allowed.contains(&op.scope);
        if !scope_ok {
            self.report(
                at,
                VerifyErrorKind::Scope {
                    expected: allowed.to_vec(),
                    found: op.scope,
                },
            );
        }
        if op.scope == Scope::Warpgroup && self.summary.warpgroup_op.is_none() {
            self.summary.warpgroup_op = Some(Site {
                path: path.to_string(),
                op: op.kind.name(),
                loc: op.loc,
            });
        }

        let arity_ok = self.check_arity(op, at);
        self.check_placement(op, path, at, inside);

        // mma, load and store have different rules at warp and warpgroup scope: at another
        // scope (already reported) their operands cannot be judged.
        let scope_dependent = matches!(
            op.kind,
            OpKind::Mma(_) | OpKind::MmaAsync(_) | OpKind::Load | OpKind::Store
        );
        if arity_ok && resolved && (scope_ok || !scope_dependent) {
            let mut cx = OpCx::new(
                self.funcs,
                self.func,
                op,
                path,
                operand_types,
                result_types,
                self.errors,
            );
            check_family(&mut cx);
        }
        ill_operand_types
    }

    /// Declares the arguments of `op`'s regions and walks them, one level deeper.
    fn walk_regions(&mut self, op: &'a Op, path: &str, ill_operand_types: &[&'a Type]) {
        let at = At::Op(path, op);
        if self.depth >= MAX_NESTING {
            self.structure(
                at,
                format!(
                    "the regions of this op would be nested {} deep; regions nest at most {MAX_NESTING} deep, the function body counting as 1 (tilekit_ir::MAX_NESTING)",
                    self.depth + 1
                ),
            );
            return;
        }
        self.depth += 1;
        for (ri, region) in op.regions.iter().enumerate() {
            for (k, &a) in region.args.iter().enumerate() {
                let func = self.func;
                let what = || format!("argument {k} {} of region {ri}", value_text(func, a));
                self.declare(a, at, what, ill_operand_types);
                if let Some(slot) = self.visible.get_mut(a.index()) {
                    *slot = true;
                }
            }
            let prefix = format!("{path}.{ri}");
            let owner = format!("region {ri} of `{}` (op {path})", op.kind.name());
            let end = control::region_end(self.func, op, ri, &owner);
            self.walk_region(region, &prefix, Some(&owner), end.as_ref(), at);
            for &a in &region.args {
                if let Some(slot) = self.visible.get_mut(a.index()) {
                    *slot = false;
                }
            }
        }
        self.depth -= 1;
    }

    /// Operand, result and region counts. Returns whether the op's own checks can run.
    fn check_arity(&mut self, op: &Op, at: At<'_>) -> bool {
        let sig = arity::signature(&op.kind);
        let mut ok = true;
        if !sig.operands.accepts(op.operands.len()) {
            self.report(
                at,
                VerifyErrorKind::Arity {
                    what: "operands".into(),
                    expected: format!("{} {}", sig.operands, sig.operand_names),
                    found: op.operands.len(),
                },
            );
            ok = false;
        }
        if !sig.results.accepts(op.results.len()) {
            self.report(
                at,
                VerifyErrorKind::Arity {
                    what: "results".into(),
                    expected: sig.results.to_string(),
                    found: op.results.len(),
                },
            );
            ok = false;
        }
        if op.regions.len() != sig.regions {
            self.report(
                at,
                VerifyErrorKind::Arity {
                    what: "regions".into(),
                    expected: sig.regions.to_string(),
                    found: op.regions.len(),
                },
            );
            ok = false;
        }
        ok
    }

    /// Rules about where an op may appear: `alloc_shared` only at the top level of a kernel
    /// body; `call` only of existing helpers.
    fn check_placement(&mut self, op: &Op, path: &str, at: At<'_>, inside: Option<&str>) {
        match &op.kind {
            OpKind::AllocShared => {
                let rule = "shared memory is allocated only at the top level of a kernel body";
                if !self.func.is_kernel() {
                    let message = format!("`alloc_shared` in helper @{}: {rule}", self.func.name);
                    self.structure(at, message);
                } else if let Some(inside) = inside {
                    self.structure(at, format!("`alloc_shared` inside {inside}: {rule}"));
                }
            }
            OpKind::Call(name) => match self.funcs.callee(name) {
                Ok(callee) => self.summary.calls.push(CallSite {
                    callee,
                    site: Site {
                        path: path.to_string(),
                        op: op.kind.name(),
                        loc: op.loc,
                    },
                }),
                Err(message) => self.structure(at, message),
            },
            _ => {}
        }
    }
}

/// The rules of the op's family. The op's scope (where its rules depend on it), arity and
/// operand and result types have been checked.
fn check_family(cx: &mut OpCx<'_, '_>) {
    match &cx.op.kind {
        OpKind::Const(c) => scalar::check_const(cx, *c),
        OpKind::BlockIdx(_)
        | OpKind::GridDim(_)
        | OpKind::WarpIdx
        | OpKind::WarpgroupIdx
        | OpKind::NumWarps => scalar::check_index(cx),
        OpKind::GlobalDim(k) => scalar::check_dim(cx, *k),
        OpKind::Fill(_) => creation::check_fill(cx),
        OpKind::Splat => creation::check_splat(cx),
        OpKind::Iota(axis) => creation::check_iota(cx, *axis),
        OpKind::Unary(f) => elementwise::check_unary(cx, *f),
        OpKind::Binary(f) => elementwise::check_binary(cx, *f),
        OpKind::Cmp(_) => elementwise::check_cmp(cx),
        OpKind::Select => elementwise::check_select(cx),
        OpKind::Convert => elementwise::check_convert(cx),
        OpKind::Transpose => elementwise::check_transpose(cx),
        OpKind::Bitcast => elementwise::check_bitcast(cx),
        OpKind::Bcast(axis, f) => rowcol::check_bcast(cx, *axis, *f),
        OpKind::Reduce(axis, _) => rowcol::check_reduce(cx, *axis),
        OpKind::Scan { .. } => rowcol::check_scan(cx),
        OpKind::SortRow { .. } => sort::check_sort_row(cx),
        OpKind::TopkRow(k) => sort::check_topk_row(cx, *k),
        OpKind::Mask(kind, _) => rowcol::check_mask(cx, *kind),
        OpKind::Mma(v) => mma::check(cx, *v),
        OpKind::MmaAsync(v) => mma::check_async(cx, *v),
        OpKind::MmaCommit => {}
        OpKind::MmaWait(_) => mma::check_wait(cx),
        OpKind::AllocShared => memory::check_alloc_shared(cx),
        OpKind::SharedIndex => memory::check_shared_index(cx),
        OpKind::Load => memory::check_load(cx),
        OpKind::Store => memory::check_store(cx),
        OpKind::Copy => copy::check_copy(cx),
        OpKind::CopyAsync => copy::check_copy_async(cx),
        OpKind::CopyStart => copy::check_copy_start(cx),
        OpKind::CopyCommit | OpKind::CopyWait(_) => {}
        OpKind::GatherRows => gather::check_gather_rows(cx),
        OpKind::Gather => gather::check_gather(cx),
        OpKind::TableView => table::check_table_view(cx),
        OpKind::ScatterRows { .. } => gather::check_scatter_rows(cx),
        OpKind::AtomicAdd => gather::check_atomic_add(cx),
        OpKind::AtomicRmw(f) => atomic::check_atomic(cx, Some(*f)),
        OpKind::AtomicCas => atomic::check_atomic(cx, None),
        OpKind::Philox => atomic::check_philox(cx),
        OpKind::DeviceAssert(_) => atomic::check_assert(cx),
        OpKind::Barrier => {}
        OpKind::SetMaxNReg { count, .. } => sync::check_setmaxnreg(cx, *count),
        OpKind::SemInit(_) | OpKind::SemArrive | OpKind::SemExpect(_) | OpKind::SemWait => {
            sync::check(cx)
        }
        OpKind::For => control::check_for(cx),
        OpKind::If => control::check_if(cx),
        OpKind::While => control::check_while(cx),
        OpKind::Call(name) => control::check_call(cx, name),
        // Checked against what their region must end in (see `RegionEnd`).
        OpKind::Yield | OpKind::Condition | OpKind::Return => {}
    }
}
