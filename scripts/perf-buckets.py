#!/usr/bin/env python3
"""Where a sessionlog server's CPU goes, by component, from a perf profile.

Reads the output of

    perf script -i perf.data --no-inline -F comm,tid,period,ip,sym,dso

(a profile of the server taken with `perf record --call-graph dwarf -p PID`)
and prints each bucket's share of the samples, as in docs/performance.md
("Where the time goes (per-message)"). Each sample goes to the first bucket
whose rule its stack matches, in the order of BUCKETS. The rules name the
functions of sled 0.34, tokio, h2/hyper/tonic and this server as they are
now: when those change, update the rules, or the `other` rows grow.

On a VM with only a software clock, a sample due while interrupts are off
is taken at `finish_task_switch`: the cost of a switch lands on the thread
switched in, with the stack where it had gone to sleep. The rules file
those samples under what that thread was waiting for.

    scripts/perf-buckets.py perf.script.txt
    perf script ... | scripts/perf-buckets.py
"""

import collections
import re
import sys

KERNEL = "[kernel.kallsyms]"

SWITCH = {
    "finish_task_switch.isra.0",
    "finish_task_switch",
    "__schedule",
    "schedule",
    "do_sched_yield",
    "schedule_hrtimeout_range_clock",
}
WAKE = {"try_to_wake_up", "futex_wake", "wake_up_q"}
DISK = re.compile(
    r"^(ext4_|blk_|__blk|vfs_write|ksys_pwrite|__x64_sys_pwrite|ksys_sync_file_range"
    r"|__x64_sys_sync_file_range|do_fsync|__x64_sys_fdatasync|file_write_and_wait"
    r"|filemap_|folio_|mpage_|jbd2|virtio_queue_rq)"
)
NET = re.compile(
    r"^(tcp_|__tcp|sock_|__sock|skb_|__skb|ip_|__ip|__netif|netif_|loopback|inet_"
    r"|do_writev|__x64_sys_writev|__x64_sys_recvfrom|__sys_recvfrom|net_rx_action"
    r"|__dev_queue_xmit)"
)
ALLOCATOR = re.compile(r"(_rjem_|je_|tcache|arena_|do_rallocx|sdallocx|malloc|\bfree\b)")
# Who owns a user frame, by crate; the first match wins. Allocator, memcpy
# and sessionlog have no bucket of their own: a sample whose innermost owned
# frame is one of them falls to a later rule or to `other`.
OWNERS = [
    ("sled", re.compile(r"sled::|crossbeam_epoch")),
    ("http", re.compile(r"\b(h2|hyper|hyper_util|tonic|tower|http_body|http)::")),
    ("protobuf", re.compile(r"prost::|encode_raw|merge_field|encoded_len")),
    ("allocator", ALLOCATOR),
    ("memcpy", re.compile(r"memmove|memcpy|memset|memcmp")),
    ("sessionlog", re.compile(r"sessionlog::")),
    ("tokio", re.compile(r"\b(tokio|mio|parking_lot|parking_lot_core)::")),
]


class Sample:
    """One stack: its thread name, and its frames leaf first."""

    def __init__(self, comm, frames):
        self.comm = comm
        self.names = [name for name, _ in frames]
        self.kernel = [name for name, dso in frames if dso == KERNEL]
        self.user = [name for name, dso in frames if dso != KERNEL]
        self.text = " ".join(self.names)

    def has(self, *parts):
        return any(part in self.text for part in parts)

    def thread(self):
        """sled-io (sled's I/O pool), worker (tokio's async workers, which
        the blocking pool also starts) or blocking (tokio's blocking pool)."""
        if self.comm.startswith("sled-io"):
            return "sled-io"
        if self.comm.startswith("sessionlog-comm"):
            return "committer"
        if self.has("multi_thread::worker::run"):
            return "worker"
        if self.has("blocking::pool::Inner::run"):
            return "blocking"
        return self.comm

    def switching(self):
        return any(name in SWITCH for name in self.kernel) or self.has("sched_yield")

    def waking(self):
        return any(name in WAKE for name in self.kernel)

    def on_network(self):
        return any("mio::net" in name for name in self.user[:4]) or (
            not self.switching()
            and not self.waking()
            and any(NET.match(name) for name in self.kernel)
        )

    def on_disk(self):
        """Writing a file, not sleeping or waking in the middle of it (that
        is filed under what the thread waits for)."""
        if self.switching() or self.waking() or self.on_network():
            return False
        return any(DISK.match(name) for name in self.kernel) or (
            self.kernel[:1] == ["iowrite16"] and self.has("blk_mq")
        )

    def owner(self):
        """For a sample taken in user code: the crate of its innermost
        frame that has one (None for a sample in the kernel)."""
        if self.kernel:
            return None
        for name in self.user:
            for owner, pattern in OWNERS:
                if pattern.search(name):
                    return owner
        return None

    def idle_in_blocking_pool(self):
        """A blocking-pool thread waiting for its next task (no task on the stack)."""
        return (
            self.thread() == "blocking"
            and any("blocking::pool::Inner::run" in name for name in self.user[:4])
            and not self.has("BlockingTask")
        )


