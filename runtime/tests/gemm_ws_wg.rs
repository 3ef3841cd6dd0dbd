//! The warp-specialized warpgroup GEMM (`tilekit::kernels::gemm_ws_wg`): it agrees with an f64
//! reference on the interpreter and on the sm_90a PTX emulator (sanitizer on) at shapes that
//! are not multiples of the tile, both with views TMA can describe (the producer's copies are
//! `cp.async.bulk.tensor` on the `full` semaphores) and with views it cannot (row strides not
//! a multiple of 16 bytes: the copy by the producer warp's lanes); on sm_90a the producer
//! issues UTMALDG, `setmaxnreg` is in effect (no ptxas advisory), the consumers' K loop runs
//! its HGMMA back to back with no spills, and prints its figure.
#![cfg(feature = "jit")]

use tilekit::codegen::{compile_with, hot_loop, ptxas, sass, Facts, Stage, Target};
use tilekit::dsl::bf16;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::check::{normalized_max_error, poisoned, Rng};
use tilekit::kernels::gemm::{grid, reference};
use tilekit::kernels::gemm_ws_wg::{
    bias_gelu_bound, bias_gelu_case, bias_gelu_reference, gemm_ws_wg, gemm_ws_wg_bias_gelu,
    gemm_ws_wg_persistent, persistent_case,
};
use tilekit::{Device, Tensor};

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
}

/// Runs `<f32, 128, 256, 64, 3>` on `device` at each (m, n, k) against the f64 reference.
fn agrees(device: &Device, shapes: &[(usize, usize, usize)]) {
    let mut rng = Rng::new(seed());
    for &(m, n, k) in shapes {
        let a = rng.tensor(BF16, &[m, k], -1.0, 1.0);
        let b = rng.tensor(BF16, &[k, n], -1.0, 1.0);
        let want = reference(&a.to_vec(), &b.to_vec(), m, k, n);
        let mut c = poisoned(F32, &[m, n]);
        gemm_ws_wg::<f32, 128, 256, 64, 3>::launch(device, grid(m, n, 128, 256), &a, &b, &mut c)
            .unwrap_or_else(|e| panic!("{m}×{n}×{k} on {}: {e}", device.name()));
        let err = normalized_max_error(&c.to_vec(), &want);
        assert!(
            err <= 1e-5,
            "{m}×{n}×{k} on {}: normalized error {err:.2e} (seed {})",
            device.name(),
            rng.seed
        );
    }
}

/// Partial tiles in M, N and K with 16-byte row strides (TMA: K and N multiples of 8), K
/// spanning more steps than the ring has stages; then strides TMA cannot describe.
const TMA_SHAPES: [(usize, usize, usize); 2] = [(200, 264, 328), (130, 520, 72)];
const LANE_SHAPES: [(usize, usize, usize); 1] = [(70, 45, 130)];

#[test]
fn agrees_with_the_reference_on_the_sm_90a_emulator() {
    let device = Device::emulator("sm_90a").unwrap();
    agrees(&device, &TMA_SHAPES);
    agrees(&device, &LANE_SHAPES);
}

#[test]
fn agrees_with_the_reference_on_the_interpreter() {
    agrees(&Device::Cpu, &TMA_SHAPES[..1]);
    agrees(&Device::Cpu, &LANE_SHAPES);
}

