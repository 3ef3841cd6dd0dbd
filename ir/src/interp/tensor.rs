//! Host tensors: what the interpreter's global views point at.

use crate::numeric;
use crate::types::ScalarType;

use super::InterpError;

/// A tensor in host memory with a dtype, a shape and element strides.
///
/// Elements are held as `f64` values that are exactly representable in the dtype: every value
/// written is rounded to the dtype (round to nearest even; fp8 saturating).
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    dtype: ScalarType,
    shape: Vec<usize>,
    strides: Vec<usize>,
    data: Vec<f64>,
}

impl HostTensor {
    /// A contiguous row-major tensor holding `values` rounded to `dtype`.
    pub fn new(
        dtype: ScalarType,
        shape: &[usize],
        values: &[f64],
    ) -> Result<HostTensor, InterpError> {
        let n = element_count(shape)?;
        if values.len() != n {
            return Err(InterpError::Argument {
                message: format!(
                    "a tensor of shape {shape:?} needs {n} values, got {}",
                    values.len()
                ),
            });
        }
        let data = values.iter().map(|&x| numeric::round(dtype, x)).collect();
        Ok(HostTensor {
            dtype,
            shape: shape.to_vec(),
            strides: row_major_strides(shape),
            data,
        })
    }

    /// A contiguous row-major tensor of zeros.
    ///
    /// # Panics
    /// When the number of elements overflows `usize` (as `vec!` does when it cannot allocate).
    pub fn zeros(dtype: ScalarType, shape: &[usize]) -> HostTensor {
        let n = element_count(shape).unwrap_or_else(|e| panic!("{e}"));
        HostTensor {
            dtype,
            shape: shape.to_vec(),
            strides: row_major_strides(shape),
            data: vec![0.0; n],
        }
    }

    /// A contiguous row-major tensor with every element `value` (rounded to `dtype`).
    ///
    /// # Panics
    /// As [`HostTensor::zeros`].
    pub fn full(dtype: ScalarType, shape: &[usize], value: f64) -> HostTensor {
        let mut t = HostTensor::zeros(dtype, shape);
        let v = numeric::round(dtype, value);
        t.data.iter_mut().for_each(|x| *x = v);
        t
    }

    /// A strided view over `storage` (rounded to `dtype`). Every element the shape and strides
    /// address must lie inside `storage`.
    pub fn strided(
        dtype: ScalarType,
        shape: &[usize],
        strides: &[usize],
        storage: &[f64],
    ) -> Result<HostTensor, InterpError> {
        if shape.len() != strides.len() {
            return Err(InterpError::Argument {
                message: format!(
                    "shape {shape:?} has {} dimensions but strides {strides:?} have {}",
                    shape.len(),
                    strides.len()
                ),
            });
        }
        element_count(shape)?;
        let empty = shape.contains(&0);
        let last: Option<usize> = shape.iter().zip(strides).try_fold(0usize, |acc, (&n, &s)| {
            acc.checked_add(n.saturating_sub(1).checked_mul(s)?)
        });
        match last {
            Some(last) if empty || last < storage.len() => {}
            _ => {
                return Err(InterpError::Argument {
                    message: format!(
                        "shape {shape:?} with strides {strides:?} reaches past the {} elements of its storage",
                        storage.len()
                    ),
                })
            }
        }
        Ok(HostTensor {
            dtype,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            data: storage.iter().map(|&x| numeric::round(dtype, x)).collect(),
        })
    }