def follower_read(s):
    return s.has("page_forward_raw", "LogTree::scan", "block_entries")


def append_path(s):
    return s.has(
        "prepare_append", "publish_append", "LogTree::append", "SessionLog>::append", "append_batch"
    )


def committer(s):
    """The committer thread (sessions/commit.rs): its sled write, checks
    and publishing; its sleeps and wake-ups fall to the tokio-hops rule."""
    return s.comm.startswith("sessionlog-comm")


BUCKETS = [
    (
        "tokio's blocking pool: spawn_blocking per store call, waking and parking its threads",
        lambda s: s.has("blocking::pool::Spawner", "spawn_blocking")
        or s.idle_in_blocking_pool(),
    ),
    (
        "disk writes: sled's pwrite + sync_file_range (ext4, block layer)",
        lambda s: s.on_disk(),
    ),
    (
        "sled's I/O thread pool: hand-off, wake-ups, its threads sleeping",
        lambda s: s.thread() == "sled-io" or s.has("sled::threadpool"),
    ),
    ("follower store re-reads: sled range scans, copies", follower_read),
    (
        "the committer's sled write (apply_batch or a transaction: CPU, its locks)",
        lambda s: committer(s) and s.has("sled::") and not (s.switching() or s.waking()),
    ),
    (
        "the committer's checks, prepare and publish (not sled)",
        lambda s: committer(s) and not (s.switching() or s.waking()),
    ),
    ("loopback TCP, kernel", lambda s: s.on_network()),
    (
        "HTTP/2 and gRPC framing (h2, hyper, tonic, tower)",
        lambda s: s.owner() == "http",
    ),
    (
        "encoding: protobuf, building follow responses",
        lambda s: s.owner() == "protobuf"
        or s.has("follow_response", "EncodedFollowResponse", "EncodeBody"),
    ),
    (
        "task hops and wake-ups (tokio workers and the committer parking and waking, epoll)",
        lambda s: s.switching()
        or s.waking()
        or s.has("do_epoll_wait")
        or s.owner() == "tokio",
    ),
    ("the rest of the append path", append_path),
]


def read_samples(lines):
    """Yields (comm, frames) per sample of `perf script` output."""
    comm, frames = None, []
    for line in lines:
        if not line.strip():
            if comm is not None:
                yield comm, frames
            comm, frames = None, []
        elif comm is None and not line[0].isspace():
            comm = line.split()[0]
        else:
            address_and_symbol = line.strip().split(" ", 1)
            if len(address_and_symbol) == 2:
                symbol = address_and_symbol[1]
                cut = symbol.rfind(" (")
                frames.append((symbol[:cut], symbol[cut + 2 : -1]))
    if comm is not None:
        yield comm, frames


def main():
    if len(sys.argv) > 1:
        lines = open(sys.argv[1], encoding="utf-8", errors="replace")
    else:
        lines = sys.stdin
    shares = collections.Counter()
    total = 0
    for comm, frames in read_samples(lines):
        sample = Sample(comm, frames)
        total += 1
        bucket = next((name for name, rule in BUCKETS if rule(sample)), "other")
        shares[bucket] += 1
    if total == 0:
        sys.exit("no samples: give the output of `perf script -F comm,tid,period,ip,sym,dso`")
    print(f"{total} samples")
    for name, _ in BUCKETS + [("other", None)]:
        print(f"{100 * shares[name] / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
