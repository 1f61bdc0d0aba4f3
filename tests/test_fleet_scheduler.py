"""The fleet scheduler in-process: one FlowControl per subnet shared by its canisters, a failure kept to
its canister, events tagged, and one mainnet question for the whole fleet."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.errors import PrepError
from pipeline.fleet.confirm import OneQuestion
from pipeline.fleet.members import FleetTarget
from pipeline.fleet.scheduler import Assignment, run_fleet
from pipeline.fleet.spec import FleetMember
from pipeline.ic.client import IcClient
from pipeline.ic.identity import anonymous_identity
from pipeline.ic.network import Network
from pipeline.upload.flow import FlowControl

IDS = [
    "rrkah-fqaaa-aaaaa-aaaaq-cai",
    "ryjl3-tyaaa-aaaaa-aaaba-cai",
    "r7inp-6aaaa-aaaaa-aaabq-cai",
    "rkp4c-7iaaa-aaaaa-aaaca-cai",
]


@pytest.fixture
def targets() -> Iterator[list[FleetTarget]]:
    client = IcClient(Network("local", "http://127.0.0.1:9", is_mainnet=False), anonymous_identity())
    yield [FleetTarget(FleetMember(cid), cid, client, f"subnet-{i // 2}") for i, cid in enumerate(IDS)]
    client.close()


def test_each_subnet_gets_one_flow_shared_by_its_canisters_and_a_failure_stays_with_its_canister(
    targets: list[FleetTarget],
) -> None:
    flows: dict[str, FlowControl] = {}
    events: list[dict[str, Any]] = []
    lock = threading.Lock()

    def work(target: FleetTarget, job: Assignment) -> None:
        with lock:
            flows[target.canister_id] = job.flow
        job.emit({"event": "chunk", "bytes": 10})
        if target.canister_id == IDS[1]:
            raise PrepError("canister refused the chunk\nsecond line", hint="top it up")
        job.row.bytes_sent = 10

    report = run_fleet(targets, [], work, window=5, on_event=events.append)
    assert flows[IDS[0]] is flows[IDS[1]] and flows[IDS[2]] is flows[IDS[3]]
    assert flows[IDS[0]] is not flows[IDS[2]] and flows[IDS[0]].limit == 5
    assert [r.canister_id for r in report.rows] == IDS
    assert [r.ok for r in report.rows] == [True, False, True, True]
    assert report.failed[0].reason == "canister refused the chunk"
    assert report.bytes_sent == 30
    for event in events:
        assert event["subnet"] == f"subnet-{IDS.index(event['canister']) // 2}"
    assert {e["event"] for e in events if e["canister"] == IDS[1]} == {"chunk", "failed"}
    assert "FAILED" in report.table() and "reason: canister refused the chunk" in report.table()


def test_one_question_waits_for_every_mainnet_canister_then_asks_once_with_the_totals() -> None:
    asked: list[dict[str, Any]] = []
    question = OneQuestion({"a", "b", "c"}, lambda totals: asked.append(totals) or True)
    answers: dict[str, bool] = {}
    plan = {"bytes": 100, "messages": 2, "estimated_cycles": 7, "kind": "llama_cpp"}

    def show(cid: str) -> None:
        answers[cid] = question.confirm_for(cid)(plan)

    threads = [threading.Thread(target=show, args=(cid,)) for cid in ("a", "b")]
    for thread in threads:
        thread.start()
    threads[0].join(0.2)
    assert not asked and threads[0].is_alive()  # "c" may still show a plan
    question.ended("c")  # it failed before its plan
    for thread in threads:
        thread.join(5)
    assert answers == {"a": True, "b": True}
    assert asked == [
        {"canisters": 2, "bytes": 200, "messages": 4, "estimated_cycles": 14, "kinds": ["llama_cpp"]}
    ]
    assert (
        question.confirm_for("a")(plan) is True and len(asked) == 1
    )  # the load stage asks again: same answer
