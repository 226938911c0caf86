"""ELF loading: static, static-pie and PT_INTERP executables, and #! scripts.

Linux background (fs/binfmt_elf.c, fs/binfmt_script.c): execve reads the
first bytes of the file. ``#!`` restarts the load with the interpreter, the
script path appended to its argv. An ELF executable's PT_LOAD segments are
mapped at their p_vaddr (plus a load bias for ET_DYN); if it has PT_INTERP,
the interpreter (glibc's ld.so) is mapped too and started instead, and finds
the program through the auxiliary vector on the initial stack:

    rsp -> argc, argv[0..argc-1], NULL, envp[..], NULL, auxv pairs, AT_NULL
           ... then the strings, AT_RANDOM bytes and the platform name.
"""

import errno
import os
import struct

from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.mm.mm import (MAP_PRIVATE, PAGE, PROT_EXEC, PROT_READ, PROT_WRITE,
                                  STACK_SIZE, STACK_TOP, page_down, page_up)

ELF_MAGIC = b"\x7fELF"
ET_EXEC, ET_DYN = 2, 3
EM_X86_64 = 62
PT_LOAD, PT_INTERP, PT_PHDR, PT_GNU_STACK = 1, 3, 6, 0x6474E551
PF_X, PF_W, PF_R = 1, 2, 4

AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = 0, 3, 4, 5, 6, 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN, AT_MINSIGSTKSZ = 23, 25, 26, 31, 51

# Where ET_DYN images go: the main program where Linux puts a PIE, the
# interpreter below the mmap area's usual top.
PIE_BASE = 0x555555554000
INTERP_BASE = 0x7FFFF7FC0000

MAX_SCRIPT_DEPTH = 4
EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")


def _host_auxv():
    """HWCAP, HWCAP2 and MINSIGSTKSZ as the host kernel gave them to us: CPU facts, not secrets."""
    vals = {}
    try:
        with open("/proc/self/auxv", "rb") as f:
            data = f.read()
        for i in range(0, len(data) - 15, 16):
            k, v = struct.unpack_from("<QQ", data, i)
            if k in (AT_HWCAP, AT_HWCAP2, AT_MINSIGSTKSZ):
                vals[k] = v
    except OSError:
        pass
    return vals


HOST_AUXV = _host_auxv()


class Image:
    """What loading one ELF file produced."""

    def __init__(self, entry, phdr, phnum, bias, end):
        self.entry = entry
        self.phdr = phdr
        self.phnum = phnum
        self.bias = bias
        self.end = end


class LoadResult:
    def __init__(self, entry, sp, exe_path, argv, brk):
        self.entry = entry
        self.sp = sp
        self.exe_path = exe_path
        self.argv = argv
        self.brk = brk


def _read_at(f, off, n):
    buf = bytearray(n)
    got = f.preadinto(memoryview(buf), off)
    return bytes(buf[:got])


def _parse(f):
    """(ehdr fields, [phdr tuples]) or ENOEXEC."""
    head = _read_at(f, 0, EHDR.size)
    if len(head) < EHDR.size or head[:4] != ELF_MAGIC:
        raise SyscallError(errno.ENOEXEC)
    ident, etype, machine, _ver, entry, phoff, _sh, _fl, _ehsz, phentsize, phnum, _a, _b, _c = EHDR.unpack(head)
    if ident[4] != 2 or ident[5] != 1 or machine != EM_X86_64 or etype not in (ET_EXEC, ET_DYN):
        raise SyscallError(errno.ENOEXEC)
    if phentsize != PHDR.size or not 0 < phnum <= 128:
        raise SyscallError(errno.ENOEXEC)
    raw = _read_at(f, phoff, phnum * PHDR.size)
    if len(raw) != phnum * PHDR.size:
        raise SyscallError(errno.ENOEXEC)
    phdrs = [PHDR.unpack_from(raw, i * PHDR.size) for i in range(phnum)]
    return etype, entry, phoff, phnum, phdrs


def _prot(pflags):
    return ((PROT_READ if pflags & PF_R else 0) | (PROT_WRITE if pflags & PF_W else 0)
            | (PROT_EXEC if pflags & PF_X else 0))


