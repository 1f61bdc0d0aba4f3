"""The request_status subtree, updated incrementally so certificates stay cheap with many requests.

The IC does not fix the fork shape of a tree, only the label order. Here request ids go into 256 buckets
by their first byte; a changed status rebuilds its bucket and the 8 forks above it, not the whole tree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from tests.icsim.hashtree import EMPTY, Node, fork_all, labeled

BUCKETS = 256
StatusEntry = tuple[str, Callable[[str], Node]]  # certified status, builder of the subtree for a status


class RequestStatusTree:
    def __init__(self) -> None:
        self._buckets: dict[int, tuple[tuple[tuple[bytes, str], ...], Node]] = {}
        self._ranges: dict[tuple[int, int], Node | None] = {}

    def tree(self, entries: dict[bytes, StatusEntry]) -> Node:
        grouped: dict[int, list[bytes]] = defaultdict(list)
        for request_id in entries:
            grouped[request_id[0] if request_id else 0].append(request_id)
        for bucket in set(grouped) | set(self._buckets):
            ids = sorted(grouped.get(bucket, ()))
            key = tuple((rid, entries[rid][0]) for rid in ids)
            cached = self._buckets.get(bucket)
            if cached is not None and cached[0] == key:
                continue
            if ids:
                self._buckets[bucket] = (
                    key,
                    fork_all([labeled(rid, entries[rid][1](entries[rid][0])) for rid in ids]),
                )
            else:
                del self._buckets[bucket]
            self._invalidate(bucket)
        return self._range(0, BUCKETS) or EMPTY

    def _invalidate(self, bucket: int) -> None:
        low, high = 0, BUCKETS
        while True:
            self._ranges.pop((low, high), None)
            if high - low == 1:
                return
            middle = (low + high) // 2
            low, high = (low, middle) if bucket < middle else (middle, high)

    def _range(self, low: int, high: int) -> Node | None:
        if (low, high) in self._ranges:
            return self._ranges[(low, high)]
        if high - low == 1:
            cached = self._buckets.get(low)
            node = cached[1] if cached else None
        else:
            middle = (low + high) // 2
            left, right = self._range(low, middle), self._range(middle, high)
            if left is None or right is None:
                node = left or right
            else:
                node = Node("fork", left, right, low=left.low, high=right.high)
        self._ranges[(low, high)] = node
        return node
