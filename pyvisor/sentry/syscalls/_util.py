"""Helpers shared by syscall handlers."""


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
