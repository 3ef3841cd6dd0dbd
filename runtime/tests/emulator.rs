//! The emulator device: every registered library kernel, compiled to PTX for sm_80 and for
//! sm_90a exactly as for a GPU, runs its self-test under `tilekit-emu` with the sanitizer on and
//! agrees with its f64 reference.
#![cfg(feature = "jit")]

use tilekit::{Device, Error, Tensor};

fn selftest_on(target: &str) {
    let device = Device::from_name(&format!("emu:{target}")).expect("the emulator opens");
    let start = std::time::Instant::now();
    let (out, code) = tilekit::cli::selftest(&device);
    eprintln!("{out}emu:{target} self-tests took {:.1} s", start.elapsed().as_secs_f64());
    assert_eq!(code, 0, "self-tests failed on emu:{target}:\n{out}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
}

#[test]
fn library_selftests_pass_on_the_sm_80_emulator() {
    selftest_on("sm_80");
}

#[test]
fn library_selftests_pass_on_the_sm_90a_emulator() {
    selftest_on("sm_90a");
}

#[test]
fn emulator_names_parse_and_unknown_targets_are_refused() {
    let d = Device::from_name("emu:sm_90a").unwrap();
    assert_eq!(d.name(), "emu:sm_90a");
    assert_eq!(d.target().unwrap(), Some("sm_90a"));
    assert!(matches!(Device::from_name("emu:sm_70"), Err(Error::UnknownDevice { .. })));
}

#[test]
fn tensors_on_the_emulator_hold_their_values() {
    let d = Device::emulator("sm_80").unwrap();
    let values: Vec<f32> = (0..37).map(|i| i as f32 * 0.25 - 3.0).collect();
    let t = Tensor::from_slice(&values, &[37], &d).unwrap();
    assert_eq!(t.to_host().unwrap().to_vec(), values.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
}
