//! Pointer-table views (`GlTable::view`): one launch over a list of tensors of different sizes,
//! on the interpreter and the PTX emulator (sm_80, sm_90a) against plain Rust; an access past
//! an entry is reported; mismatched lists are refused; the view compiles for gfx942.

use tilekit::codegen::{compile, Target};
use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32, I32};
use tilekit::kernels::check::Rng;
use tilekit::{Device, ScalarArg, TensorArg, TensorList};

const DEVICES: [&str; 3] = ["cpu", "emu:sm_80", "emu:sm_90a"];
/// Elements per block of [`axpb`].
const PER_BLOCK: usize = 64;

/// `y_e = a·x_e + b` for every entry e of the lists; block k of the grid works on the entry
/// whose range of the prefix table `starts` holds k (found by a linear scan: the lists here
/// are short).
#[tilekit::kernel(warps = 1)]
fn axpb(
    xs: GlTable<f32, 1>,
    ys: GlTableMut<f32, 1>,
    starts: Gl<i32, 1>,
    a: Scalar<f32>,
    b: Scalar<f32>,
) {
    let k = block_idx_x();
    let mut e = lit::<i32>(0);
    let mut next: Scalar<i32> = load(starts.at(1));
    while next.le(k) {
        e += 1;
        next = load(starts.at(e + 1));
    }
    let first: Scalar<i32> = load(starts.at(e));
    let (x, y) = (xs.view(e), ys.view(e));
    let v: Rv<f32, PER_BLOCK> = load(x.chunk(k - first));
    store(y.chunk(k - first), v * a + b);
}

/// Element `k` of entry `e` of `xs`, as a scalar load (no masking: an index past the entry is
/// an error on the interpreter).
#[tilekit::kernel(warps = 1)]
fn peek(xs: GlTable<f32, 1>, e: Scalar<i32>, k: Scalar<i32>, out: GlMut<f32, 1>) {
    let x: Scalar<f32> = load(xs.view(e).at(k));
    store(out.at(0), x);
}

/// Every row of every entry of a table of 2-D tensors summed into `out[e]` (16 rows a tile).
#[tilekit::kernel(warps = 1)]
fn row_tiles(xs: GlTable<f32, 2>, out: GlMut<f32, 2>) {
    let e = block_idx_y();
    let r = block_idx_x();
    let x = xs.view(e);
    let mut acc: Rv<f32, 16> = zeros();
    for c in range(0, ceil_div(x.cols(), 16)) {
        let t: Rt<f32, 16, 16> = load(x.tile(r, c));
        acc += row_sum(t);
    }
    store(out.chunk(e, r), acc);
}

fn list(ts: &[HostTensor]) -> TensorList {
    let refs: Vec<&dyn TensorArg> = ts.iter().map(|t| t as &dyn TensorArg).collect();
    TensorList::new(&refs).expect("one dtype and rank")
}

fn starts(sizes: &[usize]) -> (HostTensor, u32) {
    let mut s = vec![0.0];
    let mut total = 0usize;
    for n in sizes {
        total += n.div_ceil(PER_BLOCK);
        s.push(total as f64);
    }
    (HostTensor::new(I32, &[s.len()], &s).unwrap(), total as u32)
}

