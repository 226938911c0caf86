"""procfs: /proc, generated from Sentry state.

Files are generated when opened (a snapshot, like seq_file) and report
size 0, as Linux's do. Directories are recomputed on every lookup, so the
filesystem opts out of the dentry cache. /proc/self is a symlink to the
reader's pid; /proc/PID/{fd/N,cwd,root,exe} are "magic links": following
them reaches the open file or directory itself, not a path lookup of the
text readlink shows (pipes show "pipe:[N]" and reopen the same pipe).

Host facts (cpuinfo, meminfo) are read once when procfs is built, before
the Sentry's seccomp filter forbids opening files; the rest is generated.
"""

import errno
import os
import time

from ..errors import SyscallError
from .file import FileDescription
from .fsnotify import MAX_QUEUED_EVENTS, MAX_USER_INSTANCES, MAX_USER_WATCHES
from .inode import Filesystem, Inode
from .mount import VDentry, vd_path
from .stat import PROC_SUPER_MAGIC, S_IFDIR, S_IFLNK, S_IFREG, StatFs

# Must agree with uname(2) (syscalls/misc.py UTS_RELEASE, UTS_VERSION).
OSRELEASE = b"6.1.0"
KVERSION = b"#1 SMP pyvisor"
VERSION = b"Linux version " + OSRELEASE + b" (pyvisor@pyvisor) (gcc) " + KVERSION + b"\n"
PAGE = 4096
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED = 1

_FILESYSTEMS = b"nodev\tsysfs\nnodev\ttmpfs\nnodev\tproc\nnodev\tdevtmpfs\nnodev\tpipefs\n" \
               b"nodev\toverlay\nnodev\t9p\nnodev\tdevpts\n"


def _read_host(path, fallback):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return fallback


def _gen_cpuinfo():
    out = []
    for i in range(os.cpu_count() or 1):
        out.append(b"processor\t: %d\nvendor_id\t: GenuineIntel\nmodel name\t: pyvisor vCPU\n"
                   b"flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2\n\n" % i)
    return b"".join(out)


_GEN_MEMINFO = (b"MemTotal:        4194304 kB\nMemFree:         2097152 kB\n"
                b"MemAvailable:    3145728 kB\nBuffers:               0 kB\n"
                b"Cached:                0 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\n")


