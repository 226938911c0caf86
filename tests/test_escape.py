"""The escape suite: a program in the sandbox tries the known ways out, and
the host must be unchanged after each (issue 11, DESIGN.md's invariants).

tests/c/escape.c makes the attempts and prints one line each; this test
holds the host's side: a directory of files (the sandbox may change its own
view of them, never the host's), a canary process (a host pid), and a host
listener on 127.0.0.1 (the sandbox's loopback is its own). The vsyscall
page and the stub's confinement have their own tests (test_stub_seccomp.py).
"""

import os
import socket
import subprocess

import pytest
from conftest import TESTS_DIR

HERE = TESTS_DIR
pytestmark = pytest.mark.slow

# What the sandbox answers. Files: the writes land in the overlay (in the
# sandbox's memory), so they succeed there and the host never sees them.
EXPECTED = {
    "write host file": "ok", "create host file": "ok", "dotdot": "ok",
    "proc self root": "ok", "proc 1 root": "ok", "symlink out": "ok",
    "write through symlink": "ok", "hard link": "ok", "write through hard link": "ok",
    "chmod host file": "ok", "unlink host file": "ok", "rename host file": "ok",
    # Host pids do not exist in the sandbox's pid namespace; ptrace and
    # process_vm_* are not offered (N.B. gVisor offers both, for its own tasks).
    "ptrace host pid": "ENOSYS", "kill host pid": "ESRCH",
    # kill(-1) signals every process but the caller and init, as on Linux: a
    # sibling here, and nothing on the host.
    "kill -1": "exit 0", "kill -1 victim": "killed",
    "process_vm_writev host pid": "ENOSYS", "open host pid mem": "ENOENT",
    "connect host listener": "ECONNREFUSED",
    "netlink socket": "EAFNOSUPPORT", "packet socket": "EAFNOSUPPORT",
    "raw socket": "EPROTONOSUPPORT",
    "mount": "ENOSYS", "unshare net": "ENOSYS", "setns": "ENOSYS", "bpf": "ENOSYS",
    "perf_event_open": "ENOSYS", "io_uring_setup": "ENOSYS", "userfaultfd": "ENOSYS",
    # N.B. the top 2 MiB below TASK_SIZE hold the ptrace stub: the sandbox's
    # address space ends below it (Linux would map there).
    "mmap over stub": "ENOMEM", "mprotect stub": "ENOMEM", "munmap stub": "ENOMEM",
    "write stub page": "signal SEGV", "write control page": "signal SEGV",
    "int 0x80": "exit 0",                  # ENOSYS for every 32-bit call
    "still alive": "ok",
}
# The control page holds nothing of the Sentry's once a batch has run (zeros),
# or cannot be read at all.
READ_CONTROL = ("exit 0", "signal SEGV")


@pytest.fixture(scope="module")
def escape(build_c):
    return build_c(os.path.join(HERE, "c", "escape.c"))


def _snapshot(path):
    out = {}
    for name in sorted(os.listdir(path)):
        p = os.path.join(path, name)
        st = os.lstat(p)
        with open(p, "rb") as f:
            out[name] = (st.st_mode, st.st_nlink, st.st_size, f.read())
    return out


def test_escape_attempts_leave_the_host_unchanged(sandbox, escape, workdir):
    os.chmod(workdir, 0o755)
    for name, data in (("host_file", b"original\n"), ("keep", b"keep\n")):
        with open(os.path.join(workdir, name), "wb") as f:
            f.write(data)
    before = _snapshot(workdir)
    canary = subprocess.Popen(["sleep", "600"])
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    try:
        port = listener.getsockname()[1]
        r = sandbox.run([escape, workdir, str(canary.pid), str(port)])
        assert r.returncode == 0, r.stderr
        got = dict(line.split(": ", 1) for line in r.stdout.decode().splitlines())
        read_control = got.pop("read control page")
        assert got == EXPECTED
        assert read_control in READ_CONTROL
        # The host's side: files, canary, listener.
        assert _snapshot(workdir) == before
        assert canary.poll() is None, "the canary was killed"
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        canary.kill()
        canary.wait()
        listener.close()
