"""tmpfs file data in a host file (``--overlay file``, sentry/mm/filestore.py).

The same operations on a tmpfs whose data is in the Sentry's memory
(HeapData) and on one whose data is in an unlinked host file (StoredData)
must give the same bytes, sizes and errors; the host file has no name, and
freed data gives its disk back.
"""

import errno
import gc
import os
import random

import pytest

from pyvisor.config import overlay_dir_problem
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.mm.account import MemoryAccount
from pyvisor.sentry.mm.filestore import BLOCK, PENDING_MAX, open_store
from pyvisor.sentry.vfs.tmpfs import TmpFS


@pytest.fixture
def store(tmp_path):
    s = open_store(str(tmp_path))
    yield s
    gc.collect()            # the tests' files give their blocks back while the fd is open
    os.close(s.fd)


def _disk_bytes(store):
    return os.fstat(store.fd).st_blocks * 512


def test_the_store_has_no_name(tmp_path, store):
    """O_TMPFILE: nothing in the directory, ever; the file is a regular one with no link."""
    assert os.listdir(tmp_path) == []
    st = os.fstat(store.fd)
    assert st.st_nlink == 0 and st.st_size == 0


def test_same_bytes_as_memory_under_random_writes_and_truncates(store):
    rnd = random.Random(7)
    heap = TmpFS(size=64 << 20).root.create(b"f", 0o644, 0, 0)
    disk = TmpFS(size=64 << 20, store=store).root.create(b"f", 0o644, 0, 0)
    for step in range(300):
        op = rnd.random()
        if op < 0.6:
            off = rnd.randrange(0, 3 * BLOCK)
            data = rnd.randbytes(rnd.choice([1, 100, 4096, BLOCK - 3, BLOCK + 5, 2 * BLOCK]))
            assert heap.write_at(off, data) == disk.write_at(off, data) == len(data)
        elif op < 0.8:
            size = rnd.randrange(0, 4 * BLOCK)
            heap.truncate(size)
            disk.truncate(size)
        else:
            off, n = rnd.randrange(0, 4 * BLOCK), rnd.randrange(0, 2 * BLOCK)
            assert heap.read_at(off, n) == disk.read_at(off, n), step
        assert heap.size() == disk.size()
        assert len(heap.data) == len(disk.data)
        # The store's space counts the size held; memory only the chunks held.
        assert disk.fs.space.used == len(disk.data)
        assert heap.fs.space.used == heap.data.used == sum(map(len, heap.data.chunks.values()))
        assert heap.data.used <= len(heap.data)
    assert heap.read_at(0, heap.size()) == disk.read_at(0, disk.size())


def test_read_into_a_memoryview_and_holes_read_zero(store):
    f = TmpFS(size=64 << 20, store=store).root.create(b"f", 0o644, 0, 0)
    f.write_at(3 * BLOCK + 10, b"tail")          # blocks 0..2 never written: a hole
    assert len(f.data.blocks) == 1
    buf = bytearray(b"\xff" * (3 * BLOCK + 14))
    assert f.read_into(memoryview(buf), 0) == len(buf)
    assert buf == bytes(3 * BLOCK + 10) + b"tail"


def test_a_shrunk_then_grown_file_reads_zero_where_it_was_cut(store):
    f = TmpFS(size=64 << 20, store=store).root.create(b"f", 0o644, 0, 0)
    f.write_at(0, b"x" * (2 * BLOCK))
    f.truncate(100)
    f.truncate(2 * BLOCK)                        # a hole now: zeros, not the old x's
    assert f.read_at(0, 2 * BLOCK) == b"x" * 100 + bytes(2 * BLOCK - 100)
    f.write_at(2 * BLOCK - 1, b"y")              # held again up to there: still zeros
    assert f.read_at(90, 20) == b"x" * 10 + bytes(10)


