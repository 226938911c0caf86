"""Resource limits (getrlimit(2)): the resource numbers and the limits a
sandbox's first process starts with.

`t.rlimits` is a dict {resource: (soft, hard)}, one per thread group (Linux
keeps limits in the signal struct: threads share them, fork copies them).
The get/set/prlimit64 handlers live in syscalls/misc.py.
"""

RLIM_INFINITY = (1 << 64) - 1
(RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_DATA, RLIMIT_STACK, RLIMIT_CORE, RLIMIT_RSS,
 RLIMIT_NPROC, RLIMIT_NOFILE, RLIMIT_MEMLOCK, RLIMIT_AS, RLIMIT_LOCKS,
 RLIMIT_SIGPENDING, RLIMIT_MSGQUEUE, RLIMIT_NICE, RLIMIT_RTPRIO,
 RLIMIT_RTTIME) = range(16)
RLIM_NLIMITS = 16
NR_OPEN = 1048576                        # fs.nr_open default: NOFILE's ceiling


def default_rlimits():
    """The limits of a typical Linux login shell, {resource: (soft, hard)}."""
    inf = RLIM_INFINITY
    return {
        RLIMIT_CPU: (inf, inf),
        RLIMIT_FSIZE: (inf, inf),
        RLIMIT_DATA: (inf, inf),
        RLIMIT_STACK: (8 << 20, inf),
        RLIMIT_CORE: (0, inf),
        RLIMIT_RSS: (inf, inf),
        RLIMIT_NPROC: (63_704, 63_704),
        RLIMIT_NOFILE: (1024, NR_OPEN),
        RLIMIT_MEMLOCK: (8 << 20, 8 << 20),
        RLIMIT_AS: (inf, inf),
        RLIMIT_LOCKS: (inf, inf),
        RLIMIT_SIGPENDING: (63_704, 63_704),
        RLIMIT_MSGQUEUE: (819_200, 819_200),
        RLIMIT_NICE: (0, 0),
        RLIMIT_RTPRIO: (0, 0),
        RLIMIT_RTTIME: (inf, inf),
    }
