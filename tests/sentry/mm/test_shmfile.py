"""A file's SharedFile (pyvisor/sentry/mm/shmfile.py) over a real tmpfs
file and the memory file: two address spaces share its pages, read/write
of the file go through it, and writeback writes only the pages that differ
(the file's mtime stays when nothing changed)."""

from pyvisor.sentry.mm.memfile import MemoryFileAllocator
from pyvisor.sentry.mm.mm import MAP_SHARED, PROT_READ, PROT_WRITE, MemoryManager
from pyvisor.sentry.mm.shmfile import SHARED
from pyvisor.sentry.vfs.tmpfs import TmpFS

RW = PROT_READ | PROT_WRITE
ADDR = 0x100000


def _map(mm, inode, offset, length):
    shm, fileoff = SHARED.for_map(mm.alloc, inode, offset, length)
    mm.map_shared_file(ADDR, length, RW, shm, fileoff, b"/f", offset, inode.fs.dev, inode.ino,
                       True)
    return shm


def test_two_address_spaces_share_the_pages_and_write_back():
    alloc = MemoryFileAllocator(size=1 << 30)
    fs = TmpFS()
    f = fs.root.create(b"f", 0o600, 0, 0)
    f.write_at(0, b"a" * 8192)
    one, two = MemoryManager(alloc, None), MemoryManager(alloc, None)
    shm = _map(one, f, 0, 8192)
    assert _map(two, f, 0, 8192) is shm
    assert SHARED.get(f) is shm
    one.copy_out(ADDR + 10, b"store")
    assert two.copy_in(ADDR + 10, 5) == b"store"
    assert shm.read(8, 9) == b"aastoreaa"
    assert f.read_at(10, 5) == b"aaaaa"          # not written back yet
    shm.write(4096, b"write")
    assert one.copy_in(ADDR + 4096, 5) == b"write"
    mtime = f.mtime_ns
    two.sync(ADDR + 4096, ADDR + 8192)           # the second page: the file has it already
    assert f.mtime_ns == mtime
    one.unmap(ADDR, ADDR + 8192)                 # not the last mapping: its pages go back
    assert f.read_at(10, 5) == b"store"
    two.copy_out(ADDR + 20, b"last")
    two.release()                                # the last: written back, extent freed
    assert f.read_at(20, 4) == b"last"
    assert SHARED.get(f) is None


def test_truncate_zeroes_the_cut_bytes_in_the_pages():
    alloc = MemoryFileAllocator(size=1 << 30)
    fs = TmpFS()
    f = fs.root.create(b"g", 0o600, 0, 0)
    f.write_at(0, b"x" * 8192)
    mm = MemoryManager(alloc, None)
    shm = _map(mm, f, 0, 8192)
    shm.truncate(100)
    assert mm.past_eof(ADDR + 4096) and not mm.past_eof(ADDR + 4095)
    shm.truncate(8192)
    assert mm.copy_in(ADDR + 99, 2) == b"x\0"
    assert shm.read(0, 8192) == b"x" * 100 + bytes(8092)
    mm.release()
    assert f.read_at(0, 8192) == b"x" * 100 + bytes(8092)
