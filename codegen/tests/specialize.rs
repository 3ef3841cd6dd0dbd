//! Compiles for alignment facts (`tilekit_codegen::specialize`): the facts are part of the
//! compile cache's key, survive the disk cache, and change only the global → shared copies.
//! (Its own test binary: it sets `TILEKIT_CACHE_DIR`, which is process-wide.)

mod kernels;

use tilekit_codegen::{cache, compile_cached, compile_cached_with, Facts, Stage, Target};
use tilekit_ir::{ScalarType::F32, Swizzle};

#[test]
fn facts_are_part_of_the_cache_key_and_survive_the_disk_cache() {
    let m = kernels::gemm_shared(F32, Swizzle::None);
    let facts = Facts::aligned16(["a", "b"]);
    let general_key = cache::key(&m, "gemm_shared", Target::Sm80);
    let aligned_key = cache::key_with(&m, "gemm_shared", Target::Sm80, &facts);
    assert_ne!(general_key, aligned_key);
    assert_eq!(
        general_key,
        cache::key_with(&m, "gemm_shared", Target::Sm80, &Facts::general())
    );

    let dir = std::env::temp_dir().join(format!("tilekit-facts-cache-{}", std::process::id()));
    std::env::set_var("TILEKIT_CACHE_DIR", &dir);
    let general = compile_cached(&m, "gemm_shared", Target::Sm80).unwrap();
    let aligned = compile_cached_with(&m, "gemm_shared", Target::Sm80, &facts).unwrap();
    cache::clear_memory();
    let aligned_disk = compile_cached_with(&m, "gemm_shared", Target::Sm80, &facts).unwrap();
    let general_disk = compile_cached(&m, "gemm_shared", Target::Sm80).unwrap();
    std::env::remove_var("TILEKIT_CACHE_DIR");
    let entries = std::fs::read_dir(&dir).unwrap().count();
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(entries, 2, "one entry per facts");
    assert_eq!(aligned_disk.timings.total(), 0.0, "a hit on disk");
    assert_eq!(aligned_disk.facts, facts);
    assert!(general_disk.facts.is_general());
    assert_eq!(aligned_disk.ptx(), aligned.ptx());
    assert_eq!(general_disk.ptx(), general.ptx());
    // The aligned variant copies whole chunks only: no fallback loads, no alignment test.
    assert_ne!(aligned.ptx(), general.ptx());
    assert!(general.ptx().contains("ld.global"));
    assert!(!aligned.ptx().contains("ld.global"));
    assert!(aligned.ptx().contains("cp.async.cg.shared.global"));
    assert_eq!(aligned.stage(Stage::Tile), general.stage(Stage::Tile));
}

#[test]
fn facts_change_nothing_on_a_kernel_without_tile_copies() {
    let m = kernels::scale();
    let func = m.kernel("scale").unwrap();
    let facts = Facts::all_aligned16(func);
    assert!(!facts.is_general());
    for t in [Target::Sm80, Target::Sm90a] {
        let a = tilekit_codegen::compile_with(&m, "scale", t, &facts).unwrap();
        let g = tilekit_codegen::compile(&m, "scale", t).unwrap();
        assert_eq!(a.ptx(), g.ptx(), "{t}");
    }
}
