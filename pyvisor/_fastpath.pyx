# cython: language_level=3
"""The Sentry's hot paths: the memory file, ptrace stops, register marshalling.

Everything here is mechanism; nothing here knows what a system call means.
The run loop (``Tracee.run``) answers in C the calls the Sentry gave it
fast answers for and hands the rest to a Python callable (both through
``platform/_common.pxd``'s ``serve_syscall``), so the common case costs one
``waitpid`` + ``GETREGS`` + ``SETREGS`` + ``PTRACE_SYSEMU`` per call, the
floor that ``../shared/limits/RESULTS.md`` measures.
"""

from libc.errno cimport errno, EINTR, EINVAL
from libc.string cimport memcpy, memset, memmove, memchr, strerror
from libc.stdint cimport uint64_t, int64_t, uint32_t
from posix.types cimport pid_t
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.buffer cimport PyBUF_WRITE, PyBUF_READ

from pyvisor.platform._common cimport (EXIT_GONE, EXIT_INTERRUPT, EXIT_SIGNAL, EXIT_SYSCALL,
                                      FastAnswers, serve_syscall, set_fast_answers,
                                      user_regs_struct)

cdef extern from "<sys/ptrace.h>" nogil:
    long ptrace(int request, pid_t pid, void *addr, void *data)

cdef extern from "<sys/wait.h>" nogil:
    pid_t waitpid(pid_t pid, int *status, int options)
    bint WIFSTOPPED(int)
    bint WIFEXITED(int)
    bint WIFSIGNALED(int)
    int WSTOPSIG(int)
    int WEXITSTATUS(int)
    int WTERMSIG(int)

cdef extern from "<unistd.h>" nogil:
    pid_t fork()
    int dup2(int, int)
    int setpgid(pid_t, pid_t)
    int execve(const char *path, char *const argv[], char *const envp[])
    int dup3(int, int, int)
    int fchdir(int)
    int chroot(const char *)
    void _exit(int)
    int ftruncate(int, long)
    int close(int)
    long syscall(long number, ...)

cdef extern from "<sys/mman.h>" nogil:
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void *addr, size_t length)
    int memfd_create(const char *name, unsigned int flags)
    void *MAP_FAILED

cdef extern from "<fcntl.h>" nogil:
    int fcntl(int, int, ...)
    enum: F_DUPFD
    int fallocate(int fd, int mode, long offset, long len)

cdef extern from "<sys/prctl.h>" nogil:
    int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5)

cdef extern from "<signal.h>" nogil:
    ctypedef struct siginfo_t:
        int si_signo
        int si_errno
        int si_code
        void *si_addr
    ctypedef struct sigset_t:
        pass
    int sigfillset(sigset_t *)
    int sigemptyset(sigset_t *)
    int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
    int SIG_SETMASK

cdef enum:
    PTRACE_TRACEME = 0
    PTRACE_CONT = 7
    PTRACE_KILL = 8
    PTRACE_GETREGS = 12
    PTRACE_SETREGS = 13
    PTRACE_GETFPREGS = 14
    PTRACE_SETFPREGS = 15
    PTRACE_SYSEMU = 31
    PTRACE_DETACH = 17
    PTRACE_SETOPTIONS = 0x4200
    PTRACE_GETSIGINFO = 0x4202
    PTRACE_SEIZE = 0x4206
    PTRACE_GET_SYSCALL_INFO = 0x420e
    PTRACE_INTERRUPT = 0x4207
    PTRACE_EVENT_STOP = 128
    PTRACE_O_TRACESYSGOOD = 1
    PTRACE_O_EXITKILL = 0x100000
    WALL = 0x40000000
    SIGTRAP = 5
    SIGKILL = 9
    SIGSTOP = 19
    SIGSYS = 31
    SYS_SECCOMP = 1
    PR_SET_PDEATHSIG = 1
    MFD_CLOEXEC = 1
    PROT_READ = 1
    PROT_WRITE = 2
    MAP_SHARED = 1
    MAP_NORESERVE = 0x4000
    FALLOC_FL_KEEP_SIZE = 1
    FALLOC_FL_PUNCH_HOLE = 2
    SYS_close_range = 436
    SYS_personality = 135
    ADDR_NO_RANDOMIZE = 0x0040000
    SYS_getpid = 39         # the probe's call (SYSEMU: the host never runs it)
    USER_CS = 0x33          # the 64-bit user code segment; compat mode runs in 0x23
    SYS_capset = 126
    SYS_execveat = 322
    O_CLOEXEC = 0x80000
    PR_SET_NO_NEW_PRIVS = 38
    PR_SET_SECUREBITS = 28
    PR_CAPBSET_DROP = 24
    SECBIT_NOROOT = 1
    SECBIT_NOROOT_LOCKED = 2
    _LINUX_CAPABILITY_VERSION_3 = 0x20080522

