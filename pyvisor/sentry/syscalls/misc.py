"""Small system-information calls: uname, sysinfo, getrandom, resource
limits, personality, host and domain names.

Contracts with the rest of the Sentry:

- `t.rlimits` is a dict {resource: (soft, hard)}, one per thread group
  (Linux keeps limits in the signal struct: threads share them, fork copies
  them). The first one is sentry/limits.py's `default_rlimits()`.
- `t.personality` (int, default 0 = PER_LINUX when absent) is per task.
- `t.kernel.hostname` (bytes), `t.kernel.start_time` (a time.monotonic()
  value) and `t.kernel.tasks` (sized; `in` tests a pid) are read here.

Host facts (CPU count, RAM size) are read once at import, which happens
before the Sentry installs its seccomp filter.
"""

import errno
import os
import struct
import time as _time

from pyvisor.abi.ints import s32, s64
from pyvisor.sentry.errors import SyscallError, partial
from pyvisor.sentry.limits import NR_OPEN, RLIMIT_NOFILE, RLIM_NLIMITS

# --- uname -----------------------------------------------------------------

# N.B. We report Linux 6.1.0 (an LTS release whose syscall set we aim at);
# gVisor reports "4.4.0" for the same purpose. Nothing here is the host's.
UTS_SYSNAME = b"Linux"
UTS_RELEASE = b"6.1.0"
UTS_VERSION = b"#1 SMP pyvisor"
UTS_MACHINE = b"x86_64"
UTS_DOMAINNAME = b"(none)"
_UTS_LEN = 65                            # __NEW_UTS_LEN + 1


def _uts_field(value):
    return value[:_UTS_LEN - 1].ljust(_UTS_LEN, b"\0")


def sys_uname(t, buf, *_):
    """Implements Linux syscall uname(2). N.B. release is always 6.1.0."""
    fields = (UTS_SYSNAME, t.kernel.hostname, UTS_RELEASE, UTS_VERSION,
              UTS_MACHINE, getattr(t.kernel, "domainname", UTS_DOMAINNAME))
    t.copy_out(buf, b"".join(_uts_field(f) for f in fields))
    return 0


# --- sysinfo ---------------------------------------------------------------

_PAGE = os.sysconf("SC_PAGE_SIZE")
HOST_TOTALRAM = os.sysconf("SC_PHYS_PAGES") * _PAGE
# struct sysinfo (x86-64): uptime, loads[3], totalram, freeram, sharedram,
# bufferram, totalswap, freeswap, procs (u16), pad, totalhigh, freehigh,
# mem_unit (u32), padding: 112 bytes.
_SYSINFO = struct.Struct("<q3Q6QHH4xQQI4x")


def _free_ram():
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * _PAGE
    except (OSError, ValueError):    # sysconf may read /proc, refused under seccomp
        return HOST_TOTALRAM // 2


def sys_sysinfo(t, info, *_):
    """Implements Linux syscall sysinfo(2).

    N.B. Load averages are 0 and swap is absent; RAM figures are the host's;
    uptime counts from the sandbox kernel's start.
    """
    uptime = int(_time.monotonic() - t.kernel.start_time)
    procs = min(len(t.kernel.tasks), 0xFFFF)
    data = _SYSINFO.pack(uptime, 0, 0, 0, HOST_TOTALRAM, _free_ram(), 0, 0,
                         0, 0, procs, 0, 0, 0, 1)
    t.copy_out(info, data)
    return 0


# --- getrandom -------------------------------------------------------------

GRND_NONBLOCK, GRND_RANDOM, GRND_INSECURE = 1, 2, 4
# Linux before 5.18 capped one read at INT_MAX >> 6 (just under 32 MiB);
# we keep that cap so one call cannot make the Sentry allocate gigabytes.
GETRANDOM_MAX = 0x7FFFFFFF >> 6
_CHUNK = 1 << 16


