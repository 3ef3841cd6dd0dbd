use tilekit::dsl::*;

#[tilekit::kernel]
fn k(c: GlMut<f32, 2>) {
    let make = |x: f64| -> Rt<f32, 16, 16> { fill(x) };
    store(c.tile(0, 0), make(1.0));
}

fn main() {}
