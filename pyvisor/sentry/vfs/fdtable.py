"""Per-process fd tables and filesystem context.

`FDTable` maps fd numbers to open file descriptions plus the close-on-exec
flag (which belongs to the fd, not the description: dup() clears it). Each
entry holds one reference on its description; closing the entry drops it.
Linux allocates the lowest free fd at or above a minimum, and refuses fds at
or above RLIMIT_NOFILE (EMFILE for allocation, EBADF for dup2 targets).

`FSContext` is Linux's `fs_struct`: root, cwd and umask.
"""

import errno
import threading

from ..errors import SyscallError

RLIMIT_NOFILE = 1024
CLOSE_RANGE_UNSHARE = 1 << 1
CLOSE_RANGE_CLOEXEC = 1 << 2


class FDTable:
    """fd -> (FileDescription, cloexec). Thread-safe; lock order: table lock
    before any description lock (release() runs after the lock is dropped)."""

    def __init__(self, limit=RLIMIT_NOFILE):
        self.limit = limit
        # The LockTable once this table (a POSIX lock owner, as Linux's
        # files_struct) has set a record lock: closing any fd of a file
        # then drops the table's locks on it.
        self.lock_table = None
        self._lock = threading.Lock()
        self._files = {}        # fd -> FileDescription
        self._cloexec = set()   # fds with FD_CLOEXEC

    def _lowest_free_locked(self, minfd):
        fd = minfd
        while fd in self._files:
            fd += 1
        if fd >= self.limit:
            raise SyscallError(errno.EMFILE)
        return fd

    def _set_locked(self, fd, f, cloexec):
        """Put `f` at `fd`; returns the description that was there, or None."""
        old = self._files.get(fd)
        self._files[fd] = f
        if cloexec:
            self._cloexec.add(fd)
        else:
            self._cloexec.discard(fd)
        return old

    def install(self, f, cloexec=False, minfd=0):
        """Install `f` at the lowest free fd >= minfd and return it.

        Takes over the caller's reference to `f`; on EMFILE (or EINVAL for
        a minfd past the limit) that reference is dropped."""
        try:
            if minfd < 0 or minfd >= self.limit:
                raise SyscallError(errno.EINVAL if minfd < 0 else errno.EMFILE)
            with self._lock:
                fd = self._lowest_free_locked(minfd)
                self._set_locked(fd, f, cloexec)
                return fd
        except SyscallError:
            f.decref()
            raise

    def _drop(self, f):
        """One fd entry of `f` went away (the table lock not held)."""
        if self.lock_table is not None:
            self.lock_table.release_posix(self, f)
        f.decref()

    def get(self, fd):
        """The description at `fd`; EBADF if none."""
        f = self._files.get(fd)
        if f is None:
            raise SyscallError(errno.EBADF)
        return f

    def get_cloexec(self, fd):
        with self._lock:
            if fd not in self._files:
                raise SyscallError(errno.EBADF)
            return fd in self._cloexec

    def set_cloexec(self, fd, on):
        with self._lock:
            if fd not in self._files:
                raise SyscallError(errno.EBADF)
            if on:
                self._cloexec.add(fd)
            else:
                self._cloexec.discard(fd)

    def close(self, fd):
        """Implements close(2)'s table part; EBADF if `fd` is not open."""
        with self._lock:
            f = self._files.pop(fd, None)
            self._cloexec.discard(fd)
        if f is None:
            raise SyscallError(errno.EBADF)
        self._drop(f)

    def dup(self, fd, minfd=0, cloexec=False):
        """dup(2) / F_DUPFD: the same description at the lowest free fd >= minfd."""
        if minfd < 0 or minfd >= self.limit:
            raise SyscallError(errno.EINVAL)
        with self._lock:
            f = self._files.get(fd)
            if f is None:
                raise SyscallError(errno.EBADF)
            new = self._lowest_free_locked(minfd)
            self._set_locked(new, f.incref(), cloexec)
            return new

    def dup2(self, oldfd, newfd, cloexec=False):
        """dup2(2)/dup3(2): `newfd` refers to oldfd's description, closing
        whatever was there. dup2(fd, fd) just checks fd (the caller rejects
        it for dup3)."""
        with self._lock:
            f = self._files.get(oldfd)
            if f is None:
                raise SyscallError(errno.EBADF)
            if oldfd == newfd:
                return newfd
            if newfd < 0 or newfd >= self.limit:
                raise SyscallError(errno.EBADF)
            old = self._set_locked(newfd, f.incref(), cloexec)
        if old is not None:
            self._drop(old)
        return newfd

    def close_range(self, first, last, flags=0):
        """close_range(2): close (or mark FD_CLOEXEC) fds in [first, last]."""
        with self._lock:
            fds = [fd for fd in self._files if first <= fd <= last]
            if flags & CLOSE_RANGE_CLOEXEC:
                self._cloexec.update(fds)
                return
            closed = [self._files.pop(fd) for fd in fds]
            self._cloexec.difference_update(fds)
        for f in closed:
            self._drop(f)

    def close_on_exec(self):
        """execve(2): close every fd marked FD_CLOEXEC."""
        with self._lock:
            fds = list(self._cloexec)
            closed = [self._files.pop(fd) for fd in fds if fd in self._files]
            self._cloexec.clear()
        for f in closed:
            self._drop(f)

    def close_all(self):
        """Process exit: drop every reference."""
        self.close_range(0, 1 << 31)

    def fork(self):
        """A copy for fork(2): same descriptions (shared offsets), same flags."""
        new = FDTable(self.limit)
        with self._lock:
            for fd, f in self._files.items():
                new._files[fd] = f.incref()
            new._cloexec = set(self._cloexec)
        return new

    def items(self):
        """Sorted [(fd, description)], a snapshot (for /proc/PID/fd)."""
        with self._lock:
            return sorted(self._files.items())

    def __len__(self):
        return len(self._files)


class FSContext:
    """root and cwd (VDentry values) and the umask of a process."""

    def __init__(self, root, cwd=None, umask=0o022):
        self._lock = threading.Lock()
        self.root = root
        self.cwd = cwd if cwd is not None else root
        self.umask = umask

    def set_umask(self, mask):
        """umask(2): set, return the old mask."""
        with self._lock:
            old, self.umask = self.umask, mask & 0o777
            return old

    def fork(self):
        return FSContext(self.root, self.cwd, self.umask)
