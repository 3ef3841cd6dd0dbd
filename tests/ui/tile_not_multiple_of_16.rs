use tilekit::dsl::*;

// A side from a const generic is checked when the type is instantiated (a literal side is
// checked at its line by the macro: tile_side_literal_not_multiple_of_16.rs).
#[tilekit::kernel]
fn k<const R: usize>(c: GlMut<f32, 2>) {
    let t: Rt<f32, R, 16> = zeros();
    store(c.tile(0, 0), t);
}

fn main() {
    let _ = k::<24>::build();
}
