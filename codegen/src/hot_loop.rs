//! The hot loop of a kernel, read from its machine code: the static proxy of DESIGN.md's
//! *Performance method*. The figure is the number of non-tensor instructions per 1000
//! tensor-core FLOPs of one warp (one wave on AMD) along the common path of one iteration of
//! the loop with the most tensor-core instructions. Lower is better: it says how many issue
//! slots the loop spends on bookkeeping for each unit of matrix work.
//!
//! Both ISAs go through the same steps, as pure functions of the text:
//! 1. instructions and labels (`parse_sass`: `nvdisasm -c` output; `parse_amdgpu`: the
//!    AMDGPU assembly LLVM prints, whose branches name `.LBB` labels);
//! 2. basic blocks and their edges (a block ends at a branch, an exit, or before a label);
//! 3. loops: every back edge (an edge u → h where h dominates u: every path from the entry to
//!    u passes h) closes the natural loop of h (h plus every block that reaches u without
//!    passing h); the back edges to one header form one loop. A rotated loop (entered in its
//!    middle, its test at the bottom) has its header where it is entered; a jump back into a
//!    loop from out-of-line code (ptxas's `BRA.DIV` slow paths) is no back edge;
//! 4. the hot loop: the loop with the most tensor-core instructions, ties to the smaller body
//!    (the inner loop of a nest whose outer level adds none), then to the earlier header;
//! 5. its common path, walked from the header over the loop's body with inner back-branches
//!    dropped (so the walk passes an inner loop's body once) until a back-branch to the header
//!    is taken. At each block the walk takes the successor from which the most tensor-core
//!    instructions remain reachable before a back-branch; among equal ones it takes the
//!    fall-through (the next block in the text), else the lowest-addressed target. Compilers
//!    lay the in-bounds way of a guard out as the fall-through (`@!P0 BRA skip` over a guarded
//!    copy, `s_cbranch_execz` over an exec-masked one) and jump out of line to fallbacks and
//!    exits, so the fall-through is the in-bounds way; the tensor-core lookahead keeps the
//!    walk from leaving the matrix work behind where a fallback happens to fall through;
//! 6. the loops nested in the hot loop that the path enters (a general tile copy of more than
//!    32 elements per lane is one): each block of the path counts once per trip of every such
//!    loop holding it, so the figure counts what a warp issues per iteration of the hot loop.
//!    The trips are read from the machine code (module `trips`: a counter stepped by a
//!    constant from a constant, compared with a constant by the branch that closes the loop),
//!    not carried from the lowering, because the assembler may unroll or rotate the loop and
//!    only its output says how many trips of which body run. A loop whose trips are not such a
//!    constant counts once and is listed with unknown trips ([`InnerLoop::trips`]), so the
//!    undercount is said, not hidden.
//!
//! Tensor-core FLOPs per warp: `HMMA.16816` 2·16·8·16 = 4096, `HMMA.1688` 2048,
//! `HGMMA.64xNx16` 2·64·N·16 / 4 (a warpgroup's instruction, a quarter per warp), `IMMA` the
//! same shapes as `HMMA`; on AMD `v_mfma_…_MxNxK…` 2·M·N·K per wave (16x16x16: 8192).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

mod trips;

/// What went wrong reading a disassembly.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HotLoopError {
    /// A branch names a label the text does not define.
    #[error("line {line}: branch to `{label}`, which the disassembly does not define (expected a label line `{label}:`)")]
    UnknownLabel { line: usize, label: String },
}

/// How control leaves an instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Flow {
    /// On to the next instruction.
    Next,
    /// A branch to `label`; `conditional` when it may also fall through.
    Branch { label: String, conditional: bool },
    /// The end of the thread (`EXIT`, `RET`, `s_endpgm`); `conditional` when predicated.
    Exit { conditional: bool },
}

/// One instruction of a disassembly.
#[derive(Clone, Debug)]
struct Instr {
    /// The opcode with its modifiers (`HMMA.16816.F32.BF16`, `v_mfma_f32_16x16x16_bf16`).
    op: String,
    /// Tensor-core FLOPs per warp (per wave on AMD); 0 for other instructions.
    tensor_flops: u64,
    flow: Flow,
    /// The predicate guarding it (`P0`, `!UP1`), if any.
    guard: Option<String>,
    /// Its operands, destinations first, without SASS's `.reuse` hints.
    args: Vec<String>,
    /// The source line (1-based), for errors.
    line: usize,
}

/// The comma-separated operands of an instruction.
fn operands(text: &str) -> Vec<String> {
    text.split(',')
        .map(|a| a.trim().trim_end_matches(".reuse").to_string())
        .filter(|a| !a.is_empty())
        .collect()
}

/// A disassembly: instructions in text order and the instruction index each label names.
#[derive(Debug, Default)]
struct Listing {
    instrs: Vec<Instr>,
    labels: HashMap<String, usize>,
}

