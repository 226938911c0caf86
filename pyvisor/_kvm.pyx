# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""KVM ioctls, guest page tables and the KVM_RUN loop of the KVM platform.

What the guest looks like (docs/kvm.md has the why):

- Guest-physical memory is two slots. Slot 0 is the Sentry's memory file at
  GPA 0, so an application page at memory-file offset ``off`` is GPA
  ``off``. Slot 1 is ours, a private memfd at ``priv_gpa`` (above the memory
  file) that holds the GDT, IDT, TSSs, kernel stacks, the guest's code and
  every page table. The application can never map it: its page tables only
  point into slot 0, and slot 1 is mapped supervisor-only at KBASE.
- One page of GPA just above slot 1 has no slot: a store to it is a
  KVM_EXIT_MMIO. It is mapped user-writable at MMIO_VA.
- ``syscall`` jumps to LSTAR = TRAMP_VA, a user read-only page holding one
  store to MMIO_VA. On kvm_pvm the CPU stays at CPL3 (limits/RESULTS.md,
  K1); elsewhere it enters CPL0 with the same effect. Either way the store
  exits, the Sentry serves the call through the sync registers in kvm_run,
  and the guest goes back to rcx/r11.
- Every exception vector has a CPL0 stub that pushes a uniform frame
  (cr2, rax, vector, error code, the CPU's iret frame) on the vCPU's kernel
  stack (IST1, even for a fault at CPL0) and exits with an OUT to port 0x12. The VMM reads the frame from
  slot 1 directly and resumes the application with ``iretq`` at K_IRET.
- Page tables are edited in place, in host memory. A translation that
  changes is dropped on the host side: MADV_DONTNEED on our own mapping of
  the old frames makes KVM's MMU notifier forget every translation to them,
  on every vCPU, before madvise returns (see PageTables). The guest loads an
  address space's root as CR3 once, on its first entry (K_FLUSH_IRET, or
  the ud2 at TRAMP_FLUSH when the vCPU stopped at CPL3, whose #UD stub loads
  CR3 and irets to the resume slots).

