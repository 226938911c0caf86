"""The KVM platform next to ptrace, with no Sentry.

The same hand-assembled loops run on both platforms over a MemoryManager
(as tests/platform/test_kvm.py sets it up):

- getpid: ``rbx`` getpids, then exit. Two figures per platform: the call
  served by a Python ``dispatch`` (the Sentry's path) and by the platform's
  own fast path (a fast answer, ``Context.set_fast_answers``);
  ``extra_info["ns_per_call"]``.
- mmap: ``rbx`` times map 1 or 256 pages (MemoryManager.map_anon), write
  each page, unmap, as bench/c/micro.c's mmap_4k and mmap_1m do through
  the Sentry; ``extra_info["us_per_iteration"]``.

No timed asserts: these are measurements.
"""

import time

import pytest

from pyvisor.platform import kvm_usable, make_platform
from pyvisor.sentry.mm.memfile import PAGE, MemoryFileAllocator
from pyvisor.sentry.mm.mm import MemoryManager

N = 20000
CODE = 0x400000
# 1: mov $39,%eax; syscall; dec %rbx; jnz 1b; mov $60,%eax; syscall
LOOP = bytes.fromhex("b8270000000f0548ffcb75f4b83c0000000f05")


class _Done(Exception):
    pass


def _dispatch(nr, *args):
    if nr == 60:
        raise _Done()
    return 1


def _setup(name):
    if name == "kvm":
        ok, why = kvm_usable()
        if not ok:
            pytest.skip(why)
    alloc = MemoryFileAllocator(1 << 28)
    platform = make_platform(name, alloc.file, pin_cpu=True)
    aspace = platform.new_address_space()
    mm = MemoryManager(alloc, aspace)
    mm.map_anon(CODE, PAGE, 5)
    mm.write_forced(CODE, LOOP)
    ctx = getattr(aspace, "tracee_context", None) or aspace.context
    return platform, aspace, mm, ctx


def _loop_ns(ctx, fast):
    ctx.regs.set_regs(dict(rip=CODE, rsp=0, eflags=0x202, rbx=N, rax=0))
    ctx.set_fast_answers({39: 1} if fast else {})     # getpid answered in C
    t0 = time.perf_counter_ns()
    try:
        ctx.run(_dispatch)
    except _Done:
        pass
    else:
        pytest.fail("the loop did not reach exit")
    return (time.perf_counter_ns() - t0) / N


@pytest.mark.parametrize("fast", [False, True], ids=["dispatch", "fast_pid"])
@pytest.mark.parametrize("name", ["kvm", "ptrace"])
def test_getpid_round_trip(benchmark, results, name, fast):
    platform, aspace, mm, ctx = _setup(name)
    try:
        benchmark.pedantic(_loop_ns, args=(ctx, fast), rounds=3, iterations=1)
        ns = benchmark.stats.stats.median * 1e9 / N
        benchmark.extra_info["ns_per_call"] = round(ns, 1)
        benchmark.extra_info["n"] = N
        results["%s getpid loop (%s)" % (name, "fast_pid" if fast else "dispatch")] = ns
    finally:
        mm.release()
        aspace.release()
        platform.close()


# 1: mov $1000,%eax; syscall (map; rax = address); mov %rax,%rdx; mov %r8,%rsi;
# 2: movq $1,(%rdx); add $4096,%rdx; dec %rsi; jnz 2b; mov $1001,%eax; syscall (unmap);
# dec %rbx; jnz 1b; mov $60,%eax; syscall
MMAP_LOOP = bytes.fromhex("b8e80300000f054889c24c89c648c702010000004881c20010000048ffce75ed"
                          "b8e90300000f0548ffcb75d4b83c0000000f05")
MMAP_AT = 0x7F0000000000


def _mmap_us(ctx, mm, pages, n):
    def dispatch(nr, *args):
        if nr == 1000:
            mm.map_anon(MMAP_AT, pages * PAGE, 3)
            return MMAP_AT
        if nr == 1001:
            mm.unmap(MMAP_AT, MMAP_AT + pages * PAGE)
            return 0
        raise _Done()
    ctx.regs.set_regs(dict(rip=CODE + PAGE, rsp=0, eflags=0x202, rbx=n, r8=pages))
    t0 = time.perf_counter_ns()
    try:
        ctx.run(dispatch)
    except _Done:
        pass
    else:
        pytest.fail("the loop did not reach exit")
    return (time.perf_counter_ns() - t0) / n / 1000


@pytest.mark.parametrize("pages", [1, 256], ids=["4k", "1m"])
@pytest.mark.parametrize("name", ["kvm", "ptrace"])
def test_mmap_touch_munmap(benchmark, results, name, pages):
    platform, aspace, mm = _setup(name)[:3]
    ctx = getattr(aspace, "tracee_context", None) or aspace.context
    mm.map_anon(CODE + PAGE, PAGE, 5)
    mm.write_forced(CODE + PAGE, MMAP_LOOP)
    mm.map_anon(MMAP_AT + (1 << 20), 16 * PAGE, 3)     # a neighbour in the same page table
    n = 400 if pages == 1 else 30
    try:
        benchmark.pedantic(_mmap_us, args=(ctx, mm, pages, n), rounds=5, iterations=1)
        us = benchmark.stats.stats.min * 1e6 / n
        benchmark.extra_info["us_per_iteration"] = round(us, 1)
        results["%s mmap+touch+munmap %s" % (name, "4 KiB" if pages == 1 else "1 MiB")] = us * 1000
    finally:
        mm.release()
        aspace.release()
        platform.close()
