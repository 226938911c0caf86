"""An application address space: VMAs over the memory file.

Linux background: an address space is a set of non-overlapping virtual
memory areas (VMAs), each with protections and a backing object. Here every
VMA is backed by one range of the memory file, so a virtual address
translates to a file offset by one subtraction: ``fileoff + (addr - start)``.
Anonymous memory, the stack and writable file mappings own their range;
read-only private file mappings point into the page cache's copy of the file,
and after a copy-on-write fork both processes point at the same pages. Such
a VMA's ``cow`` is the SharedPages it maps; the host maps it without write
permission, and the first write (a fault, or the Sentry writing for the
application) gives the writer its own copy. MAP_SHARED memory is shared with
the processes forked from its mapper; a MAP_SHARED mapping of a regular
file maps the file's SharedFile (mm/shmfile.py, ``Vma.shm``), which every
process mapping the file shares. The platform's AddressSpace mirrors each change into the host
process (ptrace: an injected mmap/munmap/mprotect).

Lock order: MemoryManager.lock, then MemoryFileAllocator._lock.
"""

import bisect
import errno
import os
import threading

from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.mm.pagecache import SharedPages
from pyvisor.sentry.mm.shmfile import SHARED, data_runs

PAGE = 4096
PAGE_MASK = ~(PAGE - 1)
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_PRIVATE = 1, 2

# The application owns [MIN_ADDR, MM_TOP); the ptrace stub lives above MM_TOP.
MIN_ADDR = 0x10000
MM_TOP = 0x7FFFFFE00000
STACK_TOP = 0x7FFFFF000000 - PAGE * 16
STACK_SIZE = 8 << 20
MMAP_BASE = STACK_TOP - STACK_SIZE - (128 << 20)


def page_up(x):
    return (x + PAGE - 1) & PAGE_MASK


def page_down(x):
    return x & PAGE_MASK


def _host_prot(v):
    """What the host maps: shared pages are never writable there."""
    return v.prot & ~PROT_WRITE if v.cow else v.prot


def _eof_at(v):
    """Where the pages of shared-file VMA ``v`` that lie wholly past the
    file's EOF begin (``v.end`` if none do): mmap(2) "SIGBUS" for those."""
    eof = page_up(v.shm.inode.size())
    return v.start + min(max(eof - v.offset, 0), v.end - v.start)


def _mirror(aspace, v, remap=True):
    """Map (or, with ``remap`` false, re-protect) ``v`` in the host: a
    shared-file VMA's pages past EOF with no access, so touching them faults."""
    cut = _eof_at(v) if v.shm is not None else v.end
    if cut > v.start:
        if remap:
            aspace.map(v.start, cut - v.start, _host_prot(v), v.fileoff)
        else:
            aspace.protect(v.start, cut - v.start, _host_prot(v))
    if cut < v.end:
        if remap:
            aspace.map(cut, v.end - cut, 0, v.fileoff + (cut - v.start))
        else:
            aspace.protect(cut, v.end - cut, 0)


def _check_span(start, length):
    if start < MIN_ADDR or start + length > MM_TOP or length <= 0:
        raise SyscallError(errno.ENOMEM)


class Vma:
    """[start, end) mapped with ``prot``; ``fileoff`` is where start lives in the memory file."""

    __slots__ = ("start", "end", "prot", "flags", "fileoff", "name", "offset", "dev", "ino", "cow",
                 "shm", "maywrite")

    def __init__(self, start, end, prot, flags, fileoff, name=b"", offset=0, dev=0, ino=0,
                 cow=None, shm=None, maywrite=True):
        self.start = start
        self.end = end
        self.prot = prot
        self.flags = flags
        self.fileoff = fileoff
        self.name = name
        self.offset = offset   # offset in the mapped file, for /proc/self/maps
        self.dev = dev
        self.ino = ino
        self.cow = cow     # a page-cache Entry whose pages this maps read-only; copy before writing
        self.shm = shm     # the SharedFile (mm/shmfile.py) whose pages this maps, file byte = offset
        self.maywrite = maywrite   # False: a shared file mapping through a read-only description

    def split(self, at):
        """Cut at ``at``; self keeps [start, at), the returned VMA [at, end)."""
        d = at - self.start
        if self.cow:
            self.cow.ref()
        if self.shm:
            self.shm.ref()
        tail = Vma(at, self.end, self.prot, self.flags, self.fileoff + d, self.name,
                   self.offset + d if self.name else 0, self.dev, self.ino, self.cow, self.shm,
                   self.maywrite)
        self.end = at
        return tail

    def __repr__(self):
        return "Vma(%#x-%#x prot=%d %r)" % (self.start, self.end, self.prot, self.name)


