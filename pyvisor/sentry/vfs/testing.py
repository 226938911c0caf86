"""A Kernel-less task for unit tests of the VFS and the fs syscalls.

`FakeTask` follows the "Contract for syscall handlers" in
docs/architecture.md: its memory is one bytearray mapped at `BASE`;
anything outside it gives EFAULT, as an unmapped page would.
"""

import errno
import struct
from types import SimpleNamespace

from ..errors import SyscallError
from .fdtable import FDTable, FSContext

BASE = 0x10000


class FakeMM:
    def __init__(self, vmas=()):
        self._vmas = list(vmas)

    def vmas(self):
        return list(self._vmas)


class FakeTask:
    """A task with a flat bytearray memory at BASE."""

    def __init__(self, kernel, vfs, size=1 << 20, tid=1, creds=None):
        self.kernel = kernel
        self.mem = bytearray(size)
        self.tid = self.pid = tid
        self.ppid = 0
        self.fdtable = FDTable()
        self.fs = FSContext(vfs.root)
        self.mm = FakeMM()
        self.creds = creds or SimpleNamespace(uid=0, gid=0, euid=0, egid=0, suid=0, sgid=0,
                                              groups=())
        self.exe_path = b"/bin/true"
        self.argv = [b"true"]
        self.envp = [b"PATH=/bin"]
        self.comm = b"true"
        self._brk = BASE

    def _range(self, addr, n):
        off = addr - BASE
        if addr < BASE or n < 0 or off + n > len(self.mem):
            raise SyscallError(errno.EFAULT)
        return off

    def accessible(self, ranges, limit, write=False):
        done = 0
        for addr, n in ranges:
            n = min(n, limit - done)
            got = max(0, min(n, BASE + len(self.mem) - addr)) if addr >= BASE else 0
            done += got
            if got < n or done >= limit:
                break
        return done

    def copy_in(self, addr, n):
        off = self._range(addr, n)
        return bytes(self.mem[off:off + n])

    def copy_out(self, addr, data):
        off = self._range(addr, len(data))
        self.mem[off:off + len(data)] = data

    def copy_in_str(self, addr, maxlen=4096):
        off = self._range(addr, 1)
        end = self.mem.find(b"\0", off, min(len(self.mem), off + maxlen))
        if end < 0:
            if off + maxlen <= len(self.mem):
                raise SyscallError(errno.ENAMETOOLONG)
            raise SyscallError(errno.EFAULT)
        return bytes(self.mem[off:end])

    def copy_in_u64(self, addr):
        return struct.unpack("<Q", self.copy_in(addr, 8))[0]

    def copy_out_u64(self, addr, v):
        self.copy_out(addr, struct.pack("<Q", v))

    # Test helpers: bump-allocate scratch memory.
    def alloc(self, n):
        addr = self._brk
        self._brk += (n + 15) & ~15
        self._range(addr, n)
        return addr

    def put(self, data):
        """Copy `data` into fresh scratch memory; returns its address."""
        addr = self.alloc(len(data))
        self.copy_out(addr, data)
        return addr

    def cstr(self, s):
        return self.put(s + b"\0")


def fake_kernel(hostname=b"pyvisor"):
    return SimpleNamespace(hostname=hostname, tasks={}, vfs=None, start_time_ns=0)


def make_env(gofer_root=None, creds=None):
    """(kernel, vfs, task) over build_vfs, with the task registered as pid 1."""
    from . import build_vfs
    kernel = fake_kernel()
    vfs = build_vfs(kernel, gofer_root)
    kernel.vfs = vfs
    task = FakeTask(kernel, vfs, creds=creds)
    kernel.tasks[task.pid] = task
    return kernel, vfs, task
