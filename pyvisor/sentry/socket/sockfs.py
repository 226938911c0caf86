"""What every socket file shares, whatever its family: its identity in sockfs.

Linux background: a socket is an inode of the internal sockfs filesystem;
fstat shows S_IFSOCK, /proc/PID/fd shows ``socket:[ino]``, and it cannot be
reopened through /proc (ENXIO).
"""

import errno
import itertools
import struct
import time

from .. import waiting
from ..errors import SyscallError
from ..vfs.file import FIONREAD, FileDescription
from ..vfs.stat import S_IFSOCK, Stat, StatFs

SOCKFS_MAGIC = 0x534F434B
SIOCOUTQ = 0x5411
_SOCKFS_DEV = 0x08
_inos = itertools.count(1000)


class SocketFile(FileDescription):
    """Base of the socket files (socket/unix.py, socket/inet.py): identity only."""

    seekable = False
    anon_name = b"[socket]"

    def __init__(self, flags):
        super().__init__(None, flags)
        self.ino = next(_inos)
        self.ctime_ns = time.time_ns()

    def stat(self):
        return Stat(st_mode=S_IFSOCK | 0o777, st_ino=self.ino, st_dev=_SOCKFS_DEV, st_nlink=1,
                    st_blksize=4096, st_atime_ns=self.ctime_ns, st_mtime_ns=self.ctime_ns,
                    st_ctime_ns=self.ctime_ns)

    def statfs(self):
        return StatFs(f_type=SOCKFS_MAGIC)

    def path(self):
        return b"socket:[%d]" % self.ino

    def reopen(self, t, flags):
        raise SyscallError(errno.ENXIO)

    def write(self, data):
        """write(2) on a socket: send with no flags (SIGPIPE on EPIPE)."""
        return self.send(waiting.current_task(), data)

    def pread(self, count, offset):
        raise SyscallError(errno.ESPIPE)

    def pwrite(self, data, offset):
        raise SyscallError(errno.ESPIPE)

    def ioctl(self, t, request, arg):
        """FIONREAD (``nread()``) and SIOCOUTQ (``outq()``: bytes sent and
        not yet taken), an int each, as every family answers them; else ENOTTY."""
        if request == FIONREAD:
            n = self.nread()
        elif request == SIOCOUTQ:
            n = self.outq()
        else:
            raise SyscallError(errno.ENOTTY)
        t.copy_out(arg, struct.pack("<i", n))
        return 0

    def outq(self):
        raise SyscallError(errno.ENOTTY)


def deadline(timeout, nonblock):
    """A blocking socket call's deadline: None to wait forever, else monotonic
    (now, for a non-blocking call: don't wait; else SO_RCVTIMEO/SNDTIMEO on)."""
    if nonblock:
        return time.monotonic()
    if timeout is None:
        return None
    return time.monotonic() + timeout
