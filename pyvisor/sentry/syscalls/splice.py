"""splice(2), tee(2) and vmsplice(2): moving bytes through a pipe.

Linux (fs/splice.c) moves page references; here the bytes are copied, with
the same observable rules: splice needs a pipe on at least one side (a
file, a FIFO or a socket on the other), takes offsets only for the side
that is not a pipe and can pread/pwrite, waits for data in the source pipe
(EOF: 0) and for room in the target pipe (no reader: EPIPE and SIGPIPE),
and SPLICE_F_NONBLOCK (or O_NONBLOCK on the pipe) makes a wait EAGAIN.
A wait is interruptible (EINTR, or a restart under SA_RESTART). tee copies
without consuming; vmsplice moves between user memory and a pipe.

N.B. Linux fills a pipe in page-sized buffers (a vmsplice of unaligned
memory may stop at a page boundary); here a pipe is bytes up to its
capacity.
"""

import errno

from pyvisor.abi.ints import s32, s64
from pyvisor.abi.structs import MAX_RW_COUNT
from ..errors import SyscallError
from ..vfs.file import O_APPEND
from ..vfs.pipe import PipeFile
from ..vfs.waitq import POLLIN
from ._util import gather, read_iovecs, scatter
from .fs import _sigpipe_on_epipe

SPLICE_F_MOVE, SPLICE_F_NONBLOCK, SPLICE_F_MORE, SPLICE_F_GIFT = 1, 2, 4, 8
SPLICE_F_ALL = 0xF
_LOFF = 8


def _pipe_of(f):
    return f.pipe if isinstance(f, PipeFile) else None


def _read_off(t, addr):
    return s64(t.copy_in_u64(addr)) if addr else None


def _file_read(f, n, offset, nonblock):
    """Up to n bytes of the non-pipe side at `offset` (None: its own offset,
    or a stream's next bytes)."""
    if not f.seekable:
        if nonblock and hasattr(f, "poll_events") and not f.poll_events() & POLLIN:
            raise SyscallError(errno.EAGAIN)
        return f.read(n)
    if offset is not None:
        return f.pread(n, offset)
    with f.offset_lock:
        data = f.pread(n, f.offset)
        f.offset += len(data)
        return data


def _file_write(f, data, offset):
    if not f.seekable:
        return f.write(data)
    if offset is not None:
        return f.pwrite(data, offset)
    with f.offset_lock:
        n = f.pwrite(data, f.offset)
        f.offset += n
        return n


def _pipe_to_pipe(ipipe, opipe, n, nonblock, keep):
    """splice_pipe_to_pipe / link_pipe: wait for data, then for room, then
    move (or, with `keep`, copy) what fits."""
    ipipe.wait_readable(nonblock)
    room = opipe.wait_writable(nonblock)
    data = ipipe.take(min(n, room), keep=keep)
    opipe.push(data)
    return len(data)


@_sigpipe_on_epipe
def sys_splice(t, fd_in, off_in, fd_out, off_out, length, flags, *_):
    """Implements Linux syscall splice(2), with its checks in fs/splice.c's order."""
    if length == 0:
        return 0
    flags &= 0xFFFFFFFF
    if flags & ~SPLICE_F_ALL:
        raise SyscallError(errno.EINVAL)
    fin = t.fdtable.get(s32(fd_in))
    fout = t.fdtable.get(s32(fd_out))
    ipipe, opipe = _pipe_of(fin), _pipe_of(fout)
    if ipipe is not None and off_in or opipe is not None and off_out:
        raise SyscallError(errno.ESPIPE)
    oin, oout = _read_off(t, off_in), _read_off(t, off_out)
    if not fin.readable or not fout.writable:
        raise SyscallError(errno.EBADF)
    n = min(length, MAX_RW_COUNT)
    nonblock = bool(flags & SPLICE_F_NONBLOCK)
    if ipipe is not None and opipe is not None:
        if ipipe is opipe:
            raise SyscallError(errno.EINVAL)
        return _pipe_to_pipe(ipipe, opipe, n, nonblock or fin.nonblocking or fout.nonblocking,
                             keep=False)
    if ipipe is not None:
        if oout is not None and not fout.seekable or fout.flags & O_APPEND:
            raise SyscallError(errno.EINVAL)
        if oout is not None and oout < 0:
            raise SyscallError(errno.EINVAL)
        if not ipipe.wait_readable(nonblock or fin.nonblocking):
            return 0
        data = ipipe.take(n)
        try:
            done = _file_write(fout, data, oout)
        except BaseException:
            ipipe.unread(data)
            raise
        ipipe.unread(data[done:])
        if oout is not None:
            t.copy_out_u64(off_out, oout + done)
        return done
    if opipe is not None:
        if oin is not None and not fin.seekable:
            raise SyscallError(errno.EINVAL)
        if oin is not None and oin < 0:
            raise SyscallError(errno.EINVAL)
        room = opipe.wait_writable(nonblock or fout.nonblocking)
        data = _file_read(fin, min(n, room), oin, nonblock)
        opipe.push(data)
        if oin is not None:
            t.copy_out_u64(off_in, oin + len(data))
        return len(data)
    raise SyscallError(errno.EINVAL)


@_sigpipe_on_epipe
def sys_tee(t, fd_in, fd_out, length, flags, *_):
    """Implements Linux syscall tee(2): copy from one pipe to another
    without consuming."""
    flags &= 0xFFFFFFFF
    if flags & ~SPLICE_F_ALL:
        raise SyscallError(errno.EINVAL)
    if length == 0:
        return 0
    fin = t.fdtable.get(s32(fd_in))
    fout = t.fdtable.get(s32(fd_out))
    if not fin.readable or not fout.writable:
        raise SyscallError(errno.EBADF)
    ipipe, opipe = _pipe_of(fin), _pipe_of(fout)
    if ipipe is None or opipe is None or ipipe is opipe:
        raise SyscallError(errno.EINVAL)
    nonblock = bool(flags & SPLICE_F_NONBLOCK) or fin.nonblocking or fout.nonblocking
    return _pipe_to_pipe(ipipe, opipe, min(length, MAX_RW_COUNT), nonblock, keep=True)


@_sigpipe_on_epipe
def sys_vmsplice(t, fd, iov, nr_segs, flags, *_):
    """Implements Linux syscall vmsplice(2): user memory into a pipe (a write
    end) or out of it (a read end). Only SPLICE_F_NONBLOCK makes it
    non-blocking, as Linux (the pipe's O_NONBLOCK does not)."""
    flags &= 0xFFFFFFFF
    if flags & ~SPLICE_F_ALL:
        raise SyscallError(errno.EINVAL)
    f = t.fdtable.get(s32(fd))
    if not f.writable and not f.readable:
        raise SyscallError(errno.EBADF)
    vecs, total = read_iovecs(t, iov, nr_segs)
    if not total:
        return 0
    pipe = _pipe_of(f)
    if pipe is None:
        raise SyscallError(errno.EBADF)
    nonblock = bool(flags & SPLICE_F_NONBLOCK)
    if f.writable:
        room = pipe.wait_writable(nonblock)
        data = gather(t, vecs, min(total, room), True)
        pipe.push(data)
        return len(data)
    if not pipe.wait_readable(nonblock):
        return 0
    data = pipe.take(total)
    try:
        done = scatter(t, vecs, data, True)
    except BaseException:
        pipe.unread(data)
        raise
    pipe.unread(data[done:])
    return done
