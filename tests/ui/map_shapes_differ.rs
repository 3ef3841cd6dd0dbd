use tilekit::dsl::*;

#[tilekit::kernel]
fn k(c: GlMut<f32, 2>) {
    let x: Rt<f32, 16, 16> = zeros();
    let y: Rt<f32, 32, 16> = zeros();
    store(c.tile(0, 0), x + y);
}

fn main() {}
