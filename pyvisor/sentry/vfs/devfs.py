"""devfs: the /dev tree, a tmpfs filled with the standard nodes.

null, zero, full, random, urandom, tty (see devices.py); stdin, stdout,
stderr and fd as symlinks into /proc/self/fd; empty pts/ and shm/ (the
latter gets its own tmpfs mount in build_vfs).
"""

from .stat import S_IFCHR, makedev
from .tmpfs import TmpFS

_NODES = [
    (b"null", 1, 3), (b"zero", 1, 5), (b"full", 1, 7),
    (b"random", 1, 8), (b"urandom", 1, 9), (b"tty", 5, 0),
]
_LINKS = [
    (b"stdin", b"/proc/self/fd/0"), (b"stdout", b"/proc/self/fd/1"),
    (b"stderr", b"/proc/self/fd/2"), (b"fd", b"/proc/self/fd"),
]


class DevFS(TmpFS):
    name = b"devtmpfs"


def make_devfs():
    """A populated devfs; returns the filesystem (root is `.root`)."""
    fs = DevFS(0o755)
    root = fs.root
    for name, maj, mnr in _NODES:
        root.mknod(name, S_IFCHR | 0o666, makedev(maj, mnr), 0, 0)
    for name, target in _LINKS:
        root.symlink(name, target, 0, 0)
    root.mkdir(b"pts", 0o755, 0, 0)
    root.mkdir(b"shm", 0o1777, 0, 0)
    return fs
