"""Page-table edits on the KVM platform against a guest that has already
walked (and, under a shadow MMU, shadowed) the pages: tables are edited in
place and the old frames invalidated on the host (MADV_DONTNEED, KVM's MMU
notifier), and the next instruction of every thread must see the edit. No
Sentry: a MemoryManager over a KVM address space runs one hand-assembled
program (GNU as listing beside it)."""

import errno
import threading

import pytest

from pyvisor.platform import kvm_usable, make_platform
from pyvisor.platform.base import EXIT_SIGNAL
from pyvisor.sentry.mm.memfile import PAGE, MemoryFileAllocator
from pyvisor.sentry.mm.mm import MemoryManager

USABLE, WHY = kvm_usable()
pytestmark = pytest.mark.skipif(not USABLE, reason=WHY or "KVM usable")

CODE, STACK = 0x400000, 0x500000
BASE = 0x40000000                     # 2 MiB aligned: one page table covers 512 pages
PROT_R, PROT_RW, PROT_RX = 1, 3, 5
SIGSEGV, SEGV_MAPERR, SEGV_ACCERR = 11, 1, 2

# touch_all: mov %rbx,%rdx; mov %r8,%rsi
#   1: movq $1,(%rdx); add $4096,%rdx; dec %rsi; jnz 1b    (write r8 pages from rbx)
#   mov $1000,%eax; syscall                                 (the handler edits)
#   mov (%rbx,%r9),%rdi; movq $2,(%rbx,%r9)                 (read, then write, one page)
#   mov $60,%eax; syscall                                   (exit with what was read)
TOUCH_ALL = bytes.fromhex("4889da4c89c648c702010000004881c20010000048ffce75edb8e80300000f05"
                          "4a8b3c0b4ac7040b02000000b83c0000000f05")
# 1: mov (%rbx),%rax; jmp 1b
SPIN_READ_RBX = bytes.fromhex("488b03ebfb")


class Exited(Exception):
    pass


@pytest.fixture()
def kvm():
    alloc = MemoryFileAllocator(1 << 30)
    platform = make_platform("kvm", alloc.file, pin_cpu=False)
    aspace = platform.new_address_space()
    mm = MemoryManager(alloc, aspace)
    mm.map_anon(CODE, PAGE, PROT_RX)
    mm.write_forced(CODE, TOUCH_ALL)
    mm.map_anon(STACK, PAGE, PROT_RW)
    yield platform, aspace, mm
    mm.release()
    aspace.release()
    platform.close()


def run_touch(aspace, mm, npages, probe, edit):
    """Write npages from BASE, let ``edit(mm)`` run at the syscall, then read
    and write BASE + probe pages: (exit status or None, Exit or None)."""
    mm.map_anon(BASE, npages * PAGE, PROT_RW)
    aspace.context.regs.set_regs(dict(rip=CODE, rsp=STACK + PAGE, eflags=0x202,
                                      rbx=BASE, r8=npages, r9=probe * PAGE))

    def dispatch(nr, *args):
        if nr == 60:
            raise Exited(args[0])
        assert nr == 1000
        edit(mm)
        return 0
    try:
        return None, aspace.context.run(dispatch)
    except Exited as e:
        return e.args[0], None


def _put(mm, page, value):
    mm.copy_out(BASE + page * PAGE, value.to_bytes(8, "little"))


def fresh_page(page, value):
    def edit(mm):
        mm.map_anon(BASE + page * PAGE, PAGE, PROT_RW)
        _put(mm, page, value)
    return edit


def fresh_range(npages, page, value):
    def edit(mm):
        mm.map_anon(BASE, npages * PAGE, PROT_RW)
        _put(mm, page, value)
    return edit


@pytest.mark.parametrize("npages, probe, edit, signal", [
    (8, 3, lambda mm: mm.unmap(BASE + 3 * PAGE, BASE + 4 * PAGE), (SEGV_MAPERR, 3)),
    # the platform alone, the memory not freed (as when a fork child still
    # shares it): no hole punched in the memory file helps here
    (8, 3, lambda mm: mm.aspace.unmap(BASE + 3 * PAGE, PAGE), (SEGV_MAPERR, 3)),
    (100, 50, lambda mm: mm.aspace.unmap(BASE + 10 * PAGE, 80 * PAGE), (SEGV_MAPERR, 50)),
    (8, 3, lambda mm: mm.protect(BASE + 3 * PAGE, BASE + 4 * PAGE, PROT_R), (SEGV_ACCERR, 3)),
    (8, 3, lambda mm: mm.protect(BASE + 3 * PAGE, BASE + 4 * PAGE, 0), (SEGV_ACCERR, 3)),
    (100, 50, lambda mm: mm.protect(BASE, BASE + 100 * PAGE, PROT_R), (SEGV_ACCERR, 50)),
    (100, 50, lambda mm: mm.unmap(BASE, BASE + 100 * PAGE), (SEGV_MAPERR, 50)),
    (700, 600, lambda mm: mm.unmap(BASE, BASE + 700 * PAGE), (SEGV_MAPERR, 600)),   # two PTs
], ids=["unmap-1", "unmap-kept-1", "unmap-kept-80", "readonly-1", "none-1", "readonly-100",
        "unmap-100", "unmap-700"])
def test_edit_of_a_used_page_is_seen_at_once(kvm, npages, probe, edit, signal):
    _, aspace, mm = kvm
    status, ex = run_touch(aspace, mm, npages, probe, edit)
    code, page = signal
    assert status is None
    assert (ex.kind, ex.signo, ex.code, ex.addr) == (EXIT_SIGNAL, SIGSEGV, code, BASE + page * PAGE)