    pub fn dtype(&self) -> ScalarType {
        self.dtype
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of logical elements.
    pub fn len(&self) -> usize {
        // Every constructor checks that the count fits.
        element_count(&self.shape).unwrap_or(usize::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The storage the view addresses (for a contiguous tensor: the elements in row-major order).
    pub fn storage(&self) -> &[f64] {
        &self.data
    }

    /// Storage offset of an element, or `None` when an index is out of bounds.
    pub fn offset(&self, idx: &[usize]) -> Option<usize> {
        if idx.len() != self.shape.len() {
            return None;
        }
        let mut off = 0;
        for ((&i, &n), &s) in idx.iter().zip(&self.shape).zip(&self.strides) {
            if i >= n {
                return None;
            }
            off += i * s;
        }
        Some(off)
    }

    /// The element at `idx`, or `None` when out of bounds.
    pub fn get(&self, idx: &[usize]) -> Option<f64> {
        self.offset(idx).map(|o| self.data[o])
    }

    /// Sets the element at `idx` to `value` rounded to the dtype; false when out of bounds.
    pub fn set(&mut self, idx: &[usize], value: f64) -> bool {
        match self.offset(idx) {
            Some(o) => {
                self.data[o] = numeric::round(self.dtype, value);
                true
            }
            None => false,
        }
    }

    /// The logical elements in row-major order.
    pub fn to_vec(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.len());
        let mut idx = vec![0usize; self.rank()];
        if self.is_empty() {
            return out;
        }
        loop {
            out.push(self.get(&idx).unwrap_or(f64::NAN));
            let mut d = self.rank();
            loop {
                if d == 0 {
                    return out;
                }
                d -= 1;
                idx[d] += 1;
                if idx[d] < self.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    }

    pub(crate) fn data_mut(&mut self) -> &mut [f64] {
        &mut self.data
    }
}

/// The number of elements of `shape`; an error when it overflows `usize`, so that every tensor's
/// [`HostTensor::len`] is defined.
fn element_count(shape: &[usize]) -> Result<usize, InterpError> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .or_else(|| shape.contains(&0).then_some(0))
        .ok_or_else(|| InterpError::Argument {
            message: format!("a tensor of shape {shape:?} has more elements than a usize counts"),
        })
}

fn row_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        // Saturating: an empty tensor may have dimensions whose product overflows.
        strides[d] = strides[d + 1].saturating_mul(shape[d + 1]);
    }
    strides
}

/// A kernel argument: a tensor for a global-view parameter, or a scalar.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Tensor(HostTensor),
    /// A table of tensors for a `gl<i64, 2>` parameter read with `table_view`.
    Table(super::table::TensorTable),
    /// A scalar of the given dtype (rounded to it when the kernel starts).
    Scalar(ScalarType, f64),
}

impl Arg {
    pub fn i32(v: i32) -> Arg {
        Arg::Scalar(ScalarType::I32, f64::from(v))
    }

    pub fn f32(v: f32) -> Arg {
        Arg::Scalar(ScalarType::F32, f64::from(v))
    }

    pub fn tensor(&self) -> Option<&HostTensor> {
        match self {
            Arg::Tensor(t) => Some(t),
            Arg::Table(t) => Some(t.rows()),
            Arg::Scalar(..) => None,
        }
    }
}

impl From<HostTensor> for Arg {
    fn from(t: HostTensor) -> Arg {
        Arg::Tensor(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_rounds_to_the_dtype_and_checks_the_count() {
        let t = HostTensor::new(ScalarType::BF16, &[2], &[1.0 + 2f64.powi(-9), 3.0]).unwrap();
        assert_eq!(t.to_vec(), vec![1.0, 3.0]);
        assert!(HostTensor::new(ScalarType::F32, &[2, 2], &[1.0]).is_err());
    }

    #[test]
    fn strided_views_address_their_storage() {
        let storage: Vec<f64> = (0..12).map(f64::from).collect();
        // A 3×2 view of columns 1..3 of a 3×4 row-major matrix.
        let t = HostTensor::strided(ScalarType::F32, &[3, 2], &[4, 1], &storage[1..]).unwrap();
        assert_eq!(t.to_vec(), vec![1.0, 2.0, 5.0, 6.0, 9.0, 10.0]);
        assert!(HostTensor::strided(ScalarType::F32, &[3, 4], &[4, 1], &storage[1..]).is_err());
        assert_eq!(t.get(&[3, 0]), None);
    }
}
