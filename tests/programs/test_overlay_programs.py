"""``--overlay memory|file[:DIR]|none``: where the root's writable layer keeps its data.

Real programs write to the root (its /tmp is the overlay's view of the
host's /tmp); in file mode the data goes to an unlinked host file in DIR,
so the Sentry's resident memory stays small however much is written, the
bytes read back are the bytes written, and DIR holds nothing, during the
run, after it, and after a SIGKILL of the whole sandbox.
"""

import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import BASE_ENV, PYVISOR, end_process
from pyvisor.bench.run import _descendants, _rss_kb, pyvisor_pids

MIB = 1 << 20


class _PeakRSS:
    """The highest VmRSS of a run's pyvisor processes, sampled while it runs."""

    def __init__(self, proc):
        self.proc = proc
        self.peak = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while self.proc.poll() is None:
            for pid in pyvisor_pids(self.proc.pid):
                self.peak = max(self.peak, _rss_kb(pid) * 1024)
            time.sleep(0.05)

    def join(self):
        self.thread.join()
        return self.peak


def _run_sampled(sandbox, argv, options, timeout=240):
    proc = sandbox.popen(argv, options, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = _PeakRSS(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        end_process(proc)
    return proc.returncode, out, err, peak.join()


# A program that writes N MiB of random bytes to /tmp/big through tee,
# hashing what it wrote, then hashes what it reads back.
WRITE_AND_READ = ("dd if=/dev/urandom bs=1M count=%d iflag=fullblock 2>/dev/null "
                  "| tee /tmp/pyvisor-ovl-big | sha256sum; sha256sum < /tmp/pyvisor-ovl-big")


@pytest.fixture
def ovl_dir(workdir):
    d = os.path.join(workdir, "overlay")
    os.mkdir(d)
    return d


def test_file_mode_keeps_written_data_out_of_the_sentry(sandbox, ovl_dir):
    """512 MiB written and read back: the bytes match and the Sentry's RSS stays small."""
    rc, out, err, peak = _run_sampled(sandbox, ["/bin/sh", "-c", WRITE_AND_READ % 512],
                                      ["--overlay", "file:" + ovl_dir])
    assert rc == 0, err
    written, read = out.split(b"\n")[:2]
    assert written.split()[0] == read.split()[0] and len(written.split()[0]) == 64
    assert 0 < peak < 160 * MIB, peak
    assert os.listdir(ovl_dir) == []


def test_memory_mode_holds_written_data_in_the_sentry(sandbox):
    """The control of the test above: the same program in memory mode shows in the RSS."""
    rc, out, err, peak = _run_sampled(sandbox, ["/bin/sh", "-c", WRITE_AND_READ % 192],
                                      ["--overlay", "memory"])
    assert rc == 0, err
    written, read = out.split(b"\n")[:2]
    assert written.split()[0] == read.split()[0]
    assert peak > 192 * MIB, peak


def test_nothing_left_after_sigkill_of_the_whole_sandbox(sandbox, ovl_dir):
    script = ("dd if=/dev/zero of=/tmp/pyvisor-ovl-kill bs=1M count=32 2>/dev/null; "
              "echo ready; sleep 100")
    proc = sandbox.popen(["/bin/sh", "-c", script], ["--overlay", "file:" + ovl_dir],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
        held = []
        for pid in pyvisor_pids(proc.pid):
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                except OSError:
                    continue
                if target.startswith(ovl_dir + "/"):
                    held.append((pid, target))
        # The Sentry holds the file; it never had a name in the directory.
        assert held and all(t.endswith("(deleted)") for _, t in held), held
        assert os.listdir(ovl_dir) == []
        pids = [proc.pid, *_descendants(proc.pid)]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=30)
    finally:
        end_process(proc)
    sandbox.assert_no_leftovers(set())
    assert os.listdir(ovl_dir) == []


def _dd_to_tmp(sandbox, mode, ovl_dir, bs, count, *options):
    """dd of zeros to /tmp under ``--overlay MODE`` (file mode in ovl_dir): (stderr, bytes kept)."""
    over = "file:" + ovl_dir if mode == "file" else mode
    script = ("dd if=/dev/zero of=/tmp/pyvisor-ovl-dd bs=%s count=%d; "
              "stat -c %%s /tmp/pyvisor-ovl-dd" % (bs, count))
    proc = sandbox.run(["/bin/sh", "-c", script], ["--overlay", over, *options])
    return proc.stderr, int(proc.stdout.split()[-1])


@pytest.mark.parametrize("mode", ["memory", "file"])
def test_overlay_size_bound_is_enospc(sandbox, mode, ovl_dir):
    err, size = _dd_to_tmp(sandbox, mode, ovl_dir, "64k", 32, "--overlay-size", "1m")
    assert b"No space left on device" in err, err
    assert size <= MIB


def test_none_makes_the_root_read_only(sandbox):
    script = ("cat /etc/hostname >/dev/null && echo read; "
              "echo x > /tmp/pyvisor-ovl-ro; mkdir /pyvisor-ovl-ro; "
              "touch /etc/hostname")
    proc = sandbox.run(["/bin/sh", "-c", script], ["--overlay", "none"])
    assert proc.stdout == b"read\n"
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 3 and all("Read-only file system" in line for line in lines), lines


def test_file_mode_mmap_and_exec_of_overlay_files(sandbox, ovl_dir, workdir):
    """Mappings of upper-layer files see their data (the page cache fills from the store).

    $T is /tmp in the sandbox, a scratch directory natively (the native
    run must not leave files in the host's /tmp, which the sandbox sees).
    """
    script = ("cp /bin/echo $T/pyvisor-ovl-echo && $T/pyvisor-ovl-echo from-the-overlay && "
              "python3 -c \"import mmap, os\n"
              "f = open(os.environ['T'] + '/pyvisor-ovl-map', 'w+b')\n"
              "f.write(bytes(range(256)) * 2000); f.flush()\n"
              "m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\n"
              "print(len(m), m[255], m[256 * 1999 + 7], m[300000:300004].hex())\"")
    native = sandbox.native(["/bin/sh", "-c", script], env=dict(BASE_ENV, T=workdir))
    proc = sandbox.run(["/bin/sh", "-c", script], ["--overlay", "file:" + ovl_dir],
                       env=dict(BASE_ENV, T="/tmp"))
    assert proc.returncode == native.returncode == 0, proc.stderr
    assert proc.stdout == native.stdout == b"from-the-overlay\n512000 255 7 e0e1e2e3\n"
    assert os.listdir(ovl_dir) == []


@pytest.mark.parametrize("value, says", [
    ("bogus", "unknown overlay mode"),
    ("memory:x", "--overlay wants"),
    ("file:", "--overlay wants"),
    ("file:/nonexistent-pyvisor-dir", "no such directory"),
    ("file:/etc/passwd", "not a directory"),
    ("file:/proc/1", "cannot create a file there"),
])
def test_bad_overlay_is_one_line_and_exit_2(value, says):
    proc = subprocess.run([*PYVISOR, "run", "--overlay", value, "--", "/bin/true"],
                          capture_output=True, env=BASE_ENV, cwd="/", timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and says in lines[0], lines


def test_default_file_dir_is_tmpdir_and_checked():
    env = dict(BASE_ENV, TMPDIR="/nonexistent-pyvisor-tmpdir")
    proc = subprocess.run([*PYVISOR, "run", "--overlay", "file", "--", "/bin/true"],
                          capture_output=True, env=env, cwd="/", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines() == [
        "pyvisor: overlay directory /nonexistent-pyvisor-tmpdir: no such directory"]


def test_none_on_a_root_without_a_mount_point(sandbox, busybox, workdir):
    """A read-only root cannot get /proc made for it: one line, before the program starts."""
    root = os.path.join(workdir, "root")
    os.makedirs(os.path.join(root, "bin"))
    os.mkdir(os.path.join(root, "dev"))
    shutil.copy(busybox, os.path.join(root, "bin", "busybox"))
    argv = ["/bin/busybox", "sh", "-c", "ls /; echo x > /new"]
    opts = ["--overlay", "none", "--rootfs", root]
    proc = sandbox.run(argv, opts)
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines() == [
        "pyvisor: --overlay none: the root has no /proc to mount on"]
    os.mkdir(os.path.join(root, "proc"))
    proc = sandbox.run(argv, opts)
    assert proc.stdout == b"bin\ndev\nproc\n"
    assert b"Read-only file system" in proc.stderr and not os.path.exists(os.path.join(root, "new"))


@pytest.fixture
def small_host_dir(workdir):
    """A 2 MiB tmpfs on the host (needs the right to mount: else skipped)."""
    d = os.path.join(workdir, "small")
    os.mkdir(d)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", d],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    yield d
    subprocess.run(["umount", d], check=True)


@pytest.mark.parametrize("bound", [[], ["--overlay-size", "100m"]])
def test_a_full_host_disk_is_enospc_inside(sandbox, small_host_dir, bound):
    """Without --overlay-size the bound is the host's free space at start;
    with a bigger one, the host's own ENOSPC comes through. Deleting gives
    the space back either way."""
    script = ("dd if=/dev/zero of=/tmp/pyvisor-ovl-fill bs=64k count=64; "
              "stat -c %s /tmp/pyvisor-ovl-fill; rm /tmp/pyvisor-ovl-fill; "
              "dd if=/dev/zero of=/tmp/pyvisor-ovl-again bs=64k count=16 2>/dev/null && echo again")
    proc = sandbox.run(["/bin/sh", "-c", script], ["--overlay", "file:" + small_host_dir, *bound])
    assert b"No space left on device" in proc.stderr, proc.stderr
    size, again = proc.stdout.split()
    assert int(size) <= 2 * MIB and again == b"again"
    assert os.listdir(small_host_dir) == []


@pytest.mark.parametrize("mode", ["memory", "file"])
def test_memory_bound_counts_the_overlay_only_in_memory_mode(sandbox, mode, ovl_dir):
    err, size = _dd_to_tmp(sandbox, mode, ovl_dir, "1M", 64, "--memory", "48m")
    if mode == "memory":
        assert b"Cannot allocate memory" in err, err
        assert size < 48 * MIB
    else:
        assert b"Cannot allocate memory" not in err and size == 64 * MIB, err