def _load_elf(mm, f, name, base_hint):
    etype, entry, phoff, phnum, phdrs = _parse(f)
    loads = [p for p in phdrs if p[0] == PT_LOAD]
    if not loads:
        raise SyscallError(errno.ENOEXEC)
    lo = page_down(min(p[3] for p in loads))
    hi = page_up(max(p[3] + p[6] for p in loads))
    bias = 0
    if etype == ET_DYN:
        start = mm.find_free(hi - lo, base_hint)
        bias = start - lo
    st = f.stat()
    for _t, pflags, off, vaddr, _pa, filesz, memsz, _al in loads:
        if filesz > memsz or off % PAGE != vaddr % PAGE:
            raise SyscallError(errno.ENOEXEC)
        start = page_down(vaddr + bias)
        end = page_up(vaddr + bias + memsz)
        # As Linux's ELF loader: whole file pages, but zeros past filesz where a bss follows.
        whole = filesz == memsz and not pflags & PF_W
        nbytes = end - start if whole else filesz + off % PAGE if filesz else 0
        mm.map_file(start, end - start, _prot(pflags), MAP_PRIVATE, f, st, page_down(off),
                    nbytes, name)
    phdr_addr = 0
    for p in phdrs:
        if p[0] == PT_PHDR:
            phdr_addr = p[3] + bias
    if not phdr_addr:
        for p in loads:
            if p[2] <= phoff < p[2] + p[5]:
                phdr_addr = p[3] + (phoff - p[2]) + bias
    interp = None
    for p in phdrs:
        if p[0] == PT_INTERP:
            raw = _read_at(f, p[2], min(p[5], 4096))
            interp = raw.split(b"\0", 1)[0]
    return Image(entry + bias, phdr_addr, phnum, bias, hi + bias), interp


def _script_interp(head):
    """(interpreter, optional argument) from a #! line, as binfmt_script splits it."""
    line = head[2:].split(b"\n", 1)[0]
    line = line.replace(b"\t", b" ").strip(b" ")
    if not line:
        raise SyscallError(errno.ENOEXEC)
    parts = line.split(b" ", 1)
    arg = parts[1].strip(b" ") if len(parts) > 1 else b""
    return parts[0], arg or None


def build_stack(mm, t, argv, envp, execfn, auxv):
    """Map the stack and write argv, envp and auxv as the x86-64 ABI lays them out; return rsp."""
    mm.map_anon(STACK_TOP - STACK_SIZE, STACK_SIZE, PROT_READ | PROT_WRITE, name=b"[stack]")
    blob = bytearray()
    top = STACK_TOP - 16

    def put(data):
        blob[0:0] = data   # grows downwards from top
        return top - len(blob)

    # Strings are placed first (highest), pointers computed afterwards.
    execfn_addr = put(execfn + b"\0")
    env_addrs = [put(e + b"\0") for e in reversed(envp)][::-1]
    arg_addrs = [put(a + b"\0") for a in reversed(argv)][::-1]
    platform_addr = put(b"x86_64\0")
    random_addr = put(os.urandom(16))
    strings_lo = top - len(blob)
    auxv = list(auxv) + [(AT_RANDOM, random_addr), (AT_PLATFORM, platform_addr),
                         (AT_EXECFN, execfn_addr), (AT_NULL, 0)]
    words = [len(argv)] + arg_addrs + [0] + env_addrs + [0]
    for k, v in auxv:
        words += [k, v]
    sp = (strings_lo - 8 * len(words)) & ~15
    mm.write_forced(strings_lo, bytes(blob))
    mm.write_forced(sp, struct.pack("<%dQ" % len(words), *words))
    return sp


def _open_exec(vfs, t, path):
    """Open a file to execute: a regular file with an execute bit (EACCES otherwise)."""
    f = vfs.open(t, path, os.O_RDONLY)
    st = f.stat()
    if (st.st_mode & 0o170000) != 0o100000 or not st.st_mode & 0o111:
        raise SyscallError(errno.EACCES)
    return f


def load(t, mm, vfs, path, argv, envp):
    """Load the program at ``path`` into the empty ``mm``; return a LoadResult.

    Errors are SyscallError: ENOENT, EACCES, ENOEXEC (neither ELF nor #!), ELOOP.
    """
    argv = list(argv)
    filename = path
    for _depth in range(MAX_SCRIPT_DEPTH + 1):
        f = _open_exec(vfs, t, path)
        head = _read_at(f, 0, 256)
        if head[:2] != b"#!":
            break
        interp, arg = _script_interp(head)
        argv = [interp] + ([arg] if arg else []) + [path] + argv[1:]
        path = interp
    else:
        raise SyscallError(errno.ELOOP)
    image, interp_path = _load_elf(mm, f, f.path(), PIE_BASE)
    entry = image.entry
    base = 0
    if interp_path:
        fi = _open_exec(vfs, t, interp_path)
        iimage, nested = _load_elf(mm, fi, fi.path(), INTERP_BASE)
        if nested:
            raise SyscallError(errno.ELIBBAD)
        entry, base = iimage.entry, iimage.bias
    mm.set_brk_start(image.end)
    c = t.creds
    auxv = [(AT_PHDR, image.phdr), (AT_PHENT, PHDR.size), (AT_PHNUM, image.phnum),
            (AT_PAGESZ, PAGE), (AT_BASE, base), (AT_FLAGS, 0), (AT_ENTRY, image.entry),
            (AT_UID, c.uid), (AT_EUID, c.euid), (AT_GID, c.gid), (AT_EGID, c.egid),
            (AT_SECURE, 0), (AT_CLKTCK, 100)]
    auxv += sorted(HOST_AUXV.items())
    sp = build_stack(mm, t, argv, envp, filename, auxv)
    return LoadResult(entry, sp, f.path(), argv, image.end)
