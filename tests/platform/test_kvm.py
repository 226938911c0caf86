"""The KVM platform with no Sentry: a MemoryManager over a KVM address space
runs hand-assembled code (GNU as listings beside each blob)."""

import errno

import pytest

from pyvisor.platform import auto_choice, PLATFORM_NAMES, kvm_usable, make_platform
from pyvisor.platform.base import EXIT_SIGNAL
from pyvisor.sentry.mm.memfile import PAGE, MemoryFileAllocator
from pyvisor.sentry.mm.mm import MM_TOP, MemoryManager

USABLE, WHY = kvm_usable()
needs_kvm = pytest.mark.skipif(not USABLE, reason=WHY or "KVM usable")

CODE, DATA = 0x400000, 0x500000
PROT_R, PROT_RW, PROT_RX = 1, 3, 5
SIGILL, SIGTRAP, SIGFPE, SIGSEGV = 4, 5, 8, 11
SEGV_MAPERR, SEGV_ACCERR, SI_KERNEL = 1, 2, 0x80
KBASE = 0xFFFFFFFF80000000

# mov $100,%ebx; xor %r12d,%r12d; 1: mov $39,%eax; syscall; add %rax,%r12;
# dec %rbx; jnz 1b; mov %r12,%rdi; mov $60,%eax; syscall
GETPID_LOOP = bytes.fromhex("bb640000004531e4b8270000000f054901c448ffcb75f14c89e7b83c0000000f05")
# mov $1,%eax; mov $1,%edi; lea msg(%rip),%rsi; mov $5,%edx; syscall;
# mov %rax,%rdi; mov $60,%eax; syscall; msg: .ascii "hello"
WRITE_HELLO = bytes.fromhex("b801000000bf01000000488d3511000000ba050000000f054889c7b83c0000000f05"
                            "68656c6c6f")
# mov %fs:0,%rdi; mov $1000,%eax; syscall; mov %fs:8,%rdi; mov $60,%eax; syscall
FS_READ = bytes.fromhex("64488b3c2500000000b8e80300000f0564488b3c2508000000b83c0000000f05")
# mov $1000,%eax; syscall; movq $7,0x500010; mov $60,%eax; syscall
TOUCH = bytes.fromhex("b8e80300000f0548c704251000500007000000b83c0000000f05")
# mov $1000,%eax; syscall; mov 0x500010,%rdi; mov $60,%eax; syscall
READ_TOUCH = bytes.fromhex("b8e80300000f05488b3c2510005000b83c0000000f05")
# mov $1000,%eax; syscall; mov %r15,%rdi; mov $60,%eax; syscall
REGS = bytes.fromhex("b8e80300000f054c89ffb83c0000000f05")
UD2 = bytes.fromhex("0f0b")
INT3 = bytes.fromhex("cc")
DIV0 = bytes.fromhex("31c9b80100000099f7f1")        # xor %ecx,%ecx; mov $1,%eax; cltd; div %ecx
PRIVILEGED = {
    "hlt": bytes.fromhex("f4"),
    "cli": bytes.fromhex("fa"),
    "mov %rax,%cr3": bytes.fromhex("0f22d8"),
    "wrmsr": bytes.fromhex("0f30"),
    "out %al,$0x12": bytes.fromhex("e612"),
    "sysretq": bytes.fromhex("480f07"),
    "lgdt (%rsp)": bytes.fromhex("0f011424"),
    # mov $0x18,%eax; mov %eax,%ds: the kernel data selector
    "mov kernel selector to ds": bytes.fromhex("b8180000008ed8488b042500005000"),
    "mov kernel selector to ss": bytes.fromhex("b8180000008ed0"),
}
# movabs $KBASE+0x2000,%rax; jmp *%rax: into the kernel code page
JMP_KERNEL = bytes.fromhex("48b800200080ffffffffffe0")
# movabs $KBASE+0x1000,%rax; mov (%rax),%rax: read the IDT
READ_KERNEL = bytes.fromhex("48b800100080ffffffff488b00")
# movabs $0x7fffffffd000,%rax; movl $1,(%rax) / mov (%rax),%rax: the MMIO page
MMIO_WRITE = bytes.fromhex("48b800d0ffffff7f0000c70001000000")
MMIO_READ = bytes.fromhex("48b800d0ffffff7f0000488b00")
# movabs $0x7fffffffc010,%rax; jmp *%rax: the trampoline's CR3-reload ud2
JMP_TRAMP_FLUSH = bytes.fromhex("48b810c0ffffff7f0000ffe0")


