//! The `tilekit` command: `tilekit list`, `tilekit selftest [--device cpu]`.
//!
//! A library module so that any binary linking more kernels (which register themselves) can
//! offer the same command over all of them: `fn main() { std::process::exit(tilekit::cli::main()) }`.

use std::fmt::Write as _;

use crate::launch::Device;
use crate::registry::kernels;

const USAGE: &str = "usage: tilekit list | tilekit selftest [--device cpu]";

/// Runs the command on the process arguments; returns the exit code.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok((out, code)) => {
            print!("{out}");
            code
        }
        Err(message) => {
            eprintln!("tilekit: {message}\n{USAGE}");
            2
        }
    }
}

/// Runs the command on `args` (without the program name): the text to print and the exit code,
/// or a usage error.
pub fn run(args: &[String]) -> Result<(String, i32), String> {
    match args.first().map(String::as_str) {
        Some("list") if args.len() == 1 => Ok((list(), 0)),
        Some("selftest") => {
            let device = match &args[1..] {
                [] => Device::Cpu,
                [flag, name] if flag == "--device" => {
                    Device::from_name(name).map_err(|e| e.to_string())?
                }
                other => return Err(format!("unexpected arguments {other:?}")),
            };
            Ok(selftest(&device))
        }
        Some(other) => Err(format!("unknown command `{other}`")),
        None => Err("no command".into()),
    }
}

/// One line per kernel variant: name, comptime arguments, ops, parameters, source.
pub fn list() -> String {
    let mut out = String::new();
    for k in kernels() {
        for v in k.variants {
            let m = (v.module)();
            let ops: usize = m.funcs.iter().map(count_ops).sum();
            let _ = writeln!(
                out,
                "{}{}  ({})  {} ops  {}:{}",
                k.name, v.args, k.params, ops, k.file, k.line
            );
        }
    }
    out
}

fn count_ops(f: &crate::ir::Func) -> usize {
    let mut n = 0;
    f.walk(|_| n += 1);
    n
}

/// Runs every registered self-test; the last line is `N passed, M failed`.
pub fn selftest(device: &Device) -> (String, i32) {
    let (mut passed, mut failed) = (0, 0);
    let mut out = String::new();
    for k in kernels() {
        let Some(test) = k.selftest else {
            let _ = writeln!(out, "skip {}: no self-test registered", k.name);
            continue;
        };
        // A failing kernel must not stop the others: a panic counts as a failure.
        match std::panic::catch_unwind(|| test(device)) {
            Ok(Ok(what)) => {
                passed += 1;
                let _ = writeln!(out, "ok   {}: {what}", k.name);
            }
            Ok(Err(e)) => {
                failed += 1;
                let _ = writeln!(out, "FAIL {}: {e}", k.name);
            }
            Err(_) => {
                failed += 1;
                let _ = writeln!(out, "FAIL {}: panicked", k.name);
            }
        }
    }
    let _ = writeln!(out, "{passed} passed, {failed} failed");
    (out, i32::from(failed > 0))
}
