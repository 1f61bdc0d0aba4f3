"""IC hash trees: build from nested labelled state, reveal only requested paths, digest, CBOR form."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

State = dict[bytes, Union["State", bytes, "Node"]]


def _domain(name: str) -> bytes:
    return bytes([len(name)]) + name.encode()


DS_EMPTY = _domain("ic-hashtree-empty")
DS_FORK = _domain("ic-hashtree-fork")
DS_LABELED = _domain("ic-hashtree-labeled")
DS_LEAF = _domain("ic-hashtree-leaf")


@dataclass(frozen=True)
class Node:
    """One hash-tree node; `kind` is empty|fork|labeled|leaf|pruned.

    Forks and labeled nodes know the lowest and highest label below them at their level, so revealing
    one path in a wide subtree visits O(log n) nodes; digests are computed once per node.
    """

    kind: str
    left: Node | None = None
    right: Node | None = None
    label: bytes = b""
    data: bytes = b""
    low: bytes = b""
    high: bytes = b""

    @functools.cached_property
    def _digest(self) -> bytes:
        if self.kind == "empty":
            return hashlib.sha256(DS_EMPTY).digest()
        if self.kind == "fork":
            assert self.left is not None and self.right is not None
            return hashlib.sha256(DS_FORK + self.left.digest() + self.right.digest()).digest()
        if self.kind == "labeled":
            assert self.left is not None
            return hashlib.sha256(DS_LABELED + self.label + self.left.digest()).digest()
        if self.kind == "leaf":
            return hashlib.sha256(DS_LEAF + self.data).digest()
        return self.data

    def digest(self) -> bytes:
        return self._digest

    def to_cbor(self) -> list:
        if self.kind == "empty":
            return [0]
        if self.kind == "fork":
            assert self.left is not None and self.right is not None
            return [1, self.left.to_cbor(), self.right.to_cbor()]
        if self.kind == "labeled":
            assert self.left is not None
            return [2, self.label, self.left.to_cbor()]
        if self.kind == "leaf":
            return [3, self.data]
        return [4, self.data]


EMPTY = Node("empty")


def pruned(node: Node) -> Node:
    return node if node.kind == "pruned" else Node("pruned", data=node.digest())


def fork_all(nodes: list[Node]) -> Node:
    if not nodes:
        return EMPTY
    if len(nodes) == 1:
        return nodes[0]
    middle = (len(nodes) + 1) // 2
    left, right = fork_all(nodes[:middle]), fork_all(nodes[middle:])
    return Node("fork", left, right, low=left.low, high=right.high)


def labeled(label: bytes, child: Node) -> Node:
    return Node("labeled", child, label=label, low=label, high=label)


def build(state: State | bytes | Node) -> Node:
    """The full tree of a state (labels sorted, children combined in a balanced fork tree).

    A Node inside the state is a subtree built earlier, reused as it is."""
    if isinstance(state, Node):
        return state
    if isinstance(state, (bytes, bytearray)):
        return Node("leaf", data=bytes(state))
    return fork_all([labeled(label, build(state[label])) for label in sorted(state)])


def reveal(tree: Node, paths: Sequence[Sequence[bytes]]) -> Node:
    """A tree with the same root digest as `tree` that shows only the subtrees under `paths`."""
    if not paths or any(len(p) == 0 for p in paths):
        return tree if paths else pruned(tree)
    if tree.kind == "fork":
        assert tree.left is not None and tree.right is not None
        if not any(tree.low <= p[0] <= tree.high for p in paths):
            return pruned(tree)
        return Node("fork", reveal(tree.left, paths), reveal(tree.right, paths), low=tree.low, high=tree.high)
    if tree.kind == "labeled":
        assert tree.left is not None
        below = [p[1:] for p in paths if p[0] == tree.label]
        return labeled(tree.label, reveal(tree.left, below)) if below else pruned(tree)
    return tree
