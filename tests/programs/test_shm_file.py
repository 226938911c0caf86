"""MAP_SHARED mappings of regular files (mm/shmfile.py): the probe
tests/c/shm_file.c run natively and in the sandbox on the overlay's /tmp,
on /dev/shm and on a volume; every mapping (one process, a fork, an exec'd
process running at the same time) sees the same pages, write(2) shows
through them, stores show to read(2) and stay after munmap; msync's bad
input. On a volume the host holds the pages after msync(MS_SYNC) while the
program still runs, and after an exit without msync.
"""

import os
import subprocess

import pytest

from conftest import TESTS_DIR

MNT = "/mnt/vol"


@pytest.fixture(scope="module")
def probe(build_c):
    return build_c(os.path.join(TESTS_DIR, "c", "shm_file.c"))


@pytest.fixture(scope="module")
def native_lines(probe, tmp_path_factory):
    native = subprocess.run([probe, str(tmp_path_factory.mktemp("shm"))], capture_output=True)
    assert native.returncode == 0, native.stdout
    assert native.stdout.endswith(b"done\n")
    return native.stdout.decode()


@pytest.mark.parametrize("where,options", [("/tmp", []), ("/dev/shm", []),
                                           ("/tmp", ["--overlay", "file"])])
def test_shared_file_mappings_match_native(sandbox, probe, native_lines, where, options):
    """--overlay file: the pages go back to the overlay's host filestore."""
    boxed = sandbox.run([probe, where], options=options, timeout=120)
    assert boxed.stdout.decode() == native_lines, boxed.stderr.decode()
    assert boxed.returncode == 0


def test_shared_file_mappings_on_a_volume(sandbox, probe, native_lines, workdir):
    boxed = sandbox.run([probe, MNT], options=["-v", "%s:%s" % (workdir, MNT)], timeout=120)
    assert boxed.stdout.decode() == native_lines, boxed.stderr.decode()
    assert not os.path.exists(os.path.join(workdir, "shm.dat"))


@pytest.mark.parametrize("how", ["msync", "fsync"])
def test_msync_reaches_the_host_while_the_program_runs(sandbox, probe, workdir, how):
    proc = sandbox.popen([probe, how, MNT + "/m.dat"], ["-v", "%s:%s" % (workdir, MNT)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"synced\n"
        with open(os.path.join(workdir, "m.dat"), "rb") as f:
            data = f.read()
        assert len(data) == 8192 and data[4096:4103] == how.encode() + b"ed"
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 0


def test_stores_reach_the_host_at_exit_without_msync(sandbox, probe, workdir):
    got = sandbox.run([probe, "exit", MNT + "/e.dat"], options=["-v", "%s:%s" % (workdir, MNT)])
    assert got.returncode == 0, got.stderr.decode()
    with open(os.path.join(workdir, "e.dat"), "rb") as f:
        data = f.read()
    assert len(data) == 8192 and data[4096:4103] == b"at-exit"


HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON3 = "/usr/bin/python3"
SQLITE3 = "/usr/bin/sqlite3"


def _wal(sandbox, workdir, argv, options=()):
    scratch = os.path.join(workdir, "native")
    os.mkdir(scratch)
    native = sandbox.native(argv[:-1] + [scratch], timeout=120)
    assert native.returncode == 0, native.stderr.decode()
    boxed = sandbox.run(argv, options=options, timeout=240)
    assert boxed.stdout.decode() == native.stdout.decode(), boxed.stderr.decode()[-3000:]
    assert boxed.returncode == 0


@pytest.mark.parametrize("where", ["/tmp", "volume"])
def test_sqlite_wal_two_writers_and_a_reader(sandbox, workdir, where):
    """Long-lived connections: each sees the others' commits through -shm."""
    if not os.path.exists(PYTHON3):
        pytest.skip("no /usr/bin/python3")
    options = ["-v", "%s:%s" % (workdir, MNT)] if where == "volume" else []
    _wal(sandbox, workdir, [PYTHON3, os.path.join(HERE, "sqlite_wal.py"),
                   MNT if where == "volume" else "/tmp"], options)


def test_sqlite3_shell_wal_two_writers_and_a_reader(sandbox, workdir):
    if not os.path.exists(SQLITE3):
        pytest.skip("no sqlite3")
    _wal(sandbox, workdir, ["/bin/sh", os.path.join(HERE, "sqlite_wal.sh"), "/tmp"])


@pytest.mark.parametrize("where", ["/tmp", "/dev/shm", "volume"])
def test_sigbus_past_eof_of_a_shared_mapping(sandbox, probe, workdir, where):
    """ftruncate shrinks a mapped file: its pages past EOF give SIGBUS
    (BUS_ADRERR, si_addr the address) to this process and to a forked
    one, in mappings made before and after, also when another process
    moves EOF while the forked one waits (its stub is edited by its own
    tracer: platform/ptrace.py queues edits from other threads); growing
    the file again, by ftruncate or write(2), makes them readable."""
    scratch = os.path.join(workdir, "native")
    os.mkdir(scratch)
    native = sandbox.native([probe, "sigbus", scratch])
    assert native.returncode == 0 and native.stdout.endswith(b"done\n"), native.stdout
    options = ["-v", "%s:%s" % (workdir, MNT)] if where == "volume" else []
    boxed = sandbox.run([probe, "sigbus", MNT if where == "volume" else where], options=options)
    assert boxed.stdout.decode() == native.stdout.decode(), boxed.stderr.decode()
    assert boxed.returncode == 0
