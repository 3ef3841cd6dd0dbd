//! `tilekit list` · `tilekit selftest [--device cpu|cuda|hip]` · `tilekit emit <kernel> --target <t>
//! --stage <s>` · `tilekit check <kernel> --target <t>` over the kernels linked into this binary
//! (the kernel library `tilekit::kernels`); `tilekit help` explains how a variant is chosen.

fn main() {
    std::process::exit(tilekit::cli::main())
}
