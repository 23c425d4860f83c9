//! The `sessionlog` binary: everything happens in `cli`.

// jemalloc rather than the system allocator: ingest allocates and frees a
// decoded request's many small field values per entry, and under glibc's
// malloc that was a quarter of the server's CPU (`sessionlog-bench ingest`:
// 3.2 µs per entry with glibc, 1.8 µs with jemalloc, runs back to back).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    sessionlog::cli::main()
}
