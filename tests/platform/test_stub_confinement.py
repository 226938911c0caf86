"""Routes into the host kernel: the ptrace stub's seccomp filter and the vsyscall page.

The stub's filter (seccomp.stub_rules) allows only the host calls the Sentry
injects, at the stub's own syscall instructions, and traps the vsyscall
forms of gettimeofday/time/getcpu back to the Sentry; everything else kills
the stub. docs/security.md, "Routes into the host kernel", says why.
"""

import os
import struct
import time

import pytest

from pyvisor import _fastpath, seccomp
from pyvisor.platform import ptrace
from pyvisor.seccomp import AUDIT_ARCH_X86_64, RET_ALLOW, RET_KILL_PROCESS, RET_TRAP
from conftest import TESTS_DIR

HERE = TESTS_DIR
AUDIT_ARCH_I386 = 0x40000003
SIGSYS = 31
MAP_SHARED, MAP_PRIVATE, MAP_FIXED = 0x01, 0x02, 0x10


def has_vsyscall_page():
    with open("/proc/self/maps") as f:
        return "[vsyscall]" in f.read()


# -- the program, evaluated ----------------------------------------------------

def run_bpf(prog, nr, ip, args=(0,) * 6, arch=AUDIT_ARCH_X86_64):
    """Evaluate a seccomp BPF program on one call (struct seccomp_data); return its action."""
    data = struct.pack("<iIQ6Q", nr, arch, ip, *(list(args) + [0] * 6)[:6])
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == 0x20:
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == 0x54:
            acc &= k
        elif code == 0x15:
            pc += jt if acc == k else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError("unknown BPF opcode %#x" % code)


@pytest.fixture(scope="module")
def stub():
    entry = ptrace._stub_entry(ptrace.STUB_PATH)
    sites = {name: entry + at for name, at in ptrace.STUB_SITES.items()}
    return ptrace.stub_filter(entry), sites


NR = seccomp.syscall_number
MEMFD, CTRLFD = _fastpath.STUB_MEMFD, _fastpath.STUB_CTRLFD


def injected_calls(sites):
    """Every call the platform injects, with the arguments it uses: (site, nr, args)."""
    mem_map = (0x400000, 4096, 3, MAP_SHARED | MAP_FIXED, MEMFD, 0)
    return [
        ("batch", NR("mmap"), mem_map),
        ("batch", NR("mmap"), (0x400000, 4096, 7, MAP_SHARED | MAP_FIXED, MEMFD, 8192)),
        ("batch", NR("munmap"), (0x400000, 4096, 0, 0, 0, 0)),
        ("batch", NR("mprotect"), (0x400000, 4096, 1, 0, 0, 0)),
        ("edit", NR("mmap"), mem_map),
        ("edit", NR("mmap"), (sites["edit"] + 0x1000 - 2, 4096, 1, MAP_SHARED | MAP_FIXED, CTRLFD, 0)),
        ("edit", NR("munmap"), (0, 0x7FFFFFE01000, 0, 0, 0, 0)),
        ("edit", NR("mprotect"), (0x400000, 4096, 0, 0, 0, 0)),
        ("edit", NR("exit"), (0,) * 6),
        ("clone", NR("clone"), (ptrace.CLONE_PARENT, 0, 0, 0, 0, 0)),
        ("clone", NR("clone"), (ptrace.HOST_THREAD_FLAGS, 0, 0, 0, 0, 0)),
        ("pdeathsig", NR("prctl"), (1, 9, 0, 0, 0, 0)),
        ("pause", NR("pause"), (0,) * 6),
    ]


def test_stub_filter_allows_each_injected_call_only_at_its_site(stub):
    prog, sites = stub
    for site, nr, args in injected_calls(sites):
        assert run_bpf(prog, nr, sites[site], args) == RET_ALLOW, (site, nr, args)
        for other in set(sites.values()) - {sites[site]}:
            if (nr, other) in {(n, sites[s]) for s, n, _ in injected_calls(sites)}:
                continue        # the same call is also injected there
            assert run_bpf(prog, nr, other, args) == RET_KILL_PROCESS, (site, nr, hex(other))
        # The application's own code: anywhere else in the address space.
        assert run_bpf(prog, nr, 0x401002, args) == RET_KILL_PROCESS
        assert run_bpf(prog, nr, sites[site] + (1 << 32), args) == RET_KILL_PROCESS
        assert run_bpf(prog, nr, sites[site], args, arch=AUDIT_ARCH_I386) == RET_KILL_PROCESS


