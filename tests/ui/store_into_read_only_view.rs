use tilekit::dsl::*;

#[tilekit::kernel]
fn k(a: Gl<f32, 2>) {
    let t: Rt<f32, 16, 16> = zeros();
    store(a.tile(0, 0), t);
}

fn main() {}
