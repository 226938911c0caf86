"""The C probe (tests/c/probe.c), built static and dynamic, run in a sandbox.

The probe prints "ok NAME" or "FAIL NAME detail" per check. It is first run
natively, where every check but getpid_is_1 must pass: that proves the probe
is right about Linux, so a FAIL in the sandbox is the sandbox's.
"""

import os
import socket

import pytest
from conftest import TESTS_DIR

HERE = TESTS_DIR
PROBE_SRC = os.path.join(HERE, "c", "probe.c")
ROOT_FILE = "/probe_root_file"
TMP_FILE = "/tmp/probe_tmp_file"

EXPECTED = {
    "getpid_is_1", "uname_nodename", "uname_sysname",
    "write_bad_pointer_efault", "unknown_syscall_enosys", "close_bad_fd_ebadf",
    "read_bad_fd_ebadf", "open_missing_enoent", "read_bad_pointer_efault",
    "root_file_roundtrip", "tmp_file_roundtrip",
    "mmap_zero_length_einval", "mmap_anonymous", "munmap_middle", "mprotect_read_only",
    "munmap_rest", "mremap_grow_keeps_content", "brk_grows",
    "getrandom_fills", "clock_monotonic_increases", "nanosleep_10ms", "nanosleep_waits",
}


def parse(stdout):
    """-> (set of ok names, list of FAIL lines); asserts every line is one of the two."""
    ok, failed = set(), []
    for line in stdout.decode().splitlines():
        kind, _, rest = line.partition(" ")
        assert kind in ("ok", "FAIL"), "unexpected probe output %r" % line
        if kind == "ok":
            ok.add(rest)
        else:
            failed.append(line)
    return ok, failed


@pytest.fixture(params=[True, False], ids=["static", "dynamic"])
def probe(request, build_c):
    return build_c(PROBE_SRC, static=request.param)


def test_probe_is_right_natively(sandbox, probe, workdir):
    out = sandbox.native([probe, socket.gethostname(), os.path.join(workdir, "root_file"),
                          os.path.join(workdir, "tmp_file")])
    ok, failed = parse(out.stdout)
    assert [line.split()[1] for line in failed] == ["getpid_is_1"]
    assert ok == EXPECTED - {"getpid_is_1"}
    assert out.returncode == 1


def test_probe_in_sandbox(sandbox, probe):
    existed = [p for p in (ROOT_FILE, TMP_FILE) if os.path.lexists(p)]
    assert not existed, "left on the host by an earlier run (a leak); remove: %s" % existed
    out = sandbox.run([probe], options=["--hostname", "probehost"], cwd="/")
    ok, failed = parse(out.stdout)
    assert failed == [], out.stderr.decode()
    assert ok == EXPECTED
    assert out.returncode == 0, out.stderr.decode()
    # Writes inside the sandbox land in its overlay / tmpfs, never on the host.
    for path in (ROOT_FILE, TMP_FILE):
        assert not os.path.lexists(path), "%s leaked to the host" % path