class Exited(Exception):
    def __init__(self, status):
        super().__init__(status)
        self.status = status


@pytest.fixture()
def kvm():
    alloc = MemoryFileAllocator(1 << 30)
    platform = make_platform("kvm", alloc.file, pin_cpu=False)
    aspace = platform.new_address_space()
    mm = MemoryManager(alloc, aspace)
    yield platform, aspace, mm
    mm.release()
    aspace.release()
    platform.close()


def load(aspace, mm, code, data=True):
    mm.map_anon(CODE, PAGE, PROT_RX)
    mm.write_forced(CODE, code)
    if data:
        mm.map_anon(DATA, PAGE, PROT_RW)
    aspace.context.regs.set_regs(dict(rip=CODE, rsp=DATA + PAGE, eflags=0x202))


def run(aspace, handler=None):
    """Run until exit(2) (returns its status) or a signal (returns the Exit)."""
    calls = []

    def dispatch(nr, *args):
        calls.append(nr)
        if nr == 60:
            raise Exited(args[0])
        return handler(nr, *args) if handler else -errno.ENOSYS

    try:
        return aspace.context.run(dispatch), calls
    except Exited as e:
        return e.status, calls


@needs_kvm
def test_getpid_loop_answered_by_dispatch(kvm):
    _, aspace, mm = kvm
    load(aspace, mm, GETPID_LOOP)
    status, calls = run(aspace, lambda nr, *a: 7 if nr == 39 else -1)
    assert status == 700
    assert calls == [39] * 100 + [60]
    assert aspace.context.regs.orig_rax == 60


@needs_kvm
def test_fast_pid_is_answered_without_dispatch(kvm):
    _, aspace, mm = kvm
    load(aspace, mm, GETPID_LOOP)
    aspace.context.set_fast_answers({39: 3})
    status, calls = run(aspace)
    assert (status, calls) == (300, [60])


@needs_kvm
def test_write_reads_the_buffer_through_copy_in(kvm):
    _, aspace, mm = kvm
    load(aspace, mm, WRITE_HELLO)
    seen = []

    def handler(nr, fd, buf, n, *_):
        seen.append((nr, fd, mm.copy_in(buf, n)))
        return n
    status, _ = run(aspace, handler)
    assert seen == [(1, 1, b"hello")]
    assert status == 5


@needs_kvm
def test_fs_base_is_visible_and_can_change_between_calls(kvm):
    _, aspace, mm = kvm
    load(aspace, mm, FS_READ)
    mm.copy_out(DATA, (0x1122334455667788).to_bytes(8, "little") + (99).to_bytes(8, "little"))
    regs = aspace.context.regs
    regs.fs_base = DATA
    seen = []

    def handler(nr, a0, *_):
        seen.append(a0)
        regs.fs_base = DATA - 8          # as arch_prctl(ARCH_SET_FS) would
        return 0
    status, _ = run(aspace, handler)
    assert seen == [0x1122334455667788]
    assert status == 0x1122334455667788   # %fs:8 under the new base
    assert regs.get_regs()["fs_base"] == DATA - 8


