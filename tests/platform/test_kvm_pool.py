"""Many task threads on a bounded pool of vCPUs (the KVM platform's
VcpuPool), with no Sentry: each thread drives its own Context over one
MemoryManager, as the kernel does, and runs hand-assembled code (GNU as
listing beside it)."""

import threading
import time

import pytest

from pyvisor.platform import kvm_usable
from pyvisor.platform.base import EXIT_INTERRUPT
from pyvisor.platform.kvm import KvmPlatform, VcpuPool, default_pool_size
from pyvisor.sentry.mm.memfile import PAGE, MemoryFileAllocator
from pyvisor.sentry.mm.mm import MemoryManager

USABLE, WHY = kvm_usable()
pytestmark = pytest.mark.skipif(not USABLE, reason=WHY or "KVM usable")

CODE, DATA, STACKS = 0x400000, 0x500000, 0x600000
# spin (rdi: my counter, rsi: the stop flag):
#   1: incq (%rdi); mov (%rsi),%rax; test %rax,%rax; jz 1b; mov $60,%eax; syscall
# block (at +0x12): mov $1000,%eax; syscall; mov %rax,%rdi; mov $60,%eax; syscall
CODE_BYTES = bytes.fromhex("48ff07488b064885c074f5b83c0000000f05"
                           "b8e80300000f054889c7b83c0000000f05")
SPIN, BLOCK = CODE, CODE + 0x12
FLAG = DATA


class Exited(Exception):
    pass


def _exit_dispatch(block=None):
    def dispatch(nr, *args):
        if nr == 60:
            raise Exited(args[0])
        assert nr == 1000
        if block is not None:
            block()
        return 7
    return dispatch


@pytest.fixture()
def kvm2():
    """A platform whose pool holds two vCPUs."""
    alloc = MemoryFileAllocator(1 << 30)
    platform = KvmPlatform(alloc.file, pin_cpu=False, pool_size=2)
    aspace = platform.new_address_space()
    mm = MemoryManager(alloc, aspace)
    mm.map_anon(CODE, PAGE, 5)
    mm.write_forced(CODE, CODE_BYTES)
    mm.map_anon(DATA, PAGE, 3)
    mm.map_anon(STACKS, 64 * PAGE, 3)
    yield platform, aspace, mm
    mm.release()
    aspace.release()
    platform.close()


