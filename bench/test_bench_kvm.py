"""getpid(2) round trip on the KVM platform next to ptrace, with no Sentry.

The same hand-assembled loop runs on both platforms over a MemoryManager
(as tests/test_kvm.py sets it up): ``rbx`` getpids, then exit. Two figures
per platform: the call served by a Python ``dispatch`` (the Sentry's path)
and by the platform's own fast path (``fast_pid``). No timed asserts: these
are measurements; ``extra_info["ns_per_call"]`` holds the figure.
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
    ctx.regs.fast_pid = 1 if fast else 0
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