def sys_getrandom(t, buf, count, flags, *_):
    """Implements Linux syscall getrandom(2). Bytes come from the Sentry's os.urandom.

    Returns the number of bytes written, which is less than count only if
    count exceeds GETRANDOM_MAX or a later page of buf is not writable.
    """
    flags &= 0xFFFFFFFF
    if flags & ~(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE):
        raise SyscallError(errno.EINVAL)
    if flags & (GRND_INSECURE | GRND_RANDOM) == GRND_INSECURE | GRND_RANDOM:
        raise SyscallError(errno.EINVAL)
    count = min(count, GETRANDOM_MAX)
    done = 0
    while done < count:
        n = min(_CHUNK, count - done)
        try:
            t.copy_out(buf + done, os.urandom(n))
        except SyscallError as e:
            return partial(done, e)
        done += n
    return done


# --- resource limits -------------------------------------------------------

CAP_SYS_RESOURCE = 24


def _limits_of(t, pid):
    """The rlimits dict of pid (0 or the caller). N.B. other processes: ESRCH."""
    if pid in (0, t.pid, t.tid):
        return t.rlimits
    raise SyscallError(errno.ESRCH)


def _read_rlimit(t, addr):
    return struct.unpack("<QQ", t.copy_in(addr, 16))


def _do_prlimit(t, limits, resource, new):
    """Linux's do_prlimit: validate, apply new (soft, hard) if given, return the old.

    Raising the hard limit needs CAP_SYS_RESOURCE; NOFILE never goes past NR_OPEN.
    """
    if resource >= RLIM_NLIMITS:
        raise SyscallError(errno.EINVAL)
    old = limits[resource]
    if new is not None:
        soft, hard = new
        if soft > hard:
            raise SyscallError(errno.EINVAL)
        if resource == RLIMIT_NOFILE and hard > NR_OPEN:
            raise SyscallError(errno.EPERM)
        if hard > old[1] and not t.creds.capable(CAP_SYS_RESOURCE):
            raise SyscallError(errno.EPERM)
        limits[resource] = (soft, hard)
    return old


def sys_getrlimit(t, resource, rlim, *_):
    """Implements Linux syscall getrlimit(2)."""
    old = _do_prlimit(t, t.rlimits, resource, None)
    t.copy_out(rlim, struct.pack("<QQ", *old))
    return 0


def sys_setrlimit(t, resource, rlim, *_):
    """Implements Linux syscall setrlimit(2)."""
    _do_prlimit(t, t.rlimits, resource, _read_rlimit(t, rlim))
    return 0


def sys_prlimit64(t, pid, resource, new_limit, old_limit, *_):
    """Implements Linux syscall prlimit64(2) (glibc's prlimit).

    N.B. Only the caller's own process (pid 0, its pid or tid) is served;
    any other pid gives ESRCH. As in Linux, the new limit is applied before
    the old one is copied out, so an EFAULT on old_limit keeps the change.
    """
    new = _read_rlimit(t, new_limit) if new_limit else None
    limits = _limits_of(t, s32(pid))
    old = _do_prlimit(t, limits, resource, new)
    if old_limit:
        t.copy_out(old_limit, struct.pack("<QQ", *old))
    return 0


# --- personality -----------------------------------------------------------

PER_QUERY = 0xFFFFFFFF


def sys_personality(t, persona, *_):
    """Implements Linux syscall personality(2): returns the previous persona.

    N.B. The persona is stored but no flag (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC,
    ...) changes behaviour yet.
    """
    old = getattr(t, "personality", 0)
    persona &= 0xFFFFFFFF
    if persona != PER_QUERY:
        t.personality = persona
    return old


HOST_NAME_MAX = 64
CAP_SYS_ADMIN = 21


def _set_uts_name(t, name, length, attr):
    length = s64(length)
    if length < 0 or length > HOST_NAME_MAX:
        raise SyscallError(errno.EINVAL)
    if not t.creds.capable(CAP_SYS_ADMIN):
        raise SyscallError(errno.EPERM)
    setattr(t.kernel, attr, t.copy_in(name, length))
    return 0


def sys_sethostname(t, name, length, *_):
    """Implements Linux syscall sethostname(2): the sandbox's own UTS name, never the host's."""
    return _set_uts_name(t, name, length, "hostname")


def sys_setdomainname(t, name, length, *_):
    """Implements Linux syscall setdomainname(2) for the sandbox."""
    return _set_uts_name(t, name, length, "domainname")
