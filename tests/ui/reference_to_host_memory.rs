use tilekit::dsl::*;

#[tilekit::kernel]
fn k(x: &[f32], c: GlMut<f32, 2>) {
    let t: Rt<f32, 16, 16> = fill(x[0] as f64);
    store(c.tile(0, 0), t);
}

fn main() {}
