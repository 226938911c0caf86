"""Congestion control: NewReno (RFC 5681, RFC 6582) and CUBIC (RFC 9438).

The connection owns loss detection and recovery; a controller only sizes
``cwnd`` and ``ssthresh`` (bytes).  Hooks:

- ``on_ack(acked, now, srtt)``: new data acknowledged outside recovery;
- ``on_loss(flight, now)``: entering fast recovery (sets ssthresh and cwnd);
- ``on_recovery_end()``: a full ACK ended recovery (RFC 6582 "deflate");
- ``on_rto(flight, now)``: a retransmission timeout.
"""

INITIAL_WINDOW_SEGMENTS = 10  # RFC 6928, as Linux


class NewReno:
    name = "reno"

    def __init__(self, mss):
        self.mss = mss
        self.cwnd = INITIAL_WINDOW_SEGMENTS * mss
        self.ssthresh = 1 << 62
        self._acc = 0  # bytes acked toward the next congestion-avoidance step

    def on_ack(self, acked, now, srtt):
        if self.cwnd < self.ssthresh:
            # Slow start by bytes acked (RFC 3465), without the L=2 cap:
            # like Linux, since batched ACKs cover many segments.
            self.cwnd = min(self.cwnd + acked, max(self.ssthresh, self.cwnd))
            return
        self._acc += acked
        if self._acc >= self.cwnd:
            self._acc -= self.cwnd
            self.cwnd += self.mss

    def on_loss(self, flight, now):
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh

    def on_recovery_end(self):
        self.cwnd = self.ssthresh

    def on_rto(self, flight, now):
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self._acc = 0


class Cubic(NewReno):
    """CUBIC: W_cubic(t) = C (t - K)^3 + W_max (RFC 9438 4.2), in segments,
    with the Reno-friendly estimate W_est (4.3) and fast convergence (4.7)."""

    name = "cubic"
    C = 0.4
    BETA = 0.7

    def __init__(self, mss):
        super().__init__(mss)
        self.w_max = 0.0
        self.k = 0.0
        self.epoch = None
        self.w_est = 0.0

    def on_ack(self, acked, now, srtt):
        if self.cwnd < self.ssthresh:
            self.cwnd = min(self.cwnd + acked, max(self.ssthresh, self.cwnd))
            return
        seg = self.mss
        cwnd_seg = self.cwnd / seg
        if self.epoch is None:
            self.epoch = now
            if self.w_max < cwnd_seg:
                self.w_max = cwnd_seg
                self.k = 0.0
            else:
                self.k = ((self.w_max - cwnd_seg) / self.C) ** (1 / 3)
            self.w_est = cwnd_seg
        t = now - self.epoch + (srtt or 0.0)
        target = self.C * (t - self.k) ** 3 + self.w_max
        target = min(max(target, cwnd_seg), 1.5 * cwnd_seg)
        alpha = 3 * (1 - self.BETA) / (1 + self.BETA)
        self.w_est += alpha * (acked / seg) / cwnd_seg
        if self.w_est > target:
            target = self.w_est
        self._acc += int((target - cwnd_seg) * seg * acked / self.cwnd)
        if self._acc >= seg:
            steps = self._acc // seg
            self.cwnd += steps * seg
            self._acc -= steps * seg

    def _reduce(self):
        cwnd_seg = self.cwnd / self.mss
        if cwnd_seg < self.w_max:  # fast convergence
            self.w_max = cwnd_seg * (1 + self.BETA) / 2
        else:
            self.w_max = cwnd_seg
        self.epoch = None
        self._acc = 0

    def on_loss(self, flight, now):
        self._reduce()
        self.ssthresh = max(int(self.cwnd * self.BETA), 2 * self.mss)
        self.cwnd = self.ssthresh

    def on_rto(self, flight, now):
        self._reduce()
        self.ssthresh = max(int(self.cwnd * self.BETA), 2 * self.mss)
        self.cwnd = self.mss


ALGORITHMS = {"reno": NewReno, "newreno": NewReno, "cubic": Cubic}
