"""Kernel: the sandbox's task set, PID namespace, clocks and its start and stop.

Start-up order matters: the Gofer is started first (it needs the host's
file system, which the Sentry never opens itself), then the memory file,
the platform and the first task's address space; the program is loaded
through the VFS, so through the Gofer.
"""

import errno
import os
import signal
import socket
import subprocess
import sys
import time

from pyvisor.platform.base import EXIT_GONE, EXIT_SIGNAL
from pyvisor.sentry import loader
from pyvisor.sentry.errors import SandboxExit, SyscallError
from pyvisor.sentry.mm.memfile import MemoryFileAllocator
from pyvisor.sentry.mm.mm import MemoryManager
from pyvisor.sentry.syscalls import build_table, name_of
from pyvisor.sentry.syscalls.creds import Credentials
from pyvisor.sentry.syscalls.misc import default_rlimits
from pyvisor.sentry.syscalls.signal import CORE_BY_DEFAULT, SignalState, fatal_action
from pyvisor.sentry.task import SentryCrash, Task

# Synchronous faults: the instruction cannot continue, whatever the disposition.
FAULT_SIGNALS = {4, 5, 7, 8, 11}   # SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV
SI_KERNEL = 0x80


class LaunchError(Exception):
    """The program could not be started: (errno, path), reported as a shell would."""

    def __init__(self, err, path):
        super().__init__(err, path)
        self.errno = err
        self.path = path


