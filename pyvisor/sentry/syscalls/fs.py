"""File system calls: open/read/write/stat and friends.

Each handler implements one Linux syscall over the VFS (`t.kernel.vfs`)
and the task's fd table. Arguments arrive as unsigned 64-bit register
values; fds, flags and whence are read with s32, offsets with s64.

Partial transfers follow Linux: a read or write that moved some bytes
before failing (EFAULT on a later chunk, EAGAIN, EPIPE) returns the count;
only a call that moved nothing raises (`errors.partial`).
"""

import errno
import functools
import stat as _stat
import struct
import time

from pyvisor.abi.signals import SIGPIPE, siginfo_bytes
from pyvisor.abi.flags import (AT_EACCESS, AT_EMPTY_PATH, AT_FDCWD, AT_NO_AUTOMOUNT,
                               AT_REMOVEDIR, AT_STATX_SYNC_TYPE, AT_SYMLINK_FOLLOW,
                               AT_SYMLINK_NOFOLLOW)
from pyvisor.abi.ints import s32, s64
from pyvisor.abi.flags import IN_ATTRIB, IN_MODIFY
from ..errors import SyscallError, partial
from ..waiting import Interrupted
from ..mm.mm import MAP_SHARED
from ..vfs.file import (O_RDWR, O_APPEND, O_CLOEXEC, O_CREAT, O_DIRECT, O_LARGEFILE, O_NONBLOCK,
                        O_PATH, O_TRUNC, O_WRONLY)
from ..vfs.memfd import ALL_SEALS, F_SEAL_EXEC, F_SEAL_SEAL, MemfdFile, MemfdMaker
from ..vfs.fsnotify import ACTIVE as WATCHED, file_event, notify as fs_notify
from ..vfs.mount import VDentry
from ..vfs.tmpfs import TmpfsFile
from ..vfs.perm import CAP_CHOWN, creds_of, fs_ids, has_cap, is_owner
from ..vfs.pipe import PipeFile, make_pipe
from ..vfs.stat import (S_IFBLK, S_IFCHR, S_IFIFO, S_IFMT, S_IFREG, S_IFSOCK, pack_dirent,
                        pack_dirent64, pack_stat, pack_statfs, pack_statx)
from pyvisor.abi.structs import (MAX_RW_COUNT, NSEC, SSIZE_MAX, TIMESPEC, TIMEVAL, USEC,
                                 UTIME_NOW, UTIME_OMIT)
from ._util import (check_stream_room, gather, install_pair, is_stream_socket, read_iovecs,
                    scatter)

STATX__RESERVED = 0x80000000

PATH_MAX = 4096
CHUNK = 1 << 20

F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL = 0, 1, 2, 3, 4
F_GETLK, F_SETLK, F_SETLKW, F_SETOWN, F_GETOWN = 5, 6, 7, 8, 9
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
F_DUPFD_CLOEXEC, F_SETPIPE_SZ, F_GETPIPE_SZ, F_NOTIFY = 1030, 1031, 1032, 1026
F_ADD_SEALS, F_GET_SEALS = 1033, 1034
MFD_CLOEXEC, MFD_ALLOW_SEALING, MFD_HUGETLB, MFD_NOEXEC_SEAL, MFD_EXEC = 1, 2, 4, 8, 0x10
MFD_ALL_FLAGS = 0x1F
MFD_HUGE_BITS = 0x3F << 26
MFD_NAME_MAX = 249           # NAME_MAX - len("memfd:")
FD_CLOEXEC = 1
F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2
OFFSET_MAX = (1 << 63) - 1
_FLOCK = struct.Struct("<hhxxxxqqixxxx")      # struct flock, 32 bytes

FIONREAD, FIONBIO, FIONCLEX, FIOCLEX, FIOASYNC = 0x541B, 0x5421, 0x5450, 0x5451, 0x5452
LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN = 1, 2, 4, 8
RENAME_NOREPLACE = 1
CAP_SYS_CHROOT = 18
NO_ID = 0xFFFFFFFF

_INT = struct.Struct("<i")


# --- helpers ----------------------------------------------------------------

def _vfs(t):
    return t.kernel.vfs


def _path(t, addr):
    return t.copy_in_str(addr, PATH_MAX)


def _file(t, fd):
    return t.fdtable.get(s32(fd))


def _count(count):
    if count > SSIZE_MAX:
        raise SyscallError(errno.EINVAL)
    return min(count, MAX_RW_COUNT)


def _check_path_fd(f):
    if f.flags & O_PATH:
        raise SyscallError(errno.EBADF)


def _read_loop(t, f, buf, count, offset=None):
    """read/pread into user memory in chunks (seekable files) or once."""
    if not count and f.reads_empty:
        return len(f.read(0))       # the file's own rule for a 0-byte read (inotify: EINVAL)
    done = 0
    try:
        while done < count:
            n = min(CHUNK, count - done)
            data = f.read(n) if offset is None else f.pread(n, offset + done)
            try:
                t.copy_out(buf + done, data)
            except SyscallError:
                if offset is None and f.seekable:
                    f.offset -= len(data)      # the bytes were never delivered
                raise
            done += len(data)
            if len(data) < n or not f.seekable:
                break
    except SyscallError as e:
        return partial(done, e)
    return done


def _write_loop(t, f, buf, count, offset=None):
    done = 0
    if count == 0 and offset is None and not getattr(f, "seekable", True):
        # A zero-length write is still a message on a datagram or seqpacket
        # socket (and an EPIPE check on a pipe); on seekable files it is a no-op.
        return f.write(b"")
    try:
        while done < count:
            n = min(CHUNK, count - done)
            data = t.copy_in(buf + done, n)
            w = f.write(data) if offset is None else f.pwrite(data, offset + done)
            done += w
            if w < n:
                break
    except SyscallError as e:
        return partial(done, e)
    except Interrupted as e:        # a signal after some chunks: the count wins
        return partial(done, e)
    return done


