"""Sparse files in memory-mode tmpfs (vfs/tmpfs.py HeapData) and their
MAP_SHARED windows (mm/shmfile.py): the probe tests/c/sparse.c writes a
byte 5 GiB into a file, reads the hole as zero, asks SEEK_DATA/SEEK_HOLE
and st_blocks, maps 64 KiB at each end shared and truncates; the lines
match a native run on tmpfs, the Sentry's resident memory stays small and
``--memory`` is not charged for the hole.
"""

import os
import shutil
import subprocess

import pytest

from conftest import TESTS_DIR
from test_overlay_programs import MIB, _run_sampled


@pytest.fixture(scope="module")
def probe(build_c):
    return build_c(os.path.join(TESTS_DIR, "c", "sparse.c"))


@pytest.fixture(scope="module")
def native_lines(probe):
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm (tmpfs) for the native run")
    native = subprocess.run([probe, "/dev/shm"], capture_output=True)
    assert native.returncode == 0, native.stdout
    assert native.stdout.endswith(b"done\n")
    return native.stdout


@pytest.mark.parametrize("where,options", [("/tmp", []), ("/dev/shm", []),
                                           ("/tmp", ["--memory", "256m"])])
def test_a_sparse_file_matches_native_and_holds_no_memory(sandbox, probe, native_lines,
                                                          where, options):
    """The 5 GiB hole fits in neither the Sentry's RSS bound nor --memory 256m."""
    rc, out, err, peak = _run_sampled(sandbox, [probe, where], options, timeout=120)
    assert out == native_lines, err.decode()
    assert rc == 0
    assert 0 < peak < 300 * MIB, peak


def test_a_sparse_file_in_file_mode(sandbox, probe, native_lines):
    """--overlay file: the bytes read and written are native's. (Its store
    keeps 256 KiB blocks and charges the size written: st_blocks and the
    seeks differ in grain, so those lines are left out, and the host needs
    room for the 5 GiB.)"""
    tmp = os.environ.get("TMPDIR", "/var/tmp")
    if shutil.disk_usage(tmp).free < 8 << 30:
        pytest.skip("less than 8 GiB free in %s for the store" % tmp)
    boxed = sandbox.run([probe, "/tmp"], options=["--overlay", "file"], timeout=120)
    assert boxed.returncode == 0, boxed.stderr.decode()
    keep = lambda out: [l for l in out.splitlines() if b"blocks" not in l and b" at " not in l]
    assert keep(boxed.stdout) == keep(native_lines)
