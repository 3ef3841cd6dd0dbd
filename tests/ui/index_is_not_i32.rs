use tilekit::dsl::*;

#[tilekit::kernel]
fn k(a: Gl<f32, 2>, c: GlMut<f32, 2>) {
    let x: Scalar<f32> = load(a.at(0, 0));
    let t: Rt<f32, 16, 16> = zeros();
    store(c.tile(x, 0), t);
}

fn main() {}