def _sigpipe_on_epipe(handler):
    """Wrap a write handler: when it fails with EPIPE, send SIGPIPE to the
    writing thread first, as Linux's pipe_write does (send_sig(SIGPIPE,
    current, 0)); a handler or SIG_IGN leaves just the EPIPE."""
    @functools.wraps(handler)
    def wrapper(t, *args):
        try:
            return handler(t, *args)
        except SyscallError as e:
            if e.errno == errno.EPIPE:
                _send_sigpipe(t)
            raise
    return wrapper


def _send_sigpipe(t):
    send = getattr(t.kernel, "send_signal", None)
    if send is None:                # the Kernel-less test harness has no signals
        return
    send(t, SIGPIPE, siginfo_bytes(SIGPIPE, 0, pid=t.pid), group=False)


def _offset(v):
    off = s64(v)
    if off < 0:
        raise SyscallError(errno.EINVAL)
    return off


def _need_seekable(f):
    if not f.seekable:
        raise SyscallError(errno.ESPIPE)


# --- read and write -----------------------------------------------------------

def sys_read(t, fd, buf, count, *_):
    """Implements Linux syscall read(2)."""
    f = _file(t, fd)
    f.check_readable()
    return _read_loop(t, f, buf, _count(count))


@_sigpipe_on_epipe
def sys_write(t, fd, buf, count, *_):
    """Implements Linux syscall write(2)."""
    f = _file(t, fd)
    f.check_writable()
    return _write_loop(t, f, buf, _count(count))


def sys_pread64(t, fd, buf, count, offset, *_):
    """Implements Linux syscall pread64(2)."""
    f = _file(t, fd)
    f.check_readable()
    off = _offset(offset)
    _need_seekable(f)
    return _read_loop(t, f, buf, _count(count), off)


@_sigpipe_on_epipe
def sys_pwrite64(t, fd, buf, count, offset, *_):
    """Implements Linux syscall pwrite64(2)."""
    f = _file(t, fd)
    f.check_writable()
    off = _offset(offset)
    _need_seekable(f)
    return _write_loop(t, f, buf, _count(count), off)


def _vector_io(t, f, vecs, one, offset=None):
    """Seekable files: each iovec in turn through `one` (_read_loop or
    _write_loop), stopping at the first short transfer; partial counts win
    over a later error, as in a single read/write."""
    done = 0
    try:
        for base, length in vecs:
            if not length:
                continue
            n = one(t, f, base, length, None if offset is None else offset + done)
            done += n
            if n < length:
                break
    except SyscallError as e:
        return partial(done, e)
    return done


def _read_scattered(t, f, vecs, total):
    """A stream's readv: one read, scattered. Bytes not delivered (a fault:
    see _util.scatter) go back to a pipe, which keeps them as pipe_read
    does; a stream socket fails before it consumes them. N.B. other
    streams (ttys, datagram sockets) lose them."""
    if is_stream_socket(f):
        check_stream_room(t, f, vecs, min(total, CHUNK))
    data = f.read(min(total, CHUNK))
    n = 0
    try:
        n = scatter(t, vecs, data, allow_partial=True)
        return n
    finally:
        if n < len(data) and isinstance(f, PipeFile):
            f.pipe.unread(data[n:])


def sys_readv(t, fd, iov, iovcnt, *_):
    """Implements Linux syscall readv(2). Streams (pipes, ttys) get one read,
    scattered, so that a readv never blocks after data arrived."""
    f = _file(t, fd)
    f.check_readable()
    vecs, total = read_iovecs(t, iov, iovcnt)
    if total == 0:
        return 0
    if not f.seekable:
        return _read_scattered(t, f, vecs, total)
    return _vector_io(t, f, vecs, _read_loop)


@_sigpipe_on_epipe
def sys_writev(t, fd, iov, iovcnt, *_):
    """Implements Linux syscall writev(2). Streams get one gathered write, so
    a writev of at most PIPE_BUF bytes to a pipe stays atomic."""
    f = _file(t, fd)
    f.check_writable()
    vecs, total = read_iovecs(t, iov, iovcnt)
    if total == 0:
        return 0
    if not f.seekable:
        return f.write(gather(t, vecs, total, allow_partial=True))
    return _vector_io(t, f, vecs, _write_loop)


def sys_preadv(t, fd, iov, iovcnt, pos_l, pos_h=0, *_):
    """Implements Linux syscall preadv(2) (on x86-64 pos_l is the whole offset)."""
    f = _file(t, fd)
    f.check_readable()
    off = _offset(pos_l)
    _need_seekable(f)
    vecs, _total = read_iovecs(t, iov, iovcnt)
    return _vector_io(t, f, vecs, _read_loop, off)


@_sigpipe_on_epipe
def sys_pwritev(t, fd, iov, iovcnt, pos_l, pos_h=0, *_):
    """Implements Linux syscall pwritev(2)."""
    f = _file(t, fd)
    f.check_writable()
    off = _offset(pos_l)
    _need_seekable(f)
    vecs, _total = read_iovecs(t, iov, iovcnt)
    return _vector_io(t, f, vecs, _write_loop, off)


def sys_lseek(t, fd, offset, whence, *_):
    """Implements Linux syscall lseek(2)."""
    f = _file(t, fd)
    _check_path_fd(f)
    return f.lseek(s64(offset), s32(whence))


@_sigpipe_on_epipe
def sys_sendfile(t, out_fd, in_fd, offset_ptr, count, *_):
    """Implements Linux syscall sendfile(2)."""
    fin, fout = _file(t, in_fd), _file(t, out_fd)
    fin.check_readable()
    fout.check_writable()
    if fout.flags & O_APPEND:
        raise SyscallError(errno.EINVAL)
    count = _count(count)
    off = None
    if offset_ptr:
        off = s64(t.copy_in_u64(offset_ptr))
        if off < 0:
            raise SyscallError(errno.EINVAL)
        _need_seekable(fin)
    done = 0
    try:
        while done < count:
            n = min(CHUNK, count - done)
            data = fin.read(n) if off is None else fin.pread(n, off + done)
            if not data:
                break
            w = fout.write(data)
            done += w
            if w < len(data):
                if off is None and fin.seekable:
                    fin.offset -= len(data) - w
                break
            if not fin.seekable:
                break
    except SyscallError as e:
        if off is not None and done:
            t.copy_out_u64(offset_ptr, off + done)
        return partial(done, e)
    if off is not None:
        t.copy_out_u64(offset_ptr, off + done)
    return done


