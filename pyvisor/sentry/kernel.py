"""Kernel: the sandbox's tasks, PID namespace and process tree, and its start and stop.

Start-up order matters: the Gofer is started first (it needs the host's
file system, which the Sentry never opens itself; its process handle is
gofer/process.py), then the memory file, the platform and the first task's
address space; the program is loaded through the VFS, so through the Gofer.

Each task runs ``task_loop`` on its own Sentry thread, which traces the
task's stub thread. The first task runs on the thread that called
``run``. Process-tree changes (fork, exit, wait, reparenting) happen under
``Kernel.lock`` and are announced on ``Kernel.cond``.
"""

import contextlib
import errno
import os
import signal
import struct
import sys
import threading
import time

from pyvisor import confine
from pyvisor.config import default_overlay_dir
from pyvisor.abi import flags as F
from pyvisor.abi.signals import (FAULT_SIGNALS, IGNORE_BY_DEFAULT, SA_NOCLDSTOP, SI_KERNEL, SIGBUS,
                                 SIGCHLD, SIGCONT, SIGKILL, STOP_BY_DEFAULT, siginfo_bytes)
from pyvisor.gofer.process import GoferProcess
from pyvisor.platform.base import EXIT_GONE, EXIT_SIGNAL
from pyvisor.sentry import confined_imports, loader, timers, waiting
from pyvisor.sentry.auth import Credentials
from pyvisor.sentry.errors import SyscallError, UsageError
from pyvisor.sentry.limits import default_rlimits
from pyvisor.sentry.mm.account import MemoryAccount
from pyvisor.sentry.mm.filestore import open_store
from pyvisor.sentry.mm.memfile import MemoryFileAllocator
from pyvisor.sentry.mm.mm import MemoryManager
from pyvisor.sentry import strace as _strace
from pyvisor.sentry.socket import netstack
from pyvisor.sentry.threads import ThreadPool
from pyvisor.sentry.vfs import pidfd, signalfd
from pyvisor.sentry.task import (ContextSwitch, GroupExit, SentryCrash, SignalState, Task,
                                 TaskExit, ThreadGroup, exit_wstatus, signal_wstatus)

SEGV_ACCERR = 2
BUS_ADRERR = 2
ROBUST_LIST_LIMIT = 2048
EXIT_TIMEOUT = 124        # pyvisor run --timeout, as timeout(1)
FUTEX_WAITERS, FUTEX_OWNER_DIED, FUTEX_TID_MASK = 0x80000000, 0x40000000, 0x3FFFFFFF
CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_STOPPED, CLD_CONTINUED = 1, 2, 3, 5, 6


class LaunchError(Exception):
    """The program could not be started: (errno, path), reported as a shell would."""

    def __init__(self, err, path):
        super().__init__(err, path)
        self.errno = err
        self.path = path


def _strace_handlers(handlers):
    """The handler list under --strace: a call whose memory it replaces
    (execve) gets its arguments formatted before it runs."""
    out = list(handlers)
    for number in _strace.FORMAT_BEFORE:
        if out[number] is not None:
            out[number] = _format_first(number, out[number])
    return out


def _format_first(number, handler):
    def run(t, *args):
        t.strace_shown = _strace.format_args(t, number, args, None)
        return handler(t, *args)
    return run