def _threads(platform, aspace, n, rip, regs_for, dispatch, results):
    """n task threads on aspace; each runs from rip until it exits."""
    def task(i):
        ctx = platform.adopt_thread(aspace, aspace.clone_thread())
        ctx.regs.set_regs(dict(rip=rip, rsp=STACKS + (i + 1) * PAGE, eflags=0x202, **regs_for(i)))
        try:
            ctx.run(dispatch)
        except Exited as e:
            results[i] = e.args[0]
        finally:
            aspace.drop()
    ts = [threading.Thread(target=task, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    return ts


def test_more_spinning_threads_than_vcpus_all_make_progress(kvm2):
    platform, aspace, mm = kvm2
    n = 3 * platform.pool.size
    results = {}
    ts = _threads(platform, aspace, n, SPIN,
                  lambda i: dict(rdi=DATA + 8 * (i + 1), rsi=FLAG), _exit_dispatch(), results)
    deadline = time.monotonic() + 20
    counts = [0] * n
    while time.monotonic() < deadline:
        counts = [int.from_bytes(mm.copy_in(DATA + 8 * (i + 1), 8), "little") for i in range(n)]
        if all(counts):
            break
        time.sleep(0.02)
    mm.copy_out(FLAG, (1).to_bytes(8, "little"))         # everyone may stop now
    for t in ts:
        t.join(20)
    assert all(counts), "threads that never ran: %s" % [i for i, c in enumerate(counts) if not c]
    assert len(results) == n
    assert platform.pool.preemptions > 0
    assert len(platform.vm.hws) <= platform.pool.size


def test_blocked_threads_do_not_hold_vcpus(kvm2):
    platform, aspace, mm = kvm2
    n = 32
    gate = threading.Event()
    arrived = threading.Semaphore(0)

    def block():
        arrived.release()
        assert gate.wait(20)
    results = {}
    ts = _threads(platform, aspace, n, BLOCK, lambda i: {}, _exit_dispatch(block), results)
    for _ in range(n):                  # all n are inside their call at once
        assert arrived.acquire(timeout=20)
    assert len(platform.vm.hws) <= 2
    gate.set()
    for t in ts:
        t.join(20)
    assert results == {i: 7 for i in range(n)}
    assert len(platform.vm.hws) <= 2


def test_a_thread_keeps_its_fpu_state_across_vcpus(kvm2):
    platform, aspace, mm = kvm2
    ctx = aspace.context

    def set_xmm0():                     # while ctx holds a vCPU
        assert ctx.vcpu.hw_index >= 0
        image = bytearray(ctx.regs.get_fpregs())
        image[160:168] = (0xFEEDFACE).to_bytes(8, "little")      # xmm0
        ctx.regs.set_fpregs(bytes(image))
    ctx.regs.set_regs(dict(rip=BLOCK, rsp=STACKS + PAGE))
    with pytest.raises(Exited):
        ctx.run(_exit_dispatch(set_xmm0))
    # Others take every vCPU (including the one ctx held) and block in a call.
    gate = threading.Event()
    arrived = threading.Semaphore(0)

    def block():
        arrived.release()
        assert gate.wait(20)
    results = {}
    ts = _threads(platform, aspace, 4, BLOCK, lambda i: {}, _exit_dispatch(block), results)
    for _ in range(4):
        assert arrived.acquire(timeout=20)
    assert ctx.vcpu.hw_index == -1                            # its vCPU was taken...
    assert ctx.regs.get_fpregs()[160:168] == (0xFEEDFACE).to_bytes(8, "little")   # ...not its state
    gate.set()
    for t in ts:
        t.join(20)
    # movq %xmm0,%rdi; mov $60,%eax; syscall
    mm.write_forced(CODE + 0x100, bytes.fromhex("66480f7ec7b83c0000000f05"))
    ctx.regs.set_regs(dict(rip=CODE + 0x100, rsp=STACKS + PAGE))
    with pytest.raises(Exited) as e:
        ctx.run(_exit_dispatch())
    assert e.value.args[0] == 0xFEEDFACE


def test_pool_size_default_is_two_per_cpu_at_least_two():
    import os
    assert default_pool_size() == max(2, 2 * len(os.sched_getaffinity(0)))
    assert VcpuPool.__init__.__defaults__[-1] == 0.010          # a 10 ms time slice


def test_an_interrupt_reaches_a_thread_waiting_for_a_vcpu(kvm2):
    """Both vCPUs spin; a third thread waits for one. interrupt() (what a
    signal for its task does) must make its run() return at once, not once a
    time slice frees a vCPU: the slice is 5 s here, so only the wake-up can
    be quick. Afterwards the thread still runs to its end."""
    platform, aspace, mm = kvm2
    platform.pool.slice_s = 5.0
    results, waiter = {}, {}
    counter = DATA + 0x100

    def task():
        ctx = platform.adopt_thread(aspace, aspace.clone_thread())
        ctx.regs.set_regs(dict(rip=SPIN, rsp=STACKS + 8 * PAGE, eflags=0x202,
                               rdi=counter, rsi=FLAG))
        waiter["ctx"] = ctx
        try:
            waiter["exit"] = ctx.run(_exit_dispatch())     # waits: both vCPUs spin
            waiter["returned"] = time.monotonic()
            ctx.run(_exit_dispatch())                      # then spins until FLAG
        except Exited as e:
            waiter["status"] = e.args[0]
        finally:
            aspace.drop()
    spinners = _threads(platform, aspace, 2, SPIN,
                        lambda i: dict(rdi=DATA + 8 * (i + 1), rsi=FLAG), _exit_dispatch(), results)
    th = threading.Thread(target=task)
    try:
        deadline = time.monotonic() + 20
        while not all(int.from_bytes(mm.copy_in(DATA + 8 * (i + 1), 8), "little") for i in range(2)):
            assert time.monotonic() < deadline, "the spinners never ran"
            time.sleep(0.01)
        th.start()
        while platform.vm.waiters == 0:
            assert time.monotonic() < deadline, "the third thread never waited"
            time.sleep(0.001)
        assert "returned" not in waiter
        sent = time.monotonic()
        waiter["ctx"].interrupt()
        while "returned" not in waiter and time.monotonic() - sent < 2.0:
            time.sleep(0.001)
        assert "returned" in waiter, "the waiting thread did not see the interrupt"
        assert waiter["exit"].kind == EXIT_INTERRUPT
        assert waiter["returned"] - sent < 0.5            # against a 5 s slice
    finally:
        mm.copy_out(FLAG, (1).to_bytes(8, "little"))       # everyone may stop now
        for t in spinners + [th]:
            if t.ident is not None:
                t.join(20)
    assert waiter.get("status") == counter and len(results) == 2    # exit(rdi)
    assert int.from_bytes(mm.copy_in(counter, 8), "little") > 0      # it ran afterwards
    assert platform.vm.waiters == 0 and not platform.pool._queue
