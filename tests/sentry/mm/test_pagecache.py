"""File mappings served from the page cache (pyvisor/sentry/mm/pagecache.py)."""

import os
from conftest import TESTS_DIR

HERE = TESTS_DIR


def test_file_mappings_match_native(sandbox, build_c):
    prog = build_c(os.path.join(HERE, "c", "mmap_file.c"))
    native = sandbox.native([prog, "/tmp/pyvisor-mmap-file-native.dat"])
    run = sandbox.run([prog, "/tmp/pyvisor-mmap-file-%s.dat" % sandbox.platform])
    assert native.returncode == 0, native.stderr
    assert run.returncode == 0, run.stderr
    assert run.stdout == native.stdout
    assert b"private copy: b ZY, a ae" in run.stdout


def test_cache_shares_pages_and_evicts(tmp_path):
    """A second read-only mapping uses the same memory-file pages; a writable one copies."""
    from pyvisor.sentry.mm.memfile import MemoryFileAllocator
    from pyvisor.sentry.mm.mm import MemoryManager
    from pyvisor.sentry.vfs.stat import Stat

    data = bytes(range(256)) * 64            # 4 pages
    path = tmp_path / "f"
    path.write_bytes(data)

    class HostFile:
        """Just enough of a file description: preadinto from a real host file."""

        def __init__(self, p):
            self.fd = os.open(p, os.O_RDONLY)

        def preadinto(self, view, off):
            return os.preadv(self.fd, [view], off)

    f = HostFile(path)
    hst = os.stat(path)
    st = Stat(st_mode=hst.st_mode, st_size=hst.st_size, st_ino=hst.st_ino, st_dev=hst.st_dev,
              st_mtime_ns=hst.st_mtime_ns, st_ctime_ns=hst.st_ctime_ns)
    alloc = MemoryFileAllocator(64 << 20)
    alloc.page_cache.limit = 16 << 12
    mm = MemoryManager(alloc, None)
    a = mm.map_file(0x400000, 4 << 12, 1, 2, f, st, 0, len(data), b"f")
    b = mm.map_file(0x500000, 4 << 12, 1, 2, f, st, 0, len(data), b"f")
    assert a.cow is b.cow and a.fileoff == b.fileoff and a.cow.refs == 2
    assert mm.copy_in(0x400000 + 300, 10) == data[300:310]
    w = mm.map_file(0x600000, 4 << 12, 3, 2, f, st, 0, len(data), b"f")
    assert w.cow is None and w.fileoff != a.fileoff
    mm.copy_out(0x600000, b"XY")
    assert mm.copy_in(0x400000, 2) == data[:2]
    # Made writable, the mapping stays shared until its first write.
    mm.protect(0x500000, 0x500000 + (4 << 12), 3)
    assert [v.cow for v in mm.vmas() if v.start == 0x500000] == [a.cow]
    assert mm.write_fault(0x500000 + 10)
    assert [v.cow for v in mm.vmas() if v.start == 0x500000] == [None] and a.cow.refs == 1
    assert mm.copy_in(0x500000, 4096) == data[:4096]
    # A changed file is a new entry; the old one goes once nothing maps it.
    entry = a.cow
    st2 = st.replace(st_mtime_ns=st.st_mtime_ns + 1)
    for i in range(20):    # more than the limit: the old entry is evicted
        st_i = st.replace(st_ino=st.st_ino + 1000 + i)
        mm.map_file(0x700000 + (i << 16), 4 << 12, 1, 2, f, st_i, 0, len(data), b"g")
    assert entry.evicted and entry.refs == 1
    before = alloc.allocated
    mm.unmap(0x400000, 0x400000 + (4 << 12))
    assert alloc.allocated == before - (4 << 12)      # the last user gave the pages back
    c = mm.map_file(0x400000, 4 << 12, 1, 2, f, st2, 0, len(data), b"f")
    assert c.cow is not entry
    mm.release()
    alloc.page_cache.clear()
    assert alloc.allocated == 0


def test_a_newer_version_of_a_file_drops_the_older(tmp_path):
    """Shared file access: the host rewrote a cached file (same dev and
    inode, new size and mtime). Caching the new version drops the old
    entry at once (its pages go when no mapping holds them), rather than
    letting it age out."""
    from pyvisor.sentry.mm.memfile import MemoryFileAllocator
    from pyvisor.sentry.vfs.stat import Stat

    path = tmp_path / "f"

    class HostFile:
        def preadinto(self, view, off):
            with open(path, "rb") as fh:
                fh.seek(off)
                return fh.readinto(view)

    alloc = MemoryFileAllocator(64 << 20)
    cache = alloc.page_cache
    versions = []
    for data in (b"a" * 5000, b"bb" * 4000):
        path.write_bytes(data)
        hst = os.stat(path)
        st = Stat(st_mode=hst.st_mode, st_size=hst.st_size, st_ino=hst.st_ino,
                  st_dev=hst.st_dev, st_mtime_ns=hst.st_mtime_ns + len(versions),
                  st_ctime_ns=hst.st_ctime_ns)
        entry, off = cache.lookup(HostFile(), st, 0, len(data))
        assert alloc.file.view(off, len(data)).tobytes() == data
        versions.append(entry)
    old, new = versions
    assert old.evicted and not new.evicted and cache.cached == 8192
    before = alloc.allocated
    old.unref()
    assert alloc.allocated == before - 8192 and old.refs == 0      # two pages
    new.unref()
    cache.clear()
    assert alloc.allocated == 0