def sys_copy_file_range(t, fd_in, off_in_ptr, fd_out, off_out_ptr, length, flags, *_):
    """Implements Linux syscall copy_file_range(2) between regular files."""
    if flags:
        raise SyscallError(errno.EINVAL)
    fin, fout = _file(t, fd_in), _file(t, fd_out)
    fin.check_readable()
    fout.check_writable()
    if fout.flags & O_APPEND:
        raise SyscallError(errno.EBADF)
    for f in (fin, fout):
        mode = f.stat().st_mode & S_IFMT
        if mode == 0o040000:
            raise SyscallError(errno.EISDIR)
        if mode != S_IFREG:
            raise SyscallError(errno.EINVAL)
    # Linux copies only within one filesystem type (EXDEV otherwise, and
    # cat/cp fall back to read/write). Host stdio files are never a target:
    # they write at the host fd's own offset, not at one we choose.
    if (fin.vd is None or fout.vd is None
            or type(fin.vd.inode.fs) is not type(fout.vd.inode.fs)):
        raise SyscallError(errno.EXDEV)
    oin = s64(t.copy_in_u64(off_in_ptr)) if off_in_ptr else None
    oout = s64(t.copy_in_u64(off_out_ptr)) if off_out_ptr else None
    if (oin is not None and oin < 0) or (oout is not None and oout < 0):
        raise SyscallError(errno.EINVAL)
    length = _count(length)
    rpos = oin if oin is not None else fin.offset
    wpos = oout if oout is not None else fout.offset
    done = 0
    while done < length:
        data = fin.pread(min(CHUNK, length - done), rpos + done)
        if not data:
            break
        done += fout.pwrite(data, wpos + done)
    if oin is None:
        fin.offset = rpos + done
    else:
        t.copy_out_u64(off_in_ptr, oin + done)
    if oout is None:
        fout.offset = wpos + done
    else:
        t.copy_out_u64(off_out_ptr, oout + done)
    return done


# --- open and close -----------------------------------------------------------

def _open_common(t, dirfd, path_addr, flags, mode):
    flags = s32(flags)
    path = _path(t, path_addr)
    f = _vfs(t).open(t, path, flags | O_LARGEFILE, mode & 0o7777, dirfd)
    if f.flags & O_PATH:
        f.flags &= ~O_LARGEFILE
    return t.fdtable.install(f, cloexec=bool(flags & O_CLOEXEC))


def sys_open(t, path, flags, mode, *_):
    """Implements Linux syscall open(2)."""
    return _open_common(t, AT_FDCWD, path, flags, mode)


def sys_openat(t, dirfd, path, flags, mode, *_):
    """Implements Linux syscall openat(2)."""
    return _open_common(t, s32(dirfd), path, flags, mode)


def sys_creat(t, path, mode, *_):
    """Implements Linux syscall creat(2)."""
    return _open_common(t, AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode)


def sys_close(t, fd, *_):
    """Implements Linux syscall close(2)."""
    t.fdtable.close(s32(fd))
    return 0


def sys_close_range(t, first, last, flags, *_):
    """Implements Linux syscall close_range(2)."""
    first, last, flags = first & 0xFFFFFFFF, last & 0xFFFFFFFF, flags & 0xFFFFFFFF
    if flags & ~((1 << 1) | (1 << 2)) or first > last:
        raise SyscallError(errno.EINVAL)
    t.fdtable.close_range(first, last, flags)
    return 0


def sys_dup(t, fd, *_):
    """Implements Linux syscall dup(2)."""
    return t.fdtable.dup(s32(fd))


def sys_dup2(t, oldfd, newfd, *_):
    """Implements Linux syscall dup2(2)."""
    return t.fdtable.dup2(s32(oldfd), s32(newfd))


def sys_dup3(t, oldfd, newfd, flags, *_):
    """Implements Linux syscall dup3(2)."""
    flags = s32(flags)
    if flags & ~O_CLOEXEC or s32(oldfd) == s32(newfd):
        raise SyscallError(errno.EINVAL)
    return t.fdtable.dup2(s32(oldfd), s32(newfd), cloexec=bool(flags & O_CLOEXEC))


def _pipe(t, fds_addr, flags):
    flags = s32(flags)
    if flags & ~(O_CLOEXEC | O_NONBLOCK | O_DIRECT):
        raise SyscallError(errno.EINVAL)
    r, w = make_pipe(flags & O_NONBLOCK)
    cloexec = bool(flags & O_CLOEXEC)
    return install_pair(t, r, w, fds_addr, lambda f: t.fdtable.install(f, cloexec))


def sys_pipe(t, fds, *_):
    """Implements Linux syscall pipe(2)."""
    return _pipe(t, fds, 0)


def sys_pipe2(t, fds, flags, *_):
    """Implements Linux syscall pipe2(2)."""
    return _pipe(t, fds, flags)


# --- fcntl, ioctl, sync, locks --------------------------------------------------

def _lock_range(f, l_whence, l_start, l_len):
    """struct flock's range as [start, end] (fs/locks.c flock_to_posix_lock):
    EINVAL for a bad whence or a start before 0, EOVERFLOW past OFFSET_MAX."""
    if l_whence == 0:
        base = 0
    elif l_whence == 1:
        base = f.offset
    elif l_whence == 2:
        base = f.stat().st_size
    else:
        raise SyscallError(errno.EINVAL)
    if l_start > OFFSET_MAX - base:
        raise SyscallError(errno.EOVERFLOW)
    start = base + l_start
    if start < 0:
        raise SyscallError(errno.EINVAL)
    if l_len > 0:
        if l_len - 1 > OFFSET_MAX - start:
            raise SyscallError(errno.EOVERFLOW)
        return start, start + l_len - 1
    if l_len < 0:
        end, start = start - 1, start + l_len
        if start < 0:
            raise SyscallError(errno.EINVAL)
        return start, end
    return start, OFFSET_MAX


