"""``python -m pyvisor.netstack``: bring a stack up on a TAP device.

Examples::

    python -m pyvisor.netstack --tap tap0 --addr 10.9.0.2/24 --tcp-echo 7 --udp-echo 7
    python -m pyvisor.netstack --tap tap0 --addr 10.9.0.2/24 \\
        --tcp-client 10.9.0.1:5000 --bytes 1000000

Prints ``READY`` once the device is open, and for client modes one JSON line
with the result; exits 0 on success.  ``--impair loss=0.03,delay=0.02,
reorder=0.05,seed=1`` puts the seeded impairment wrapper on our side of the
device (applied to both directions).
"""

import argparse
import json
import sys

from .addr import ip
from .apps import (TCPEchoClient, TCPEchoServer, TCPSendClient, TCPSinkServer,
                   UDPEchoClient, UDPEchoServer)
from .clock import MonotonicClock
from .driver import Driver
from .link.impair import Impairment, ImpairedLink
from .link.tap import TapLink
from .stack import Stack


def _impairment(text, seed_offset):
    kw = {}
    for part in filter(None, text.split(",")):
        k, _, v = part.partition("=")
        kw[k] = int(v) if k == "seed" else float(v)
    kw["seed"] = kw.get("seed", 0) * 2 + seed_offset
    return Impairment(**kw)


def _hostport(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m pyvisor.netstack")
    p.add_argument("--tap", required=True, help="TAP interface name")
    p.add_argument("--addr", required=True, help="our address, A.B.C.D/N")
    p.add_argument("--gateway", help="default gateway")
    p.add_argument("--mtu", type=int, default=1500)
    p.add_argument("--vnet-hdr", action="store_true")
    p.add_argument("--impair", default="", help="loss=,duplicate=,reorder=,delay=,seed=")
    p.add_argument("--cc", default="cubic", choices=("cubic", "reno"))
    p.add_argument("--tcp-echo", type=int, help="serve TCP echo on this port")
    p.add_argument("--udp-echo", type=int, help="serve UDP echo on this port")
    p.add_argument("--tcp-sink", type=int, help="serve TCP discard on this port")
    p.add_argument("--tcp-client", type=_hostport, help="HOST:PORT of a TCP echo")
    p.add_argument("--udp-client", type=_hostport, help="HOST:PORT of a UDP echo")
    p.add_argument("--tcp-send", type=_hostport, help="HOST:PORT to send --bytes to")
    p.add_argument("--bytes", type=int, default=1 << 20)
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--timeout", type=float, default=None, help="seconds to run")
    args = p.parse_args(argv)

    clock = MonotonicClock()
    stack = Stack(clock)
    stack.tcp_defaults.cc = args.cc
    tap = TapLink(args.tap, mtu=args.mtu, vnet_hdr=args.vnet_hdr)
    link = tap
    if args.impair:
        link = ImpairedLink(tap, clock, tx=_impairment(args.impair, 1),
                            rx=_impairment(args.impair, 2))
    addr, _, plen = args.addr.partition("/")
    nic = stack.add_interface(link, addr, int(plen or 24), args.tap)
    if args.gateway:
        stack.set_default_gateway(ip(args.gateway), nic)
    apps = []
    if args.tcp_echo:
        apps.append(TCPEchoServer(stack, args.tcp_echo))
    if args.udp_echo:
        apps.append(UDPEchoServer(stack, args.udp_echo))
    if args.tcp_sink:
        apps.append(TCPSinkServer(stack, args.tcp_sink))
    client = None
    if args.tcp_client:
        client = TCPEchoClient(stack, *args.tcp_client, args.bytes)
    elif args.tcp_send:
        client = TCPSendClient(stack, *args.tcp_send, args.bytes)
    elif args.udp_client:
        client = UDPEchoClient(stack, *args.udp_client, count=args.count)
    if client is not None:
        apps.append(client)
    print("READY", flush=True)

    def step():
        for a in apps:
            a.step()

    driver = Driver(stack, [tap])
    until = (lambda: client.result is not None) if client else None
    try:
        driver.run(step, until=until, timeout=args.timeout)
    except KeyboardInterrupt:
        pass
    finally:
        tap.close()
    if client is not None:
        result = client.result or {"ok": False, "error": "timeout"}
        result["drops"] = dict(stack.drops)
        print(json.dumps(result), flush=True)
        return 0 if result["ok"] else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
