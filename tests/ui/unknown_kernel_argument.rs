use tilekit::dsl::*;

#[tilekit::kernel(threads = 128)]
fn k(c: GlMut<f32, 2>) {
    let t: Rt<f32, 16, 16> = zeros();
    store(c.tile(0, 0), t);
}

fn main() {}
