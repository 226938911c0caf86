"""Memory syscalls: mmap, munmap, mprotect, mremap, madvise, brk and friends."""

import errno
import os

from pyvisor.abi.ints import s32
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.mm.mm import MAP_PRIVATE, MAP_SHARED, MM_TOP, PAGE, PROT_WRITE, page_up
from pyvisor.sentry.mm.shmfile import SHARED
from pyvisor.sentry.vfs.file import RegularFile
from pyvisor.sentry.vfs.memfd import F_SEAL_FUTURE_WRITE, F_SEAL_WRITE, MemfdFile

MAP_TYPE = 0x0F
MAP_SHARED_VALIDATE = 0x03
MAP_FIXED, MAP_ANONYMOUS, MAP_FIXED_NOREPLACE = 0x10, 0x20, 0x100000
PROT_ALL = 0x7
MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4
MADV_DONTNEED, MADV_FREE = 4, 8
MS_ASYNC, MS_INVALIDATE, MS_SYNC = 1, 2, 4
S_IFMT, S_IFREG, S_IFCHR = 0o170000, 0o100000, 0o020000


def _check_range(addr, length):
    if addr % PAGE:
        raise SyscallError(errno.EINVAL)
    end = addr + page_up(length)
    if length == 0 or end > MM_TOP or end < addr:
        raise SyscallError(errno.EINVAL if length == 0 else errno.ENOMEM)
    return end


def _mappable_file(t, fd, flags, prot):
    f = t.fdtable.get(s32(fd))
    acc = f.flags & os.O_ACCMODE
    if acc == os.O_WRONLY or (flags & MAP_TYPE == MAP_SHARED and prot & PROT_WRITE and acc != os.O_RDWR):
        raise SyscallError(errno.EACCES)
    st = f.stat()
    kind = st.st_mode & S_IFMT
    if kind != S_IFREG and kind != S_IFCHR:
        raise SyscallError(errno.ENODEV)
    return f, st


def sys_mmap(t, addr, length, prot, flags, fd, offset, *_):
    """Implements Linux syscall mmap(2).

    A MAP_SHARED mapping of a regular file maps the file's shared pages
    (mm/shmfile.py): every such mapping, read(2) and write(2) agree, and
    changed pages reach the file at msync, fsync, munmap and exit.
    """
    prot, flags = s32(prot), s32(flags)
    if length == 0 or offset % PAGE or prot & ~PROT_ALL:
        raise SyscallError(errno.EINVAL)
    if flags & MAP_TYPE not in (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE):
        raise SyscallError(errno.EINVAL)
    length = page_up(length)
    if length == 0 or length > MM_TOP:
        raise SyscallError(errno.ENOMEM)
    f = st = None
    if not flags & MAP_ANONYMOUS:
        f, st = _mappable_file(t, fd, flags, prot)
    mm = t.mm
    if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
        _check_range(addr, length)
        if flags & MAP_FIXED_NOREPLACE and not flags & MAP_FIXED and not mm.is_free(addr, addr + length):
            raise SyscallError(errno.EEXIST)
    else:
        addr = mm.find_free(length, page_up(addr) if addr else 0)
    vflags = MAP_SHARED if flags & MAP_TYPE != MAP_PRIVATE else MAP_PRIVATE
    if f is None:
        mm.map_anon(addr, length, prot, vflags)
        return addr
    nbytes = length if st.st_mode & S_IFMT == S_IFREG else 0
    if isinstance(f, MemfdFile):
        _map_memfd(mm, addr, length, prot, vflags, f, st, offset, nbytes)
        return addr
    if nbytes and isinstance(f, RegularFile):
        if vflags == MAP_SHARED:
            shm, fileoff = SHARED.for_map(mm.alloc, f.inode, offset, length)
            mm.map_shared_file(addr, length, prot, shm, fileoff, f.path(), offset, st.st_dev,
                               st.st_ino, f.writable)
            return addr
        if SHARED.get(f.inode) is not None:
            # A private copy of what the shared pages hold now (the page
            # cache's entry may predate their stores: mtime did not move).
            _map_copy(mm, addr, length, prot, vflags, f, st, offset, nbytes)
            return addr
    mm.map_file(addr, length, prot, vflags, f, st, offset, nbytes, f.path())
    return addr