/// The hot loop of a kernel, counted along its common path.
#[derive(Clone, Debug, PartialEq)]
pub struct HotLoop {
    /// The label of the loop's header (`.L_x_6`, `.LBB0_5`).
    pub header: String,
    /// Instructions along the common path of one iteration, tensor-core ones included.
    pub instructions: usize,
    /// Tensor-core instructions (`HMMA`, `HGMMA`, `IMMA`, `v_mfma…`) along the path.
    pub tensor: usize,
    /// Their FLOPs per warp (per wave on AMD).
    pub tensor_flops: u64,
    /// How many instructions of each opcode (the part before the first `.` on NVIDIA, the
    /// mnemonic on AMD) the path holds.
    pub mix: BTreeMap<String, usize>,
    /// The loops nested in the hot loop that the path enters, in the order of their headers
    /// in the code. The counts above hold each of their instructions once per trip.
    pub inner_loops: Vec<InnerLoop>,
}

/// A loop nested in the hot loop, on its common path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InnerLoop {
    /// The label of the loop's header.
    pub header: String,
    /// Its trips each time the path enters it; `None` when the machine code does not show a
    /// constant (the loop is then counted once, an undercount).
    pub trips: Option<u64>,
    /// Instructions of one trip along the path (loops nested in it counted once).
    pub instructions: usize,
}

impl fmt::Display for InnerLoop {
    /// `inner loop .L_x_10: 16 trips of 40 instrs`, or `inner loop .L_x_10 of unknown trip
    /// count counted once`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.trips {
            Some(n) => write!(
                f,
                "inner loop {}: {n} trips of {} instrs",
                self.header, self.instructions
            ),
            None => write!(
                f,
                "inner loop {} of unknown trip count counted once ({} instrs)",
                self.header, self.instructions
            ),
        }
    }
}

impl HotLoop {
    /// Non-tensor instructions per 1000 tensor-core FLOPs per warp (per wave on AMD); `None`
    /// when the path has no tensor-core instruction.
    pub fn figure(&self) -> Option<f64> {
        (self.tensor_flops > 0)
            .then(|| (self.instructions - self.tensor) as f64 / (self.tensor_flops as f64 / 1000.0))
    }

    /// The most frequent opcodes of the path other than the tensor-core ones, most frequent
    /// first (ties by name), at most `n`.
    pub fn top_ops(&self, n: usize, tensor_op: &str) -> Vec<(&str, usize)> {
        let mut ops: Vec<(&str, usize)> = self
            .mix
            .iter()
            .filter(|(op, _)| op.as_str() != tensor_op)
            .map(|(op, &c)| (op.as_str(), c))
            .collect();
        ops.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        ops.truncate(n);
        ops
    }
}

impl fmt::Display for HotLoop {
    /// `137 instrs (16 HMMA, 8 LDSM) per iteration, figure 1.85 non-tensor instrs / 1k tensor FLOPs`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tensor_ops: Vec<String> = self
            .mix
            .iter()
            .filter(|(op, _)| is_tensor_opcode(op))
            .map(|(op, n)| format!("{n} {op}"))
            .collect();
        let loads: Vec<String> = self
            .mix
            .iter()
            .filter(|(op, _)| {
                matches!(op.as_str(), "LDSM" | "LDS" | "LDGSTS") || op.starts_with("ds_read")
            })
            .map(|(op, n)| format!("{n} {op}"))
            .collect();
        let parts: Vec<String> = tensor_ops.into_iter().chain(loads).collect();
        write!(
            f,
            "{} instrs ({}) per iteration at {}",
            self.instructions,
            if parts.is_empty() {
                "no tensor-core instructions".to_string()
            } else {
                parts.join(", ")
            },
            self.header
        )?;
        for inner in &self.inner_loops {
            write!(f, " ({inner})")?;
        }
        match self.figure() {
            Some(x) => write!(f, ", figure {x:.2} non-tensor instrs / 1k tensor FLOPs"),
            None => write!(f, ", no figure (no tensor-core instructions)"),
        }
    }
}

/// Whether an opcode (as [`HotLoop::mix`] keys it) is a tensor-core instruction.
fn is_tensor_opcode(op: &str) -> bool {
    matches!(op, "HMMA" | "HGMMA" | "IMMA" | "IGMMA" | "QGMMA") || op.starts_with("v_mfma")
}

/// The hot loop of `nvdisasm` output; `None` when the code has no loop.
pub fn sass_hot_loop(sass: &str) -> Result<Option<HotLoop>, HotLoopError> {
    hot_loop(&parse_sass(sass), sass_opcode, &trips::Sass)
}

