"""The Sentry's virtual filesystem.

Layout (one concern per module):

    stat.py      Stat/StatFs and the Linux struct layouts (stat, statx, statfs, dirent64)
    inode.py     Filesystem, Inode, Dentry
    mount.py     Mount, MountTable, VDentry, vd_path (imports nothing of the VFS)
    vfs.py       VirtualFilesystem: path resolution and path-based operations
    perm.py      permission checks
    file.py      FileDescription and the regular/directory files
    fdtable.py   FDTable, FSContext
    tmpfs.py, overlay.py, goferfs.py, devfs.py (+devices.py), procfs.py
    pipe.py      anonymous pipes
    host.py      host_file: the caller's stdio
    testing.py   a Kernel-less task for unit tests

`build_vfs(kernel, gofer_root)` assembles the sandbox's mount tree; a new
task starts with `FDTable()` and `FSContext(vfs.root)`.
"""

import errno
import os

from ..errors import SyscallError, UsageError
from .fdtable import FDTable, FSContext
from .file import FileDescription
from .host import host_file
from .mount import VDentry
from .pipe import make_pipe
from .stat import Stat
from .vfs import VirtualFilesystem

__all__ = ["build_vfs", "MountError", "VirtualFilesystem", "FDTable", "FSContext", "FileDescription",
           "VDentry", "Stat", "host_file", "make_pipe"]


def _lower_root(gofer_root, shared=False):
    """The overlay's lower root from what the caller has: a GoferClient
    (served in the `shared` file access mode or not), a GoferFS, or an
    Inode."""
    from .goferfs import GoferFS
    from .inode import Inode
    if isinstance(gofer_root, Inode):
        return gofer_root
    if isinstance(gofer_root, GoferFS):
        return gofer_root.root
    return GoferFS(gofer_root, shared=shared).root


class MountError(UsageError):
    """A mount could not be made (a volume's or --tmpfs's sandbox path is not
    a directory or lies where nothing can be made; a read-only root lacks
    /dev or /proc): one line for the user."""


def _ensure_dir(root_inode, name, mode):
    try:
        root_inode.lookup(name)
    except Exception:                       # noqa: BLE001 - absent: create it
        if root_inode.fs.read_only:
            raise MountError("--overlay none: the root has no /%s to mount on"
                             % os.fsdecode(name)) from None
        root_inode.mkdir(name, mode, 0, 0)


def _mount_point(vfs, path):
    """The directory at absolute `path`, made (mode 0755, as `docker -v`
    does) where missing: in the overlay, which keeps it in memory."""
    try:
        return vfs.resolve(None, path)
    except SyscallError as e:
        if e.errno != errno.ENOENT:
            raise
    parent, name = path.rsplit(b"/", 1)
    vd = _mount_point(vfs, parent or b"/")
    vd.inode.mkdir(name, 0o755, 0, 0)
    return vfs.resolve(None, path)


def _mount_user(vfs, kernel, client, account):
    """The volumes (-v) and --tmpfs mounts of the sandbox's config,
    shallowest first so that one may sit inside another."""
    from pyvisor.gofer.process import volume_aname
    from .goferfs import GoferFS
    from .tmpfs import TmpFS
    config = getattr(kernel, "config", None)
    mounts = []
    for i, (_host, target, read_only) in enumerate(getattr(config, "volumes", ())):
        mounts.append((target, i, read_only, None))
    for target, size in getattr(config, "tmpfs", ()):
        mounts.append((target, None, False, size))
    mounts.sort(key=lambda m: m[0].rstrip("/").count("/"))
    for target, index, read_only, size in mounts:
        try:
            at = _mount_point(vfs, os.fsencode(target))
            if index is None:
                fs = TmpFS(0o1777, size=size, account=account)
                vfs.mount(fs, fs.root, at, source=b"tmpfs", options=b"rw,nosuid,nodev")
            else:
                fs = GoferFS(client, volume_aname(index), read_only,
                             shared=getattr(config, "file_access_mounts", "shared") == "shared",
                             host_locks=True)
                vfs.mount(fs, fs.root, at, source=volume_aname(index),
                          options=b"ro" if read_only else b"rw")
        except SyscallError as e:
            raise MountError("%s: cannot mount on %s in the sandbox: %s" % (
                "--tmpfs" if index is None else "--volume", target,
                os.strerror(e.errno))) from None


