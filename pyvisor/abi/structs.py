"""Struct layouts more than one call reads, and pure helpers on them.

x86-64 layouts (time(7), timespec(3type), timeval(3type), readv(2)):

- struct timespec {time_t tv_sec; long tv_nsec;} and struct timeval
  {time_t tv_sec; suseconds_t tv_usec;}: two signed 64-bit fields each.
- struct itimerspec / struct itimerval: the interval first, then the value.
- struct iovec {void *iov_base; size_t iov_len;}: two unsigned 64-bit fields.

The helpers here know no task: reading user memory and raising errors is
sentry/syscalls/_util.py's part.
"""

import struct

NSEC = 1_000_000_000                 # ns per second
USEC = 1000                          # ns per microsecond: the unit of a timeval's tv_usec
KTIME_MAX = (1 << 63) - 1            # include/linux/ktime.h: the largest time, in ns

TIMESPEC = struct.Struct("<qq")      # {tv_sec, tv_nsec}
TIMEVAL = struct.Struct("<qq")       # {tv_sec, tv_usec}
ITIMERSPEC = struct.Struct("<qqqq")  # {it_interval, it_value}; itimerval has the same shape

# utimensat(2): a tv_nsec that means "now" or "leave alone"
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2

IOVEC = struct.Struct("<QQ")         # {iov_base, iov_len}
UIO_MAXIOV = 1024                    # IOV_MAX: the most iovecs one call takes
MAX_RW_COUNT = 0x7FFFF000            # INT_MAX & PAGE_MASK: the most one read/write moves
SSIZE_MAX = (1 << 63) - 1
PAGE_SIZE = 4096
# x86-64 with 4-level page tables: user addresses lie below TASK_SIZE_MAX;
# access_ok(base, len) fails (EFAULT) for a range that ends above it.
TASK_SIZE_MAX = (1 << 47) - PAGE_SIZE


def timespec_valid(sec, sub, unit=1):
    """A time span's rule (nanosleep(2), timeouts, timer values): tv_sec >= 0
    and the sub-second field within one second. unit is 1 for a timespec's
    tv_nsec, USEC for a timeval's tv_usec."""
    return sec >= 0 and 0 <= sub < NSEC // unit


def to_ns(sec, sub, unit=1):
    """A valid timespec (unit 1) or timeval (unit USEC) as ns, clamped to
    KTIME_MAX as timespec64_to_ktime does: a huge value means "forever"."""
    return min(sec * NSEC + sub * unit, KTIME_MAX)


def split_ns(ns, unit=1):
    """ns >= 0 as (tv_sec, sub-second field): tv_nsec for unit 1, tv_usec
    (truncated) for unit USEC."""
    sec, rest = divmod(ns, NSEC)
    return sec, rest // unit


def pack_timespec(ns):
    return TIMESPEC.pack(*split_ns(ns))


def pack_timeval(ns):
    return TIMEVAL.pack(*split_ns(ns, USEC))


def page_down(n):
    return n - n % PAGE_SIZE
