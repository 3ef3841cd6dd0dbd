use tilekit::dsl::*;

#[tilekit::kernel]
fn k(c: GlMut<f32, 2>) {
    let t: Rt<f32, 24, 16> = zeros();
    store(c.tile(0, 0), t);
}

fn main() {
    let _ = k::build();
}
