"""TCP connection states and the close-sequence transitions (RFC 9293 3.3.2).

Theory of operation: a connection moves forward on three kinds of happening
besides the handshake, and each has a table here:

- the application closes its sending side (``close``/``shutdown(SHUT_WR)``);
- our FIN is acknowledged;
- the peer's FIN arrives in sequence.

Order matters within one segment: RFC 9293 3.10.7.4 processes the ACK field
(step five) before the FIN bit (step eight), so a FIN,ACK that acknowledges
our FIN in FIN-WAIT-1 goes FIN-WAIT-1 -> FIN-WAIT-2 -> TIME-WAIT.
Anything not in a table leaves the state unchanged.  Handshake, RST and
timer transitions live in the code beside the rule they implement.
"""

import enum


class State(enum.Enum):
    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"


S = State

# The application has no more data to send: queue a FIN.
ON_APP_CLOSE = {
    S.SYN_RECEIVED: S.FIN_WAIT_1,
    S.ESTABLISHED: S.FIN_WAIT_1,
    S.CLOSE_WAIT: S.LAST_ACK,
}

# Our FIN has been acknowledged.
ON_FIN_ACKED = {
    S.FIN_WAIT_1: S.FIN_WAIT_2,
    S.CLOSING: S.TIME_WAIT,
    S.LAST_ACK: S.CLOSED,
}

# The peer's FIN arrived in sequence.
ON_FIN_RECEIVED = {
    S.SYN_RECEIVED: S.CLOSE_WAIT,
    S.ESTABLISHED: S.CLOSE_WAIT,
    S.FIN_WAIT_1: S.CLOSING,
    S.FIN_WAIT_2: S.TIME_WAIT,
}

# States in which the peer's sequence numbers are known.
SYNCHRONIZED = frozenset(s for s in S if s not in (S.CLOSED, S.LISTEN, S.SYN_SENT))

# States in which received data is accepted for the application.
RECEIVES_DATA = frozenset((S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2))

# States in which the application may still queue data.
SENDS_DATA = frozenset((S.ESTABLISHED, S.CLOSE_WAIT))
