"""Character devices, by (major, minor) as Linux numbers them
(Documentation/admin-guide/devices.txt):

    1:3 null    reads EOF, swallows writes
    1:5 zero    reads zeros, swallows writes
    1:7 full    reads zeros, writes fail with ENOSPC
    1:8 random, 1:9 urandom   os.urandom in the Sentry; writes accepted
    5:0 tty     the controlling terminal: the caller's stdio if it is a
                terminal, else ENXIO

A device node on any tmpfs (devfs is one) opens through `open_device`.
"""

import errno
import os

from ..errors import SyscallError
from .file import FileDescription
from .stat import S_IFCHR, S_IFIFO, S_IFMT, major, minor


class DeviceFile(FileDescription):
    """A device with no position: lseek always gives 0, as for /dev/null."""

    def stat(self):
        return self.vd.inode.stat()

    def lseek(self, offset, whence):
        if whence not in (0, 1, 2):
            raise SyscallError(errno.EINVAL)
        return 0

    def read(self, count):
        self.check_readable()
        return self.pread(count, 0)

    def write(self, data):
        self.check_writable()
        return self.pwrite(data, 0)


class NullFile(DeviceFile):
    def pread(self, count, offset):
        return b""

    def pwrite(self, data, offset):
        return len(data)


class ZeroFile(DeviceFile):
    def pread(self, count, offset):
        return bytes(count)

    def pwrite(self, data, offset):
        return len(data)


class FullFile(ZeroFile):
    def pwrite(self, data, offset):
        raise SyscallError(errno.ENOSPC)


class RandomFile(DeviceFile):
    def pread(self, count, offset):
        return os.urandom(count)

    def pwrite(self, data, offset):
        return len(data)


def _open_tty(t, inode, vd, flags):
    """/dev/tty: a new description of the caller's terminal stdio."""
    from .host import HostFile
    for fd in (0, 1, 2):
        try:
            f = t.fdtable.get(fd)
        except SyscallError:
            continue
        if isinstance(f, HostFile) and f.isatty:
            return f.reopen(t, flags)
    raise SyscallError(errno.ENXIO)


CHAR_DEVICES = {
    (1, 3): NullFile,
    (1, 5): ZeroFile,
    (1, 7): FullFile,
    (1, 8): RandomFile,
    (1, 9): RandomFile,
    (5, 0): _open_tty,
}


def open_device(t, inode, vd, flags):
    """Open device node `inode`: ENXIO for a number nobody serves."""
    if inode.mode & S_IFMT == S_IFIFO:
        from .pipe import open_fifo
        return open_fifo(t, inode, vd, flags)
    if inode.mode & S_IFMT != S_IFCHR:
        raise SyscallError(errno.ENXIO)
    opener = CHAR_DEVICES.get((major(inode.rdev), minor(inode.rdev)))
    if opener is None:
        raise SyscallError(errno.ENXIO)
    if isinstance(opener, type):
        return opener(vd, flags)
    return opener(t, inode, vd, flags)
