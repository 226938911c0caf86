"""Limits and faults: --timeout, --memory, --overlay-size, and a Gofer or a
stub that dies under the sandbox (issue: "a sandbox that holds")."""

import os
import signal
import subprocess
import time

import pytest

from conftest import BASE_ENV, PYVISOR, TESTS_DIR, children_of, end_process

HERE = TESTS_DIR
pytestmark = pytest.mark.slow


def _sentry_of(runner):
    """The Sentry: the one child of `pyvisor run` (confine.py: the process tree)."""
    kids = list(children_of(runner))
    assert len(kids) == 1, kids
    return kids[0]


# -- --timeout -------------------------------------------------------------------

def test_timeout_ends_the_sandbox(sandbox):
    start = time.monotonic()
    r = sandbox.run(["/bin/sh", "-c", "sleep 30 & while :; do :; done"], options=["--timeout", "1"])
    took = time.monotonic() - start
    assert r.returncode == 124, r.stderr
    assert took < 15, took
    assert b"Traceback" not in r.stderr


def test_timeout_not_reached_keeps_the_status(sandbox):
    r = sandbox.run(["/bin/sh", "-c", "exit 3"], options=["--timeout", "30"])
    assert r.returncode == 3, r.stderr


@pytest.mark.parametrize("option,value", [
    ("--timeout", "0"), ("--timeout", "-1"), ("--timeout", "soon"), ("--timeout", "nan"),
    ("--memory", "0"), ("--memory", "-5"), ("--memory", "lots"), ("--memory", "12x"),
    ("--overlay-size", "0"), ("--overlay-size", "1.5g"),
])
def test_bad_limit_values_are_usage_errors(option, value):
    r = subprocess.run([*PYVISOR, "run", option, value, "--", "/bin/true"], env=BASE_ENV,
                       capture_output=True, timeout=60, cwd="/")
    assert r.returncode == 2, r.stderr
    assert option.encode() in r.stderr and b"Traceback" not in r.stderr


# -- --memory and --overlay-size --------------------------------------------------

@pytest.fixture(scope="module")
def oom(build_c):
    return build_c(os.path.join(HERE, "c", "oom.c"))