class MemoryManager:
    """One address space. Preconditions: callers pass page-aligned ranges."""

    def __init__(self, allocator, aspace):
        self.alloc = allocator
        self.file = allocator.file
        self.aspace = aspace
        self.lock = threading.RLock()
        self._vmas = []      # sorted by start, protected by lock
        self._starts = []
        self.brk_start = self.brk_end = 0
        self.mmap_base = MMAP_BASE
        self.users = 1       # tasks sharing this address space (CLONE_VM); kernel lock

    # -- queries ---------------------------------------------------------

    def vmas(self):
        with self.lock:
            return list(self._vmas)

    def _find(self, addr):
        """The VMA containing addr, or None. Precondition: lock held."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self._vmas[i].end:
            return self._vmas[i]
        return None

    def is_free(self, start, end):
        with self.lock:
            i = bisect.bisect_left(self._starts, end)
            return i == 0 or self._vmas[i - 1].end <= start

    def find_free(self, length, hint=0):
        """An unmapped range of ``length`` bytes: at ``hint`` if free, else top-down below mmap_base."""
        with self.lock:
            if hint and MIN_ADDR <= hint and hint + length <= MM_TOP and self.is_free(hint, hint + length):
                return hint
            top = self.mmap_base
            for v in reversed(self._vmas):
                if v.start >= top:
                    continue
                if v.end <= top - length:
                    return top - length
                top = v.start
            if top - length >= MIN_ADDR:
                return top - length
            raise SyscallError(errno.ENOMEM)

    # -- edits -----------------------------------------------------------

    def map_anon(self, start, length, prot, flags=MAP_PRIVATE, name=b"", offset=0, dev=0, ino=0):
        """Map fresh zero pages at [start, start+length), replacing what was there."""
        _check_span(start, length)
        fileoff = self.alloc.alloc(length)
        return self._install(Vma(start, start + length, prot, flags, fileoff, name, offset, dev, ino))

    def map_shared_pages(self, start, length, prot, fileoff, name, offset, dev, ino):
        """MAP_SHARED of memory-file pages another owner holds (a memfd's
        extent): the VMA becomes one more owner of them (allocator.share)."""
        _check_span(start, length)
        self.alloc.share(fileoff, length)
        return self._install(Vma(start, start + length, prot, MAP_SHARED, fileoff, name, offset,
                                 dev, ino))

    def map_shared_file(self, start, length, prot, shm, fileoff, name, offset, dev, ino,
                        maywrite):
        """MAP_SHARED of a regular file: the VMA maps its SharedFile's pages
        (a reference on ``shm`` the caller took, dropped at unmap).
        ``maywrite``: the description was writable, so mprotect may add
        PROT_WRITE."""
        try:
            _check_span(start, length)
        except SyscallError:
            shm.unmapped(offset, 0)
            raise
        shm.mms.add(self)
        return self._install(Vma(start, start + length, prot, MAP_SHARED, fileoff, name, offset,
                                 dev, ino, shm=shm, maywrite=maywrite))

    def past_eof(self, addr):
        """Is ``addr`` in a page of a shared file mapping wholly past the file's EOF?"""
        with self.lock:
            v = self._find(addr)
            return v is not None and v.shm is not None and addr >= _eof_at(v)

    def refresh_shared(self, shm):
        """The size of ``shm``'s file changed: mirror its VMAs' pages past EOF again.

        Called from any task's thread: the edits are queued, not synced (a
        ptrace stub takes them from its own tracer, before it next runs
        application code or when a fault finds edits pending), so a task
        of another process running meanwhile sees the new EOF at its next
        entry into the Sentry; a fault in between is judged by the size now
        (``past_eof``)."""
        with self.lock:
            if self.aspace is None:
                return
            for v in self._vmas:
                if v.shm is shm:
                    _mirror(self.aspace, v, remap=False)

    def sync(self, start, end):
        """msync(2): write back the shared file pages in [start, end); every
        page must be mapped (ENOMEM)."""
        with self.lock:
            self._check_mapped(start, end)
            todo = []
            a = start
            while a < end:
                v = self._find(a)
                b = min(end, v.end)
                if v.shm is not None:
                    todo.append((v.shm, v.offset + (a - v.start), b - a))
                a = b
            for shm, off, n in todo:
                shm.writeback(off, off + n)

    def map_file(self, start, length, prot, flags, f, st, offset, nbytes, name):
        """Map [start, start+length) holding file bytes [offset, offset+nbytes), zeros after.

        Precondition: ``offset`` page-aligned. Read-only private mappings
        share the page cache's pages when those pages hold exactly that
        (the mapping ends at EOF or is all file); every other mapping gets
        its own copy.
        """
        _check_span(start, length)
        cache = self.alloc.page_cache
        nbytes = max(0, min(nbytes, st.st_size - offset))
        if cache is None or not nbytes or not cache.cacheable(st):
            vma = self.map_anon(start, length, prot, flags, name, offset, st.st_dev, st.st_ino)
            if nbytes:
                self.fill_from(start, nbytes, f, offset)
            return vma
        entry, src = cache.lookup(f, st, offset, nbytes)
        # Cached pages past nbytes read as zero only when nbytes ends at EOF.
        shared = nbytes == length and length or page_up(nbytes) * (offset + nbytes == st.st_size)
        if flags == MAP_PRIVATE and not prot & PROT_WRITE and shared:
            if shared < length:     # pages wholly past EOF (Linux: SIGBUS) read as zero here
                self.map_anon(start + shared, length - shared, prot, flags, name,
                              offset + shared, st.st_dev, st.st_ino)
            return self._install(Vma(start, start + shared, prot, flags, src, name, offset,
                                     st.st_dev, st.st_ino, cow=entry))
        try:
            vma = self.map_anon(start, length, prot, flags, name, offset, st.st_dev, st.st_ino)
            self.file.copy(vma.fileoff, src, nbytes)
        finally:
            entry.unref()
        return vma

    def _install(self, vma):
        """Put ``vma`` in place of whatever mapped its range, and mirror it."""
        with self.lock:
            gone = self._unmap_locked(vma.start, vma.end, push=False)
            i = bisect.bisect_left(self._starts, vma.start)
            self._vmas.insert(i, vma)
            self._starts.insert(i, vma.start)
            if self.aspace is not None:
                _mirror(self.aspace, vma)
            self._release(gone)
        return vma

    def _break_cow(self, v):
        """Give ``v`` pages of its own: the shared ones if no one else uses them, else a copy.

        Precondition: lock held.
        """
        n = v.end - v.start
        account = self.alloc.account
        if not v.cow.charged:
            account.charge(n)          # page-cache pages would become the task's own
        if v.cow.adopt(v.fileoff, n):
            v.cow = None
            if self.aspace is not None:
                self.aspace.protect(v.start, n, v.prot)
            return
        if not v.cow.charged:
            account.uncharge(n)
        own = self.alloc.alloc(n)
        self._copy_sparse(own, v.fileoff, n)
        shared, v.fileoff, v.cow = v.cow, own, None
        if self.aspace is not None:
            self.aspace.map(v.start, n, v.prot, own)
            self.aspace.sync()       # the shared pages may be freed just below
        shared.unref()

    def write_fault(self, addr):
        """A write to ``addr`` faulted: True if the task may write there (retry), now that
        shared pages became its own, here or by another thread that faulted first."""
        with self.lock:
            v = self._find(addr)
            if v is None or not v.prot & PROT_WRITE:
                return False
            if v.cow is not None:
                self._break_cow(v)
            elif self.aspace is not None:
                # Another thread took the pages over first, and its edit
                # should have made them writable; say so again rather than
                # let a stale host mapping fault forever.
                page = page_down(addr)
                self.aspace.protect(page, PAGE, _host_prot(v))
            return True

    def futex_key(self, addr):
        """A futex word's key: memory-file offset if MAP_SHARED, else (self, addr)."""
        with self.lock:
            v = self._find(addr)
            if v is None or not v.prot & PROT_READ:
                raise SyscallError(errno.EFAULT)
            if v.flags == MAP_SHARED:
                return v.fileoff + (addr - v.start)
            return (self, addr)

    def discard(self, start, end):
        """madvise(MADV_DONTNEED) on private anonymous memory: its pages read as zero again."""
        with self.lock:
            i, j = self._range(start, end)
            for v in self._vmas[i:j]:
                if v.flags != MAP_PRIVATE or v.ino:
                    continue
                n = v.end - v.start
                if v.cow:
                    shared, v.fileoff, v.cow = v.cow, self.alloc.alloc(n), None
                    if self.aspace is not None:
                        self.aspace.map(v.start, n, v.prot, v.fileoff)
                        self.aspace.sync()
                    shared.unref()
                else:
                    self.file.punch(v.fileoff, n)

    def _free(self, v):
        """Give back the pages ``v`` holds: its own, or its reference on shared ones."""
        if v.cow:
            v.cow.unref()
        elif v.shm:
            v.shm.unmapped(v.offset, v.end - v.start)
        else:
            self.alloc.free(v.fileoff, v.end - v.start)

    def unmap(self, start, end):
        with self.lock:
            self._unmap_locked(start, end, push=True)

    def _split_at(self, addr):
        """Make addr a VMA boundary. Precondition: lock held."""
        v = self._find(addr)
        if v is not None and v.start < addr:
            tail = v.split(addr)
            i = bisect.bisect_right(self._starts, addr)
            self._vmas.insert(i, tail)
            self._starts.insert(i, addr)

    def _range(self, start, end):
        """Indices [i, j) of the VMAs inside [start, end), after splitting at both ends."""
        self._split_at(start)
        self._split_at(end)
        i = bisect.bisect_left(self._starts, start)
        j = bisect.bisect_left(self._starts, end)
        return i, j

    def _unmap_locked(self, start, end, push):
        """Drop the VMAs in [start, end); returns those whose pages the caller must release.

        Pages go back to the allocator only once the host no longer maps
        them (another process may get them next): with ``push``, unmap, wait
        for it, release, and return nothing; without, the caller maps over
        the range and then calls ``_release`` with what this returned.
        """
        i, j = self._range(start, end)
        gone = self._vmas[i:j]
        del self._vmas[i:j]
        del self._starts[i:j]
        if not push:
            return gone
        if self.aspace is not None:
            self.aspace.unmap(start, end - start)
        self._release(gone)
        return []

    def _release(self, gone, sync=True):
        """Free the pages of VMAs the host no longer maps, once its edits are in force.

        ``sync=False`` frees them at once, leaving the unmap queued: only for
        an address space in which no application code can run before its
        next flush (execve, once the other threads are gone)."""
        if gone and sync and self.aspace is not None:
            self.aspace.sync()
        for v in gone:
            self._free(v)

    def protect(self, start, end, prot):
        """Implements mprotect's effect: every page of [start, end) must be mapped (ENOMEM)."""
        with self.lock:
            self._check_mapped(start, end)
            if prot & PROT_WRITE:
                a = start
                while a < end:
                    v = self._find(a)
                    if not v.maywrite:
                        # mprotect(2) EACCES: PROT_WRITE on a MAP_SHARED
                        # mapping of a file not opened for writing.
                        raise SyscallError(errno.EACCES)
                    a = v.end
            i, j = self._range(start, end)
            shared = False
            for v in self._vmas[i:j]:
                v.prot = prot
                shared = shared or v.cow is not None or v.shm is not None
            if self.aspace is None:
                return
            if not shared:
                self.aspace.protect(start, end - start, prot)
                return
            for v in self._vmas[i:j]:
                _mirror(self.aspace, v, remap=False)

    def _check_mapped(self, start, end):
        a = start
        while a < end:
            v = self._find(a)
            if v is None:
                raise SyscallError(errno.ENOMEM)
            a = v.end

    def remap(self, old, old_len, new_len, may_move, fixed_addr=None):
        """Implements mremap's effect; returns the new address."""
        with self.lock:
            v = self._find(old)
            if v is None or old + old_len > v.end:
                raise SyscallError(errno.EFAULT)
            if new_len <= old_len and fixed_addr is None:
                if new_len < old_len:
                    self._unmap_locked(old + new_len, old + old_len, push=True)
                return old
            dest = fixed_addr
            if dest is None:
                if self.is_free(old + old_len, old + new_len) and old + new_len <= MM_TOP:
                    dest = old
                elif not may_move:
                    raise SyscallError(errno.ENOMEM)
                else:
                    dest = self.find_free(new_len)
            prot, flags, name, offset = v.prot, v.flags, v.name, v.offset
            if v.shm is not None:
                # A shared file mapping moves or grows over the same file's pages.
                foff = v.offset + (old - v.start)
                shm, fileoff = SHARED.for_map(self.alloc, v.shm.inode, foff, new_len)
                gone = []
                if dest == old:
                    gone = self._unmap_locked(old, old + old_len, push=False)
                else:
                    self._unmap_locked(old, old + old_len, push=True)
                self.map_shared_file(dest, new_len, prot, shm, fileoff, name, foff, v.dev, v.ino,
                                     v.maywrite)
                self._release(gone)
                return dest
            # The old contents move to a new memory-file range; copy them.
            data_len = min(old_len, new_len)
            tmp = self.alloc.alloc(data_len)
            self._copy_out_of(old, tmp, data_len)
            gone = []
            if dest == old:
                gone = self._unmap_locked(old, old + old_len, push=False)
            else:
                self._unmap_locked(old, old + old_len, push=True)
            nv = self.map_anon(dest, new_len, prot, flags, name, offset, v.dev, v.ino)
            self._release(gone)
            self.file.copy(nv.fileoff, tmp, data_len)
            self.alloc.free(tmp, data_len)
            return dest

    def _copy_out_of(self, addr, fileoff, n):
        """Copy n bytes of application memory at addr into the memory file at fileoff."""
        done = 0
        for off, k in self._chunks(addr, n, 0):
            self.file.copy(fileoff + done, off, k)
            done += k

    # -- brk ---------------------------------------------------------------

    def set_brk_start(self, addr):
        self.brk_start = self.brk_end = page_up(addr)

    def brk(self, addr):
        """Implements brk(2): returns the new break, or the old one on failure."""
        with self.lock:
            if addr < self.brk_start:
                return self.brk_end
            old_top, new_top = page_up(self.brk_end), page_up(addr)
            if new_top > old_top:
                if not self.is_free(old_top, new_top) or new_top > self.mmap_base:
                    return self.brk_end
                try:
                    self.map_anon(old_top, new_top - old_top, PROT_READ | PROT_WRITE, name=b"[heap]")
                except SyscallError:
                    return self.brk_end
            elif new_top < old_top:
                self._unmap_locked(new_top, old_top, push=True)
            self.brk_end = addr
            return addr

    # -- copying -----------------------------------------------------------

    def _chunks(self, addr, n, need, write=False):
        """(fileoff, length) pieces of [addr, addr+n); EFAULT if any page lacks ``need``.

        ``write``: the caller writes the pieces, so shared pages become its own first.
        """
        out = []
        end = addr + n
        if addr < 0 or end > MM_TOP or end < addr:
            raise SyscallError(errno.EFAULT)
        with self.lock:
            while addr < end:
                v = self._find(addr)
                if v is None or (v.prot & need) != need:
                    raise SyscallError(errno.EFAULT)
                if write and v.cow:
                    self._break_cow(v)
                k = min(end, v.end) - addr
                out.append((v.fileoff + (addr - v.start), k))
                addr += k
        return out

    def _whole(self, addr, n, need):
        """The VMA holding all of [addr, addr+n) with ``need`` and no shared
        pages, or None: the common case, served without ``_chunks``' list.
        Precondition: lock held."""
        v = self._find(addr)
        if v is not None and addr + n <= v.end and v.prot & need == need and v.cow is None:
            return v
        return None

    def accessible(self, ranges, limit, write):
        """How many bytes of the (addr, length) ranges, taken in order and at
        most `limit` in all, are mapped readable (writable if ``write``)
        before the first that is not; moves nothing. A copy that must not
        fail halfway asks first."""
        need = PROT_WRITE if write else PROT_READ
        done = 0
        with self.lock:
            for addr, n in ranges:
                end = addr + min(n, limit - done)
                at = addr
                while at < end:
                    v = self._find(at)
                    if v is None or v.prot & need != need:
                        return done + at - addr
                    at = min(end, v.end)
                done += at - addr
                if done >= limit:
                    break
        return done

    def copy_in(self, addr, n):
        if n == 0:
            return b""
        with self.lock:
            v = self._whole(addr, n, PROT_READ)
            if v is not None:
                return self.file.read(v.fileoff + (addr - v.start), n)
        pieces = self._chunks(addr, n, PROT_READ)
        if len(pieces) == 1:
            return self.file.read(*pieces[0])
        return b"".join(self.file.read(off, k) for off, k in pieces)

    def copy_out(self, addr, data):
        n = len(data)
        if n == 0:
            return
        with self.lock:
            v = self._whole(addr, n, PROT_WRITE)
            if v is not None:
                self.file.write(v.fileoff + (addr - v.start), data)
                return
        done = 0
        mv = memoryview(data)
        for off, k in self._chunks(addr, n, PROT_WRITE, write=True):
            self.file.write(off, mv[done:done + k])
            done += k

    def copy_in_str(self, addr, maxlen):
        """Bytes up to the NUL at addr; ENAMETOOLONG past maxlen, EFAULT if unreadable."""
        out = []
        got = 0
        while got < maxlen:
            at = addr + got
            with self.lock:
                v = self._find(at)
                if v is None or not v.prot & PROT_READ:
                    raise SyscallError(errno.EFAULT)
                # Up to the end of this VMA only: the next may be unmapped.
                k = min(v.end - at, maxlen - got)
                off = v.fileoff + (at - v.start)
                s = self.file.cstr(off, k)
                if s is None:
                    s = self.file.read(off, k)
            if len(s) < k:
                if not out:
                    return s
                out.append(s)
                return b"".join(out)
            out.append(s)
            got += k
        raise SyscallError(errno.ENAMETOOLONG)

    def write_forced(self, addr, data):
        """Write ignoring protections: the loader filling read-only segments."""
        done = 0
        mv = memoryview(data)
        for off, k in self._chunks(addr, len(data), 0, write=True):
            self.file.write(off, mv[done:done + k])
            done += k

    def fill_from(self, addr, length, f, offset):
        """Fill application memory at addr from file ``f`` at ``offset``; returns bytes read."""
        done = 0
        for off, k in self._chunks(addr, length, 0, write=True):
            view = self.file.view(off, k)
            got = 0
            while got < k:
                r = f.preadinto(view[got:], offset + done + got)
                if r <= 0:
                    return done + got
                got += r
            done += k
        return done

    # -- whole address spaces ------------------------------------------------

    def fork(self):
        """A copy for fork(2); attach() it to an AddressSpace.

        Private VMAs of at least ``alloc.cow_min`` bytes are shared copy-on-
        write: both processes map the same pages read-only until one writes.
        Smaller ones are copied now, and only their pages that hold data
        (SEEK_DATA over the memory file), since a fault costs more than
        copying a few pages. MAP_SHARED memory and pages already shared
        (page cache, an earlier fork) are not copied.
        """
        child = MemoryManager(self.alloc, None)
        cow_min = self.alloc.cow_min
        protected = False
        with self.lock:
            for v in self._vmas:
                n = v.end - v.start
                cow = v.cow
                if cow is not None:
                    off = v.fileoff
                    cow.ref()
                elif v.shm is not None:
                    off = v.fileoff
                    v.shm.ref()
                    v.shm.mms.add(child)
                elif v.flags == MAP_SHARED:
                    off = v.fileoff
                    self.alloc.share(off, n)
                elif cow_min is not None and n >= cow_min:
                    off = v.fileoff
                    cow = v.cow = SharedPages(self.alloc, off, n, refs=2)
                    if v.prot & PROT_WRITE and self.aspace is not None:
                        self.aspace.protect(v.start, n, _host_prot(v))
                        protected = True
                else:
                    off = self.alloc.alloc(n)
                    self._copy_sparse(off, v.fileoff, n)
                child._vmas.append(Vma(v.start, v.end, v.prot, v.flags, off, v.name, v.offset,
                                       v.dev, v.ino, cow, v.shm, v.maywrite))
                child._starts.append(v.start)
            child.brk_start, child.brk_end, child.mmap_base = self.brk_start, self.brk_end, self.mmap_base
            if protected:
                # Read-only for every thread before any copy is made: a thread
                # still writing the shared pages would lose writes to a copy.
                self.aspace.sync()
        return child

    def _copy_sparse(self, dst, src, n):
        for data, hole in data_runs(self.alloc.fd, src, src + n):
            self.file.copy(dst + (data - src), data, hole - data)

    def attach(self, aspace):
        """Make ``aspace`` (empty) mirror every VMA."""
        with self.lock:
            self.aspace = aspace
            for v in self._vmas:
                _mirror(aspace, v)

    def reset(self):
        """execve(2): drop every mapping, keep the address space.

        Precondition: the caller is this address space's only task, stopped
        in the Sentry; the unmap runs before it next runs (see _release)."""
        with self.lock:
            gone, self._vmas, self._starts = self._vmas, [], []
            self.brk_start = self.brk_end = 0
            if self.aspace is not None:
                self.aspace.unmap(MIN_ADDR, MM_TOP - MIN_ADDR)
            self._release(gone, sync=False)

    def release(self):
        """Give every page back; the address space is gone."""
        with self.lock:
            for v in self._vmas:
                self._free(v)
            self._vmas = []
            self._starts = []