/// The aligned sm_90a compile: TMA loads on the semaphores, register reallocation, HGMMA
/// m64n256k16 × 4 back to back in the consumers' K loop, no spills, no ptxas advisory, and a
/// hot-loop figure within the target. Prints the figure (`-- gemm_ws_wg:: --nocapture`).
#[test]
fn the_sm_90a_build_is_tma_fed_register_split_and_spill_free() {
    let module = gemm_ws_wg::<f32, 128, 256, 64, 3>::try_module().expect("the kernel builds");
    let name = gemm_ws_wg::<f32, 128, 256, 64, 3>::NAME;
    let facts = Facts::all_aligned16(module.kernel(name).expect("the kernel"));
    let c = compile_with(module, name, Target::Sm90a, &facts).expect("sm_90a compiles");
    let ptx = c.stage(Stage::Ptx).to_string();
    for want in [
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes",
        "setmaxnreg.dec.sync.aligned.u32 40;",
        "setmaxnreg.inc.sync.aligned.u32 232;",
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16",
        "fence.mbarrier_init",
        // The f32 output goes through shared memory and a TMA store too.
        "cp.async.bulk.tensor.2d.global.shared::cta.bulk_group",
    ] {
        assert!(ptx.contains(want), "no {want} in the PTX");
    }
    // The producer's copies are TMA: no lane copies into shared memory.
    assert!(!ptx.contains("mbarrier.complete_tx"), "a lane copy is left");
    let assembled = ptxas::assemble(c.ptx(), Target::Sm90a).expect("ptxas");
    let advisories = ptxas::performance_advisories(&assembled.log);
    assert!(advisories.is_empty(), "{advisories:?}\n{}", assembled.log);
    let report = assembled.report;
    assert_eq!(
        (report.spill_store_bytes, report.spill_load_bytes),
        (0, 0),
        "{report:?}"
    );
    let text = c.sass().expect("the SASS");
    let mix = sass::instruction_mix(&text);
    for op in ["UTMALDG", "UTMASTG", "SETMAXREG", "HGMMA"] {
        assert!(mix.keys().any(|k| k.contains(op)), "no {op}: {mix:?}");
    }
    assert!(!mix.contains_key("HMMA"), "{mix:?}");
    let h = hot_loop::sass_hot_loop(&text)
        .expect("the SASS reads")
        .expect("a K loop");
    assert_eq!(h.mix.get("HGMMA"), Some(&4), "{h}");
    assert_eq!(h.tensor, 4, "{h}");
    let f = h.figure().expect("a figure");
    println!(
        "gemm_ws_wg<f32,128,256,64,3> sm_90a aligned: {} regs, {} B static shared, {h}",
        report.registers, report.shared_bytes
    );
    assert!(f > 0.0 && f <= 0.20, "figure {f:.3} over 0.20: {h}");
    // The producer's code after its `setmaxnreg.dec` names no register past the 40 it keeps.
    let producer: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("SETMAXREG.DEALLOC"))
        .take_while(|l| !l.contains("SETMAXREG.TRY_ALLOC"))
        .collect();
    assert!(!producer.is_empty(), "no register release in the SASS");
    let highest = producer
        .iter()
        .flat_map(|l| l.split(|c: char| !c.is_ascii_alphanumeric()))
        .filter_map(|w| w.strip_prefix('R')?.parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    assert!(
        highest < 40,
        "the producer uses R{highest} past its 40 registers"
    );
    // HGMMA of one step back to back: no WARPGROUP.DEPBAR between two of them.
    let lines: Vec<&str> = text.lines().collect();
    let hg: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("HGMMA"))
        .collect();
    let mut back_to_back = 0;
    for w in hg.windows(2) {
        if !lines[w[0]..w[1]].iter().any(|l| l.contains("DEPBAR")) {
            back_to_back += 1;
        }
    }
    assert!(back_to_back >= 3, "HGMMA not back to back:\n{text}");
}

/// The registered self-test (both output types) on the interpreter and the sm_90a emulator.
#[test]
fn the_registered_self_test_passes() {
    let info = tilekit::registry::kernels()
        .into_iter()
        .find(|k| k.name == gemm_ws_wg::<bf16, 128, 256, 64, 4>::NAME)
        .expect("gemm_ws_wg is registered");
    let test = info.selftest.expect("a self-test");
    for device in [Device::Cpu, Device::emulator("sm_90a").unwrap()] {
        let out = test(&device).unwrap_or_else(|e| panic!("on {}: {e}", device.name()));
        println!("gemm_ws_wg self-test on {}: {out}", device.name());
    }
}