def _fcntl_lock(t, f, cmd, arg):
    """fcntl(2) "Advisory record locking" and "Open file description locks":
    POSIX locks are owned by the fd table (the process), OFD locks by the
    description; the table is vfs/lock.py's."""
    raw = t.copy_in(arg, _FLOCK.size)
    l_type, l_whence, l_start, l_len, l_pid = _FLOCK.unpack(raw)
    ofd = cmd in (F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW)
    owner = f if ofd else t.fdtable
    locks = _vfs(t).locks
    # The checks in fs/locks.c's order (fcntl_getlk, fcntl_setlk).
    if cmd in (F_GETLK, F_OFD_GETLK):
        # N.B. Linux (6.x) refuses F_UNLCK for F_GETLK but answers it for
        # F_OFD_GETLK (nothing conflicts with it).
        if l_type not in (F_RDLCK, F_WRLCK, F_UNLCK) or l_type == F_UNLCK and not ofd \
                or ofd and l_pid != 0:
            raise SyscallError(errno.EINVAL)
        start, end = _lock_range(f, l_whence, l_start, l_len)
        found = None if l_type == F_UNLCK else locks.test(f, owner, l_type, start, end)
        if found is None:
            out = _FLOCK.pack(F_UNLCK, l_whence, l_start, l_len, l_pid)
        else:
            ftype, fstart, fend, fpid, fofd = found
            flen = 0 if fend == OFFSET_MAX else fend - fstart + 1
            out = _FLOCK.pack(ftype, 0, fstart, flen, -1 if fofd else fpid)
        t.copy_out(arg, out)
        return 0
    start, end = _lock_range(f, l_whence, l_start, l_len)
    if l_type not in (F_RDLCK, F_WRLCK, F_UNLCK):
        raise SyscallError(errno.EINVAL)
    if l_type == F_RDLCK and not f.readable or l_type == F_WRLCK and not f.writable:
        raise SyscallError(errno.EBADF)
    if ofd and l_pid != 0:
        raise SyscallError(errno.EINVAL)
    block = cmd in (F_SETLKW, F_OFD_SETLKW)
    locks.setlk(f, owner, t.pid, ofd, l_type, start, end, block)
    return 0


def _shared_mapping_exists(t, st):
    """Does any process map the file (st_dev, st_ino) MAP_SHARED? Linux
    counts the shared mappings that may become writable (VM_MAYWRITE), read-only
    ones of a writable description included. N.B. here every shared mapping
    counts, also one made through a read-only description or after
    F_SEAL_FUTURE_WRITE (Linux: not)."""
    seen = set()
    for task in list(t.kernel.tasks.values()):
        mm = task.mm
        if mm is None or id(mm) in seen:
            continue
        seen.add(id(mm))
        for v in mm.vmas():
            if v.flags == MAP_SHARED and v.ino == st.st_ino and v.dev == st.st_dev:
                return True
    return False


def _is_tmpfs_file(f):
    """A regular file of a tmpfs (not of the overlay over it): Linux's
    shmem files, which carry seals."""
    return f.vd is not None and isinstance(f.vd.inode, TmpfsFile)


def _fcntl_seals(t, f, cmd, seals):
    """fcntl(2) "File sealing", in mm/memfd.c's order: F_ADD_SEALS needs
    a writable description (EPERM) and known bits (EINVAL); a file that is
    not a memfd has no seals (EINVAL)."""
    if cmd == F_GET_SEALS:
        if isinstance(f, MemfdFile):
            return f.inode.seals
        if _is_tmpfs_file(f):
            return F_SEAL_SEAL
        raise SyscallError(errno.EINVAL)
    if not f.writable:
        raise SyscallError(errno.EPERM)
    if seals & ~ALL_SEALS:
        raise SyscallError(errno.EINVAL)
    if not isinstance(f, MemfdFile):
        # A tmpfs file is born sealed with F_SEAL_SEAL (mm/shmem.c).
        raise SyscallError(errno.EPERM if _is_tmpfs_file(f) else errno.EINVAL)
    st = f.stat()
    f.inode.add_seals(seals, lambda: _shared_mapping_exists(t, st))
    return 0


def sys_memfd_create(t, name, flags, *_):
    """Implements Linux syscall memfd_create(2).

    N.B. MFD_HUGETLB is EINVAL: there are no huge pages here."""
    flags &= 0xFFFFFFFF
    allowed = MFD_ALL_FLAGS | (MFD_HUGE_BITS if flags & MFD_HUGETLB else 0)
    if flags & ~allowed or flags & MFD_EXEC and flags & MFD_NOEXEC_SEAL:
        raise SyscallError(errno.EINVAL)
    try:
        name = t.copy_in_str(name, MFD_NAME_MAX + 1)
    except SyscallError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise SyscallError(errno.EINVAL) from None
        raise
    if flags & MFD_HUGETLB:
        raise SyscallError(errno.EINVAL)
    mode, seals = 0o777, F_SEAL_SEAL
    if flags & MFD_NOEXEC_SEAL:
        mode, seals = 0o666, F_SEAL_EXEC
    elif flags & MFD_ALLOW_SEALING:
        seals = 0
    vfs = _vfs(t)
    maker = getattr(vfs, "memfds", None)
    if maker is None:
        maker = vfs.memfds = MemfdMaker()
    uid, gid = fs_ids(creds_of(t))
    f = maker.create(t.kernel.allocator, name, O_RDWR | O_LARGEFILE, mode, uid, gid, seals)
    return t.fdtable.install(f, cloexec=bool(flags & MFD_CLOEXEC))