@needs_kvm
@pytest.mark.parametrize("change, code", [
    (lambda mm: mm.protect(DATA, DATA + PAGE, PROT_R), SEGV_ACCERR),
    (lambda mm: mm.protect(DATA, DATA + PAGE, 0), SEGV_ACCERR),
    (lambda mm: mm.unmap(DATA, DATA + PAGE), SEGV_MAPERR),
])
def test_write_after_mprotect_or_munmap_faults(kvm, change, code):
    _, aspace, mm = kvm
    load(aspace, mm, TOUCH)
    mm.copy_out(DATA + 0x10, b"x")       # the page was used (and shadowed) before

    def handler(nr, *_):
        change(mm)
        return 0
    ex, _ = run(aspace, handler)
    assert (ex.kind, ex.signo, ex.code, ex.addr) == (EXIT_SIGNAL, SIGSEGV, code, DATA + 0x10)
    assert aspace.context.regs.rip == CODE + 7     # the faulting movq


@needs_kvm
def test_read_of_prot_none_faults_and_remap_is_seen(kvm):
    _, aspace, mm = kvm
    load(aspace, mm, READ_TOUCH)

    def handler(nr, *_):
        mm.protect(DATA, DATA + PAGE, 0)
        return 0
    ex, _ = run(aspace, handler)
    assert (ex.signo, ex.code, ex.addr) == (SIGSEGV, SEGV_ACCERR, DATA + 0x10)
    # A fresh page at the same address: the old translation must be gone.
    mm.map_anon(DATA, PAGE, PROT_RW)
    mm.copy_out(DATA + 0x10, (4242).to_bytes(8, "little"))
    status, _ = run(aspace)
    assert status == 4242


@needs_kvm
@pytest.mark.parametrize("code, signo, si_code, addr", [
    (UD2, SIGILL, 2, CODE),               # ILL_ILLOPN at the ud2
    (INT3, SIGTRAP, SI_KERNEL, 0),
    (DIV0, SIGFPE, 1, CODE + 8),          # FPE_INTDIV at the div
])
def test_faults_become_signals(kvm, code, signo, si_code, addr):
    _, aspace, mm = kvm
    load(aspace, mm, code)
    ex, _ = run(aspace)
    assert (ex.kind, ex.signo, ex.code, ex.addr) == (EXIT_SIGNAL, signo, si_code, addr)


@needs_kvm
@pytest.mark.parametrize("name", sorted(PRIVILEGED))
def test_privileged_instructions_give_sigsegv(kvm, name):
    _, aspace, mm = kvm
    load(aspace, mm, PRIVILEGED[name])
    ex, calls = run(aspace)
    assert (ex.kind, ex.signo) == (EXIT_SIGNAL, SIGSEGV)
    assert calls == []


@needs_kvm
@pytest.mark.parametrize("code, addr", [
    (JMP_KERNEL, KBASE + 0x2000),
    (READ_KERNEL, KBASE + 0x1000),
])
def test_supervisor_area_is_out_of_reach(kvm, code, addr):
    _, aspace, mm = kvm
    load(aspace, mm, code)
    ex, _ = run(aspace)
    assert (ex.signo, ex.code, ex.addr) == (SIGSEGV, SEGV_ACCERR, addr)


@needs_kvm
@pytest.mark.parametrize("code", [MMIO_WRITE, MMIO_READ, JMP_TRAMP_FLUSH])
def test_exit_machinery_touched_directly_gives_sigsegv_or_sigill(kvm, code):
    _, aspace, mm = kvm
    load(aspace, mm, code)
    ex, calls = run(aspace)
    assert ex.kind == EXIT_SIGNAL and ex.signo in (SIGSEGV, SIGILL)
    assert calls == []
    # The vCPU is still good: the same context runs a program to its end.
    mm.write_forced(CODE, GETPID_LOOP)
    aspace.context.regs.set_regs(dict(rip=CODE))
    status, _ = run(aspace, lambda *a: 1)
    assert status == 100