/// The hot loop of AMDGPU assembly; `None` when the code has no loop.
pub fn amdgpu_hot_loop(asm: &str) -> Result<Option<HotLoop>, HotLoopError> {
    hot_loop(&parse_amdgpu(asm), |op| op.to_string(), &trips::Amdgpu)
}

/// `HMMA.16816.F32.BF16` → `HMMA`.
fn sass_opcode(op: &str) -> String {
    op.split('.').next().unwrap_or(op).to_string()
}

/// FLOPs per warp of a SASS tensor-core opcode with modifiers; 0 for any other.
fn sass_tensor_flops(op: &str) -> u64 {
    let mut parts = op.split('.');
    let name = parts.next().unwrap_or("");
    let shape = parts.next().unwrap_or("");
    match name {
        // `m16n8kK` written as `168K`: 16816, 1688, 16832 (IMMA).
        "HMMA" | "IMMA" => shape
            .strip_prefix("168")
            .and_then(|k| k.parse::<u64>().ok())
            .map_or(0, |k| 2 * 16 * 8 * k),
        // `64xNxK`, issued by a warpgroup of four warps.
        "HGMMA" | "IGMMA" | "QGMMA" => mnk(shape).map_or(0, |(m, n, k)| 2 * m * n * k / 4),
        _ => 0,
    }
}

/// FLOPs per wave of an AMDGPU instruction: `v_mfma_f32_16x16x16_bf16` → 2·16·16·16.
fn amdgpu_tensor_flops(op: &str) -> u64 {
    if !op.starts_with("v_mfma") && !op.starts_with("v_smfmac") {
        return 0;
    }
    op.split('_')
        .find_map(mnk)
        .map_or(0, |(m, n, k)| 2 * m * n * k)
}

/// `16x16x16bf16` → (16, 16, 16): three `x`-separated numbers, the last one's digits only.
fn mnk(s: &str) -> Option<(u64, u64, u64)> {
    let mut it = s.split('x');
    let m = it.next()?.parse().ok()?;
    let n = it.next()?.parse().ok()?;
    let k_text = it.next()?;
    let digits: String = k_text.chars().take_while(char::is_ascii_digit).collect();
    let k = digits.parse().ok()?;
    it.next().is_none().then_some((m, n, k))
}