@pytest.mark.parametrize("site,nr,args,why", [
    ("batch", "mmap", (0x400000, 4096, 3, MAP_PRIVATE | MAP_FIXED, MEMFD, 0), "private"),
    ("batch", "mmap", (0x400000, 4096, 3, MAP_SHARED, MEMFD, 0), "not fixed"),
    ("batch", "mmap", (0x400000, 4096, 3, MAP_SHARED | MAP_FIXED, CTRLFD, 0), "control fd, batched"),
    ("batch", "mmap", (0x400000, 4096, 3, MAP_SHARED | MAP_FIXED, 0, 0), "another fd"),
    ("batch", "mmap", (0x400000, 4096, 3, MAP_SHARED | MAP_FIXED, MEMFD | 1 << 32, 0), "fd high bits"),
    ("batch", "mmap", (0x400000, 4096, 8, MAP_SHARED | MAP_FIXED, MEMFD, 0), "unknown prot bit"),
    ("edit", "mmap", (0x400000, 4096, 3, MAP_SHARED | MAP_FIXED, CTRLFD, 0), "control page writable"),
    ("edit", "mmap", (0x400000, 4096, 1, MAP_SHARED | MAP_FIXED, CTRLFD, 0), "control file elsewhere"),
    ("batch", "mprotect", (0x400000, 4096, 0x1000000, 0, 0, 0), "PROT_GROWSDOWN"),
    ("clone", "clone", (0x11, 0, 0, 0, 0, 0), "other clone flags"),
    ("clone", "clone", (ptrace.CLONE_PARENT, 0x1000, 0, 0, 0, 0), "a stack"),
    ("pdeathsig", "prctl", (38, 1, 0, 0, 0, 0), "another prctl"),
    ("edit", "getpid", (0,) * 6, "a call never injected"),
    ("edit", "execve", (0,) * 6, "a call never injected"),
    ("batch", "exit_group", (0,) * 6, "a call never injected"),
])
def test_stub_filter_kills_other_arguments(stub, site, nr, args, why):
    prog, sites = stub
    assert run_bpf(prog, NR(nr), sites[site], args) == RET_KILL_PROCESS, why


def test_stub_filter_traps_exactly_the_three_vsyscalls(stub):
    prog, _ = stub
    page = seccomp.VSYSCALL_PAGE
    for off, name in seccomp.VSYSCALLS:
        assert run_bpf(prog, NR(name), page + off) == RET_TRAP
        assert run_bpf(prog, NR(name), page + off + 0x100) == RET_KILL_PROCESS
    assert run_bpf(prog, NR("gettimeofday"), page + 0x400) == RET_KILL_PROCESS
    assert run_bpf(prog, NR("getpid"), page) == RET_KILL_PROCESS


def test_stub_sites_are_the_stubs_syscall_instructions():
    with open(ptrace.STUB_PATH, "rb") as f:
        image = f.read()
    entry = ptrace._stub_entry(ptrace.STUB_PATH)
    # The text segment starts at file offset 0x1000, at _start (setup.py, stub.S).
    assert entry & 0xFFF == 0
    code = image[0x1000:]
    assert sorted(at - 2 for at in ptrace.STUB_SITES.values()) == \
        [i for i in range(len(code) - 1) if code[i:i + 2] == b"\x0f\x05"]


# -- a live stub -------------------------------------------------------------------

@pytest.fixture()
def aspace():
    from pyvisor.sentry.mm.memfile import MemoryFileAllocator
    alloc = MemoryFileAllocator(1 << 24)
    a = ptrace.PtracePlatform(alloc.file, pin_cpu=False).new_address_space()
    yield a
    a.release()


