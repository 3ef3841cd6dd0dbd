//! Module-scope `.global` variables set by the host before a launch (`LaunchConfig::variables`,
//! the emulator's counterpart of writing at `cuModuleGetGlobal`'s address).

use tilekit_emu::{EmuError, Emulator, GlobalMemory, LaunchConfig};

/// Each thread stores `scale · (ctaid.x · 1000 + tid.x)` at element `ctaid.x · ntid.x + tid.x`
/// of the array `out_at` points to; `scale` keeps its initializer unless the host sets it.
const STORE_THROUGH_VARIABLE: &str = r#"
.version 8.0
.target sm_80
.address_size 64
.visible .global .align 8 .u64 out_at;
.visible .global .align 4 .u32 scale = 7;
.visible .entry store_through()
{
    .reg .b32 %r<8>;
    .reg .b64 %rd<5>;
    ld.global.u64 %rd1, [out_at];
    ld.global.u32 %r1, [scale];
    mov.u32 %r2, %ctaid.x;
    mov.u32 %r3, %ntid.x;
    mov.u32 %r4, %tid.x;
    mad.lo.s32 %r5, %r2, 1000, %r4;
    mul.lo.s32 %r6, %r5, %r1;
    mad.lo.s32 %r7, %r2, %r3, %r4;
    mul.wide.u32 %rd2, %r7, 4;
    add.s64 %rd3, %rd1, %rd2;
    st.global.u32 [%rd3], %r6;
    ret;
}
"#;

fn run(variables: &[(&str, Vec<u8>)]) -> Result<Vec<u32>, EmuError> {
    let emu = Emulator::new(STORE_THROUGH_VARIABLE)?;
    let mut g = GlobalMemory::new();
    let out = g.alloc("out", vec![0u8; 3 * 37 * 4]);
    let mut cfg = LaunchConfig::new([3, 1, 1], [37, 1, 1]);
    cfg.variables
        .insert("out_at".into(), out.to_le_bytes().to_vec());
    for (name, bytes) in variables {
        cfg.variables.insert(name.to_string(), bytes.clone());
    }
    emu.launch("store_through", &cfg, &[], &mut g)?;
    Ok(g.get(out)
        .unwrap()
        .data
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect())
}

fn expected(scale: u32) -> Vec<u32> {
    (0..3u32)
        .flat_map(|b| (0..37u32).map(move |t| scale * (b * 1000 + t)))
        .collect()
}

#[test]
fn a_set_variable_is_what_the_kernel_reads_and_others_keep_their_initializer() {
    assert_eq!(run(&[]).unwrap(), expected(7));
    assert_eq!(
        run(&[("scale", 3u32.to_le_bytes().to_vec())]).unwrap(),
        expected(3)
    );
}

#[test]
fn setting_an_unknown_or_too_small_variable_is_an_error() {
    let e = run(&[("offset", vec![0; 4])]).unwrap_err().to_string();
    assert!(
        e.contains("no module-scope .global variable `offset`"),
        "{e}"
    );
    let e = run(&[("scale", vec![0; 8])]).unwrap_err().to_string();
    assert!(e.contains("8 bytes for variable `scale` of 4 bytes"), "{e}");
}