# Where the stub's copy of the memory file lives in every stub process, and
# the platform's control file (batches of edits) beside it.
cdef enum:
    STUB_FD = 63
    STUB_CTRL_FD = 62
    STUB_DIR_FD = 61
STUB_MEMFD = STUB_FD
STUB_CTRLFD = STUB_CTRL_FD

# The legacy vsyscall page: the kernel emulates calls to it without a ptrace
# stop; the stub's seccomp filter turns them into SIGSYS (seccomp.stub_rules).
cdef unsigned long long VSYSCALL_PAGE = 0xFFFFFFFFFF600000ULL
cdef unsigned int AUDIT_ARCH_X86_64 = 0xC000003E

# How a syscall stop tells the 64-bit `syscall` instruction from the 32-bit
# entries (int $0x80, sysenter, `syscall` in compat mode), which the Sentry
# never serves (ENOSYS, as gVisor). `syscall` puts the return address in rcx
# and rflags in r11, and the kernel saves both as they are, so at the stop
# rcx == rip and r11 == eflags; after int $0x80 they hold whatever the
# program had. Free: the registers are fetched anyway. A program that sets
# rcx and r11 so before int $0x80 gets the 64-bit call it could have made
# with `syscall`. A CPU with FRED does not write rcx/r11 on `syscall`:
# there (probed once, Tracee.probe_syscall_regs) each stop asks the kernel
# with PTRACE_GET_SYSCALL_INFO, whose arch field is exact.
cdef bint _arch_by_regs = 1

# The CPU's MXCSR_MASK (FXSAVE offset 28), read once from the first tracee.
cdef uint32_t _mxcsr_mask = 0

# Offsets of the stub's entry points from _start (platform/stub.S).
STUB_CLONE = 16
STUB_PAUSE = 0x18 + 16
STUB_BATCH = 64


cdef inline object _oserror(str what):
    cdef int e = errno
    return OSError(e, "%s: %s" % (what, strerror(e).decode()))


cdef class MemoryFile:
    """The one memfd that holds all application memory, mapped once here.

    Offsets are file offsets. The mapping is sparse: pages cost memory only
    once written, and ``punch`` gives them back.
    """
    cdef readonly int fd
    cdef readonly size_t size
    cdef char *base

    def __cinit__(self, size_t size):
        self.fd = memfd_create(b"pyvisor-memory", MFD_CLOEXEC)
        if self.fd < 0:
            raise _oserror("memfd_create")
        if ftruncate(self.fd, <long>size) != 0:
            raise _oserror("ftruncate(memory file)")
        cdef void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_NORESERVE, self.fd, 0)
        if p == MAP_FAILED:
            raise _oserror("mmap(memory file)")
        self.base = <char *>p
        self.size = size

    def __dealloc__(self):
        if self.base != NULL:
            munmap(self.base, self.size)
        if self.fd >= 0:
            close(self.fd)

    cdef inline int _check(self, size_t off, size_t n) except -1:
        if off > self.size or n > self.size - off:
            raise ValueError("memory file range out of bounds")
        return 0

    cpdef bytes read(self, size_t off, size_t n):
        self._check(off, n)
        return PyBytes_FromStringAndSize(self.base + off, n)

    cpdef write(self, size_t off, const unsigned char[::1] data):
        cdef size_t n = data.shape[0]
        self._check(off, n)
        if n:
            memcpy(self.base + off, &data[0], n)

    cpdef zero(self, size_t off, size_t n):
        self._check(off, n)
        memset(self.base + off, 0, n)

    cpdef copy(self, size_t dst, size_t src, size_t n):
        self._check(dst, n)
        self._check(src, n)
        memmove(self.base + dst, self.base + src, n)

    cpdef object cstr(self, size_t off, size_t n):
        """The bytes of [off, off+n) before the first NUL, or None if there is none."""
        self._check(off, n)
        cdef void *p = memchr(self.base + off, 0, n)
        if p == NULL:
            return None
        return PyBytes_FromStringAndSize(self.base + off, <char *>p - (self.base + off))

    def view(self, size_t off, size_t n):
        """A writable memoryview of [off, off+n): for preadv straight into app pages."""
        self._check(off, n)
        return PyMemoryView_FromMemory(self.base + off, n, PyBUF_WRITE)

    def punch(self, size_t off, size_t n):
        """Release the pages of [off, off+n); they read as zero afterwards."""
        self._check(off, n)
        if n and fallocate(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                           <long>off, <long>n) != 0:
            memset(self.base + off, 0, n)


