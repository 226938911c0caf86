"""Anonymous pipes, as pipe(7) specifies them.

- Capacity 64 KiB by default (F_SETPIPE_SZ may change it, rounded up to a
  power-of-two number of pages, at most /proc/sys/fs/pipe-max-size = 1 MiB).
- A write of at most PIPE_BUF (4096) bytes is atomic: it waits until all of
  it fits. A larger blocking write may be split, and returns only when all
  is written. With O_NONBLOCK, a small write that does not fit fails with
  EAGAIN; a large one writes what fits (EAGAIN if nothing does).
- Writing with no read end open gives EPIPE (SIGPIPE delivery is the
  caller's job). Reading an empty pipe with no write end gives EOF (b"");
  with writers, it blocks, or EAGAIN with O_NONBLOCK.

Blocking waits on one Condition per pipe, through `waiting.wait`, so a
signal interrupts them (`waiting.Interrupted`); a read or write that already
moved bytes returns that partial count instead, as Linux does.

Readiness (vfs/waitq.py): the Pipe holds one WaitQueue, notified after every
change of state (data in, space freed, an end opened or closed, capacity
changed), outside the pipe's lock. Each end answers `poll_events()` from its
own side, as pipe_poll() in fs/pipe.c does: a read end is POLLIN with data
and POLLHUP once no writer is left (after one has been); a write end is
POLLOUT when at least PIPE_BUF bytes are free and POLLERR with no reader.
"""

import errno
import itertools
import struct
import threading

from .. import waiting
from ..errors import SyscallError, partial
from .file import FIONREAD, FileDescription, O_ACCMODE, O_NONBLOCK, O_RDONLY, O_WRONLY
from .inode import now_ns
from .stat import PIPEFS_MAGIC, S_IFIFO, Stat, StatFs
from .waitq import (POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM,
                    WaitQueue)

PIPE_BUF = 4096
DEFAULT_CAPACITY = 65536
MAX_CAPACITY = 1 << 20
PAGE = 4096

_pipe_inos = itertools.count(1)
_PIPEFS_DEV = 0x0C


