//! Tool discovery (ptxas, ld.lld), stage dumps and the disk cache, which read process-wide
//! environment variables: one test, so that nothing else in this binary runs while they are set.

mod kernels;

use tilekit_codegen::{cache, compile, compile_cached, ptxas, CodegenError, Stage, Target};

#[test]
fn environment_overrides_for_tools_and_dumps() {
    let c = compile(&kernels::scale(), "scale", Target::Sm80).unwrap();

    std::env::set_var("TILEKIT_PTXAS", "/nonexistent/ptxas");
    let e = ptxas::assemble(c.ptx(), Target::Sm80).unwrap_err();
    std::env::remove_var("TILEKIT_PTXAS");
    assert!(
        matches!(&e, CodegenError::Tool { tool, .. } if tool == "ptxas"),
        "{e}"
    );
    assert!(e.to_string().contains("scripts/install-deps.sh"), "{e}");

    // A missing ld.lld fails the AMD compile with what to install.
    std::env::set_var("TILEKIT_LLD", "/nonexistent/ld.lld");
    let e = compile(&kernels::scale(), "scale", Target::Gfx942).unwrap_err();
    std::env::remove_var("TILEKIT_LLD");
    assert!(
        matches!(&e, CodegenError::Tool { tool, .. } if tool == "ld.lld"),
        "{e}"
    );
    assert!(e.to_string().contains("/nonexistent/ld.lld"), "{e}");

    let dir = std::env::temp_dir().join(format!("tilekit-dump-{}", std::process::id()));
    std::env::set_var("TILEKIT_DUMP", &dir);
    let c = compile(&kernels::scale(), "scale", Target::Sm90a);
    std::env::remove_var("TILEKIT_DUMP");
    let c = c.unwrap();
    for s in Stage::ALL
        .into_iter()
        .filter(|s| s.applies_to(Target::Sm90a))
    {
        let path = dir.join(format!("{}.sm_90a.{}", c.dump_stem(), s.name()));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        assert_eq!(text, c.stage(s));
    }
    // Two instantiations of one kernel (different IR, same kernel name) keep separate files.
    assert!(c.dump_stem().starts_with("scale-"), "{}", c.dump_stem());
    let other = tilekit_ir::parse_module(
        "kernel @scale(%x: gl<f16, 2, mut>) warps(1) {
           %0 = block_idx.x () : i32
           %1 = load (%x, %0, %0) : rt<f16, 16x16, row>
           store (%x, %1, %0, %0)
           return ()
         }",
    )
    .unwrap();
    let other = compile(&other, "scale", Target::Sm90a).unwrap();
    assert_ne!(c.dump_stem(), other.dump_stem());
    let _ = std::fs::remove_dir_all(&dir);

    // The disk cache: a second process would find the entry; here, a key the memory cache has
    // not seen is compiled and stored, and a stored entry loads back equal.
    let cache_dir = std::env::temp_dir().join(format!("tilekit-cache-{}", std::process::id()));
    std::env::set_var("TILEKIT_CACHE_DIR", &cache_dir);
    let m = kernels::softmax_rows();
    let first = compile_cached(&m, "softmax_rows", Target::Sm80);
    let again = compile_cached(&m, "softmax_rows", Target::Sm80);
    cache::clear_memory();
    let from_disk = compile_cached(&m, "softmax_rows", Target::Sm80);
    std::env::remove_var("TILEKIT_CACHE_DIR");
    let (first, again, from_disk) = (first.unwrap(), again.unwrap(), from_disk.unwrap());
    for s in Stage::ALL {
        assert_eq!(first.stage(s), again.stage(s));
        assert_eq!(first.stage(s), from_disk.stage(s));
    }
    assert_eq!(again.timings.total(), 0.0, "the second compile is a hit");
    // ptxas's output from the compile's own check travels with the entry, so registers and
    // SASS need no second assembly.
    let assembly = |c: &tilekit_codegen::Compiled| {
        let a = c.assembly().expect("the compile assembled its PTX");
        (a.cubin.clone(), a.log.clone(), a.report.registers)
    };
    assert_eq!(assembly(&first), assembly(&from_disk));
    assert!(assembly(&first).2 > 0);
    assert_eq!(from_disk.timings.total(), 0.0, "the third is a hit on disk");
    assert_eq!(
        (
            from_disk.args.clone(),
            from_disk.warps,
            from_disk.shared_bytes,
            from_disk.target
        ),
        (
            first.args.clone(),
            first.warps,
            first.shared_bytes,
            first.target
        )
    );
    let entries: Vec<_> = std::fs::read_dir(&cache_dir).unwrap().collect();
    assert_eq!(entries.len(), 1);
    let entry = entries[0].as_ref().unwrap().path();
    let key = std::fs::read_to_string(entry.join("key")).unwrap();
    assert_eq!(key, cache::key(&m, "softmax_rows", Target::Sm80));
    assert_eq!(
        std::fs::read_to_string(entry.join("ptx")).unwrap(),
        first.ptx()
    );
    // Another target is another key.
    assert_ne!(key, cache::key(&m, "softmax_rows", Target::Sm90a));
    // An entry written by a code generator built from other sources is a miss: the key names
    // the sources' hash, and a stored key that differs is not loaded.
    let source = env!("TILEKIT_CODEGEN_SOURCE");
    assert!(key.contains(&format!(" source {source} ")), "{key}");
    let stale = key.replace(source, "0123456789abcdef");
    std::fs::write(entry.join("key"), &stale).unwrap();
    std::env::set_var("TILEKIT_CACHE_DIR", &cache_dir);
    cache::clear_memory();
    let recompiled = compile_cached(&m, "softmax_rows", Target::Sm80).unwrap();
    std::env::remove_var("TILEKIT_CACHE_DIR");
    assert!(
        recompiled.timings.total() > 0.0,
        "a stale entry is compiled again"
    );
    assert_eq!(recompiled.ptx(), first.ptx());
    assert_eq!(
        std::fs::read_to_string(entry.join("key")).unwrap(),
        key,
        "the stale entry is replaced"
    );
    let _ = std::fs::remove_dir_all(&cache_dir);

    // An AMD entry keeps its code object (bytes) with the text stages.
    std::env::set_var("TILEKIT_CACHE_DIR", &cache_dir);
    let first = compile_cached(&m, "softmax_rows", Target::Gfx942);
    cache::clear_memory();
    let from_disk = compile_cached(&m, "softmax_rows", Target::Gfx942);
    std::env::remove_var("TILEKIT_CACHE_DIR");
    let (first, from_disk) = (first.unwrap(), from_disk.unwrap());
    assert_eq!(from_disk.timings.total(), 0.0, "a hit on disk");
    assert!(first.code_object().is_some_and(|co| !co.is_empty()));
    assert_eq!(first.code_object(), from_disk.code_object());
    assert_eq!(first.stage(Stage::Asm), from_disk.stage(Stage::Asm));
    let _ = std::fs::remove_dir_all(&cache_dir);
}
