//! A lane-level simulation of the AMD LDS placement of tiles held transposed
//! (`layout::lds_transposed_offset`): a global → LDS copy writes every element of a shared
//! tile through the copy's address function, col-layout register tiles are read back through
//! the read's (one 8-byte group per four registers, `layout::lds_col_group`), and each lane's
//! registers must hold the elements the MFMA B operand wants there. The expected coordinates
//! are written out here from the CDNA3 ISA (*Matrix Arithmetic Instructions*,
//! `v_mfma_f32_16x16x16_bf16`): lane `l` holds `B[4·(l/16) + i][l % 16]` in register `i` of a
//! 16×16 subtile, subtiles in row-major order. A wrong permutation on either side fails.

use std::collections::HashMap;

use tilekit_codegen::layout::{lds_col_group, lds_transposed_offset, Frag};

const ES: u32 = 2;
const LANES: u32 = 64;

/// LDS after copying a `rows × cols` 16-bit tile in as the staged copy does: chunk `ch` of 8
/// elements is row `ch / (cols / 8)`, columns `8·(ch % (cols / 8)) ..`, its element `j` stored
/// at the copy's address of (row, col + j). Each byte records the element it holds.
fn copy_in(rows: u32, cols: u32) -> HashMap<u32, (u32, u32)> {
    let mut lds = HashMap::new();
    let per_row = cols / 8;
    for ch in 0..rows * per_row {
        let (row, col) = (ch / per_row, 8 * (ch % per_row));
        for j in 0..8 {
            let a = lds_transposed_offset(rows, ES, row, col + j);
            for b in 0..ES {
                let old = lds.insert(a + b, (row, col + j));
                assert!(old.is_none(), "{rows}x{cols}: byte {} written twice", a + b);
            }
        }
    }
    assert_eq!(
        lds.len() as u32,
        rows * cols * ES,
        "the tile fills its bytes"
    );
    assert!(lds.keys().all(|&a| a < rows * cols * ES));
    lds
}

/// The element of the shared tile that register `e` of lane `l` of an `r × c` col-layout
/// register tile at `(row0, col0)` must hold (the ISA's B operand layout).
fn want(c: u32, row0: u32, col0: u32, l: u32, e: u32) -> (u32, u32) {
    let s = e / 4;
    let (si, sj) = (s / (c / 16), s % (c / 16));
    (
        row0 + 16 * si + 4 * (l / 16) + e % 4,
        col0 + 16 * sj + l % 16,
    )
}

#[test]
fn col_layout_reads_of_a_transposed_tile_deliver_the_mfma_b_operand() {
    let f = Frag::Mfma;
    // (shared rows, cols, register tile rows, cols): the GEMM B rings and attention V rings,
    // and a few others.
    for (rows, cols, r, c) in [
        (32, 64, 32, 32),
        (32, 64, 16, 64),
        (32, 128, 32, 64),
        (16, 256, 16, 64),
        (32, 256, 32, 64),
        (16, 64, 16, 64),
        (64, 64, 64, 64),
        (16, 16, 16, 16),
        (48, 32, 16, 32),
    ] {
        let lds = copy_in(rows, cols);
        for row0 in (0..rows).step_by(r as usize) {
            for col0 in (0..cols).step_by(c as usize) {
                for s in 0..f.tile_regs(r, c) / 4 {
                    let (gr, gc) = lds_col_group(c, s);
                    for l in 0..LANES {
                        let a =
                            lds_transposed_offset(rows, ES, row0 + gr.at(f, l), col0 + gc.at(f, l));
                        assert_eq!(a % 8, 0, "{rows}x{cols}: a ds_read_b64 is 8-byte aligned");
                        for i in 0..4 {
                            let got = lds[&(a + ES * i)];
                            assert_eq!(lds[&(a + ES * i + 1)], got, "element bytes stay together");
                            let e = 4 * s + i;
                            assert_eq!(
                                got,
                                want(c, row0, col0, l, e),
                                "{rows}x{cols}, {r}x{c} at ({row0}, {col0}): lane {l} register {e}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The element-wise copy (the general variant's) writes element `i` of the tile, row-major,
/// through the same function: it lands where the group reads find it.
#[test]
fn element_copies_and_chunk_copies_place_alike() {
    for (rows, cols) in [(32, 64), (16, 16), (64, 128)] {
        let chunks = copy_in(rows, cols);
        for i in 0..rows * cols {
            let (row, col) = (i / cols, i % cols);
            let a = lds_transposed_offset(rows, ES, row, col);
            assert_eq!(chunks[&a], (row, col));
        }
    }
}