/// Transposed and strided views: A given as the transpose of a `[K, M]` tensor and B as the
/// transpose of an `[N, K]` one (nn.Linear's weight layout), whose element strides are not 1
/// (no tensor map: the producer warp's lanes copy), and C a column window of a wider tensor,
/// whose columns outside the window must keep their values.
fn transposed_views_agree_on(device: &Device) {
    let mut rng = Rng::new(seed());
    let (m, n, k) = (70, 264, 96);
    let at = rng.tensor(BF16, &[k, m], -1.0, 1.0);
    let bt = rng.tensor(BF16, &[n, k], -1.0, 1.0);
    let (atv, btv) = (at.to_vec(), bt.to_vec());
    let a: Vec<f64> = (0..m * k).map(|i| atv[(i % k) * m + i / k]).collect();
    let b: Vec<f64> = (0..k * n).map(|i| btv[(i % n) * k + i / n]).collect();
    let want = reference(&a, &b, m, k, n);
    let ta = Tensor::from_host(&at, device)
        .unwrap()
        .transpose(0, 1)
        .unwrap();
    let tb = Tensor::from_host(&bt, device)
        .unwrap()
        .transpose(0, 1)
        .unwrap();
    let wide = Tensor::full(F32, &[m, n + 9], 7.0, device).unwrap();
    let mut c = wide.narrow(1, 5, n).unwrap();
    gemm_ws_wg::<f32, 128, 256, 64, 3>::launch(device, grid(m, n, 128, 256), &ta, &tb, &mut c)
        .unwrap_or_else(|e| panic!("transposed views on {}: {e}", device.name()));
    let err = normalized_max_error(&c.to_f64_vec().unwrap(), &want);
    assert!(
        err <= 1e-5,
        "transposed views on {}: normalized error {err:.2e} (seed {})",
        device.name(),
        rng.seed
    );
    let all = wide.to_f64_vec().unwrap();
    for i in 0..m {
        for j in (0..5).chain(n + 5..n + 9) {
            assert_eq!(
                all[i * (n + 9) + j],
                7.0,
                "C[{i}][{j}] outside the view was written"
            );
        }
    }
}

#[test]
fn transposed_views_agree_with_the_reference() {
    transposed_views_agree_on(&Device::Cpu);
    transposed_views_agree_on(&Device::emulator("sm_90a").unwrap());
}

/// The bf16 output goes through shared memory (`stmatrix`, then a TMA store where C's view
/// allows): on `device` at each (m, n, k), with C's rows `n + pad` apart in a buffer filled
/// with a sentinel, every element agrees with the f64 reference within its bound (half a bf16
/// unit of the value plus K + 2 f32 roundings of Σ|a||b|, doubled) and no padding element is
/// written.
fn bf16_output_agrees(device: &Device, shapes: &[(usize, usize, usize, usize)]) {
    let mut rng = Rng::new(seed());
    for &(m, n, k, pad) in shapes {
        let a = rng.tensor(BF16, &[m, k], -1.0, 1.0);
        let b = rng.tensor(BF16, &[k, n], -1.0, 1.0);
        let (av, bv) = (a.to_vec(), b.to_vec());
        let want = reference(&av, &bv, m, k, n);
        let abs = |v: &[f64]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
        let scale = reference(&abs(&av), &abs(&bv), m, k, n);
        let stride = n + pad;
        let sentinel = -3.25;
        let storage = vec![sentinel; m * stride];
        let mut c = HostTensor::strided(BF16, &[m, n], &[stride, 1], &storage).unwrap();
        gemm_ws_wg::<bf16, 128, 256, 64, 4>::launch(device, grid(m, n, 128, 256), &a, &b, &mut c)
            .unwrap_or_else(|e| panic!("{m}×{n}×{k} on {}: {e}", device.name()));
        let out = c.storage();
        for i in 0..m {
            for j in 0..stride {
                let got = out[i * stride + j];
                if j >= n {
                    assert_eq!(
                        got,
                        sentinel,
                        "{m}×{n}×{k} on {}: C[{i}][{j}] past the view was written",
                        device.name()
                    );
                    continue;
                }
                let w = want[i * n + j];
                let bound = 2.0
                    * (2f64.powi(-9) * w.abs()
                        + (k as f64 + 2.0) * 2f64.powi(-24) * scale[i * n + j]);
                assert!(
                    (got - w).abs() <= bound,
                    "{m}×{n}×{k} on {}: C[{i}][{j}] = {got}, reference {w}, bound {bound:.2e} (seed {})",
                    device.name(),
                    rng.seed
                );
            }
        }
    }
}