class Pipe:
    """The shared buffer and the counts of open ends."""

    def __init__(self):
        self.ino = next(_pipe_inos)
        self.capacity = DEFAULT_CAPACITY
        self.buf = bytearray()
        self.readers = 0
        self.writers = 0
        self.reader_opens = 0     # open counters: a FIFO opener waits for the
        self.writer_opens = 0     # other side to *have opened*, even if it closed since
        self.cond = threading.Condition()
        self.waitq = WaitQueue()
        self.ctime_ns = now_ns()

    def set_capacity(self, size):
        """F_SETPIPE_SZ: round up to pages, a power of two; EBUSY if the
        data already buffered does not fit."""
        if size > MAX_CAPACITY:
            raise SyscallError(errno.EPERM)
        size = max(size, PAGE)
        cap = PAGE
        while cap < size:
            cap *= 2
        with self.cond:
            if len(self.buf) > cap:
                raise SyscallError(errno.EBUSY)
            self.capacity = cap
            self.cond.notify_all()
        self.waitq.notify()
        return cap

    def read(self, count, nonblock):
        """Up to `count` bytes; b"" at EOF. Blocks (interruptibly) while empty
        with a writer, or EAGAIN when `nonblock`."""
        with self.cond:
            while not self.buf:
                if self.writers == 0:
                    return b""
                if nonblock:
                    raise SyscallError(errno.EAGAIN)
                waiting.wait(self.cond)
            data = bytes(self.buf[:count])
            del self.buf[:count]
            self.cond.notify_all()
        self.waitq.notify(POLLOUT | POLLWRNORM)
        return data

    def unread(self, data):
        """Put bytes a read took but could not deliver back at the front
        (pipe_read consumes a buffer only once it is copied out)."""
        if not data:
            return
        with self.cond:
            self.buf[:0] = data
            self.cond.notify_all()
        self.waitq.notify(POLLIN | POLLRDNORM)

    def write(self, data, nonblock):
        """Write `data` by pipe(7)'s rules; returns the count. EPIPE with no
        reader (the caller sends SIGPIPE). A wait interrupted by a signal
        returns the bytes already written, or raises Interrupted if none."""
        try:
            return self._write(data, nonblock)
        finally:
            self.waitq.notify(POLLIN | POLLRDNORM)

    def _write(self, data, nonblock):
        n = len(data)
        with self.cond:
            if n <= PIPE_BUF:
                while True:
                    if self.readers == 0:
                        raise SyscallError(errno.EPIPE)
                    if self.capacity - len(self.buf) >= n:
                        self.buf += data
                        self.cond.notify_all()
                        return n
                    if nonblock:
                        raise SyscallError(errno.EAGAIN)
                    waiting.wait(self.cond)
            done = 0
            while done < n:
                if self.readers == 0:
                    return partial(done, SyscallError(errno.EPIPE))
                room = self.capacity - len(self.buf)
                if room > 0:
                    chunk = data[done:done + room]
                    self.buf += chunk
                    done += len(chunk)
                    self.cond.notify_all()
                    # Readers (poll, epoll) learn of each piece, or a big
                    # write would wait for a reader that never woke.
                    self.waitq.notify(POLLIN | POLLRDNORM)
                    continue
                if nonblock:
                    return partial(done, SyscallError(errno.EAGAIN))
                try:
                    waiting.wait(self.cond)
                except waiting.Interrupted as e:
                    return partial(done, e)
            return done

    # --- splice(2), tee(2), vmsplice(2) (fs/splice.c) ---------------------

    def wait_readable(self, nonblock):
        """Wait until the pipe holds data (splice_from_pipe_next, ipipe_prep):
        True then, False at EOF (empty, no writer); EAGAIN when `nonblock`."""
        with self.cond:
            while not self.buf:
                if self.writers == 0:
                    return False
                if nonblock:
                    raise SyscallError(errno.EAGAIN)
                waiting.wait(self.cond)
            return True

    def wait_writable(self, nonblock):
        """Wait for room (wait_for_space, opipe_prep) and return how much:
        EPIPE with no reader (the caller sends SIGPIPE), EAGAIN when full
        and `nonblock`."""
        with self.cond:
            while True:
                if self.readers == 0:
                    raise SyscallError(errno.EPIPE)
                room = self.capacity - len(self.buf)
                if room > 0:
                    return room
                if nonblock:
                    raise SyscallError(errno.EAGAIN)
                waiting.wait(self.cond)

    def take(self, count, keep=False):
        """Up to `count` buffered bytes, without waiting; `keep` leaves them
        in the pipe (tee)."""
        with self.cond:
            data = bytes(self.buf[:count])
            if keep or not data:
                return data
            del self.buf[:count]
            self.cond.notify_all()
        self.waitq.notify(POLLOUT | POLLWRNORM)
        return data

    def push(self, data):
        """Append bytes the caller fitted in the room wait_writable reported."""
        if not data:
            return
        with self.cond:
            self.buf += data
            self.cond.notify_all()
        self.waitq.notify(POLLIN | POLLRDNORM)

    def open_end(self, writer):
        with self.cond:
            if writer:
                self.writers += 1
                self.writer_opens += 1
            else:
                self.readers += 1
                self.reader_opens += 1
            self.cond.notify_all()
        self.waitq.notify()

    def wait_for_peer(self, writer, seen):
        """FIFO open: block until the other side has opened since `seen`."""
        with self.cond:
            if writer:
                while self.readers == 0 and self.reader_opens == seen:
                    waiting.wait(self.cond)
            else:
                while self.writers == 0 and self.writer_opens == seen:
                    waiting.wait(self.cond)

    def close_end(self, writer):
        with self.cond:
            if writer:
                self.writers -= 1
            else:
                self.readers -= 1
            self.cond.notify_all()
        self.waitq.notify()

    def nread(self):
        with self.cond:
            return len(self.buf)

    def poll_events(self, reader, writer):
        """Ready events for a description that is a reader and/or a writer
        (fs/pipe.c pipe_poll). A FIFO reader that never saw a writer gets
        no POLLHUP, as Linux (it tracks w_counter)."""
        mask = 0
        with self.cond:
            if reader:
                if self.buf:
                    mask |= POLLIN | POLLRDNORM
                if self.writers == 0 and self.writer_opens:
                    mask |= POLLHUP
            if writer:
                if self.capacity - len(self.buf) >= PIPE_BUF:
                    mask |= POLLOUT | POLLWRNORM
                if self.readers == 0:
                    mask |= POLLERR
        return mask


