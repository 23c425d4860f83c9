//! The `sessionlog` binary: everything happens in `cli`.

fn main() -> std::process::ExitCode {
    sessionlog::cli::main()
}
