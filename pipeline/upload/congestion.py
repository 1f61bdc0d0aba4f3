"""How many calls a subnet can usefully hold in flight, learned from acknowledgements as TCP BBR does.

A subnet takes at most one block of ingress per block interval; a call beyond what fills the next
blocks only waits in the subnet's ingress pool (and a full pool refuses new calls). So the window aims
at the bandwidth-delay product, the delivery rate (acknowledged bytes per second) times the round trip
without queueing (the minimum seen), plus a headroom: `HEADROOM_S` of delivery kept waiting, so that
every block finds enough to fill it while replies come back unevenly (about 1.5-2 blocks on mainnet).

The round trip varies per call, so the product is not computed from the minimum alone (it would leave
blocks unfilled whenever replies come late): the queue is measured instead, as the lowest of the latest
round trips minus the minimum, and the window is steered (a share of the difference per round trip)
until that queue is the headroom. At the fixed point the window is rate x (round trip + headroom).

Phases: `startup` grows by one call per acknowledgement (doubling per round trip) while no queue
shows and the rate keeps rising, then jumps to the target; `cruise` steers; every `PROBE_EVERY_S` a
`probe` round aims at `PROBE_EXTRA_S` more queue, so freed capacity (other users leaving the blocks)
shows as a higher rate and a shorter queue and the window follows; before the minimum round trip ages
out of its filter, a `drain` round removes the queue so the minimum is measured afresh (else the standing
queue would creep into it). An overload answer cuts the window by `BACKOFF` and caps it; the cap grows
back by one call per round trip.

Pure: it is fed times, byte counts and round trips, so tests drive it with synthetic acknowledgements.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

INITIAL_WINDOW = 4  # calls before anything is measured: one 4 MiB block of ~1 MB chunks
MIN_WINDOW = 2
# Delivery time kept waiting beyond the pipe, as the least-waiting recent calls see it: calls arrive
# unevenly, so on average ~1.5-2 blocks wait (blocks come ~1/s on mainnet), and each block finds enough.
HEADROOM_S = 1.0
STEER_GAIN = 0.5  # share of the queue's distance from the headroom corrected per round trip
RATE_SPAN_MIN_S = 4.0  # a rate sample covers at least this long (blocks come ~1/s, acks in bursts)...
RATE_SPAN_RTTS = 2.0  # ...and at least this many minimum round trips
RTT_FILTER_S = 120.0  # the minimum round trip is the lowest sample this recent
DRAIN_AFTER_S = 100.0  # a minimum this old is measured afresh by a drain round (it costs some fill)
PROBE_EVERY_S = 10.0
PROBE_EXTRA_S = 1.0  # a probe round aims at this much more queue
QUEUE_SAMPLES = 8  # the queue is the lowest of this many latest round trips minus the minimum
STARTUP_SAMPLES = 2  # startup ends when the lowest of this many latest shows a queue of...
QUEUE_SIGNAL = 0.25  # ...this share of the minimum round trip...
QUEUE_SIGNAL_MIN_S = 0.5  # ...or this, whichever is more
FULL_PIPE_GROWTH = 1.25  # startup also ends after FULL_PIPE_ROUNDS rounds without this much more rate
FULL_PIPE_ROUNDS = 3
BACKOFF = 0.7
MIN_ROUND_S = 0.2


@dataclass
class WindowedMin:
    """The minimum of the samples of the last `span_s` seconds (a monotonic deque)."""

    span_s: float
    _samples: deque[tuple[float, float]] = field(default_factory=deque)

    def add(self, now: float, value: float) -> None:
        while self._samples and self._samples[-1][1] >= value:
            self._samples.pop()
        self._samples.append((now, value))
        self._expire(now)

    def value(self, now: float) -> float | None:
        self._expire(now)
        return self._samples[0][1] if self._samples else None

    def age(self, now: float) -> float:
        """Seconds since the current extreme was sampled."""
        self._expire(now)
        return now - self._samples[0][0] if self._samples else 0.0

    def _expire(self, now: float) -> None:
        while len(self._samples) > 1 and self._samples[0][0] < now - self.span_s:
            self._samples.popleft()


@dataclass
class AdaptiveWindow:
    """The window (in calls) for one subnet; `limit` is a hard upper bound (e.g. from `--window`)."""

    limit: int
    initial: int = INITIAL_WINDOW
    phase: str = "startup"
    overloads: int = 0
    peak: int = 0
    _window: float = 0.0
    _cap: float = math.inf  # after an overload: grows back by one call per round
    _min_rtt: WindowedMin = field(default_factory=lambda: WindowedMin(RTT_FILTER_S))
    _latest_rtts: deque[float] = field(default_factory=lambda: deque(maxlen=QUEUE_SAMPLES))
    _acks: deque[tuple[float, int]] = field(default_factory=deque)
    _acked_in_span: int = 0
    _rate: float = 0.0
    _first_send: float | None = None
    _call_bytes: float = 0.0
    _phase_since: float = -math.inf
    _round_start: float = -math.inf  # startup: when the current round began, and the best rate then
    _round_rate: float = 0.0
    _flat_rounds: int = 0
    _last_probe: float = -math.inf
    _last_drain: float = -math.inf
    _last_backoff: float = -math.inf
    _last_cap_growth: float = -math.inf

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"a window holds at least one call, not {self.limit}")
        self._window = float(max(self.initial, 1))
        self.peak = self.window

    @property
    def window(self) -> int:
        return max(1, min(self.limit, int(min(self._window, self._cap))))

    def queue_s(self, now: float, samples: int = QUEUE_SAMPLES) -> float:
        """How long the latest calls waited beyond the minimum round trip (the subnet's queue)."""
        base = self._min_rtt.value(now)
        if base is None:
            return 0.0
        return max(0.0, min(list(self._latest_rtts)[-samples:]) - base)

    def acknowledged(self, now: float, nbytes: int, rtt: float) -> None:
        """One call's outcome was certified `rtt` seconds after its slot was granted."""
        rtt = max(rtt, 1e-6)
        sent = now - rtt
        self._first_send = sent if self._first_send is None else min(self._first_send, sent)
        self._call_bytes = nbytes if not self._call_bytes else 0.9 * self._call_bytes + 0.1 * nbytes
        self._min_rtt.add(now, rtt)
        self._latest_rtts.append(rtt)
        self._sample_rate(now, nbytes)
        if self.phase == "startup":
            self._window += 1  # one more per acknowledged call: the window doubles each round trip
            if self._pipe_full(now):
                self._enter("cruise", now)
                # The rate still lags the growth: scale by the round trips instead (what the window
                # holds per second stays the same when the queue shrinks to the headroom).
                base = self._min_rtt.value(now) or 0.0
                self._window *= (base + HEADROOM_S) / (base + self.queue_s(now, STARTUP_SAMPLES))
        else:
            self._schedule(now)
        self._window = max(float(MIN_WINDOW), min(self._window, float(self.limit)))
        self._grow_cap(now)
        self.peak = max(self.peak, self.window)

    def overloaded(self, now: float) -> None:
        """The replica refused a call for load: back off once per round, whatever the count of refusals."""
        self.overloads += 1
        if now - self._last_backoff < self._round(now):
            return
        self._last_backoff = self._last_cap_growth = now
        self._cap = max(MIN_WINDOW, min(self._window, self._cap) * BACKOFF)
        self._window = min(self._window, self._cap)
        if self.phase == "startup":
            self._enter("cruise", now)

    def stats(self, now: float) -> dict[str, object]:
        rtt = self._min_rtt.value(now)
        return {
            "window": self.window,
            "peak_window": self.peak,
            "phase": self.phase,
            "min_rtt_s": None if rtt is None else round(rtt, 3),
            "queue_s": round(self.queue_s(now), 3) if rtt is not None else None,
            "rate_bytes_s": round(self._rate),
            "overloads": self.overloads,
        }

    # ---- the schedule -----------------------------------------------------------------------------

    def _schedule(self, now: float) -> None:
        in_phase = now - self._phase_since
        if self.phase == "probe" and in_phase >= self._round(now):
            self._enter("cruise", now)
        elif self.phase == "drain":
            if in_phase >= self._round(now) + HEADROOM_S:
                self._enter("cruise", now)  # the headroom's queue has emptied and a round has passed
            return  # hold the drained window meanwhile
        elif self.phase == "cruise":
            stale = self._min_rtt.age(now) >= DRAIN_AFTER_S
            if stale and now - self._last_drain >= RTT_FILTER_S - DRAIN_AFTER_S:
                self._last_drain = now
                self._enter("drain", now)
                # the bare product of the minimum: no more than the pipe holds, so the queue empties
                self._window = self._calls(self._min_rtt.value(now) or 0.0)
                return
            if now - self._last_probe >= PROBE_EVERY_S:
                self._last_probe = now
                self._enter("probe", now)
        self._steer(now)

    def _steer(self, now: float) -> None:
        """Moves the window by a share of the queue's distance from its aim, spread over a round's acks."""
        aim_s = HEADROOM_S + (PROBE_EXTRA_S if self.phase == "probe" else 0.0)
        per_round = STEER_GAIN * self._calls(aim_s - self.queue_s(now))
        self._window += per_round / max(self._window, 1.0)

    def _calls(self, seconds: float) -> float:
        """How many calls the subnet delivers in `seconds` at the measured rate."""
        return self._rate * seconds / self._call_bytes if self._call_bytes else 0.0

    def _enter(self, phase: str, now: float) -> None:
        if self.phase == "startup":
            self._last_probe = now
        self.phase = phase
        self._phase_since = now

    def _pipe_full(self, now: float) -> bool:
        """Startup is over once a queue shows in the round trips, or the rate stopped rising."""
        if self._window >= self.limit:
            return True
        signal = max(QUEUE_SIGNAL * (self._min_rtt.value(now) or 0.0), QUEUE_SIGNAL_MIN_S)
        if len(self._latest_rtts) >= STARTUP_SAMPLES and self.queue_s(now, STARTUP_SAMPLES) >= signal:
            return True
        if now - self._round_start < self._round(now):
            return False
        grew = self._rate >= self._round_rate * FULL_PIPE_GROWTH
        self._flat_rounds = 0 if grew else self._flat_rounds + 1
        self._round_rate = max(self._round_rate, self._rate)
        self._round_start = now
        return self._flat_rounds >= FULL_PIPE_ROUNDS

    def _round(self, now: float) -> float:
        return max(self._min_rtt.value(now) or 0.0, MIN_ROUND_S)

    def _grow_cap(self, now: float) -> None:
        if self._cap == math.inf:
            return
        rounds = int((now - self._last_cap_growth) / self._round(now))
        if rounds >= 1:
            self._cap += rounds
            self._last_cap_growth = now
            if self._cap >= self.limit:
                self._cap = math.inf

    def _sample_rate(self, now: float, nbytes: int) -> None:
        """Bytes acknowledged over the latest span (at least RATE_SPAN_MIN_S, two round trips when
        longer): long enough that replies arriving unevenly (latency varies per call) average out. Not
        max-filtered as BBR does: with uneven replies the highest of such samples overstates the rate
        (by up to twice the latency's spread over the span), and the steering tolerates the dips."""
        span = max(RATE_SPAN_MIN_S, RATE_SPAN_RTTS * (self._min_rtt.value(now) or 0.0))
        self._acks.append((now, nbytes))
        self._acked_in_span += nbytes
        while self._acks and self._acks[0][0] <= now - span:
            self._acked_in_span -= self._acks.popleft()[1]
        assert self._first_send is not None
        elapsed = min(span, now - self._first_send)
        if elapsed > 0:
            self._rate = self._acked_in_span / elapsed
