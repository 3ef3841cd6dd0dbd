tilekit::cli_main!(user_kernels);
