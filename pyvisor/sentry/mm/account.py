"""Bounds on the memory a sandbox holds: ``--memory`` and tmpfs sizes.

Linux bounds a container's memory with a memory cgroup, which counts pages
when they are touched, and bounds each tmpfs by its ``size=`` (half of RAM
by default), which counts the pages its files hold: a write past it fails
with ENOSPC. Here an account counts bytes as they are committed:

- the sandbox's account (``--memory``) counts every application page the
  memory file allocator hands out, when it is mapped (N.B. strict accounting,
  as Linux's ``vm.overcommit_memory=2``, not the cgroup's count of touched
  pages: the ptrace platform never sees a first touch), plus the data of
  every in-memory file; going past it is ENOMEM for the call (mmap, brk,
  fork, write), and a fault that needs a new page (a copy-on-write break)
  kills the task as Linux's OOM killer would;
- each tmpfs (the overlay's upper layer, /tmp, /dev/shm) has an account of
  its own, charged first, whose bound is ENOSPC, as tmpfs's ``size=``.

Pages of the page cache (file contents shared by read-only mappings) are
not counted: Linux can reclaim them, and so can the page cache here.
"""

import errno
import os
import threading

from pyvisor.sentry.errors import SyscallError


class MemoryAccount:
    """Bytes in use against an optional limit; a child charges its parent too.

    ``limit`` None is unbounded; going over it raises SyscallError(err).
    """

    def __init__(self, limit=None, err=errno.ENOMEM, parent=None):
        self.limit = limit
        self.err = err
        self.parent = parent
        self.used = 0
        # Re-entrant: an uncharge can run from a finalizer while the same
        # thread is inside charge().
        self._lock = threading.RLock()

    def charge(self, n):
        """Count ``n`` more bytes, or raise without counting any."""
        if n <= 0:
            return
        with self._lock:
            if self.limit is not None and self.used + n > self.limit:
                raise SyscallError(self.err)
            self.used += n
        if self.parent is not None:
            try:
                self.parent.charge(n)
            except SyscallError:
                self.uncharge(n, parent=False)
                raise

    def uncharge(self, n, parent=True):
        if n <= 0:
            return
        with self._lock:
            self.used -= n
        if parent and self.parent is not None:
            self.parent.uncharge(n)

    def free(self):
        """Bytes left below the limit (None when unbounded)."""
        if self.limit is None:
            return None
        return max(0, self.limit - self.used)


def half_of_ram():
    """Linux's default tmpfs size: half of the host's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
