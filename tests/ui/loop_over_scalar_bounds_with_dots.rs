use tilekit::dsl::*;

#[tilekit::kernel]
fn k(a: Gl<f32, 2>, c: GlMut<f32, 2>) {
    let n = a.cols();
    let mut t: Rt<f32, 16, 16> = zeros();
    for j in 0..n {
        t = t + load(a.tile(0, j));
    }
    store(c.tile(0, 0), t);
}

fn main() {}