class PipeFile(FileDescription):
    """One end of a pipe (the access mode says which)."""

    seekable = False

    def __init__(self, pipe, flags, vd=None):
        super().__init__(vd, flags)
        self.pipe = pipe
        self.is_writer = flags & O_ACCMODE == O_WRONLY
        pipe.open_end(self.is_writer)

    def release(self):
        self.pipe.close_end(self.is_writer)

    def pread(self, count, offset):
        if offset >= 0:
            raise SyscallError(errno.ESPIPE)
        self.check_readable()
        return self.pipe.read(count, self.nonblocking)

    def pwrite(self, data, offset):
        if offset >= 0:
            raise SyscallError(errno.ESPIPE)
        self.check_writable()
        return self.pipe.write(data, self.nonblocking)

    def nread(self):
        return self.pipe.nread()

    @property
    def waitq(self):
        return self.pipe.waitq

    def poll_events(self):
        """Readiness of this end (vfs/waitq.py contract)."""
        return self.pipe.poll_events(not self.is_writer, self.is_writer)

    def ioctl(self, t, request, arg):
        if request == FIONREAD:
            t.copy_out(arg, struct.pack("<i", self.pipe.nread()))
            return 0
        raise SyscallError(errno.ENOTTY)

    def stat(self):
        if self.vd is not None:
            return self.vd.inode.stat()
        return Stat(st_mode=S_IFIFO | 0o600, st_ino=self.pipe.ino, st_dev=_PIPEFS_DEV,
                    st_nlink=1, st_blksize=PAGE, st_atime_ns=self.pipe.ctime_ns,
                    st_mtime_ns=self.pipe.ctime_ns, st_ctime_ns=self.pipe.ctime_ns)

    def statfs(self):
        return StatFs(f_type=PIPEFS_MAGIC)

    def path(self):
        if self.vd is not None:
            return super().path()
        return b"pipe:[%d]" % self.pipe.ino

    def reopen(self, t, flags):
        """Opening /proc/self/fd/N of a pipe gives a new end of the same pipe."""
        if flags & O_ACCMODE not in (O_RDONLY, O_WRONLY):
            raise SyscallError(errno.EINVAL)
        return PipeFile(self.pipe, flags)


class FifoFile(PipeFile):
    """One end of a named FIFO (mkfifo): a pipe that has a path."""

    def reopen(self, t, flags):
        return open_fifo(t, self.vd.inode, self.vd, flags)


class _RdwrFifo(FifoFile):
    """A FIFO opened O_RDWR: one description that is a reader and a writer."""

    def __init__(self, pipe, flags, vd):
        FileDescription.__init__(self, vd, flags)
        self.pipe = pipe
        pipe.open_end(False)
        pipe.open_end(True)

    def release(self):
        self.pipe.close_end(False)
        self.pipe.close_end(True)

    def poll_events(self):
        return self.pipe.poll_events(True, True)


def open_fifo(t, inode, vd, flags):
    """Open a FIFO node, as fifo(7) says: O_RDONLY waits for a writer and
    O_WRONLY for a reader, unless O_NONBLOCK (then a writer with no reader
    gets ENXIO); O_RDWR never waits. The pipe lives on the inode."""
    pipe = getattr(inode, "fifo", None)
    if pipe is None:
        pipe = inode.fifo = Pipe()
    acc = flags & O_ACCMODE
    if acc not in (O_RDONLY, O_WRONLY):
        return _RdwrFifo(pipe, flags, vd)
    writer = acc == O_WRONLY
    if writer and flags & O_NONBLOCK and pipe.readers == 0:
        raise SyscallError(errno.ENXIO)
    seen = pipe.reader_opens if writer else pipe.writer_opens
    f = FifoFile(pipe, flags, vd)
    if not flags & O_NONBLOCK:
        try:
            pipe.wait_for_peer(writer, seen)
        except waiting.Interrupted:
            f.decref()          # the open never happened: drop our end
            raise
    return f


def make_pipe(flags=0):
    """pipe2(2): (read end, write end); `flags` may hold O_NONBLOCK."""
    p = Pipe()
    nb = flags & O_NONBLOCK
    return PipeFile(p, O_RDONLY | nb), PipeFile(p, O_WRONLY | nb)
