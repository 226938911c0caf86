"""The caller's stdio: host fds the Sentry holds, served for the sandbox.

`host_file(hostfd, name)` wraps a host fd the Sentry owns (its copy of the
terminal, a pipe from the user's shell, a log file). Reads and writes go
through os.read/os.write on that fd. Only a fixed set of terminal ioctls
pass to the host, with their argument sizes fixed here, so the app never
chooses what the host kernel reads or writes:

    TCGETS, TCSETS, TCSETSW, TCSETSF   struct termios (36 bytes)
    TIOCGWINSZ, TIOCSWINSZ             struct winsize (8 bytes)
    FIONREAD                           int
    TIOCGPGRP                          int: always the sandbox's pgid 1
    TIOCSPGRP                          int: accepted, not passed on (N.B.
                                       host process groups are not ours)

Readiness (vfs/waitq.py): `poll_events()` asks the host with poll(2) and a
zero timeout. N.B. a host fd cannot notify a WaitQueue, so a HostFile has
no `waitq` but sets `poll_periodically`: poll, select and epoll re-check it
every POLL_INTERVAL while they wait. A blocking read of a host pipe or tty
waits the same way, so a signal interrupts it (`waiting.Interrupted`).
Where the host refuses poll(2) (the Sentry's seccomp filter lacks it), the
answer falls back to FIONREAD for input and "always writable" for output.
"""

import errno
import fcntl
import os
import select
import stat as _st
import struct
import threading

from .. import waiting
from ..errors import SyscallError
from .file import FIONREAD, FileDescription, O_ACCMODE, O_APPEND
from .stat import Stat
from .waitq import DEFAULT_EVENTS, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM

TCGETS, TCSETS, TCSETSW, TCSETSF = 0x5401, 0x5402, 0x5403, 0x5404
TIOCGPGRP, TIOCSPGRP = 0x540F, 0x5410
TIOCGWINSZ, TIOCSWINSZ = 0x5413, 0x5414
TERMIOS_SIZE = 36
WINSZ_SIZE = 8
SANDBOX_PGID = 1
POLL_INTERVAL = 0.02          # seconds between re-checks of a host fd's readiness
_HOST_POLL_EVENTS = select.POLLIN | select.POLLPRI | select.POLLOUT | select.POLLRDHUP


def _oserror(e):
    return SyscallError(e.errno or errno.EIO)