def sys_fcntl(t, fd, cmd, arg, *_):
    """Implements Linux syscall fcntl(2)."""
    fd, cmd = s32(fd), s32(cmd)
    f = t.fdtable.get(fd)
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        return t.fdtable.dup(fd, s32(arg), cloexec=cmd == F_DUPFD_CLOEXEC)
    if cmd == F_GETFD:
        return FD_CLOEXEC if t.fdtable.get_cloexec(fd) else 0
    if cmd == F_SETFD:
        t.fdtable.set_cloexec(fd, bool(arg & FD_CLOEXEC))
        return 0
    if cmd == F_GETFL:
        return f.flags
    if cmd == F_SETFL:
        if f.flags & O_PATH:
            raise SyscallError(errno.EBADF)
        f.set_status_flags(s32(arg))
        return 0
    if cmd in (F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW):
        if f.flags & O_PATH:
            raise SyscallError(errno.EBADF)
        return _fcntl_lock(t, f, cmd, arg)
    if cmd in (F_ADD_SEALS, F_GET_SEALS):
        if f.flags & O_PATH:
            raise SyscallError(errno.EBADF)
        return _fcntl_seals(t, f, cmd, arg & 0xFFFFFFFF)
    if cmd == F_GETOWN:
        return 0
    if cmd == F_SETOWN:
        return 0
    if cmd in (F_GETPIPE_SZ, F_SETPIPE_SZ):
        if not isinstance(f, PipeFile):
            raise SyscallError(errno.EBADF)
        if cmd == F_GETPIPE_SZ:
            return f.pipe.capacity
        size = arg & 0xFFFFFFFF
        return f.pipe.set_capacity(size)
    if cmd == F_NOTIFY:
        # N.B. dnotify is accepted on directories, as Linux does, but never signals.
        if arg & 0x7FFFFFFF == 0:            # no events (DN_MULTISHOT aside): a flush
            return 0
        if not _stat.S_ISDIR(f.stat().st_mode):
            raise SyscallError(errno.ENOTDIR)
        return 0
    raise SyscallError(errno.EINVAL)


def sys_ioctl(t, fd, request, arg, *_):
    """Implements Linux syscall ioctl(2): the generic requests, then the file's own."""
    fd, request = s32(fd), request & 0xFFFFFFFF
    f = t.fdtable.get(fd)
    if f.flags & O_PATH:
        raise SyscallError(errno.EBADF)
    if request == FIOCLEX or request == FIONCLEX:
        t.fdtable.set_cloexec(fd, request == FIOCLEX)
        return 0
    if request == FIONBIO:
        on = _INT.unpack(t.copy_in(arg, 4))[0]
        f.flags = f.flags | O_NONBLOCK if on else f.flags & ~O_NONBLOCK
        return 0
    if request == FIOASYNC:
        t.copy_in(arg, 4)
        return 0
    if request == FIONREAD:
        t.copy_out(arg, _INT.pack(min(f.nread(), 0x7FFFFFFF)))
        return 0
    return f.ioctl(t, request, arg)


def sys_fsync(t, fd, *_):
    """Implements Linux syscalls fsync(2) and fdatasync(2): a file in a volume is flushed on the
    host (Tfsync); data in memory has nothing to flush."""
    f = _file(t, fd)
    _check_path_fd(f)
    if isinstance(f, PipeFile):
        raise SyscallError(errno.EINVAL)
    return f.fsync()


sys_fdatasync = sys_fsync


def sys_fadvise64(t, fd, offset, length, advice, *_):
    """Implements Linux syscall fadvise64(2): checked, then ignored."""
    f = _file(t, fd)
    _check_path_fd(f)
    if isinstance(f, PipeFile):
        raise SyscallError(errno.ESPIPE)
    if s32(advice) not in range(6) or s64(length) < 0:
        raise SyscallError(errno.EINVAL)
    return 0


def sys_flock(t, fd, op, *_):
    """Implements Linux syscall flock(2): the lock belongs to the open file
    description; EWOULDBLOCK with LOCK_NB when another holds it."""
    f = _file(t, fd)
    _check_path_fd(f)
    op = s32(op)
    kind = op & ~LOCK_NB
    if kind not in (LOCK_SH, LOCK_EX, LOCK_UN):
        raise SyscallError(errno.EINVAL)
    type_ = {LOCK_SH: F_RDLCK, LOCK_EX: F_WRLCK, LOCK_UN: F_UNLCK}[kind]
    _vfs(t).locks.flock(f, type_, not op & LOCK_NB)
    return 0


def sys_fallocate(t, fd, mode, offset, length, *_):
    """Implements Linux syscall fallocate(2): mode 0 only (extends the file)."""
    f = _file(t, fd)
    off, ln = s64(offset), s64(length)
    if off < 0 or ln <= 0:
        raise SyscallError(errno.EINVAL)
    f.check_writable()
    if s32(mode) != 0:
        raise SyscallError(errno.EOPNOTSUPP)
    if isinstance(f, PipeFile):
        raise SyscallError(errno.ESPIPE)
    st = f.stat()
    if st.st_mode & S_IFMT != S_IFREG:
        raise SyscallError(errno.ENODEV)
    if off + ln > st.st_size:
        f.truncate(off + ln)          # reports IN_MODIFY
    elif WATCHED[0]:
        file_event(f, IN_MODIFY)      # vfs_fallocate's fsnotify_modify, size unchanged
    return 0


def sys_ftruncate(t, fd, length, *_):
    """Implements Linux syscall ftruncate(2)."""
    f = _file(t, fd)
    length = s64(length)
    if length < 0:
        raise SyscallError(errno.EINVAL)
    _check_path_fd(f)
    if f.stat().st_mode & S_IFMT != S_IFREG or not f.writable:
        raise SyscallError(errno.EINVAL)
    f.truncate(length)
    return 0


def sys_truncate(t, path, length, *_):
    """Implements Linux syscall truncate(2)."""
    _vfs(t).truncate(t, _path(t, path), s64(length))
    return 0


# --- stat -----------------------------------------------------------------

def _stat_of_file(f):
    st = f.stat()
    if f.vd is not None:
        st.mnt_id = f.vd.mount.id
    return st


def _stat_at(t, dirfd, path_addr, flags, allowed):
    if flags & ~allowed:
        raise SyscallError(errno.EINVAL)
    # Linux 6.11+: a NULL path with AT_EMPTY_PATH means the fd itself.
    path = b"" if path_addr == 0 and flags & AT_EMPTY_PATH else _path(t, path_addr)
    if not path:
        if not flags & AT_EMPTY_PATH:
            raise SyscallError(errno.ENOENT)
        if dirfd == AT_FDCWD:
            return _vfs(t).stat(t, b".")
        return _stat_of_file(t.fdtable.get(dirfd))
    return _vfs(t).stat(t, path, dirfd, follow=not flags & AT_SYMLINK_NOFOLLOW)