def status_fields(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def test_a_new_stub_is_filtered_with_no_new_privs(aspace):
    st = status_fields(aspace.pid)
    assert (st["Seccomp"], st["NoNewPrivs"], st["Seccomp_filters"]) == ("2", "1", "1")
    # Its control page held the program while it was installed; not any more.
    off = aspace._ctrl_off
    assert aspace._ctrl.map[off:off + 4096] == bytes(4096)


def test_a_forked_stub_inherits_the_filter(aspace):
    pid = aspace.clone_process()
    try:
        deadline = time.monotonic() + 5
        while status_fields(pid)["State"][0] != "S" and time.monotonic() < deadline:
            time.sleep(0.01)
        st = status_fields(pid)
        assert (st["Seccomp"], st["NoNewPrivs"]) == ("2", "1")
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


@pytest.mark.parametrize("nr,args,at", [
    (39, (), 0),                                                          # getpid
    (9, (0x400000, 4096, 3, MAP_PRIVATE | MAP_FIXED, MEMFD, 0), 0),       # a private map
    (9, (0x400000, 4096, 3, MAP_SHARED | MAP_FIXED, 1, 0), 0),           # another fd
    (11, (0x400000, 4096), _fastpath.STUB_CLONE),                         # munmap at clone
])
def test_the_host_kills_a_stub_making_a_call_it_was_not_given(aspace, nr, args, at):
    with pytest.raises(OSError, match="stub died"):
        aspace._inject(nr, *args, at=at)
    status = aspace.tracee.status
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == SIGSYS, hex(status)


def test_an_allowed_edit_still_works(aspace):
    aspace._inject(9, 0x400000, 4096, 3, MAP_SHARED | MAP_FIXED, MEMFD, 0)
    with open("/proc/%d/maps" % aspace.pid) as f:
        assert "00400000-00401000 rw-s" in f.read()


# -- in a sandbox -----------------------------------------------------------------

def test_vsyscall_page_is_served_by_the_sentry(sandbox, build_c):
    prog = build_c(os.path.join(HERE, "c", "vsyscall.c"))
    if has_vsyscall_page():
        native = sandbox.native([prog])
        assert native.returncode == 0 and native.stdout.endswith(b"done\n"), native
    r = sandbox.run([prog], options=("--strace",))
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    lines = dict((line + " ").split(" ", 1) for line in out.splitlines())
    cpus = dict(kv.split("=") for kv in lines["getcpu"].split()[:3])
    assert cpus["vsyscall"] == cpus["syscall"] and cpus["ret"] == "0"
    assert lines["time"] == "delta=0 tloc_ok=1 "
    assert lines["gettimeofday"] == "delta=0 ret=0 "
    assert lines["time_null"] == "ok " and "done" in lines
    # Each vsyscall went through the Sentry: the strace shows both forms.
    err = r.stderr.decode()
    assert err.count("getcpu(") == 2, err
    assert err.count("gettimeofday(") == 2, err
    assert err.count("time(") >= 4, err


@pytest.mark.parametrize("mode", ["badptr", "misaligned"])
def test_a_bad_vsyscall_is_sigsegv_as_on_linux(sandbox, build_c, mode):
    prog = build_c(os.path.join(HERE, "c", "vsyscall.c"))
    if has_vsyscall_page():
        assert sandbox.native([prog, mode]).returncode == -11
    r = sandbox.run([prog, mode])
    assert r.returncode == 128 + 11 and b"survived" not in r.stdout, r


def test_running_stubs_show_their_filter(build_c):
    """During a run, every stub process of the sandbox is filtered with no_new_privs."""
    from conftest import SandboxRunner
    runner = SandboxRunner("ptrace")
    before = runner.children()
    p = runner.popen(["/bin/sh", "-c", "sleep 3 & sleep 3; wait"])
    try:
        stubs = []
        deadline = time.monotonic() + 20
        while len(stubs) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            stubs = [pid for pid in _descendants(p.pid) if _is_stub(pid)]
        assert len(stubs) >= 2, stubs
        for pid in stubs:
            st = status_fields(pid)
            assert (st["Seccomp"], st["NoNewPrivs"]) == ("2", "1"), (pid, st)
    finally:
        p.wait(timeout=30)
    runner.assert_no_leftovers(before)


def _descendants(pid):
    """Every process below pid (any thread's children)."""
    parent = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name, "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            parent[int(name)] = int(stat[stat.rindex(b")") + 2:].split()[1])
    out = []
    for p in parent:
        q = p
        while q in parent and q > 1:
            q = parent[q]
            if q == pid:
                out.append(p)
                break
    return out


def _is_stub(pid):
    try:
        return os.readlink("/proc/%d/exe" % pid) == os.path.realpath(ptrace.STUB_PATH)
    except OSError:
        return False


# -- int $0x80 and sysenter: the 32-bit ABI ---------------------------------------

def cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def test_syscall_writes_rcx_here_unless_fred():
    """How the ptrace platform tells `syscall` from int $0x80 (see _fastpath)."""
    from pyvisor.sentry.mm.memfile import MemoryFileAllocator
    platform = ptrace.PtracePlatform(MemoryFileAllocator(1 << 20).file, pin_cpu=False)
    a = platform.new_address_space()
    try:
        assert platform.syscall_regs is ("fred" not in cpu_flags())
    finally:
        a.release()


