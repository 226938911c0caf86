"""The sandbox's TCP/IP stack: one netstack ``Stack`` per Kernel.

Linux background: a host's sockets share one network namespace (its
interfaces, routes and port tables); protocol timers (retransmission,
delayed ACK, keepalive, TIME-WAIT) run in softirq context, not in the
tasks that own the sockets; loopback delivery happens inside the sender's
own ``send`` (``netif_rx`` then the softirq on the way out of the call), so
a peer sees the data as soon as ``send`` returns.

Here, as with ``runsc --network=none``, the sandbox has a loopback
interface only (127.0.0.1/8). ``net_of(kernel)`` makes the stack on the
first AF_INET socket, so netstack is never imported by a program that does
not use the network (only its error type, netstack/errors.py, which the
translation below needs). netstack is a library that knows no threads, so:

- ``NetStack.lock`` guards the whole stack. Every call into it is made in
  ``with net:`` (a transaction). Leaving the transaction *settles* the
  stack: it runs ``stack.poll(now)`` until nothing is due, which carries
  loopback frames to their receivers at once (prompt delivery, as Linux).
- Errors: netstack raises its own ``NetError`` (errno-valued); leaving the
  transaction turns one into ``SyscallError(e.errno)``, the only
  translation. Code inside a transaction that looks at a netstack errno
  (EAGAIN, EINPROGRESS) catches ``NetError``. ``poll()``, the one netstack
  call made under the bare lock (``InetSocket.poll_events``), raises none.
- One Sentry thread, the *driver*, sleeps until ``stack.next_deadline()``
  (retransmission, delayed ACK, TIME-WAIT) or until a transaction moves
  that deadline earlier (a kick), then settles the stack.
- Readiness: each socket file registers a netstack waiter. netstack calls
  it inside stack processing (lock held); it notifies the file's condition
  (blocked tasks, on the same lock) and queues the file, whose WaitQueue
  (poll/select/epoll) is notified after the lock is released, as
  ``vfs/waitq.py`` requires.

Lock order: NetStack.lock, then a WaitQueue's lock (only after release).

Start-up: once the Sentry confines itself (seccomp.py) it cannot open files,
so it cannot import modules either; ``stage()`` (below) prepares netstack's
import without running it.
"""

import atexit
import threading
import time

from ...netstack.errors import NetError
from .. import waiting
from ..once import made_once
from ..errors import SyscallError

MAX_SETTLE_ROUNDS = 256       # then the driver thread finishes the work
MIN_DRIVER_WAIT = 0.0002
DEFAULT_BUF = 4 << 20         # SO_RCVBUF/SO_SNDBUF of a new TCP socket
LOOPBACK_MSS = 65483          # Linux's on lo (MTU 65536): 65535 - 20 - 20 - 12