def test_freed_data_goes_back_to_the_disk_and_blocks_are_reused(store):
    fs = TmpFS(size=64 << 20, store=store)
    f = fs.root.create(b"f", 0o644, 0, 0)
    f.write_at(0, os.urandom(8 * BLOCK))
    assert store.blocks == 8 and _disk_bytes(store) >= 8 * BLOCK
    f.truncate(0)
    assert store.blocks == 0 and fs.space.used == 0
    store.flush()
    assert _disk_bytes(store) < BLOCK
    g = fs.root.create(b"g", 0o644, 0, 0)
    g.truncate(BLOCK)
    g.write_at(BLOCK - 1, b"z")                  # reuses a punched block: zeros before it
    assert g.read_at(0, BLOCK) == bytes(BLOCK - 1) + b"z"
    fs.root.unlink(b"g")
    del g
    assert store.blocks == 0


def test_freed_blocks_are_punched_in_batches(store):
    """Freed blocks wait, at most PENDING_MAX of them, and then go back in merged punches."""
    fs = TmpFS(size=1 << 30, store=store)
    for i in range(PENDING_MAX + 5):
        f = fs.root.create(b"j", 0o644, 0, 0)
        f.write_at(0, b"j" * 5000)
        fs.root.unlink(b"j")
        del f
        assert len(store._pending) < PENDING_MAX
    # Reused blocks read as zero past what their new file wrote.
    g = fs.root.create(b"g", 0o644, 0, 0)
    g.truncate(BLOCK)
    g.write_at(10, b"new")
    assert g.read_at(0, BLOCK) == bytes(10) + b"new" + bytes(BLOCK - 13)
    assert _disk_bytes(store) <= (PENDING_MAX + 2) * 8192


def test_the_size_bound_is_enospc_and_writes_nothing(store):
    fs = TmpFS(size=BLOCK, store=store)
    f = fs.root.create(b"f", 0o644, 0, 0)
    f.write_at(0, b"a" * (BLOCK - 10))
    with pytest.raises(SyscallError) as e:
        f.write_at(BLOCK - 10, b"b" * 11)
    assert e.value.errno == errno.ENOSPC
    assert f.size() == BLOCK - 10 and fs.space.used == BLOCK - 10
    assert f.write_at(BLOCK - 10, b"b" * 10) == 10
    assert fs.statfs().f_bfree == 0


def test_file_data_is_not_charged_to_the_sandbox_memory(store):
    """--memory counts the data of in-memory files, not of files on the host's disk."""
    account = MemoryAccount(1 << 20)
    heap = TmpFS(size=64 << 20, account=account).root.create(b"f", 0o644, 0, 0)
    with pytest.raises(SyscallError) as e:
        heap.write_at(0, bytes(2 << 20))
    assert e.value.errno == errno.ENOMEM
    disk = TmpFS(size=64 << 20, account=account, store=store).root.create(b"f", 0o644, 0, 0)
    assert disk.write_at(0, bytes(2 << 20)) == 2 << 20
    assert account.used == 0


def test_default_bound_is_the_host_free_space(store):
    fs = TmpFS(store=store)
    st = os.statvfs(store.path)
    assert abs(fs.space.limit - st.f_bavail * st.f_frsize) < (64 << 20)


def test_overlay_dir_problem(tmp_path):
    assert overlay_dir_problem(str(tmp_path)) is None
    assert os.listdir(tmp_path) == []            # the trial file has no name either
    assert "no such directory" in overlay_dir_problem(str(tmp_path / "missing"))
    (tmp_path / "f").write_text("")
    assert "not a directory" in overlay_dir_problem(str(tmp_path / "f"))
    assert "cannot create a file there" in overlay_dir_problem("/proc/1")


def test_free_from_a_finalizer_while_the_lock_is_held(store):
    """A file's last reference can go in a finalizer run inside alloc: free must not wait."""
    offs = [store.alloc() for _ in range(PENDING_MAX)]
    with store._lock:                    # as if the collector ran inside alloc()
        store.free(offs)                 # returns: the punching is left for later
    assert store.blocks == 0 and len(store._pending) == PENDING_MAX
    store.flush()
    assert not store._pending and sorted(store._free) == sorted(offs)
    assert store.alloc() in offs          # reused once punched
