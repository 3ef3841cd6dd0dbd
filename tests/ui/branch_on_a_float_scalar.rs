use tilekit::dsl::*;

#[tilekit::kernel]
fn k(a: Gl<f32, 2>, c: GlMut<f32, 2>) {
    let x: Scalar<f32> = load(a.at(0, 0));
    let mut t: Rt<f32, 16, 16> = zeros();
    if x {
        t = t + 1.0;
    }
    store(c.tile(0, 0), t);
}

fn main() {}