class NetStack:
    """A Stack with a loopback interface, its lock and its driver thread.

    Use as ``with net:`` around every call into ``net.stack`` or a netstack
    socket. Fields other than ``lock`` are protected by ``lock``.
    """

    def __init__(self):
        from ...netstack.stack import Stack
        from ...netstack.tcp import TCPConfig
        self.lock = threading.Lock()
        # N.B. netstack's default MSS (1460) is for Ethernet. Linux's lo
        # advertises 65483, so that a segment with timestamps still fits the
        # 16-bit IP total length (netstack's own clamp, MTU - 40 = 65496,
        # does not: such segments are lost). Buffers: netstack does not
        # autotune, so start where Linux's autotuning ends (tcp_wmem/tcp_rmem
        # maxima, about 4 MB); 256 KB gave 40 MB/s on loopback, 4 MB ~250.
        config = TCPConfig(mss=LOOPBACK_MSS, rcvbuf=DEFAULT_BUF, sndbuf=DEFAULT_BUF)
        self.stack = Stack(tcp_config=config)
        self.stack.add_loopback()
        self._kick = threading.Condition(self.lock)
        self._wake_at = None          # when the driver will next wake (None: never)
        self._stopped = False
        self._pending = {}            # files whose WaitQueue must be notified (ordered set)
        self._thread = threading.Thread(target=self._drive, name="netstack", daemon=True)
        self._thread.start()

    # --- transactions -------------------------------------------------------------

    def __enter__(self):
        self.lock.acquire()
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self._settle_locked()
        finally:
            pending = self._take_pending_locked()
            self.lock.release()
            _notify(pending)
        if isinstance(exc, NetError):
            # The one place netstack's error becomes the syscall's: both
            # carry the Linux errno (netstack/errors.py).
            raise SyscallError(exc.errno) from exc
        return False

    def _settle_locked(self):
        """Run what is due now (loopback frames, timers, output)."""
        st = self.stack
        d = None
        for _ in range(MAX_SETTLE_ROUNDS):
            d = st.next_deadline()
            now = time.monotonic()
            if d is None or d > now:
                break
            st.poll(now)
        if d is not None and (self._wake_at is None or d < self._wake_at):
            self._kick.notify()

    def _take_pending_locked(self):
        if not self._pending:
            return ()
        pending, self._pending = list(self._pending), {}
        return pending

    def changed_locked(self, f):
        """A socket file's readiness may have changed (called by its netstack
        waiter, lock held): its WaitQueue hears of it after the lock goes."""
        self._pending[f] = None

    def forget_locked(self, f):
        """A closed file needs no more readiness announcements."""
        self._pending.pop(f, None)

    def block(self, cond, deadline, timed_eintr):
        """Wait on ``cond`` (a Condition on ``lock``, held) until notified.

        The stack is settled and pending readiness is announced first; if
        there was any, returns at once so the caller re-checks. Returns False
        when ``deadline`` (monotonic; None: never) has passed. Raises
        waiting.Interrupted, or SyscallError(EINTR) for a wait bounded by a
        socket timeout (signal(7): those calls are never restarted).
        """
        self._settle_locked()
        if self._announce_locked():
            return True
        return waiting.wait_until(cond, deadline, timed_eintr)

    def _announce_locked(self):
        """Notify the wait queues of files whose readiness changed, with the
        lock released (vfs/waitq.py); True if there were any."""
        if not self._pending:
            return False
        pending = self._take_pending_locked()
        self.lock.release()
        try:
            _notify(pending)
        finally:
            self.lock.acquire()
        return True

    # --- the driver -----------------------------------------------------------------

    def _drive(self):
        """The driver thread: settle the stack at each deadline or kick."""
        with self.lock:
            while not self._stopped:
                self._settle_locked()
                if self._announce_locked():
                    continue
                d = self.stack.next_deadline()
                self._wake_at = d
                # At least a moment: the lock must be free for tasks even
                # if the stack keeps saying something is due.
                timeout = None if d is None else max(d - time.monotonic(), MIN_DRIVER_WAIT)
                self._kick.wait(timeout)
                self._wake_at = None

    def shutdown(self):
        """Stop the driver thread (Kernel.stop, interpreter exit)."""
        with self.lock:
            self._stopped = True
            self._kick.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(1.0)


def _notify(files):
    for f in files:
        f.waitq.notify()


def net_of(kernel):
    """The kernel's NetStack, made on first use."""
    return made_once(kernel, "netstack", _new_stack)


def _new_stack():
    net = NetStack()
    atexit.register(net.shutdown)   # gone before the interpreter finalizes (see timers.service)
    return net


def shutdown(kernel):
    """Stop the kernel's netstack driver, if it has one (Kernel.stop)."""
    net = getattr(kernel, "netstack", None)
    if net is not None:
        net.shutdown()


# --- importing before confinement ---------------------------------------------------
#
# Confined (seccomp.py), the Sentry cannot open files, so it cannot import.
# Importing netstack before that costs ~25 ms of CPU at every start, paid
# even by programs that never open a socket. Instead, `stage()` does only
# what needs open(2): it loads netstack's extension modules (and hashlib's),
# and reads the code objects of its Python modules (and hashlib) into a
# meta-path finder, which executes them when the first AF_INET socket
# imports netstack (~5 ms at start, on a thread that overlaps the Gofer's
# start). Unconfined, nothing is staged and imports work as usual.

