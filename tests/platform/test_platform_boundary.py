"""The hot-path boundary both platforms share (platform/_common.pxd), with no
Sentry: a MemoryManager over each platform's address space runs
hand-assembled code (as tests/test_kvm.py does for KVM alone).

- The exit kinds are declared once, in the .pxd; Python reads them from it.
- The platform knows no syscalls: it answers a call without dispatch only
  when the caller put that number in the context's fast answers
  (``Context.set_fast_answers``); with none, getpid is dispatched like any
  other call.
- A 32-bit entry gets ENOSYS before any fast answer is looked up: its
  number means another call in the i386 table.
"""

import errno

import pytest

from pyvisor import _fastpath, _kvm
from pyvisor.platform import _common, kvm_usable, make_platform
from pyvisor.platform import base
from pyvisor.sentry.mm.memfile import PAGE, MemoryFileAllocator
from pyvisor.sentry.mm.mm import MemoryManager

USABLE, WHY = kvm_usable()
PLATFORMS = ["ptrace", pytest.param("kvm", marks=pytest.mark.skipif(not USABLE, reason=WHY or "KVM"))]

CODE, DATA = 0x400000, 0x500000
PROT_RW, PROT_RX = 3, 5
NR_GETPID, NR_GETTID, NR_EXIT = 39, 186, 60
# mov $100,%ebx; xor %r12d,%r12d; 1: mov $39,%eax; syscall; add %rax,%r12;
# dec %rbx; jnz 1b; mov %r12,%rdi; mov $60,%eax; syscall
GETPID_LOOP = bytes.fromhex("bb640000004531e4b8270000000f054901c448ffcb75f14c89e7b83c0000000f05")
# mov $39,%eax; int $0x80; mov %rax,%rdi; mov $60,%eax; syscall
INT80_39 = bytes.fromhex("b827000000cd804889c7b83c0000000f05")
MASK64 = (1 << 64) - 1


class Exited(Exception):
    def __init__(self, status):
        super().__init__(status)
        self.status = status


@pytest.fixture(params=PLATFORMS)
def machine(request):
    alloc = MemoryFileAllocator(1 << 28)
    platform = make_platform(request.param, alloc.file, pin_cpu=False)
    aspace = platform.new_address_space()
    mm = MemoryManager(alloc, aspace)
    try:
        yield aspace.tracee_context, mm
    finally:
        mm.release()
        aspace.release()
        platform.close()


def run(ctx, mm, code, answer=lambda nr, *a: -errno.ENOSYS):
    """Run code until exit(2); (exit status as u64, the numbers dispatched)."""
    mm.map_anon(CODE, PAGE, PROT_RX)
    mm.write_forced(CODE, code)
    mm.map_anon(DATA, PAGE, PROT_RW)
    # rcx/r11 zero: a `syscall` would have set them, so the ptrace platform
    # can tell an int $0x80 from it.
    ctx.regs.set_regs(dict(rip=CODE, rsp=DATA + PAGE, eflags=0x202, rcx=0, r11=0))
    calls = []

    def dispatch(nr, *args):
        calls.append(nr)
        if nr == NR_EXIT:
            raise Exited(args[0])
        return answer(nr, *args)
    with pytest.raises(Exited) as e:
        ctx.run(dispatch)
    return e.value.status, calls


def test_exit_kinds_are_declared_once():
    """platform/base.py's ints are _common.pxd's ExitKind; the C halves
    export no copies of their own."""
    kinds = {k.name: int(k) for k in _common.ExitKind}
    assert kinds == {"EXIT_SYSCALL": base.EXIT_SYSCALL, "EXIT_SIGNAL": base.EXIT_SIGNAL,
                     "EXIT_GONE": base.EXIT_GONE, "EXIT_INTERRUPT": base.EXIT_INTERRUPT}
    assert len(set(kinds.values())) == 4
    assert all(type(getattr(base, name)) is int for name in kinds)
    for mod in (_fastpath, _kvm):
        assert [n for n in dir(mod) if n.startswith("EXIT_")] == [], mod


def test_without_fast_answers_getpid_is_dispatched(machine):
    ctx, mm = machine
    ctx.set_fast_answers({})
    status, calls = run(ctx, mm, GETPID_LOOP, lambda nr, *a: 7 if nr == NR_GETPID else -1)
    assert (status, calls) == (700, [NR_GETPID] * 100 + [NR_EXIT])


def test_a_fast_answer_is_given_without_dispatch(machine):
    ctx, mm = machine
    ctx.set_fast_answers({NR_GETPID: 3, NR_GETTID: 5})
    assert run(ctx, mm, GETPID_LOOP) == (300, [NR_EXIT])


def test_only_the_numbers_handed_in_are_answered(machine):
    ctx, mm = machine
    ctx.set_fast_answers({NR_GETTID: 5})
    status, calls = run(ctx, mm, GETPID_LOOP, lambda nr, *a: 7)
    assert (status, calls) == (700, [NR_GETPID] * 100 + [NR_EXIT])


def test_a_fast_answer_goes_to_rax_as_64_bits(machine):
    ctx, mm = machine
    ctx.set_fast_answers({NR_GETPID: -1})
    assert run(ctx, mm, GETPID_LOOP) == (-100 & MASK64, [NR_EXIT])


def test_more_than_four_fast_answers_are_refused_and_change_nothing(machine):
    ctx, mm = machine
    ctx.set_fast_answers({NR_GETPID: 3})
    with pytest.raises(ValueError):
        ctx.set_fast_answers({n: 1 for n in range(5)})
    with pytest.raises(TypeError):
        ctx.set_fast_answers([(NR_GETPID, 1)])
    assert run(ctx, mm, GETPID_LOOP) == (300, [NR_EXIT])


def test_a_32_bit_call_gets_enosys_before_any_fast_answer(machine):
    """int $0x80 with eax 39 is i386 mkdir, not getpid: never answered as
    the 64-bit call of that number, and never dispatched."""
    ctx, mm = machine
    ctx.set_fast_answers({NR_GETPID: 3})
    assert run(ctx, mm, INT80_39) == (-errno.ENOSYS & MASK64, [NR_EXIT])
