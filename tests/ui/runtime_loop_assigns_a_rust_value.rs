use tilekit::dsl::*;

#[tilekit::kernel]
fn k(a: Gl<f32, 2>, c: GlMut<f32, 2>) {
    let mut steps = 0usize;
    for _k in range(0, a.cols()) {
        steps += 1;
    }
    let t: Rt<f32, 16, 16> = fill(steps as f64);
    store(c.tile(0, 0), t);
}

fn main() {}