# hashlib's own hash modules, not OpenSSL's _hashlib: that one maps
# libcrypto, 3.5 MB of RSS in every Sentry against 0.2 MB for these.
_STDLIB_EXTENSIONS = ("_md5", "_sha1", "_sha256", "_sha512", "_sha3", "_blake2")
_BLOCKED = ("_hashlib",)                           # hashlib falls back without it
_STDLIB_MODULES = ("hashlib",)
# Every other standard module that the netstack modules the Sentry can reach
# import, anywhere in them: imported for real (with what they import in
# turn, whatever this Python's stdlib does), most already are.
# tests/test_installed.py checks this list against netstack's source.
NETSTACK_STDLIB = ("collections", "copy", "enum", "errno", "heapq", "ipaddress", "os", "random",
                   "select", "socket", "struct", "time")
_stager = None


class _CodeCache:
    """A meta-path finder and loader for modules staged as code objects."""

    def __init__(self, entries, blocked=()):
        self.entries = entries            # name -> (marshalled code, origin, search locations or None)
        self.blocked = frozenset(blocked)  # names that must not be looked for

    def find_spec(self, name, path=None, target=None):
        if name in self.blocked:
            raise ModuleNotFoundError("%s is not staged" % name, name=name)
        entry = self.entries.get(name)
        if entry is None:
            return None
        import importlib.util
        _code, origin, locations = entry
        spec = importlib.util.spec_from_loader(name, self, origin=origin,
                                               is_package=locations is not None)
        spec.has_location = True          # sets __file__, as the file loader would
        if locations is not None:
            spec.submodule_search_locations = list(locations)
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        import marshal
        exec(marshal.loads(self.entries[module.__name__][0]), module.__dict__)


def stage():
    """Make netstack importable once the Sentry cannot open files."""
    import importlib
    import importlib.machinery
    import sys
    for name in _STDLIB_EXTENSIONS:
        try:
            importlib.import_module(name)
        except ImportError:
            pass                          # hashlib does without it
    for name in NETSTACK_STDLIB:
        importlib.import_module(name)
    pkg = importlib.import_module("pyvisor.netstack")
    entries = {}
    for name in _STDLIB_MODULES:
        if name not in sys.modules:
            _stage_module(name, importlib.machinery.PathFinder.find_spec(name), entries)
    _stage_package(pkg.__name__, pkg.__path__, entries)
    blocked = [name for name in _BLOCKED if name not in sys.modules]
    sys.meta_path.insert(0, _CodeCache(entries, blocked))


def _stage_package(name, path, entries):
    import importlib
    import importlib.machinery
    import sys
    from pyvisor.seccomp import iter_modules
    for mod, ispkg in iter_modules(path):
        full = "%s.%s" % (name, mod)
        if full in sys.modules:
            continue
        spec = importlib.machinery.PathFinder.find_spec(full, path)
        if isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            importlib.import_module(full)      # dlopen needs open(2): now
            continue
        _stage_module(full, spec, entries)
        if ispkg:
            _stage_package(full, spec.submodule_search_locations, entries)


def _stage_module(name, spec, entries):
    locations = spec.submodule_search_locations
    entries[name] = (_code_bytes(name, spec), spec.origin,
                     tuple(locations) if locations is not None else None)


def _code_bytes(name, spec):
    """The module's marshalled code, read from its .pyc when that is
    current (unmarshalled only if the module is imported), else compiled."""
    import importlib.util
    import marshal
    import os
    try:
        st = os.stat(spec.origin)
        with open(importlib.util.cache_from_source(spec.origin), "rb") as f:
            data = f.read()
    except (OSError, NotImplementedError, ValueError):
        data = b""
    # PEP 552 header: magic, flags (0: checked by timestamp), mtime, size.
    if (data[:4] == importlib.util.MAGIC_NUMBER and data[4:8] == bytes(4)
            and int.from_bytes(data[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
            and int.from_bytes(data[12:16], "little") == st.st_size & 0xFFFFFFFF):
        return data[16:]
    return marshal.dumps(spec.loader.get_code(name))


def preload_start():
    """Start staging netstack on a background thread (see above)."""
    global _stager
    if _stager is None:
        _stager = threading.Thread(target=stage, name="netstack-stage", daemon=True)
        _stager.start()


def preload_join():
    """Wait for preload_start's staging (before the Sentry confines itself)."""
    if _stager is not None:
        _stager.join()
    else:
        stage()