def sys_stat(t, path, buf, *_):
    """Implements Linux syscall stat(2)."""
    t.copy_out(buf, pack_stat(_vfs(t).stat(t, _path(t, path))))
    return 0


def sys_lstat(t, path, buf, *_):
    """Implements Linux syscall lstat(2)."""
    t.copy_out(buf, pack_stat(_vfs(t).stat(t, _path(t, path), follow=False)))
    return 0


def sys_fstat(t, fd, buf, *_):
    """Implements Linux syscall fstat(2)."""
    t.copy_out(buf, pack_stat(_stat_of_file(_file(t, fd))))
    return 0


def sys_newfstatat(t, dirfd, path, buf, flags, *_):
    """Implements Linux syscall newfstatat(2)."""
    st = _stat_at(t, s32(dirfd), path, s32(flags),
                  AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT)
    t.copy_out(buf, pack_stat(st))
    return 0


def sys_statx(t, dirfd, path, flags, mask, buf, *_):
    """Implements Linux syscall statx(2): every basic field, whatever `mask` asks."""
    flags = s32(flags)
    if flags & AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE or mask & STATX__RESERVED:
        raise SyscallError(errno.EINVAL)
    st = _stat_at(t, s32(dirfd), path, flags,
                  AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT | AT_STATX_SYNC_TYPE)
    t.copy_out(buf, pack_statx(st))
    return 0


def sys_statfs(t, path, buf, *_):
    """Implements Linux syscall statfs(2)."""
    t.copy_out(buf, pack_statfs(_vfs(t).statfs(t, _path(t, path))))
    return 0


def sys_fstatfs(t, fd, buf, *_):
    """Implements Linux syscall fstatfs(2)."""
    t.copy_out(buf, pack_statfs(_file(t, fd).statfs()))
    return 0


def _faccess(t, dirfd, path_addr, mode, flags):
    if mode & ~7 or flags & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    path = _path(t, path_addr)
    if not path and flags & AT_EMPTY_PATH:
        path = b"."
    _vfs(t).access(t, path, mode, dirfd, follow=not flags & AT_SYMLINK_NOFOLLOW,
                   effective=bool(flags & AT_EACCESS))
    return 0


def sys_access(t, path, mode, *_):
    """Implements Linux syscall access(2)."""
    return _faccess(t, AT_FDCWD, path, s32(mode), 0)


def sys_faccessat(t, dirfd, path, mode, *_):
    """Implements Linux syscall faccessat(2) (no flags argument)."""
    return _faccess(t, s32(dirfd), path, s32(mode), 0)


def sys_faccessat2(t, dirfd, path, mode, flags, *_):
    """Implements Linux syscall faccessat2(2)."""
    return _faccess(t, s32(dirfd), path, s32(mode), s32(flags))


# --- directories --------------------------------------------------------------

def sys_getdents64(t, fd, dirp, count, *_):
    """Implements Linux syscall getdents64(2)."""
    return _getdents(t, fd, dirp, count, pack_dirent64)


def _getdents(t, fd, dirp, count, pack):
    f = _file(t, fd)
    count = count & 0xFFFFFFFF
    with f.offset_lock:
        before = f.offset
        data = f.getdents(count, pack)
        try:
            t.copy_out(dirp, data)
        except SyscallError:
            f.offset = before
            raise
    return len(data)


def sys_getdents(t, fd, dirp, count, *_):
    """Implements Linux syscall getdents(2) (the old linux_dirent layout)."""
    return _getdents(t, fd, dirp, count, pack_dirent)


def sys_getcwd(t, buf, size, *_):
    """Implements Linux syscall getcwd(2): returns the length including the NUL."""
    cwd = t.fs.cwd
    if cwd.dentry.deleted:
        raise SyscallError(errno.ENOENT)
    path = _vfs(t).path_of(t, cwd) + b"\0"
    if size < len(path):
        raise SyscallError(errno.ERANGE)
    t.copy_out(buf, path)
    return len(path)


def _set_cwd(t, vd):
    from ..vfs.perm import X_OK, check_access
    if not isinstance(vd, VDentry) or not vd.inode.is_dir():
        raise SyscallError(errno.ENOTDIR)
    check_access(vd.inode, creds_of(t), X_OK)
    t.fs.cwd = vd
    return 0


def sys_chdir(t, path, *_):
    """Implements Linux syscall chdir(2)."""
    return _set_cwd(t, _vfs(t).resolve(t, _path(t, path)))


def sys_fchdir(t, fd, *_):
    """Implements Linux syscall fchdir(2)."""
    f = _file(t, fd)
    return _set_cwd(t, f.vd)


def sys_mkdir(t, path, mode, *_):
    """Implements Linux syscall mkdir(2)."""
    _vfs(t).mkdir(t, _path(t, path), mode & 0o7777)
    return 0


def sys_mkdirat(t, dirfd, path, mode, *_):
    """Implements Linux syscall mkdirat(2)."""
    _vfs(t).mkdir(t, _path(t, path), mode & 0o7777, s32(dirfd))
    return 0


def _mknod(t, dirfd, path_addr, mode, dev):
    mode &= 0xFFFFFFFF
    ftype = mode & S_IFMT
    if ftype not in (0, S_IFREG, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK):
        raise SyscallError(errno.EINVAL)
    _vfs(t).mknod(t, _path(t, path_addr), mode, dev & 0xFFFFFFFF, dirfd)
    return 0


def sys_mknod(t, path, mode, dev, *_):
    """Implements Linux syscall mknod(2)."""
    return _mknod(t, AT_FDCWD, path, mode, dev)


def sys_mknodat(t, dirfd, path, mode, dev, *_):
    """Implements Linux syscall mknodat(2)."""
    return _mknod(t, s32(dirfd), path, mode, dev)


def sys_rmdir(t, path, *_):
    """Implements Linux syscall rmdir(2)."""
    _vfs(t).rmdir(t, _path(t, path))
    return 0


def sys_unlink(t, path, *_):
    """Implements Linux syscall unlink(2)."""
    _vfs(t).unlink(t, _path(t, path))
    return 0


