"""One frozen description of a sandbox; the CLI and the API both build it."""

import os

from pyvisor.fields import FrozenFields
from pyvisor.sentry.mm.filestore import open_unlinked

PLATFORMS = ("ptrace", "kvm", "auto")
FORK_MODES = ("cow", "eager")
OVERLAY_MODES = ("memory", "file", "none")
DEFAULT_OVERLAY = "memory"


class SandboxConfig(FrozenFields):
    """Fields, all keyword arguments but argv:

    argv (bytes; argv[0] is looked up in the sandbox's PATH), env (bytes
    "K=V" entries, in order), cwd, rootfs, hostname, platform (ptrace, kvm,
    auto), strace, strace_file, debug, pin_cpu, confine (the Sentry's own
    seccomp filter, pyvisor/seccomp.py), strict_imports (fail the run when
    the confined Sentry imports a module it had not loaded:
    sentry/confined_imports.py), pids_limit, fork (copy-on-write for big
    private mappings, or "eager"), timeout (seconds after which the
    sandbox is ended, exit 124; None for none), memory (bytes of
    application memory and in-memory files, sentry/mm/account.py; None for
    no bound), overlay_size (bytes the root's in-memory upper layer may
    hold; None for tmpfs's default, or the host's free space in file mode),
    overlay (the root's writable layer: "memory", its data in the Sentry's
    memory; "file", its data in an unlinked host file in ``overlay_dir``,
    None for ``default_overlay_dir()``: sentry/mm/filestore.py; "none", a
    read-only root), extra (a dict for embedders).
    """

    __slots__ = ("argv", "env", "cwd", "rootfs", "hostname", "platform", "strace", "strace_file",
                 "debug", "pin_cpu", "confine", "strict_imports", "pids_limit", "fork", "timeout",
                 "memory", "overlay_size", "overlay", "overlay_dir", "extra")

    def __init__(self, argv, env=(), cwd="/", rootfs="/", hostname="pyvisor", platform="auto",
                 strace=False, strace_file=None, debug=False, pin_cpu=True, confine=True,
                 strict_imports=False, pids_limit=1024, fork="cow", timeout=None, memory=None,
                 overlay_size=None, overlay=DEFAULT_OVERLAY, overlay_dir=None, extra=None):
        self._set(argv=argv, env=env, cwd=cwd, rootfs=rootfs, hostname=hostname,
                  platform=platform, strace=strace, strace_file=strace_file, debug=debug,
                  pin_cpu=pin_cpu, confine=confine, strict_imports=strict_imports,
                  pids_limit=pids_limit, fork=fork, timeout=timeout,
                  memory=memory, overlay_size=overlay_size, overlay=overlay,
                  overlay_dir=overlay_dir,
                  extra={} if extra is None else extra)

    def _values(self):
        return super()._values()[:-1]     # extra is not compared

    def _check(self):
        if not self.argv:
            raise ValueError("no program to run")
        if self.pids_limit < 1:
            raise ValueError("--pids-limit must be at least 1")
        for name in ("memory", "overlay_size"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError("--%s must be above 0 bytes" % name.replace("_", "-"))
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError("--timeout must be above 0 seconds")
        if self.fork not in FORK_MODES:
            raise ValueError("unknown fork mode %r (have: %s)" % (self.fork, ", ".join(FORK_MODES)))
        if self.overlay not in OVERLAY_MODES:
            raise ValueError("unknown overlay mode %r (have: memory, file, file:DIR, none)"
                             % self.overlay)
        if self.overlay_dir is not None and self.overlay != "file":
            raise ValueError("an overlay directory is only for --overlay file")
        if self.overlay == "file":
            why = overlay_dir_problem(self.overlay_dir or default_overlay_dir())
            if why:
                raise ValueError(why)
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


def default_overlay_dir():
    """Where ``--overlay file`` keeps its file: $TMPDIR, else /var/tmp.

    /var/tmp, not /tmp: /tmp is often a tmpfs, whose pages are RAM again.
    """
    return os.environ.get("TMPDIR") or "/var/tmp"


def overlay_dir_problem(path):
    """None if the host directory ``path`` can hold the overlay's file, else why not (one line).

    Tried for real (an unlinked file made and closed): root passes every
    access(2) check, but not a read-only or procfs directory.
    """
    if not os.path.isdir(path):
        return "overlay directory %s: %s" % (
            path, "not a directory" if os.path.exists(path) else "no such directory")
    try:
        os.close(open_unlinked(path))
    except OSError as e:
        return "overlay directory %s: cannot create a file there: %s" % (path, os.strerror(e.errno))
    return None


def parse_overlay(text):
    """``--overlay`` MODE: (mode, dir) from memory, file, file:DIR or none."""
    mode, sep, where = text.partition(":")
    if sep and (mode != "file" or not where):
        raise ValueError("--overlay wants memory, file, file:DIR or none, got %r" % text)
    return mode, (os.path.abspath(where) if sep else None)