def test_memory_bound_kills_a_copy_on_write_fault(sandbox, oom):
    """The parent holds 32 MB; the child's writes need 32 MB more, past the
    bound: mmap past it fails with ENOMEM, the child dies of SIGKILL with a
    one-line notice, the parent goes on."""
    r = sandbox.run([oom, "32"], options=["--memory", "56m"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [
        "huge mmap Cannot allocate memory", "child killed by signal 9", "parent still has 1"]
    assert r.stderr.decode().splitlines() == [
        "pyvisor: out of memory (--memory 58720256 bytes): killed process 2"]


def test_memory_bound_unreached_changes_nothing(sandbox, oom):
    r = sandbox.run([oom, "8"], options=["--memory", "1g"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines()[1:] == [
        "child wrote 8 MB", "child exited 0", "parent still has 1"]


def test_memory_bound_counts_in_memory_files(sandbox, busybox):
    """Data written to /dev/shm (tmpfs in Sentry memory) counts too: ENOMEM."""
    r = sandbox.run([busybox, "sh", "-c",
                     "dd if=/dev/zero of=/dev/shm/f bs=1M count=64; ls -l /dev/shm/f"],
                    options=["--memory", "32m"])
    assert r.returncode == 0, r.stderr
    assert b"Cannot allocate memory" in r.stderr or b"Out of memory" in r.stderr, r.stderr
    size = int(r.stdout.split()[4])
    assert 8 << 20 <= size < 32 << 20, size      # the rest holds the programs


def test_overlay_size_bounds_the_root_upper_layer(sandbox, busybox, workdir):
    target = os.path.join(workdir, "big")
    r = sandbox.run([busybox, "sh", "-c",
                     "dd if=/dev/zero of=%s bs=64k count=32; ls -l %s; df -k /" % (target, target)],
                    options=["--overlay-size", "1m"])
    assert r.returncode == 0, r.stderr
    assert b"No space left on device" in r.stderr, r.stderr
    lines = r.stdout.decode().splitlines()
    assert int(lines[0].split()[4]) == 1 << 20
    assert lines[-1].split()[1:4] == ["1024", "1024", "0"], lines
    assert not os.path.exists(target)          # the host is untouched


# -- a Gofer or a stub that dies ----------------------------------------------------

def _wait_line(proc, want):
    line = proc.stdout.readline()
    assert line == want, (line, proc.stderr.read() if proc.poll() is not None else b"")


def test_dead_gofer_gives_eio_and_one_line(sandbox):
    proc = sandbox.popen(["/bin/sh", "-c", 'echo ready; read x; cat /etc/hostname; echo "cat $?"'],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_line(proc, b"ready\n")
        sentry = _sentry_of(proc.pid)
        gofer = [pid for pid, (_s, comm, _c) in children_of(sentry).items()
                 if comm.startswith("python")]
        assert len(gofer) == 1, children_of(sentry)
        os.kill(gofer[0], signal.SIGKILL)
        time.sleep(0.5)
        out, err = proc.communicate(b"go\n", timeout=60)
    finally:
        end_process(proc)
    assert proc.returncode == 0, err
    assert out == b"cat 127\n"          # dash reports a failed exec as 127
    assert b"Input/output error" in err
    notice = [l for l in err.decode().splitlines() if l.startswith("pyvisor:")]
    assert notice == ["pyvisor: the file server (Gofer) died, killed by signal 9: file access in "
                      "the sandbox now fails with EIO"], err
    assert b"Traceback" not in err


def test_dead_stub_kills_its_task_only(sandbox):
    if sandbox.platform != "ptrace":
        pytest.skip("only the ptrace platform runs tasks in stub processes")
    proc = sandbox.popen(["/bin/sh", "-c", 'sleep 30 & sleep 0.5; echo ready; wait $!; echo "status $?"'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_line(proc, b"ready\n")
        sentry = _sentry_of(proc.pid)
        stubs = [pid for pid, (_s, comm, _c) in children_of(sentry).items() if comm == "_stub"]
        assert len(stubs) == 2, children_of(sentry)     # the shell's, then sleep's
        os.kill(stubs[-1], signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    finally:
        end_process(proc)
    assert (proc.returncode, out) == (0, b"status 137\n"), err
    notice = [l for l in err.decode().splitlines() if l.startswith("pyvisor:")]
    assert notice == [
        "pyvisor: the host process running task 2 died (wait status 0x9); the task is killed"], err
    assert b"Traceback" not in err


def test_memory_of_removed_files_comes_back(sandbox, busybox):
    """A removed in-memory file gives its bytes back: the same write fits again."""
    once = "dd if=/dev/zero of=/dev/shm/f bs=1M count=20 2>/dev/null && rm /dev/shm/f && echo ok"
    r = sandbox.run([busybox, "sh", "-c", ";".join([once] * 4)], options=["--memory", "48m"])
    assert (r.returncode, r.stdout) == (0, b"ok\nok\nok\nok\n"), r.stderr


def test_truncate_grows_a_file_without_memory(sandbox):
    """ftruncate(2) past the end makes a hole that reads as zero and holds
    no memory (1 TiB under a 64 MiB bound); so does a write at its far end,
    as on Linux's tmpfs; filling it with data is bounded (ENOMEM, --memory)."""
    code = ("import os\n"
            "fd = os.open('/dev/shm/f', os.O_RDWR | os.O_CREAT)\n"
            "os.ftruncate(fd, 1 << 40)\n"
            "print(os.fstat(fd).st_size, os.pread(fd, 4, (1 << 40) - 2), os.pread(fd, 4, 7))\n"
            "os.pwrite(fd, b'ab', 5)\n"
            "print(os.pread(fd, 4, 4))\n"
            "print(os.pwrite(fd, b'z', (1 << 40) - 1), os.pread(fd, 4, (1 << 40) - 2))\n"
            "try:\n"
            "    for i in range(80):\n"
            "        os.pwrite(fd, bytes(1 << 20), (1 << 30) + (i << 20))\n"
            "except OSError as e:\n"
            "    print(os.strerror(e.errno))\n")
    r = sandbox.run(["/usr/bin/python3", "-c", code], options=["--memory", "64m"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [
        "1099511627776 b'\\x00\\x00' b'\\x00\\x00\\x00\\x00'", "b'\\x00ab\\x00'",
        "1 b'\\x00z'", "Cannot allocate memory"]
