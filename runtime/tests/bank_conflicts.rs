//! Shared-memory bank conflicts of the library kernels, lane by lane: every registered kernel's
//! self-test runs on the PTX emulator (emu:sm_80 and emu:sm_90a), which counts, for each
//! instruction that touches shared memory (`ld`/`st.shared`, `ldmatrix`, the shared side of
//! `cp.async`), the wavefronts the 32 banks need against the conflict-free ideal
//! (`tilekit_emu::banks` states the model and its sources). The test asserts that no
//! instruction of any library kernel needs more wavefronts than the ideal, over the whole
//! kernel and not only its hot loop, apart from the conflicts listed in `KNOWN` with the
//! reason each is there and the number of compiled codes it occurs in.
//! `cargo test -p tilekit --test all -- bank_conflicts --nocapture` prints every kernel's shared
//! instructions with their wavefronts.
#![cfg(feature = "jit")]

/// A conflict that is known and not fixed yet: every conflicting instruction of `kernel`'s
/// self-test is an `opcode`, none worse than `ways`, in exactly `codes` compiled codes (variants
/// × the general/aligned compiles the self-test's launches take) on each emulated target of
/// `targets` (and in none elsewhere).
struct Known {
    kernel: &'static str,
    opcode: &'static str,
    ways: u32,
    codes: usize,
    targets: &'static [&'static str],
    /// Why it is there and what would fix it.
    why: &'static str,
}

/// Conflicts that are known and not fixed. The GEMM B rings `St<bf16, BK, BN>` with
/// BN = 128/256 and the head-dim-128 attention K/V rings, whose 256- and 512-byte rows made
/// `ldmatrix` 2–4-way, are stored as 128-byte swizzled pieces since 2026-12-07
/// (`tilekit_codegen::layout::shared_tile_offset`), and Muon's f32 register-tile transposes
/// (up to 8-way through the relayout scratch) permute the scratch's words by row since the
/// same day (codegen/src/lower/relayout.rs); an entry here must say why it stays.
const KNOWN: &[Known] = &[
    Known {
        kernel: "shampoo_gram",
        opcode: "ld.shared",
        ways: 2,
        codes: 2,
        targets: &["sm_80", "sm_90a"],
        why: SHAMPOO_F32_PANELS,
    },
    Known {
        kernel: "shampoo_matmul",
        opcode: "ld.shared",
        ways: 2,
        codes: 2,
        targets: &["sm_80", "sm_90a"],
        why: SHAMPOO_F32_PANELS,
    },
    Known {
        kernel: "gemm_ws_wg",
        opcode: "st.shared",
        ways: 2,
        codes: 2,
        targets: &["sm_90a"],
        why: F32_EPILOGUE,
    },
    Known {
        kernel: "gemm_ws_wg_persistent",
        opcode: "st.shared",
        ways: 2,
        codes: 2,
        targets: &["sm_90a"],
        why: F32_EPILOGUE,
    },
];

const F32_EPILOGUE: &str = "The f32 variants store each consumer warp's 16 × 256 f32 strip into its 128-byte-swizzled epilogue buffer word by word (`st.shared.b32`; stmatrix is 16-bit only): a lane's two adjacent columns go in two stores, and in each store lanes of rows r and r ^ 1 meet in one bank (2-way). Storing each lane's pair as one 64-bit `st.shared.v2.b32` would make it conflict-free.";

const SHAMPOO_F32_PANELS: &str = "Shampoo's f32 products load their f32 register fragments word by word (`ld.shared.b32`; no ldmatrix for f32) from unswizzled f32 panels with 64-byte rows (`St<f32, 64, 16>`, `St<f32, 16, 64>`), so lanes two rows apart meet in one bank (2-way). A swizzled or padded f32 panel would fix it.";

fn conflicts_on(target: &str) {
    let mut unexpected = Vec::new();
    // Per known entry: the codes in which it occurred.
    let mut known_codes = vec![0usize; KNOWN.len()];
    // The run `emulator` checks for passing self-tests: one emulation of the library serves both.
    let run = crate::emulator::library_selftests(target);
    if run.code != 0 {
        unexpected.push(format!("self-tests failed on emu:{target}:\n{}", run.out));
    }
    for code in &run.shared {
        let wavefronts: u64 = code.accesses.iter().map(|a| a.wavefronts).sum();
        let ideal: u64 = code.accesses.iter().map(|a| a.ideal).sum();
        println!(
                "{target} {} (code {:016x}): {} shared instructions, {wavefronts} wavefronts, ideal {ideal}",
                code.kernel,
                code.module,
                code.accesses.len()
            );
        let mut counted = vec![false; KNOWN.len()];
        for a in code.conflicts() {
            println!("    {a}");
            let known = KNOWN.iter().position(|e| {
                e.kernel == code.kernel && a.opcode.starts_with(e.opcode) && a.worst_ways <= e.ways
            });
            match known {
                Some(i) => counted[i] = true,
                None => unexpected.push(format!("{target} {}: {a}", code.kernel)),
            }
        }
        for (n, c) in known_codes.iter_mut().zip(counted) {
            *n += usize::from(c);
        }
    }
    // A known conflict must occur exactly where it is said to: more codes is a new conflict,
    // fewer means it was fixed somewhere and the list must shrink.
    for (e, n) in KNOWN.iter().zip(known_codes) {
        let expected = if e.targets.contains(&target) {
            e.codes
        } else {
            0
        };
        if n != expected {
            unexpected.push(format!(
                "{target} {}: known `{}` conflicts (up to {} ways) in {n} codes, expected {expected} ({})",
                e.kernel, e.opcode, e.ways, e.why
            ));
        }
    }
    assert!(
        unexpected.is_empty(),
        "bank conflicts on emu:{target}:\n{}",
        unexpected.join("\n")
    );
}

#[test]
fn library_kernels_have_no_shared_memory_bank_conflicts_on_sm_80() {
    conflicts_on("sm_80");
}

#[test]
fn library_kernels_have_no_shared_memory_bank_conflicts_on_sm_90a() {
    conflicts_on("sm_90a");
}
