use tilekit::dsl::*;

#[tilekit::kernel]
fn k(c: GlMut<f32, 2>) {
    let t: Rt<f32, 16, 16> = zeros();
    println!("building");
    store(c.tile(0, 0), t);
}

fn main() {}
