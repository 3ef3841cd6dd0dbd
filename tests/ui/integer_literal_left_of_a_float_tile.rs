use tilekit::dsl::*;

#[tilekit::kernel]
fn k(a: Gl<f32, 2>, c: GlMut<f32, 2>) {
    let t: Rt<f32, 16, 16> = load(a.tile(0, 0));
    store(c.tile(0, 0), 1 - t);
}

fn main() {}