@needs_kvm
def test_registers_survive_a_syscall_and_set_regs_takes(kvm):
    _, aspace, mm = kvm
    load(aspace, mm, REGS)
    regs = aspace.context.regs
    values = {name: 0x1000 + i for i, name in enumerate(
        ("r15", "r14", "r13", "r12", "rbp", "rbx", "r10", "r9", "r8", "rdx", "rsi", "rdi"))}
    regs.set_regs(values)
    seen = {}

    def handler(nr, *_):
        seen.update(regs.get_regs())
        regs.set_regs({"r15": 0xABCDEF})
        return 0
    status, _ = run(aspace, handler)
    assert {k: seen[k] for k in values} == values
    assert seen["rcx"] == seen["rip"] == CODE + 7      # SYSCALL's return point
    assert seen["orig_rax"] == 1000 and seen["cs"] == 0x33 and seen["ss"] == 0x2b
    assert status == 0xABCDEF


@needs_kvm
def test_dispatch_exception_propagates_and_run_resumes(kvm):
    _, aspace, mm = kvm
    load(aspace, mm, REGS)

    def boom(nr, *_):
        raise KeyError("sentry bug")
    with pytest.raises(KeyError):
        run(aspace, boom)
    regs = aspace.context.regs
    assert regs.rip == CODE + 7 and regs.orig_rax == 1000
    regs.set_regs({"r15": 5})
    status, _ = run(aspace)
    assert status == 5


@needs_kvm
def test_syscall_handler_can_redirect_rip_and_rsp(kvm):
    _, aspace, mm = kvm
    load(aspace, mm, REGS)
    mm.write_forced(CODE + 0x100, GETPID_LOOP)
    regs = aspace.context.regs

    def handler(nr, *_):
        if nr == 1000:                    # as a signal delivery would
            regs.rip = CODE + 0x100
            regs.rsp = DATA + 0x800
        return 2
    status, _ = run(aspace, handler)
    assert status == 200


@needs_kvm
def test_triple_fault_raises_kvm_error(kvm):
    platform, aspace, mm = kvm
    from pyvisor.platform.kvm import KvmError
    load(aspace, mm, UD2)
    platform.vm.write_private(0x1000, bytes(4096))      # no IDT any more
    with pytest.raises(KvmError, match="triple fault|internal error|unexpected"):
        run(aspace)


@needs_kvm
def test_two_address_spaces_and_vcpu_reuse(kvm):
    platform, aspace, mm = kvm
    load(aspace, mm, GETPID_LOOP)
    alloc = mm.alloc
    other = platform.new_address_space()
    mm2 = MemoryManager(alloc, other)
    load(other, mm2, WRITE_HELLO)
    assert run(aspace, lambda *a: 1)[0] == 100
    assert run(other, lambda nr, fd, buf, n, *_: n)[0] == 5
    mm2.release()
    other.release()
    third = platform.new_address_space()       # reuses the released vCPU
    mm3 = MemoryManager(alloc, third)
    load(third, mm3, GETPID_LOOP)
    assert run(third, lambda *a: 2)[0] == 200
    mm3.release()
    third.release()


@needs_kvm
def test_page_tables_follow_map_protect_unmap(kvm):
    platform, aspace, mm = kvm
    t = aspace.tables
    base = platform.vm.pt_pages
    mm.map_anon(0x10000000, 3 << 20, PROT_RW)          # spans two PTs
    pte = t.translate(0x10000000 + PAGE)
    assert pte & 1 and pte & 2 and pte & 4 and pte >> 63     # present, W, user, NX
    mm.protect(0x10000000, 0x10000000 + PAGE, PROT_RX)
    pte = t.translate(0x10000000)
    assert pte & 1 and not pte & 2 and not pte >> 63
    mm.protect(0x10000000, 0x10000000 + PAGE, 0)
    assert t.translate(0x10000000) & 5 == 1                 # present, supervisor: ACCERR
    mm.unmap(0x10000000, 0x10000000 + (3 << 20))
    assert t.translate(0x10000000) == 0
    kept = platform.vm.pt_pages
    assert kept <= base + 4             # PDPT, PD, two PTs: emptied tables stay...
    mm.map_anon(0x10000000, 3 << 20, PROT_RW)
    assert platform.vm.pt_pages == kept                     # ...and are used again