/// 16-byte row pitches (the TMA store, clipped at ragged M and N, the box past N landing on
/// padding it must not touch), then a pitch TMA cannot describe (the lanes copy).
const BF16_SHAPES: [(usize, usize, usize, usize); 3] =
    [(200, 264, 328, 8), (130, 520, 72, 0), (70, 45, 130, 3)];

#[test]
fn bf16_output_through_shared_memory_agrees_on_the_sm_90a_emulator() {
    bf16_output_agrees(&Device::emulator("sm_90a").unwrap(), &BF16_SHAPES);
}

#[test]
fn bf16_output_through_shared_memory_agrees_on_the_interpreter() {
    bf16_output_agrees(&Device::Cpu, &BF16_SHAPES[..1]);
    bf16_output_agrees(&Device::Cpu, &BF16_SHAPES[2..]);
}

/// The bias + GELU epilogue on awkward shapes (TMA-describable views and not).
#[test]
fn the_bias_gelu_epilogue_agrees_with_the_reference() {
    let mut rng = Rng::new(seed());
    for device in [Device::Cpu, Device::emulator("sm_90a").unwrap()] {
        for shape in [(70, 45, 130), (200, 264, 72)] {
            let ratio = bias_gelu_case(&device, &mut rng, shape)
                .unwrap_or_else(|e| panic!("{shape:?} on {}: {e}", device.name()));
            assert!(
                ratio <= 1.0,
                "{shape:?} on {}: error {ratio:.2} times its bound (seed {})",
                device.name(),
                rng.seed
            );
        }
    }
}

/// The bias + GELU epilogue with A and B transposed views (no tensor maps: the producer's
/// lanes copy) and C a column window of a wider bf16 tensor whose other columns keep their
/// values.
#[test]
fn the_bias_gelu_epilogue_agrees_on_transposed_views_and_a_column_window() {
    let mut rng = Rng::new(seed());
    let (m, n, k) = (70, 264, 96);
    for device in [Device::Cpu, Device::emulator("sm_90a").unwrap()] {
        let at = rng.tensor(BF16, &[k, m], -1.0, 1.0);
        let bt = rng.tensor(BF16, &[n, k], -1.0, 1.0);
        let bias = rng.tensor(F32, &[n], -2.0, 2.0);
        let alpha = 0.75f32;
        let (atv, btv) = (at.to_vec(), bt.to_vec());
        let a: Vec<f64> = (0..m * k).map(|i| atv[(i % k) * m + i / k]).collect();
        let b: Vec<f64> = (0..k * n).map(|i| btv[(i % n) * k + i / n]).collect();
        let want = bias_gelu_reference(&a, &b, &bias.to_vec(), f64::from(alpha), (m, k, n));
        let ta = Tensor::from_host(&at, &device)
            .unwrap()
            .transpose(0, 1)
            .unwrap();
        let tb = Tensor::from_host(&bt, &device)
            .unwrap()
            .transpose(0, 1)
            .unwrap();
        let tbias = Tensor::from_host(&bias, &device).unwrap();
        let wide = Tensor::full(BF16, &[m, n + 9], 7.0, &device).unwrap();
        let mut c = wide.narrow(1, 5, n).unwrap();
        gemm_ws_wg_bias_gelu::<bf16, 128, 256, 64, 4>::launch(
            &device,
            grid(m, n, 128, 256),
            &ta,
            &tb,
            &tbias,
            alpha.into(),
            &mut c,
        )
        .unwrap_or_else(|e| panic!("transposed views on {}: {e}", device.name()));
        let got = c.to_f64_vec().unwrap();
        let abs = |v: &[f64]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
        let scale = reference(&abs(&a), &abs(&b), m, k, n);
        let product = reference(&a, &b, m, k, n);
        let biasv = bias.to_vec();
        let alpha = f64::from(alpha);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let x = alpha * product[i] + biasv[i % n];
            let bound = bias_gelu_bound(BF16, *w, x, alpha * scale[i], k);
            assert!(
                (g - w).abs() <= bound,
                "transposed views on {}: C[{}][{}] = {g}, reference {w}, bound {bound:.2e} (seed {})",
                device.name(),
                i / n,
                i % n,
                rng.seed
            );
        }
        let all = wide.to_f64_vec().unwrap();
        for i in 0..m {
            for j in (0..5).chain(n + 5..n + 9) {
                assert_eq!(
                    all[i * (n + 9) + j],
                    7.0,
                    "C[{i}][{j}] outside the view was written"
                );
            }
        }
    }
}