class Kernel:
    def __init__(self, config, table):
        """``table``: the syscall table (a SyscallTable from
        pyvisor.sentry.syscalls.table.build_table(); start-up hands it in, so
        the kernel imports no handler): ``handlers`` indexed by number (None:
        ENOSYS), ``name(nr)``, ``unimplemented_reason(nr)``."""
        self.config = config
        self.hostname = config.hostname.encode()
        self.start_time = time.monotonic()
        self.start_time_ns = time.monotonic_ns()
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.tasks = {}            # tid -> Task, live tasks
        self.groups = {}           # tgid -> ThreadGroup, live and zombie
        self._next_tid = 1
        self._reserved = set()     # tids being created by clone; guarded by lock
        self.pids_limit = getattr(config, "pids_limit", 1024)
        self.syscalls = table
        self.handlers = table.handlers
        if config.strace:
            self.handlers = _strace_handlers(table.handlers)
        self.strace = config.strace
        self._strace_out = None
        self._strace_lock = threading.Lock()
        self._unimplemented = set()
        self.debug = config.debug
        self.gofer = None
        self.platform = None
        self.allocator = None
        self.filestore = None       # --overlay file: the upper layer's data (mm/filestore.py)
        self.vfs = None
        self.init = None
        self.futexes = None
        self.crash = None
        self.import_guard = None       # set once the Sentry is confined
        self.timed_out = False
        self.threads = ThreadPool()

    # -- reporting --------------------------------------------------------

    def log(self, msg):
        if self.debug:
            sys.stderr.write("pyvisor: debug: %s\n" % msg)
            sys.stderr.flush()

    def report_unimplemented(self, number):
        if number not in self._unimplemented:
            self._unimplemented.add(number)
            self.log("unimplemented syscall %s (%d): ENOSYS (%s)" % (
                self.syscalls.name(number), number, self.syscalls.unimplemented_reason(number)))

    def strace_line(self, t, number, args, ret):
        """--strace: one completed call (arguments of a FORMAT_BEFORE call were
        formatted before it ran, into t.strace_shown)."""
        shown, t.strace_shown = t.strace_shown, None
        self._strace_write(t, lambda pid: _strace.format_call(
            t, number, args, ret, pid=pid, name=self.syscalls.name(number), shown=shown))

    def strace_signal(self, t, info):
        """--strace: the --- SIGNAL {siginfo} --- line for a signal t acts on."""
        self._strace_write(t, lambda pid: _strace.format_signal(info, pid))

    def _strace_write(self, t, line):
        """Write line(pid) with strace -f's "[pid N] " rule: only while the
        sandbox has more than one task, or the task is not the first."""
        with self._strace_lock:
            if self._strace_out is None:
                path = self.config.strace_file
                self._strace_out = open(path, "w", buffering=1) if path else sys.stderr
            pid = t.tid if len(self.tasks) > 1 or t.tid != 1 else None
            self._strace_out.write(line(pid) + "\n")

    # -- start --------------------------------------------------------------

    def start(self):
        cfg = self.config
        # Starts in parallel with all that follows; it serves the root and every volume.
        self.gofer = GoferProcess(cfg.rootfs, [(host, ro) for host, _t, ro in
                                               getattr(cfg, "volumes", ())])
        if cfg.confine:
            # Confined, the Sentry cannot import netstack when a socket needs
            # it: stage it now, beside the Gofer's start (socket/netstack.py).
            netstack.preload_start()
        from pyvisor.gofer.client import GoferClient
        from pyvisor.platform import auto_choice, make_platform
        from pyvisor.sentry.futex import FutexTable
        from pyvisor.sentry.vfs import FDTable, FSContext, build_vfs, host_file

        self.futexes = FutexTable()
        self.allocator = MemoryFileAllocator(account=MemoryAccount(cfg.memory))
        if getattr(cfg, "fork", "cow") == "eager":
            self.allocator.cow_min = None
        name = cfg.platform
        if name == "auto":
            name, why = auto_choice()
            self.log("platform auto: %s (%s)" % (name, why))
        self.platform = make_platform(name, self.allocator.file, pin_cpu=cfg.pin_cpu)
        self.log("platform %s, pinned to CPU %s" % (self.platform.name, self.platform.cpu))
        aspace = self.platform.new_address_space()
        if getattr(cfg, "overlay", "memory") == "file":
            # Opened now: once confined, the Sentry cannot open a host path.
            where = cfg.overlay_dir or default_overlay_dir()
            try:
                self.filestore = open_store(where)
            except OSError as e:
                raise LaunchError(e.errno, os.fsencode(where)) from None
        self.vfs = build_vfs(self, GoferClient(self.gofer.sock))
        mm = MemoryManager(self.allocator, aspace)
        fdtable = FDTable()
        for fd, name in ((0, b"stdin"), (1, b"stdout"), (2, b"stderr")):
            try:
                hostfd = os.dup(fd)
            except OSError:
                continue   # the caller closed it: so is the program's
            fdtable.install(host_file(hostfd, name), minfd=fd)
        group = ThreadGroup(self, self._alloc_tid(), None)
        t = Task(self, group.tgid, group, mm, fdtable, FSContext(self.vfs.root),
                 Credentials.root(), SignalState(), default_rlimits())
        t.set_context(aspace.tracee_context)
        group.tasks[t.tid] = t
        self.groups[group.tgid] = group
        self.tasks[t.tid] = t
        self.init = t
        self._chdir(t, cfg.cwd)
        if cfg.strace and cfg.strace_file:
            self._strace_out = open(cfg.strace_file, "w", buffering=1)
        self._exec_first(t, cfg.argv, cfg.env)
        if cfg.confine:
            # From here on the Sentry cannot open, exec or reach the network:
            # it sees an empty root, holds no capability (not even in its own
            # user namespace: the stubs are its children, with the same ids
            # and no capabilities either, so ptrace and kill need none; but
            # see sentry_capabilities), and runs under its seccomp filter.
            # confine.py has the reasons.
            from pyvisor import seccomp
            netstack.preload_join()
            seccomp.preimport()
            keep = confine.sentry_capabilities(self.platform.name)
            confine.enter_empty_root()
            confine.drop_capabilities(keep)
            confine.make_undumpable()
            seccomp.install_sentry_filter()
            self.import_guard = confined_imports.guard(cfg.debug or cfg.strict_imports)
        self.gofer.watch()
        return t

    def _alloc_tid(self):
        tid = self._next_tid
        while tid in self.tasks or tid in self.groups or tid in self._reserved:
            tid += 1
        self._next_tid = tid + 1
        return tid

    def _chdir(self, t, cwd):
        path = cwd.encode() if isinstance(cwd, str) else cwd
        try:
            t.fs.cwd = self.vfs.resolve_vd(t, path)
        except SyscallError as e:
            raise UsageError("--cwd %s: %s" % (os.fsdecode(path), os.strerror(e.errno))) from None
        if not t.fs.cwd.inode.is_dir():
            raise UsageError("--cwd %s: %s" % (os.fsdecode(path), os.strerror(errno.ENOTDIR)))

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
        if self.strace:
            envp = res.sp + 8 * (len(argv) + 2)     # [argc][argv...][NULL][envp...]
            self._strace_write(t, lambda pid: _strace.format_first_exec(
                path, argv, len(env), envp, pid))
        self._finish_exec(t, res, env)

    def _finish_exec(self, t, res, env):
        t.exe_path = res.exe_path
        t.argv = res.argv
        t.envp = list(env)
        t.comm = os.path.basename(res.exe_path)[:15]
        regs = {k: 0 for k in ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9",
                               "r8", "rax", "rcx", "rdx", "rsi", "rdi", "fs_base", "gs_base")}
        regs.update(rip=res.entry, rsp=res.sp, eflags=0x202, orig_rax=(1 << 64) - 1)
        t.regs.set_regs(regs)
        self.log("task %d exec %s: entry %#x, sp %#x" % (
            t.tid, res.exe_path.decode(errors="replace"), res.entry, res.sp))

    # -- processes ------------------------------------------------------------

    def clone(self, t, flags, stack, ptid, ctid, tls):
        """The work of clone(2)/fork(2)/vfork(2) once flags are validated; returns the child's tid."""
        with self.lock:
            if len(self.tasks) + len(self._reserved) >= self.pids_limit:
                raise SyscallError(errno.EAGAIN)
            tid = self._alloc_tid()
            self._reserved.add(tid)
        try:
            aspace = t.context.aspace
            if flags & F.CLONE_VM:
                host = aspace.clone_thread()
                mm = t.mm
                with self.lock:
                    mm.users += 1
            else:
                host = aspace.clone_process()
                mm = t.mm.fork()
        except BaseException:
            with self.lock:
                self._reserved.discard(tid)
            raise
        regs = t.regs.get_regs()
        regs.update(rax=0, orig_rax=(1 << 64) - 1)
        if stack:
            regs["rsp"] = stack
        if flags & F.CLONE_SETTLS:
            regs["fs_base"] = tls
        fdtable = t.fdtable if flags & F.CLONE_FILES else t.fdtable.fork()
        fs = t.fs if flags & F.CLONE_FS else t.fs.fork()
        signals = SignalState(t.signals.actions if flags & F.CLONE_SIGHAND
                              else dict(t.signals.actions))
        signals.mask = t.signals.mask
        with self.lock:
            if flags & F.CLONE_THREAD:
                group = t.group
            else:
                parent = t.group.parent if flags & F.CLONE_PARENT else t.group
                group = ThreadGroup(self, tid, parent, flags & 0xFF)
                group.pgid, group.sid = t.group.pgid, t.group.sid
                if parent is not None:
                    parent.children.append(group)
                self.groups[tid] = group
            child = Task(self, tid, group, mm, fdtable, fs, t.creds.copy(), signals,
                         t.rlimits if flags & F.CLONE_THREAD else dict(t.rlimits))
            child.exe_path, child.argv, child.envp, child.comm = t.exe_path, t.argv, t.envp, t.comm
            group.tasks[tid] = child
            self.tasks[tid] = child
            self._reserved.discard(tid)
        # kernel_clone and schedule_tail ignore a fault storing the tid: the
        # child exists by now and must start (else nothing could ever end it).
        if flags & F.CLONE_PARENT_SETTID:
            with contextlib.suppress(SyscallError):
                t.copy_out(ptid, tid.to_bytes(4, "little"))
        if flags & F.CLONE_CHILD_SETTID:
            with contextlib.suppress(SyscallError):
                mm.copy_out(ctid, tid.to_bytes(4, "little"))
        if flags & F.CLONE_CHILD_CLEARTID:
            child.clear_child_tid = ctid
        if flags & F.CLONE_VFORK:
            child.vfork_parent = t
        child.thread = self.threads.start(self._child_main, (child, host, not flags & F.CLONE_VM,
                                                             aspace, regs), "task-%d" % tid)
        if flags & F.CLONE_VFORK:
            self._wait_vfork(t, child)
        return tid

    def _wait_vfork(self, t, child):
        """The vfork parent waits until the child execs or exits; only its own death ends the wait
        (Linux waits killably: other signals stay pending until the child lets go)."""
        with self.lock:
            while child.vfork_parent is not None:
                if t.killed or t.group.exiting is not None:
                    raise waiting.Interrupted()
                self.cond.wait(0.2)

    def release_vfork(self, t):
        if t.vfork_parent is not None:
            with self.lock:
                t.vfork_parent = None
                self.cond.notify_all()

    def _child_main(self, t, host, new_process, parent_aspace, regs):
        waiting.set_current_task(t)
        try:
            if new_process:
                aspace = self.platform.adopt_process(host)
                t.mm.attach(aspace)
                t.set_context(aspace.tracee_context)
            else:
                t.set_context(self.platform.adopt_thread(parent_aspace, host))
            t.regs.set_regs(regs)
        except BaseException as e:   # noqa: BLE001 - the child never ran
            self.log("task %d failed to start: %s" % (t.tid, e))
            self._task_gone(t, exit_wstatus(127), group_exit=True)
            return
        self.task_loop(t)

    def execve(self, t, path, argv, envp):
        """The work of execve(2): load into a fresh address space, then make it the task's."""
        fresh = MemoryManager(self.allocator, None)
        try:
            res = loader.load(t, fresh, self.vfs, path, argv, envp)
        except BaseException:
            fresh.release()
            raise
        self._kill_other_threads(t)
        old = t.mm
        with self.lock:
            shared_files = any(o is not t and o.fdtable is t.fdtable for o in self.tasks.values())
        if shared_files:
            t.fdtable = t.fdtable.fork()
        t.fdtable.close_on_exec()
        self._mm_release(t)   # CLEARTID, robust list; vfork parent released below
        with self.lock:
            shared = old.users > 1
            old.users -= 1
        if not shared:
            old.reset()
            fresh.attach(old.aspace)
            t.mm = fresh
            switched = False
        else:
            host = t.context.aspace.clone_process()
            t.context.aspace.drop()
            aspace = self.platform.adopt_process(host)
            fresh.attach(aspace)
            t.mm = fresh
            t.set_context(aspace.tracee_context)
            switched = True
        t.signals.actions = {s: a for s, a in t.signals.actions.items() if a[0] == 1}
        t.signals.altstack = (0, 2, 0)
        t.group.execed = True
        timers.on_exec(t.group)
        self._finish_exec(t, res, envp)
        self.release_vfork(t)
        if switched:
            raise ContextSwitch()
        return 0

    def _robust_cleanup(self, t):
        """Mark the futexes on t's robust list owner-dead and wake a waiter of each (futex(7)).

        An entry's low bit marks a PI futex, whose waiter is handed the lock
        by FutexTable.exit_pi; the pending entry is handled last (Linux
        exit_robust_list)."""
        head, t.robust_list = t.robust_list, 0
        if not head:
            return
        try:
            nxt, offset, pending = struct.unpack("<QqQ", t.mm.copy_in(head, 24))
            entries, entry = [], nxt
            while entry != head and entry and len(entries) < ROBUST_LIST_LIMIT:
                if entry != pending:
                    entries.append((entry & ~1, entry & 1, False))
                entry = struct.unpack("<Q", t.mm.copy_in(entry & ~1, 8))[0]
            if pending:
                entries.append((pending & ~1, pending & 1, True))
        except SyscallError:
            return
        for e, pi, is_pending in entries:
            try:
                self.futexes.handle_death(t, (e + offset) & 0xFFFFFFFFFFFFFFFF, pi, is_pending)
            except SyscallError:
                continue

    def _mm_release(self, t):
        """What Linux does when a task lets go of its mm: the robust list, PI
        futexes it holds, CLEARTID and its wake."""
        self._robust_cleanup(t)
        self.futexes.exit_pi(t, dying=False)
        addr, t.clear_child_tid = t.clear_child_tid, 0
        if addr:
            try:
                t.mm.copy_out(addr, b"\0\0\0\0")
                self.futexes.wake(t, addr, 1, 0xFFFFFFFF)
            except SyscallError:
                pass

    def _kill_other_threads(self, t):
        with self.lock:
            others = [o for o in t.group.tasks.values() if o is not t]
            for o in others:
                o.killed = True
        for o in others:
            o.interrupt()
        with self.lock:
            while len(t.group.tasks) > 1:
                self.cond.wait(0.5)

    # -- signals ----------------------------------------------------------------

    def send_signal(self, target, signo, info, group=True):
        """Make signo pending on a task (group=False) or its thread group, and wake someone to take it."""
        if signo == 0:
            return
        if signo in (SIGCONT, SIGKILL):
            self.continue_group(target.group)
        with self.lock:
            g = target.group if group else None
            if g is not None and (g.wstatus is not None or g.exiting is not None):
                return
            h = target.signals.handler(signo)
            bit = 1 << (signo - 1)
            if signo != SIGKILL and (h == 1 or h == 0 and signo in IGNORE_BY_DEFAULT) \
                    and not (target.signals.mask | target.sigwaiting) & bit:
                # Linux sig_ignored: an ignored signal is dropped when sent, unless
                # blocked (its handler may change before it is unblocked). strace
                # sees it all the same (a traced task gets every signal).
                if self.strace:
                    self.strace_signal(target, info)
                return
            if signo == SIGKILL:
                g = target.group
                g.exiting = signal_wstatus(SIGKILL)
                victims = list(g.tasks.values())
            elif g is not None:
                if signo < 32 and (signo in (p[0] for p in g.pending) or
                                   any(signo in (p[0] for p in x.pending) for x in g.tasks.values())):
                    return
                # Linux (complete_signal): the thread named by the pid first, else
                # any thread that does not block it takes the signal; if all
                # block it, it stays with the process.
                bit = 1 << (signo - 1)
                takers = [x for x in ([target] + list(g.tasks.values()))
                          if not x.signals.mask & bit or x.sigwaiting & bit]
                if takers:
                    takers[0].pending.append((signo, info))
                    victims = takers[:1]
                else:
                    g.pending.append((signo, info))
                    victims = []
            else:
                if signo in (p[0] for p in target.pending) and signo < 32:
                    return
                target.pending.append((signo, info))
                victims = [target]
        for v in victims:
            v.interrupt()
        signalfd.notify_signal(self)

    # -- job control ------------------------------------------------------------

    def stop_group(self, g, signo):
        """Default action of SIGSTOP/SIGTSTP/SIGTTIN/SIGTTOU: every thread of g stops."""
        with self.lock:
            if g.stopped or g.exiting is not None:
                return
            g.stopped = signo
            g.report = (signo << 8) | 0x7F
            self.log("group %d stopped by signal %d" % (g.tgid, signo))
            others = list(g.tasks.values())
            self._notify_parent(g, CLD_STOPPED, signo)
            self.cond.notify_all()
        for o in others:
            o.interrupt()

    def continue_group(self, g):
        """SIGCONT: a stopped group runs again (signal(7)); its parent hears CLD_CONTINUED."""
        with self.lock:
            for x in list(g.tasks.values()):
                x.pending = [p for p in x.pending if p[0] not in STOP_BY_DEFAULT]
            g.pending = [p for p in g.pending if p[0] not in STOP_BY_DEFAULT]
            if not g.stopped:
                return
            g.stopped = 0
            g.report = 0xFFFF
            self.log("group %d continued" % g.tgid)
            self._notify_parent(g, CLD_CONTINUED, SIGCONT)
            self.cond.notify_all()

    def pgrp_orphaned_locked(self, pgid, ignored=None):
        """Is process group pgid orphaned (POSIX; Linux will_become_orphaned_pgrp)?

        It is unless some member (other than `ignored`, and not exited) has
        a parent in another process group of the same session: a shell that
        could still continue it. Precondition: Kernel.lock held.
        N.B. Linux also counts a parent that is the *global* init as no
        link; the sandbox's PID 1 is a namespace init, which Linux counts
        as an ordinary parent, so it is one here too. The sandbox's init
        itself has a parent outside (whoever ran pyvisor, as a container's
        init does), so its own group keeps that link.
        """
        for m in self.groups.values():
            if m.pgid != pgid or m is ignored or m.wstatus is not None:
                continue
            p = m.parent
            if p is None and m.tgid == 1:
                return False
            if p is not None and p.pgid != pgid and p.sid == m.sid:
                return False
        return True

    def _kill_orphaned_pgrps_locked(self, g, reparented):
        """g has exited and its children were re-parented: a process group that
        this made orphaned while it has stopped members gets SIGHUP, then
        SIGCONT (POSIX; Linux kernel/exit.c kill_orphaned_pgrp). Lock held."""
        hit = set()
        for c in reparented:     # g was a child's only link outside its group
            if c.pgid != g.pgid and c.sid == g.sid and c.pgid not in hit and \
                    self.pgrp_orphaned_locked(c.pgid) and self._pgrp_stopped_locked(c.pgid):
                hit.add(c.pgid)
        p = g.parent              # g was its own group's only link outside
        if p is not None and p.pgid != g.pgid and p.sid == g.sid and g.pgid not in hit and \
                self.pgrp_orphaned_locked(g.pgid, ignored=g) and self._pgrp_stopped_locked(g.pgid):
            hit.add(g.pgid)
        for pgid in sorted(hit):
            members = [m for m in self.groups.values() if m.pgid == pgid and m.tasks]
            self.log("process group %d orphaned with stopped members: SIGHUP, SIGCONT" % pgid)
            for signo in (1, SIGCONT):
                for m in members:
                    self.send_signal(next(iter(m.tasks.values())), signo,
                                     siginfo_bytes(signo, SI_KERNEL))

    def _pgrp_stopped_locked(self, pgid):
        return any(m.pgid == pgid and m.stopped and m.tasks for m in self.groups.values())

    def wait_while_stopped(self, t):
        """Park a task of a stopped group until SIGCONT, SIGKILL or the group's end."""
        with self.lock:
            while t.group.stopped and t.group.exiting is None and not t.killed:
                self.cond.wait(0.2)   # SIGCONT and SIGKILL notify; the timeout covers other ends

    def _notify_parent(self, g, code, status):
        """SIGCHLD to g's parent (precondition: lock held), unless it asked not to (SA_NOCLDSTOP)."""
        parent = g.parent
        if parent is None or not parent.tasks:
            return
        leader = next(iter(parent.tasks.values()))
        if leader.signals.actions.get(SIGCHLD, (0, 0, 0, 0))[1] & SA_NOCLDSTOP:
            return
        self.send_signal(leader, SIGCHLD, siginfo_bytes(SIGCHLD, code, pid=g.tgid, status=status))

    def kill_sandbox(self, wstatus):
        with self.lock:
            for g in self.groups.values():
                if g.wstatus is None and g.exiting is None:
                    g.exiting = wstatus
            victims = list(self.tasks.values())
        for v in victims:
            v.interrupt()

    # -- the per-task loop ------------------------------------------------------------

    def task_loop(self, t):
        """Run task t until it exits; its Sentry thread ends with it."""
        waiting.set_current_task(t)
        wstatus, group_exit = exit_wstatus(0), False
        try:
            while True:
                try:
                    ex = t.context.run(t.syscall)
                except ContextSwitch:
                    continue
                if ex.kind == EXIT_SIGNAL:
                    self._on_stop_signal(t, ex)
                elif ex.kind == EXIT_GONE:
                    self._host_process_gone(t, ex.status)
                t.deliver_signals(None)   # at a non-syscall stop: rax is the application's
        except TaskExit as e:
            wstatus = exit_wstatus(e.code)
        except GroupExit as e:
            wstatus, group_exit = e.wstatus, True
        except SentryCrash as e:
            self.crash = e
            wstatus, group_exit = signal_wstatus(SIGKILL), True
            self.kill_sandbox(wstatus)
        except BaseException as e:   # noqa: BLE001 - a Sentry bug outside a handler
            self.crash = e
            wstatus, group_exit = signal_wstatus(SIGKILL), True
            self.kill_sandbox(wstatus)
        self._task_gone(t, wstatus, group_exit)

    def _on_stop_signal(self, t, ex):
        """A host signal stopped the stub: a fault of the program's, or our own kick."""
        signo = ex.signo
        if signo == signal.SIGSTOP:
            return      # a kick (Task.interrupt): pending signals are handled by the caller
        if signo == 11 and t.mm is not None and t.mm.past_eof(ex.addr):
            # mmap(2): touching a page of a shared file mapping wholly past
            # the file's end is SIGBUS (BUS_ADRERR), the address in si_addr.
            self._force_signal(t, SIGBUS, siginfo_bytes(SIGBUS, BUS_ADRERR, addr=ex.addr))
            return
        if signo == 11 and ex.code == SEGV_ACCERR and self._write_fault(t, ex.addr):
            return      # a write to copy-on-write pages: now the task's own, retry
        if signo in FAULT_SIGNALS and 0 < ex.code < SI_KERNEL or signo in (4, 8) or \
                signo == 11 and ex.code == SI_KERNEL:
            self.log("task %d: fault signal %d (code %d, addr %#x)" % (t.tid, signo, ex.code, ex.addr))
            self._force_signal(t, signo, siginfo_bytes(signo, ex.code, addr=ex.addr))
            return
        self.log("task %d: host signal %d ignored" % (t.tid, signo))

    def _write_fault(self, t, addr):
        """mm.write_fault, where no memory for the copy (--memory) kills the
        task's group as Linux's OOM killer would, with one line on stderr."""
        try:
            return t.mm.write_fault(addr)
        except SyscallError as e:
            if e.errno != errno.ENOMEM:
                raise
        sys.stderr.write("pyvisor: out of memory (--memory %d bytes): killed process %d\n"
                         % (self.config.memory or 0, t.group.tgid))
        raise GroupExit(signal_wstatus(SIGKILL))

    def _host_process_gone(self, t, status):
        """The host process that ran t's address space died (killed from
        outside, say): every task in it is lost, so t's group dies of
        SIGKILL, as if the kernel had killed it; the sandbox goes on."""
        with self.lock:
            exiting = t.group.exiting is not None or self.timed_out
        if not exiting:
            sys.stderr.write("pyvisor: the host process running task %d died (wait status %#x); "
                             "the task is killed\n" % (t.tid, status))
        raise GroupExit(signal_wstatus(SIGKILL))

    def _force_signal(self, t, signo, info):
        """A synchronous fault: delivered even if blocked or ignored (then the default kills)."""
        h = t.signals.handler(signo)
        if h in (0, 1) or t.signals.mask & (1 << (signo - 1)):
            if self.strace:
                self.strace_signal(t, info)
            raise GroupExit(t.death_wstatus(signo))
        with self.lock:
            t.pending.insert(0, (signo, info))

    def _task_gone(self, t, wstatus, group_exit):
        """Tear down a task that ended; the last task of a group makes it a zombie."""
        g = t.group
        if self.strace:
            status = wstatus if not group_exit or g.exiting is None else g.exiting
            self._strace_write(t, lambda pid: _strace.format_exit(status, pid))
        if group_exit:
            with self.lock:
                if g.exiting is None:
                    g.exiting = wstatus
                others = [o for o in g.tasks.values() if o is not t]
            for o in others:
                o.interrupt()
        self._mm_release(t)
        self.futexes.exit_pi(t, dying=True)   # from now on t owns no PI futex
        self.release_vfork(t)
        timers.task_exiting(t)      # its CPU time, while the host still has it
        if t.context is not None:
            try:
                t.context.aspace.drop()
            except OSError as e:
                self.log("task %d: releasing its stub: %s" % (t.tid, e))
        with self.lock:
            t.mm.users -= 1
            if t.mm.users == 0:
                t.mm.release()
            g.tasks.pop(t.tid, None)
            self.tasks.pop(t.tid, None)
            last = not g.tasks
            if last:
                g.wstatus = g.exiting if g.exiting is not None else wstatus
        if last:
            with self.lock:
                shared_files = any(o.fdtable is t.fdtable for o in self.tasks.values())
            if not shared_files:
                t.fdtable.close_all()
            self._group_dead(g)
        with self.lock:
            self.cond.notify_all()

    def _group_dead(self, g):
        timers.group_gone(g)
        with self.lock:
            init = self.groups.get(1)
            reparented = g.children
            for c in g.children:
                c.parent = init if init is not g else None
                c.exit_signal = SIGCHLD     # reparent_leader: "we don't want people slaying init"
                if init is not None and init is not g:
                    init.children.append(c)
            g.children = []
            self._kill_orphaned_pgrps_locked(g, reparented)
            parent = g.parent
            if parent is None:
                self.groups.pop(g.tgid, None)   # nobody will reap it
            elif parent.tasks and parent.tasks and g.exit_signal:
                code, status = self._child_code(g.wstatus)
                info = siginfo_bytes(g.exit_signal, code, pid=g.tgid, status=status)
                leader = next(iter(parent.tasks.values()))
                self.send_signal(leader, g.exit_signal, info)
            self.cond.notify_all()
        pidfd.group_changed(g)
        if g.tgid == 1:
            self.kill_sandbox(signal_wstatus(SIGKILL))

    @staticmethod
    def _child_code(wstatus):
        if wstatus == 0xFFFF:
            return CLD_CONTINUED, SIGCONT
        if wstatus & 0xFF == 0x7F:
            return CLD_STOPPED, (wstatus >> 8) & 0xFF
        if wstatus & 0x7F == 0:
            return CLD_EXITED, (wstatus >> 8) & 0xFF
        return (CLD_DUMPED if wstatus & 0x80 else CLD_KILLED), wstatus & 0x7F

    def wait_child(self, t, pid, options, reap=True):
        """Find a child group for wait4/waitid; (group, wstatus) or None with WNOHANG.

        Raises ECHILD when nothing could ever match.
        """
        WNOHANG, WUNTRACED, WEXITED, WCONTINUED = 1, 2, 4, 8
        me = t.group
        with self.lock:
            while True:
                cands = [c for c in me.children if self._matches(c, pid, me)]
                if not cands:
                    raise SyscallError(errno.ECHILD)
                for c in cands:
                    if c.wstatus is not None and options & WEXITED:
                        if reap:
                            me.children.remove(c)
                            self.groups.pop(c.tgid, None)
                        return c, c.wstatus
                    rep = c.report
                    if rep is not None and (rep == 0xFFFF and options & WCONTINUED or
                                            rep != 0xFFFF and options & WUNTRACED):
                        if reap:
                            c.report = None
                        return c, rep
                if options & WNOHANG:
                    return None
                waiting.wait(self.cond)

    @staticmethod
    def _matches(c, pid, me):
        if pid == -1:
            return True
        if pid > 0:
            return c.tgid == pid
        if pid == 0:
            return c.pgid == me.pgid
        return c.pgid == -pid

    # -- run ------------------------------------------------------------------

    def run(self):
        """Run the sandbox until its first process ends; return a shell-style exit code.

        With a timeout, the whole sandbox is killed when it runs out and the
        code is 124, as timeout(1) exits.
        """
        timer = None
        if self.config.timeout is not None:
            timer = threading.Timer(self.config.timeout, self._time_out)
            timer.daemon = True
            timer.start()
        try:
            self.task_loop(self.init)
        finally:
            if timer is not None:
                timer.cancel()
        g = self.init.group
        with self.lock:
            while g.wstatus is None:
                self.cond.wait(0.5)
        if self.crash is not None:
            raise self.crash
        if self.import_guard is not None:
            self.import_guard.check()
        if self.timed_out:
            return EXIT_TIMEOUT
        st = g.wstatus
        return (st >> 8) & 0xFF if st & 0x7F == 0 else 128 + (st & 0x7F)

    def _time_out(self):
        self.timed_out = True
        self.kill_sandbox(signal_wstatus(SIGKILL))

    def stop(self):
        timers.shutdown(self)
        netstack.shutdown(self)
        self.threads.close()
        self.kill_sandbox(signal_wstatus(SIGKILL))
        deadline = time.monotonic() + 2
        with self.lock:
            while self.tasks and time.monotonic() < deadline:
                self.cond.wait(0.1)
            leftovers = list(self.tasks.values())
        for x in leftovers:
            if x.context is not None:
                x.context.aspace.kill()
        if self.gofer is not None:
            self.gofer.stop()
            self.gofer = None