@needs_kvm
def test_retired_tables_are_reused_after_a_shadow_reset(kvm):
    platform, aspace, mm = kvm
    vm = platform.vm
    load(aspace, mm, GETPID_LOOP)
    assert run(aspace, lambda *a: 1)[0] == 100     # its vCPU keeps holding this live root
    resets = vm.shadow_resets
    for i in range(30):             # each round: 200 PTs, run, retired with the space
        space = platform.new_address_space()
        m = MemoryManager(mm.alloc, space)
        load(space, m, GETPID_LOOP)
        m.map_anon(0x20000000, 200 << 21, PROT_RW)
        assert run(space, lambda *a: 1)[0] == 100
        m.release()
        space.release()
    assert vm.shadow_resets > resets


@needs_kvm
def test_bad_ranges_are_refused(kvm):
    _, aspace, _ = kvm
    for args in ((0x1001, PAGE, 3, 0), (0x1000, 0, 3, 0), (MM_TOP, PAGE, 3, 0),
                 (MM_TOP - PAGE, 2 * PAGE, 3, 0), (0x1000, PAGE, 3, 1 << 40), (0x1000, PAGE, 3, 5)):
        with pytest.raises(ValueError):
            aspace.map(*args)
    with pytest.raises(ValueError):
        aspace.unmap(0x1000, 123)
    with pytest.raises(ValueError):
        aspace.protect(MM_TOP, PAGE, 1)


def test_make_platform_names():
    alloc = MemoryFileAllocator(16 * PAGE)
    with pytest.raises(ValueError):
        make_platform("bochs", alloc.file)
    assert set(PLATFORM_NAMES) == {"ptrace", "kvm", "auto"}
    p = make_platform("auto", alloc.file, pin_cpu=False)
    assert p.name == auto_choice()[0]
    p.close()


def test_auto_prefers_ptrace_without_hardware_virtualisation(monkeypatch):
    import pyvisor.platform as plat
    monkeypatch.setattr(plat, "hardware_virtualization", lambda: False)
    name, why = plat.auto_choice()
    assert name == "ptrace" and why
    monkeypatch.setattr(plat, "hardware_virtualization", lambda: True)
    monkeypatch.setattr(plat, "kvm_usable", lambda: (True, ""))
    assert plat.auto_choice()[0] == "kvm"
    monkeypatch.setattr(plat, "kvm_usable", lambda: (False, "no /dev/kvm"))
    assert plat.auto_choice() == ("ptrace", "KVM unusable: no /dev/kvm")


def test_kvm_usable_says_why():
    ok, why = kvm_usable()
    assert isinstance(ok, bool)
    assert ok == (why == "")


def test_kvm_usable_without_dev_kvm(monkeypatch):
    from pyvisor.platform import kvm as kvm_module
    monkeypatch.setattr(kvm_module.os.path, "exists", lambda p: False)
    ok, why = kvm_module.kvm_usable()
    assert not ok and "/dev/kvm" in why
    with pytest.raises(OSError, match="/dev/kvm"):
        kvm_module.KvmPlatform(MemoryFileAllocator(16 * PAGE).file, pin_cpu=False)


@needs_kvm
def test_interrupt_stops_a_spinning_guest_from_another_thread(kvm):
    import threading
    from pyvisor.platform.base import EXIT_INTERRUPT
    _, aspace, mm = kvm
    load(aspace, mm, bytes.fromhex("ebfe"))            # 1: jmp 1b
    timer = threading.Timer(0.05, aspace.context.interrupt)
    timer.start()
    ex, _ = run(aspace)
    timer.join()
    assert ex.kind == EXIT_INTERRUPT
    assert aspace.context.regs.rip == CODE
    aspace.context.interrupt()                          # pending before run: returns at once
    assert run(aspace)[0].kind == EXIT_INTERRUPT
    mm.write_forced(CODE, GETPID_LOOP)                  # and the vCPU still runs code
    assert run(aspace, lambda *a: 1)[0] == 100


