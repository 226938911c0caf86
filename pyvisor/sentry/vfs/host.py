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
"""

import errno
import fcntl
import os
import struct

from ..errors import SyscallError
from .file import FIONREAD, FileDescription, O_ACCMODE, O_APPEND
from .stat import Stat

TCGETS, TCSETS, TCSETSW, TCSETSF = 0x5401, 0x5402, 0x5403, 0x5404
TIOCGPGRP, TIOCSPGRP = 0x540F, 0x5410
TIOCGWINSZ, TIOCSWINSZ = 0x5413, 0x5414
TERMIOS_SIZE = 36
WINSZ_SIZE = 8
SANDBOX_PGID = 1


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
        os.fstat(hostfd)                  # EBADF now rather than at first use
        # The host fd keeps its own offset (the shell may have moved it), so
        # reads and writes always use it: never the description's offset.
        self.seekable = False
        self.isatty = os.isatty(hostfd)

    def release(self):
        if self.owned:
            try:
                os.close(self.hostfd)
            except OSError:
                pass

    def pread(self, count, offset):
        self.check_readable()
        try:
            if offset < 0:
                return os.read(self.hostfd, count)
            return os.pread(self.hostfd, count, offset)
        except OSError as e:
            raise _oserror(e) from e

    def pwrite(self, data, offset):
        self.check_writable()
        try:
            if offset < 0:
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
        return self.name

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