/// The aligned sm_90a compile of the bf16 output: `stmatrix` into the epilogue buffers, the
/// proxy fence and TMA stores (UTMASTG) out of them, and still no spills, no ptxas advisory
/// and the K loop's figure within the target; the general compile keeps `stmatrix` and copies
/// by the lanes. Prints the figures (`-- gemm_ws_wg:: --nocapture`).
#[test]
fn the_bf16_epilogue_is_stmatrix_and_tma_store() {
    for (aligned, name) in [
        (true, gemm_ws_wg::<bf16, 128, 256, 64, 4>::NAME),
        (false, gemm_ws_wg::<bf16, 128, 256, 64, 4>::NAME),
        (true, gemm_ws_wg_bias_gelu::<bf16, 128, 256, 64, 4>::NAME),
    ] {
        let module = if name.contains("bias") {
            gemm_ws_wg_bias_gelu::<bf16, 128, 256, 64, 4>::try_module()
        } else {
            gemm_ws_wg::<bf16, 128, 256, 64, 4>::try_module()
        }
        .expect("the kernel builds");
        let facts = if aligned {
            Facts::all_aligned16(module.kernel(name).expect("the kernel"))
        } else {
            Facts::general()
        };
        let c = compile_with(module, name, Target::Sm90a, &facts).expect("sm_90a compiles");
        let ptx = c.stage(Stage::Ptx).to_string();
        assert_eq!(
            ptx.matches("stmatrix.sync.aligned.m8n8.x4.shared.b16")
                .count(),
            16,
            "{name}: one stmatrix per 16×16 subtile of a warp's 16×256 strip"
        );
        let store = "cp.async.bulk.tensor.2d.global.shared::cta.bulk_group";
        assert_eq!(ptx.contains(store), aligned, "{name} aligned {aligned}");
        // The semaphores' fences are there either way; the store's comes with the store.
        assert!(!aligned || ptx.contains("fence.proxy.async.shared::cta"));
        let assembled = ptxas::assemble(c.ptx(), Target::Sm90a).expect("ptxas");
        let advisories = ptxas::performance_advisories(&assembled.log);
        assert!(advisories.is_empty(), "{advisories:?}\n{}", assembled.log);
        let report = assembled.report;
        assert_eq!(
            (report.spill_store_bytes, report.spill_load_bytes),
            (0, 0),
            "{name}: {report:?}"
        );
        let text = c.sass().expect("the SASS");
        let mix = sass::instruction_mix(&text);
        assert!(mix.keys().any(|k| k.contains("STSM")), "no STSM: {mix:?}");
        assert_eq!(
            mix.keys().any(|k| k.contains("UTMASTG")),
            aligned,
            "{mix:?}"
        );
        let h = hot_loop::sass_hot_loop(&text)
            .expect("the SASS reads")
            .expect("a K loop");
        let f = h.figure().expect("a figure");
        println!(
            "{name} sm_90a {}: {} regs, {} B shared, {h}",
            if aligned { "aligned" } else { "general" },
            report.registers,
            report.shared_bytes
        );
        assert!(f > 0.0 && f <= 0.20, "figure {f:.3} over 0.20: {h}");
    }
}

