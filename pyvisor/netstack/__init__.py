"""netstack: pyvisor's own user-space TCP/IP stack, as a library.

It knows nothing of tasks or system calls.  Layers, bottom up:

- ``link/``: link endpoints (in-memory, loopback, TAP) and a seeded
  impairment wrapper (loss, duplication, reordering, delay);
- ``ethernet``, ``arp``: framing and address resolution with a cache;
- ``ipv4``, ``icmp``: header validation, routing, echo and errors;
- ``udp``, ``tcp``: transports; TCP is a sans-I/O state machine
  (``receive(segment, now)``, ``output(now)``, ``next_event()``);
- ``stack``: one :class:`Stack` joining the layers, driven by frames and time;
  it delivers to sockets through its ``Endpoint`` interface;
- ``socket``: the socket-like endpoint API the Sentry uses, with Linux errnos
  (raised as ``errors.NetError``) and readiness for epoll.

netstack imports nothing of the Sentry or the platforms (README.md).

Protocol code never reads a clock: time is an argument (``now``, seconds as a
float) or comes from the injected clock of the :class:`Stack`.
Bad input is dropped and counted per reason (``Stack.drops``), never raised.
"""