Threading: a Vcpu is driven by one thread at a time; page-table edits are
serialised by the caller and may happen while other vCPUs run.
"""

from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport errno, EINTR, EAGAIN
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free

from libc.string cimport memcpy, memset, strerror
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from pyvisor.platform._common cimport (EXIT_INTERRUPT, EXIT_SIGNAL, EXIT_SYSCALL, FastAnswers,
                                      serve_syscall, set_fast_answers, user_regs_struct)

cdef extern from "<signal.h>" nogil:
    ctypedef struct sigset_t:
        pass
    struct sigaction_t "sigaction":
        void (*sa_handler)(int)
        sigset_t sa_mask
        int sa_flags
    int sigaction(int sig, const sigaction_t *act, sigaction_t *old)
    int sigemptyset(sigset_t *s)
    int SIGRTMIN

cdef extern from "<sys/syscall.h>" nogil:
    long syscall(long nr, ...)
    int SYS_gettid, SYS_tgkill

cdef extern from "<unistd.h>" nogil:
    int getpid()

cdef extern from "<sys/ioctl.h>" nogil:
    int ioctl(int fd, unsigned long req, ...)

cdef extern from "<fcntl.h>" nogil:
    int open(const char *path, int flags)
    int fcntl(int fd, int cmd, ...)
    int fallocate(int fd, int mode, long off, long length)
    int O_RDWR, O_CLOEXEC, F_DUPFD_CLOEXEC

cdef extern from "<unistd.h>" nogil:
    int close(int fd)
    int ftruncate(int fd, long length)

cdef extern from "<sys/mman.h>" nogil:
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long off)
    int munmap(void *addr, size_t length)
    int memfd_create(const char *name, unsigned int flags)
    int madvise(void *addr, size_t length, int advice)
    void *MAP_FAILED
    int PROT_READ, PROT_WRITE, MAP_SHARED, MAP_NORESERVE, MFD_CLOEXEC, MADV_REMOVE, MADV_DONTNEED

cdef extern from "<linux/kvm.h>" nogil:
    int KVM_GET_API_VERSION, KVM_CREATE_VM, KVM_CHECK_EXTENSION, KVM_GET_VCPU_MMAP_SIZE
    int KVM_CREATE_VCPU, KVM_SET_USER_MEMORY_REGION, KVM_RUN, KVM_GET_SREGS, KVM_SET_SREGS
    int KVM_CAP_SYNC_REGS, KVM_CAP_USER_MEMORY, KVM_CAP_IMMEDIATE_EXIT
    int KVM_EXIT_IO, KVM_EXIT_MMIO, KVM_EXIT_HLT, KVM_EXIT_SHUTDOWN, KVM_EXIT_FAIL_ENTRY
    int KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_INTR, KVM_EXIT_IO_OUT
    unsigned long long KVM_SYNC_X86_REGS

    struct kvm_userspace_memory_region:
        uint32_t slot
        uint32_t flags
        uint64_t guest_phys_addr
        uint64_t memory_size
        uint64_t userspace_addr

    struct kvm_regs:
        uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp
        uint64_t r8, r9, r10, r11, r12, r13, r14, r15, rip, rflags

    struct kvm_segment:
        uint64_t base
        uint32_t limit
        uint16_t selector
        uint8_t type, present, dpl, db, s, l, g, avl, unusable

    struct kvm_dtable:
        uint64_t base
        uint16_t limit

    struct kvm_sregs:
        kvm_segment cs, ds, es, fs, gs, ss, tr, ldt
        kvm_dtable gdt, idt
        uint64_t cr0, cr2, cr3, cr4, cr8, efer, apic_base

    # The anonymous structs of kvm_run's union, declared under names that
    # only ever appear as member types (never as C variable types).
    ctypedef struct _kvm_io "struct kvm_run_io_":
        uint8_t direction, size
        uint16_t port
        uint32_t count
        uint64_t data_offset
    ctypedef struct _kvm_mmio "struct kvm_run_mmio_":
        uint64_t phys_addr
        uint8_t data[8]
        uint32_t len
        uint8_t is_write
    ctypedef struct _kvm_internal "struct kvm_run_internal_":
        uint32_t suberror
        uint32_t ndata
        uint64_t data[16]
    ctypedef struct _kvm_fail "struct kvm_run_fail_":
        uint64_t hardware_entry_failure_reason
    ctypedef struct _kvm_sync_regs "struct kvm_sync_regs":
        kvm_regs regs
    ctypedef struct _kvm_s "struct kvm_run_s_":
        _kvm_sync_regs regs

    struct kvm_run:
        uint8_t immediate_exit
        uint32_t exit_reason
        _kvm_io io
        _kvm_mmio mmio
        _kvm_internal internal
        _kvm_fail fail_entry
        uint64_t kvm_valid_regs
        uint64_t kvm_dirty_regs
        _kvm_s s

# Flexible-array ioctls are simplest in C.
cdef extern from *:
    """
    #include <linux/kvm.h>
    #include <sys/ioctl.h>
    static int pv_set_msrs(int fd, int n, const unsigned int *idx, const unsigned long long *val)
    {
        struct { struct kvm_msrs h; struct kvm_msr_entry e[8]; } m;
        int i;
        memset(&m, 0, sizeof(m));
        if (n > 8) return -1;
        m.h.nmsrs = n;
        for (i = 0; i < n; i++) { m.e[i].index = idx[i]; m.e[i].data = val[i]; }
        return ioctl(fd, KVM_SET_MSRS, &m);
    }
    /* The vCPU's FPU/SSE state as an XSAVE image; its first 512 bytes are FXSAVE. */
    static int pv_xsave_size(int vm)
    {
        int n = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
        return n > 4096 ? n : 4096;
    }
    static int pv_get_xsave(int vm, int vcpu, void *buf)
    {
        return ioctl(vcpu, pv_xsave_size(vm) > 4096 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, buf);
    }
    static int pv_set_xsave(int vcpu, void *buf)
    {
        return ioctl(vcpu, KVM_SET_XSAVE, buf);
    }
    /* The calling thread's id, asked of the kernel once per thread (it is
       only used to aim the kick signal at the thread inside KVM_RUN). */
    #include <unistd.h>
    #include <sys/syscall.h>
    static __thread long pv_tid_cache;
    static long pv_gettid(void)
    {
        if (!pv_tid_cache)
            pv_tid_cache = syscall(SYS_gettid);
        return pv_tid_cache;
    }
    static int pv_set_cpuid(int kvm, int vcpu)
    {
        static struct { struct kvm_cpuid2 h; struct kvm_cpuid_entry2 e[256]; } c;
        memset(&c, 0, sizeof(c));
        c.h.nent = 256;
        if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &c) != 0) return -1;
        return ioctl(vcpu, KVM_SET_CPUID2, &c);
    }
    """
    int pv_set_msrs(int fd, int n, const unsigned int *idx, const unsigned long long *val) nogil
    int pv_set_cpuid(int kvm, int vcpu) nogil
    long pv_gettid() nogil
    int pv_xsave_size(int vm) nogil
    int pv_get_xsave(int vm, int vcpu, void *buf) nogil
    int pv_set_xsave(int vcpu, void *buf) nogil

# An exit kind of our own, beside _common's: the pool took the Hw back; run again.
cdef enum:
    EXIT_PREEMPTED = EXIT_INTERRUPT + 1


cdef void _kick_handler(int sig) noexcept nogil:
    pass        # only here so that the kick signal makes KVM_RUN return EINTR

cdef int _kick_signal = 0

cdef int _install_kick_handler() except -1:
    """A no-op handler, without SA_RESTART, for the signal that kicks a vCPU thread."""
    global _kick_signal
    cdef sigaction_t sa
    if _kick_signal:
        return 0
    memset(&sa, 0, sizeof(sa))
    sa.sa_handler = _kick_handler
    sigemptyset(&sa.sa_mask)
    if sigaction(SIGRTMIN + 6, &sa, NULL) != 0:
        raise _oserror("sigaction(kick signal)")
    _kick_signal = SIGRTMIN + 6
    return 0

cdef enum:
    PAGE = 4096
    PRIV_SIZE = 256 << 20           # slot 1: guest structures and page tables
    # Offsets in slot 1 (supervisor VA = KBASE + offset).
    OFF_GDT = 0x0000
    OFF_IDT = 0x1000
    OFF_KCODE = 0x2000
    OFF_TRAMP = 0x3000
    OFF_KPDPT = 0x4000              # PML4[511]
    OFF_KPD = 0x5000                # PDPT[510]: KBASE .. KBASE + 1 GiB
    OFF_KPT = 0x6000                # PD[0]: the first 2 MiB of slot 1, 4 KiB pages
    OFF_UTOP_PT = 0x7000            # the last 2 MiB of the user half: trampoline, MMIO
    OFF_KROOT = 0x8000              # a PML4 with the kernel half only: CR3 between address spaces
    OFF_VCPUS = 0x10000             # per vCPU: a TSS page, then a stack page
    VCPU_STRIDE = 0x2000
    MAX_VCPUS = (0x200000 - 0x10000) // 0x2000
    OFF_POOL = 0x200000             # page-table pages from here to PRIV_SIZE
    GC_PAGES = 4096                 # retired pages worth a shadow reset to reuse
    MADV_POPULATE_WRITE = 23        # Linux 5.14; older kernels refuse it (harmless)
    # Offsets of labels in the kernel code page (see GUEST_CODE).
    K_IRET = 0x0
    K_FLUSH_IRET = 0x2
    K_COMMON = 0xe
    K_FLUSH_BRANCH = 0x28
    K_REPORT = 0x55
    K_VECTORS = 0x60
    K_SPURIOUS = 0x260
    EXC_PORT = 0x12
    # Selectors: the host Linux layout, which kvm_pvm needs (RESULTS.md, K2).
    SEL_KCODE = 0x10
    SEL_KDATA = 0x18
    SEL_UCODE = 0x33
    SEL_UCODE32 = 0x23              # 32-bit compatibility mode
    SEL_UDATA = 0x2b
    SEL_TSS = 0x40

# x86 page-table bits.
cdef uint64_t PTE_P = 1, PTE_W = 2, PTE_U = 4, PTE_A = 0x20, PTE_D = 0x40, PTE_PS = 0x80
# A table entry: accessed already set, so that no walk has to write it.
cdef uint64_t PTE_TABLE = 1 | 2 | 4 | 0x20
# Writable mappings up to this size get their memory at mmap time (see map).
cdef uint64_t POPULATE_MAX = 1 << 20
cdef uint64_t PTE_NX = 1ULL << 63
cdef uint64_t PTE_ADDR = 0x000FFFFFFFFFF000ULL

cdef uint64_t KBASE = 0xFFFFFFFF80000000ULL
cdef uint64_t MM_TOP = 0x7FFFFFE00000ULL
cdef uint64_t USER_TOP = 0x800000000000ULL
TRAMP_VA = 0x7FFFFFFFC000
MMIO_VA = 0x7FFFFFFFD000
cdef uint64_t C_TRAMP_VA = 0x7FFFFFFFC000ULL
cdef uint64_t C_TRAMP_RET = 0x7FFFFFFFC009ULL     # after the 9-byte store
cdef uint64_t C_TRAMP_FLUSH = 0x7FFFFFFFC010ULL
cdef uint64_t C_MMIO_VA = 0x7FFFFFFFD000ULL

# RFLAGS the application may hold: CF PF AF ZF SF TF DF OF AC ID; IF is
# always on and IOPL always 0 (else the app could do port I/O).
cdef uint64_t USER_FLAGS = 0x240DD5ULL
cdef uint64_t RFLAGS_FIXED = 0x202ULL

cdef unsigned int MSR_STAR = 0xC0000081, MSR_LSTAR = 0xC0000082, MSR_CSTAR = 0xC0000083
cdef unsigned int MSR_SFMASK = 0xC0000084, MSR_FS_BASE = 0xC0000100, MSR_GS_BASE = 0xC0000101
cdef unsigned int MSR_KERNEL_GS_BASE = 0xC0000102

# Guest code, assembled from this source with GNU as (tests/test_kvm_guest.py
# reassembles it when `as` exists and compares):
#
#   tramp:        movabs %eax, MMIO_VA     # the store that exits      (user page)
#   tramp_ret:    ud2
#                 .org tramp + 16
#   tramp_flush:  ud2                      # "reload CR3, resume at the slots"
#   -- kernel code page --
#   k_iret:       iretq
#   k_flush_iret: push %rax; mov 72(%rsp),%rax; mov %rax,%cr3   # CR3 slot, RSP0+24
#                 pop %rax; iretq
#   common:       push %rax         # 0 rax 8 vec 16 err 24 rip 32 cs 40 rflags 48 rsp 56 ss
#                 movabs $TRAMP_FLUSH, %rax; cmp %rax, 24(%rsp); jne 1f
#                 cmpq $6, 8(%rsp); jne 1f
#                 mov 88(%rsp),%rax; mov %rax,%cr3      # the CR3 slot, RSP0+24
#                 mov 64(%rsp),%rax; mov %rax,24(%rsp)   # resume slots above RSP0:
#                 mov 72(%rsp),%rax; mov %rax,40(%rsp)   #   rip, rflags, rsp
#                 mov 80(%rsp),%rax; mov %rax,48(%rsp)
#                 pop %rax; add $16,%rsp; iretq
#   1:            mov %cr2,%rax; push %rax  # 0 cr2 8 rax 16 vec 24 err 32 rip .. 64 ss
#                 out %al, $0x12            # exit: the VMM reads the frame
#   2:            hlt; jmp 2b
#                 .p2align 4
#   vectors:      (16 bytes each, v = 0..31) [push $0 unless the CPU pushes
#                 an error code]; push $v; jmp common
#   spurious:     push $0; push $255; jmp common
TRAMP_CODE = bytes.fromhex(
    "a300d0ffffff7f00000f0b00000000000f0b0000000000000000000000000000")
KCODE = bytes.fromhex(
    "48cf50488b4424480f22d85848cf5048b810c0ffffff7f000048394424187535"
    "48837c240806752d488b4424580f22d8488b4424404889442418488b44244848"
    "89442428488b4424504889442430584883c41048cf0f20d050e612f4ebfd6690"
    "6a006a00eba8662e0f1f8400000000006a006a01eb98662e0f1f840000000000"
    "6a006a02eb88662e0f1f8400000000006a006a03e975ffffff0f1f8000000000"
    "6a006a04e965ffffff0f1f80000000006a006a05e955ffffff0f1f8000000000"
    "6a006a06e945ffffff0f1f80000000006a006a07e935ffffff0f1f8000000000"
    "6a08e927ffffff660f1f8400000000006a006a09e915ffffff0f1f8000000000"
    "6a0ae907ffffff660f1f8400000000006a0be9f7feffff660f1f840000000000"
    "6a0ce9e7feffff660f1f8400000000006a0de9d7feffff660f1f840000000000"
    "6a0ee9c7feffff660f1f8400000000006a006a0fe9b5feffff0f1f8000000000"
    "6a006a10e9a5feffff0f1f80000000006a11e997feffff660f1f840000000000"
    "6a006a12e985feffff0f1f80000000006a006a13e975feffff0f1f8000000000"
    "6a006a14e965feffff0f1f80000000006a15e957feffff660f1f840000000000"
    "6a006a16e945feffff0f1f80000000006a006a17e935feffff0f1f8000000000"
    "6a006a18e925feffff0f1f80000000006a006a19e915feffff0f1f8000000000"
    "6a006a1ae905feffff0f1f80000000006a006a1be9f5fdffff0f1f8000000000"
    "6a006a1ce9e5fdffff0f1f80000000006a1de9d7fdffff660f1f840000000000"
    "6a1ee9c7fdffff660f1f8400000000006a006a1fe9b5fdffff0f1f8000000000"
    "6a0068ff000000e9a2fdffff")

# siginfo codes (Linux <asm-generic/siginfo.h>).
cdef enum:
    SIGILL = 4
    SIGTRAP = 5
    SIGBUS = 7
    SIGFPE = 8
    SIGSEGV = 11
    SI_KERNEL = 0x80
    ILL_ILLOPN = 2
    FPE_INTDIV = 1
    FPE_FLTINV = 7
    SEGV_MAPERR = 1
    SEGV_ACCERR = 2
    BUS_ADRALN = 1
    TRAP_TRACE = 2

# Where an EINTR left a vCPU.
cdef enum:
    WHERE_NOT_ENTERED = 0
    WHERE_USER = 1
    WHERE_OUR_CODE = 2

# Where a vCPU stopped, which decides how it goes back to the application.
cdef enum:
    MODE_KERNEL = 0     # at CPL0 (an exception stub, or before the first run): iretq
    MODE_USER = 1       # at CPL3 in the trampoline (kvm_pvm): set rip/rsp/rflags


class KvmError(RuntimeError):
    """The guest or KVM failed in a way the application cannot cause: kill the sandbox."""


cdef inline object _oserror(str what):
    cdef int e = errno
    return OSError(e, "%s: %s" % (what, strerror(e).decode()))


def probe():
    """(usable, reason): whether /dev/kvm can run this platform, in one sentence if not."""
    cdef int fd = open(b"/dev/kvm", O_RDWR | O_CLOEXEC)
    cdef int vm
    if fd < 0:
        e = errno
        return False, "/dev/kvm cannot be opened: %s" % strerror(e).decode()
    try:
        if ioctl(fd, KVM_GET_API_VERSION, 0) != 12:
            return False, "/dev/kvm speaks an unknown KVM API version"
        if ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) <= 0:
            return False, "KVM lacks KVM_CAP_USER_MEMORY"
        if not (ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS) & KVM_SYNC_X86_REGS):
            return False, "KVM lacks KVM_CAP_SYNC_REGS for the general registers"
        if ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_IMMEDIATE_EXIT) <= 0:
            return False, "KVM lacks KVM_CAP_IMMEDIATE_EXIT"
        vm = ioctl(fd, KVM_CREATE_VM, 0)
        if vm < 0:
            e = errno
            return False, "KVM_CREATE_VM fails: %s" % strerror(e).decode()
        close(vm)
        return True, ""
    finally:
        close(fd)


cdef inline uint64_t _leaf(uint64_t pa, int prot):
    """The PTE for a user page. PROT_NONE is present but supervisor-only, so
    that touching it is an access error (SEGV_ACCERR), as on Linux.
    Accessed (and, if writable, dirty) are preset: a shadow MMU then has no
    bits to write back on a walk, maps a read of a writable page writable
    at once, and prefetches the neighbouring entries with each fault."""
    cdef uint64_t pte = (pa & PTE_ADDR) | PTE_P | PTE_A
    if prot & 4 == 0:
        pte |= PTE_NX
    if prot & 7 == 0:
        return pte
    pte |= PTE_U
    if prot & 2:
        pte |= PTE_W | PTE_D
    return pte


cdef class Vm:
    """One VM per sandbox: the memory slots, the guest's fixed structures, the
    page-table page pool, and the vCPUs.

    Lock order: none inside; callers serialise edits per address space.
    """
    cdef readonly int kvm_fd
    cdef readonly int vm_fd
    cdef int run_size
    cdef char *mem                 # our own mapping of the memory file (slot 0)
    cdef int mem_fd                # our own reference to the memory file (a dup)
    cdef readonly size_t mem_size
    cdef int priv_fd
    cdef char *priv                # slot 1
    cdef readonly uint64_t priv_gpa
    cdef readonly uint64_t mmio_gpa
    cdef uint32_t *pool_free       # stack of free page-table page offsets / PAGE
    cdef size_t pool_nfree
    cdef uint64_t pool_bump
    cdef list retired              # (page offset, clock when it retired)
    cdef readonly uint64_t clock   # bumped by every root load (a vCPU entry that sets CR3)
    cdef size_t next_gc            # try a collection when this many pages retired
    cdef list vcpus                # every Hw made
    cdef public int waiters        # contexts waiting for a Hw (the platform's pool counts)
    cdef readonly int xsave_size
    cdef char *init_fpu            # the XSAVE image of a fresh vCPU: new contexts start so
    cdef readonly unsigned long long shadow_resets
    cdef readonly int nvcpus
    cdef public int syscall_cpl    # -1 unknown; 0 or 3: where SYSCALL lands (probed once)
    cdef readonly size_t pt_pages  # page-table pages in use

    def __cinit__(self, int memfd, size_t mem_size):
        self.kvm_fd = self.vm_fd = self.priv_fd = self.mem_fd = -1
        self.syscall_cpl = -1
        self.pool_free = <uint32_t *>malloc(sizeof(uint32_t) * (PRIV_SIZE // PAGE))
        if self.pool_free == NULL:
            raise MemoryError()
        self.retired = []
        self.vcpus = []
        self.clock = 1
        self.next_gc = GC_PAGES
        self.pool_bump = OFF_POOL
        self.kvm_fd = open(b"/dev/kvm", O_RDWR | O_CLOEXEC)
        if self.kvm_fd < 0:
            raise _oserror("open /dev/kvm")
        self.vm_fd = ioctl(self.kvm_fd, KVM_CREATE_VM, 0)
        if self.vm_fd < 0:
            raise _oserror("KVM_CREATE_VM")
        self.run_size = ioctl(self.kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0)
        if self.run_size <= 0:
            raise _oserror("KVM_GET_VCPU_MMAP_SIZE")
        self._map_memory(memfd, mem_size)
        self._build_fixed()

    cdef int _map_memory(self, int memfd, size_t mem_size) except -1:
        cdef void *p = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_NORESERVE, memfd, 0)
        if p == MAP_FAILED:
            raise _oserror("mmap(memory file)")
        self.mem = <char *>p
        # Our own reference, for fallocate (see PageTables.map): the caller's
        # fd number may be closed and reused before this VM goes.
        self.mem_fd = fcntl(memfd, F_DUPFD_CLOEXEC, 0)
        if self.mem_fd < 0:
            raise _oserror("dup(memory file)")
        self.mem_size = mem_size
        self.priv_fd = memfd_create(b"pyvisor-kvm-private", MFD_CLOEXEC)
        if self.priv_fd < 0 or ftruncate(self.priv_fd, PRIV_SIZE) != 0:
            raise _oserror("memfd for the guest's private memory")
        p = mmap(NULL, PRIV_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
                 self.priv_fd, 0)
        if p == MAP_FAILED:
            raise _oserror("mmap(private memory)")
        self.priv = <char *>p
        # Slot 1 starts on a 1 GiB boundary above the memory file.
        self.priv_gpa = (mem_size + (1 << 30) - 1) & ~((1ULL << 30) - 1)
        self.mmio_gpa = self.priv_gpa + PRIV_SIZE
        self._set_slot(0, 0, mem_size, self.mem)
        self._set_slot(1, self.priv_gpa, PRIV_SIZE, self.priv)
        return 0

    cdef int _set_slot(self, uint32_t slot, uint64_t gpa, uint64_t size, char *host) except -1:
        cdef kvm_userspace_memory_region r
        memset(&r, 0, sizeof(r))
        r.slot = slot
        r.guest_phys_addr = gpa
        r.memory_size = size
        r.userspace_addr = <uint64_t>host
        if ioctl(self.vm_fd, KVM_SET_USER_MEMORY_REGION, &r) != 0:
            raise _oserror("KVM_SET_USER_MEMORY_REGION(slot %d)" % slot)
        return 0

    cdef inline uint64_t *_q(self, uint64_t off):
        return <uint64_t *>(self.priv + off)

    cdef int _build_fixed(self) except -1:
        """GDT, IDT, guest code and the page tables shared by every address space."""
        cdef uint64_t *gdt = self._q(OFF_GDT)
        cdef uint64_t *idt = self._q(OFF_IDT)
        cdef uint64_t target, i, v
        cdef const unsigned char[::1] kcode = KCODE
        cdef const unsigned char[::1] tramp = TRAMP_CODE
        # GDT in the host Linux layout (accessed bits preset: nothing writes it).
        gdt[2] = 0x00AF9B000000FFFFULL      # 0x10 kernel code, 64-bit
        gdt[3] = 0x00CF93000000FFFFULL      # 0x18 kernel data
        gdt[4] = 0x00CFFB000000FFFFULL      # 0x23 user code, 32-bit
        gdt[5] = 0x00CFF3000000FFFFULL      # 0x2b user data
        gdt[6] = 0x00AFFB000000FFFFULL      # 0x33 user code, 64-bit
        self._tss_descriptor(self._vcpu_off(0))
        # IDT: vector v -> its stub; int3 is DPL3 so that `int3` traps as #BP.
        # Every gate switches to IST1 (the vCPU's kernel stack, as RSP0), so an
        # exception taken at CPL0 never writes its frame where the
        # application's rsp points (a compat-mode `syscall` enters CPL0 on it).
        for v in range(256):
            target = KBASE + OFF_KCODE + (K_VECTORS + 16 * v if v < 32 else K_SPURIOUS)
            idt[2 * v] = ((target & 0xFFFF) | (<uint64_t>SEL_KCODE << 16) | (1ULL << 32) |
                          ((0x8EULL | (0x60ULL if v == 3 else 0)) << 40) |
                          (((target >> 16) & 0xFFFF) << 48))
            idt[2 * v + 1] = target >> 32
        memcpy(self.priv + OFF_KCODE, &kcode[0], kcode.shape[0])
        memcpy(self.priv + OFF_TRAMP, &tramp[0], tramp.shape[0])
        # Supervisor view of slot 1 at KBASE: 4 KiB pages for the first 2 MiB
        # (code executable, the rest NX), 2 MiB pages for the pool.
        self._q(OFF_KPDPT)[510] = (self.priv_gpa + OFF_KPD) | PTE_P | PTE_W
        self._q(OFF_KROOT)[511] = (self.priv_gpa + OFF_KPDPT) | PTE_P | PTE_W
        self._q(OFF_KPD)[0] = (self.priv_gpa + OFF_KPT) | PTE_P | PTE_W
        for i in range(1, PRIV_SIZE >> 21):
            self._q(OFF_KPD)[i] = (self.priv_gpa + (i << 21)) | PTE_P | PTE_W | PTE_PS | PTE_NX
        for i in range(512):
            self._q(OFF_KPT)[i] = (self.priv_gpa + i * PAGE) | PTE_P | PTE_W | (
                0 if i * PAGE == OFF_KCODE else PTE_NX)
        # The top of the user half: the trampoline (user R-X) and the MMIO page
        # (user RW); the application's own range ends below, at MM_TOP.
        self._q(OFF_UTOP_PT)[(C_TRAMP_VA >> 12) & 511] = (self.priv_gpa + OFF_TRAMP) | PTE_P | PTE_U
        self._q(OFF_UTOP_PT)[(C_MMIO_VA >> 12) & 511] = self.mmio_gpa | PTE_P | PTE_U | PTE_W | PTE_NX
        return 0

    cdef void _tss_descriptor(self, uint64_t tss_off):
        cdef uint64_t tss = KBASE + tss_off
        cdef uint64_t *gdt = self._q(OFF_GDT)
        gdt[8] = (0x67 | ((tss & 0xFFFFFF) << 16) | (0x89ULL << 40) | (((tss >> 24) & 0xFF) << 56))
        gdt[9] = tss >> 32

    cdef inline uint64_t _vcpu_off(self, int idx):
        return OFF_VCPUS + <uint64_t>idx * VCPU_STRIDE

    # -- page-table pool ------------------------------------------------------
    #
    # Why a page that was a table is never reused without a reset: kvm_pvm
    # (like any KVM without EPT/NPT) shadows the guest's page tables, keyed by
    # their frame, and write-protects them against *guest* writes only. Host
    # writes to a retired table go unseen, so a shadow built from its old
    # contents could be found again when the frame comes back as another
    # table. Tables retire only with their address space (PageTables.release),
    # and a retired page is reused only after deleting and re-adding slot 1,
    # which drops every shadow page built from it.

    cdef uint64_t _pt_alloc(self) except 0:
        cdef uint64_t off
        # A collection resets slot 1, which no vCPU may be inside KVM_RUN
        # for (a vCPU that loses its tables mid-walk triple-faults): it waits
        # for a moment when none is, unless the pool has no page left.
        if self.pool_nfree == 0 and (len(self.retired) >= self.next_gc and self._quiet()
                                     or self.pool_bump >= PRIV_SIZE):
            self._collect()
            self.next_gc = len(self.retired) + GC_PAGES
        if self.pool_nfree:
            self.pool_nfree -= 1
            off = <uint64_t>self.pool_free[self.pool_nfree] * PAGE
        elif self.pool_bump < PRIV_SIZE:
            off = self.pool_bump
            self.pool_bump += PAGE
        else:
            raise MemoryError("KVM page-table pool exhausted")
        memset(self.priv + off, 0, PAGE)
        self.pt_pages += 1
        return off

    cdef bint _quiet(self):
        """No vCPU is inside KVM_RUN, nor can enter it before we let go of
        the GIL: each sets running_tid under the GIL before it enters."""
        cdef Hw v
        for v in self.vcpus:
            if v.running_tid != 0:
                return 0
        return 1

    cdef int _collect(self) except -1:
        """Reuse the retired pages no vCPU can still reach, after making KVM
        forget their shadows. Tables retire only with their address space, so
        a vCPU whose CR3 holds the root of live tables reaches none. Any other
        vCPU (its tables released, or a root load not yet done: the entry
        paths walk the old root until their mov to CR3) may reach a page
        retired at clock c until it has loaded a root after c."""
        cdef uint64_t horizon = self.clock + 1
        cdef Hw v
        for v in self.vcpus:
            if not v.holds_root:
                continue
            if v.entry_clock == 0 and v.cr3_tables is not None and v.cr3_tables.root != 0:
                continue
            if v.loaded_clock < horizon:
                horizon = v.loaded_clock
        keep, safe = [], []
        for off, c in self.retired:
            if c < horizon:
                safe.append(off)
            else:
                keep.append((off, c))   # still reachable: retry at the next collection
        if not safe:
            return 0
        self.reset_shadow()
        for off in safe:
            self.pool_free[self.pool_nfree] = <uint32_t>(off // PAGE)
            self.pool_nfree += 1
        self.retired = keep
        return 0

    cdef void _retire(self, uint64_t off):
        self.retired.append((off, self.clock))
        self.pt_pages -= 1

    def reset_shadow(self):
        """Delete and re-add slot 1: KVM drops every shadow page made from our tables.
        Precondition: no vCPU of this VM is inside KVM_RUN."""
        self._set_slot(1, self.priv_gpa, 0, self.priv)
        self._set_slot(1, self.priv_gpa, PRIV_SIZE, self.priv)
        self.shadow_resets += 1

    property pool_free_pages:
        def __get__(self): return self.pool_nfree

    property retired_pages:
        def __get__(self): return len(self.retired)

    def __dealloc__(self):
        if self.mem != NULL:
            munmap(self.mem, self.mem_size)
        if self.priv != NULL:
            munmap(self.priv, PRIV_SIZE)
        if self.priv_fd >= 0:
            close(self.priv_fd)
        if self.mem_fd >= 0:
            close(self.mem_fd)
        if self.vm_fd >= 0:
            close(self.vm_fd)
        if self.kvm_fd >= 0:
            close(self.kvm_fd)
        free(self.pool_free)
        free(self.init_fpu)

    def new_tables(self):
        """A fresh address space's page tables (empty user half)."""
        return PageTables(self)

    def new_hw(self):
        """A new KVM vCPU for the pool (KVM keeps it until the VM goes)."""
        if self.nvcpus >= MAX_VCPUS:
            raise KvmError("too many vCPUs (%d)" % MAX_VCPUS)
        v = Hw(self, self.nvcpus)
        if self.init_fpu == NULL:
            self.xsave_size = pv_xsave_size(self.vm_fd)
            self.init_fpu = <char *>malloc(self.xsave_size)
            if self.init_fpu == NULL:
                raise MemoryError()
            if pv_get_xsave(self.vm_fd, v.fd, self.init_fpu) != 0:
                raise _oserror("KVM_GET_XSAVE")
        self.nvcpus += 1
        self.vcpus.append(v)
        return v

    def new_vcpu(self, PageTables tables, pool):
        """A task thread's context in the application's starting state, on
        ``tables``, running on Hws from ``pool`` (acquire(ctx) / release(hw)).
        Precondition: the pool has made its first Hw (new_hw)."""
        if self.init_fpu == NULL:
            raise ValueError("no vCPU made yet")
        return Vcpu(self, tables, pool)

    property hws:
        def __get__(self): return list(self.vcpus)

    def write_private(self, uint64_t off, const unsigned char[::1] data):
        """Overwrite bytes of slot 1. Only tests use this (to break the guest on purpose)."""
        if off > PRIV_SIZE or <size_t>data.shape[0] > PRIV_SIZE - off:
            raise ValueError("out of the private region")
        if data.shape[0]:
            memcpy(self.priv + off, &data[0], data.shape[0])

    def read_private(self, uint64_t off, size_t n):
        """Bytes of slot 1 (tests and diagnostics)."""
        if off > PRIV_SIZE or n > PRIV_SIZE - off:
            raise ValueError("out of the private region")
        return self.priv[off:off + n]