/// The persistent kernel, both output types, at (m, n, k, blocks): one tile on more blocks than
/// tiles (the idle blocks write nothing), 9 tiles on 2 blocks, 22 tiles (11 tile rows: a full
/// band of the order and a ragged one) on 3 blocks with K of 2 steps (the ring's phases run on
/// across tiles), and views TMA cannot describe (the lanes copy). Each element within its
/// bound (`persistent_case`); seeds from `TILEKIT_SEED`.
fn persistent_agrees(device: &Device, shapes: &[(usize, usize, usize, u32)]) {
    let mut rng = Rng::fresh();
    for &(m, n, k, blocks) in shapes {
        for out in [F32, BF16] {
            let ratio = persistent_case(device, &mut rng, (m, n, k), Some(blocks), out)
                .unwrap_or_else(|e| panic!("{m}×{n}×{k} on {}: {e}", device.name()));
            assert!(
                ratio <= 1.0,
                "{m}×{n}×{k} → {out} on {blocks} blocks of {}: error {ratio:.2} times its bound (seed {})",
                device.name(),
                rng.seed
            );
        }
    }
}

#[test]
fn the_persistent_kernel_agrees_on_the_sm_90a_emulator() {
    persistent_agrees(
        &Device::emulator("sm_90a").unwrap(),
        &[
            (128, 256, 64, 5),
            (300, 520, 200, 2),
            (1300, 264, 72, 3),
            (70, 45, 130, 2),
        ],
    );
}

#[test]
fn the_persistent_kernel_agrees_on_the_interpreter() {
    persistent_agrees(&Device::Cpu, &[(300, 520, 200, 2), (70, 45, 130, 3)]);
}

/// The persistent kernel's aligned sm_90a compiles: TMA loads and stores, register
/// reallocation, HGMMA back to back in the K loop (4 per step), no spills, no ptxas advisory,
/// figure within 0.20. Prints the figures (`-- gemm_ws_wg:: --nocapture`).
#[test]
fn the_persistent_sm_90a_build_is_tma_fed_and_spill_free() {
    let builds = [
        (
            gemm_ws_wg_persistent::<f32, 128, 256, 64, 3>::NAME,
            gemm_ws_wg_persistent::<f32, 128, 256, 64, 3>::try_module(),
        ),
        (
            gemm_ws_wg_persistent::<bf16, 128, 256, 64, 4>::NAME,
            gemm_ws_wg_persistent::<bf16, 128, 256, 64, 4>::try_module(),
        ),
    ];
    for (name, module) in builds {
        let module = module.expect("the kernel builds");
        let facts = Facts::all_aligned16(module.kernel(name).expect("the kernel"));
        let c = compile_with(module, name, Target::Sm90a, &facts).expect("sm_90a compiles");
        let assembled = ptxas::assemble(c.ptx(), Target::Sm90a).expect("ptxas");
        let advisories = ptxas::performance_advisories(&assembled.log);
        assert!(advisories.is_empty(), "{advisories:?}\n{}", assembled.log);
        let report = assembled.report;
        assert_eq!(
            (report.spill_store_bytes, report.spill_load_bytes),
            (0, 0),
            "{name}: {report:?}"
        );
        let text = c.sass().expect("the SASS");
        let mix = sass::instruction_mix(&text);
        for op in ["UTMALDG", "UTMASTG", "SETMAXREG", "HGMMA"] {
            assert!(
                mix.keys().any(|k| k.contains(op)),
                "{name}: no {op}: {mix:?}"
            );
        }
        let h = hot_loop::sass_hot_loop(&text)
            .expect("the SASS reads")
            .expect("a K loop");
        assert_eq!(h.mix.get("HGMMA"), Some(&4), "{name}: {h}");
        let f = h.figure().expect("a figure");
        println!(
            "{name} sm_90a aligned: {} regs, {} B shared, {h}",
            report.registers, report.shared_bytes
        );
        assert!(f > 0.0 && f <= 0.20, "{name}: figure {f:.3} over 0.20: {h}");
    }
}
