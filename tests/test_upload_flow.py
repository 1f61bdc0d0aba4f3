"""The adaptive window: the controller against a model subnet in simulated time, the thread-blocking
FlowControl around it, and uploads through icsim's blocks and bounded ingress pool."""

from __future__ import annotations

import heapq
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from pipeline.ic.errors import Overloaded
from pipeline.ic.replies import raise_for_http_status
from pipeline.ic.transport import WireResponse
from pipeline.upload.congestion import BACKOFF, INITIAL_WINDOW, AdaptiveWindow
from pipeline.upload.flow import FlowControl
from pipeline.upload.plan import chunk_size_for, plan_chunks
from tests.fixtures_icsim import call_envelope, dev_identity, upload_arg
from tests.fixtures_upload import EngineRun, kind_with_chunk_size, write_gguf
from tests.icsim import IcSim

CHUNK = 1_900_000
BLOCK_BYTES = 4 * 1024 * 1024


@dataclass
class ModelSubnet:
    """Blocks every `interval` take the first `per_block` waiting calls; each reply comes `latency` ±
    `jitter` later (seeded). Calls are submitted whenever the controller's window has room."""

    latency: float
    per_block: int = 2
    jitter: float = 0.5
    interval: float = 1.0
    limit: int = 64
    control: AdaptiveWindow = field(init=False)
    blocks: list[tuple[float, int, int]] = field(default_factory=list)  # time, calls taken, left waiting
    windows: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.control = AdaptiveWindow(self.limit)

    def run(self, seconds: float, *, per_block_after: tuple[float, int] | None = None) -> None:
        draws = random.Random(7)
        waiting: list[float] = []
        in_flight = 0
        events: list[tuple[float, int, float]] = [(self.interval, 1, 0.0)]  # (time, kind, sent); 1 = block

        def submit(now: float) -> None:
            nonlocal in_flight
            while in_flight < self.control.window:
                waiting.append(now)
                in_flight += 1

        submit(0.0)
        while events:
            now, kind, sent = heapq.heappop(events)
            if now > seconds:
                break
            if kind == 1:
                per_block = self.per_block
                if per_block_after is not None and now >= per_block_after[0]:
                    per_block = per_block_after[1]
                taken, waiting[:] = waiting[:per_block], waiting[per_block:]
                self.blocks.append((now, len(taken), len(waiting)))
                for call_sent in taken:
                    reply = now + max(0.0, self.latency + draws.uniform(-self.jitter, self.jitter))
                    heapq.heappush(events, (reply, 0, call_sent))
                heapq.heappush(events, (now + self.interval, 1, 0.0))
            else:
                in_flight -= 1
                self.control.acknowledged(now, CHUNK, now - sent)
                self.windows.append(self.control.window)
                submit(now)

    def fill(self, since: float, per_block: int | None = None) -> float:
        """Share of the blocks since `since` that were full."""
        wanted = per_block or self.per_block
        later = [taken for at, taken, _ in self.blocks if at >= since]
        return sum(min(taken, wanted) for taken in later) / (wanted * len(later))

    def waiting_blocks(self, since: float, share: float) -> float:
        """The calls left waiting after a block (the `share` percentile, since `since`), in 4 MiB blocks."""
        left = sorted(left for at, _, left in self.blocks if at >= since)
        return left[int(share * (len(left) - 1))] * CHUNK / BLOCK_BYTES


def test_startup_doubles_the_window_each_round_trip() -> None:
    control = AdaptiveWindow(64)
    assert control.window == INITIAL_WINDOW
    now = 0.0
    for expected in (8, 16, 32):
        now += 1.0
        for _ in range(control.window):
            control.acknowledged(now, CHUNK, 1.0)  # the same round trip: no queue anywhere
        assert control.window == expected and control.phase == "startup"


