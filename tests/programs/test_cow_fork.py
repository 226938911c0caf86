"""Copy-on-write fork (MemoryManager.fork with alloc.cow_min): the sharing is never visible."""

import os
import subprocess

import pytest
from conftest import TESTS_DIR

HERE = TESTS_DIR


@pytest.mark.parametrize("mode", ["cow", "eager"])
def test_cow_fork_matches_native(sandbox, build_c, mode):
    prog = build_c(os.path.join(HERE, "c", "cow_fork.c"), extra=("-pthread",))
    native = sandbox.native([prog])
    run = sandbox.run([prog], options=("--fork", mode))
    assert native.returncode == 0, native.stderr
    assert run.returncode == 0, run.stderr
    assert run.stdout == native.stdout
    assert run.stdout.count(b"status 0") == 4


def test_bad_fork_mode_is_a_usage_error(sandbox):
    run = subprocess.run(sandbox.command(["/bin/true"], ("--fork", "lazy")), capture_output=True)
    assert run.returncode == 2
    assert b"--fork" in run.stderr


def test_fork_shares_big_private_vmas_and_copies_small_ones():
    from pyvisor.sentry.mm.memfile import MemoryFileAllocator
    from pyvisor.sentry.mm.mm import MemoryManager

    alloc = MemoryFileAllocator(64 << 20)
    alloc.cow_min = 64 << 10
    parent = MemoryManager(alloc, None)
    big = parent.map_anon(0x400000, 1 << 20, 3)
    small = parent.map_anon(0x600000, 4 << 10, 3)
    parent.copy_out(0x400000, b"big")
    parent.copy_out(0x600000, b"small")
    child = parent.fork()
    cbig, csmall = child.vmas()
    assert cbig.cow is big.cow and cbig.fileoff == big.fileoff and big.cow.refs == 2
    assert csmall.cow is None and csmall.fileoff != small.fileoff
    # The Sentry writing for the child (copy_out) gives it its own pages first.
    child.copy_out(0x400000, b"BIG")
    assert parent.copy_in(0x400000, 3) == b"big" and child.copy_in(0x400000, 3) == b"BIG"
    assert child.vmas()[0].cow is None and big.cow.refs == 1
    # The parent, now the only user of the shared pages, takes them over uncopied.
    off = big.fileoff
    assert parent.write_fault(0x400000 + 5)
    assert big.cow is None and big.fileoff == off
    # A second thread's fault on the same pages, served after the first: retry.
    assert parent.write_fault(0x400000 + 5)
    parent.map_anon(0x700000, 4 << 10, 1)
    assert not parent.write_fault(0x700000)          # read-only: a real fault
    child.release()
    parent.release()
    assert alloc.allocated == 0


def test_eager_fork_when_disabled():
    from pyvisor.sentry.mm.memfile import MemoryFileAllocator
    from pyvisor.sentry.mm.mm import MemoryManager

    alloc = MemoryFileAllocator(64 << 20)
    alloc.cow_min = None
    parent = MemoryManager(alloc, None)
    parent.map_anon(0x400000, 1 << 20, 3)
    parent.copy_out(0x400000, b"data")
    child = parent.fork()
    (v,) = child.vmas()
    assert v.cow is None and child.copy_in(0x400000, 4) == b"data"
    child.release()
    parent.release()


def test_exec_keeps_nothing_of_the_old_image(sandbox, build_c):
    """After vfork+exec the new image must not see the parent's pages (the host process
    made for it starts as a clone of the parent's stub)."""
    prog = build_c(os.path.join(HERE, "c", "exec_fresh.c"))
    run = sandbox.run([prog])
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout == b"after vfork: old page gone\nafter fork: old page gone\n"
    assert run.stdout == sandbox.native([prog]).stdout


@pytest.mark.parametrize("kind", ["plain", "pi"])
def test_futex_sleeper_is_woken_after_its_page_moves(sandbox, build_c, kind):
    """A private futex is keyed by address space and address, not by the page:
    copy-on-write may move the page while a thread sleeps on it. PI waiters
    are keyed the same way: the owner's unlock after its copy of the page
    moved must still find the thread blocked in FUTEX_LOCK_PI."""
    prog = build_c(os.path.join(HERE, "c", "fork_futex.c"), extra=("-pthread",))
    argv = [prog] + (["pi"] if kind == "pi" else [])
    run = sandbox.run(argv, timeout=30)
    assert run.returncode == 0, run.stderr
    assert run.stdout == b"woken, flag 42, child status 0\n" == sandbox.native(argv).stdout