def spawn_stub(bytes path, int memfd, int ctrlfd=-1, int dirfd=-1, int rootfd=-1):
    """Fork and exec the stub, traced by the calling thread; return its pid.

    The child keeps only the memory file (as fd STUB_MEMFD) and the control
    file (as fd STUB_CTRLFD, when ``ctrlfd`` >= 0), dies with its
    parent, and stops at its entry point (the exec SIGTRAP of PTRACE_TRACEME)
    before running any instruction. Only async-signal-safe calls happen
    between fork and exec. With ``rootfd`` >= 0 it chroots into that
    directory first, and ``path`` is then found relative to ``dirfd``
    (execveat), opened before. It holds no capability (see below).
    """
    cdef char *argv[2]
    cdef char *envp[1]
    cdef char *cpath = path
    cdef sigset_t all_sigs, old
    cdef pid_t pid
    cdef int status = 0
    cdef unsigned long cap
    cdef unsigned int caphdr[2]
    cdef unsigned int capdata[6]
    caphdr[0] = _LINUX_CAPABILITY_VERSION_3
    caphdr[1] = 0
    memset(capdata, 0, sizeof(capdata))
    argv[0] = cpath
    argv[1] = NULL
    envp[0] = NULL
    sigfillset(&all_sigs)
    pthread_sigmask(SIG_SETMASK, &all_sigs, &old)
    pid = fork()
    if pid == 0:
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
        # Its own process group: terminal signals go to the Sentry, which
        # decides what they mean for the sandbox.
        setpgid(0, 0)
        if rootfd >= 0 and (fchdir(rootfd) != 0 or chroot(".") != 0):
            _exit(123)
        # Move both out of the way first: either may already be 62 or 63
        # (dup2 onto itself would keep its close-on-exec flag, and one dup2
        # could close the other's source).
        memfd = fcntl(memfd, F_DUPFD, 100)
        if ctrlfd >= 0:
            ctrlfd = fcntl(ctrlfd, F_DUPFD, 100)
        if dirfd >= 0:
            dirfd = fcntl(dirfd, F_DUPFD, 100)
        if memfd < 0 or dup2(memfd, STUB_FD) < 0:
            _exit(126)
        if ctrlfd >= 0 and dup2(ctrlfd, STUB_CTRL_FD) < 0:
            _exit(126)
        # The directory of the binary, closed by the exec itself.
        if dirfd >= 0 and dup3(dirfd, STUB_DIR_FD, O_CLOEXEC) < 0:
            _exit(126)
        syscall(SYS_close_range, <unsigned int>0,
                <unsigned int>((STUB_DIR_FD if dirfd >= 0 else STUB_CTRL_FD) - 1), <unsigned int>0)
        if ctrlfd < 0:
            close(STUB_CTRL_FD)
        syscall(SYS_close_range, <unsigned int>(STUB_FD + 1), <unsigned int>0xFFFFFFFF, <unsigned int>0)
        if ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0:
            _exit(125)
        # The stub is linked 2 MiB below the top of the address space, and
        # exec places a randomised stack before it maps the binary: about
        # once in 8000 execs the stack would land there, and the exec fail
        # after its point of no return (SIGSEGV). Without randomisation the
        # stack sits at the very top, clear of it. (The Sentry unmaps the
        # stub's stack anyway; the application's layout is the Sentry's.)
        syscall(SYS_personality, <unsigned long>(syscall(SYS_personality, <unsigned long>0xFFFFFFFF)
                                                | ADDR_NO_RANDOMIZE))
        # No capabilities, and none from the exec. The Sentry, which drops
        # its own later, can then trace the stub and its clones without
        # CAP_SYS_PTRACE (confine.py). SECBIT_NOROOT first: an exec as uid 0
        # would otherwise compute every capability, and a "gain" clears
        # ADDR_NO_RANDOMIZE (even though no_new_privs then takes the gain
        # back). It needs CAP_SETPCAP; without it the caller has no
        # capabilities to gain, nor is it root.
        prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED, 0, 0, 0)
        for cap in range(64):       # the bounding set too; EINVAL past the last one
            if prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and errno == EINVAL:
                break
        if syscall(SYS_capset, caphdr, capdata) != 0 or prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            _exit(124)
        sigemptyset(&all_sigs)
        pthread_sigmask(SIG_SETMASK, &all_sigs, NULL)
        if dirfd >= 0:
            syscall(SYS_execveat, STUB_DIR_FD, cpath, argv, envp, 0)
        else:
            execve(cpath, argv, envp)
        _exit(127)
    pthread_sigmask(SIG_SETMASK, &old, NULL)
    if pid < 0:
        raise _oserror("fork(stub)")
    with nogil:
        while waitpid(pid, &status, WALL) < 0 and errno == EINTR:
            pass
    if not WIFSTOPPED(status) or WSTOPSIG(status) != SIGTRAP:
        raise OSError(0, "stub did not start (wait status 0x%x)" % status)
    if ptrace(PTRACE_SETOPTIONS, pid, NULL,
              <void *>(<long>(PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL))) != 0:
        raise _oserror("PTRACE_SETOPTIONS")
    return pid


