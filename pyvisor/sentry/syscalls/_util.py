"""Helpers shared by syscall handlers: argument conversion."""

MASK64 = (1 << 64) - 1


def s32(v):
    """Register value as a signed 32-bit int (fds, flags, whence)."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def s64(v):
    """Register value as a signed 64-bit int (offsets, times)."""
    v &= MASK64
    return v - (1 << 64) if v & (1 << 63) else v


def u32(v):
    return v & 0xFFFFFFFF


def install_pair(t, a, b, addr, install):
    """pipe2(2)/socketpair(2)'s ending: install two new files with ``install(f) -> fd``
    and write the fds to ``addr`` as int[2]; on any failure nothing stays installed."""
    import struct
    from pyvisor.sentry.errors import SyscallError
    try:
        fa = install(a)
    except SyscallError:
        b.decref()
        raise
    try:
        fb = install(b)
    except SyscallError:
        t.fdtable.close(fa)
        raise
    try:
        t.copy_out(addr, struct.pack("<ii", fa, fb))
    except SyscallError:
        t.fdtable.close(fa)
        t.fdtable.close(fb)
        raise
    return 0
