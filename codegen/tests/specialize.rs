//! Compiles for alignment facts (`tilekit_codegen::specialize`): the facts are part of the
//! compile cache's key, survive the disk cache, and remove the copies' element-wise fallback.
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
    // TILEKIT_DUMP keeps both variants' files apart.
    assert_ne!(aligned.dump_stem(), general.dump_stem());
}