# The guest code of pyvisor/_kvm.pyx (TRAMP_CODE, KCODE) from its source.
GUEST_S = r"""
/* Guest code for pyvisor's KVM platform; assembled once, bytes embedded in _kvm.pyx. */
    .set TRAMP_VA, 0x7FFFFFFFC000
    .set MMIO_VA,  0x7FFFFFFFD000
    .set TRAMP_FLUSH, TRAMP_VA + 16
    .text
    .code64
/* --- user trampoline page (LSTAR), user R-X --- */
tramp:
    movabs %eax, MMIO_VA        /* the one store that exits (KVM_EXIT_MMIO) */
tramp_ret:
    ud2
    .org tramp + 16
tramp_flush:
    ud2                         /* "reload CR3, then go to the resume slots" */
    .org tramp + 32
tramp_end:
/* --- kernel code page, supervisor R-X --- */
kcode:
k_iret:
    iretq
k_flush_iret:
    push %rax
    mov 72(%rsp), %rax          /* the CR3 slot, RSP0 + 24 */
    mov %rax, %cr3
    pop %rax
    iretq
common:
    push %rax                   /* 0 rax, 8 vec, 16 err, 24 rip, 32 cs, 40 rflags, 48 rsp, 56 ss */
    movabs $TRAMP_FLUSH, %rax
    cmp %rax, 24(%rsp)
    jne 1f
    cmpq $6, 8(%rsp)
    jne 1f
    mov 88(%rsp), %rax          /* the CR3 slot, RSP0 + 24 */
    mov %rax, %cr3
    mov 64(%rsp), %rax
    mov %rax, 24(%rsp)
    mov 72(%rsp), %rax
    mov %rax, 40(%rsp)
    mov 80(%rsp), %rax
    mov %rax, 48(%rsp)
    pop %rax
    add $16, %rsp
    iretq
1:  mov %cr2, %rax
    push %rax                   /* 0 cr2, 8 rax, 16 vec, 24 err, 32 rip, ... 64 ss */
    out %al, $0x12              /* KVM_EXIT_IO: the VMM reads the frame */
2:  hlt
    jmp 2b
    .p2align 4
vectors:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .p2align 4
    .if (\v == 8) || (\v >= 10 && \v <= 14) || (\v == 17) || (\v == 21) || (\v == 29) || (\v == 30)
    .else
    push $0
    .endif
    push $\v
    jmp common
    .endr
    .p2align 4
spurious:
    push $0
    push $255
    jmp common
kcode_end:
"""


def test_guest_code_matches_its_assembly_source(tmp_path):
    import shutil
    import subprocess
    from pyvisor import _kvm
    if not (shutil.which("as") and shutil.which("objcopy")):
        pytest.skip("GNU as/objcopy not installed")
    (tmp_path / "g.S").write_text(GUEST_S)
    subprocess.run(["as", "--64", "-o", str(tmp_path / "g.o"), str(tmp_path / "g.S")], check=True)
    subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(tmp_path / "g.o"),
                    str(tmp_path / "g.bin")], check=True)
    code = (tmp_path / "g.bin").read_bytes()
    assert code[:32] == _kvm.TRAMP_CODE
    assert code[32:] == _kvm.KCODE


# movq %xmm0,%rdi; mov $60,%eax; syscall
XMM0_EXIT = bytes.fromhex("66480f7ec7b83c0000000f05")
# mov $0x1234,%eax; movq %rax,%xmm1; mov $1000,%eax; syscall; ud2
XMM1_SET = bytes.fromhex("b83412000066480f6ec8b8e80300000f050f0b")
# 1: mov 0x500000,%rax; jmp 1b
SPIN_READ = bytes.fromhex("488b042500005000ebf6")


