//! What every device checks before a launch, whatever runs it: the grid is within the hardware's
//! limits, and no writable tensor argument shares memory with another argument.

use std::collections::BTreeMap;

use crate::error::Error;
use crate::ir::{Module, Type};

use super::{DeviceView, Grid, LaunchArg};

/// The most blocks along x on every GPU tilekit targets (CUDA and HIP: 2^31 − 1).
pub const MAX_GRID_X: u32 = i32::MAX as u32;
/// The most blocks along y and along z (CUDA and HIP: 65535).
pub const MAX_GRID_YZ: u32 = 65535;

/// A grid every device can launch: at least one block along each dimension, at most
/// [`MAX_GRID_X`] along x and [`MAX_GRID_YZ`] along y and z. The cpu device keeps to the GPUs'
/// limits too, so a launch that runs on one device is a launch that runs on all.
pub(crate) fn check_grid(kernel: &str, grid: Grid) -> Result<(), Error> {
    let [x, y, z] = grid.0;
    if grid.0.contains(&0) {
        return Err(Error::EmptyGrid {
            kernel: kernel.to_string(),
            grid: grid.0,
        });
    }
    if x > MAX_GRID_X || y > MAX_GRID_YZ || z > MAX_GRID_YZ {
        return Err(Error::GridTooLarge {
            kernel: kernel.to_string(),
            grid: grid.0,
        });
    }
    Ok(())
}

/// The kernel's tensor parameters: (index, name, writable), in order; `None` when the module
/// has no such kernel or the arguments do not match its parameters in number (the launch
/// refuses those itself).
fn tensor_params(module: &Module, kernel: &str, args: usize) -> Option<Vec<(usize, String, bool)>> {
    let func = module.kernel(kernel)?;
    if func.params.len() != args {
        return None;
    }
    Some(
        func.params
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match func.value_types.get(p.index())? {
                Type::Global { mutable, .. } => {
                    let name = func.value_names.get(p.index()).cloned().flatten();
                    Some((i, name.unwrap_or_else(|| format!("#{i}")), *mutable))
                }
                _ => None,
            })
            .collect(),
    )
}

/// Which of kernel `kernel`'s parameters are writable tensors, by argument position.
pub(crate) fn writable_params(module: &Module, kernel: &str, args: usize) -> Vec<bool> {
    let mut out = vec![false; args];
    for (i, _, mutable) in tensor_params(module, kernel, args).unwrap_or_default() {
        out[i] = mutable;
    }
    out
}

