"""signalfd(2): reading pending signals as records.

Linux background (fs/signalfd.c): a signalfd holds a signal mask. A read(2)
by task T dequeues signals in that mask that are pending on T (its own
queue first, then its thread group's), as struct signalfd_siginfo records of
128 bytes each; a buffer smaller than one record is EINVAL. With none
pending it blocks, or fails with EAGAIN (SFD_NONBLOCK). The reader is always
the *calling* task: a signalfd passed to another process reads that
process's signals. Readiness is POLLIN when such a signal is pending on the
task that polls. SIGKILL and SIGSTOP are silently dropped from the mask.
The signals are normally blocked (else they are delivered before anyone
reads them); that is the program's job, not ours.

Waking readers: Kernel.send_signal calls `notify_signal(kernel)`, which
notifies the one WaitQueue all signalfds of a kernel share (readers re-check
their own task's queues).
"""

import errno
import struct

from pyvisor.abi.signals import (FAULT_SIGNALS, SI_KERNEL, SI_TIMER, SIGCHLD, SIGINFO_HEAD,
                                 SIGINFO_SIZE, UNBLOCKABLE)

from .. import waiting
from ..errors import SyscallError
from .file import FileDescription, O_NONBLOCK, O_RDWR
from .host import POLL_INTERVAL
from .waitq import POLLIN, POLLRDNORM, WaitQueue

SFD_CLOEXEC = 0o2000000
SFD_NONBLOCK = O_NONBLOCK
SFD_FLAGS = SFD_CLOEXEC | SFD_NONBLOCK
SIGNALFD_SIGINFO_SIZE = 128      # struct signalfd_siginfo

# struct signalfd_siginfo: signo errno code pid uid fd tid band overrun trapno
# status int, ptr utime stime addr, addr_lsb pad syscall, call_addr arch.
_SSI = struct.Struct("<IiiIIiIIIIii QQQQ HHi QI")
_MASK64 = (1 << 64) - 1


def signalfd_waitq(kernel):
    """The kernel's one WaitQueue for signalfd readers (made on first use)."""
    q = getattr(kernel, "signalfd_waitq", None)
    if q is None:
        q = kernel.signalfd_waitq = WaitQueue()
    return q


def notify_signal(kernel):
    """Tell signalfd readers and pollers that a signal became pending.
    Call after the signal is queued, *without* Kernel.lock held: an epoll
    waiter takes its epoll's lock, which is held around signalfd's
    poll_events (which takes Kernel.lock)."""
    q = getattr(kernel, "signalfd_waitq", None)
    if q is not None:
        q.notify(POLLIN | POLLRDNORM)


def siginfo_to_signalfd(info):
    """Convert a Linux siginfo_t (128 bytes) into a signalfd_siginfo, field
    by field as signalfd_copyinfo() does, by the siginfo's layout."""
    info = bytes(info).ljust(SIGINFO_SIZE, b"\0")
    signo, err, code = SIGINFO_HEAD.unpack_from(info)
    pid = uid = status = sival = utime = stime = addr = tid = overrun = 0
    if 0 < code < SI_KERNEL and signo in FAULT_SIGNALS:
        addr, = struct.unpack_from("<Q", info, 16)
    elif 0 < code < SI_KERNEL and signo == SIGCHLD:
        pid, uid, status, utime, stime = struct.unpack_from("<iIi4xqq", info, 16)
    elif code == SI_TIMER:
        tid, overrun, sival = struct.unpack_from("<iiQ", info, 16)
    else:                        # kill, tkill, sigqueue: pid, uid, value
        pid, uid, sival = struct.unpack_from("<iIQ", info, 16)
    sint = ((sival & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000    # si_int: sival's low half
    return _SSI.pack(signo, err, code, pid & 0xFFFFFFFF, uid, 0, tid & 0xFFFFFFFF, 0,
                     overrun & 0xFFFFFFFF, 0, status, sint, sival, utime & _MASK64,
                     stime & _MASK64, addr, 0, 0, 0, 0, 0).ljust(SIGNALFD_SIGINFO_SIZE, b"\0")


class SignalFile(FileDescription):
    """A signalfd description; `mask` may be changed by signalfd(fd, ...)."""

    seekable = False
    anon_name = b"[signalfd]"
    poll_periodically = False     # Kernel.send_signal notifies

    def __init__(self, kernel, mask, flags=0):
        super().__init__(None, O_RDWR | (flags & O_NONBLOCK))
        self.kernel = kernel
        self.mask = mask & ~UNBLOCKABLE
        self.waitq = signalfd_waitq(kernel)

    def set_mask(self, mask):
        self.mask = mask & ~UNBLOCKABLE
        self.waitq.notify(POLLIN | POLLRDNORM)

    def _dequeue_locked(self, t, limit):
        """Take up to `limit` signals in the mask from t's queues. Kernel.lock held."""
        out = []
        for src in (t.pending, t.group.pending):
            i = 0
            while i < len(src) and len(out) < limit:
                signo, info = src[i]
                if self.mask & (1 << (signo - 1)):
                    del src[i]
                    out.append(siginfo_to_signalfd(info))
                else:
                    i += 1
        return out

    def _has_pending_locked(self, t):
        return any(self.mask & (1 << (signo - 1))
                   for src in (t.pending, t.group.pending) for signo, _ in src)

    def pread(self, count, offset):
        """Implements read(2) on a signalfd for the calling task."""
        if offset >= 0:
            raise SyscallError(errno.ESPIPE)
        if count < SIGNALFD_SIGINFO_SIZE:
            raise SyscallError(errno.EINVAL)
        t = waiting.current_task()
        if t is None:
            raise SyscallError(errno.EAGAIN)
        k = self.kernel
        with k.lock:
            got = self._dequeue_locked(t, count // SIGNALFD_SIGINFO_SIZE)
            if got or self.nonblocking:
                return self._result(got)
        waker = self._waker(k)
        self.waitq.register(waker)
        try:
            with k.lock:
                while True:
                    got = self._dequeue_locked(t, count // SIGNALFD_SIGINFO_SIZE)
                    if got:
                        return self._result(got)
                    waiting.wait(k.cond, POLL_INTERVAL)
        finally:
            self.waitq.unregister(waker)

    @staticmethod
    def _waker(k):
        def wake(_events):
            with k.cond:
                k.cond.notify_all()
        return wake

    @staticmethod
    def _result(got):
        if not got:
            raise SyscallError(errno.EAGAIN)
        return b"".join(got)

    def pwrite(self, data, offset):
        raise SyscallError(errno.EINVAL)

    def poll_events(self):
        """POLLIN when a signal in the mask is pending on the polling task."""
        t = waiting.current_task()
        if t is None:
            return 0
        with self.kernel.lock:
            return POLLIN | POLLRDNORM if self._has_pending_locked(t) else 0

    def fdinfo(self):
        return b"sigmask:\t%016x\n" % self.mask


def make_signalfd(kernel, mask, flags):
    """signalfd4(2)'s new object: EINVAL for unknown flags."""
    if flags & ~SFD_FLAGS:
        raise SyscallError(errno.EINVAL)
    return SignalFile(kernel, mask, flags)