def test_settles_near_rate_times_round_trip_plus_headroom() -> None:
    for latency, per_block in ((1.0, 2), (4.0, 2), (6.0, 1)):
        subnet = ModelSubnet(latency, per_block)
        subnet.run(150.0)
        assert subnet.control.phase != "startup"
        assert subnet.fill(since=40.0) >= 0.97, (latency, per_block)
        # the pipe (latency plus up to a block's wait) and a headroom of about two blocks
        settled = subnet.windows[len(subnet.windows) // 2 :]
        assert per_block * latency <= min(settled), (latency, settled)
        assert max(settled) <= per_block * (latency + 1 + 2.5) + 1, (latency, settled)
        assert subnet.waiting_blocks(since=40.0, share=0.9) <= 2.5, (latency, per_block)
        assert subnet.waiting_blocks(since=40.0, share=1.0) <= 3.5, (latency, per_block)


def test_freed_capacity_is_found_and_used() -> None:
    subnet = ModelSubnet(2.0, per_block=1)
    subnet.run(120.0, per_block_after=(40.0, 2))  # other users leave half of every block free
    assert subnet.fill(since=70.0, per_block=2) >= 0.95


def test_limit_bounds_the_window() -> None:
    subnet = ModelSubnet(4.0, limit=6)
    subnet.run(40.0)
    assert max(subnet.windows) <= 6 and subnet.control.peak == 6


def test_overload_backs_off_once_per_round_then_grows_back() -> None:
    subnet = ModelSubnet(2.0)
    subnet.run(40.0)
    control = subnet.control
    before = control.window
    control.overloaded(40.0)
    after = control.window
    assert after <= max(2, int(before * BACKOFF)) and control.phase == "cruise"
    control.overloaded(40.01)  # the other refusals of the same moment: one back-off, not one each
    assert control.window == after and control.overloads == 2
    for second in range(1, 30):
        control.acknowledged(40.0 + second, CHUNK, 3.0)
    assert control.window > after


def test_an_overload_in_startup_ends_it() -> None:
    control = AdaptiveWindow(64)
    control.acknowledged(1.0, CHUNK, 1.0)
    control.overloaded(1.1)
    assert control.phase == "cruise" and control.window <= INITIAL_WINDOW


# ---- FlowControl: the threads around the controller ---------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_round_trips_are_measured_on_the_given_clock() -> None:
    clock = FakeClock()
    flow = FlowControl(8, clock=clock)
    slot = flow.acquire(CHUNK)
    clock.now += 2.5
    slot.acknowledged = True
    flow.release(slot)
    stats = flow.stats()
    assert stats["min_rtt_s"] == 2.5 and stats["adaptive"] is True and flow.window == INITIAL_WINDOW + 1


def test_failed_calls_free_their_slot_and_teach_nothing() -> None:
    flow = FlowControl(4)
    slots = [flow.acquire(CHUNK) for _ in range(4)]
    for slot in slots:
        flow.release(slot)  # never acknowledged: failed or abandoned
    assert flow.in_flight == 0 and flow.stats()["min_rtt_s"] is None
    assert flow.window == INITIAL_WINDOW  # nothing learned, nothing lost
    again = [flow.acquire(CHUNK) for _ in range(4)]  # all four slots are free again
    assert len(again) == 4


def test_slots_are_granted_in_arrival_order() -> None:
    flow = FlowControl(1)
    first = flow.acquire(CHUNK)
    granted: list[int] = []

    def take_turn(n: int) -> None:
        slot = flow.acquire(CHUNK)
        granted.append(n)
        flow.release(slot)

    threads = [threading.Thread(target=take_turn, args=(n,)) for n in range(5)]
    for n, thread in enumerate(threads):
        thread.start()
        while flow.waiting < n + 1:  # each thread queues before the next one starts
            threading.Event().wait(0.001)
    flow.release(first)
    for thread in threads:
        thread.join(5)
    assert granted == [0, 1, 2, 3, 4] and flow.in_flight == 0 and flow.peak == 1


def test_fixed_window_stays_at_its_limit() -> None:
    flow = FlowControl(12, adaptive=False)
    slot = flow.acquire(CHUNK)
    slot.acknowledged = True
    flow.release(slot)
    assert flow.window == 12 and flow.stats() == {"window": 12, "peak_in_flight": 1, "adaptive": False}
    flow.overloaded()
    assert flow.window == 12


# ---- through icsim ------------------------------------------------------------------------------------

SMALL = 65_536


def fast_blocks_upload(tmp_path: Path, **sim_options: object) -> tuple[IcSim, EngineRun, Path, Path]:
    kind = kind_with_chunk_size("llama_cpp", tmp_path / "kind", SMALL)
    model = write_gguf(tmp_path / "model.gguf", 40 * SMALL + 99)
    sim = IcSim(block_interval=0.05, block_ingress_bytes=2 * SMALL + 4096, latency=0.05, **sim_options)  # type: ignore[arg-type]
    return sim, EngineRun(sim, tmp_path / "work"), kind, model


def chunk_offsets(sim: IcSim) -> list[int | None]:
    return [u.offset for u in sim.updates if u.method == "file_upload_chunk" and u.outcome == "replied"]


def planned_offsets(model: Path) -> list[int | None]:
    chunks = plan_chunks(model.stat().st_size, chunk_size_for(SMALL, concurrent=True))
    return [chunk.offset for chunk in chunks]


def test_default_window_grows_and_never_overloads_the_subnet(tmp_path: Path) -> None:
    sim, run, kind, model = fast_blocks_upload(tmp_path, latency_jitter=0.02)
    with sim:
        report = run(kind, [("model", model, "models/model.gguf")], run_steps=False)
        assert report.flow is not None and report.flow["peak_window"] > INITIAL_WINDOW
        assert report.flow["adaptive"] and report.flow["overloads"] == 0
        assert sim.refused_for_load == 0
        assert sorted(chunk_offsets(sim)) == planned_offsets(model)  # type: ignore[type-var]
        assert run.named("done")[0]["flow"] == report.flow


def test_a_full_ingress_pool_backs_the_window_off_and_every_chunk_runs_once(tmp_path: Path) -> None:
    sim, run, kind, model = fast_blocks_upload(tmp_path, ingress_pool_bytes=4 * SMALL)
    with sim:
        report = run(kind, [("model", model, "models/model.gguf")], run_steps=False)
        assert sim.refused_for_load > 0
        assert report.flow is not None and report.flow["overloads"] > 0
        assert any("overloaded" in e["reason"] for e in run.named("retry"))
        assert sorted(chunk_offsets(sim)) == planned_offsets(model)  # type: ignore[type-var]  # each once
        assert sim.canister("llama_cpp").file_bytes("models/model.gguf") == model.read_bytes()


def test_refusals_for_load_are_typed() -> None:
    for status in (429, 503):
        response = WireResponse(status, "", b"Service is overloaded, try again later.")
        with pytest.raises(Overloaded, match=f"HTTP {status}: Service is overloaded"):
            raise_for_http_status(response, "http://replica/api/v4/canister/x/call")


def test_a_full_pool_refuses_new_calls_but_answers_known_ones() -> None:
    with IcSim(block_interval=30.0, ingress_pool_bytes=150_000) as sim:  # no block comes during the test
        identity = dev_identity(sim)
        url = f"{sim.url}/api/v2/canister/{sim.canister_ids['llama_cpp']}/call"
        canister = sim.canister_ids["llama_cpp"]
        chunks = [upload_arg("m", bytes(100_000), offset) for offset in (0, 100_000)]
        envelopes = [call_envelope(identity, canister, "file_upload_chunk", arg)[1] for arg in chunks]
        assert httpx.post(url, content=envelopes[0]).status_code == 202
        refused = httpx.post(url, content=envelopes[1])
        assert (refused.status_code, refused.text) == (503, "Service is overloaded, try again later.")
        assert httpx.post(url, content=envelopes[0]).status_code == 202  # a resend: still that request
        assert sim.refused_for_load == 1 and sim.updates == []


def test_canisters_of_one_subnet_share_one_window(tmp_path: Path) -> None:
    kind = kind_with_chunk_size("llama_cpp", tmp_path / "kind", SMALL)
    model = write_gguf(tmp_path / "model.gguf", 30 * SMALL + 5)
    flow = FlowControl(16)
    sim = IcSim(
        block_interval=0.05, block_ingress_bytes=2 * SMALL + 4096, latency=0.05, canisters_per_subnet=2
    )
    with sim:
        fleet = [h.principal for h in sim.hosted if h.kind == "llama_cpp"]
        runs = [EngineRun(sim, tmp_path / f"work{n}") for n in range(2)]
        reports = []

        def upload(run: EngineRun, canister: str) -> None:
            reports.append(
                run(
                    kind,
                    [("model", model, "models/model.gguf")],
                    canister=canister,
                    run_steps=False,
                    flow=flow,
                )
            )

        threads = [threading.Thread(target=upload, args=pair) for pair in zip(runs, fleet, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert [r.bytes_sent for r in reports] == [model.stat().st_size] * 2
        assert flow.in_flight == 0 and flow.stats()["peak_window"] > INITIAL_WINDOW and flow.peak <= 16
        assert sim.refused_for_load == 0
        for canister in fleet:
            assert sim.canister(canister).file_bytes("models/model.gguf") == model.read_bytes()