cdef class PageTables:
    """The 4-level page tables of one address space, in slot 1, edited in place.

    How an edit reaches the vCPUs (docs/kvm.md, "Editing page tables"):

    - An entry that was not present is simply written. No TLB and no shadow
      MMU keeps a not-present entry, so the next access walks to it.
    - An entry that was present and changes (munmap, mprotect, a mapping
      replaced) is written, then its old frame is invalidated on the host
      side: MADV_DONTNEED on our own mapping of those memory-file pages
      (which keeps their contents: the mapping is shared) runs KVM's MMU
      notifier, which drops every shadow or EPT entry for them and flushes
      the TLB of every vCPU before madvise returns. The next access to the
      page walks the edited tables again. That is the shootdown: other
      threads running on these tables need no kick.
    - A table entry, once present, never changes while the address space
      lives (emptied tables stay), so no walk can go through a stale table.

    Consecutive frames are invalidated with one madvise. Writable mappings
    of two pages up to POPULATE_MAX get their memory at once (fallocate,
    then MADV_POPULATE_WRITE), so the application's first touches fault
    only in the guest, where a shadow MMU then maps eight neighbours per
    fault. A single page is cheaper left to its one fault, which allocates
    it on the way.

    Preconditions: page-aligned, non-empty ranges below MM_TOP; edits are
    serialised by the caller (the MemoryManager's lock).
    """
    cdef Vm vm
    cdef readonly uint64_t root      # offset in slot 1 of the PML4
    cdef uint64_t stale_start, stale_end     # a run of old frames to invalidate
    cdef readonly unsigned long long invalidations   # madvise(MADV_DONTNEED) calls

    def __cinit__(self, Vm vm):
        self.vm = vm
        self.root = vm._pt_alloc()
        cdef uint64_t *pml4 = vm._q(self.root)
        pml4[511] = (vm.priv_gpa + OFF_KPDPT) | PTE_P | PTE_W
        # The last 2 MiB of the user half hold the shared trampoline table.
        cdef uint64_t *pd = self._walk(USER_TOP - PAGE, 2, 1)
        pd[511] = (vm.priv_gpa + OFF_UTOP_PT) | PTE_P | PTE_W | PTE_U

    property cr3:
        def __get__(self): return self.vm.priv_gpa + self.root

    cdef uint64_t *_walk(self, uint64_t va, int level, bint create) except? NULL:
        """The table at ``level`` (1 = PT) covering va, or NULL if it is
        missing and not ``create``; missing tables are made (a not-present
        entry becoming present needs no flush)."""
        cdef uint64_t *t = self.vm._q(self.root)
        cdef int lvl = 4
        cdef uint64_t idx
        while lvl > level:
            idx = (va >> (12 + 9 * (lvl - 1))) & 511
            if not t[idx] & PTE_P:
                if not create:
                    return NULL
                t[idx] = (self.vm.priv_gpa + self.vm._pt_alloc()) | PTE_TABLE
            t = self.vm._q((t[idx] & PTE_ADDR) - self.vm.priv_gpa)
            lvl -= 1
        return t

    cdef uint64_t *_find_pt(self, uint64_t va, uint64_t *skip_to=NULL):
        """The PT covering va, read-only, or NULL if none; then ``*skip_to`` is
        the end of the hole (the next 2 MiB, 1 GiB or 512 GiB boundary)."""
        cdef uint64_t *t = self.vm._q(self.root)
        cdef int lvl = 4
        cdef uint64_t idx, span
        while lvl > 1:
            span = 1ULL << (12 + 9 * (lvl - 1))
            idx = (va // span) & 511
            if not t[idx] & PTE_P:
                if skip_to != NULL:
                    skip_to[0] = (va | (span - 1)) + 1
                return NULL
            t = self.vm._q((t[idx] & PTE_ADDR) - self.vm.priv_gpa)
            lvl -= 1
        return t

    cdef int _check(self, uint64_t addr, uint64_t length) except -1:
        if self.root == 0:
            raise ValueError("page tables already released")
        if addr & (PAGE - 1) or length & (PAGE - 1) or length == 0:
            raise ValueError("unaligned or empty range %#x+%#x" % (addr, length))
        if addr >= MM_TOP or length > MM_TOP - addr:
            raise ValueError("range %#x+%#x is not below MM_TOP" % (addr, length))
        return 0

    cdef inline int _set(self, uint64_t *pte, uint64_t new) except -1:
        """Write an entry; a present one that changes has its old frame invalidated."""
        cdef uint64_t old = pte[0]
        if old == new:
            return 0
        pte[0] = new
        if old & PTE_P:
            self._stale(old & PTE_ADDR)
        return 0

    cdef int _stale(self, uint64_t frame) except -1:
        """Queue an old frame for invalidation, merging consecutive ones.
        The entries pointing at it must already be rewritten."""
        if frame == self.stale_end and self.stale_end > self.stale_start:
            self.stale_end += PAGE
            return 0
        self._invalidate()
        self.stale_start = frame
        self.stale_end = frame + PAGE
        return 0

    cdef int _invalidate(self) except -1:
        """Make KVM drop every translation to the queued frames (see the class
        docstring); returns once no vCPU can use one."""
        cdef uint64_t start = self.stale_start, end = self.stale_end
        self.stale_start = self.stale_end = 0
        if end <= start:
            return 0
        if madvise(self.vm.mem + start, end - start, MADV_DONTNEED) != 0:
            raise _oserror("madvise(MADV_DONTNEED) of the memory file")
        self.invalidations += 1
        return 0

    def map(self, uint64_t addr, uint64_t length, int prot, uint64_t fileoff):
        """Map memory-file bytes [fileoff, fileoff+length) at addr (GPA = fileoff)."""
        self._check(addr, length)
        if fileoff & (PAGE - 1) or fileoff > self.vm.mem_size or length > self.vm.mem_size - fileoff:
            raise ValueError("file range %#x+%#x outside the memory file" % (fileoff, length))
        cdef uint64_t va = addr, end = addr + length
        cdef uint64_t *pt
        try:
            while va < end:
                pt = self._walk(va, 1, 1)
                while True:
                    self._set(&pt[(va >> 12) & 511], _leaf(fileoff + (va - addr), prot))
                    va += PAGE
                    if va >= end or (va >> 12) & 511 == 0:
                        break
        finally:
            self._invalidate()
        if prot & 2 and PAGE < length <= POPULATE_MAX:
            self._populate(fileoff, length)

    cdef void _populate(self, uint64_t fileoff, uint64_t length):
        """Give memory-file pages [fileoff, +length) memory, mapped writable in
        our mapping (what KVM's prefetch needs). Allocating them first
        (fallocate) and then mapping them costs less than having madvise
        fault each one in: 0.83-0.93 ms against 0.97-1.07 ms per MiB here.
        Both are optional: a kernel without them just faults later."""
        fallocate(self.vm.mem_fd, 0, <long>fileoff, <long>length)
        madvise(self.vm.mem + fileoff, length, MADV_POPULATE_WRITE)

    def unmap(self, uint64_t addr, uint64_t length):
        """Remove [addr, addr+length). Emptied tables stay (see the class docstring)."""
        self._edit_present(addr, length, -1)

    def protect(self, uint64_t addr, uint64_t length, int prot):
        """Change the protection of the mapped pages in [addr, addr+length)."""
        if prot < 0:
            raise ValueError("bad protection %d" % prot)
        self._edit_present(addr, length, prot)

    cdef int _edit_present(self, uint64_t addr, uint64_t length, int prot) except -1:
        """Unmap (prot -1) or re-protect the present pages of a range."""
        self._check(addr, length)
        cdef uint64_t va = addr, end = addr + length, nxt, e
        cdef uint64_t *pt
        try:
            while va < end:
                nxt = (va | 0x1FFFFF) + 1
                pt = self._find_pt(va, &nxt)
                while pt != NULL and va < end and va < nxt:
                    e = pt[(va >> 12) & 511]
                    if e & PTE_P:
                        self._set(&pt[(va >> 12) & 511], 0 if prot < 0 else _leaf(e & PTE_ADDR, prot))
                    va += PAGE
                va = nxt
        finally:
            self._invalidate()
        return 0

    def translate(self, uint64_t va):
        """The leaf PTE for va, or 0 (tests and diagnostics)."""
        if self.root == 0 or va >= USER_TOP:
            return 0
        cdef uint64_t *pt = self._find_pt(va & ~(<uint64_t>PAGE - 1))
        return pt[(va >> 12) & 511] if pt != NULL else 0

    def release(self):
        """Retire every table of the user half (not the shared ones).
        Precondition: no vCPU will run on these tables again without attach()."""
        if self.root == 0:
            return
        cdef Hw hw
        for hw in self.vm.vcpus:
            if hw.cr3_tables is self and not hw.busy:
                hw._set_sregs()
        self._retire_level(self.vm._q(self.root), 4, 256)
        self.vm._retire(self.root)
        self.root = 0

    cdef void _retire_level(self, uint64_t *t, int level, int n):
        cdef int i
        cdef uint64_t off
        for i in range(n):
            if not t[i] & PTE_P:
                continue
            off = (t[i] & PTE_ADDR) - self.vm.priv_gpa
            if off == OFF_UTOP_PT:
                continue
            if level > 2:
                self._retire_level(self.vm._q(off), level - 1, 512)
            self.vm._retire(off)


cdef inline void _regs_in(user_regs_struct *u, kvm_regs *k):
    u.rax = k.rax; u.rbx = k.rbx; u.rcx = k.rcx; u.rdx = k.rdx
    u.rsi = k.rsi; u.rdi = k.rdi; u.rsp = k.rsp; u.rbp = k.rbp
    u.r8 = k.r8; u.r9 = k.r9; u.r10 = k.r10; u.r11 = k.r11
    u.r12 = k.r12; u.r13 = k.r13; u.r14 = k.r14; u.r15 = k.r15


cdef inline void _regs_out(kvm_regs *k, user_regs_struct *u):
    k.rax = u.rax; k.rbx = u.rbx; k.rcx = u.rcx; k.rdx = u.rdx
    k.rsi = u.rsi; k.rdi = u.rdi; k.rsp = u.rsp; k.rbp = u.rbp
    k.r8 = u.r8; k.r9 = u.r9; k.r10 = u.r10; k.r11 = u.r11
    k.r12 = u.r12; k.r13 = u.r13; k.r14 = u.r14; k.r15 = u.r15


cdef uint64_t VSYSCALL_PAGE = 0xFFFFFFFFFF600000ULL
cdef uint64_t TASK_SIZE_MAX = 0x7FFFFFFFF000ULL


cdef inline bint _user_ok(uint64_t ptr, uint64_t size):
    """Linux's access_ok(): [ptr, ptr+size) is below the top of user space."""
    return ptr <= TASK_SIZE_MAX - size


cdef inline uint64_t _user_flags(uint64_t f):
    return (f & USER_FLAGS) | RFLAGS_FIXED


cdef class Hw:
    """One KVM vCPU: the execution resource a context (Vcpu) binds to run.

    The VM keeps a bounded pool of them (the platform's VcpuPool); KVM cannot
    destroy a vCPU before its VM, so they are made once and reused. The
    fields describe the hardware state: its CPL (mode), the root CR3 holds,
    whose FPU and FS/GS bases are loaded (owner). ``busy`` is set while a
    context has claimed it (from taking it to the end of the exit it ran
    to): only an idle Hw may be taken from its owner. All fields are read
    and written with the GIL held.
    """
    cdef Vm vm
    cdef readonly int index
    cdef readonly int fd
    cdef kvm_run *run_page
    cdef uint64_t area              # offset of this vCPU's TSS page in slot 1
    cdef uint64_t rsp0              # offset of the kernel stack top in slot 1
    cdef int mode                   # where it stopped: MODE_KERNEL or MODE_USER
    cdef bint must_publish          # load the owner's root before user code runs
    cdef object owner               # the Vcpu whose FPU and bases it holds, or None
    cdef PageTables cr3_tables      # whose root CR3 holds (or is being loaded), or None
    cdef public bint busy           # claimed by a context (see the class docstring)
    cdef public bint preempt        # the pool wants it back: leave the guest
    cdef long running_tid           # the thread inside KVM_RUN (set under the GIL), or 0
    cdef readonly long long entered_ns    # CLOCK_MONOTONIC when the current KVM_RUN began
    cdef readonly bint holds_root   # CR3 is some tables' root, not OFF_KROOT
    cdef readonly uint64_t loaded_clock   # Vm.clock of the root CR3 holds
    cdef uint64_t entry_clock       # the root load this entry makes, 0 if none

    def __cinit__(self, Vm vm, int index):
        self.vm = vm
        self.index = index
        self.fd = -1
        self.area = vm._vcpu_off(index)
        self.rsp0 = self.area + VCPU_STRIDE - 64
        self.fd = ioctl(vm.vm_fd, KVM_CREATE_VCPU, index)
        if self.fd < 0:
            raise _oserror("KVM_CREATE_VCPU")
        cdef void *p = mmap(NULL, vm.run_size, PROT_READ | PROT_WRITE, MAP_SHARED, self.fd, 0)
        if p == MAP_FAILED:
            raise _oserror("mmap(kvm_run)")
        self.run_page = <kvm_run *>p
        if pv_set_cpuid(vm.kvm_fd, self.fd) != 0:
            raise _oserror("KVM_SET_CPUID2")
        # TSS: RSP0 (offset 4) is the kernel stack; no I/O bitmap (offset 102).
        (<uint64_t *>(vm.priv + self.area + 4))[0] = KBASE + self.rsp0
        (<uint64_t *>(vm.priv + self.area + 0x24))[0] = KBASE + self.rsp0     # IST1
        (<uint16_t *>(vm.priv + self.area + 102))[0] = 104
        self._set_sregs()
        self._set_msrs()
        self.run_page.kvm_valid_regs = KVM_SYNC_X86_REGS
        _install_kick_handler()

    def __dealloc__(self):
        if self.run_page != NULL:
            munmap(self.run_page, self.vm.run_size)
        if self.fd >= 0:
            close(self.fd)

    cdef int _set_sregs(self) except -1:
        """CPL0 with CR3 off every address space's pages (OFF_KROOT)."""
        cdef kvm_sregs s
        if ioctl(self.fd, KVM_GET_SREGS, &s) != 0:
            raise _oserror("KVM_GET_SREGS")
        _segment(&s.cs, SEL_KCODE, 11, 1)
        _segment(&s.ss, SEL_KDATA, 3, 0)
        # Null data selectors: iretq to CPL3 then has nothing to clear, and
        # FS/GS bases stay what the MSRs say.
        _null_segment(&s.ds)
        _null_segment(&s.es)
        _null_segment(&s.fs)
        _null_segment(&s.gs)
        memset(&s.tr, 0, sizeof(s.tr))
        s.tr.selector = SEL_TSS
        s.tr.base = KBASE + self.area
        s.tr.limit = 0x67
        s.tr.type = 11
        s.tr.present = 1
        memset(&s.ldt, 0, sizeof(s.ldt))
        s.ldt.unusable = 1
        s.gdt.base = KBASE + OFF_GDT
        s.gdt.limit = 10 * 8 - 1
        s.idt.base = KBASE + OFF_IDT
        s.idt.limit = 256 * 16 - 1
        s.cr0 = 0x80050033          # PG AM WP NE ET MP PE
        s.cr4 = 0x620               # OSXMMEXCPT OSFXSR PAE
        s.efer = 0xD01              # NXE LMA LME SCE
        s.cr3 = self.vm.priv_gpa + OFF_KROOT
        if ioctl(self.fd, KVM_SET_SREGS, &s) != 0:
            raise _oserror("KVM_SET_SREGS")
        self.holds_root = 0
        self.must_publish = 1
        self.cr3_tables = None
        self.entry_clock = 0
        self.mode = MODE_KERNEL
        return 0

    cdef int _set_msrs(self) except -1:
        cdef unsigned int idx[5]
        cdef unsigned long long val[5]
        idx[0] = MSR_STAR; val[0] = (<uint64_t>0x23 << 48) | (<uint64_t>SEL_KCODE << 32)
        idx[1] = MSR_LSTAR; val[1] = C_TRAMP_VA
        # `syscall` in 32-bit compatibility mode enters CPL0 at CSTAR (kvm_pvm
        # keeps only its low 32 bits) on the application's stack: at 0, which
        # the application cannot map (mm.MIN_ADDR), it faults at once, onto
        # the IST stack; _on_exception makes that SIGSEGV. SYSENTER_EIP is 0 too.
        idx[2] = MSR_CSTAR; val[2] = 0
        idx[3] = MSR_SFMASK; val[3] = 0x47700   # TF DF IF IOPL NT AC
        idx[4] = MSR_KERNEL_GS_BASE; val[4] = 0
        if pv_set_msrs(self.fd, 5, idx, val) != 5:
            raise _oserror("KVM_SET_MSRS(syscall MSRs)")
        return 0

    cdef void kick(self) noexcept:
        """Make this vCPU's KVM_RUN return (or not start): immediate_exit, then a signal."""
        self.run_page.immediate_exit = 1
        cdef long tid = self.running_tid
        if tid:
            syscall(SYS_tgkill, getpid(), tid, _kick_signal)

    def try_claim(self):
        """Mark busy if it is not (atomic under the GIL); whether it was claimed."""
        if self.busy:
            return False
        self.busy = 1
        return True

    def take_back(self):
        """From the pool, any thread: leave the guest at once (preemption)."""
        self.preempt = 1
        self.kick()

    property owner_context:
        def __get__(self): return self.owner

    property running:
        def __get__(self): return self.running_tid != 0


cdef class Vcpu:
    """The application-visible state of one task thread, run on a pooled Hw.

    ``regs`` is the application's register file as the Sentry sees it
    (user_regs_struct names); it is exchanged with KVM through the sync-regs
    area of kvm_run, once per exit, never with KVM_GET/SET_REGS. The FPU
    state lives in the Hw while one is bound to this context, else in
    ``fpu``. A context takes a Hw from the pool (``pool.acquire``) when it is
    about to enter the guest and keeps it, idle, while the Sentry serves its
    calls; another context may take an idle Hw (its FPU state is saved here
    first), and the pool takes a running one back when its time slice is
    over and others wait (``Hw.take_back``).
    """
    cdef Vm vm
    cdef PageTables tables
    cdef Hw hw                      # the bound Hw, or None
    cdef object pool                # acquire(ctx) -> Hw, release(hw)
    cdef char *fpu                  # the XSAVE image while no Hw holds it
    cdef bint fpu_saved             # fpu is the state (no Hw holds it)
    cdef user_regs_struct regs
    cdef bint bases_dirty           # fs_base/gs_base must be written to the MSRs
    cdef FastAnswers fast           # calls answered here (set_fast_answers)
    cdef readonly unsigned long long syscalls
    cdef readonly unsigned long long exits
    cdef readonly unsigned long long switches   # times it was bound to a Hw it did not hold
    cdef readonly int signo, code
    cdef readonly unsigned long long addr
    cdef readonly int vector
    cdef readonly unsigned long long error_code
    cdef bint interrupted           # interrupt() asked run() to return
    cdef readonly bint compat       # the last EXIT_SYSCALL was an int $0x80

    def __cinit__(self, Vm vm, PageTables tables, object pool):
        self.vm = vm
        self.tables = tables
        self.pool = pool
        self.fpu = <char *>malloc(vm.xsave_size)
        if self.fpu == NULL:
            raise MemoryError()
        memcpy(self.fpu, vm.init_fpu, vm.xsave_size)
        self.fpu_saved = 1
        self.bases_dirty = 1
        self.regs.cs = SEL_UCODE
        self.regs.ss = SEL_UDATA
        self.regs.eflags = RFLAGS_FIXED
        self.regs.orig_rax = <unsigned long long>-1

    def __dealloc__(self):
        free(self.fpu)

    cdef inline bint _holds(self):
        """Whether a Hw is bound to this context (its FPU state is there)."""
        return self.hw is not None and self.hw.owner is self

    cdef int _bind(self, Hw hw) except -1:
        """Run on ``hw`` from now on (claimed for us by the pool: busy)."""
        if hw.owner is not None and hw.owner is not self:
            (<Vcpu>hw.owner)._lose()
        if hw.owner is not self:
            if pv_set_xsave(hw.fd, self.fpu) != 0:
                raise _oserror("KVM_SET_XSAVE")
            self.fpu_saved = 0
            self.bases_dirty = 1
            self.switches += 1
            hw.owner = self
        if hw.cr3_tables is not self.tables:
            hw.must_publish = 1
        hw.run_page.immediate_exit = 0
        hw.preempt = 0
        self.hw = hw
        return 0

    cdef int _lose(self) except -1:
        """Our idle Hw goes to another context: keep our FPU state here."""
        cdef Hw hw = self.hw
        if pv_get_xsave(self.vm.vm_fd, hw.fd, self.fpu) != 0:
            raise _oserror("KVM_GET_XSAVE")
        self.fpu_saved = 1
        hw.owner = None
        self.hw = None
        return 0

    cdef int _claim(self) except -1:
        """Have a Hw claimed (busy) before entering: ours if still idle, else
        the pool's. 1 if interrupt() came while we waited for one (then none
        is claimed), else 0."""
        cdef Hw hw = self.hw
        if hw is not None and hw.owner is self and not hw.busy and not hw.preempt:
            hw.busy = 1
            return 0
        hw = self.pool.acquire(self)
        if hw is None:
            return 1
        self._bind(hw)
        return 0

    cdef int _give_back(self) except -1:
        """Return the Hw to the pool (others wait, or the task is gone)."""
        cdef Hw hw = self.hw
        if hw is None:
            return 0
        if hw.owner is self:
            self._lose()
        self.hw = None
        hw.busy = 0
        self.pool.release(hw)
        return 0

    cdef int _write_bases(self) except -1:
        cdef unsigned int idx[2]
        cdef unsigned long long val[2]
        idx[0] = MSR_FS_BASE; val[0] = self.regs.fs_base
        idx[1] = MSR_GS_BASE; val[1] = self.regs.gs_base
        if pv_set_msrs(self.hw.fd, 2, idx, val) != 2:
            raise _oserror("KVM_SET_MSRS(FS/GS base)")
        self.bases_dirty = 0
        return 0

    # -- the run loop -----------------------------------------------------------

    cdef int _enter(self) except -1:
        """Load the application's registers for the next KVM_RUN."""
        cdef kvm_regs *k = &self.hw.run_page.s.regs.regs
        cdef bint flush = self.hw.must_publish
        cdef uint64_t *frame
        if flush:
            self.vm.clock += 1
            self.hw.entry_clock = self.vm.clock
            if not self.hw.holds_root:     # it may hold this root from now on
                self.hw.holds_root = 1
                self.hw.loaded_clock = self.hw.entry_clock
            (<uint64_t *>(self.vm.priv + self.hw.rsp0 + 24))[0] = self.tables.cr3
            self.hw.must_publish = 0
            self.hw.cr3_tables = self.tables
        if self.bases_dirty:
            self._write_bases()
        _regs_out(k, &self.regs)
        if self.hw.mode == MODE_USER and not flush:
            k.rip = self.regs.rip
            k.rflags = _user_flags(self.regs.eflags)
        elif self.hw.mode == MODE_USER:
            # At CPL3 the only way to CR3 is an exception: the ud2 at
            # TRAMP_FLUSH, whose stub reloads CR3 and irets to the slots.
            frame = <uint64_t *>(self.vm.priv + self.hw.rsp0)
            frame[0] = self.regs.rip
            frame[1] = _user_flags(self.regs.eflags)
            frame[2] = self.regs.rsp
            k.rip = C_TRAMP_FLUSH
            k.rflags = _user_flags(self.regs.eflags) & ~0x100ULL
        else:
            frame = <uint64_t *>(self.vm.priv + self.hw.rsp0 - 40)
            frame[0] = self.regs.rip
            frame[1] = SEL_UCODE
            frame[2] = _user_flags(self.regs.eflags)
            frame[3] = self.regs.rsp
            frame[4] = SEL_UDATA
            k.rsp = KBASE + self.hw.rsp0 - 40
            k.rip = KBASE + OFF_KCODE + (K_FLUSH_IRET if flush else K_IRET)
            k.rflags = 2
        self.hw.run_page.kvm_dirty_regs = KVM_SYNC_X86_REGS
        return 0

    cdef int _kvm_run(self) except -1:
        """KVM_RUN until an exit (0), an interrupt() (1) or the pool taking the Hw back (2)."""
        cdef int r
        cdef Hw hw = self.hw
        cdef int fd = hw.fd
        cdef timespec now
        while True:
            clock_gettime(CLOCK_MONOTONIC, &now)
            hw.entered_ns = now.tv_sec * 1000000000LL + now.tv_nsec
            hw.running_tid = pv_gettid()
            with nogil:
                r = ioctl(fd, KVM_RUN, 0)
            hw.running_tid = 0
            if r == 0:
                self.exits += 1
                self._entered()
                return 0
            if errno != EINTR and errno != EAGAIN:
                raise _oserror("KVM_RUN")
            # A host signal or a kick. Registers in kvm_run are current and
            # what we wrote is loaded: nothing is dirty any more.
            self.hw.run_page.kvm_dirty_regs = 0
            self.hw.run_page.immediate_exit = 0
            where = self._where()
            if where != WHERE_NOT_ENTERED:
                self._entered()
            if self.interrupted and where != WHERE_OUR_CODE:
                self._stopped_at(where)
                return 1
            if hw.preempt and where != WHERE_OUR_CODE:
                self._stopped_at(where)
                return 2
            PyErr_CheckSignals()

    def interrupt(self):
        """From any thread: make run() return EXIT_INTERRUPT soon: at once if
        inside KVM_RUN (immediate_exit covers the race before it enters), and
        at once if waiting for a Hw (the pool lets it go without one)."""
        self.interrupted = 1
        if self._holds():
            self.hw.kick()
        self.pool.wake(self)

    property interrupt_requested:
        """interrupt() was called and run() has not returned EXIT_INTERRUPT for it yet."""
        def __get__(self): return self.interrupted

    cdef int _complete_pending(self) except -1:
        """Finish an MMIO/PIO exit without entering the guest (immediate_exit)."""
        cdef int r
        self.hw.run_page.immediate_exit = 1
        r = ioctl(self.hw.fd, KVM_RUN, 0)
        self.hw.run_page.immediate_exit = 0
        if r == 0 or errno != EINTR:
            raise KvmError("KVM_RUN with immediate_exit did not return EINTR")
        return 0

    cdef int _probe_syscall_cpl(self) except -1:
        cdef kvm_sregs s
        if ioctl(self.hw.fd, KVM_GET_SREGS, &s) != 0:
            raise _oserror("KVM_GET_SREGS")
        self.vm.syscall_cpl = s.cs.selector & 3
        return 0

    cdef int _switch(self) except -1:
        """Run the application until a syscall or a signal-worthy fault."""
        cdef kvm_run *run = self.hw.run_page
        cdef kvm_regs *k = &run.s.regs.regs
        cdef uint32_t reason
        cdef int stop
        if self.interrupted:
            self.interrupted = 0
            return EXIT_INTERRUPT
        self._enter()
        stop = self._kvm_run()
        if stop == 2:
            return EXIT_PREEMPTED
        if stop:
            self.interrupted = 0
            return EXIT_INTERRUPT
        reason = run.exit_reason
        if reason == KVM_EXIT_MMIO:
            if (run.mmio.phys_addr == self.vm.mmio_gpa and run.mmio.is_write
                    and k.rip == C_TRAMP_RET):
                return self._on_syscall(k)
            return self._on_stray_mmio(k)
        if reason == KVM_EXIT_IO and run.io.port == EXC_PORT and run.io.direction == KVM_EXIT_IO_OUT:
            return self._on_exception(k)
        raise KvmError(self._describe(reason))

    cdef void _entered(self):
        """The guest ran since _enter: it loaded the root that entry published."""
        if self.hw.entry_clock:
            self.hw.loaded_clock = self.hw.entry_clock
            self.hw.holds_root = 1
            self.hw.entry_clock = 0

    cdef int _where(self):
        """Where a vCPU stopped by EINTR is.

        WHERE_NOT_ENTERED: no application instruction ran since _enter (still
        at the entry, or in the CR3-loading paths, which have no effect the
        application can see): self.regs is the state. WHERE_USER: in
        application code at CPL3. WHERE_OUR_CODE: in the syscall trampoline or
        an exception stub, whose exit comes before any application code."""
        cdef kvm_regs *k = &self.hw.run_page.s.regs.regs
        cdef uint64_t kcode = KBASE + OFF_KCODE
        cdef uint64_t *frame = <uint64_t *>(self.vm.priv + self.hw.rsp0 - 56)   # vec err rip
        cdef uint64_t off
        if k.rip == C_TRAMP_FLUSH:
            return WHERE_NOT_ENTERED
        if k.rip < USER_TOP:
            return WHERE_OUR_CODE if (k.rip & ~(<uint64_t>PAGE - 1)) == C_TRAMP_VA else WHERE_USER
        off = k.rip - kcode
        if off < K_COMMON or K_FLUSH_BRANCH <= off < K_REPORT:
            return WHERE_NOT_ENTERED            # k_iret, k_flush_iret, the #UD flush
        if off < K_FLUSH_BRANCH and frame[0] == 6 and frame[2] == C_TRAMP_FLUSH:
            return WHERE_NOT_ENTERED            # common, deciding on that flush
        return WHERE_OUR_CODE

    cdef void _stopped_at(self, int where):
        """Make self.regs/mode describe a vCPU stopped at ``where`` (not our code).

        Not entered: self.regs still holds the state, and the CR3 switch must
        be redone. In user code: take its registers; it is at CPL3, so it
        resumes by setting them directly."""
        cdef kvm_regs *k = &self.hw.run_page.s.regs.regs
        if where == WHERE_NOT_ENTERED:
            self.hw.must_publish = 1
            self.hw.entry_clock = 0
            self.hw.cr3_tables = None       # CR3 may still hold the previous root
            return
        _regs_in(&self.regs, k)
        self.regs.rip = k.rip
        self.regs.eflags = k.rflags
        self.hw.mode = MODE_USER

    cdef int _on_syscall(self, kvm_regs *k) except -1:
        self.compat = 0
        if self.vm.syscall_cpl < 0:
            self._probe_syscall_cpl()
        _regs_in(&self.regs, k)
        self.regs.orig_rax = k.rax
        self.regs.rip = k.rcx         # SYSCALL saved the return point here...
        self.regs.eflags = k.r11      # ...and RFLAGS here
        self.hw.mode = MODE_USER if self.vm.syscall_cpl == 3 else MODE_KERNEL
        self.syscalls += 1
        return EXIT_SYSCALL

    cdef int _on_cstar(self, kvm_regs *k, uint64_t *f) except -1:
        """`syscall` in 32-bit compatibility mode (or `sysenter` on Intel): the
        CPU entered CPL0 at CSTAR (SYSENTER_EIP), 0, and faulted there at
        once, on the IST stack. No 32-bit call is served, and this platform
        does not resume compatibility mode: SIGSEGV, as this host gives
        natively (docs/security.md, "Routes into the host kernel"). The
        return point and flags are in rcx and r11, as after `syscall`."""
        _regs_in(&self.regs, k)
        self.regs.rax = f[1]
        self.regs.rip = k.rcx
        self.regs.eflags = k.r11
        self.regs.rsp = f[7]
        self.hw.mode = MODE_KERNEL
        self.vector = 14
        self.error_code = f[3]
        self.compat = 0
        self._signal(SIGSEGV, SI_KERNEL, 0)
        return EXIT_SIGNAL

    cdef int _on_stray_mmio(self, kvm_regs *k) except -1:
        """The application itself touched the MMIO page: SIGSEGV, as for a
        page it may not access. Reads must be completed before the registers
        may change (KVM writes the destination register on re-entry)."""
        cdef uint64_t gpa = self.hw.run_page.mmio.phys_addr
        if not self.hw.run_page.mmio.is_write:
            memset(self.hw.run_page.mmio.data, 0, 8)
            self._complete_pending()
        _regs_in(&self.regs, k)
        self.regs.rip = k.rip
        self.regs.eflags = k.rflags
        self.hw.mode = MODE_USER if (self.vm.syscall_cpl == 3 or self.vm.syscall_cpl < 0) else MODE_KERNEL
        self._signal(SIGSEGV, SEGV_ACCERR, C_MMIO_VA + (gpa - self.vm.mmio_gpa)
                     if gpa - self.vm.mmio_gpa < PAGE else 0)
        return EXIT_SIGNAL

    cdef int _on_exception(self, kvm_regs *k) except -1:
        # Frame pushed by the stub: cr2, rax, vector, error, rip, cs, rflags, rsp, ss.
        cdef uint64_t *f = <uint64_t *>(self.vm.priv + self.hw.rsp0 - 72)
        if k.rsp == KBASE + self.hw.rsp0 - 72 and f[5] == SEL_KCODE and f[2] == 14 and f[4] == 0:
            return self._on_cstar(k, f)
        if k.rsp != KBASE + self.hw.rsp0 - 72 or f[5] != SEL_UCODE and f[5] != SEL_UCODE32:
            raise KvmError("guest kernel fault: vector %d error %#x at rip %#x cs %#x "
                           "(exit rsp %#x)" % (f[2], f[3], f[4], f[5], k.rsp))
        _regs_in(&self.regs, k)
        self.regs.rax = f[1]
        self.regs.rip = f[4]
        self.regs.eflags = f[6]
        self.regs.rsp = f[7]
        self.hw.mode = MODE_KERNEL
        self.vector = <int>f[2]
        self.error_code = f[3]
        self.compat = 0
        if f[5] == SEL_UCODE32:
            # In 32-bit compatibility mode, which this platform does not resume
            # (it returns to 64-bit code): SIGSEGV, whatever the fault.
            self._signal(SIGSEGV, SI_KERNEL, 0)
            return EXIT_SIGNAL
        if f[2] == 14 and f[0] == f[4] and (f[0] & ~0xFFFULL) == VSYSCALL_PAGE and f[3] & 0x14 == 0x14:
            return self._vsyscall(f[0])
        if (f[2] == 6 or f[2] == 13 and f[3] == (0x80 << 3) | 2) and self._int80():
            return EXIT_SYSCALL
        self._decode_exception(<int>f[2], f[3], f[0], f[4])
        return EXIT_SIGNAL

    cdef int _vsyscall(self, uint64_t addr) except -1:
        """A call into the legacy vsyscall page, which our page tables leave
        unmapped: served as the ptrace platform serves it (the stub's seccomp
        filter traps it there) and as Linux emulates it
        (arch/x86/entry/vsyscall/vsyscall_64.c): a misaligned entry, an
        unreadable stack or an output pointer that is not a user address is
        SIGSEGV; otherwise the call is made as a syscall and its `ret` is
        emulated."""
        cdef uint64_t caller = 0, nr
        cdef uint64_t off = addr & 0xFFF
        if off == 0:
            nr = 96                  # gettimeofday(tv, tz)
            if not _user_ok(self.regs.rdi, 16) or not _user_ok(self.regs.rsi, 8):
                self._signal(SIGSEGV, SEGV_MAPERR, self.regs.rdi if not _user_ok(self.regs.rdi, 16)
                             else self.regs.rsi)
                return EXIT_SIGNAL
        elif off == 0x400:
            nr = 201                 # time(tloc)
            if not _user_ok(self.regs.rdi, 8):
                self._signal(SIGSEGV, SEGV_MAPERR, self.regs.rdi)
                return EXIT_SIGNAL
        elif off == 0x800:
            nr = 309                 # getcpu(cpu, node, cache)
            if not _user_ok(self.regs.rdi, 4) or not _user_ok(self.regs.rsi, 4):
                self._signal(SIGSEGV, SEGV_MAPERR, self.regs.rdi if not _user_ok(self.regs.rdi, 4)
                             else self.regs.rsi)
                return EXIT_SIGNAL
        else:
            self._signal(SIGSEGV, SI_KERNEL, 0)
            return EXIT_SIGNAL
        if not self._read_user(self.regs.rsp, <uint8_t *>&caller, 8):
            self._signal(SIGSEGV, SI_KERNEL, 0)
            return EXIT_SIGNAL
        self.regs.orig_rax = nr
        self.regs.rip = caller
        self.regs.rsp += 8
        self.syscalls += 1
        return EXIT_SYSCALL

    cdef bint _int80(self):
        """Whether the fault is an `int $0x80` (the 32-bit system call ABI); then
        it is answered, as the ptrace platform answers it, with ENOSYS.

        The vector is not an interrupt gate the application may use, so the
        CPU raises #GP(0x80 << 3 | 2) at the instruction (kvm_pvm raises #UD
        there); Linux would run an i386 call, gVisor answers ENOSYS. The
        instruction may carry prefixes; rip moves past it as after the call.
        """
        cdef uint8_t code[15]
        cdef int i = 0
        if not self._read_user(self.regs.rip, code, 2):
            return 0
        if not (code[0] == 0xCD and code[1] == 0x80):
            if not self._read_user(self.regs.rip, code, 15):
                return 0
            while i < 13 and (code[i] in (0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0,
                                          0xF2, 0xF3) or 0x40 <= code[i] <= 0x4F):
                i += 1
            if not (code[i] == 0xCD and code[i + 1] == 0x80):
                return 0
        self.compat = 1
        self.regs.orig_rax = self.regs.rax & 0xFFFFFFFFULL
        self.regs.rip += i + 2
        self.syscalls += 1
        return 1

    cdef bint _read_user(self, uint64_t va, uint8_t *out, int n):
        """Copy n bytes the application could read at va; False if it could not."""
        cdef uint64_t *pt
        cdef uint64_t pte = 0, page = 1
        cdef int i
        for i in range(n):
            if (va + i) & ~(<uint64_t>PAGE - 1) != page:
                page = (va + i) & ~(<uint64_t>PAGE - 1)
                if page >= MM_TOP:
                    return 0
                pt = self.tables._find_pt(page)
                pte = pt[(page >> 12) & 511] if pt != NULL else 0
                if pte & (PTE_P | PTE_U) != (PTE_P | PTE_U) or (pte & PTE_ADDR) + PAGE > self.vm.mem_size:
                    return 0
            out[i] = (<uint8_t *>self.vm.mem)[(pte & PTE_ADDR) + ((va + i) & (PAGE - 1))]
        return 1

    cdef void _signal(self, int signo, int code, uint64_t addr):
        self.signo = signo
        self.code = code
        self.addr = addr

    cdef int _decode_exception(self, int vec, uint64_t err, uint64_t cr2, uint64_t rip) except -1:
        """Linux's choice of signal for a user-mode exception (arch/x86/kernel/traps.c)."""
        if vec == 0:
            self._signal(SIGFPE, FPE_INTDIV, rip)
        elif vec == 1:
            self._signal(SIGTRAP, TRAP_TRACE, rip)
        elif vec == 3:
            self._signal(SIGTRAP, SI_KERNEL, 0)
        elif vec == 6:
            self._signal(SIGILL, ILL_ILLOPN, rip)
        elif vec == 11 or vec == 12:
            self._signal(SIGBUS, SI_KERNEL, 0)
        elif vec == 14:
            self._signal(SIGSEGV, SEGV_ACCERR if err & 1 else SEGV_MAPERR, cr2)
        elif vec == 16 or vec == 19:
            self._signal(SIGFPE, FPE_FLTINV, rip)
        elif vec == 17:
            self._signal(SIGBUS, BUS_ADRALN, 0)
        elif vec == 2 or vec == 8 or vec == 18 or vec >= 32:
            raise KvmError("unexpected guest exception %d (error %#x) at rip %#x" % (vec, err, rip))
        else:   # #OF #BR #TS #GP and the rest: what Linux does for #GP
            self._signal(SIGSEGV, SI_KERNEL, 0)
        return 0

    cdef str _describe(self, uint32_t reason):
        cdef kvm_run *run = self.hw.run_page
        cdef kvm_regs *k = &run.s.regs.regs
        where = " at rip %#x rsp %#x" % (k.rip, k.rsp)
        if reason == KVM_EXIT_SHUTDOWN:
            return "guest triple fault (KVM_EXIT_SHUTDOWN)" + where
        if reason == KVM_EXIT_INTERNAL_ERROR:
            return "KVM internal error, suberror %d%s" % (run.internal.suberror, where)
        if reason == KVM_EXIT_FAIL_ENTRY:
            return "KVM entry failure, reason %#x%s" % (
                run.fail_entry.hardware_entry_failure_reason, where)
        if reason == KVM_EXIT_HLT:
            return "guest halted" + where
        if reason == KVM_EXIT_IO:
            return "unexpected port I/O on %#x%s" % (run.io.port, where)
        if reason == KVM_EXIT_MMIO:
            return "unexpected MMIO at %#x%s" % (run.mmio.phys_addr, where)
        return "unexpected KVM exit %d%s" % (reason, where)

    cpdef int switch(self) except -1:
        """One trip into the guest: EXIT_SYSCALL or EXIT_SIGNAL (signo/code/addr)."""
        cdef int kind = EXIT_PREEMPTED
        while kind == EXIT_PREEMPTED:
            if self._claim():           # interrupted while waiting for a Hw
                self.interrupted = 0
                return EXIT_INTERRUPT
            try:
                kind = self._switch()
            finally:
                self.hw.busy = 0
        return kind

    def set_fast_answers(self, dict answers):
        """``{number: rax}``: calls run() answers without dispatch (None: none)."""
        set_fast_answers(&self.fast, answers)

    def run(self, dispatch, int sig=0):
        """Run until a stop that dispatch does not absorb; return its exit kind.

        Each syscall stop is served by ``_common.serve_syscall``: from the
        fast answers, or by ``dispatch(nr, a0..a5)``, which returns rax; if
        dispatch raises, the exception propagates with the vCPU stopped
        after the syscall (orig_rax still the number), so run may be called
        again. ``sig``
        is accepted for the ptrace signature and ignored: on KVM no host
        signal reaches the application; the Sentry builds signal frames.
        """
        cdef int kind
        while True:
            if self._claim():           # interrupted while waiting for a Hw
                self.interrupted = 0
                return <int>EXIT_INTERRUPT      # an int, as every kind run returns
            try:
                kind = self._switch()
            finally:
                self.hw.busy = 0
            if kind == EXIT_PREEMPTED or self.vm.waiters:
                # Others wait for a vCPU: an exit is the moment to let one go.
                self._give_back()
                if kind == EXIT_PREEMPTED:
                    continue
            if kind != EXIT_SYSCALL:
                return kind
            serve_syscall(&self.regs, self.compat, &self.fast, dispatch)

    def release(self):
        """The task is gone: its Hw (if any) back to the pool."""
        self._give_back()

    property hw_index:
        def __get__(self): return self.hw.index if self._holds() else -1

    def siginfo(self):
        """(signo, code, addr) of the last EXIT_SIGNAL."""
        return self.signo, self.code, self.addr

    # -- registers (the same surface as _fastpath.Tracee) -----------------------

    def get_fpregs(self):
        """The FPU/SSE state as the 512-byte FXSAVE image (one KVM_GET_XSAVE)."""
        if not self._holds():
            return self.fpu[:512]
        cdef int n = self.vm.xsave_size
        cdef char *buf = <char *>malloc(n)
        if buf == NULL:
            raise MemoryError()
        try:
            if pv_get_xsave(self.vm.vm_fd, self.hw.fd, buf) != 0:
                raise _oserror("KVM_GET_XSAVE")
            return buf[:512]
        finally:
            free(buf)

    def set_fpregs(self, bytes image):
        """Load a 512-byte FXSAVE image (as rt_sigreturn does). An MXCSR
        with bits the CPU does not support is refused with ValueError (Linux's
        rt_sigreturn then raises SIGSEGV)."""
        if len(image) != 512:
            raise ValueError("FXSAVE image must be 512 bytes")
        cdef int n = self.vm.xsave_size
        cdef char *buf = <char *>malloc(n)
        cdef uint32_t mask
        cdef const char *src = image
        cdef bint held = self._holds()
        if buf == NULL:
            raise MemoryError()
        try:
            if not held:
                memcpy(buf, self.fpu, n)
            elif pv_get_xsave(self.vm.vm_fd, self.hw.fd, buf) != 0:
                raise _oserror("KVM_GET_XSAVE")
            mask = (<uint32_t *>(buf + 28))[0] or 0xFFBF     # the CPU's MXCSR_MASK
            if (<uint32_t *>(src + 24))[0] & ~mask:
                raise ValueError("MXCSR has reserved bits set")
            memcpy(buf, src, 512)
            (<uint32_t *>(buf + 28))[0] = mask
            (<uint64_t *>(buf + 512))[0] |= 3                 # XSTATE_BV: x87 and SSE are in the image
            if not held:
                memcpy(self.fpu, buf, n)
            elif pv_set_xsave(self.hw.fd, buf) != 0:
                raise _oserror("KVM_SET_XSAVE")
        finally:
            free(buf)

    def get_regs(self):
        r = self.regs
        return dict(r)

    def set_regs(self, dict values):
        cdef unsigned long long fs = self.regs.fs_base, gs = self.regs.gs_base
        d = dict(self.regs)
        d.update(values)
        self.regs = d
        self.regs.cs = SEL_UCODE
        self.regs.ss = SEL_UDATA
        if self.regs.fs_base != fs or self.regs.gs_base != gs:
            self.bases_dirty = 1

    property rax:
        def __get__(self): return self.regs.rax
        def __set__(self, unsigned long long v): self.regs.rax = v
    property rip:
        def __get__(self): return self.regs.rip
        def __set__(self, unsigned long long v): self.regs.rip = v
    property rsp:
        def __get__(self): return self.regs.rsp
        def __set__(self, unsigned long long v): self.regs.rsp = v
    property fs_base:
        def __get__(self): return self.regs.fs_base
        def __set__(self, unsigned long long v):
            self.regs.fs_base = v
            self.bases_dirty = 1
    property orig_rax:
        def __get__(self): return self.regs.orig_rax


cdef void _segment(kvm_segment *s, uint16_t sel, uint8_t type, uint8_t l):
    memset(s, 0, sizeof(kvm_segment))
    s.selector = sel
    s.limit = 0xFFFFFFFF
    s.type = type
    s.present = 1
    s.s = 1
    s.l = l
    s.db = 0 if l else 1
    s.g = 1


cdef void _null_segment(kvm_segment *s):
    memset(s, 0, sizeof(kvm_segment))
    s.unusable = 1