def test_int80_is_enosys_never_a_64_bit_call(sandbox, build_c):
    prog = build_c(os.path.join(HERE, "c", "int80.c"))
    native = sandbox.native([prog])
    # Linux with IA32 emulation runs the i386 calls: getpid, a write, then exit(7).
    if native.returncode == 7:
        assert native.stdout.startswith(b"getpid=%d\n" % int(native.stdout.split(b"=")[1].split()[0]))
        assert b"written by int 0x80" in native.stdout
    r = sandbox.run([prog])
    assert r.returncode == 0, r
    assert r.stdout.decode().splitlines() == [
        "getpid=-38", "write=-38", "exit=-38", "getppid=-38", "bogus=-38",
        "regs_kept=1", "after=ok", "done"]


def test_sysenter_in_64_bit_code_is_as_native(sandbox, build_c):
    prog = build_c(os.path.join(HERE, "c", "int80.c"))
    native = sandbox.native([prog, "sysenter"])
    if native.returncode != -4:
        pytest.skip("sysenter is not #UD in 64-bit mode on this CPU (Intel)")
    r = sandbox.run([prog, "sysenter"])
    assert r.returncode == 128 + 4 and r.stdout == b"", r


@pytest.mark.parametrize("mode", ["int80", "syscall"])
def test_32_bit_compatibility_mode_reaches_nothing(sandbox, build_c, mode):
    """A far return to the 32-bit code segment, then a system call from there.

    ptrace: the stop says cs 0x23, so ENOSYS (unless the host itself refuses
    the instruction: this PVM host gives SIGSEGV for a compat-mode `syscall`).
    KVM: compatibility mode is not resumed; the task gets SIGSEGV, and the
    CPL0 entry a compat `syscall` makes runs nothing of the application's
    and writes nothing on its stack (IST)."""
    prog = build_c(os.path.join(HERE, "c", "compat32.c"))
    native = sandbox.native([prog, mode])
    r = sandbox.run([prog, mode])
    if sandbox.platform == "kvm":
        assert r.returncode == 128 + 11 and r.stdout == b"", r
    elif native.returncode == -11:
        assert r.returncode == 128 + 11, r
    else:
        assert r.returncode == 0 and r.stdout == b"result=-38\ndone\n", r


# -- the control page ------------------------------------------------------------

def test_the_control_page_holds_nothing_after_a_batch(aspace):
    off = aspace._ctrl_off
    for i in range(10):
        aspace.map(0x400000 + 2 * i * 4096, 4096, 3, i * 4096)
    aspace.protect(0x400000, 4096, 1)
    aspace.unmap(0x400000 + 2 * 4096, 4096)
    injected = aspace.injected
    assert aspace.flush() and aspace.injected == injected + 1     # one batch of 12 edits
    assert aspace._ctrl.map[off:off + 4096] == bytes(4096)
    with open("/proc/%d/maps" % aspace.pid) as f:
        maps = f.read()
    assert "00400000-00401000 r--s" in maps and "00404000-00405000 rw-s" in maps, maps
    assert "00402000-00403000" not in maps
    # A failed batch is zeroed too.
    aspace.map(0x400001, 4096, 3, 0)
    with pytest.raises(OSError):
        aspace.flush()
    assert aspace._ctrl.map[off:off + 4096] == bytes(4096)


def test_application_reads_nothing_of_the_sentrys_from_the_stub_pages(sandbox, build_c):
    """ptrace: the control page reads as zeros after the batches the program
    caused, and cannot be written; its code page is readable (N.B. Linux:
    SIGSEGV for both). KVM: neither exists in the guest (SIGSEGV)."""
    prog = build_c(os.path.join(HERE, "c", "stubpages.c"))
    for mode in ("ctrl", "code", "write"):
        assert sandbox.native([prog, mode]).returncode == -11
    ctrl, code, write = (sandbox.run([prog, mode]) for mode in ("ctrl", "code", "write"))
    assert write.returncode == 128 + 11 and write.stdout == b"", write
    if sandbox.platform == "kvm":
        assert ctrl.returncode == code.returncode == 128 + 11
    else:
        assert ctrl.returncode == 0 and ctrl.stdout == b"ctrl nonzero=0\n", ctrl
        assert code.returncode == 0 and code.stdout != b"code nonzero=0\n", code
