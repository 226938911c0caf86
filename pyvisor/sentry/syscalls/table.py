"""The syscall table: every x86-64 Linux system call, its handler, and how
much of it the Sentry supports. The one place to find any call.

Each row is written one way, in number order:

    Supported(name, handler)          does what Linux does (man-page notes in
                                      the handler's docstring)
    Partial(name, handler, note)      serves part of the call; the note says
                                      what is missing and what it answers
    Unimplemented(name, note)         ENOSYS, and the note says why

A handler is ``handler(task, a0, ..., a5) -> int`` (a5 and beyond as
``*_``) and raises SyscallError(errno) to fail; the area modules beside this
one hold them (fs, mm, process, signal, ...). ``build_table()`` turns the rows
into the ``SyscallTable`` that start-up (sentry/boot.py) hands to the kernel,
which dispatches by number and reads names and notes from it (--strace, the
--debug line for an unimplemented call). docs/syscalls.md is generated from
the rows (tools/gen_syscalls_doc.py); tests/sentry/test_syscall_table.py checks
that every number in pyvisor.abi.numbers has exactly one row and that the
page is current.
"""

from pyvisor.abi import name_of, numbers
from pyvisor.fields import FrozenFields
from pyvisor.sentry.syscalls import (creds, eventfd, fs, futex, inotify, misc, mm, net, poll,
                                     process, sched, signal, signalfd, splice, time, timer, xattr)

SUPPORTED, PARTIAL, UNIMPLEMENTED = "supported", "partial", "unimplemented"
LEVELS = (SUPPORTED, PARTIAL, UNIMPLEMENTED)
SIZE = 512                         # numbers at and above this give ENOSYS unlisted


class Syscall(FrozenFields):
    """One row: number, name, handler (None when unimplemented), level, note."""

    __slots__ = ("number", "name", "handler", "level", "note")

    def __init__(self, name, handler, level, note):
        self._set(number=getattr(numbers, "NR_" + name), name=name, handler=handler,
                  level=level, note=note)

    def _check(self):
        if self.level not in LEVELS:
            raise ValueError("%s: unknown level %r" % (self.name, self.level))
        if (self.handler is None) != (self.level == UNIMPLEMENTED):
            raise ValueError("%s: a handler exactly when implemented" % self.name)
        if self.level != SUPPORTED and not self.note:
            raise ValueError("%s: a %s call needs a note" % (self.name, self.level))


def Supported(name, handler):
    return Syscall(name, handler, SUPPORTED, "")


def Partial(name, handler, note):
    return Syscall(name, handler, PARTIAL, note)


def Unimplemented(name, note):
    return Syscall(name, None, UNIMPLEMENTED, note)


