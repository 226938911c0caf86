"""Confinement of pyvisor's own processes (DESIGN.md, invariant 6).

Some facts about Linux that this module rests on:

* A process that unshares a user namespace (``unshare(CLONE_NEWUSER)``)
  holds every capability *in that namespace* and none in its parent
  (user_namespaces(7)). Its capabilities act only on objects the new
  namespace owns: the namespaces made with it, and inodes whose owner and
  group map into it. ``unshare(2)`` refuses CLONE_NEWUSER in a process with
  more than one thread, so it is done before any thread starts.
* ``uid_map``/``gid_map`` are written once. An ordinary user may map only
  its own uid (and its gid after ``setgroups`` is set to ``deny``), and may
  write its own maps; any other map needs CAP_SETUID/CAP_SETGID in the
  *parent* namespace, held both by the writer and by whoever opened the map
  file. So as root the map (host root and every other id, unchanged: files
  keep their owners) is written by a helper process that stayed in the
  host's namespace.
* ``unshare(CLONE_NEWPID)`` does not move the caller: its next child is
  PID 1 of the new namespace, its init. When init dies, the kernel kills
  every other process in the namespace; a signal from inside the namespace
  that init has no handler for is dropped, and one from an ancestor
  namespace is delivered only if init handles or blocks it (SIGKILL always
  is). Processes in the namespace see no pid outside it: kill(2) and
  ptrace(2) cannot name a host process.
* Capabilities are per thread: capset(2) changes the calling thread only,
  and a thread inherits its creator's set. So they are dropped while the
  process has one thread.
* A tmpfs mounted, opened and then detached (``umount2(MNT_DETACH)``) lives
  on while the fd holds it, reachable from no path: ``fchdir`` to it and
  ``chroot(".")`` gives a root in which nothing can be found or created (it
  is mounted read-only).

What this means for pyvisor: ``run_confined`` (the ``pyvisor run``
process, which stays in the host's namespaces and credentials) makes the
user namespace and the others (pid, mount, ipc, uts, net) and forks the
Sentry as PID 1 there; the Sentry starts the Gofer and the stubs, which
inherit the namespaces. The Sentry chroots into the empty tmpfs once it
holds what it needs (Kernel.start) and drops every capability; the Gofer
chroots into the tree it serves (gofer/__main__.py); a stub drops its
capabilities before its exec (_fastpath.spawn_stub). The ``pyvisor run``
process execs a small waiter (csrc/waiter.c) that waits for the Sentry, passes
signals on (as real-time signals: see RELAYED) and exits with its status.
"""

import ctypes
import errno
import os
import signal
import sys
import threading

from pyvisor.abi.flags import (CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUSER,
                               CLONE_NEWUTS, PR_SET_NO_NEW_PRIVS)

SANDBOX_NAMESPACES = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REC, MS_PRIVATE = 0x4000, 1 << 18
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
CAP_DAC_READ_SEARCH = 2
CAP_SYS_PTRACE = 19
WAITER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_waiter")

# Signals that `pyvisor run` passes on to the Sentry (sentry/boot.py's _HostSignals
# forwards them to the sandbox's init), as before confinement. Each goes on
# as a real-time signal of its own (RELAYED: SIGRTMAX, SIGRTMAX-1, ...):
# real-time signals queue, so the relayed copy is never merged with the
# copy a kill(2) of the whole process group gave the Sentry directly, which
# the Sentry drops (a standard signal pending twice is delivered once).
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGWINCH,
             signal.SIGUSR1, signal.SIGUSR2)
RELAYED = {signal.SIGRTMAX - i: sig for i, sig in enumerate(FORWARDED)}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)

# Set in the Sentry by run_confined: an fd of the detached empty tmpfs, and
# whether signals reach it through the `pyvisor run` process.
empty_root_fd = None
under_runner = False


class ConfinementError(Exception):
    """The host refused a step of confinement; the message says which and why."""


def _check(r, what):
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))


def _unshare(flags, what):
    _check(_libc.unshare(flags), "unshare(%s)" % what)


