"""Network namespaces for interoperability tests and benchmarks.

:class:`Namespace` makes a fresh namespace (``ip netns add``) holding a TAP
device whose kernel side has ``linux_ip``; our stack runs in a child process
entered into it with ``ip netns exec``.  Nothing leaves the namespace.
``close()`` kills the children and deletes the namespace (and with it the
device).  Needs root, /dev/net/tun and iproute2: :func:`unavailable` says
why not when they are missing.
"""

import itertools
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_counter = itertools.count()


def unavailable():
    """None if namespaces with TAP devices can be made here, else the reason."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces and TAP devices"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    if shutil.which("ip") is None:
        return "iproute2 'ip' is not installed"
    return None


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Namespace:
    def __init__(self, tap="pvtap0", linux_ip="10.9.0.1", prefix=24, tag="pvns"):
        self.name = "%s-%d-%d" % (tag, os.getpid(), next(_counter))
        self.tap = tap
        self.procs = []
        _ip("netns", "add", self.name)
        try:
            self.ip("link", "set", "lo", "up")
            if tap:
                self.ip("tuntap", "add", "dev", tap, "mode", "tap")
                self.ip("addr", "add", "%s/%d" % (linux_ip, prefix), "dev", tap)
                self.ip("link", "set", tap, "up")
        except Exception:
            self.close()
            raise

    def ip(self, *args):
        _ip("netns", "exec", self.name, "ip", *args)

    def popen(self, argv, **kw):
        env = dict(os.environ, PYTHONPATH=ROOT)
        p = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
        self.procs.append(p)
        return p

    def python(self, code, *args, timeout=60):
        """Run Python code in the namespace; its stdout, or AssertionError."""
        env = dict(os.environ, PYTHONPATH=ROOT)
        r = subprocess.run(["ip", "netns", "exec", self.name, sys.executable, "-c", code,
                            *map(str, args)],
                           env=env, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def stack(self, addr, *args, device=None):
        """Start ``python -m pyvisor.netstack`` on the TAP device (or on
        ``device``, e.g. ``("--packet", "veth0")``); returns the process once
        it printed READY."""
        device = device or ("--tap", self.tap)
        p = self.popen([sys.executable, "-m", "pyvisor.netstack", *device,
                        "--addr", addr, *args])
        line = p.stdout.readline()
        if line.strip() != "READY":
            err = p.stderr.read() if p.poll() is not None else ""
            raise AssertionError("stack did not start: %r %s" % (line, err))
        return p

    def stop(self, p):
        """SIGTERM (a clean exit), then SIGKILL if it lingers."""
        p.terminate()
        try:
            p.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate(timeout=5)

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            try:
                p.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def veth_pair(a, b, ip_a, ip_b, prefix=24):
    """Join two namespaces with a veth pair (for the Linux-to-Linux reference)."""
    _ip("link", "add", "pv-a", "netns", a.name, "type", "veth", "peer", "name", "pv-b",
        "netns", b.name)
    a.ip("addr", "add", "%s/%d" % (ip_a, prefix), "dev", "pv-a")
    b.ip("addr", "add", "%s/%d" % (ip_b, prefix), "dev", "pv-b")
    a.ip("link", "set", "pv-a", "up")
    b.ip("link", "set", "pv-b", "up")
