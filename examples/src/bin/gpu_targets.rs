//! The GPU half of `make demo`: compiles every kernel of the library for every target and prints
//! the resource report (ptxas for NVIDIA; the code object's metadata for AMD), then runs the
//! library's self-tests on the best device present — a GPU when there is one, else the
//! interpreter — printing the device and each case's error against its f64 reference.
//!
//! Exits non-zero when a kernel fails to compile for an NVIDIA target or misses its tolerance;
//! spills are flagged in the table and counted at the end.

use std::process::ExitCode;

use tilekit::codegen::{self, Target};
use tilekit::kernels::check::case_table;
use tilekit::Device;

fn main() -> ExitCode {
    let mut bad = 0;
    let mut spilling = Vec::new();
    println!("\ntilekit demo, GPU targets: the kernel library compiled for every target\n");
    println!(
        "{:<18} {:<32} {:<7} {:>8} {:>10} {:>12}  notes",
        "kernel", "variant", "target", "regs", "spills", "shared/LDS"
    );
    for target in Target::ALL {
        for k in tilekit::registry::kernels() {
            // Variants registered for other targets only (`<..> for [sm_90a]`) are skipped.
            for v in k.variants.iter().filter(|v| v.is_for(target.name())) {
                let module = (v.module)();
                let row = |regs: String, spills: String, shared: String, notes: String| {
                    println!(
                        "{:<18} {:<32} {:<7} {:>8} {:>10} {:>12}  {notes}",
                        k.name, v.args, target, regs, spills, shared
                    )
                };
                let c = match codegen::compile_cached(module, k.name, target) {
                    Ok(c) => c,
                    Err(e) => {
                        let msg = e.to_string();
                        let first = msg.lines().next().unwrap_or("");
                        row(
                            "-".into(),
                            "-".into(),
                            "-".into(),
                            format!("not compiled: {first}"),
                        );
                        bad += usize::from(target.is_nvidia());
                        continue;
                    }
                };
                if target.is_nvidia() {
                    match codegen::ptxas::assemble(c.ptx(), target) {
                        Ok(a) => {
                            let r = a.report;
                            let spills = r.spill_store_bytes + r.spill_load_bytes;
                            if spills > 0 {
                                spilling.push(format!("{}{} on {target}", k.name, v.args));
                            }
                            row(
                                r.registers.to_string(),
                                format!("{spills} B"),
                                format!("{} B", c.shared_bytes),
                                format!(
                                    "ptxas; {} threads{}",
                                    c.block_threads(),
                                    if spills > 0 { "; SPILLS" } else { "" }
                                ),
                            );
                        }
                        Err(e) => {
                            bad += 1;
                            row("-".into(), "-".into(), "-".into(), format!("ptxas: {e}"));
                        }
                    }
                } else {
                    match c.amd_resources() {
                        Some(r) if r.scratch_bytes > 0 => {
                            spilling.push(format!("{}{} on {target}", k.name, v.args));
                            row(
                                format!("{}v/{}a", r.vgprs, r.agprs),
                                format!("{} B", r.scratch_bytes),
                                format!("{} B", r.lds_bytes),
                                format!("code object; {} SGPRs; SCRATCH", r.sgprs),
                            )
                        }
                        Some(r) => row(
                            format!("{}v/{}a", r.vgprs, r.agprs),
                            format!("{} B", r.scratch_bytes),
                            format!("{} B", r.lds_bytes),
                            format!("code object; {} SGPRs", r.sgprs),
                        ),
                        None => row(
                            "-".into(),
                            "-".into(),
                            "-".into(),
                            "no resource metadata".into(),
                        ),
                    }
                }
            }
        }
    }

    let device = Device::best();
    println!("\nself-tests on {}", device.describe());
    if device == Device::Cpu {
        let why = Device::cuda(0)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        println!("(no GPU: {why}; the interpreter runs them)");
    }
    let (table, failed) = case_table(&device);
    print!("{table}");
    bad += failed;
    if !spilling.is_empty() {
        println!(
            "\nspills (registers to local memory / scratch): {}",
            spilling.join(", ")
        );
    }
    if bad > 0 {
        println!("\n{bad} problems");
        ExitCode::FAILURE
    } else {
        println!(
            "\nevery kernel compiles for NVIDIA and passes its self-test on {}",
            device.name()
        );
        ExitCode::SUCCESS
    }
}