def sys_unlinkat(t, dirfd, path, flags, *_):
    """Implements Linux syscall unlinkat(2)."""
    flags = s32(flags)
    if flags & ~AT_REMOVEDIR:
        raise SyscallError(errno.EINVAL)
    p = _path(t, path)
    if flags & AT_REMOVEDIR:
        _vfs(t).rmdir(t, p, s32(dirfd))
    else:
        _vfs(t).unlink(t, p, s32(dirfd))
    return 0


def sys_rename(t, old, new, *_):
    """Implements Linux syscall rename(2)."""
    _vfs(t).rename(t, _path(t, old), _path(t, new))
    return 0


def sys_renameat(t, olddirfd, old, newdirfd, new, *_):
    """Implements Linux syscall renameat(2)."""
    _vfs(t).rename(t, _path(t, old), _path(t, new), s32(olddirfd), s32(newdirfd))
    return 0


def sys_renameat2(t, olddirfd, old, newdirfd, new, flags, *_):
    """Implements Linux syscall renameat2(2): RENAME_NOREPLACE; EXCHANGE and
    WHITEOUT give EINVAL."""
    _vfs(t).rename(t, _path(t, old), _path(t, new), s32(olddirfd), s32(newdirfd),
                   flags & 0xFFFFFFFF)
    return 0


def sys_link(t, old, new, *_):
    """Implements Linux syscall link(2)."""
    _vfs(t).link(t, _path(t, old), _path(t, new))
    return 0