def _map_copy(mm, addr, length, prot, vflags, f, st, offset, nbytes):
    """A private mapping holding a copy of the file's bytes now."""
    mm.map_anon(addr, length, prot, vflags, f.path(), offset, st.st_dev, st.st_ino)
    mm.fill_from(addr, max(0, min(nbytes, st.st_size - offset)), f, offset)


def _map_memfd(mm, addr, length, prot, vflags, f, st, offset, nbytes):
    """A memfd mapping: MAP_SHARED maps the file's own pages (vfs/memfd.py);
    MAP_PRIVATE a copy. memfd_create(2): a writable shared mapping is EPERM
    under F_SEAL_WRITE or F_SEAL_FUTURE_WRITE."""
    inode = f.inode
    if vflags == MAP_PRIVATE:
        _map_copy(mm, addr, length, prot, vflags, f, st, offset, nbytes)
        return
    if prot & PROT_WRITE and inode.seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE):
        raise SyscallError(errno.EPERM)
    fileoff = inode.extent_for_map(offset, length)
    mm.map_shared_pages(addr, length, prot, fileoff, f.path(), offset, st.st_dev, st.st_ino)


def sys_munmap(t, addr, length, *_):
    """Implements Linux syscall munmap(2)."""
    end = _check_range(addr, length)
    t.mm.unmap(addr, end)
    return 0


def sys_mprotect(t, addr, length, prot, *_):
    """Implements Linux syscall mprotect(2)."""
    prot = s32(prot)
    if addr % PAGE or prot & ~(PROT_ALL | 0x01000000 | 0x02000000):   # GROWSDOWN/UP
        raise SyscallError(errno.EINVAL)
    if length == 0:
        return 0
    end = addr + page_up(length)
    if end > MM_TOP or end < addr:
        raise SyscallError(errno.ENOMEM)
    t.mm.protect(addr, end, prot & PROT_ALL)
    return 0


def sys_mremap(t, old, old_len, new_len, flags, new_addr, *_):
    """Implements Linux syscall mremap(2)."""
    flags = s32(flags)
    if old % PAGE or flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP):
        raise SyscallError(errno.EINVAL)
    if flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE or flags & MREMAP_DONTUNMAP:
        raise SyscallError(errno.EINVAL)
    old_len, new_len = page_up(old_len), page_up(new_len)
    if new_len == 0 or old_len == 0:
        raise SyscallError(errno.EINVAL)
    fixed = None
    if flags & MREMAP_FIXED:
        _check_range(new_addr, new_len)
        if new_addr < old + old_len and old < new_addr + new_len:
            raise SyscallError(errno.EINVAL)
        fixed = new_addr
    return t.mm.remap(old, old_len, new_len, bool(flags & MREMAP_MAYMOVE), fixed)


def sys_madvise(t, addr, length, advice, *_):
    """Implements Linux syscall madvise(2): MADV_DONTNEED/FREE zero private pages; others are hints."""
    if addr % PAGE:
        raise SyscallError(errno.EINVAL)
    advice = s32(advice)
    if advice in (MADV_DONTNEED, MADV_FREE) and length:
        end = addr + page_up(length)
        if end > MM_TOP or end < addr:
            raise SyscallError(errno.EINVAL)
        t.mm.discard(addr, end)
    return 0


def sys_brk(t, addr, *_):
    """Implements Linux syscall brk(2): returns the new break, or the old one on failure."""
    return t.mm.brk(addr)


def sys_msync(t, addr, length, flags, *_):
    """Implements Linux syscall msync(2): EINVAL for an unaligned addr,
    unknown flags or MS_ASYNC with MS_SYNC; ENOMEM if part of the range is
    unmapped; the changed pages of shared file mappings in it go back to
    their files (MS_ASYNC too: it is not worth deferring)."""
    flags = s32(flags)
    if addr % PAGE or flags & ~(MS_ASYNC | MS_INVALIDATE | MS_SYNC) \
            or flags & MS_ASYNC and flags & MS_SYNC:
        raise SyscallError(errno.EINVAL)
    end = addr + page_up(length)
    if end > MM_TOP or end < addr:
        raise SyscallError(errno.ENOMEM)
    if end > addr:
        t.mm.sync(addr, end)
    return 0


def sys_ok(t, *_):
    """Implements Linux syscalls mlock(2), munlock(2), mlockall(2) and
    munlockall(2): nothing to do with memory that never swaps (N.B. the
    arguments are not checked)."""
    return 0