def seize(int pid, unsigned long long inject_rip):
    """Trace a stub thread made by an injected clone (waiting in pause()); return its Tracee.

    The calling thread becomes its tracer; it is stopped when this returns.
    """
    cdef int status = 0
    cdef pid_t r
    if ptrace(PTRACE_SEIZE, pid, NULL,
              <void *>(<long>(PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL))) != 0:
        raise _oserror("PTRACE_SEIZE")
    if ptrace(PTRACE_INTERRUPT, pid, NULL, NULL) != 0:
        raise _oserror("PTRACE_INTERRUPT")
    with nogil:
        while True:
            r = waitpid(pid, &status, WALL)
            if r >= 0 or errno != EINTR:
                break
    if r < 0 or not WIFSTOPPED(status):
        raise OSError(0, "new stub %d did not stop (wait status 0x%x)" % (pid, status))
    return Tracee(pid, inject_rip)


cdef class Tracee:
    """One stopped-or-running host thread of a stub, driven by the thread that traces it.

    Registers are fetched once per stop into ``regs`` and stored once before
    the next resume, and only if something changed them.
    """
    cdef readonly int pid
    cdef user_regs_struct regs
    cdef bint dirty
    cdef readonly unsigned long long inject_rip
    cdef readonly int status          # last wait status when the tracee is gone
    cdef readonly int stop_signal     # the signal of the last signal stop
    cdef FastAnswers fast             # calls answered in C (set_fast_answers)
    cdef readonly unsigned long long syscalls
    cdef public bint need_flush       # edits are queued: call flusher() before resuming
    cdef readonly bint compat         # the last syscall stop was a 32-bit entry
    cdef public object flusher

    def __cinit__(self, int pid, unsigned long long inject_rip):
        self.pid = pid
        self.inject_rip = inject_rip
        if ptrace(PTRACE_GETREGS, pid, NULL, &self.regs) != 0:
            raise _oserror("PTRACE_GETREGS")

    cdef int _wait(self) except -1:
        cdef int status = 0
        cdef pid_t r
        with nogil:
            while True:
                r = waitpid(self.pid, &status, WALL)
                if r >= 0 or errno != EINTR:
                    break
        if r < 0:
            raise _oserror("waitpid(stub)")
        self.status = status
        return status

    cdef int _resume(self, int request, int sig) except -1:
        if self.dirty:
            if ptrace(PTRACE_SETREGS, self.pid, NULL, &self.regs) != 0:
                raise _oserror("PTRACE_SETREGS")
            self.dirty = 0
        if ptrace(request, self.pid, NULL, <void *><long>sig) != 0:
            raise _oserror("ptrace(resume)")
        return 0

    cdef int _stopped(self, int status) except -1:
        """Decode a wait status; fetch registers if the tracee is stopped."""
        if not WIFSTOPPED(status):
            return EXIT_GONE
        if ptrace(PTRACE_GETREGS, self.pid, NULL, &self.regs) != 0:
            raise _oserror("PTRACE_GETREGS")
        if WSTOPSIG(status) == (SIGTRAP | 0x80):
            self.syscalls += 1
            if _arch_by_regs:
                self.compat = (self.regs.rcx != self.regs.rip or self.regs.r11 != self.regs.eflags
                               or self.regs.cs != USER_CS)
            else:
                self.compat = self._syscall_arch() != AUDIT_ARCH_X86_64
            return EXIT_SYSCALL
        self.stop_signal = WSTOPSIG(status)
        if (status >> 16) == PTRACE_EVENT_STOP:
            return EXIT_INTERRUPT
        if self.stop_signal == SIGSYS and (status >> 16) == 0 and self._vsyscall():
            self.syscalls += 1
            self.compat = 0
            return EXIT_SYSCALL
        return EXIT_SIGNAL

    cdef unsigned int _syscall_arch(self) except? 0:
        """The AUDIT_ARCH of the syscall this tracee stopped in (PTRACE_GET_SYSCALL_INFO)."""
        cdef char info[88]
        if ptrace(PTRACE_GET_SYSCALL_INFO, self.pid, <void *>88, info) <= 0:
            raise _oserror("PTRACE_GET_SYSCALL_INFO")
        return (<unsigned int *>(info + 4))[0]

    def probe_syscall_regs(self):
        """Whether `syscall` writes rcx and r11 on this CPU (not with FRED); sets
        how every later stop tells a 64-bit call from a 32-bit one.

        One SYSEMU stop at the stub's own syscall instruction, with rcx and
        r11 zero before it; the registers are restored after.
        """
        global _arch_by_regs
        cdef user_regs_struct saved = self.regs
        cdef user_regs_struct r = self.regs
        r.rax = SYS_getpid
        r.orig_rax = <unsigned long long>-1
        r.rip = self.inject_rip
        r.rcx = 0
        r.r11 = 0
        if ptrace(PTRACE_SETREGS, self.pid, NULL, &r) != 0:
            raise _oserror("PTRACE_SETREGS(probe)")
        self.dirty = 0
        if self.switch(0) != EXIT_SYSCALL:
            raise OSError(0, "stub did not stop at its syscall (status 0x%x)" % self.status)
        _arch_by_regs = self.regs.rcx == self.inject_rip + 2 and self.regs.r11 == self.regs.eflags
        self.regs = saved
        self.dirty = 1
        return _arch_by_regs

    cdef bint _vsyscall(self) except -1:
        """Whether this SIGSYS stop is the stub filter's trap of a vsyscall.

        The kernel emulated the call's `ret` already (rip is the caller's
        return address, rsp popped) and rolled rax back to the call's number;
        the call is served as if made with `syscall`, and the signal is
        dropped by resuming without it.
        """
        cdef char buf[128]
        if ptrace(PTRACE_GETSIGINFO, self.pid, NULL, buf) != 0:
            raise _oserror("PTRACE_GETSIGINFO")
        if (<int *>(buf + 8))[0] != SYS_SECCOMP or (<unsigned int *>(buf + 28))[0] != AUDIT_ARCH_X86_64:
            return 0
        if ((<unsigned long long *>(buf + 16))[0] & ~0xFFFULL) != VSYSCALL_PAGE:
            return 0
        self.regs.orig_rax = <unsigned long long>(<int *>(buf + 24))[0]
        return 1

    cpdef int switch(self, int sig=0) except -1:
        """Run the application until its next syscall or signal stop."""
        self._resume(PTRACE_SYSEMU, sig)
        return self._stopped(self._wait())

    def set_fast_answers(self, dict answers):
        """``{number: rax}``: calls run() answers without dispatch (None: none)."""
        set_fast_answers(&self.fast, answers)

    def run(self, dispatch, int sig=0):
        """Run until a stop that dispatch does not absorb; return its exit kind.

        Each syscall stop is served by ``_common.serve_syscall``: from the
        fast answers, or by ``dispatch(nr, a0..a5)``, which returns rax.
        """
        cdef int kind
        while True:
            kind = self.switch(sig)
            sig = 0
            if kind != EXIT_SYSCALL:
                return kind
            serve_syscall(&self.regs, self.compat, &self.fast, dispatch)
            self.dirty = 1
            if self.need_flush:
                self.need_flush = 0
                self.flusher()

    def inject(self, long nr, unsigned long long a0=0, unsigned long long a1=0,
               unsigned long long a2=0, unsigned long long a3=0,
               unsigned long long a4=0, unsigned long long a5=0, int at=0):
        """Run one host syscall in the stub at its own ``syscall; int3``.

        Only address-space edits of the memory file are ever injected. The
        application's registers are saved and restored around it. Returns
        the raw result (negative errno on failure).
        """
        cdef user_regs_struct saved = self.regs
        cdef user_regs_struct r = self.regs
        cdef int status
        r.rax = nr
        r.orig_rax = <unsigned long long>-1
        r.rdi = a0
        r.rsi = a1
        r.rdx = a2
        r.r10 = a3
        r.r8 = a4
        r.r9 = a5
        r.rip = self.inject_rip + at
        if ptrace(PTRACE_SETREGS, self.pid, NULL, &r) != 0:
            raise _oserror("PTRACE_SETREGS(inject)")
        self.dirty = 0
        if ptrace(PTRACE_CONT, self.pid, NULL, NULL) != 0:
            raise _oserror("PTRACE_CONT(inject)")
        while True:
            status = self._wait()
            if not WIFSTOPPED(status):
                raise OSError(0, "stub died during an injected call (status 0x%x)" % status)
            if WSTOPSIG(status) == SIGTRAP and (status >> 16) == 0:
                break
            if WSTOPSIG(status) != SIGSTOP and (status >> 16) == 0:
                # A fault in our own stub code: retrying would spin.
                self.regs = saved
                self.dirty = 1
                raise OSError(0, "signal %d in an injected call at %#x" % (WSTOPSIG(status), r.rip))
            # Only the Sentry's own kicks (SIGSTOP) reach a stub; the task is in
            # the Sentry now and looks at its signals on the way back: drop it.
            if ptrace(PTRACE_CONT, self.pid, NULL, NULL) != 0:
                raise _oserror("PTRACE_CONT(inject)")
        if ptrace(PTRACE_GETREGS, self.pid, NULL, &r) != 0:
            raise _oserror("PTRACE_GETREGS(inject)")
        self.regs = saved
        self.dirty = 1
        return <long long>r.rax

    def exit_thread(self):
        """End this host thread (not a process leader) and reap it."""
        cdef int status
        self.regs.rax = 60
        self.regs.rdi = 0
        self.regs.orig_rax = <unsigned long long>-1
        self.regs.rip = self.inject_rip
        self.dirty = 1
        self._resume(PTRACE_CONT, 0)
        while True:
            status = self._wait()
            if not WIFSTOPPED(status):
                return status
            ptrace(PTRACE_CONT, self.pid, NULL, NULL)

    def park(self):
        """Detach this host thread into the stub's pause loop, where it stays until its process dies.

        For a process leader, whose exit would wait for the other threads.
        """
        self.regs.rip = self.inject_rip + STUB_PAUSE
        self.regs.orig_rax = <unsigned long long>-1
        if ptrace(PTRACE_SETREGS, self.pid, NULL, &self.regs) != 0:
            raise _oserror("PTRACE_SETREGS(park)")
        if ptrace(PTRACE_DETACH, self.pid, NULL, NULL) != 0:
            raise _oserror("PTRACE_DETACH(park)")

    def kick(self, int tgid):
        """From any thread: make the running tracee stop with SIGSTOP, which its tracer absorbs."""
        syscall(234, <int>tgid, <int>self.pid, <int>19)

    def siginfo(self):
        """(signo, code, addr) of the current signal stop."""
        cdef char buf[128]
        cdef siginfo_t *si = <siginfo_t *>buf
        if ptrace(PTRACE_GETSIGINFO, self.pid, NULL, buf) != 0:
            raise _oserror("PTRACE_GETSIGINFO")
        return si.si_signo, si.si_code, <unsigned long long>si.si_addr

    def kill(self):
        syscall(62, <int>self.pid, <int>SIGKILL)

    def reap(self):
        """Wait for the killed stub to go; return its wait status."""
        cdef int status = 0
        cdef pid_t r
        with nogil:
            r = waitpid(self.pid, &status, WALL)
        return status if r == self.pid else -1

    def get_fpregs(self):
        """The FPU/SSE state as the 512-byte FXSAVE image."""
        cdef char buf[512]
        if ptrace(PTRACE_GETFPREGS, self.pid, NULL, buf) != 0:
            raise _oserror("PTRACE_GETFPREGS")
        return PyBytes_FromStringAndSize(buf, 512)

    def set_fpregs(self, bytes image):
        """Load a 512-byte FXSAVE image (as rt_sigreturn does). An MXCSR
        with bits the CPU does not support is refused with ValueError, before
        the host refuses it (Linux's rt_sigreturn then raises SIGSEGV)."""
        global _mxcsr_mask
        cdef char buf[512]
        if len(image) != 512:
            raise ValueError("FXSAVE image must be 512 bytes")
        if _mxcsr_mask == 0:
            if ptrace(PTRACE_GETFPREGS, self.pid, NULL, buf) != 0:
                raise _oserror("PTRACE_GETFPREGS")
            _mxcsr_mask = (<uint32_t *>(buf + 28))[0] or 0xFFBF
        memcpy(buf, PyBytes_AS_STRING(image), 512)
        if (<uint32_t *>(buf + 24))[0] & ~_mxcsr_mask:
            raise ValueError("MXCSR has reserved bits set")
        (<uint32_t *>(buf + 28))[0] = _mxcsr_mask
        if ptrace(PTRACE_SETFPREGS, self.pid, NULL, buf) != 0:
            raise _oserror("PTRACE_SETFPREGS")

    # Register access for handlers that need more than the arguments.
    def get_regs(self):
        r = self.regs
        return dict(r)

    def set_regs(self, dict values):
        cdef user_regs_struct r = self.regs
        d = dict(r)
        d.update(values)
        self.regs = d
        self.dirty = 1

    property rax:
        def __get__(self): return self.regs.rax
        def __set__(self, unsigned long long v): self.regs.rax = v; self.dirty = 1
    property rip:
        def __get__(self): return self.regs.rip
        def __set__(self, unsigned long long v): self.regs.rip = v; self.dirty = 1
    property rsp:
        def __get__(self): return self.regs.rsp
        def __set__(self, unsigned long long v): self.regs.rsp = v; self.dirty = 1
    property fs_base:
        def __get__(self): return self.regs.fs_base
        def __set__(self, unsigned long long v): self.regs.fs_base = v; self.dirty = 1
    property orig_rax:
        def __get__(self): return self.regs.orig_rax
