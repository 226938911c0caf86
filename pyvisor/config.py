"""One frozen description of a sandbox; the CLI and the API both build it."""

import os
from dataclasses import dataclass, field

PLATFORMS = ("ptrace", "kvm", "auto")
FORK_MODES = ("cow", "eager")


@dataclass(frozen=True)
class SandboxConfig:
    argv: tuple                       # bytes, argv[0] looked up in the sandbox's PATH
    env: tuple = ()                   # bytes "K=V" entries, in order
    cwd: str = "/"
    rootfs: str = "/"
    hostname: str = "pyvisor"
    platform: str = "auto"
    strace: bool = False
    strace_file: str = None
    debug: bool = False
    pin_cpu: bool = True
    confine: bool = True              # the Sentry's own seccomp filter (pyvisor/seccomp.py)
    pids_limit: int = 1024
    fork: str = "cow"                 # copy-on-write for big private mappings, or "eager"
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if not self.argv:
            raise ValueError("no program to run")
        if self.pids_limit < 1:
            raise ValueError("--pids-limit must be at least 1")
        if self.fork not in FORK_MODES:
            raise ValueError("unknown fork mode %r (have: %s)" % (self.fork, ", ".join(FORK_MODES)))
        if self.platform not in PLATFORMS:
            raise ValueError("unknown platform %r (have: %s)" % (self.platform, ", ".join(PLATFORMS)))


def env_with(base, overrides):
    """``base`` (a mapping) as "K=V" bytes, with overrides ("K=V" strings) applied in order."""
    env = {os.fsencode(k): os.fsencode(v) for k, v in base.items()}   # str or bytes items
    for kv in overrides:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise ValueError("--env wants K=V, got %r" % kv)
        env[os.fsencode(k)] = os.fsencode(v)
    return tuple(k + b"=" + v for k, v in env.items())