#[test]
fn views_of_awkward_sizes_match_plain_rust_on_every_device() {
    let sizes = [1usize, 17, 0, 1000, 4099, 64, 65];
    for name in DEVICES {
        let device = Device::from_name(name).expect("device opens");
        let mut rng = Rng::fresh();
        let xs: Vec<HostTensor> = sizes
            .iter()
            .map(|&n| rng.tensor(F32, &[n], -2.0, 2.0))
            .collect();
        let ys0: Vec<HostTensor> = sizes
            .iter()
            .map(|&n| HostTensor::full(F32, &[n], f64::NAN))
            .collect();
        let (a, b) = (rng.uniform(-1.5, 1.5) as f32, rng.uniform(-1.0, 1.0) as f32);
        let (xl, mut yl) = (list(&xs), list(&ys0));
        let (st, blocks) = starts(&sizes);
        axpb::launch(
            &device,
            blocks,
            &xl,
            &mut yl,
            &st,
            ScalarArg::from(a),
            ScalarArg::from(b),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        for (e, x) in xs.iter().enumerate() {
            let got = yl.host(e).expect("host entry").to_vec();
            // One f32 multiply-add, rounded as the kernel rounds it (fused or not: within one
            // ulp of the f64 value, with |a·x + b| ≤ 4).
            for (i, (g, x)) in got.iter().zip(x.to_vec()).enumerate() {
                let want = f64::from(a) * x + f64::from(b);
                assert!(
                    (g - want).abs() <= 4.0 * f64::from(f32::EPSILON) * 4.0,
                    "{name}: entry {e} element {i}: {g} vs {want} (seed {})",
                    rng.seed
                );
            }
            assert_eq!(got.len(), sizes[e]);
        }
    }
}

#[test]
fn tiles_of_two_dimensional_entries_are_masked_by_each_entry_shape() {
    let shapes = [[16usize, 16], [5, 40], [33, 7], [0, 3]];
    for name in DEVICES {
        let device = Device::from_name(name).expect("device opens");
        let mut rng = Rng::fresh();
        let xs: Vec<HostTensor> = shapes
            .iter()
            .map(|s| rng.tensor(F32, s, -1.0, 1.0))
            .collect();
        let mut out = HostTensor::full(F32, &[shapes.len(), 48], f64::NAN);
        row_tiles::launch(&device, (3, shapes.len() as u32), &list(&xs), &mut out)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for (e, x) in xs.iter().enumerate() {
            let [rows, cols] = shapes[e];
            let v = x.to_vec();
            for r in 0..48 {
                let want: f64 = if r < rows {
                    v[r * cols..(r + 1) * cols].iter().sum()
                } else {
                    0.0
                };
                let got = out.get(&[e, r]).unwrap();
                // f32 sums of at most 40 terms of magnitude ≤ 1.
                assert!(
                    (got - want).abs() <= 40.0 * 40.0 * f64::from(f32::EPSILON),
                    "{name}: entry {e} row {r}: {got} vs {want} (seed {})",
                    rng.seed
                );
            }
        }
    }
}

#[test]
fn an_element_past_an_entry_is_out_of_bounds_on_the_interpreter() {
    let xs = [HostTensor::zeros(F32, &[50]), HostTensor::zeros(F32, &[7])];
    let mut out = HostTensor::zeros(F32, &[1]);
    let l = list(&xs);
    peek::launch(&Device::Cpu, 1, &l, 1.into(), 6.into(), &mut out).expect("index 6 < 7");
    // Entry 0 has 50 elements, but entry 1 only 7.
    let err = peek::launch(&Device::Cpu, 1, &l, 1.into(), 7.into(), &mut out).unwrap_err();
    assert!(err.to_string().contains("out of bounds"), "{err}");
    let err = peek::launch(&Device::Cpu, 1, &l, 2.into(), 0.into(), &mut out).unwrap_err();
    assert!(
        err.to_string().contains("pointer-table entry index"),
        "{err}"
    );
}

#[test]
fn on_the_emulator_reads_past_an_entry_are_masked_and_an_entry_outside_the_table_is_empty() {
    let xs = [
        HostTensor::new(F32, &[3], &[1.0, 2.0, 3.0]).unwrap(),
        HostTensor::new(F32, &[2], &[4.0, 5.0]).unwrap(),
    ];
    let l = list(&xs);
    for name in ["emu:sm_80", "emu:sm_90a"] {
        let device = Device::from_name(name).unwrap();
        let mut out = HostTensor::full(F32, &[1], 9.0);
        peek::launch(&device, 1, &l, 1.into(), 1.into(), &mut out).unwrap();
        assert_eq!(out.to_vec(), [5.0], "{name}");
        // The sanitizer would report any byte read outside entry 1's own allocation.
        for (e, k) in [(1, 2), (1, -1), (2, 0), (-1, 0)] {
            let mut out = HostTensor::full(F32, &[1], 9.0);
            peek::launch(&device, 1, &l, e.into(), k.into(), &mut out)
                .unwrap_or_else(|err| panic!("{name} ({e}, {k}): {err}"));
            assert_eq!(out.to_vec(), [0.0], "{name} ({e}, {k})");
        }
    }
}

/// The emulator learns each entry's bounds from the launch (its own allocation per entry), not
/// from the code: a table whose row claims more elements than its entry holds makes the
/// kernel's masked loads run past the entry, and the sanitizer names the entry.
#[test]
fn the_sanitizer_reports_a_read_past_an_entry_whose_row_claims_too_much() {
    let compiled = compile(axpb::module(), "axpb", Target::Sm80).expect("compiles");
    let emu = tilekit_emu::Emulator::new(compiled.ptx()).expect("parses");
    let mut mem = tilekit_emu::GlobalMemory::new();
    let x = mem.alloc("xs[0]", vec![0u8; 4 * 10]);
    let y = mem.alloc("ys[0]", vec![0u8; 4 * 64]);
    let row = |addr: u64, n: i64| [addr.to_le_bytes(), n.to_le_bytes()].concat();
    // xs claims 64 elements for an entry of 10; ys is honest.
    let xt = mem.alloc("xs", row(x, 64));
    let yt = mem.alloc("ys", row(y, 64));
    let st = mem.alloc(
        "starts",
        [0i32, 1].iter().flat_map(|v| v.to_le_bytes()).collect(),
    );
    let mut args: Vec<Vec<u8>> = Vec::new();
    for t in [xt, yt] {
        args.push(t.to_le_bytes().to_vec());
        for v in [1i32, 2, 2, 1] {
            args.push(v.to_le_bytes().to_vec());
        }
    }
    args.push(st.to_le_bytes().to_vec());
    args.push(2i32.to_le_bytes().to_vec());
    args.push(1i32.to_le_bytes().to_vec());
    args.push(1.0f32.to_le_bytes().to_vec());
    args.push(0.0f32.to_le_bytes().to_vec());
    let params = emu.param_buffer("axpb", &args).expect("parameters");
    let cfg = tilekit_emu::LaunchConfig::new([1, 1, 1], [32, 1, 1]);
    let err = emu
        .launch("axpb", &cfg, &params, &mut mem)
        .expect_err("the read past xs[0] is reported");
    let text = err.to_string();
    assert!(
        text.contains("out of bounds") && text.contains("xs[0]"),
        "{text}"
    );
}

#[test]
fn lists_of_mixed_dtypes_or_ranks_or_strided_tensors_are_refused() {
    let a = HostTensor::zeros(F32, &[4]);
    let b = HostTensor::zeros(BF16, &[4]);
    let c = HostTensor::zeros(F32, &[2, 2]);
    let err = TensorList::new(&[&a, &b]).unwrap_err().to_string();
    assert!(err.contains("entry 1 is a bf16 tensor of rank 1"), "{err}");
    let err = TensorList::new(&[&a, &c]).unwrap_err().to_string();
    assert!(err.contains("rank 2"), "{err}");
    let storage: Vec<f64> = (0..12).map(f64::from).collect();
    let strided = HostTensor::strided(F32, &[3, 2], &[4, 1], &storage).unwrap();
    let err = TensorList::new(&[&strided]).unwrap_err().to_string();
    assert!(err.contains("not contiguous"), "{err}");
    // A list of bf16 tensors for a table of f32 ones: the launcher names the parameter.
    let l = TensorList::new(&[&b]).unwrap();
    let mut ys = TensorList::new(&[&a]).unwrap();
    let (st, _) = starts(&[4]);
    let err = axpb::launch(
        &Device::Cpu,
        1,
        &l,
        &mut ys,
        &st,
        ScalarArg::from(1.0f32),
        ScalarArg::from(0.0f32),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("xs") && err.contains("bf16"), "{err}");
}

#[test]
fn table_views_compile_for_every_gpu_target() {
    for target in [Target::Sm80, Target::Sm90a, Target::Gfx942] {
        for (m, k) in [(axpb::module(), "axpb"), (row_tiles::module(), "row_tiles")] {
            compile(m, k, target).unwrap_or_else(|e| panic!("{k} on {target:?}: {e}"));
        }
    }
}

/// A module made by hand declares its table as a plain `gl<i64, 2>`: the launch still wants a
/// table whose dtype and rank are what the kernel's views read, and never a plain tensor (whose
/// rows could name any address).
#[test]
fn a_launch_checks_tables_against_the_views_the_kernel_reads() {
    let m = tilekit::ir::parse_module(
        "kernel @first(%t: gl<i64, 2>, %out: gl<f32, 1, mut>) warps(1) {
            %e = const[0] : i32
            %g = table_view (%t, %e) : gl<f32, 1>
            %k = const[0] : i32
            %x = load (%g, %k) : f32
            store (%out, %x, %k)
            return ()
        }",
    )
    .unwrap();
    let f = HostTensor::new(F32, &[2], &[3.0, 4.0]).unwrap();
    let b = HostTensor::new(BF16, &[2], &[3.0, 4.0]).unwrap();
    for name in ["cpu", "emu:sm_80"] {
        let device = Device::from_name(name).unwrap();
        let out = || tilekit::LaunchArg::Host(HostTensor::zeros(F32, &[1]));
        let mut ok = [TensorList::new(&[&f]).unwrap().launch_arg(), out()];
        device.launch_module(&m, "first", 1, &mut ok).unwrap();
        assert_eq!(ok[1].shape(), &[1]);
        let mut wrong_dtype = [TensorList::new(&[&b]).unwrap().launch_arg(), out()];
        let err = device
            .launch_module(&m, "first", 1, &mut wrong_dtype)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a list of f32 tensors of rank 1"),
            "{name}: {err}"
        );
        let raw = HostTensor::zeros(tilekit::ir::ScalarType::I64, &[1, 2]);
        let mut plain = [tilekit::LaunchArg::Host(raw), out()];
        let err = device
            .launch_module(&m, "first", 1, &mut plain)
            .unwrap_err()
            .to_string();
        assert!(err.contains("TensorList"), "{name}: {err}");
    }
}