/// Whether a SASS operand is a predicate that may be false (`P0`, `!UP1`; not `PT`).
fn is_variable_predicate(w: &str) -> bool {
    let w = w.trim_start_matches('!').trim_end_matches(',');
    let p = w.strip_prefix('U').unwrap_or(w);
    p.strip_prefix('P')
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// Parses `nvdisasm -c` output: labels are lines `name:`, instructions lines
/// `/*0040*/  @!P0 BRA `(.L_x_1) ;`.
fn parse_sass(sass: &str) -> Listing {
    let mut l = Listing::default();
    for (i, line) in sass.lines().enumerate() {
        let t = line.trim();
        if let Some(label) = t.strip_suffix(':') {
            if !label.is_empty() && !label.contains(char::is_whitespace) {
                l.labels.insert(label.to_string(), l.instrs.len());
            }
            continue;
        }
        let Some(body) = t
            .strip_prefix("/*")
            .and_then(|r| r.split_once("*/"))
            .map(|x| x.1)
        else {
            continue;
        };
        // The encoding, where printed, follows as a comment.
        let body = body
            .split("/*")
            .next()
            .unwrap_or("")
            .trim()
            .trim_end_matches(';')
            .trim();
        let mut words = body.split_whitespace().peekable();
        let mut guard = None;
        if let Some(w) = words.peek().and_then(|w| w.strip_prefix('@')) {
            guard = Some(w.to_string());
            words.next();
        }
        let Some(op) = words.next() else { continue };
        if !op.starts_with(|c: char| c.is_ascii_uppercase()) {
            continue;
        }
        // `@!PT` never executes, `@PT` always.
        let never = guard.as_deref() == Some("!PT");
        let predicated = guard.as_deref().is_some_and(is_variable_predicate);
        let rest: Vec<&str> = words.collect();
        let name = op.split('.').next().unwrap_or(op);
        let target = body
            .split_once("`(")
            .and_then(|(_, r)| r.split_once(')'))
            .map(|(label, _)| label.to_string());
        // ptxas exits loops with `CALL.REL.NOINC` to a local label (`.L_x_1`), a jump; the
        // same instruction to a function symbol (`$__internal_…_slowpath`) is a call that
        // returns.
        let local = target.as_deref().is_some_and(|t| t.starts_with(".L"));
        let jump = name == "BRA" || name == "JMP" || (op.starts_with("CALL.REL.NOINC") && local);
        let flow = match (name, target) {
            _ if never => Flow::Next,
            (_, Some(label)) if jump => Flow::Branch {
                label,
                // `BRA.U !UP0, target` carries its predicate as an operand.
                conditional: predicated || rest.first().is_some_and(|w| is_variable_predicate(w)),
            },
            ("EXIT" | "RET" | "KILL", _) => Flow::Exit {
                conditional: predicated,
            },
            _ => Flow::Next,
        };
        l.instrs.push(Instr {
            op: op.to_string(),
            tensor_flops: sass_tensor_flops(op),
            flow,
            args: operands(&rest.join(" ")),
            guard,
            line: i + 1,
        });
    }
    l
}

/// Parses AMDGPU assembly as LLVM prints it: labels `name:`, instructions a lowercase
/// mnemonic, `;` comments, `.` directives; the metadata block is skipped.
fn parse_amdgpu(asm: &str) -> Listing {
    let mut l = Listing::default();
    let mut in_metadata = false;
    for (i, line) in asm.lines().enumerate() {
        let t = line.split(';').next().unwrap_or("").trim();
        if t.starts_with(".amdgpu_metadata") {
            in_metadata = true;
        }
        if t.starts_with(".end_amdgpu_metadata") {
            in_metadata = false;
            continue;
        }
        if in_metadata || t.is_empty() {
            continue;
        }
        let mut words = t.split_whitespace();
        let Some(first) = words.next() else { continue };
        let args = operands(t[first.len()..].trim());
        if let Some(label) = first.strip_suffix(':') {
            l.labels.insert(label.to_string(), l.instrs.len());
            continue;
        }
        if !first.starts_with(|c: char| c.is_ascii_lowercase()) {
            continue;
        }
        let target = words.next().map(|w| w.trim_end_matches(',').to_string());
        let flow = match first {
            "s_branch" => Flow::Branch {
                label: target.unwrap_or_default(),
                conditional: false,
            },
            op if op.starts_with("s_cbranch_") && target.is_some() => Flow::Branch {
                label: target.unwrap_or_default(),
                conditional: true,
            },
            "s_endpgm" | "s_setpc_b64" => Flow::Exit { conditional: false },
            _ => Flow::Next,
        };
        l.instrs.push(Instr {
            op: first.to_string(),
            tensor_flops: amdgpu_tensor_flops(first),
            flow,
            guard: None,
            args,
            line: i + 1,
        });
    }
    l
}

/// A basic block: instructions `start..end` and its successors, the fall-through first.
#[derive(Debug)]
struct Block {
    start: usize,
    end: usize,
    succs: Vec<usize>,
    /// The successor reached by not branching, if any.
    fall: Option<usize>,
}

/// Splits a listing into basic blocks with their edges.
fn blocks(l: &Listing) -> Result<Vec<Block>, HotLoopError> {
    let n = l.instrs.len();
    let mut target_of = vec![None; n];
    let mut leader = vec![false; n + 1];
    if n > 0 {
        leader[0] = true;
    }
    for &at in l.labels.values() {
        leader[at] = true;
    }
    for (i, ins) in l.instrs.iter().enumerate() {
        match &ins.flow {
            Flow::Branch { label, .. } => {
                let &t = l
                    .labels
                    .get(label)
                    .ok_or_else(|| HotLoopError::UnknownLabel {
                        line: ins.line,
                        label: label.clone(),
                    })?;
                target_of[i] = Some(t);
                leader[t] = true;
                leader[i + 1] = true;
            }
            Flow::Exit { .. } => leader[i + 1] = true,
            Flow::Next => {}
        }
    }
    let starts: Vec<usize> = (0..n).filter(|&i| leader[i]).collect();
    let block_at: HashMap<usize, usize> = starts.iter().enumerate().map(|(b, &s)| (s, b)).collect();
    let mut out = Vec::with_capacity(starts.len());
    for (b, &start) in starts.iter().enumerate() {
        let end = starts.get(b + 1).copied().unwrap_or(n);
        let last = &l.instrs[end - 1];
        // A label at the very end (after the last instruction) names no block.
        let next = (end < n).then_some(b + 1);
        let (fall, taken) = match &last.flow {
            Flow::Next => (next, None),
            Flow::Branch { conditional, .. } => (
                if *conditional { next } else { None },
                target_of[end - 1].and_then(|t| block_at.get(&t).copied()),
            ),
            Flow::Exit { conditional } => (if *conditional { next } else { None }, None),
        };
        let mut succs: Vec<usize> = fall.into_iter().collect();
        if let Some(t) = taken {
            if !succs.contains(&t) {
                succs.push(t);
            }
        }
        out.push(Block {
            start,
            end,
            succs,
            fall,
        });
    }
    Ok(out)
}

/// The hot loop of a parsed listing; `opcode` names an instruction in [`HotLoop::mix`] and
/// `isa` reads the trip counts of the loops nested in it.
fn hot_loop(
    l: &Listing,
    opcode: impl Fn(&str) -> String,
    isa: &impl trips::Counters,
) -> Result<Option<HotLoop>, HotLoopError> {
    let bs = blocks(l)?;
    let tensor_in = |b: usize| {
        l.instrs[bs[b].start..bs[b].end]
            .iter()
            .filter(|i| i.tensor_flops > 0)
            .count()
    };
    let size = |b: usize| bs[b].end - bs[b].start;
    let mut preds: Vec<Vec<usize>> = vec![Vec::new(); bs.len()];
    for (b, blk) in bs.iter().enumerate() {
        for &s in &blk.succs {
            preds[s].push(b);
        }
    }
    // Loops by header: the natural loop of every back edge u → h (h dominates u).
    let dom = dominators(&bs, &preds);
    let dominates = |h: usize, mut u: usize| loop {
        if u == h {
            return true;
        }
        match dom[u] {
            Some(d) if d != u => u = d,
            _ => return false,
        }
    };
    let mut loops: BTreeMap<usize, Vec<bool>> = BTreeMap::new();
    for (u, blk) in bs.iter().enumerate() {
        for &h in &blk.succs {
            if dom[u].is_none() || !dominates(h, u) {
                continue;
            }
            let body = loops.entry(h).or_insert_with(|| vec![false; bs.len()]);
            body[h] = true;
            let mut stack = vec![u];
            while let Some(x) = stack.pop() {
                if !body[x] {
                    body[x] = true;
                    stack.extend(preds[x].iter().copied());
                }
            }
        }
    }
    let Some((&header, body)) = loops.iter().max_by(|(ha, a), (hb, b)| {
        let weight = |body: &Vec<bool>| {
            let blocks = (0..bs.len()).filter(|&x| body[x]);
            (
                blocks.clone().map(tensor_in).sum::<usize>(),
                blocks.map(size).sum::<usize>(),
            )
        };
        let (ta, sa) = weight(a);
        let (tb, sb) = weight(b);
        // Most tensor instructions, then the smaller body, then the earlier header.
        ta.cmp(&tb).then(sb.cmp(&sa)).then(hb.cmp(ha))
    }) else {
        return Ok(None);
    };
    let path = common_path(&bs, header, body, &tensor_in);
    let label_of = |b: usize| {
        l.labels
            .iter()
            .filter(|(_, &at)| at == bs[b].start)
            .map(|(name, _)| name.as_str())
            .min()
            .map_or_else(|| format!("instruction {}", bs[b].start), str::to_string)
    };
    // The loops nested in the hot loop that the path enters, each with its trips; a block of
    // the path runs once per trip of every one of them that holds it.
    let on_path = |b: &usize| path.contains(b);
    let nested: Vec<(usize, &Vec<bool>, Option<u64>)> = loops
        .iter()
        .filter(|(&h, _)| h != header && body[h] && on_path(&h))
        .map(|(&h, inner)| {
            let trips = trips::trip_count(isa, l, &bs, &preds, &dominates, h, inner);
            (h, inner, trips)
        })
        .collect();
    let runs = |b: usize| -> u64 {
        nested
            .iter()
            .filter(|(_, inner, _)| inner[b])
            .map(|(_, _, trips)| trips.unwrap_or(1))
            .product()
    };
    let mut mix = BTreeMap::new();
    let (mut instructions, mut tensor, mut tensor_flops) = (0, 0, 0);
    for &b in &path {
        let n = runs(b);
        for ins in &l.instrs[bs[b].start..bs[b].end] {
            instructions += n as usize;
            if ins.tensor_flops > 0 {
                tensor += n as usize;
                tensor_flops += n * ins.tensor_flops;
            }
            *mix.entry(opcode(&ins.op)).or_insert(0) += n as usize;
        }
    }
    let inner_loops = nested
        .iter()
        .map(|(h, inner, trips)| InnerLoop {
            header: label_of(*h),
            trips: *trips,
            instructions: path.iter().filter(|&&b| inner[b]).map(|&b| size(b)).sum(),
        })
        .collect();
    Ok(Some(HotLoop {
        header: label_of(header),
        instructions,
        tensor,
        tensor_flops,
        mix,
        inner_loops,
    }))
}

/// The immediate dominator of every block reachable from the entry (block 0; the entry is its
/// own), by the iterative algorithm of Cooper, Harvey and Kennedy ("A Simple, Fast Dominance
/// Algorithm") over reverse postorder.
fn dominators(bs: &[Block], preds: &[Vec<usize>]) -> Vec<Option<usize>> {
    let n = bs.len();
    let mut idom: Vec<Option<usize>> = vec![None; n];
    if n == 0 {
        return idom;
    }
    let mut seen = vec![false; n];
    let mut post = Vec::with_capacity(n);
    let mut stack = vec![(0usize, 0usize)];
    seen[0] = true;
    while let Some(&(b, next)) = stack.last() {
        match bs[b].succs.get(next) {
            Some(&s) => {
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
                if !seen[s] {
                    seen[s] = true;
                    stack.push((s, 0));
                }
            }
            None => {
                post.push(b);
                stack.pop();
            }
        }
    }
    let mut order = vec![usize::MAX; n];
    for (i, &b) in post.iter().enumerate() {
        order[b] = i;
    }
    idom[0] = Some(0);
    let mut changed = true;
    while changed {
        changed = false;
        for &b in post.iter().rev().filter(|&&b| b != 0) {
            let mut new: Option<usize> = None;
            for &p in preds[b].iter().filter(|&&p| idom[p].is_some()) {
                new = Some(match new {
                    None => p,
                    Some(mut x) => {
                        let mut y = p;
                        while x != y {
                            while order[x] < order[y] {
                                x = idom[x].unwrap_or(0);
                            }
                            while order[y] < order[x] {
                                y = idom[y].unwrap_or(0);
                            }
                        }
                        x
                    }
                });
            }
            if new.is_some() && idom[b] != new {
                idom[b] = new;
                changed = true;
            }
        }
    }
    idom
}

/// The blocks of one iteration along the common path (module docs, step 5).
fn common_path(
    bs: &[Block],
    header: usize,
    body: &[bool],
    tensor_in: &impl Fn(usize) -> usize,
) -> Vec<usize> {
    // The body as a DAG: a depth-first search from the header (fall-through first) drops the
    // edges back into the header and the retreating edges of inner loops.
    let n = bs.len();
    let mut dag: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut latch = vec![false; n];
    let mut state = vec![0u8; n]; // 0 unseen, 1 on the stack, 2 done
    let mut post = Vec::new();
    let mut stack: Vec<(usize, usize)> = vec![(header, 0)];
    state[header] = 1;
    while let Some(&(b, next)) = stack.last() {
        let Some(&s) = bs[b].succs.get(next) else {
            state[b] = 2;
            post.push(b);
            stack.pop();
            continue;
        };
        if let Some(top) = stack.last_mut() {
            top.1 += 1;
        }
        if s == header {
            latch[b] = true;
        } else if body[s] && state[s] != 1 {
            dag[b].push(s);
            if state[s] == 0 {
                state[s] = 1;
                stack.push((s, 0));
            }
        }
    }
    // The most tensor instructions that remain when going from `b` to `s`: through the back
    // edge none, through a DAG edge those of `s` onwards, through any other edge no way back.
    let mut remain: Vec<Option<usize>> = vec![None; n];
    let option = |remain: &[Option<usize>], b: usize, s: usize| {
        if s == header {
            latch[b].then_some(0)
        } else if dag[b].contains(&s) {
            remain[s]
        } else {
            None
        }
    };
    for &b in &post {
        let best = bs[b]
            .succs
            .iter()
            .filter_map(|&s| option(&remain, b, s))
            .max();
        remain[b] = best.map(|r| r + tensor_in(b));
    }
    let mut path = vec![header];
    let mut b = header;
    while let Some(best) = bs[b]
        .succs
        .iter()
        .filter_map(|&s| option(&remain, b, s))
        .max()
    {
        // Among the ways that keep the most tensor instructions: the fall-through, else the
        // branch.
        let keeps = |s: &usize| option(&remain, b, *s) == Some(best);
        let Some(next) = bs[b]
            .fall
            .filter(keeps)
            .or_else(|| bs[b].succs.iter().copied().find(keeps))
        else {
            break;
        };
        if next == header {
            break;
        }
        path.push(next);
        b = next;
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sass(lines: &[&str]) -> String {
        let mut s = String::from("\t.section\t.text.k,\"ax\",@progbits\nk:\n.text.k:\n");
        for (i, l) in lines.iter().enumerate() {
            if l.ends_with(':') {
                s.push_str(l);
            } else {
                s.push_str(&format!(
                    "        /*{:04x}*/                   {l} ;",
                    i * 16
                ));
            }
            s.push('\n');
        }
        s
    }

    fn amdgpu(body: &str) -> String {
        format!("\t.text\n\t.globl\tk\nk:\n{body}\n.Lfunc_end0:\n\t.amdgpu_metadata\namdhsa.kernels:\n  - .name: k\n\t.end_amdgpu_metadata\n")
    }

    #[test]
    fn a_straight_line_kernel_has_no_hot_loop() {
        let s = sass(&[
            "MOV R1, c[0x0][0x28]",
            "HMMA.16816.F32.BF16 R4, R8, R12, R4",
            "EXIT",
        ]);
        assert_eq!(sass_hot_loop(&s), Ok(None));
    }

    #[test]
    fn the_common_path_falls_through_guards_and_skips_the_out_of_line_fallback() {
        // Header: a guard jumping to a fallback (5 instructions) when misaligned; the
        // in-bounds way falls through to 2 copies, then the tensor block and the back-branch.
        let s = sass(&[
            "MOV R1, c[0x0][0x28]",
            ".L_x_0:",
            "@!P0 BRA `(.L_x_1)",                // 1 (header)
            "LDGSTS.E.BYPASS.128 [R2], [R4.64]", // 2
            "LDGSTS.E.BYPASS.128 [R3], [R6.64]", // 3
            "BRA `(.L_x_2)",                     // 4
            ".L_x_1:",
            "LDG.E.U16 R8, [R4.64]",
            "STS.U16 [R2], R8",
            "LDG.E.U16 R9, [R6.64]",
            "STS.U16 [R3], R9",
            "IADD3 R4, R4, 0x2, RZ",
            ".L_x_2:",
            "BAR.SYNC.DEFER_BLOCKING 0x0",            // 5
            "LDSM.16.M88.4 R12, [R2]",                // 6
            "HMMA.16816.F32.BF16 R16, R12, R14, R16", // 7
            "HMMA.16816.F32.BF16 R20, R12, R15, R20", // 8
            "ISETP.NE.AND P1, PT, R0, RZ, PT",        // 9
            "@!P1 CALL.REL.NOINC `(.L_x_3)",          // 10
            "BRA `(.L_x_0)",                          // 11
            ".L_x_3:",
            "EXIT",
        ]);
        let h = sass_hot_loop(&s).unwrap().unwrap();
        assert_eq!(h.header, ".L_x_0");
        assert_eq!((h.instructions, h.tensor, h.tensor_flops), (11, 2, 8192));
        assert_eq!(h.mix.get("LDGSTS"), Some(&2));
        assert_eq!(h.mix.get("LDG"), None);
        let want = 9.0 / 8.192;
        assert!((h.figure().unwrap() - want).abs() < 1e-12);
    }

    #[test]
    fn the_walk_leaves_the_fall_through_when_only_the_branch_reaches_the_tensor_work() {
        // The fall-through of the guard is a block that skips the matrix work; the branch
        // target holds it.
        let s = sass(&[
            ".L_x_0:",
            "ISETP.GE.AND P0, PT, R0, R1, PT", // 1
            "@P0 BRA `(.L_x_1)",               // 2
            "IADD3 R0, R0, 0x1, RZ",
            "BRA `(.L_x_2)",
            ".L_x_1:",
            "HMMA.1688.F32.TF32 R16, R12, R14, R16", // 3
            ".L_x_2:",
            "@P1 BRA `(.L_x_0)", // 4
            "EXIT",
        ]);
        let h = sass_hot_loop(&s).unwrap().unwrap();
        assert_eq!((h.instructions, h.tensor, h.tensor_flops), (4, 1, 2048));
    }

    #[test]
    fn the_hot_loop_is_the_one_with_the_most_tensor_instructions_and_unknown_inner_loops_count_once(
    ) {
        let s = sass(&[
            // A loop without tensor work (an epilogue-like loop) comes first.
            ".L_x_0:",
            "STG.E [R2.64], R4",
            "@P0 BRA `(.L_x_0)",
            // The outer loop holds 1 HMMA and an inner copy loop of 2 instructions.
            ".L_x_1:",
            "HMMA.16816.F32.F16 R16, R12, R14, R16", // 1
            ".L_x_2:",
            "LDS R5, [R3]",       // 2
            "@P1 BRA `(.L_x_2)",  // 3
            "@!PT BRA `(.L_x_9)", // 4: never taken
            "@P2 BRA `(.L_x_1)",  // 5
            ".L_x_9:",
            "EXIT",
        ]);
        let h = sass_hot_loop(&s).unwrap().unwrap();
        assert_eq!(h.header, ".L_x_1");
        assert_eq!((h.instructions, h.tensor), (5, 1));
        // `P1` comes from outside the copy loop: its trips are unknown, and said to be.
        assert_eq!(h.inner_loops.len(), 1);
        assert_eq!(h.inner_loops[0].trips, None);
    }

    #[test]
    fn a_branch_to_an_undefined_label_is_an_error_naming_it() {
        let s = sass(&[".L_x_0:", "NOP", "@P0 BRA `(.L_x_7)", "BRA `(.L_x_0)"]);
        match sass_hot_loop(&s) {
            Err(HotLoopError::UnknownLabel { label, .. }) => assert_eq!(label, ".L_x_7"),
            other => panic!("expected an unknown label, got {other:?}"),
        }
    }

    #[test]
    fn amdgpu_exec_masked_guards_are_walked_the_in_bounds_way() {
        let asm = amdgpu(
            "\ts_mov_b32 s4, 0\n\
             .LBB0_1:                                ; %loop\n\
             \ts_and_saveexec_b64 s[2:3], vcc\n\
             \ts_cbranch_execz .LBB0_3\n\
             ; %bb.2:\n\
             \tglobal_load_dwordx4 v[4:7], v[0:1], off\n\
             \ts_waitcnt vmcnt(0)\n\
             \tds_write_b128 v2, v[4:7]\n\
             .LBB0_3:\n\
             \ts_or_b64 exec, exec, s[2:3]\n\
             \ts_barrier\n\
             \tds_read_b64 v[8:9], v3\n\
             \tv_mfma_f32_16x16x16_bf16 v[10:13], v[8:9], v[8:9], v[10:13]\n\
             \ts_add_i32 s4, s4, 1\n\
             \ts_cmp_lg_u32 s4, s5\n\
             \ts_cbranch_scc1 .LBB0_1\n\
             \ts_endpgm",
        );
        let h = amdgpu_hot_loop(&asm).unwrap().unwrap();
        assert_eq!(h.header, ".LBB0_1");
        assert_eq!((h.instructions, h.tensor, h.tensor_flops), (12, 1, 8192));
        assert_eq!(h.mix.get("global_load_dwordx4"), Some(&1));
        assert!((h.figure().unwrap() - 11.0 / 8.192).abs() < 1e-12);
    }

    /// `gemm<f32, 64, 64, 32, 32, 32>` for sm_80 as `nvdisasm -c` printed it (before the
    /// ldmatrix operand order of commit 6e2f773, so with 29 `IMAD.MOV` in the loop). Counted by hand
    /// from the addresses: the header `.L_x_6` block 0x13c0–0x15a0 (31 instructions: the
    /// aligned `LDGSTS` copies of A; the element-wise fallback at `.L_x_2` is skipped), the
    /// B-copy block 0x1c60–0x1f00 (43), and 0x2b20–0x2ee0 (61: barrier, 8 `LDSM`, 16 `HMMA`,
    /// the loop exit and the back-branch).
    #[test]
    fn real_sm80_gemm_sass_gives_the_hand_counted_loop() {
        let s = include_str!("../tests/hot_loop/gemm_f32_64x64x32_sm80.sass");
        let h = sass_hot_loop(s).unwrap().unwrap();
        assert_eq!(h.header, ".L_x_6");
        assert_eq!((h.instructions, h.tensor), (31 + 43 + 61, 16));
        assert_eq!(h.mix.get("LDSM"), Some(&8));
        assert_eq!(h.mix.get("LDGSTS"), Some(&4));
        let hmma_in_file = s.lines().filter(|l| l.contains(" HMMA.16816")).count();
        assert_eq!(
            h.tensor, hmma_in_file,
            "every HMMA of the kernel is in its K loop"
        );
    }

    /// The same kernel for gfx942 as LLVM printed it: the loop from `.LBB0_5` to the last
    /// `s_branch .LBB0_5` holds 266 instructions (counted with grep over those lines), 8 of
    /// them MFMA; every `s_cbranch_execz` in it guards one element's load.
    #[test]
    fn real_gfx942_gemm_asm_gives_the_counted_loop() {
        let s = include_str!("../tests/hot_loop/gemm_f32_64x64x32_gfx942.s");
        let h = amdgpu_hot_loop(s).unwrap().unwrap();
        // The loop is rotated: entered at `.LBB0_6` by `s_branch`, `.LBB0_5` is its bottom.
        assert_eq!(h.header, ".LBB0_6");
        assert_eq!(
            (h.instructions, h.tensor, h.tensor_flops),
            (266, 8, 8 * 8192)
        );
        let guards = s
            .lines()
            .filter(|l| l.contains("s_cbranch_execz .LBB0_"))
            .count();
        assert!(h
            .mix
            .get("s_cbranch_execz")
            .is_some_and(|&n| n > 0 && n <= guards));
    }

    #[test]
    fn flops_per_warp_of_each_tensor_core_shape() {
        assert_eq!(sass_tensor_flops("HMMA.16816.F32.BF16"), 4096);
        assert_eq!(sass_tensor_flops("HMMA.1688.F32.TF32"), 2048);
        assert_eq!(
            sass_tensor_flops("HGMMA.64x128x16.F32.BF16"),
            2 * 64 * 128 * 16 / 4
        );
        assert_eq!(sass_tensor_flops("IMAD.WIDE"), 0);
        assert_eq!(amdgpu_tensor_flops("v_mfma_f32_16x16x16_bf16"), 8192);
        assert_eq!(amdgpu_tensor_flops("v_mfma_f32_16x16x16bf16_1k"), 8192);
        assert_eq!(amdgpu_tensor_flops("v_mfma_f32_32x32x8_f16"), 16384);
        assert_eq!(amdgpu_tensor_flops("v_mov_b32_e32"), 0);
    }
}
