"""What `pyvisor bench` measures: the figures, their labels and units, and a
result's shape."""

from dataclasses import dataclass, field

# --- what is measured -------------------------------------------------------

@dataclass(frozen=True)
class Micro:
    """One microbenchmark: ``micro OP N [ARG]``; n is the starting N (full run)."""
    key: str
    label: str
    op: str
    n: int
    arg: str = ""
    pinning_matters: bool = False


MICROS = (
    Micro("getpid", "getpid", "getpid", 2000),
    Micro("pipe_rw_1", "pipe write+read 1 B", "pipe_1", 1000),
    Micro("pipe_rw_64k", "pipe write+read 64 KiB", "pipe_64k", 500),
    Micro("open_gofer", "openat+close, Gofer root", "open", 1000, "/etc/passwd"),
    Micro("open_tmpfs", "openat+close, tmpfs", "open_tmpfs", 1000),
    Micro("stat", "stat", "stat", 1000, "/etc/passwd"),
    Micro("mmap_4k", "mmap+touch+munmap 4 KiB", "mmap_4k", 1000),
    Micro("mmap_1m", "mmap+touch+munmap 1 MiB", "mmap_1m", 50),
    Micro("clock_gettime", "clock_gettime", "clock_gettime", 5000),
    Micro("fork_wait", "fork+wait", "fork", 50, pinning_matters=True),
    Micro("fork_exec_wait", "fork+exec+wait /bin/true", "exec", 20, pinning_matters=True),
    Micro("thread", "thread create+join", "thread", 200, pinning_matters=True),
    Micro("futex_pingpong", "futex ping-pong, 2 threads", "futex_pingpong", 500,
          pinning_matters=True),
    Micro("pipe_pingpong", "pipe ping-pong, 2 processes", "pipe_pingpong", 500,
          pinning_matters=True),
    Micro("signal", "signal delivery round trip", "signal", 1000),
)

FLOORS = (
    ("floor_1cpu", "syscall floor, C, 1 CPU"),
    ("floor_2cpu", "syscall floor, C, 2 CPUs"),
)

WORKLOADS = (
    ("startup", "start-up: /bin/true"),
    ("python_pass", "python3 -c pass"),
    ("python_import", "python3 -c 'import json, sqlite3, hashlib'"),
    ("sqlite_10k", "sqlite3: 10k inserts, file in /tmp"),
    ("gzip_10m", "gzip -9 of 10 MB"),
    ("busybox_loop", "busybox sh: 1,000-iteration loop"),
    ("gcc_hello", "gcc hello.c"),
    ("make_j2", "make -j2, small project"),
    ("tar_include", "tar c /usr/include"),
    # Files in a volume (-v HOST:PATH; native: the host directory itself;
    # runsc: `do --force-overlay=false`, its root written through to the host)
    ("vol_tar_x", "volume: tar x of /usr/include's tarball"),
    ("vol_git_status", "volume: git status, 5,000-file repository"),
    ("vol_sqlite_10k", "volume: sqlite3 10k inserts"),
    ("vol_write_1g", "volume: sequential write of 1 GiB (dd bs=1M)"),
    ("vol_read_1g", "volume: sequential read of 1 GiB (dd bs=1M)"),
)
MEMORY = ("memory", "memory: RSS while running sleep 2")

UNITS = {"micro": "us", "floor": "us", "workload": "ms", "memory": "MB"}


@dataclass
class Result:
    """One figure on one platform: a value, or why there is none."""
    status: str                 # "ok" | "failed" | "skipped"
    value: float = 0.0
    samples: list = field(default_factory=list)
    reason: str = ""
    extra: dict = field(default_factory=dict)


class Failed(Exception):
    """A measured process failed; the message holds its command and stderr tail."""


def labels():
    """figure key -> label, in table order."""
    out = {m.key: m.label for m in MICROS}
    out.update(dict(FLOORS))
    out.update(dict(WORKLOADS))
    out[MEMORY[0]] = MEMORY[1]
    return out
