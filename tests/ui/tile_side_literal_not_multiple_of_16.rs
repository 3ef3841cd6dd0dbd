use tilekit::dsl::*;

#[tilekit::kernel]
fn k(a: Gl<f32, 2>, c: GlMut<f32, 2>) {
    let t: Rt<f32, 16, 24> = load(a.tile(0, 0));
    let s: St<f32, 8, 16> = alloc_shared();
    store(c.tile(0, 0), t);
}

fn main() {}
