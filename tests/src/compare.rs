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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_relative_to_the_largest_reference_value() {
        assert_eq!(normalized_max_error(&[1.0, 4.5], &[1.0, 4.0]), 0.125);
        assert_eq!(max_abs_error(&[1.0, 4.5], &[1.0, 4.0]), 0.5);
    }

    #[test]
    fn nan_and_length_mismatch_are_infinitely_wrong() {
        assert_eq!(max_abs_error(&[f64::NAN], &[1.0]), f64::INFINITY);
        assert_eq!(max_abs_error(&[1.0], &[1.0, 2.0]), f64::INFINITY);
    }
}
