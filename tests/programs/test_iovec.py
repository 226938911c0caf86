"""iovec rules, one helper for every call (sentry/syscalls/_util.py), pinned
against Linux: tests/c/iovec.c runs natively and in the sandbox (ptrace and
kvm) and must print the same lines.

Where the two former copies (fs.py's readv/writev, net.py's msghdr) differed
from Linux, the probe has a line:

- a length past the user address space ("sum overflows") is EFAULT by
  access_ok, not EINVAL; a zero-length iovec at a kernel address too;
- a length over INT_MAX in a msghdr is accepted (cut at MAX_RW_COUNT), not EINVAL;
- a bad buffer after a good one on a pipe: EFAULT when less than a page
  moved (not the bytes before the fault), the whole pages otherwise, counting
  the mapped start of the iovec that faults; readv leaves the bytes it could
  not deliver in the pipe;
- recvmsg or readv on a stream socket (AF_UNIX or TCP) that faults leaves
  the bytes queued;
  on a datagram socket the datagram is gone.
"""

import os
import subprocess

import pytest

from conftest import TESTS_DIR

HERE = TESTS_DIR


@pytest.mark.parametrize("part", ["pipe", "file", "stream", "dgram", "tcp"])
def test_iovec_rules_match_linux(sandbox, build_c, part):
    prog = build_c(os.path.join(HERE, "c", "iovec.c"))
    native = sandbox.native([prog, part], timeout=30)
    assert native.returncode == 0, native.stderr
    lines = native.stdout.decode().splitlines()
    assert len(lines) >= 9
    boxed = sandbox.run([prog, part], timeout=60)
    assert boxed.stderr == b"", boxed.stderr.decode(errors="replace")
    assert boxed.stdout.decode().splitlines() == lines
    assert boxed.returncode == 0


def test_iovec_probe_sees_linux_rules(build_c):
    """The native run shows the rules the module doc names (so a kernel that
    changed them would be noticed here, not as a sandbox failure)."""
    prog = build_c(os.path.join(HERE, "c", "iovec.c"))
    out = subprocess.run([prog], capture_output=True, timeout=30, check=True).stdout.decode()
    for line in ("writev 1025 = -1 Invalid argument",
                 "stream sendmsg 1025 = -1 Message too long",
                 "readv len sign bit = -1 Invalid argument",
                 "readv sum overflows = -1 Bad address",
                 "writev zero length at kernel address = -1 Bad address",
                 "stream recvmsg len over INT_MAX = 5",
                 "readv good then bad = -1 Bad address",
                 "after readv good then bad: left 5",
                 "writev 5000 then bad = 4096",
                 "readv 5000 then bad = 4096",
                 "writev 3000 then half-mapped = 4096",
                 "file writev good then bad = 2",
                 "stream after recvmsg good then bad: left 5",
                 "stream after readv good then bad: left 5",
                 "dgram after recvmsg good then bad: left 0"):
        assert line in out.splitlines(), line