class Gofer:
    """The Gofer process and our end of its socket."""

    def __init__(self, root, readonly=True):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cmd = [sys.executable, "-m", "pyvisor.gofer", "--fd", str(theirs.fileno()), "--root", root]
        self.proc = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                     close_fds=True)
        theirs.close()
        self.sock = ours

    def stop(self):
        try:
            self.sock.close()
        finally:
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Kernel:
    def __init__(self, config):
        self.config = config
        self.hostname = config.hostname.encode()
        self.start_time = time.monotonic()
        self.start_time_ns = time.monotonic_ns()
        self.tasks = {}
        self.table = build_table()
        self.strace = config.strace
        self._strace_out = None
        self._unimplemented = set()
        self.debug = config.debug
        self.gofer = None
        self.platform = None
        self.allocator = None
        self.vfs = None

    # -- reporting --------------------------------------------------------

    def log(self, msg):
        if self.debug:
            sys.stderr.write("pyvisor: debug: %s\n" % msg)
            sys.stderr.flush()

    def report_unimplemented(self, number):
        if number not in self._unimplemented:
            self._unimplemented.add(number)
            self.log("unimplemented syscall %s (%d): ENOSYS" % (name_of(number), number))

    def strace_line(self, t, number, args, ret):
        from pyvisor.sentry.strace import format_call
        if self._strace_out is None:
            path = self.config.strace_file
            self._strace_out = open(path, "w", buffering=1) if path else sys.stderr
        self._strace_out.write(format_call(t, number, args, ret) + "\n")

    # -- start --------------------------------------------------------------

    def start(self):
        from pyvisor.gofer.client import GoferClient
        from pyvisor.platform.ptrace import PtracePlatform
        from pyvisor.sentry.vfs import FDTable, FSContext, build_vfs, host_file

        cfg = self.config
        self.gofer = Gofer(cfg.rootfs)
        self.allocator = MemoryFileAllocator()
        self.platform = PtracePlatform(self.allocator.file, pin_cpu=cfg.pin_cpu)
        self.log("platform %s, pinned to CPU %s" % (self.platform.name, self.platform.cpu))
        self.vfs = build_vfs(self, GoferClient(self.gofer.sock))
        aspace = self.platform.new_address_space()
        mm = MemoryManager(self.allocator, aspace)
        fdtable = FDTable()
        for fd, name in ((0, b"stdin"), (1, b"stdout"), (2, b"stderr")):
            try:
                hostfd = os.dup(fd)
            except OSError:
                continue   # the caller closed it: so is the program's
            fdtable.install(host_file(hostfd, name), minfd=fd)
        t = Task(self, 1, mm, aspace.context, fdtable, FSContext(self.vfs.root),
                 Credentials.root(), SignalState(), default_rlimits())
        self.tasks[1] = t
        self.init = t
        self._chdir(t, cfg.cwd)
        self._exec_first(t, cfg.argv, cfg.env)
        return t

    def _chdir(self, t, cwd):
        path = cwd.encode() if isinstance(cwd, str) else cwd
        try:
            t.fs.cwd = self.vfs.resolve_vd(t, path)
        except SyscallError as e:
            raise LaunchError(e.errno, path) from None

    def _find_program(self, t, name, env):
        """argv[0] as execvp finds it: a path as is, else each PATH entry in turn."""
        if b"/" in name:
            return name
        path = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        for e in env:
            if e.startswith(b"PATH="):
                path = e[5:]
        for d in path.split(b":"):
            cand = (d or b".") + b"/" + name
            try:
                st = self.vfs.stat(t, cand)
            except SyscallError:
                continue
            if st.st_mode & 0o170000 == 0o100000 and st.st_mode & 0o111:
                return cand
        raise LaunchError(errno.ENOENT, name)

    def _exec_first(self, t, argv, env):
        path = self._find_program(t, argv[0], env)
        try:
            res = loader.load(t, t.mm, self.vfs, path, argv, env)
        except SyscallError as e:
            raise LaunchError(e.errno, argv[0]) from None
        t.exe_path = res.exe_path
        t.argv = res.argv
        t.envp = list(env)
        t.comm = os.path.basename(res.exe_path)[:15]
        regs = {k: 0 for k in ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9",
                               "r8", "rax", "rcx", "rdx", "rsi", "rdi", "fs_base", "gs_base")}
        regs.update(rip=res.entry, rsp=res.sp, eflags=0x202, orig_rax=(1 << 64) - 1)
        t.regs.set_regs(regs)
        self.log("loaded %s: entry %#x, sp %#x" % (res.exe_path.decode(errors="replace"),
                                                  res.entry, res.sp))

    # -- run ------------------------------------------------------------------

    def run(self):
        """Run the first task to its end; return the wait-status-style exit code."""
        t = self.init
        sig = 0
        while True:
            try:
                ex = t.context.run(t.syscall, sig)
            except SandboxExit as e:
                if e.signal:
                    self.log("killed by signal %d" % e.signal)
                return e.status
            sig = 0
            if ex.kind == EXIT_SIGNAL:
                status = self._on_signal(t, ex)
                if status is not None:
                    return status
            elif ex.kind == EXIT_GONE:
                raise RuntimeError("stub process vanished (wait status %#x)" % ex.status)

    def _on_signal(self, t, ex):
        """A signal stopped the stub: a fault of the program's, or a signal from outside."""
        signo = ex.signo
        fault = signo in FAULT_SIGNALS and ex.code != 0 and ex.code < SI_KERNEL or signo in (4, 8)
        if fault or signo == 9:
            self.log("fatal %s signal %d (code %d, addr %#x)" % (
                "fault" if fault else "", signo, ex.code, ex.addr))
            return 128 + signo
        if fatal_action(t.signals, signo):
            self.log("signal %d from outside: default action ends the sandbox" % signo)
            return 128 + signo
        return None

    def stop(self):
        for t in self.tasks.values():
            ctx_space = getattr(t.mm, "aspace", None)
            if ctx_space is not None:
                ctx_space.release()
        self.tasks.clear()
        if self.gofer is not None:
            self.gofer.stop()
            self.gofer = None


def run_sandbox(config):
    """Start, run and stop a sandbox; return its exit code. Raises LaunchError, SentryCrash."""
    k = Kernel(config)
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGQUIT)}
    try:
        k.start()
        return k.run()
    finally:
        k.stop()
        for s, h in old.items():
            signal.signal(s, h)


__all__ = ["Kernel", "LaunchError", "SentryCrash", "run_sandbox", "CORE_BY_DEFAULT"]
