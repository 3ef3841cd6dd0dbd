use tilekit::dsl::*;

#[tilekit::kernel]
fn k(a: Gl<bf16, 2>, s: Scalar<f32>, c: GlMut<bf16, 2>) {
    let t: Rt<bf16, 16, 16> = load(a.tile(0, 0));
    store(c.tile(0, 0), s * t);
}

fn main() {}
