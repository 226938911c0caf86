"""``python -m pyvisor.netstack``: bring a stack up on a TAP device (or, with
``--packet IF``, on an existing interface through AF_PACKET).

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
import signal
import sys

from .addr import ip
from .apps import (TCPEchoClient, TCPEchoServer, TCPSendClient, TCPSinkServer,
                   UDPEchoClient, UDPEchoServer)
from .clock import MonotonicClock
from .driver import Driver
from .link.capture import CaptureLink
from .link.impair import Impairment, ImpairedLink
from .link.packet import PacketLink
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


def _dump_tcp(stack):
    now = stack.clock.now()
    for key, sock in list(stack.tcp_conns.items()):
        c = sock.conn
        rel = lambda t: None if t is None else round(t - now, 3)
        print(json.dumps({
            "conn": "%d:%d" % (key[1], key[3]), "state": c.state.value,
            "snd_una": c.snd_una - c.iss, "snd_nxt": c.snd_nxt - c.iss,
            "snd_max": c.snd_max - c.iss, "snd_wnd": c.snd_wnd, "cwnd": c.cc.cwnd,
            "ssthresh": c.cc.ssthresh, "rto": c.rto, "rto_in": rel(c.rto_deadline),
            "persist_in": rel(c.persist_deadline), "in_recovery": c.in_recovery,
            "sacked": [[a - c.iss, b - c.iss] for a, b in c.sacked[:4]],
            "snd_buf": len(c.snd_buf), "rcv_nxt": c.rcv_nxt - c.irs,
            "rcv_wnd": c.rcv_adv - c.rcv_nxt, "rcv_buf": len(c.rcv_buf), "ooo": len(c.ooo),
            "retries": c.retries, "counters": c.counters}), file=sys.stderr, flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m pyvisor.netstack")
    dev = p.add_mutually_exclusive_group(required=True)
    dev.add_argument("--tap", help="TAP interface name (created or attached)")
    dev.add_argument("--packet", help="existing interface to take over with AF_PACKET")
    p.add_argument("--addr", required=True, help="our address, A.B.C.D/N")
    p.add_argument("--gateway", help="default gateway")
    p.add_argument("--mtu", type=int, default=1500)
    p.add_argument("--no-offload", action="store_true",
                   help="open the TAP without IFF_VNET_HDR (no TSO, no checksum offload)")
    p.add_argument("--impair", default="", help="loss=,duplicate=,reorder=,delay=,seed=")
    p.add_argument("--pcap", help="record every frame to this pcap file")
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
    p.add_argument("--stats", action="store_true", help="print counters to stderr at exit")
    args = p.parse_args(argv)

    clock = MonotonicClock()
    stack = Stack(clock)
    stack.tcp_defaults.cc = args.cc
    if args.tap:
        tap = TapLink(args.tap, mtu=args.mtu, vnet_hdr=not args.no_offload)
    else:
        tap = PacketLink(args.packet, mtu=args.mtu)
    link = tap
    if args.pcap:
        link = CaptureLink(link, args.pcap)
    if args.impair:
        # Outside the capture: the pcap holds the frames on the wire (what
        # survived our side's loss on the way out, all that came in).
        link = ImpairedLink(link, clock, tx=_impairment(args.impair, 1),
                            rx=_impairment(args.impair, 2))
    addr, _, plen = args.addr.partition("/")
    nic = stack.add_interface(link, addr, int(plen or 24), args.tap or args.packet)
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

    # SIGTERM ends the run cleanly (the pcap file gets flushed and closed);
    # SIGUSR1 dumps every connection's TCP state to stderr (a stall shows).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGUSR1, lambda *_: _dump_tcp(stack))
    driver = Driver(stack, [tap])
    until = (lambda: client.result is not None) if client else None
    try:
        driver.run(step, until=until, timeout=args.timeout)
    except KeyboardInterrupt:
        pass
    finally:
        link.close()
        if args.stats:
            tcp = {}
            for sock in list(stack.tcp_conns.values()):
                for k, v in sock.conn.counters.items():
                    tcp[k] = tcp.get(k, 0) + v
            print(json.dumps({"drops": dict(stack.drops), "stats": dict(stack.stats),
                              "tcp": tcp}), file=sys.stderr, flush=True)
    if client is not None:
        result = client.result or {"ok": False, "error": "timeout"}
        result["drops"] = dict(stack.drops)
        print(json.dumps(result), flush=True)
        return 0 if result["ok"] else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
