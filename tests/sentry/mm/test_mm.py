"""The memory file, VMAs and the ptrace address space, on a real stub process."""

import errno
import subprocess
import sys
import textwrap

import pytest

from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.mm.memfile import PAGE, MemoryFileAllocator
from pyvisor.sentry.mm.mm import MM_TOP, MemoryManager

ADDR = 0x400000


@pytest.fixture()
def mm():
    from pyvisor.platform.ptrace import PtracePlatform
    alloc = MemoryFileAllocator(1 << 30)
    aspace = PtracePlatform(alloc.file, pin_cpu=False).new_address_space()
    m = MemoryManager(alloc, aspace)
    yield m
    m.release()
    aspace.release()


def stub_maps(mm):
    mm.aspace.flush()      # edits are batched until the stub next runs
    with open("/proc/%d/maps" % mm.aspace.tracee.pid) as f:
        return [line.split()[:2] for line in f if "vsyscall" not in line]


def test_allocator_reuses_and_merges_freed_ranges():
    a = MemoryFileAllocator(16 * PAGE)
    x, y, z = a.alloc(PAGE), a.alloc(2 * PAGE), a.alloc(PAGE)
    a.file.write(y, b"dirty")
    a.free(x, PAGE)
    a.free(y, 2 * PAGE)
    assert a.alloc(3 * PAGE) == x           # merged into one free range
    assert a.file.read(y, 5) == bytes(5)    # freed pages come back zeroed
    with pytest.raises(SyscallError) as e:
        a.alloc(64 * PAGE)
    assert e.value.errno == errno.ENOMEM
    assert z == 3 * PAGE


def test_stub_holds_only_what_the_sentry_maps(mm):
    before = stub_maps(mm)
    # The stub's code page, and its control page for batches of edits: read-only,
    # or the application's threads could rewrite a queued host call.
    assert [p for _, p in before] == ["r-xp", "r--s"]
    mm.map_anon(ADDR, 3 * PAGE, 3)
    maps = stub_maps(mm)
    assert ["%08x-%08x" % (ADDR, ADDR + 3 * PAGE), "rw-s"] in maps
    mm.protect(ADDR + PAGE, ADDR + 2 * PAGE, 1)
    assert ["%08x-%08x" % (ADDR + PAGE, ADDR + 2 * PAGE), "r--s"] in stub_maps(mm)
    mm.unmap(ADDR, ADDR + 3 * PAGE)
    assert stub_maps(mm) == before


def test_stub_is_execd_without_address_randomisation(mm):
    """The stub's binary sits 2 MiB below the top of the address space; exec
    places the stack before it maps the binary, so that stack must not be
    randomised to where the binary goes."""
    with open("/proc/%d/personality" % mm.aspace.tracee.pid) as f:
        assert int(f.read(), 16) & 0x0040000        # ADDR_NO_RANDOMIZE


def test_copy_in_out_across_vmas_and_faults(mm):
    mm.map_anon(ADDR, PAGE, 3)
    mm.map_anon(ADDR + PAGE, PAGE, 3)
    data = bytes(range(256)) * 20
    mm.copy_out(ADDR + 100, data)
    assert mm.copy_in(ADDR + 100, len(data)) == data
    with pytest.raises(SyscallError) as e:
        mm.copy_in(ADDR + PAGE, 2 * PAGE)            # runs off the end
    assert e.value.errno == errno.EFAULT
    mm.protect(ADDR, ADDR + PAGE, 1)
    with pytest.raises(SyscallError):
        mm.copy_out(ADDR, b"x")                      # read-only page
    for bad in (0, MM_TOP - 4, (1 << 64) - 8):
        with pytest.raises(SyscallError):
            mm.copy_in(bad, 8)


def test_copy_in_str_stops_at_nul_page_end_and_limit(mm):
    mm.map_anon(ADDR, PAGE, 3)
    mm.copy_out(ADDR + PAGE - 3, b"ab\0")
    assert mm.copy_in_str(ADDR + PAGE - 3, 100) == b"ab"
    mm.copy_out(ADDR + PAGE - 3, b"abc")             # no NUL before the unmapped page
    with pytest.raises(SyscallError) as e:
        mm.copy_in_str(ADDR + PAGE - 3, 100)
    assert e.value.errno == errno.EFAULT
    mm.copy_out(ADDR, b"x" * 50)
    with pytest.raises(SyscallError) as e:
        mm.copy_in_str(ADDR, 10)
    assert e.value.errno == errno.ENAMETOOLONG
    mm.map_anon(ADDR + PAGE, PAGE, 3)
    mm.copy_out(ADDR + PAGE, b"d\0")
    mm.protect(ADDR + PAGE, ADDR + 2 * PAGE, 1)      # a VMA of its own: the string spans two
    assert mm.copy_in_str(ADDR + PAGE - 3, 100) == b"abcd"
    assert mm.copy_in_str(ADDR + PAGE - 3, 5) == b"abcd"
    with pytest.raises(SyscallError) as e:
        mm.copy_in_str(ADDR + PAGE - 3, 4)           # the NUL is the fifth byte
    assert e.value.errno == errno.ENAMETOOLONG


