//! How far a kernel's output is from its f64 reference.

/// `max |out − ref| / max |ref|`: the largest error relative to the output's scale. Infinite when
/// the lengths differ or any output is NaN or infinite (so a tolerance check fails).
pub fn normalized_max_error(out: &[f64], reference: &[f64]) -> f64 {
    let scale = reference.iter().fold(0.0f64, |m, r| m.max(r.abs()));
    max_abs_error(out, reference) / scale
}

/// `max |out − ref|`; infinite when the lengths differ or any output is NaN or infinite.
pub fn max_abs_error(out: &[f64], reference: &[f64]) -> f64 {
    if out.len() != reference.len() {
        return f64::INFINITY;
    }
    out.iter()
        .zip(reference)
        .map(|(o, r)| {
            let d = (o - r).abs();
            if d.is_finite() {
                d
            } else {
                f64::INFINITY
            }
        })
        .fold(0.0, f64::max)
}

/// [`normalized_max_error`] for references that hold values which are not finite (the softmax of
/// a row of `-inf` is NaN, its log-sum-exp `-inf`): where the reference is NaN the output must be
/// NaN, where it is ±inf the output must be the same infinity, and the finite rest is compared
/// relative to its largest value. Infinite when a non-finite value does not match, when the
/// output is not finite where the reference is, or when the lengths differ.
pub fn normalized_max_error_with_nonfinite(out: &[f64], reference: &[f64]) -> f64 {
    if out.len() != reference.len() {
        return f64::INFINITY;
    }
    let mut finite = (Vec::new(), Vec::new());
    for (&o, &r) in out.iter().zip(reference) {
        if r.is_finite() {
            finite.0.push(o);
            finite.1.push(r);
        } else if !(r.is_nan() && o.is_nan() || o == r) {
            return f64::INFINITY;
        }
    }
    if finite.1.is_empty() {
        return 0.0;
    }
    normalized_max_error(&finite.0, &finite.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_relative_to_the_largest_reference_value() {
        assert_eq!(normalized_max_error(&[1.0, 4.5], &[1.0, 4.0]), 0.125);
        assert_eq!(max_abs_error(&[1.0, 4.5], &[1.0, 4.0]), 0.5);
    }

    #[test]
    fn nonfinite_reference_values_must_be_matched_exactly() {
        let inf = f64::INFINITY;
        let cmp = normalized_max_error_with_nonfinite;
        assert_eq!(
            cmp(&[f64::NAN, -inf, 1.0, 4.5], &[f64::NAN, -inf, 1.0, 4.0]),
            0.125
        );
        assert_eq!(cmp(&[0.0, 1.0], &[f64::NAN, 1.0]), inf);
        assert_eq!(cmp(&[inf, 1.0], &[-inf, 1.0]), inf);
        assert_eq!(cmp(&[f64::NAN, 1.0], &[-inf, 1.0]), inf);
        assert_eq!(cmp(&[f64::NAN, f64::NAN], &[0.5, 1.0]), inf);
    }

    #[test]
    fn nan_and_length_mismatch_are_infinitely_wrong() {
        assert_eq!(max_abs_error(&[f64::NAN], &[1.0]), f64::INFINITY);
        assert_eq!(max_abs_error(&[1.0], &[1.0, 2.0]), f64::INFINITY);
    }
}
