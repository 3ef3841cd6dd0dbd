use tilekit::dsl::*;

#[tilekit::kernel]
fn k(a: Gl<f32, 2>, c: GlMut<f32, 2>) {
    let i = block_idx_x();
    let t: Rt<f32, 16, 16> = load(a.tile(i, 0));
    if i < 3 {
        store(c.tile(i, 0), t);
    }
}

fn main() {}