class HostFile(FileDescription):
    """A host fd served by the Sentry. The fd is owned by this description
    and closed on release unless `owned` is False."""

    def __init__(self, hostfd, name, flags=None, owned=True):
        if flags is None:
            # The access mode the host fd really has (stdin is often read-only).
            flags = fcntl.fcntl(hostfd, fcntl.F_GETFL) & (O_ACCMODE | O_APPEND)
        super().__init__(None, flags)
        self.hostfd = hostfd
        self.name = name
        self.owned = owned
        st = os.fstat(hostfd)             # EBADF now rather than at first use
        # The host fd keeps its own offset (the shell may have moved it), so
        # reads and writes always use it: never the description's offset.
        self.seekable = False
        self.isatty = os.isatty(hostfd)
        self.link_name = self._link_name(hostfd, st, name)

    @staticmethod
    def _link_name(hostfd, st, name):
        """What /proc/self/fd shows, as Linux names it: the terminal's path,
        pipe:[ino], socket:[ino]; else the name we were given. Computed once,
        before the Sentry's seccomp filter."""
        if os.isatty(hostfd):
            try:
                return os.ttyname(hostfd).encode()
            except OSError:
                return name
        if _st.S_ISFIFO(st.st_mode):
            return b"pipe:[%d]" % st.st_ino
        if _st.S_ISSOCK(st.st_mode):
            return b"socket:[%d]" % st.st_ino
        return name

    def release(self):
        if self.owned:
            try:
                os.close(self.hostfd)
            except OSError:
                pass

    # A host fd cannot wake a WaitQueue: waiters re-check it (module doc).
    poll_periodically = True

    def _host_poll(self):
        """The host's revents for our fd right now, or None when the host
        refuses poll(2) (seccomp)."""
        p = select.poll()
        p.register(self.hostfd, _HOST_POLL_EVENTS)
        try:
            res = p.poll(0)
        except OSError as e:
            if e.errno == errno.EPERM:
                return None
            raise _oserror(e) from e
        return res[0][1] if res else 0

    def poll_events(self):
        """Readiness of the host fd (vfs/waitq.py contract)."""
        revents = self._host_poll()
        if revents is None:
            return self._fallback_events()
        if revents & POLLIN:
            revents |= POLLRDNORM
        if revents & POLLOUT:
            revents |= POLLWRNORM
        return revents

    def _fallback_events(self):
        """Without host poll(2): regular files are always ready; otherwise
        input is ready when FIONREAD says bytes wait, output always."""
        if not self.isatty and _st.S_ISREG(self.stat().st_mode):
            return DEFAULT_EVENTS
        try:
            ready_in = self.nread() > 0
        except SyscallError:
            ready_in = False
        return POLLOUT | POLLWRNORM | (POLLIN | POLLRDNORM if ready_in else 0)

    def _ready(self, write):
        """O_NONBLOCK here is the sandbox's flag only: setting it on the host
        fd would change the user's terminal for their shell too. So a
        non-blocking call polls first and gives EAGAIN if it would block; a
        blocking read waits interruptibly (`_wait_readable`)."""
        if not self.nonblocking:
            if not write:
                self._wait_readable()
            return
        revents = self._host_poll()
        if revents is None:
            revents = self._fallback_events()
        want = POLLOUT if write else POLLIN
        # POLLHUP/POLLERR: let the read or write itself report EOF or the error.
        if not revents & (want | select.POLLHUP | select.POLLERR | select.POLLNVAL):
            raise SyscallError(errno.EAGAIN)

    def _wait_readable(self):
        """Block until a read would not block, waking every POLL_INTERVAL to
        see whether a signal came (raises waiting.Interrupted). Without host
        poll(2) the read simply blocks on the host, uninterruptibly."""
        if waiting.current_task() is None:
            return
        cond = None
        while True:
            revents = self._host_poll()
            if revents is None or revents & (POLLIN | select.POLLHUP | select.POLLERR
                                             | select.POLLNVAL):
                return
            if cond is None:
                cond = threading.Condition()
            with cond:
                waiting.wait(cond, POLL_INTERVAL)

    def pread(self, count, offset):
        self.check_readable()
        try:
            if offset < 0:
                self._ready(write=False)
                return os.read(self.hostfd, count)
            return os.pread(self.hostfd, count, offset)
        except OSError as e:
            raise _oserror(e) from e

    def pwrite(self, data, offset):
        self.check_writable()
        try:
            if offset < 0:
                self._ready(write=True)
                return os.write(self.hostfd, data)
            return os.pwrite(self.hostfd, data, offset)
        except OSError as e:
            raise _oserror(e) from e

    def lseek(self, offset, whence):
        if whence not in (0, 1, 2, 3, 4):
            raise SyscallError(errno.EINVAL)
        try:
            return os.lseek(self.hostfd, offset, whence)
        except OSError as e:
            raise _oserror(e) from e

    def stat(self):
        try:
            h = os.fstat(self.hostfd)
        except OSError as e:
            raise _oserror(e) from e
        return Stat(st_mode=h.st_mode, st_ino=h.st_ino, st_dev=h.st_dev, st_nlink=h.st_nlink,
                    st_uid=0, st_gid=0, st_rdev=h.st_rdev, st_size=h.st_size,
                    st_blksize=h.st_blksize, st_blocks=h.st_blocks,
                    st_atime_ns=h.st_atime_ns, st_mtime_ns=h.st_mtime_ns,
                    st_ctime_ns=h.st_ctime_ns)

    def path(self):
        return self.link_name

    def nread(self):
        buf = bytearray(4)
        try:
            fcntl.ioctl(self.hostfd, FIONREAD, buf)
        except OSError as e:
            raise _oserror(e) from e
        return struct.unpack("<i", buf)[0]

    def _host_ioctl(self, request, arg):
        try:
            buf = bytearray(arg)
            fcntl.ioctl(self.hostfd, request, buf)
            return bytes(buf)
        except OSError as e:
            raise _oserror(e) from e

    def ioctl(self, t, request, arg):
        if request == TCGETS:
            t.copy_out(arg, self._host_ioctl(TCGETS, bytes(TERMIOS_SIZE)))
        elif request in (TCSETS, TCSETSW, TCSETSF):
            self._host_ioctl(request, t.copy_in(arg, TERMIOS_SIZE))
        elif request == TIOCGWINSZ:
            t.copy_out(arg, self._host_ioctl(TIOCGWINSZ, bytes(WINSZ_SIZE)))
        elif request == TIOCSWINSZ:
            self._host_ioctl(TIOCSWINSZ, t.copy_in(arg, WINSZ_SIZE))
        elif request == FIONREAD:
            t.copy_out(arg, struct.pack("<i", self.nread()))
        elif request == TIOCGPGRP:
            self._need_tty()
            t.copy_out(arg, struct.pack("<i", SANDBOX_PGID))
        elif request == TIOCSPGRP:
            self._need_tty()
            t.copy_in(arg, 4)
        else:
            raise SyscallError(errno.ENOTTY)
        return 0

    def _need_tty(self):
        if not self.isatty:
            raise SyscallError(errno.ENOTTY)

    def reopen(self, t, flags):
        """/dev/stdin, /proc/self/fd/0: a new description on a dup of the fd."""
        try:
            fd = os.dup(self.hostfd)
        except OSError as e:
            raise _oserror(e) from e
        return HostFile(fd, self.name, flags)


def host_file(hostfd, name, flags=None, owned=True):
    """A FileDescription serving the Sentry's host fd `hostfd` (stdio).

    `flags` defaults to the host fd's own access mode (and O_APPEND). The
    description owns `hostfd` and closes it when the last reference goes,
    unless `owned` is False."""
    try:
        return HostFile(hostfd, name, flags, owned)
    except OSError as e:
        raise _oserror(e) from e