class ProcFS(Filesystem):
    name = b"proc"
    magic = PROC_SUPER_MAGIC
    cache_dentries = False

    def __init__(self, kernel, vfs=None):
        super().__init__()
        self.kernel = kernel
        self.vfs = vfs
        # Kernel.start_time is a time.monotonic() value (see syscalls/misc.py).
        self.boot = getattr(kernel, "start_time", None) or time.monotonic()
        self.cpuinfo = _read_host("/proc/cpuinfo", _gen_cpuinfo())
        self.meminfo = _read_host("/proc/meminfo", _GEN_MEMINFO)
        self._inos = {}
        self.root = ProcDir(self, b"", self._root_children)

    def ino(self, key):
        """A stable inode number per generated path."""
        n = self._inos.get(key)
        if n is None:
            n = self._inos[key] = len(self._inos) + 1
        return n

    def statfs(self):
        return StatFs(f_type=self.magic, f_fsid=(self.dev, 0))

    def task(self, pid):
        task = self.kernel.tasks.get(pid)
        if task is None:
            raise SyscallError(errno.ENOENT)
        return task

    # --- the tree ---------------------------------------------------------

    def _root_children(self):
        ch = {
            b"self": lambda: ProcLink(self, b"self", lambda t: b"%d" % t.pid),
            b"thread-self": lambda: ProcLink(self, b"thread-self",
                                             lambda t: b"%d/task/%d" % (t.pid, t.tid)),
            b"mounts": lambda: ProcLink(self, b"mounts", lambda t: b"self/mounts"),
            b"cpuinfo": self._file(b"cpuinfo", lambda t: self.cpuinfo),
            b"meminfo": self._file(b"meminfo", lambda t: self.meminfo),
            b"filesystems": self._file(b"filesystems", lambda t: _FILESYSTEMS),
            b"uptime": self._file(b"uptime", self._uptime),
            b"loadavg": self._file(b"loadavg", self._loadavg),
            b"version": self._file(b"version", lambda t: VERSION),
            b"stat": self._file(b"stat", self._stat),
            b"sys": self._dir(b"sys", lambda: {
                b"kernel": self._dir(b"sys/kernel", self._sys_kernel),
                b"vm": self._dir(b"sys/vm", lambda: {
                    b"overcommit_memory": self._file(b"sys/vm/overcommit_memory",
                                                     lambda t: b"0\n"),
                    b"max_map_count": self._file(b"sys/vm/max_map_count",
                                                 lambda t: b"65530\n"),
                }),
                b"fs": self._dir(b"sys/fs", lambda: {
                    b"pipe-max-size": self._file(b"sys/fs/pipe-max-size",
                                                 lambda t: b"1048576\n"),
                    b"nr_open": self._file(b"sys/fs/nr_open", lambda t: b"1048576\n"),
                    b"inotify": self._dir(b"sys/fs/inotify", lambda: {
                        b"max_queued_events": self._file(
                            b"sys/fs/inotify/max_queued_events",
                            lambda t: b"%d\n" % MAX_QUEUED_EVENTS),
                        b"max_user_instances": self._file(
                            b"sys/fs/inotify/max_user_instances",
                            lambda t: b"%d\n" % MAX_USER_INSTANCES),
                        b"max_user_watches": self._file(
                            b"sys/fs/inotify/max_user_watches",
                            lambda t: b"%d\n" % MAX_USER_WATCHES),
                    }),
                }),
            }),
        }
        for pid in list(self.kernel.tasks):
            ch[b"%d" % pid] = self._pid_dir_factory(pid)
        return ch

    def _sys_kernel(self):
        return {
            b"osrelease": self._file(b"k/osrelease", lambda t: OSRELEASE + b"\n"),
            b"ostype": self._file(b"k/ostype", lambda t: b"Linux\n"),
            b"hostname": self._file(b"k/hostname", lambda t: self.kernel.hostname + b"\n"),
            b"ngroups_max": self._file(b"k/ngroups_max", lambda t: b"65536\n"),
            b"pid_max": self._file(b"k/pid_max", lambda t: b"4194304\n"),
            b"version": self._file(b"k/version", lambda t: KVERSION + b"\n"),
            b"random": self._dir(b"k/random", lambda: {
                b"boot_id": self._file(b"k/random/boot_id", self._boot_id),
                b"uuid": self._file(b"k/random/uuid", lambda t: _uuid(os.urandom(16))),
            }),
        }

    def _boot_id(self, t):
        if not hasattr(self, "_boot_uuid"):
            self._boot_uuid = _uuid(os.urandom(16))
        return self._boot_uuid

    def _file(self, key, gen):
        return lambda: ProcFile(self, key, gen)

    def _dir(self, key, children):
        return lambda: ProcDir(self, key, children)

    def _pid_dir_factory(self, pid):
        return lambda: ProcDir(self, b"%d" % pid, lambda: self._pid_children(pid))

    def _pid_children(self, pid):
        key = b"%d/" % pid
        task = lambda: self.task(pid)       # noqa: E731 - looked up at use, the task may exit
        gen = {
            b"cmdline": lambda t: b"".join(a + b"\0" for a in task().argv),
            b"environ": lambda t: b"".join(e + b"\0" for e in task().envp),
            b"comm": lambda t: task().comm[:15] + b"\n",
            b"status": lambda t: self._status(task()),
            b"stat": lambda t: self._pid_stat(task()),
            b"statm": lambda t: self._statm(task()),
            b"maps": lambda t: self._maps(task()),
            b"mounts": lambda t: self._mounts(),
            b"mountinfo": lambda t: self._mountinfo(),
            b"limits": lambda t: _LIMITS,
            b"oom_score_adj": lambda t: b"0\n",
            b"cgroup": lambda t: b"0::/\n",
        }
        ch = {name: self._file(key + name, g) for name, g in gen.items()}
        ch[b"exe"] = lambda: ProcLink(self, key + b"exe", lambda t: task().exe_path)
        ch[b"cwd"] = lambda: ProcLink(self, key + b"cwd", lambda t: task().fs.cwd)
        ch[b"root"] = lambda: ProcLink(self, key + b"root", lambda t: task().fs.root)
        ch[b"fd"] = self._dir(key + b"fd", lambda: self._fd_children(pid))
        ch[b"fdinfo"] = self._dir(key + b"fdinfo", lambda: self._fdinfo_children(pid))
        ch[b"task"] = self._dir(key + b"task", lambda: {
            b"%d" % pid: self._pid_dir_factory(pid)})
        return ch

    def _fd_children(self, pid):
        task = self.task(pid)
        ch = {}
        for fd, f in task.fdtable.items():
            ch[b"%d" % fd] = self._fd_link(pid, fd, f)
        return ch

    def _fdinfo_children(self, pid):
        task = self.task(pid)
        return {b"%d" % fd: self._file(b"%d/fdinfo/%d" % (pid, fd), self._fdinfo(task, fd, f))
                for fd, f in task.fdtable.items()}

    @staticmethod
    def _fdinfo(task, fd, f):
        def gen(t):
            try:
                cloexec = task.fdtable.get_cloexec(fd)
            except SyscallError:
                cloexec = False
            flags = f.flags | (0o2000000 if cloexec else 0)
            st = f.stat()
            mnt = f.vd.mount.id if f.vd is not None else 0
            return b"pos:\t%d\nflags:\t0%o\nmnt_id:\t%d\nino:\t%d\n" % (
                f.offset, flags, mnt, st.st_ino)
        return gen

    def _fd_link(self, pid, fd, f):
        target = f.vd if f.vd is not None else f
        # lr-x, l-wx or lrwx, as the description's access mode says.
        mode = 0o700 if f.readable and f.writable else 0o500 if f.readable else 0o300
        return lambda: ProcLink(self, b"%d/fd/%d" % (pid, fd), lambda t: target, mode=mode)

    # --- generators -------------------------------------------------------

    def _uptime(self, t):
        up = time.monotonic() - self.boot
        return b"%.2f %.2f\n" % (up, up * (os.cpu_count() or 1))

    def _loadavg(self, t):
        n = len(self.kernel.tasks)
        return b"0.00 0.00 0.00 1/%d %d\n" % (n, max(self.kernel.tasks, default=1))

    def _stat(self, t):
        ncpu = os.cpu_count() or 1
        lines = [b"cpu  0 0 0 0 0 0 0 0 0 0"]
        lines += [b"cpu%d 0 0 0 0 0 0 0 0 0 0" % i for i in range(ncpu)]
        btime = int(time.time() - (time.monotonic() - self.boot))
        lines += [b"intr 0", b"ctxt 0", b"btime %d" % btime,
                  b"processes %d" % len(self.kernel.tasks),
                  b"procs_running 1", b"procs_blocked 0", b"softirq 0"]
        return b"\n".join(lines) + b"\n"

    @staticmethod
    def _vm_kb(task):
        total = sum(v.end - v.start for v in task.mm.vmas())
        return total // 1024

    @staticmethod
    def _signal_fields(task):
        """SigPnd/ShdPnd/SigBlk/SigIgn/SigCgt as 16-hex-digit masks, as proc(5) shows them."""
        def bits(pending):
            m = 0
            for signo, _info in pending:
                m |= 1 << (signo - 1)
            return m
        sig = getattr(task, "signals", None)
        actions = getattr(sig, "actions", {})
        ign = cgt = 0
        for signo, act in actions.items():
            if act[0] == 1:
                ign |= 1 << (signo - 1)
            elif act[0] != 0:
                cgt |= 1 << (signo - 1)
        group = getattr(task, "group", None)
        vals = (bits(getattr(task, "pending", ())), bits(getattr(group, "pending", ())),
                getattr(sig, "mask", 0), ign, cgt)
        names = (b"SigPnd", b"ShdPnd", b"SigBlk", b"SigIgn", b"SigCgt")
        return [(n, b"%016x" % v) for n, v in zip(names, vals)]

    def _status(self, task):
        c = task.creds
        vm = self._vm_kb(task)
        groups = b" ".join(b"%d" % g for g in getattr(c, "groups", ()))
        fields = [
            (b"Name", task.comm[:15]), (b"Umask", b"%04o" % task.fs.umask),
            (b"State", b"R (running)"), (b"Tgid", b"%d" % task.pid), (b"Ngid", b"0"),
            (b"Pid", b"%d" % task.tid), (b"PPid", b"%d" % task.ppid), (b"TracerPid", b"0"),
            (b"Uid", b"%d\t%d\t%d\t%d" % (c.uid, c.euid, c.suid, getattr(c, "fsuid", c.euid))),
            (b"Gid", b"%d\t%d\t%d\t%d" % (c.gid, c.egid, c.sgid, getattr(c, "fsgid", c.egid))),
            (b"FDSize", b"%d" % max(64, len(task.fdtable))), (b"Groups", groups),
            (b"VmPeak", b"%8d kB" % vm), (b"VmSize", b"%8d kB" % vm),
            (b"VmLck", b"       0 kB"), (b"VmPin", b"       0 kB"),
            (b"VmHWM", b"%8d kB" % vm), (b"VmRSS", b"%8d kB" % vm),
            (b"VmData", b"%8d kB" % vm), (b"VmStk", b"     132 kB"),
            (b"VmExe", b"       4 kB"), (b"VmLib", b"       0 kB"),
            (b"VmPTE", b"       4 kB"), (b"VmSwap", b"       0 kB"),
            (b"Threads", b"%d" % len(getattr(getattr(task, "group", None), "tasks", ()) or (1,))),
            (b"SigQ", b"0/127431"),
        ] + self._signal_fields(task) + [
            (b"CapInh", b"0" * 16), (b"CapPrm", b"000001ffffffffff"),
            (b"CapEff", b"000001ffffffffff"), (b"CapBnd", b"000001ffffffffff"),
            (b"CapAmb", b"0" * 16), (b"NoNewPrivs", b"0"), (b"Seccomp", b"0"),
            (b"Cpus_allowed", b"%x" % ((1 << (os.cpu_count() or 1)) - 1)),
            (b"Cpus_allowed_list", b"0-%d" % ((os.cpu_count() or 1) - 1)),
            (b"voluntary_ctxt_switches", b"0"), (b"nonvoluntary_ctxt_switches", b"0"),
        ]
        return b"".join(k + b":\t" + v + b"\n" for k, v in fields)

    def _pid_stat(self, task):
        vm = sum(v.end - v.start for v in task.mm.vmas())
        fields = [b"%d" % task.tid, b"(" + task.comm[:15] + b")", b"R", b"%d" % task.ppid,
                  b"1", b"1", b"0", b"-1", b"4194304"] + [b"0"] * 8
        fields += [b"20", b"0", b"1", b"0", b"0", b"%d" % vm, b"%d" % (vm // PAGE),
                   b"18446744073709551615"]
        fields += [b"0"] * (52 - len(fields))
        return b" ".join(fields) + b"\n"

    def _statm(self, task):
        pages = sum(v.end - v.start for v in task.mm.vmas()) // PAGE
        return b"%d %d 0 1 0 %d 0\n" % (pages, pages, pages)

    def _maps(self, task):
        out = []
        for v in task.mm.vmas():
            prot, flags = v.prot, v.flags
            perms = bytes([b"r"[0] if prot & PROT_READ else 45,
                           b"w"[0] if prot & PROT_WRITE else 45,
                           b"x"[0] if prot & PROT_EXEC else 45,
                           b"s"[0] if flags & MAP_SHARED else b"p"[0]])
            offset = getattr(v, "offset", getattr(v, "fileoff", 0)) or 0
            line = b"%08x-%08x %s %08x 00:00 0" % (v.start, v.end, perms, offset)
            name = v.name or b""
            if name:
                line = line.ljust(73) + name
            out.append(line + b"\n")
        return b"".join(out)

    def _mount_list(self):
        if self.vfs is None:
            return []
        out = []
        for m in self.vfs.mounts.mounts():
            path = b"/" if m.parent is None else vd_path(VDentry(m.parent, m.mountpoint))
            out.append((m, path))
        return out

    def _mounts(self):
        return b"".join(b"%s %s %s %s 0 0\n" % (m.source, path, m.fs.name, m.options)
                        for m, path in self._mount_list())

    def _mountinfo(self):
        lines = []
        for m, path in self._mount_list():
            parent = m.parent.id if m.parent is not None else m.id
            lines.append(b"%d %d 0:%d / %s %s - %s %s %s\n" % (
                m.id, parent, m.fs.dev, path, m.options, m.fs.name, m.source, m.options))
        return b"".join(lines)


_LIMITS = (b"Limit                     Soft Limit           Hard Limit           Units     \n"
           b"Max open files            1024                 1024                 files     \n")


def _uuid(b):
    h = b.hex().encode()
    return b"%s-%s-%s-%s-%s\n" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


class ProcInode(Inode):
    """Generated inodes: attributes are fixed, nothing can be created.
    Linux answers creation in /proc with ENOENT and removal with EPERM."""

    def __init__(self, fs, key, mode):
        super().__init__(fs, fs.ino(key), mode)
        self.key = key

    def setattr(self, **attrs):
        raise SyscallError(errno.EPERM)

    def _no_new(self, *args):
        raise SyscallError(errno.ENOENT if self.is_dir() else errno.ENOTDIR)

    def _no_change(self, *args):
        raise SyscallError(errno.EPERM if self.is_dir() else errno.ENOTDIR)

    create = mkdir = symlink = mknod = link = _no_new
    unlink = rmdir = rename = _no_change


class ProcDir(ProcInode):
    def __init__(self, fs, key, children):
        super().__init__(fs, key, S_IFDIR | 0o555)
        self._children = children

    def lookup(self, name):
        factory = self._children().get(name)
        if factory is None:
            raise SyscallError(errno.ENOENT)
        return factory()

    def readdir(self):
        out = []
        for name, factory in self._children().items():
            inode = factory()
            out.append((name, inode.ino, inode.dtype()))
        return out

    def is_empty_dir(self):
        return not self._children()


class ProcFile(ProcInode):
    def __init__(self, fs, key, gen):
        super().__init__(fs, key, S_IFREG | 0o444)
        self.gen = gen

    def open(self, t, vd, flags):
        return ProcFileDescription(vd, flags, self.gen(t))

    def read_at(self, offset, n):
        return b""


class ProcFileDescription(FileDescription):
    """An open procfs file: reads come from the snapshot taken at open."""

    def __init__(self, vd, flags, data):
        super().__init__(vd, flags)
        self.data = data

    def pread(self, count, offset):
        self.check_readable()
        if offset < 0:
            raise SyscallError(errno.EINVAL)
        return self.data[offset:offset + count]

    def pwrite(self, data, offset):
        """N.B. no procfs file is writable yet; Linux's read-only ones give EIO."""
        self.check_writable()
        raise SyscallError(errno.EIO)

    def lseek(self, offset, whence):
        if whence == 2:     # SEEK_END: procfs files have no size
            raise SyscallError(errno.EINVAL)
        return super().lseek(offset, whence)


class ProcLink(ProcInode):
    """A symlink whose target is computed for the reader `t`: bytes, or a
    VDentry / FileDescription (a magic link)."""

    def __init__(self, fs, key, target, mode=0o777):
        super().__init__(fs, key, S_IFLNK | mode)
        self._target = target

    def get_link(self, t):
        return self._target(t)

    def readlink(self, t):
        target = self._target(t)
        if isinstance(target, bytes):
            return target
        if isinstance(target, VDentry):
            return vd_path(target)
        return target.path()