def build_vfs(kernel, gofer_root):
    """The sandbox's mount tree:

        /          overlay: tmpfs upper over the Gofer's tree (plain tmpfs if
                   gofer_root is None); the upper's file data in the Sentry's
                   memory, or in kernel.filestore (--overlay file); with
                   --overlay none, the Gofer's tree itself, read-only
        /tmp       tmpfs, mode 1777, only without a Gofer root; with one, /tmp
                   is the overlay's view of the host's /tmp (writes in memory)
        /dev       devfs;  /dev/shm  tmpfs, mode 1777
        /proc      procfs over `kernel` (.hostname, .tasks)

    With the config's read_only the overlay over / is made read-only
    (EROFS on every change) once the mount points are made, and /tmp is
    the host's, read-only. The root is served in the config's file_access
    mode (shared only with --overlay none: an overlay's lower layer must
    not change), volumes in its file_access_mounts mode. Then each volume (a GoferFS on its
    own attach name, read-write or not) and --tmpfs mount at its sandbox
    path, made in the overlay if missing.

    `gofer_root` is a connected GoferClient (or a GoferFS / lower root Inode).
    """
    from .devfs import make_devfs
    from .overlay import OverlayFS
    from .procfs import ProcFS
    from .tmpfs import TmpFS

    # Every in-memory file counts against the sandbox's memory (--memory);
    # the root's upper layer is bounded by --overlay-size (mm/account.py).
    account = getattr(getattr(kernel, "allocator", None), "account", None)
    config = getattr(kernel, "config", None)
    overlay = getattr(config, "overlay", "memory")
    upper = TmpFS(0o755, size=getattr(config, "overlay_size", None), account=account,
                  store=getattr(kernel, "filestore", None))
    if gofer_root is None:
        root_fs = upper
        source = b"tmpfs"
    elif overlay == "none":
        root_fs = _lower_root(gofer_root, getattr(config, "file_access", "") == "shared").fs
        source = b"rootfs"
    else:
        root_fs = OverlayFS(upper, _lower_root(gofer_root))
        source = b"overlay"
    for name, mode in ((b"tmp", 0o1777), (b"dev", 0o755), (b"proc", 0o555)):
        if name != b"tmp" or not root_fs.read_only:     # a read-only root's /tmp is no mount
            _ensure_dir(root_fs.root, name, mode)
    vfs = VirtualFilesystem(root_fs, root_fs.root, source=source)
    if gofer_root is None:
        # N.B. with a host root, /tmp is the overlay's view of the host's
        # /tmp (writes stay in memory), as under `runsc do`: a program started
        # in a host temporary directory finds its files.
        tmp = TmpFS(0o1777, account=account)
        vfs.mount(tmp, tmp.root, b"/tmp", source=b"tmpfs", options=b"rw,nosuid,nodev")
    dev = make_devfs()
    vfs.mount(dev, dev.root, b"/dev", source=b"devtmpfs", options=b"rw,nosuid")
    shm = TmpFS(0o1777, account=account)
    vfs.mount(shm, shm.root, b"/dev/shm", source=b"tmpfs", options=b"rw,nosuid,nodev")
    proc = ProcFS(kernel, vfs)
    vfs.mount(proc, proc.root, b"/proc", source=b"proc", options=b"rw,nosuid,nodev,noexec")
    if getattr(config, "volumes", ()) or getattr(config, "tmpfs", ()):
        _mount_user(vfs, kernel, gofer_root, account)
    if getattr(config, "read_only", False) and gofer_root is not None:
        root_fs.read_only = True
        vfs.mounts.root.options = b"ro"
    return vfs