def sys_linkat(t, olddirfd, old, newdirfd, new, flags, *_):
    """Implements Linux syscall linkat(2)."""
    flags = s32(flags)
    if flags & ~(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    vfs, oldpath, newpath = _vfs(t), _path(t, old), _path(t, new)
    if not oldpath and flags & AT_EMPTY_PATH:
        f = t.fdtable.get(s32(olddirfd))
        if f.vd is None:
            raise SyscallError(errno.ENOENT)
        vfs.link_vd(t, f.vd, newpath, s32(newdirfd))
        return 0
    vfs.link(t, oldpath, newpath, s32(olddirfd), s32(newdirfd),
             follow=bool(flags & AT_SYMLINK_FOLLOW))
    return 0


def sys_symlink(t, target, path, *_):
    """Implements Linux syscall symlink(2)."""
    _vfs(t).symlink(t, _path(t, target), _path(t, path))
    return 0


def sys_symlinkat(t, target, dirfd, path, *_):
    """Implements Linux syscall symlinkat(2)."""
    _vfs(t).symlink(t, _path(t, target), _path(t, path), s32(dirfd))
    return 0


def _readlink(t, dirfd, path_addr, buf, size):
    size = s32(size)
    if size <= 0:
        raise SyscallError(errno.EINVAL)
    path = _path(t, path_addr)
    if not path:
        # readlinkat(fd, "") reads an O_PATH|O_NOFOLLOW fd's own symlink.
        if dirfd == AT_FDCWD:
            raise SyscallError(errno.ENOENT)
        f = t.fdtable.get(dirfd)
        if f.vd is None or not f.vd.inode.is_symlink():
            raise SyscallError(errno.ENOENT)
        target = f.vd.inode.readlink(t)
    else:
        target = _vfs(t).readlink(t, path, dirfd)
    target = target[:size]
    t.copy_out(buf, target)
    return len(target)


def sys_readlink(t, path, buf, size, *_):
    """Implements Linux syscall readlink(2)."""
    return _readlink(t, AT_FDCWD, path, buf, size)


def sys_readlinkat(t, dirfd, path, buf, size, *_):
    """Implements Linux syscall readlinkat(2)."""
    return _readlink(t, s32(dirfd), path, buf, size)


# --- attributes -------------------------------------------------------------

def _owner_or_root(t, inode):
    if not is_owner(inode, creds_of(t)):
        raise SyscallError(errno.EPERM)


def _vd_at(t, dirfd, path_addr, follow=True, empty_ok=False):
    path = _path(t, path_addr) if path_addr else b""
    if not path:
        if not empty_ok:
            raise SyscallError(errno.ENOENT)
        if dirfd == AT_FDCWD:
            return t.fs.cwd
        return _fd_vd(t.fdtable.get(dirfd))
    return _vfs(t).resolve_vd(t, path, dirfd, follow)


def _fd_vd(f):
    if f.vd is None:
        raise SyscallError(errno.EPERM)
    return f.vd


def _attr_changed(vd):
    """IN_ATTRIB for a chmod/chown/utimes that changed `vd`'s inode."""
    if WATCHED[0]:
        fs_notify(vd.inode, vd.dentry.parent, vd.dentry.name, IN_ATTRIB)


def _chmod(t, vd, mode):
    inode = vd.inode
    _owner_or_root(t, inode)
    inode.setattr(mode=mode & 0o7777)
    _attr_changed(vd)
    return 0


def sys_chmod(t, path, mode, *_):
    """Implements Linux syscall chmod(2)."""
    return _chmod(t, _vd_at(t, AT_FDCWD, path), mode)


def sys_fchmod(t, fd, mode, *_):
    """Implements Linux syscall fchmod(2)."""
    f = _file(t, fd)
    _check_path_fd(f)
    return _chmod(t, _fd_vd(f), mode)


def sys_fchmodat(t, dirfd, path, mode, *_):
    """Implements Linux syscall fchmodat(2)."""
    return _chmod(t, _vd_at(t, s32(dirfd), path), mode)


def _chown(t, vd, uid, gid):
    inode = vd.inode
    uid, gid = uid & 0xFFFFFFFF, gid & 0xFFFFFFFF
    uid = None if uid == NO_ID else uid
    gid = None if gid == NO_ID else gid
    creds = creds_of(t)
    if not has_cap(creds, CAP_CHOWN):
        # chown(2): without CAP_CHOWN the owner may only change the group,
        # to one of its own.
        fsuid, fsgid = fs_ids(creds)
        if uid is not None and uid != inode.uid:
            raise SyscallError(errno.EPERM)
        _owner_or_root(t, inode)
        if gid is not None and gid != fsgid and gid not in getattr(creds, "groups", ()):
            raise SyscallError(errno.EPERM)
    inode.setattr(uid=uid, gid=gid)
    _attr_changed(vd)
    return 0


def sys_chown(t, path, uid, gid, *_):
    """Implements Linux syscall chown(2)."""
    return _chown(t, _vd_at(t, AT_FDCWD, path), uid, gid)


def sys_lchown(t, path, uid, gid, *_):
    """Implements Linux syscall lchown(2)."""
    return _chown(t, _vd_at(t, AT_FDCWD, path, follow=False), uid, gid)


def sys_fchown(t, fd, uid, gid, *_):
    """Implements Linux syscall fchown(2)."""
    f = _file(t, fd)
    _check_path_fd(f)
    return _chown(t, _fd_vd(f), uid, gid)


def sys_fchownat(t, dirfd, path, uid, gid, flags, *_):
    """Implements Linux syscall fchownat(2)."""
    flags = s32(flags)
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    vd = _vd_at(t, s32(dirfd), path, follow=not flags & AT_SYMLINK_NOFOLLOW,
                  empty_ok=bool(flags & AT_EMPTY_PATH))
    return _chown(t, vd, uid, gid)


def _set_times(t, vd, atime, mtime):
    inode = vd.inode
    """atime/mtime: ns, or None for UTIME_OMIT."""
    if atime is None and mtime is None:
        return 0
    _owner_or_root(t, inode)
    inode.setattr(atime_ns=atime, mtime_ns=mtime)
    _attr_changed(vd)
    return 0


def _timestamp_ns(sec, nsec, now):
    """utimensat(2)'s timespec: a point in time (tv_sec may be negative),
    tv_nsec in [0, 1e9) or UTIME_NOW / UTIME_OMIT (None); else EINVAL."""
    if nsec == UTIME_NOW:
        return now
    if nsec == UTIME_OMIT:
        return None
    if not 0 <= nsec < NSEC:
        raise SyscallError(errno.EINVAL)
    return sec * NSEC + nsec


def _read_timevals(t, times):
    """utimes(2)/futimesat(2)'s struct timeval[2] as (atime, mtime) ns: tv_sec
    may be negative, tv_usec must be in [0, 1e6) (EINVAL); EFAULT."""
    raw = t.copy_in(times, 2 * TIMEVAL.size)
    out = []
    for sec, usec in TIMEVAL.iter_unpack(raw):
        if not 0 <= usec < NSEC // USEC:
            raise SyscallError(errno.EINVAL)
        out.append(sec * NSEC + usec * USEC)
    return out


def sys_utimensat(t, dirfd, path, times, flags, *_):
    """Implements Linux syscall utimensat(2); a NULL path means dirfd itself."""
    flags = s32(flags)
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    now = time.time_ns()
    if times:
        a, m = [_timestamp_ns(sec, nsec, now)
                for sec, nsec in TIMESPEC.iter_unpack(t.copy_in(times, 2 * TIMESPEC.size))]
    else:
        a = m = now
    dirfd = s32(dirfd)
    if not path:
        if dirfd == AT_FDCWD:
            raise SyscallError(errno.EFAULT)
        vd = _fd_vd(t.fdtable.get(dirfd))
    else:
        vd = _vd_at(t, dirfd, path, follow=not flags & AT_SYMLINK_NOFOLLOW,
                      empty_ok=bool(flags & AT_EMPTY_PATH))
    return _set_times(t, vd, a, m)


def sys_utimes(t, path, times, *_):
    """Implements Linux syscall utimes(2) (struct timeval[2])."""
    a, m = _read_timevals(t, times) if times else (time.time_ns(),) * 2
    return _set_times(t, _vd_at(t, AT_FDCWD, path), a, m)


def sys_utime(t, path, times, *_):
    """Implements Linux syscall utime(2) (struct utimbuf: actime, modtime)."""
    if times:
        actime, modtime = struct.unpack("<qq", t.copy_in(times, 16))    # struct utimbuf
        a, m = actime * NSEC, modtime * NSEC
    else:
        a = m = time.time_ns()
    return _set_times(t, _vd_at(t, AT_FDCWD, path), a, m)


def sys_futimesat(t, dirfd, path, times, *_):
    """Implements Linux syscall futimesat(2): utimes relative to dirfd."""
    a, m = _read_timevals(t, times) if times else (time.time_ns(),) * 2
    return _set_times(t, _vd_at(t, s32(dirfd), path), a, m)


# --- whole-filesystem calls ---------------------------------------------------------

def sys_sync(t, *_):
    """Implements Linux syscall sync(2): everything is in memory already."""
    return 0


def sys_syncfs(t, fd, *_):
    """Implements Linux syscall syncfs(2)."""
    _file(t, fd)
    return 0


def sys_sync_file_range(t, fd, offset, nbytes, flags, *_):
    """Implements Linux syscall sync_file_range(2): checked, nothing to flush."""
    f = _file(t, fd)
    if s64(offset) < 0 or s64(nbytes) < 0 or flags & ~7:
        raise SyscallError(errno.EINVAL)
    if isinstance(f, PipeFile):
        raise SyscallError(errno.ESPIPE)
    return 0


def sys_readahead(t, fd, offset, count, *_):
    """Implements Linux syscall readahead(2): a hint, checked and ignored."""
    f = _file(t, fd)
    f.check_readable()
    if f.stat().st_mode & S_IFMT != S_IFREG:
        raise SyscallError(errno.EINVAL)
    return 0


def sys_chroot(t, path, *_):
    """Implements Linux syscall chroot(2) (needs CAP_SYS_CHROOT: root here)."""
    from ..vfs.perm import X_OK, check_access
    vd = _vfs(t).resolve_vd(t, _path(t, path))
    if not vd.inode.is_dir():
        raise SyscallError(errno.ENOTDIR)
    check_access(vd.inode, creds_of(t), X_OK)
    if not has_cap(creds_of(t), CAP_SYS_CHROOT):
        raise SyscallError(errno.EPERM)
    t.fs.root = vd
    return 0


def sys_umask(t, mask, *_):
    """Implements Linux syscall umask(2)."""
    return t.fs.set_umask(mask & 0o777)
