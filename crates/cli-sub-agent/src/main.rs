//! The `csa` binary: everything lives in the `csa_cli` library.

fn main() -> std::process::ExitCode {
    csa_cli::main()
}