ROWS = (
    Supported("read", fs.sys_read),
    Supported("write", fs.sys_write),
    Partial("open", fs.sys_open, "O_TMPFILE on tmpfs and the overlay only (EOPNOTSUPP elsewhere)"),
    Supported("close", fs.sys_close),
    Supported("stat", fs.sys_stat),
    Supported("fstat", fs.sys_fstat),
    Supported("lstat", fs.sys_lstat),
    Supported("poll", poll.sys_poll),
    Supported("lseek", fs.sys_lseek),
    Supported("mmap", mm.sys_mmap),
    Supported("mprotect", mm.sys_mprotect),
    Supported("munmap", mm.sys_munmap),
    Supported("brk", mm.sys_brk),
    Supported("rt_sigaction", signal.sys_rt_sigaction),
    Supported("rt_sigprocmask", signal.sys_rt_sigprocmask),
    Supported("rt_sigreturn", signal.sys_rt_sigreturn),
    Partial("ioctl", fs.sys_ioctl,
            "FIOCLEX, FIONCLEX, FIONBIO, FIOASYNC (ignored), FIONREAD, then each file's own (terminals); others ENOTTY"),
    Supported("pread64", fs.sys_pread64),
    Supported("pwrite64", fs.sys_pwrite64),
    Supported("readv", fs.sys_readv),
    Supported("writev", fs.sys_writev),
    Supported("access", fs.sys_access),
    Supported("pipe", fs.sys_pipe),
    Supported("select", poll.sys_select),
    Supported("sched_yield", sched.sys_sched_yield),
    Supported("mremap", mm.sys_mremap),
    Supported("msync", mm.sys_msync),
    Unimplemented("mincore", "not implemented"),
    Supported("madvise", mm.sys_madvise),
    Unimplemented("shmget", "System V IPC is not implemented"),
    Unimplemented("shmat", "System V IPC is not implemented"),
    Unimplemented("shmctl", "System V IPC is not implemented"),
    Supported("dup", fs.sys_dup),
    Supported("dup2", fs.sys_dup2),
    Supported("pause", signal.sys_pause),
    Supported("nanosleep", time.sys_nanosleep),
    Supported("getitimer", timer.sys_getitimer),
    Supported("alarm", timer.sys_alarm),
    Supported("setitimer", timer.sys_setitimer),
    Supported("getpid", process.sys_getpid),
    Supported("sendfile", fs.sys_sendfile),
    Partial("socket", net.sys_socket,
            "AF_UNIX; AF_INET TCP and UDP on netstack; other families (AF_INET6 too) give EAFNOSUPPORT"),
    Supported("connect", net.sys_connect),
    Supported("accept", net.sys_accept),
    Supported("sendto", net.sys_sendto),
    Supported("recvfrom", net.sys_recvfrom),
    Supported("sendmsg", net.sys_sendmsg),
    Supported("recvmsg", net.sys_recvmsg),
    Supported("shutdown", net.sys_shutdown),
    Supported("bind", net.sys_bind),
    Supported("listen", net.sys_listen),
    Supported("getsockname", net.sys_getsockname),
    Supported("getpeername", net.sys_getpeername),
    Supported("socketpair", net.sys_socketpair),
    Partial("setsockopt", net.sys_setsockopt,
            "SOL_SOCKET and the options netstack has; others ENOPROTOOPT"),
    Partial("getsockopt", net.sys_getsockopt,
            "SOL_SOCKET and the options netstack has; others ENOPROTOOPT"),
    Supported("clone", process.sys_clone),
    Supported("fork", process.sys_fork),
    Supported("vfork", process.sys_vfork),
    Supported("execve", process.sys_execve),
    Supported("exit", process.sys_exit),
    Supported("wait4", process.sys_wait4),
    Supported("kill", signal.sys_kill),
    Supported("uname", misc.sys_uname),
    Unimplemented("semget", "System V IPC is not implemented"),
    Unimplemented("semop", "System V IPC is not implemented"),
    Unimplemented("semctl", "System V IPC is not implemented"),
    Unimplemented("shmdt", "System V IPC is not implemented"),
    Unimplemented("msgget", "System V IPC is not implemented"),
    Unimplemented("msgsnd", "System V IPC is not implemented"),
    Unimplemented("msgrcv", "System V IPC is not implemented"),
    Unimplemented("msgctl", "System V IPC is not implemented"),
    Partial("fcntl", fs.sys_fcntl,
            "F_SETOWN/F_GETOWN accepted without SIGIO; F_NOTIFY never signals; leases give EINVAL"),
    Supported("flock", fs.sys_flock),
    Supported("fsync", fs.sys_fsync),
    Supported("fdatasync", fs.sys_fsync),
    Supported("truncate", fs.sys_truncate),
    Supported("ftruncate", fs.sys_ftruncate),
    Supported("getdents", fs.sys_getdents),
    Supported("getcwd", fs.sys_getcwd),
    Supported("chdir", fs.sys_chdir),
    Supported("fchdir", fs.sys_fchdir),
    Supported("rename", fs.sys_rename),
    Supported("mkdir", fs.sys_mkdir),
    Supported("rmdir", fs.sys_rmdir),
    Supported("creat", fs.sys_creat),
    Supported("link", fs.sys_link),
    Supported("unlink", fs.sys_unlink),
    Supported("symlink", fs.sys_symlink),
    Supported("readlink", fs.sys_readlink),
    Supported("chmod", fs.sys_chmod),
    Supported("fchmod", fs.sys_fchmod),
    Supported("chown", fs.sys_chown),
    Supported("fchown", fs.sys_fchown),
    Supported("lchown", fs.sys_lchown),
    Supported("umask", fs.sys_umask),
    Supported("gettimeofday", time.sys_gettimeofday),
    Supported("getrlimit", misc.sys_getrlimit),
    Supported("getrusage", time.sys_getrusage),
    Supported("sysinfo", misc.sys_sysinfo),
    Supported("times", time.sys_times),
    Unimplemented("ptrace", "tracing inside the sandbox is not implemented"),
    Supported("getuid", creds.sys_getuid),
    Unimplemented("syslog", "host administration, never offered to a sandbox"),
    Supported("getgid", creds.sys_getgid),
    Supported("setuid", creds.sys_setuid),
    Supported("setgid", creds.sys_setgid),
    Supported("geteuid", creds.sys_geteuid),
    Supported("getegid", creds.sys_getegid),
    Supported("setpgid", process.sys_setpgid),
    Supported("getppid", process.sys_getppid),
    Supported("getpgrp", process.sys_getpgrp),
    Supported("setsid", process.sys_setsid),
    Supported("setreuid", creds.sys_setreuid),
    Supported("setregid", creds.sys_setregid),
    Supported("getgroups", creds.sys_getgroups),
    Supported("setgroups", creds.sys_setgroups),
    Supported("setresuid", creds.sys_setresuid),
    Supported("getresuid", creds.sys_getresuid),
    Supported("setresgid", creds.sys_setresgid),
    Supported("getresgid", creds.sys_getresgid),
    Supported("getpgid", process.sys_getpgid),
    Supported("setfsuid", creds.sys_setfsuid),
    Supported("setfsgid", creds.sys_setfsgid),
    Supported("getsid", process.sys_getsid),
    Supported("capget", creds.sys_capget),
    Supported("capset", creds.sys_capset),
    Supported("rt_sigpending", signal.sys_rt_sigpending),
    Supported("rt_sigtimedwait", signal.sys_rt_sigtimedwait),
    Supported("rt_sigqueueinfo", signal.sys_rt_sigqueueinfo),
    Supported("rt_sigsuspend", signal.sys_rt_sigsuspend),
    Supported("sigaltstack", signal.sys_sigaltstack),
    Supported("utime", fs.sys_utime),
    Supported("mknod", fs.sys_mknod),
    Unimplemented("uselib", "obsolete: Linux x86-64 answers ENOSYS too"),
    Supported("personality", misc.sys_personality),
    Unimplemented("ustat", "not implemented (deprecated; statfs(2) instead)"),
    Supported("statfs", fs.sys_statfs),
    Supported("fstatfs", fs.sys_fstatfs),
    Unimplemented("sysfs", "obsolete: Linux x86-64 answers ENOSYS too"),
    Supported("getpriority", sched.sys_getpriority),
    Partial("setpriority", sched.sys_setpriority, "recorded, not applied"),
    Partial("sched_setparam", sched.sys_sched_setparam, "recorded, not applied"),
    Supported("sched_getparam", sched.sys_sched_getparam),
    Partial("sched_setscheduler", sched.sys_sched_setscheduler, "recorded, not applied"),
    Supported("sched_getscheduler", sched.sys_sched_getscheduler),
    Supported("sched_get_priority_max", sched.sys_sched_get_priority_max),
    Supported("sched_get_priority_min", sched.sys_sched_get_priority_min),
    Supported("sched_rr_get_interval", sched.sys_sched_rr_get_interval),
    Partial("mlock", mm.sys_ok, "accepted without checking its arguments: memory never swaps"),
    Partial("munlock", mm.sys_ok, "accepted without checking its arguments: memory never swaps"),
    Partial("mlockall", mm.sys_ok, "accepted without checking its arguments: memory never swaps"),
    Partial("munlockall", mm.sys_ok, "accepted without checking its arguments: memory never swaps"),
    Unimplemented("vhangup", "host administration, never offered to a sandbox"),
    Unimplemented("modify_ldt", "32-bit descriptor tables are not offered (the 32-bit ABI is refused)"),
    Unimplemented("pivot_root", "mounts are made on the command line, not from inside"),
    Unimplemented("_sysctl", "obsolete: Linux x86-64 answers ENOSYS too"),
    Partial("prctl", process.sys_prctl,
            "names, PDEATHSIG, DUMPABLE, NO_NEW_PRIVS, CHILD_SUBREAPER, CAPBSET_READ and a few more; others EINVAL"),
    Supported("arch_prctl", process.sys_arch_prctl),
    Unimplemented("adjtimex", "host administration, never offered to a sandbox"),
    Supported("setrlimit", misc.sys_setrlimit),
    Supported("chroot", fs.sys_chroot),
    Supported("sync", fs.sys_sync),
    Unimplemented("acct", "host administration, never offered to a sandbox"),
    Unimplemented("settimeofday", "host administration, never offered to a sandbox"),
    Unimplemented("mount", "mounts are made on the command line, not from inside"),
    Unimplemented("umount2", "mounts are made on the command line, not from inside"),
    Unimplemented("swapon", "host administration, never offered to a sandbox"),
    Unimplemented("swapoff", "host administration, never offered to a sandbox"),
    Unimplemented("reboot", "host administration, never offered to a sandbox"),
    Supported("sethostname", misc.sys_sethostname),
    Supported("setdomainname", misc.sys_setdomainname),
    Unimplemented("iopl", "host administration, never offered to a sandbox"),
    Unimplemented("ioperm", "host administration, never offered to a sandbox"),
    Unimplemented("create_module", "obsolete: Linux x86-64 answers ENOSYS too"),
    Unimplemented("init_module", "host administration, never offered to a sandbox"),
    Unimplemented("delete_module", "host administration, never offered to a sandbox"),
    Unimplemented("get_kernel_syms", "obsolete: Linux x86-64 answers ENOSYS too"),
    Unimplemented("query_module", "obsolete: Linux x86-64 answers ENOSYS too"),
    Unimplemented("quotactl", "host administration, never offered to a sandbox"),
    Unimplemented("nfsservctl", "obsolete: Linux x86-64 answers ENOSYS too"),
    Unimplemented("getpmsg", "obsolete: Linux x86-64 answers ENOSYS too"),
    Unimplemented("putpmsg", "obsolete: Linux x86-64 answers ENOSYS too"),
    Unimplemented("afs_syscall", "obsolete: Linux x86-64 answers ENOSYS too"),
    Unimplemented("tuxcall", "obsolete: Linux x86-64 answers ENOSYS too"),
    Unimplemented("security", "obsolete: Linux x86-64 answers ENOSYS too"),
    Supported("gettid", process.sys_gettid),
    Supported("readahead", fs.sys_readahead),
    Partial("setxattr", xattr.sys_setxattr, "user.* on volumes (-v); elsewhere EOPNOTSUPP"),
    Partial("lsetxattr", xattr.sys_lsetxattr, "user.* on volumes (-v); elsewhere EOPNOTSUPP"),
    Partial("fsetxattr", xattr.sys_fsetxattr, "user.* on volumes (-v); elsewhere EOPNOTSUPP"),
    Partial("getxattr", xattr.sys_getxattr, "user.* on volumes (-v); elsewhere ENODATA"),
    Partial("lgetxattr", xattr.sys_lgetxattr, "user.* on volumes (-v); elsewhere ENODATA"),
    Partial("fgetxattr", xattr.sys_fgetxattr, "user.* on volumes (-v); elsewhere ENODATA"),
    Partial("listxattr", xattr.sys_listxattr, "user.* on volumes (-v); elsewhere empty"),
    Partial("llistxattr", xattr.sys_llistxattr, "user.* on volumes (-v); elsewhere empty"),
    Partial("flistxattr", xattr.sys_flistxattr, "user.* on volumes (-v); elsewhere empty"),
    Partial("removexattr", xattr.sys_removexattr, "user.* on volumes (-v); elsewhere ENODATA"),
    Partial("lremovexattr", xattr.sys_lremovexattr, "user.* on volumes (-v); elsewhere ENODATA"),
    Partial("fremovexattr", xattr.sys_fremovexattr, "user.* on volumes (-v); elsewhere ENODATA"),
    Supported("tkill", signal.sys_tkill),
    Supported("time", time.sys_time),
    Partial("futex", futex.sys_futex, "PI futexes do not boost priorities"),
    Partial("sched_setaffinity", sched.sys_sched_setaffinity, "the mask is checked, not applied"),
    Partial("sched_getaffinity", sched.sys_sched_getaffinity, "every host CPU, whatever was set"),
    Unimplemented("set_thread_area", "32-bit descriptor tables are not offered (the 32-bit ABI is refused)"),
    Unimplemented("io_setup", "Linux native AIO is not implemented"),
    Unimplemented("io_destroy", "Linux native AIO is not implemented"),
    Unimplemented("io_getevents", "Linux native AIO is not implemented"),
    Unimplemented("io_submit", "Linux native AIO is not implemented"),
    Unimplemented("io_cancel", "Linux native AIO is not implemented"),
    Unimplemented("get_thread_area", "32-bit descriptor tables are not offered (the 32-bit ABI is refused)"),
    Unimplemented("lookup_dcookie", "host administration, never offered to a sandbox"),
    Supported("epoll_create", poll.sys_epoll_create),
    Unimplemented("epoll_ctl_old", "obsolete: Linux x86-64 answers ENOSYS too"),
    Unimplemented("epoll_wait_old", "obsolete: Linux x86-64 answers ENOSYS too"),
    Unimplemented("remap_file_pages", "not implemented (deprecated in Linux)"),
    Supported("getdents64", fs.sys_getdents64),
    Supported("set_tid_address", process.sys_set_tid_address),
    Unimplemented("restart_syscall", "not used: an interrupted sleep restarts with the time it has left"),
    Unimplemented("semtimedop", "System V IPC is not implemented"),
    Supported("fadvise64", fs.sys_fadvise64),
    Supported("timer_create", timer.sys_timer_create),
    Supported("timer_settime", timer.sys_timer_settime),
    Supported("timer_gettime", timer.sys_timer_gettime),
    Supported("timer_getoverrun", timer.sys_timer_getoverrun),
    Supported("timer_delete", timer.sys_timer_delete),
    Unimplemented("clock_settime", "host administration, never offered to a sandbox"),
    Partial("clock_gettime", time.sys_clock_gettime, "CPU-time clocks are approximate"),
    Supported("clock_getres", time.sys_clock_getres),
    Supported("clock_nanosleep", time.sys_clock_nanosleep),
    Supported("exit_group", process.sys_exit_group),
    Supported("epoll_wait", poll.sys_epoll_wait),
    Supported("epoll_ctl", poll.sys_epoll_ctl),
    Supported("tgkill", signal.sys_tgkill),
    Supported("utimes", fs.sys_utimes),
    Unimplemented("vserver", "obsolete: Linux x86-64 answers ENOSYS too"),
    Unimplemented("mbind", "NUMA memory policy is not implemented"),
    Unimplemented("set_mempolicy", "NUMA memory policy is not implemented"),
    Unimplemented("get_mempolicy", "NUMA memory policy is not implemented"),
    Unimplemented("mq_open", "POSIX message queues are not implemented"),
    Unimplemented("mq_unlink", "POSIX message queues are not implemented"),
    Unimplemented("mq_timedsend", "POSIX message queues are not implemented"),
    Unimplemented("mq_timedreceive", "POSIX message queues are not implemented"),
    Unimplemented("mq_notify", "POSIX message queues are not implemented"),
    Unimplemented("mq_getsetattr", "POSIX message queues are not implemented"),
    Unimplemented("kexec_load", "host administration, never offered to a sandbox"),
    Supported("waitid", process.sys_waitid),
    Unimplemented("add_key", "kernel keyrings are not implemented"),
    Unimplemented("request_key", "kernel keyrings are not implemented"),
    Unimplemented("keyctl", "kernel keyrings are not implemented"),
    Partial("ioprio_set", sched.sys_ioprio_set, "accepted, not applied"),
    Supported("ioprio_get", sched.sys_ioprio_get),
    Partial("inotify_init", inotify.sys_inotify_init,
            "events for changes made inside the sandbox; host changes under a shared volume are not seen"),
    Partial("inotify_add_watch", inotify.sys_inotify_add_watch,
            "events for changes made inside the sandbox; host changes under a shared volume are not seen"),
    Partial("inotify_rm_watch", inotify.sys_inotify_rm_watch,
            "events for changes made inside the sandbox; host changes under a shared volume are not seen"),
    Unimplemented("migrate_pages", "NUMA memory policy is not implemented"),
    Partial("openat", fs.sys_openat, "O_TMPFILE on tmpfs and the overlay only (EOPNOTSUPP elsewhere)"),
    Supported("mkdirat", fs.sys_mkdirat),
    Supported("mknodat", fs.sys_mknodat),
    Supported("fchownat", fs.sys_fchownat),
    Supported("futimesat", fs.sys_futimesat),
    Supported("newfstatat", fs.sys_newfstatat),
    Supported("unlinkat", fs.sys_unlinkat),
    Supported("renameat", fs.sys_renameat),
    Supported("linkat", fs.sys_linkat),
    Supported("symlinkat", fs.sys_symlinkat),
    Supported("readlinkat", fs.sys_readlinkat),
    Supported("fchmodat", fs.sys_fchmodat),
    Supported("faccessat", fs.sys_faccessat),
    Supported("pselect6", poll.sys_pselect6),
    Supported("ppoll", poll.sys_ppoll),
    Unimplemented("unshare", "namespaces inside the sandbox are not implemented"),
    Supported("set_robust_list", process.sys_set_robust_list),
    Supported("get_robust_list", process.sys_get_robust_list),
    Partial("splice", splice.sys_splice,
            "bytes are copied, not pages moved (SPLICE_F_MOVE and SPLICE_F_GIFT are hints)"),
    Supported("tee", splice.sys_tee),
    Supported("sync_file_range", fs.sys_sync_file_range),
    Partial("vmsplice", splice.sys_vmsplice,
            "copies the bytes; a pipe holds bytes, not page-sized buffers"),
    Unimplemented("move_pages", "NUMA memory policy is not implemented"),
    Supported("utimensat", fs.sys_utimensat),
    Supported("epoll_pwait", poll.sys_epoll_pwait),
    Supported("signalfd", signalfd.sys_signalfd),
    Supported("timerfd_create", timer.sys_timerfd_create),
    Supported("eventfd", eventfd.sys_eventfd),
    Partial("fallocate", fs.sys_fallocate, "mode 0 only; other modes give EOPNOTSUPP"),
    Supported("timerfd_settime", timer.sys_timerfd_settime),
    Supported("timerfd_gettime", timer.sys_timerfd_gettime),
    Supported("accept4", net.sys_accept4),
    Supported("signalfd4", signalfd.sys_signalfd4),
    Supported("eventfd2", eventfd.sys_eventfd2),
    Supported("epoll_create1", poll.sys_epoll_create1),
    Supported("dup3", fs.sys_dup3),
    Supported("pipe2", fs.sys_pipe2),
    Partial("inotify_init1", inotify.sys_inotify_init1,
            "events for changes made inside the sandbox; host changes under a shared volume are not seen"),
    Supported("preadv", fs.sys_preadv),
    Supported("pwritev", fs.sys_pwritev),
    Supported("rt_tgsigqueueinfo", signal.sys_rt_tgsigqueueinfo),
    Unimplemented("perf_event_open", "host administration, never offered to a sandbox"),
    Supported("recvmmsg", net.sys_recvmmsg),
    Unimplemented("fanotify_init", "file change notification is not implemented"),
    Unimplemented("fanotify_mark", "file change notification is not implemented"),
    Supported("prlimit64", misc.sys_prlimit64),
    Unimplemented("name_to_handle_at", "file handles are not offered"),
    Unimplemented("open_by_handle_at", "file handles are not offered"),
    Unimplemented("clock_adjtime", "host administration, never offered to a sandbox"),
    Supported("syncfs", fs.sys_syncfs),
    Supported("sendmmsg", net.sys_sendmmsg),
    Unimplemented("setns", "namespaces inside the sandbox are not implemented"),
    Partial("getcpu", sched.sys_getcpu, "always CPU 0, node 0"),
    Unimplemented("process_vm_readv", "another process's memory is not reachable"),
    Unimplemented("process_vm_writev", "another process's memory is not reachable"),
    Unimplemented("kcmp", "another process's memory is not reachable"),
    Unimplemented("finit_module", "host administration, never offered to a sandbox"),
    Unimplemented("sched_setattr", "not implemented"),
    Unimplemented("sched_getattr", "not implemented"),
    Partial("renameat2", fs.sys_renameat2,
            "RENAME_NOREPLACE; RENAME_EXCHANGE and RENAME_WHITEOUT give EINVAL"),
    Unimplemented("seccomp", "seccomp filters inside the sandbox are not implemented"),
    Supported("getrandom", misc.sys_getrandom),
    Partial("memfd_create", fs.sys_memfd_create,
            "MFD_HUGETLB gives EINVAL (no huge pages); a mapping made before the file grows past its extent keeps the old pages"),
    Unimplemented("kexec_file_load", "host administration, never offered to a sandbox"),
    Unimplemented("bpf", "host administration, never offered to a sandbox"),
    Partial("execveat", process.sys_execveat,
            "AT_FDCWD or an absolute path; a path relative to another dirfd gives ENOSYS"),
    Unimplemented("userfaultfd", "not implemented"),
    Partial("membarrier", sched.sys_membarrier,
            "QUERY, GLOBAL and PRIVATE_EXPEDITED; no SYNC_CORE or RSEQ"),
    Unimplemented("mlock2", "not implemented"),
    Supported("copy_file_range", fs.sys_copy_file_range),
    Unimplemented("preadv2", "not implemented"),
    Unimplemented("pwritev2", "not implemented"),
    Unimplemented("pkey_mprotect", "memory protection keys are not offered"),
    Unimplemented("pkey_alloc", "memory protection keys are not offered"),
    Unimplemented("pkey_free", "memory protection keys are not offered"),
    Supported("statx", fs.sys_statx),
    Unimplemented("io_pgetevents", "Linux native AIO is not implemented"),
    Unimplemented("rseq", "restartable sequences are not offered; glibc falls back on ENOSYS"),
    Supported("pidfd_send_signal", signal.sys_pidfd_send_signal),
    Unimplemented("io_uring_setup", "io_uring is not offered (as in gVisor's default)"),
    Unimplemented("io_uring_enter", "io_uring is not offered (as in gVisor's default)"),
    Unimplemented("io_uring_register", "io_uring is not offered (as in gVisor's default)"),
    Unimplemented("open_tree", "mounts are made on the command line, not from inside"),
    Unimplemented("move_mount", "mounts are made on the command line, not from inside"),
    Unimplemented("fsopen", "mounts are made on the command line, not from inside"),
    Unimplemented("fsconfig", "mounts are made on the command line, not from inside"),
    Unimplemented("fsmount", "mounts are made on the command line, not from inside"),
    Unimplemented("fspick", "mounts are made on the command line, not from inside"),
    Supported("pidfd_open", process.sys_pidfd_open),
    Partial("clone3", process.sys_clone3, "the fields clone(2) has; set_tid and cgroup give EINVAL"),
    Supported("close_range", fs.sys_close_range),
    Unimplemented("openat2", "not implemented"),
    Supported("pidfd_getfd", process.sys_pidfd_getfd),
    Supported("faccessat2", fs.sys_faccessat2),
    Unimplemented("process_madvise", "another process's memory is not reachable"),
    Supported("epoll_pwait2", poll.sys_epoll_pwait2),
    Unimplemented("mount_setattr", "mounts are made on the command line, not from inside"),
    Unimplemented("quotactl_fd", "host administration, never offered to a sandbox"),
    Unimplemented("landlock_create_ruleset", "Landlock is not implemented"),
    Unimplemented("landlock_add_rule", "Landlock is not implemented"),
    Unimplemented("landlock_restrict_self", "Landlock is not implemented"),
    Unimplemented("memfd_secret", "not offered"),
    Unimplemented("process_mrelease", "another process's memory is not reachable"),
    Unimplemented("futex_waitv", "not implemented"),
    Unimplemented("set_mempolicy_home_node", "NUMA memory policy is not implemented"),)


class SyscallTable:
    """The rows by number, and the flat handler list the dispatcher indexes.

    ``handlers[nr]`` is the handler or None (ENOSYS) for every nr < SIZE;
    ``row(nr)`` is the Syscall or None for a number Linux does not define.
    """

    def __init__(self, rows):
        self.rows = {}
        self.handlers = [None] * SIZE
        for r in rows:
            if r.number in self.rows:
                raise ValueError("syscall %d listed twice (%s, %s)"
                                 % (r.number, self.rows[r.number].name, r.name))
            self.rows[r.number] = r
            self.handlers[r.number] = r.handler

    def row(self, number):
        return self.rows.get(number)

    def name(self, number):
        """The call's name, or syscall_NNN for a number Linux does not define."""
        r = self.rows.get(number)
        return r.name if r is not None else name_of(number)

    def unimplemented_reason(self, number):
        """Why ``number`` gives ENOSYS, for the --debug line."""
        r = self.rows.get(number)
        return r.note if r is not None else "not a Linux x86-64 system call"

    def count(self, level):
        return sum(1 for r in self.rows.values() if r.level == level)


def build_table(rows=ROWS):
    """The SyscallTable start-up hands to the kernel."""
    return SyscallTable(rows)
