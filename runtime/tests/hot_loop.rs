//! The hot-loop figure (DESIGN.md, *Performance method*) of every registered library kernel
//! variant: `tilekit check` prints it, so it must be computable for each of them. The test
//! asserts no target value (the code generation is not tuned yet), only that every kernel
//! whose machine code holds tensor-core instructions has a hot loop that holds some, with a
//! finite positive figure, and that ptxas gave no performance advisory (C75xx) for any NVIDIA
//! variant. `cargo test -p tilekit --test all -- hot_loop --nocapture` prints the
//! table docs/BENCHMARKS.md records.
#![cfg(feature = "jit")]

use tilekit_codegen::{amd, compile_cached, hot_loop, ptxas, sass, Stage, Target};

/// The library's kernels and this file's own (every test module's kernels register in one binary).
fn kernels() -> Vec<&'static tilekit::registry::KernelInfo> {
    crate::library_kernels_and(file!())
}

/// Checks every variant on `target` and prints one line per variant.
fn every_variant_has_a_figure(target: Target) {
    let mut failures = Vec::new();
    for k in kernels() {
        // A variant registered for other targets only (`<..> for [sm_90a]`) is not compiled there.
        for v in k.variants.iter().filter(|v| v.is_for(target.name())) {
            let name = format!("{}{} on {target}", k.name, v.args);
            // Through the compile cache: the spill sweep compiles the same variants.
            let c = match compile_cached((v.module)(), k.name, target) {
                Ok(c) => c,
                Err(e) => {
                    failures.push(format!("{name}: does not compile: {e}"));
                    continue;
                }
            };
            // The tensor-core instructions of the whole kernel, counted apart from the hot
            // loop's reading of the code.
            let (code, tensor_in_code, h) = if target.is_nvidia() {
                let assembled = match c.assembled() {
                    Ok(a) => a,
                    Err(e) => {
                        failures.push(format!("{name}: ptxas: {e}"));
                        continue;
                    }
                };
                // A performance advisory (serialized wgmma, ignored setmaxnreg) means the
                // loop runs far slower than its figure says: `tilekit check` fails on it too.
                for a in ptxas::performance_advisories(&assembled.log) {
                    failures.push(format!("{name}: ptxas advisory {a}"));
                }
                let text = match sass::disassemble(&assembled.cubin) {
                    Ok(t) => t,
                    Err(e) => {
                        failures.push(format!("{name}: no SASS: {e}"));
                        continue;
                    }
                };
                let mix = sass::instruction_mix(&text);
                let tensor = ["HMMA", "HGMMA"]
                    .iter()
                    .filter_map(|op| mix.get(*op))
                    .sum::<usize>();
                let h = hot_loop::sass_hot_loop(&text);
                (text, tensor, h)
            } else {
                let text = c.stage(Stage::Asm).to_string();
                let tensor = amd::resources::mfma_count(&text);
                let h = hot_loop::amdgpu_hot_loop(&text);
                (text, tensor, h)
            };
            let h = match h {
                Ok(h) => h,
                Err(e) => {
                    failures.push(format!("{name}: the code cannot be read: {e}"));
                    continue;
                }
            };
            match (&h, tensor_in_code) {
                (_, 0) => println!(
                    "{name}: no tensor-core instructions ({} lines of code)",
                    code.lines().count()
                ),
                (None, n) => failures.push(format!(
                    "{name}: {n} tensor-core instructions but no loop found"
                )),
                (Some(h), _) => {
                    println!("{name}: {h}");
                    match h.figure() {
                        Some(f) if f.is_finite() && f > 0.0 && h.tensor > 0 => {}
                        f => failures.push(format!(
                            "{name}: hot loop {h:?} has figure {f:?} (expected a finite figure > 0)"
                        )),
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_library_kernel_with_tensor_instructions_has_a_hot_loop_figure_on_sm_80() {
    every_variant_has_a_figure(Target::Sm80);
}

#[test]
fn every_library_kernel_with_tensor_instructions_has_a_hot_loop_figure_on_sm_90a() {
    every_variant_has_a_figure(Target::Sm90a);
}

#[test]
fn every_library_kernel_with_mfma_instructions_has_a_hot_loop_figure_on_gfx942() {
    every_variant_has_a_figure(Target::Gfx942);
}
