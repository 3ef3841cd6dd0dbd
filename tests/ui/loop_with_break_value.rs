use tilekit::dsl::*;

#[tilekit::kernel]
fn k(c: GlMut<f32, 2>) {
    let n = loop {
        break 3;
    };
    let t: Rt<f32, 16, 16> = fill(n as f64);
    store(c.tile(0, 0), t);
}

fn main() {}