/// Refuses a launch in which a writable tensor argument shares elements with another tensor
/// argument. What such a kernel computes would depend on the device (the cpu interpreter copies
/// arguments in and out, a GPU writes in place, in an order no one promises), so no device runs
/// it. Host tensors are copies of their own and never overlap.
pub(crate) fn check_overlap(
    module: &Module,
    kernel: &str,
    args: &[LaunchArg],
) -> Result<(), Error> {
    let Some(params) = tensor_params(module, kernel, args.len()) else {
        return Ok(());
    };
    for (a, (i, out, writable)) in params.iter().enumerate() {
        if !writable {
            continue;
        }
        let LaunchArg::Device(v) = &args[*i] else {
            continue;
        };
        for (j, other, _) in params
            .iter()
            .enumerate()
            .filter(|&(b, _)| b != a)
            .map(|(_, p)| p)
        {
            if let LaunchArg::Device(w) = &args[*j] {
                if overlap(v, w) {
                    return Err(Error::Overlap {
                        kernel: kernel.to_string(),
                        output: out.clone(),
                        other: other.clone(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Whether two views share at least one element. Exact when both views are boxes of one
/// row-major (or permuted) layout, as `narrow` and `transpose` make them; otherwise whether
/// their spans of memory overlap, which may refuse views that only interleave.
pub(crate) fn overlap(a: &DeviceView, b: &DeviceView) -> bool {
    if !a.storage.same(&b.storage) {
        return false;
    }
    let (Some(sa), Some(sb)) = (span(a), span(b)) else {
        return false; // an empty view has no elements to share
    };
    if sa.1 <= sb.0 || sb.1 <= sa.0 {
        return false;
    }
    // Undecided layouts count as overlapping: refusing a launch is safe, running one is not.
    same_layout_boxes(a, b).unwrap_or(true)
}

/// The bytes `[first, last + 1)` a view reaches in its storage; `None` when it is empty.
fn span(v: &DeviceView) -> Option<(u128, u128)> {
    if v.shape.contains(&0) {
        return None;
    }
    let size = u128::from(v.dtype.size_bytes());
    let reach: u128 = v
        .shape
        .iter()
        .zip(&v.strides)
        .map(|(&n, &s)| (n as u128 - 1) * s as u128)
        .sum();
    let first = v.offset as u128 * size;
    Some((first, first + (reach + 1) * size))
}

/// A nonempty view as the lengths it spans per distinct stride: dimensions of one element or
/// of stride 0 add nothing, and dimensions of one stride merge (`i·s + j·s` spans
/// `(n₁ − 1) + (n₂ − 1) + 1` multiples of `s`).
fn radices(v: &DeviceView) -> BTreeMap<usize, usize> {
    let mut reach = BTreeMap::new();
    for (&n, &s) in v.shape.iter().zip(&v.strides) {
        if n > 1 && s > 0 {
            *reach.entry(s).or_insert(0) += n - 1;
        }
    }
    reach.into_iter().map(|(s, r)| (s, r + 1)).collect()
}

/// Whether two nonempty views meet, decided exactly when both are boxes of one layout: the
/// strides of both (and 1) as the digits of a mixed-radix number system in which each stride
/// exceeds the farthest reach of the smaller ones over the union of the two boxes. Then an
/// offset has one set of coordinates, and the boxes meet when they meet along every digit.
/// `None` when the strides are no such system (then the caller is conservative).
fn same_layout_boxes(a: &DeviceView, b: &DeviceView) -> Option<bool> {
    if a.dtype.size_bytes() != b.dtype.size_bytes() {
        return None;
    }
    let (ra, rb) = (radices(a), radices(b));
    let mut strides: Vec<usize> = ra.keys().chain(rb.keys()).copied().chain([1]).collect();
    strides.sort_unstable_by(|x, y| y.cmp(x));
    strides.dedup();
    let len = |r: &BTreeMap<usize, usize>, s: usize| r.get(&s).copied().unwrap_or(1);
    let coordinates = |offset: usize| -> Vec<usize> {
        let mut rest = offset;
        strides
            .iter()
            .map(|&s| {
                let q = rest / s;
                rest %= s;
                q
            })
            .collect()
    };
    let (ca, cb) = (coordinates(a.offset), coordinates(b.offset));
    // The union of the two boxes: the highest coordinate along each digit.
    let high: Vec<u128> = strides
        .iter()
        .enumerate()
        .map(|(d, &s)| ((ca[d] + len(&ra, s)).max(cb[d] + len(&rb, s)) - 1) as u128)
        .collect();
    for d in 0..strides.len() {
        let inner: u128 = (d + 1..strides.len())
            .map(|e| high[e] * strides[e] as u128)
            .sum();
        if strides[d] as u128 <= inner {
            return None;
        }
    }
    Some(
        strides
            .iter()
            .enumerate()
            .all(|(d, &s)| ca[d] < cb[d] + len(&rb, s) && cb[d] < ca[d] + len(&ra, s)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Storage;
    use crate::ir::ScalarType::F32;

    fn view(storage: &Storage, shape: &[usize], strides: &[usize], offset: usize) -> DeviceView {
        DeviceView {
            dtype: F32,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            offset,
            storage: storage.clone(),
        }
    }

    /// The elements a view reaches, enumerated: the independent reference for `overlap`.
    fn elements(v: &DeviceView) -> Vec<usize> {
        let mut out = vec![v.offset];
        for (&n, &s) in v.shape.iter().zip(&v.strides) {
            out = out
                .iter()
                .flat_map(|&base| (0..n).map(move |i| base + i * s))
                .collect();
        }
        out
    }

    #[test]
    fn grids_within_every_devices_limits_pass_and_others_are_named() {
        check_grid("k", Grid([MAX_GRID_X, MAX_GRID_YZ, MAX_GRID_YZ])).unwrap();
        for bad in [[MAX_GRID_X + 1, 1, 1], [1, 65536, 1], [1, 1, 65536]] {
            let e = check_grid("k", Grid(bad)).unwrap_err().to_string();
            assert!(
                e.contains("@k") && e.contains("2147483647") && e.contains("65535"),
                "{e}"
            );
        }
        for empty in [[0, 1, 1], [1, 0, 1], [1, 1, 0]] {
            let e = check_grid("k", Grid(empty)).unwrap_err();
            assert!(matches!(e, Error::EmptyGrid { .. }), "{e}");
        }
    }

    /// Windows of one row-major matrix, transposed or not, and random boxes of one 3-D layout:
    /// `overlap` says what enumerating their elements says, except where it is conservative
    /// (never claiming disjoint views that share an element).
    #[test]
    fn overlap_agrees_with_the_elements_the_views_reach() {
        let storage = Storage::host(F32, vec![0.0; 1]);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut exact = 0;
        for _ in 0..2000 {
            let shape = [1 + next(5), 1 + next(6), 1 + next(7)];
            let strides = [shape[1] * shape[2], shape[2], 1];
            let window = |next: &mut dyn FnMut(usize) -> usize| {
                let start: Vec<usize> = shape.iter().map(|&n| next(n)).collect();
                let len: Vec<usize> = shape
                    .iter()
                    .zip(&start)
                    .map(|(&n, &s)| next(n - s + 1))
                    .collect();
                let offset = start.iter().zip(&strides).map(|(a, b)| a * b).sum();
                let mut v = view(&storage, &len, &strides, offset);
                if next(2) == 1 {
                    v.shape.swap(0, 2);
                    v.strides.swap(0, 2);
                }
                v
            };
            let (a, b) = (window(&mut next), window(&mut next));
            let (ea, eb) = (elements(&a), elements(&b));
            let shared =
                !a.shape.contains(&0) && !b.shape.contains(&0) && ea.iter().any(|x| eb.contains(x));
            let said = overlap(&a, &b);
            assert!(said || !shared, "{a:?} and {b:?} share an element");
            if said == shared {
                exact += 1;
            }
        }
        // Boxes of one layout are decided exactly.
        assert_eq!(exact, 2000);
    }

    #[test]
    fn column_windows_of_one_matrix_do_not_overlap_and_one_element_in_common_does() {
        let storage = Storage::host(F32, vec![0.0; 1]);
        let left = view(&storage, &[4, 8], &[16, 1], 0);
        let right = view(&storage, &[4, 8], &[16, 1], 8);
        assert!(
            !overlap(&left, &right),
            "interleaved spans, disjoint elements"
        );
        let shifted = view(&storage, &[4, 8], &[16, 1], 7);
        assert!(overlap(&left, &shifted));
        let other = Storage::host(F32, vec![0.0; 1]);
        assert!(!overlap(&left, &view(&other, &[4, 8], &[16, 1], 0)));
        assert!(
            !overlap(&left, &view(&storage, &[0, 8], &[16, 1], 0)),
            "empty"
        );
        // Every third element, and the ones after them: one layout, decided exactly.
        let thirds = view(&storage, &[4], &[3], 0);
        assert!(!overlap(&thirds, &view(&storage, &[4], &[3], 1)));
        // Strides that form no one layout: the spans decide, conservatively ({0, 3, 6} and
        // {1, 5} share nothing, but their spans meet).
        let fourths = view(&storage, &[2], &[4], 1);
        assert!(overlap(&view(&storage, &[3], &[3], 0), &fourths));
        assert!(
            overlap(&thirds, &view(&storage, &[2], &[2], 1)),
            "both hold 3"
        );
    }
}
