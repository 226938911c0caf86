"""The one blocking primitive, and how a signal interrupts it.

Every Sentry wait that a task makes (an empty pipe, wait4, a futex, a sleep)
goes through ``wait(cond, timeout)`` with the condition's lock held, as
``threading.Condition.wait`` would. The waiting task is known from a
thread-local (each task has its own Sentry thread), so file code does not
need a task argument. A signal sent to the task, or a request to kill it,
calls ``Task.interrupt()``, which notifies the condition the task is waiting
on; ``wait`` then raises ``Interrupted`` and the dispatcher turns that into
EINTR, or restarts the call, as Linux does.
"""

import errno
import threading
import time

from .errors import SyscallError, partial

_local = threading.local()
# The longest single host wait. Longer timeouts (a relative timeout may be up
# to KTIME_MAX ns, 292 years) overflow Condition.wait; every waiter loops on
# its own deadline, so waking early is only a spurious wake-up.
MAX_WAIT = 86400.0


class Interrupted(Exception):
    """A blocked call was interrupted by a signal or by the task's death."""


def current_task():
    return getattr(_local, "task", None)


def set_current_task(t):
    _local.task = t


def wait(cond, timeout=None):
    """Wait on ``cond`` (its lock held); False on timeout. Raises Interrupted.

    Spurious wake-ups are the caller's to handle, as with Condition.wait;
    a timeout above MAX_WAIT waits MAX_WAIT.
    """
    if timeout is not None and timeout > MAX_WAIT:
        timeout = MAX_WAIT
    t = getattr(_local, "task", None)
    if t is None:
        return cond.wait(timeout)
    with t.wait_lock:
        if t.interrupt_pending():
            raise Interrupted()
        t.waiting_on = cond
    try:
        ok = cond.wait(timeout)
    finally:
        with t.wait_lock:
            t.waiting_on = None
    if t.interrupt_pending():
        raise Interrupted()
    return ok


def wait_more(moved, block, *args):
    """One wait inside a transfer loop (a socket's send or receive):
    ``block(*args)`` waits and returns False on timeout. True: go on. With
    bytes already moved, a timeout or a signal ends the call with them
    (False); with none, EAGAIN or Interrupted is raised (errors.partial)."""
    try:
        if block(*args):
            return True
        exc = SyscallError(errno.EAGAIN)
    except Interrupted as e:
        exc = e
    partial(moved, exc)
    return False


def wait_until(cond, deadline, timed_eintr=False):
    """``wait`` until a monotonic ``deadline`` (None: no limit); False once it passed.

    ``timed_eintr``: the wait is bounded by a socket timeout (SO_RCVTIMEO,
    SO_SNDTIMEO), so an interruption is EINTR, never a restart (signal(7)).
    """
    timeout = None
    if deadline is not None:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            return False
    try:
        wait(cond, timeout)
    except Interrupted:
        if timed_eintr:
            raise SyscallError(errno.EINTR) from None
        raise
    return True


def sleep(seconds):
    """Sleep for ``seconds``, interruptibly; returns the time left (0 when slept through)."""
    cond = threading.Condition()
    end = time.monotonic() + seconds
    with cond:
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return 0.0
            try:
                wait(cond, left)
            except Interrupted:
                t = current_task()
                if t is not None:
                    t.sleep_left = max(0.0, end - time.monotonic())
                raise