@pytest.mark.parametrize("npages, probe, edit, invalidates", [
    (8, 3, fresh_page(3, 4242), True),            # present -> another frame
    (8, 200, fresh_page(200, 4343), False),       # not present -> present: nothing to drop
    (100, 50, fresh_range(100, 50, 4444), True),
], ids=["remap-1", "new-1", "remap-100"])
def test_remapped_page_shows_its_new_contents(kvm, npages, probe, edit, invalidates):
    _, aspace, mm = kvm
    tables = aspace.tables

    def measured(mm):
        before = tables.invalidations
        edit(mm)
        assert (tables.invalidations != before) == invalidates
    status, ex = run_touch(aspace, mm, npages, probe, measured)
    assert ex is None
    assert status == {3: 4242, 200: 4343, 50: 4444}[probe]


def test_consecutive_frames_are_invalidated_together(kvm):
    _, aspace, mm = kvm
    t = aspace.tables
    mm.map_anon(BASE, 700 * PAGE, PROT_RW)          # one allocation: consecutive frames
    before = t.invalidations
    mm.protect(BASE, BASE + 700 * PAGE, PROT_R)     # two page tables, one madvise
    assert t.invalidations == before + 1
    mm.protect(BASE, BASE + 700 * PAGE, PROT_R)     # nothing changes: nothing to drop
    assert t.invalidations == before + 1


def test_many_small_edits_between_two_runs(kvm):
    _, aspace, mm = kvm

    def one_by_one(mm):
        for i in range(300):
            mm.unmap(BASE + i * PAGE, BASE + (i + 1) * PAGE)
    for probe in (0, 299):
        status, ex = run_touch(aspace, mm, 300, probe, one_by_one)
        assert (ex.signo, ex.code, ex.addr) == (SIGSEGV, SEGV_MAPERR, BASE + probe * PAGE)


def test_small_writable_mappings_are_populated(kvm):
    _, aspace, mm = kvm
    alloc = mm.alloc
    mm.map_anon(BASE, 16 * PAGE, PROT_RW)
    v = mm._find(BASE)
    assert _resident(alloc, v.fileoff, 16 * PAGE) == 16 * PAGE
    mm.map_anon(BASE + (1 << 20), PAGE, PROT_RW)            # one page: left to its one fault
    v = mm._find(BASE + (1 << 20))
    assert _resident(alloc, v.fileoff, PAGE) == 0
    mm.map_anon(BASE + (4 << 20), 4 << 20, PROT_RW)         # big: memory comes on touch
    v = mm._find(BASE + (4 << 20))
    assert _resident(alloc, v.fileoff, 4 << 20) == 0
    mm.map_anon(BASE + (2 << 20), 16 * PAGE, 0)             # PROT_NONE: nothing to hold
    v = mm._find(BASE + (2 << 20))
    assert _resident(alloc, v.fileoff, 16 * PAGE) == 0


def _resident(alloc, off, length):
    """Bytes of the memory file that hold pages in [off, off+length)."""
    import os
    fd = alloc.file.fd
    n, pos = 0, off
    while pos < off + length:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            break
        if data >= off + length:
            break
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), off + length)
        n += hole - data
        pos = hole
    return n


def test_a_new_thread_sees_an_edit_the_first_has_not_run_since(kvm):
    platform, aspace, mm = kvm
    run_touch(aspace, mm, 8, 0, lambda mm: None)
    mm.aspace.unmap(BASE + 3 * PAGE, PAGE)          # the first vCPU has not run since
    result = {}

    def other_task():
        ctx = platform.adopt_thread(aspace, aspace.clone_thread())
        ctx.regs.set_regs(dict(rip=CODE, rsp=STACK + PAGE, eflags=0x202, rbx=BASE,
                               r8=1, r9=3 * PAGE))
        result["exit"] = ctx.run(lambda *a: 0)
        aspace.drop()
    th = threading.Thread(target=other_task)
    th.start()
    th.join(10)
    ex = result["exit"]
    assert (ex.signo, ex.code, ex.addr) == (SIGSEGV, SEGV_MAPERR, BASE + 3 * PAGE)


@pytest.mark.parametrize("npages", [1, 100])
def test_munmap_stops_another_thread_spinning_on_the_page(kvm, npages):
    platform, aspace, mm = kvm
    mm.map_anon(BASE, npages * PAGE, PROT_RW)
    mm.write_forced(CODE + 0x100, SPIN_READ_RBX)
    result = {}
    started = threading.Event()

    def other_task():
        ctx = platform.adopt_thread(aspace, aspace.clone_thread())
        ctx.regs.set_regs(dict(rip=CODE + 0x100, rsp=STACK + PAGE, eflags=0x202,
                               rbx=BASE + (npages - 1) * PAGE))
        started.set()
        result["exit"] = ctx.run(lambda *a: -errno.ENOSYS)
        aspace.drop()
    th = threading.Thread(target=other_task)
    th.start()
    started.wait(5)
    threading.Event().wait(0.05)                    # let it spin in the guest
    mm.unmap(BASE, BASE + npages * PAGE)            # returns only once the spinner is out
    th.join(5)
    assert not th.is_alive()
    ex = result["exit"]
    assert (ex.kind, ex.signo, ex.code, ex.addr) == (
        EXIT_SIGNAL, SIGSEGV, SEGV_MAPERR, BASE + (npages - 1) * PAGE)


def test_leaves_preset_accessed_and_dirty(kvm):
    _, aspace, mm = kvm
    mm.map_anon(BASE, 2 * PAGE, PROT_RW)
    mm.protect(BASE + PAGE, BASE + 2 * PAGE, PROT_R)
    assert aspace.tables.translate(BASE) & 0x60 == 0x60             # A and D
    assert aspace.tables.translate(BASE + PAGE) & 0x60 == 0x20      # A only: not writable
