# cython: language_level=3
"""What the platforms' C halves share: the register file, the exit kinds, and
the one place a syscall stop becomes a value in rax.

The ptrace platform's ``pyvisor/_fastpath.pyx`` and the KVM platform's
``pyvisor/_kvm.pyx`` both cimport it. Python gets the exit kinds from
``_common.pyx`` (its ``ExitKind``), which ``platform/base.py`` re-exports
as plain ints.

The platform knows no syscalls: it answers a call in C only when the Sentry
put the call's number in the context's fast-answer table (``FastAnswers``,
filled by ``set_fast_answers``), and hands every other call to the Sentry's
``dispatch``. docs/architecture.md ("Where dispatch lives") says why dispatch
is a Python callable today and how ``serve_syscall`` would change if it
moved into C.
"""

from libc.errno cimport ENOSYS

cdef extern from "<sys/user.h>" nogil:
    struct user_regs_struct:
        unsigned long long r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8
        unsigned long long rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs, eflags
        unsigned long long rsp, ss, fs_base, gs_base, ds, es, fs, gs

# Why a context's run (or one switch) returned. A def function returns one
# as ``<int>EXIT_...``: a bare member would become a Python ExitKind object.
cpdef enum ExitKind:
    EXIT_SYSCALL = 0        # a syscall stop (run loops serve these themselves)
    EXIT_SIGNAL = 1         # a signal or fault for the application (siginfo())
    EXIT_GONE = 2           # the host thread or the address space is gone
    EXIT_INTERRUPT = 3      # interrupt(), a group stop: nothing for the application

cdef enum:
    FAST_ANSWERS_MAX = 4


cdef struct FastAnswers:
    # Calls the Sentry lets the platform answer without dispatch: while
    # nr[i] is called, rax gets value[i]. n == 0: every call is dispatched.
    int n
    unsigned long long nr[FAST_ANSWERS_MAX]
    unsigned long long value[FAST_ANSWERS_MAX]


cdef inline int set_fast_answers(FastAnswers *fast, dict answers) except -1:
    """Fill ``fast`` from ``{number: value}`` (None or {} empties it)."""
    if answers is not None and len(answers) > FAST_ANSWERS_MAX:
        raise ValueError("at most %d fast answers" % FAST_ANSWERS_MAX)
    fast.n = 0
    if answers:
        for nr, value in answers.items():
            fast.nr[fast.n] = nr
            fast.value[fast.n] = value & 0xFFFFFFFFFFFFFFFF
            fast.n += 1
    return 0


cdef inline int serve_syscall(user_regs_struct *r, bint compat, FastAnswers *fast,
                              object dispatch) except -1:
    """Serve the call of this syscall stop: rax gets its result, orig_rax -1.

    A 32-bit entry (int $0x80, sysenter, compat-mode ``syscall``) gets
    ENOSYS: the dispatch contract is the 64-bit syscall ABI only (number in
    rax, arguments in rdi, rsi, rdx, r10, r8, r9). A number in ``fast`` is
    answered here; any other goes to ``dispatch(nr, a0..a5)``, which returns
    rax (-errno on failure). If dispatch raises, the registers stay as they
    were at the stop (orig_rax still the number) and the exception goes to
    the run loop's caller.
    """
    cdef unsigned long long nr = r.orig_rax
    cdef int i
    if compat:
        r.rax = <unsigned long long>-ENOSYS
    else:
        for i in range(fast.n):
            if fast.nr[i] == nr:
                r.rax = fast.value[i]
                break
        else:
            ret = dispatch(nr, r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9)
            r.rax = <unsigned long long>(ret & 0xFFFFFFFFFFFFFFFF)
    r.orig_rax = <unsigned long long>-1     # out of the syscall
    return 0