def _write(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _user_namespace():
    """Move this (single-threaded) process into a new user namespace, where it is root.

    An ordinary user maps its own uid and gid to 0 (as ``unshare
    --map-root-user``); root maps every id to itself, written by a helper
    that stays in the host's namespace (see the module's notes).
    """
    uid, gid = os.geteuid(), os.getegid()
    if uid != 0:
        try:
            _unshare(CLONE_NEWUSER, "CLONE_NEWUSER")
        except OSError as e:
            raise ConfinementError(_userns_refused(e)) from None
        try:
            _write("/proc/self/setgroups", b"deny")
            _write("/proc/self/uid_map", b"0 %d 1\n" % uid)
            _write("/proc/self/gid_map", b"0 %d 1\n" % gid)
        except OSError as e:
            raise ConfinementError("cannot map ids in the sandbox's user namespace: %s" % e) from None
        return
    me = os.getpid()
    go_r, go_w = os.pipe()
    helper = os.fork()
    if helper == 0:                         # the helper: stays in the host's namespaces
        code = 1
        try:
            os.close(go_w)
            if os.read(go_r, 1) == b"u":
                ident = b"0 0 4294967295\n"
                _write("/proc/%d/uid_map" % me, ident)
                _write("/proc/%d/gid_map" % me, ident)
                code = 0
        except BaseException as e:          # noqa: BLE001 - reported by the parent's check
            sys.stderr.write("pyvisor: writing the user namespace's id maps: %s\n" % e)
        finally:
            os._exit(code)
    os.close(go_r)
    try:
        _unshare(CLONE_NEWUSER, "CLONE_NEWUSER")
    except OSError as e:
        os.close(go_w)
        os.waitpid(helper, 0)
        raise ConfinementError(_userns_refused(e)) from None
    os.write(go_w, b"u")
    os.close(go_w)
    _, st = os.waitpid(helper, 0)
    if st != 0:
        raise ConfinementError("the id maps of the sandbox's user namespace could not be written")


def _userns_refused(e):
    return ("cannot create a user namespace (%s): the host forbids it (see "
            "/proc/sys/user/max_user_namespaces, and kernel.unprivileged_userns_clone or "
            "AppArmor's kernel.apparmor_restrict_unprivileged_userns where they exist)"
            % os.strerror(e.errno))


def _prepare_empty_root():
    """An fd of a read-only, empty tmpfs reachable from no path (see the module's notes).

    Any existing directory serves as the mount point for the moment the
    tmpfs is mounted: this package's own, which certainly exists.
    """
    point = os.path.dirname(os.path.abspath(__file__)).encode()
    _check(_libc.mount(b"pyvisor-root", point, b"tmpfs",
                       MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=4k,nr_inodes=1,mode=0555"),
           "mount(tmpfs)")
    try:
        fd = os.open(point, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    finally:
        _check(_libc.umount2(point, MNT_DETACH), "umount2(MNT_DETACH)")
    return fd


def enter_empty_root():
    """chroot(2) the whole Sentry (every thread shares its root) into the empty tmpfs, if one was made."""
    global empty_root_fd
    if empty_root_fd is None:
        return False
    os.fchdir(empty_root_fd)
    os.chroot(".")
    os.chdir("/")
    os.close(empty_root_fd)
    empty_root_fd = None
    return True


def sentry_capabilities(platform_name):
    """What the Sentry keeps once started: nothing, but CAP_SYS_PTRACE under Yama's ptrace_scope 2.

    Yama's scope 2 ("admin-only attach") asks CAP_SYS_PTRACE in the tracee's
    user namespace even of a tracer that is the tracee's parent, and the
    ptrace platform attaches every new stub. Scopes 0 and 1 ask nothing of
    a parent (the stubs are the Sentry's children); scope 3 forbids ptrace
    (use kvm). Read before the chroot. (This host has no Yama: untested here.)
    """
    if platform_name != "ptrace":
        return ()
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope", "rb") as f:
            scope = int(f.read())
    except (OSError, ValueError):
        return ()
    return (CAP_SYS_PTRACE,) if scope == 2 else ()


def make_undumpable():
    """PR_SET_DUMPABLE 0: /proc/PID/mem and the like of this process need
    CAP_SYS_PTRACE in its user namespace, which no process there holds. The
    Gofer shares the Sentry's uid; without this it could read the Sentry's
    memory through /proc."""
    _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


def private_proc():
    """For the Gofer: a mount namespace of its own with the sandbox's pid
    namespace's procfs on /proc, so that the /proc/self/fd it keeps across
    its chroot leads to no host process (through ``..``). Where the host
    refuses a new procfs (a container that masks parts of its /proc), the
    Gofer keeps the host's and says so."""
    try:
        _unshare(CLONE_NEWNS, "CLONE_NEWNS")
        _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount(/, MS_PRIVATE)")
        _check(_libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None),
               "mount(proc)")
    except OSError as e:
        sys.stderr.write("pyvisor-gofer: keeping the host's /proc: %s\n" % e)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop_capabilities(keep=()):
    """Leave the process with only the capabilities ``keep`` (numbers), and no_new_privs.

    Clears the bounding and ambient sets too, so no later exec can give
    any back. Precondition: the process has one thread (capabilities are
    per thread). Capabilities held in a child user namespace are never
    capabilities on the host; this still drops them there.
    """
    if threading.active_count() != 1:
        raise RuntimeError("drop_capabilities with %d threads: capabilities are per thread"
                           % threading.active_count())
    for cap in range(64):
        if cap in keep:
            continue
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            e = ctypes.get_errno()
            if e == errno.EINVAL:
                break               # past the kernel's last capability
            if e != errno.EPERM:    # EPERM: no CAP_SETPCAP, the set is already what it can be
                raise OSError(e, "prctl(PR_CAPBSET_DROP, %d)" % cap)
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    mask = 0
    for cap in keep:
        mask |= 1 << cap
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        word = (mask >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = word
    _check(_libc.capset(ctypes.byref(hdr), data), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def run_confined(sentry_main):
    """Run ``sentry_main()`` as PID 1 of fresh namespaces; return its exit code.

    Called by the `pyvisor run` process, single-threaded. That process
    makes the namespaces, forks the Sentry into them, drops its own
    capabilities (it runs nothing of the sandbox's), and then only waits:
    a signal sent to it (kill(2), sigqueue(3)) is passed on to the Sentry
    as its RELAYED signal, and one the terminal sends to the whole foreground
    process group (Ctrl-C) reaches the Sentry directly, which is in that
    group too. The Sentry dies with it (PR_SET_PDEATHSIG), and everything
    else in the namespace dies with the Sentry. Raises ConfinementError when
    the host refuses a namespace.
    """
    global under_runner, empty_root_fd
    _user_namespace()
    try:
        _unshare(SANDBOX_NAMESPACES, "CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWIPC|CLONE_NEWUTS|CLONE_NEWNET")
    except OSError as e:
        raise ConfinementError("cannot create the sandbox's namespaces: %s" % e) from None
    # Mounts made in here (the Sentry's empty root) stay in here.
    try:
        _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount(/, MS_PRIVATE)")
    except OSError as e:
        raise ConfinementError(str(e)) from None
    alive_r, alive_w = os.pipe()
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK,
                                      FORWARDED + tuple(RELAYED) + (signal.SIGCHLD,))
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            os.close(alive_w)
            _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
            os.set_blocking(alive_r, False)
            try:
                dead = os.read(alive_r, 1) == b""   # the parent died before PDEATHSIG was set
            except BlockingIOError:
                dead = False
            os.close(alive_r)
            if dead:
                os._exit(code)
            # Still blocked: a Ctrl-C during start-up waits for the Sentry's
            # host-signals thread (kernel.py), which passes it to the program.
            signal.pthread_sigmask(signal.SIG_SETMASK, set(old_mask) | set(FORWARDED) | set(RELAYED))
            under_runner = True
            empty_root_fd = _prepare_empty_root()
            code = sentry_main()
        except BaseException as e:     # noqa: BLE001 - the Sentry's last word, then exit
            sys.stderr.write("pyvisor: Sentry failure: %s: %s\n" % (type(e).__name__, e))
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    os.close(alive_r)
    try:
        drop_capabilities()
    except OSError:
        pass        # not needed for the sandbox's safety: this process runs none of it
    if os.access(WAITER, os.X_OK):
        # From here on this process is the small waiter (waiter.c), not a
        # Python interpreter: a dozen MB less for every sandbox. The pipe
        # stays open in it: the Sentry takes its end of file for our death.
        os.set_inheritable(alive_w, True)
        try:
            os.execv(WAITER, [WAITER, str(pid)])
        except OSError:
            pass
    code = _wait_and_forward(pid)
    os.close(alive_w)
    return code


def _wait_and_forward(pid):
    """Wait for the Sentry, passing signals sent to us on to it; its exit status, shell-style.

    What waiter.c does, for a tree where it was not built (or cannot be
    exec'd): the same rules, in a Python interpreter.
    """
    sigset = FORWARDED + (signal.SIGCHLD,)
    while True:
        info = signal.sigwaitinfo(sigset)
        if info.si_signo == signal.SIGCHLD:
            p, st = os.waitpid(pid, os.WNOHANG)
            if p == pid:
                return os.WEXITSTATUS(st) if os.WIFEXITED(st) else 128 + os.WTERMSIG(st)
            continue
        if info.si_code <= 0:
            # Sent by a process. One from the kernel (the terminal's Ctrl-C,
            # SIGWINCH) went to the Sentry as well: it is in our process group.
            relay = FORWARDED.index(info.si_signo)
            try:
                os.kill(pid, signal.SIGRTMAX - relay)
            except ProcessLookupError:
                pass
