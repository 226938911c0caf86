"""A simulated network for tests and benchmarks: stacks joined by in-memory
links under one :class:`FakeClock`, with optional seeded impairment.

``Network.run_until(cond)`` steps every stack, and when nothing is left to
do *now*, jumps the clock to the next deadline, so retransmission timers of
seconds cost no wall time.
"""

from .clock import FakeClock
from .errors import NetError
from .link import Impairment, ImpairedLink, memory_pair
from .socket import TCPSocket
from .stack import Stack


class NetworkIdle(AssertionError):
    """Nothing more will ever happen, yet the condition does not hold."""


class Network:
    """Two stacks, ``a`` (10.0.0.1) and ``b`` (10.0.0.2), on one wire.

    Impairment keywords (loss, duplicate, reorder, delay, jitter) apply to
    both directions, each with its own generator derived from ``seed``.
    """

    def __init__(self, seed=0, mtu=1500, tcp_config=None, start=1000.0, **impair):
        self.clock = FakeClock(start)
        la, lb = memory_pair(mtu)
        if impair:
            la = ImpairedLink(la, self.clock,
                              tx=Impairment(seed=seed * 2 + 1, **impair),
                              rx=Impairment(seed=seed * 2 + 2, **impair))
        self.a = Stack(self.clock, tcp_config, secret=b"a%d" % seed)
        self.b = Stack(self.clock, tcp_config, secret=b"b%d" % seed)
        self.link_a, self.link_b = la, lb
        self.nic_a = self.a.add_interface(la, "10.0.0.1", 24)
        self.nic_b = self.b.add_interface(lb, "10.0.0.2", 24)
        self.stacks = [self.a, self.b]

    def step(self):
        """Do what is due now, else advance to the next deadline.
        Returns False when no stack has anything left to do."""
        now = self.clock.now()
        moved = 0
        for s in self.stacks:
            moved += s.poll(now)
        if moved:
            return True
        deadlines = [d for d in (s.next_deadline() for s in self.stacks) if d is not None]
        if not deadlines:
            return False
        d = min(deadlines)
        if d > now:
            self.clock.set(d)
        return True

    def run_until(self, cond, timeout=120.0, max_steps=10_000_000):
        """Step until cond() holds; TimeoutError after ``timeout`` simulated
        seconds, NetworkIdle if the network goes quiet first."""
        end = self.clock.now() + timeout
        for _ in range(max_steps):
            if cond():
                return
            if self.clock.now() > end:
                raise TimeoutError("condition not reached in %.1f simulated s" % timeout)
            if not self.step():
                if cond():
                    return
                raise NetworkIdle("network idle")
        raise TimeoutError("too many steps")

    def run_for(self, seconds):
        """Let simulated time pass, processing everything on the way."""
        end = self.clock.now() + seconds
        while True:
            now = self.clock.now()
            for s in self.stacks:
                s.poll(now)
            ds = [d for d in (s.next_deadline() for s in self.stacks) if d is not None]
            nxt = min(ds) if ds else end
            if nxt <= now:
                continue
            if nxt >= end:
                self.clock.set(end)
                for s in self.stacks:
                    s.poll(end)
                return
            self.clock.set(nxt)


# ---------------------------------------------------------------- sockets

def _try(fn, *args):
    try:
        return fn(*args)
    except NetError as e:
        return e


def tcp_pair(net, port=80, client_stack=None, server_stack=None, config=None):
    """Connect a client on ``a`` to a listener on ``b``; returns
    (client, accepted, listener)."""
    cs = client_stack or net.a
    ss = server_stack or net.b
    srv = TCPSocket(ss)
    srv.bind(("0.0.0.0", port))
    srv.listen(16)
    cli = TCPSocket(cs)
    server_ip = ss.nics[0].addr
    from .addr import ip_str
    _try(cli.connect, (ip_str(server_ip), port))
    net.run_until(lambda: srv.poll() and cli.state.value == "ESTABLISHED", timeout=300)
    conn, _ = srv.accept()
    return cli, conn, srv


def transfer(net, sender, receiver, data, timeout=3600.0, chunk=1 << 16):
    """Send all of data from sender to receiver; returns what arrived."""
    got = bytearray()
    state = {"sent": 0}
    view = memoryview(data)

    def cond():
        sent = state["sent"]
        while sent < len(data):
            try:
                sent += sender.send(view[sent:sent + chunk])
            except NetError:
                break
        state["sent"] = sent
        while True:
            try:
                d = receiver.recv(1 << 20)
            except NetError:
                break
            if not d:
                break
            got.extend(d)
        return len(got) >= len(data)

    net.run_until(cond, timeout=timeout)
    return bytes(got)


# ---------------------------------------------------------------- raw TCP

class ConnPair:
    """Two sans-I/O TCP connections on a fake wire, for state-machine tests.

    ``wire(segment, direction) -> list of segments`` may drop, duplicate or
    change segments in flight; the default passes them through.  Delivery
    is immediate; time moves only by ``advance``.
    """

    def __init__(self, config_a=None, config_b=None, now=1000.0, wire=None):
        from .tcp import TCPConfig, TCPConnection
        self.now = now
        self.config_b = config_b or TCPConfig()
        self.a = TCPConnection(config_a or TCPConfig(), iss=1000, now=now)
        self.b = None
        self.wire = wire or (lambda seg, d: [seg])
        self.log = []      # (direction, segment) as sent
        self.TCPConnection = TCPConnection

    def open(self):
        self.a.connect(self.now)
        syn = self.a.output(self.now)
        self.log += [("ab", s) for s in syn]
        delivered = [x for s in syn for x in self.wire(s, "ab")]
        if delivered:
            self.b = self.TCPConnection.from_syn(delivered[0], self.config_b, self.now, iss=5000)
        self.pump()
        return self

    def pump(self, rounds=1000):
        for _ in range(rounds):
            moved = False
            for x, y, d in ((self.a, self.b, "ab"), (self.b, self.a, "ba")):
                if x is None:
                    continue
                for s in x.output(self.now):
                    self.log.append((d, s))
                    for t in self.wire(s, d):
                        moved = True
                        if y is not None:
                            y.receive(t, self.now)
            if not moved:
                return

    def advance(self, seconds, step=None):
        """Move time, firing timers on the way (at each deadline)."""
        end = self.now + seconds
        while True:
            ds = [c.next_deadline() for c in (self.a, self.b) if c is not None]
            ds = [d for d in ds if d is not None and d <= end]
            nxt = min(ds) if ds else end
            self.now = max(self.now, nxt)
            self.pump()
            if nxt >= end:
                self.now = end
                self.pump()
                return
