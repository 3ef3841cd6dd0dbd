//! `tilekit list` · `tilekit selftest [--device cpu]` over the kernels linked into this binary
//! (the kernel library `tilekit::kernels`).

fn main() {
    std::process::exit(tilekit::cli::main())
}