@needs_kvm
def test_fpregs_are_the_fxsave_image(kvm):
    _, aspace, mm = kvm
    load(aspace, mm, XMM1_SET)
    regs = aspace.context.regs
    images = []

    def handler(nr, *_):
        images.append(regs.get_fpregs())
        return 0
    run(aspace, handler)
    image = images[0]
    assert len(image) == 512
    assert image[160 + 16:160 + 24] == (0x1234).to_bytes(8, "little")     # xmm1
    new = bytearray(image)
    new[160:168] = (0xFEEDFACE).to_bytes(8, "little")                     # xmm0
    junk = bytearray(new)
    junk[24:28] = (0xFFFFFFFF).to_bytes(4, "little")                      # reserved MXCSR bits
    with pytest.raises(ValueError):     # rt_sigreturn makes that SIGSEGV, as Linux does
        regs.set_fpregs(bytes(junk))
    regs.set_fpregs(bytes(new))
    mm.write_forced(CODE, XMM0_EXIT)
    regs.set_regs(dict(rip=CODE))
    assert run(aspace)[0] == 0xFEEDFACE
    with pytest.raises(ValueError):
        regs.set_fpregs(b"short")


@needs_kvm
def test_mprotect_stops_another_thread_spinning_on_the_page(kvm):
    """The shootdown: an edit from one task waits until no other vCPU runs on the old tables."""
    import threading
    platform, aspace, mm = kvm
    load(aspace, mm, SPIN_READ)                 # the main thread's context is not run
    result = {}

    def other_task():
        ctx = platform.adopt_thread(aspace, aspace.clone_thread())
        ctx.regs.set_regs(dict(rip=CODE, rsp=DATA + PAGE, eflags=0x202))
        started.set()
        result["exit"] = ctx.run(lambda *a: -errno.ENOSYS)
        aspace.drop()
    started = threading.Event()
    th = threading.Thread(target=other_task)
    th.start()
    started.wait(5)
    threading.Event().wait(0.05)                # let it spin in the guest
    mm.protect(DATA, DATA + PAGE, 0)            # returns only once the spinner is out
    th.join(5)
    assert not th.is_alive()
    ex = result["exit"]
    assert (ex.kind, ex.signo, ex.code, ex.addr) == (EXIT_SIGNAL, SIGSEGV, SEGV_ACCERR, DATA)


@needs_kvm
def test_fork_shape_clone_process_adopt_attach(kvm):
    platform, aspace, mm = kvm
    load(aspace, mm, READ_TOUCH)
    mm.copy_out(DATA + 0x10, (77).to_bytes(8, "little"))
    child_mm = mm.fork()
    child_space = platform.adopt_process(aspace.clone_process())
    child_mm.attach(child_space)
    mm.copy_out(DATA + 0x10, (88).to_bytes(8, "little"))        # the parent's own copy
    child_space.context.regs.set_regs(dict(rip=CODE, rsp=DATA + PAGE, eflags=0x202))
    assert run(child_space)[0] == 77
    assert run(aspace)[0] == 88
    child_mm.release()
    child_space.drop()
    with pytest.raises(TypeError):
        platform.adopt_process("not a token")


@needs_kvm
def test_kill_makes_run_report_gone(kvm):
    from pyvisor.platform.base import EXIT_GONE
    _, aspace, mm = kvm
    load(aspace, mm, GETPID_LOOP)
    aspace.kill()
    assert run(aspace)[0].kind == EXIT_GONE


def test_cli_kvm_unusable_exits_2_with_one_sentence():
    import subprocess
    import sys
    launcher = ("import sys, pyvisor.platform as p\n"
                "p.kvm_usable = lambda: (False, 'there is no /dev/kvm on this machine.')\n"
                "from pyvisor.cli import main\n"
                "sys.exit(main(sys.argv[1:]))\n")
    r = subprocess.run([sys.executable, "-c", launcher, "run", "--platform", "kvm", "--", "/bin/true"],
                       capture_output=True, timeout=60, cwd="/")
    assert r.returncode == 2
    assert r.stderr == (b"pyvisor: the kvm platform cannot run here: "
                        b"there is no /dev/kvm on this machine.\n")
