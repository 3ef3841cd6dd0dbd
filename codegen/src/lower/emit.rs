//! MLIR text under construction: fresh SSA names, indentation, constants and the lane-dependent
//! values every lowering rule uses.

use std::collections::HashMap;

use tilekit_ir::ScalarType;

use crate::layout::LaneAffine;

/// Lines of MLIR being written into one function body.
#[derive(Debug, Default)]
pub(crate) struct Emit {
    pub text: String,
    /// Values that depend on nothing inside the body (constants, thread coordinates and the
    /// lane-dependent parts of layouts), written once at the top of the function so they
    /// dominate every region, and deduplicated by their defining text.
    pub prologue: String,
    hoisted: HashMap<String, String>,
    /// The hoisted i32 constants by name, so that a lowering rule can tell a compile-time
    /// index from a run-time one ([`Emit::known_i32`]).
    consts: HashMap<String, i64>,
    indent: usize,
    next: u32,
    /// `%lane`, `lane / 4` and `lane % 4`, defined at the top of the kernel.
    pub lane: String,
    pub g: String,
    pub t: String,
}

impl Emit {
    pub fn fresh(&mut self) -> String {
        self.next += 1;
        format!("%v{}", self.next)
    }

    pub fn line(&mut self, s: &str) {
        for _ in 0..self.indent + 2 {
            self.text.push_str("  ");
        }
        self.text.push_str(s);
        self.text.push('\n');
    }

    /// Writes `%new = rhs` and returns `%new`.
    pub fn op(&mut self, rhs: &str) -> String {
        let v = self.fresh();
        self.line(&format!("{v} = {rhs}"));
        v
    }

    /// Writes `%new = rhs` into the prologue, once per distinct `rhs`; returns its name.
    pub fn hoist(&mut self, rhs: &str) -> String {
        if let Some(v) = self.hoisted.get(rhs) {
            return v.clone();
        }
        let v = self.fresh();
        self.prologue.push_str(&format!("    {v} = {rhs}\n"));
        self.hoisted.insert(rhs.to_string(), v.clone());
        if let Some(k) = rhs
            .strip_prefix("arith.constant ")
            .and_then(|r| r.strip_suffix(" : i32"))
            .and_then(|k| k.parse().ok())
        {
            self.consts.insert(v.clone(), k);
        }
        v
    }

    /// The value of `v` where it names an i32 constant ([`Emit::i32`], or an IR constant).
    pub fn known_i32(&self, v: &str) -> Option<i64> {
        self.consts.get(v).copied()
    }

    pub fn open(&mut self, s: &str) {
        self.line(s);
        self.indent += 1;
    }

    pub fn close(&mut self, s: &str) {
        self.indent -= 1;
        self.line(s);
    }

    /// Moves to the next region of an op (`} else {`, `} do {`).
    pub fn reopen(&mut self, s: &str) {
        self.indent -= 1;
        self.line(s);
        self.indent += 1;
    }

    pub fn i32(&mut self, v: i64) -> String {
        self.hoist(&format!("arith.constant {v} : i32"))
    }

    pub fn i64(&mut self, v: i64) -> String {
        self.hoist(&format!("arith.constant {v} : i64"))
    }

    /// A constant of dtype `d` holding `v` rounded to `d` (floats are written as bit patterns so
    /// that the text is exact).
    pub fn constant(&mut self, d: ScalarType, v: f64) -> String {
        let rhs = match d {
            ScalarType::F32 => format!("arith.constant 0x{:08X} : f32", (v as f32).to_bits()),
            ScalarType::BF16 => format!(
                "arith.constant 0x{:04X} : bf16",
                half::bf16::from_f64(v).to_bits()
            ),
            ScalarType::F16 => format!(
                "arith.constant 0x{:04X} : f16",
                half::f16::from_f64(v).to_bits()
            ),
            ScalarType::Bool => format!("arith.constant {}", v != 0.0),
            ScalarType::I32 | ScalarType::U32 => {
                format!("arith.constant {} : i32", v as i64 as i32)
            }
            ScalarType::I8 => format!("arith.constant {} : i8", v as i64 as i8),
            ScalarType::I64 => format!("arith.constant {} : i64", v as i64),
            // fp8 registers are i8 holding the encoding (see `lower::fp8`).
            ScalarType::F8E4M3 | ScalarType::F8E5M2 => format!(
                "arith.constant {} : i8",
                tilekit_ir::numeric::fp8_to_bits(d, tilekit_ir::numeric::round(d, v)) as i8
            ),
        };
        self.hoist(&rhs)
    }

    /// The i32 value of a lane-dependent coordinate plus `offset` (an i32 SSA value or none).
    /// The lane-dependent part is hoisted; only the addition of the offset is in the body.
    pub fn affine(&mut self, a: LaneAffine, offset: Option<&str>) -> String {
        let mut acc: Option<String> = None;
        let terms = [(a.per_g, self.g.clone()), (a.per_t, self.t.clone())];
        for (k, v) in terms {
            if k == 0 {
                continue;
            }
            let term = if k == 1 {
                v
            } else {
                let kk = self.i32(i64::from(k));
                self.hoist(&format!("arith.muli {v}, {kk} : i32"))
            };
            acc = Some(match acc {
                None => term,
                Some(x) => self.hoist(&format!("arith.addi {x}, {term} : i32")),
            });
        }
        let lane = match acc {
            None => self.i32(i64::from(a.base)),
            Some(x) if a.base == 0 => x,
            Some(x) => {
                let b = self.i32(i64::from(a.base));
                self.hoist(&format!("arith.addi {x}, {b} : i32"))
            }
        };
        match offset {
            None => lane,
            Some(o) => self.op(&format!("arith.addi {o}, {lane} : i32")),
        }
    }

    /// `x + y` on i32 values.
    pub fn add_i32(&mut self, x: &str, y: &str) -> String {
        self.op(&format!("arith.addi {x}, {y} : i32"))
    }

    /// `x * k` on an i32 value and a constant.
    pub fn mul_i32_const(&mut self, x: &str, k: i64) -> String {
        let kk = self.i32(k);
        self.op(&format!("arith.muli {x}, {kk} : i32"))
    }

    pub fn and_i1(&mut self, x: &str, y: &str) -> String {
        self.op(&format!("arith.andi {x}, {y} : i1"))
    }
}
