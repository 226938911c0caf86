"""Host threads for tasks, kept for reuse.

Every task runs on a Sentry thread of its own (it blocks there; see
docs/architecture.md). Starting a Python thread costs about a millisecond
on this machine, mostly the parent waiting for the new thread to be
scheduled and report in, which made it a tenth of a fork+exec+wait. A
thread whose task has ended therefore waits here for the next task instead
of exiting; ``start`` hands a job to an idle thread without waiting for it.
"""

import threading

IDLE_MAX = 64          # idle threads kept; more exit
IDLE_SECONDS = 30.0    # an idle thread exits after this long


class _Worker:
    __slots__ = ("wake", "job", "thread")

    def __init__(self):
        self.wake = threading.Lock()
        self.wake.acquire()
        self.job = None
        self.thread = None


class ThreadPool:
    """``start(fn, args, name)`` runs ``fn(*args)`` on an idle thread or a new one."""

    def __init__(self, idle_max=IDLE_MAX, idle_seconds=IDLE_SECONDS):
        self._lock = threading.Lock()
        self._idle = []
        self._closed = False
        self.idle_max = idle_max
        self.idle_seconds = idle_seconds

    def start(self, fn, args, name):
        """Run ``fn(*args)`` on a host thread named ``name``; returns that thread."""
        with self._lock:
            w = self._idle.pop() if self._idle else None
        if w is None:
            w = _Worker()
            w.job = (fn, args)
            w.thread = threading.Thread(target=self._main, args=(w,), name=name, daemon=True)
            w.thread.start()
        else:
            w.thread.name = name
            w.job = (fn, args)
            w.wake.release()
        return w.thread

    def _main(self, w):
        while True:
            fn, args = w.job
            w.job = None
            try:
                fn(*args)
            finally:
                fn = args = None
            with self._lock:
                if self._closed or len(self._idle) >= self.idle_max:
                    return
                self._idle.append(w)
            if not w.wake.acquire(timeout=self.idle_seconds):
                with self._lock:
                    if w in self._idle:
                        self._idle.remove(w)
                        return
                # Taken from the idle list just as the wait timed out: a job is coming.
                w.wake.acquire()

    def close(self):
        """Let every idle thread exit; threads running a task exit when it ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for w in idle:
            w.job = (_nothing, ())
            w.wake.release()


def _nothing():
    pass
