use tilekit::dsl::*;

#[tilekit::kernel]
fn k(c: GlMut<f32, 2>) {
    let acc: Rt<f32, 16, 16> = zeros();
    let a: Rt<bf16, 16, 32> = zeros();
    let b: Rt<bf16, 16, 16, Col> = zeros();
    store(c.tile(0, 0), mma_ab(acc, a, b));
}

fn main() {}
