//! `tilekit list` · `selftest` · `bench` · `emit` · `check` · `bundle` over the kernels linked into
//! this binary (the kernel library `tilekit::kernels`); `tilekit help [COMMAND]` explains each.
//! The command itself is the library module `tilekit::cli`, so a crate with its own kernels can
//! offer it over them too (see its docs).

fn main() {
    std::process::exit(tilekit::cli::main())
}
