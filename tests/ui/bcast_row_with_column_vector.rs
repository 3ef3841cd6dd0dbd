use tilekit::dsl::*;

#[tilekit::kernel]
fn k(c: GlMut<f32, 2>) {
    let t: Rt<f32, 16, 32> = zeros();
    let v = col_max(t);
    store(c.tile(0, 0), sub_row(t, v));
}

fn main() {}
