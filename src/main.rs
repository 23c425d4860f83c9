//! The `sessionlog` binary: everything happens in `cli`.

// jemalloc rather than the system allocator: ingest allocates and frees a
// decoded request's many small field values per entry, and under glibc's
// malloc that was a quarter of the server's CPU (`sessionlog-bench ingest`:
// 3.2 µs per entry with glibc, 1.8 µs with jemalloc, runs back to back).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// jemalloc's options, read once at its start (a C string, under the
// prefixed name tikv-jemalloc-sys builds it with). Dirty pages go back to
// the system after about 250 ms instead of 10 s: the peak RSS of many
// sessions and followers was mostly large buffers already freed, and
// returning them at once (0 ms) cost ingest about 60% more CPU. After
// 1 s, the 10-million-entry memory workload peaked at 82-114 MiB, in
// short peaks during slow flushes (memory freed together, held a
// second); after 250 ms, at 88-95, with the same ingest CPU per entry.
// One arena instead of four per core: sled's 512 KiB write buffers come
// from the arena of whichever thread seals one, and the ones freed in one
// arena were no use to threads of another; with one, the memory workload
// peaked at about 81 MiB instead of 102 (4 runs each, same server CPU per
// entry).
// `_RJEM_MALLOC_CONF` in the environment still overrides it.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 29] = b"dirty_decay_ms:250,narenas:1\0";

fn main() -> std::process::ExitCode {
    sessionlog::cli::main()
}