def test_remap_grow_keeps_contents_and_brk(mm):
    mm.map_anon(ADDR, PAGE, 3)
    mm.copy_out(ADDR, b"keep me")
    new = mm.remap(ADDR, PAGE, 4 * PAGE, may_move=True)
    assert mm.copy_in(new, 7) == b"keep me"
    mm.set_brk_start(0x600000)
    assert mm.brk(0) == 0x600000
    assert mm.brk(0x600000 + 10000) == 0x600000 + 10000
    mm.copy_out(0x600000 + 9000, b"heap")
    assert mm.brk(0x600000) == 0x600000
    with pytest.raises(SyscallError):
        mm.copy_in(0x600000 + 9000, 4)


def test_shared_pages_survive_until_the_last_owner_frees_them():
    a = MemoryFileAllocator(16 * PAGE)
    x = a.alloc(3 * PAGE)
    a.file.write(x + PAGE, b"shared")
    a.share(x + PAGE, PAGE)              # a second owner of the middle page
    a.free(x, 3 * PAGE)                  # the first owner goes
    assert a.file.read(x + PAGE, 6) == b"shared"
    assert a.alloc(PAGE) == x            # the unshared pages were freed...
    assert a.alloc(PAGE) == x + 2 * PAGE
    a.free(x + PAGE, PAGE)               # ...the shared one only now
    assert a.file.read(x + PAGE, 6) == bytes(6)
    assert a.alloc(PAGE) == x + PAGE


def test_fork_copies_private_and_shares_shared_memory(mm):
    mm.map_anon(ADDR, PAGE, 3)                       # MAP_PRIVATE
    mm.map_anon(ADDR + PAGE, PAGE, 3, flags=1)       # MAP_SHARED
    mm.copy_out(ADDR, b"private")
    mm.copy_out(ADDR + PAGE, b"shared")
    child = mm.fork()
    child.copy_out(ADDR, b"CHILD!!")
    child.copy_out(ADDR + PAGE, b"SHARED")
    assert mm.copy_in(ADDR, 7) == b"private"
    assert mm.copy_in(ADDR + PAGE, 6) == b"SHARED"
    child.release()
    assert mm.copy_in(ADDR + PAGE, 6) == b"SHARED"   # still the parent's


def test_edits_are_batched_and_a_failed_edit_is_reported(mm):
    start = mm.aspace.injected
    for i in range(100):
        mm.map_anon(ADDR + 2 * i * PAGE, PAGE, 3)
    maps = stub_maps(mm)
    for i in range(100):
        assert ["%08x-%08x" % (ADDR + 2 * i * PAGE, ADDR + (2 * i + 1) * PAGE), "rw-s"] in maps
    assert mm.aspace.injected - start == 2          # 64 edits fit one control page
    mm.aspace.map(ADDR + 1, PAGE, 3, 0)             # unaligned: the host says EINVAL
    with pytest.raises(OSError) as e:
        mm.aspace.flush()
    assert e.value.errno == errno.EINVAL


def test_stub_gets_its_files_whatever_their_numbers():
    """The memory file and the control file become fds 63 and 62 in the stub even
    when the Sentry's own copies already have those numbers (close-on-exec and all).

    Run in a fresh interpreter, whose fd numbers are predictable."""
    code = textwrap.dedent("""
        import os
        from pyvisor.sentry.mm.memfile import MemoryFileAllocator
        from pyvisor.sentry.mm.mm import MemoryManager
        from pyvisor.platform.ptrace import PtracePlatform
        while True:
            fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            if fd >= 61:
                os.close(fd)
                break
        alloc = MemoryFileAllocator(1 << 20)
        platform = PtracePlatform(alloc.file, pin_cpu=False)
        assert (alloc.fd, platform.ctrl.fd) == (61, 62), (alloc.fd, platform.ctrl.fd)
        aspace = platform.new_address_space()
        m = MemoryManager(alloc, aspace)
        m.map_anon(0x400000, 4096, 3)
        aspace.flush()
        maps = open("/proc/%d/maps" % aspace.tracee.pid).read()
        assert "00400000-00401000 rw-s" in maps, maps
        print("ok")
        """)
    # cwd "/": pyvisor comes from where this test imported it, never the checkout.
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd="/", close_fds=True)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr


def test_accessible_counts_to_the_first_fault_and_moves_nothing(mm):
    """MemoryManager.accessible: what a receive may copy out before it
    faults (syscalls/_util.check_stream_room asks it first)."""
    mm.map_anon(ADDR, 2 * PAGE, 3)                  # rw-
    mm.map_anon(ADDR + 2 * PAGE, PAGE, 1)           # r--, then a hole
    mm.write_forced(ADDR, b"keep")
    whole = [(ADDR, 3 * PAGE)]
    assert mm.accessible(whole, 3 * PAGE, write=False) == 3 * PAGE
    assert mm.accessible(whole, 3 * PAGE, write=True) == 2 * PAGE
    assert mm.accessible([(ADDR, 4 * PAGE)], 4 * PAGE, write=False) == 3 * PAGE
    # ranges in order, the limit cutting the last; a bad one stops the count
    assert mm.accessible([(ADDR, 10), (ADDR + PAGE, PAGE)], 100, write=True) == 100
    assert mm.accessible([(ADDR, 10), (8, 10), (ADDR, 10)], 30, write=True) == 10
    assert mm.accessible([(ADDR, 0), (ADDR + 3 * PAGE, 1)], 1, write=False) == 0
    assert mm.copy_in(ADDR, 4) == b"keep"
