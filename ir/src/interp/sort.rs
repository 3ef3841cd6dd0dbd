//! What `sort_row.*` and `topk_row` mean: row sorts of (key, payload) pairs in the order of
//! [`sort_before`], and the top k of a row merged with a running list.

use std::cmp::Ordering;

use crate::ops::{sort_before, topk_empty_key};
use crate::types::ScalarType;

/// The payload of an empty `topk_row` entry.
const EMPTY_PAYLOAD: f64 = i32::MAX as f64;

fn order(descending: bool, a: (f64, i64), b: (f64, i64)) -> Ordering {
    if sort_before(descending, a, b) {
        Ordering::Less
    } else if sort_before(descending, b, a) {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

fn sort_pairs(descending: bool, pairs: &mut [(f64, i64)]) {
    pairs.sort_by(|&a, &b| order(descending, a, b));
}

/// Every row of a rows×cols tile of keys sorted, the payload moved along: (keys, payload).
pub(crate) fn sort_rows(
    descending: bool,
    rows: usize,
    cols: usize,
    keys: &[f64],
    idx: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let (mut k_out, mut i_out) = (
        Vec::with_capacity(rows * cols),
        Vec::with_capacity(rows * cols),
    );
    for r in 0..rows {
        let mut pairs: Vec<(f64, i64)> = (r * cols..(r + 1) * cols)
            .map(|at| (keys[at], idx[at] as i64))
            .collect();
        sort_pairs(descending, &mut pairs);
        for (k, i) in pairs {
            k_out.push(k);
            i_out.push(i as f64);
        }
    }
    (k_out, i_out)
}

/// The operands of a `topk_row`: a rows×cols tile of keys and payloads, and the running
/// rows×16 list.
pub(crate) struct TopkRows<'a> {
    pub rows: usize,
    pub cols: usize,
    pub keys: &'a [f64],
    pub idx: &'a [f64],
    pub best: &'a [f64],
    pub best_idx: &'a [f64],
}

/// Per row, the first `k` pairs in descending order among the row's and the first `k` of the
/// running list's; the rest of the 16 columns empty.
pub(crate) fn topk_rows(k: usize, d: ScalarType, t: &TopkRows<'_>) -> (Vec<f64>, Vec<f64>) {
    const W: usize = 16;
    let (mut k_out, mut i_out) = (
        Vec::with_capacity(t.rows * W),
        Vec::with_capacity(t.rows * W),
    );
    for r in 0..t.rows {
        let row = (r * t.cols..(r + 1) * t.cols).map(|at| (t.keys[at], t.idx[at] as i64));
        let kept = (r * W..r * W + k.min(W)).map(|at| (t.best[at], t.best_idx[at] as i64));
        let mut pairs: Vec<(f64, i64)> = row.chain(kept).collect();
        sort_pairs(true, &mut pairs);
        for c in 0..W {
            match pairs.get(c) {
                Some(&(key, i)) if c < k => {
                    k_out.push(key);
                    i_out.push(i as f64);
                }
                _ => {
                    k_out.push(topk_empty_key(d));
                    i_out.push(EMPTY_PAYLOAD);
                }
            }
        }
    }
    (k_out, i_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_sorts_above_infinity_and_ties_go_to_the_lower_payload() {
        let keys = [1.0, f64::NAN, f64::INFINITY, 1.0, -0.0, 0.0, f64::NAN, -5.0];
        let idx: Vec<f64> = (0..8).map(f64::from).collect();
        let (_, desc) = sort_rows(true, 1, 8, &keys, &idx);
        assert_eq!(desc, [1.0, 6.0, 2.0, 0.0, 3.0, 4.0, 5.0, 7.0]);
        let (_, asc) = sort_rows(false, 1, 8, &keys, &idx);
        assert_eq!(asc, [7.0, 4.0, 5.0, 0.0, 3.0, 2.0, 1.0, 6.0]);
    }

    #[test]
    fn topk_merges_the_running_list_and_pads_with_empty_entries() {
        // One row of 16 keys 0..16 (payload = key), running list holding 100 and 7.5 in its
        // first two columns and a 1000 in column 2, which k = 2 leaves out.
        let keys: Vec<f64> = (0..16).map(f64::from).collect();
        let mut best = vec![f64::NEG_INFINITY; 16];
        let mut best_idx = vec![EMPTY_PAYLOAD; 16];
        (best[0], best_idx[0]) = (100.0, 40.0);
        (best[1], best_idx[1]) = (7.5, 41.0);
        (best[2], best_idx[2]) = (1000.0, 42.0);
        let t = TopkRows {
            rows: 1,
            cols: 16,
            keys: &keys,
            idx: &keys,
            best: &best,
            best_idx: &best_idx,
        };
        let (k, i) = topk_rows(2, ScalarType::F32, &t);
        assert_eq!((k[0], i[0]), (100.0, 40.0));
        assert_eq!((k[1], i[1]), (15.0, 15.0));
        assert!(k[2..].iter().all(|&x| x == f64::NEG_INFINITY));
        assert!(i[2..].iter().all(|&x| x == EMPTY_PAYLOAD));
    }
}
