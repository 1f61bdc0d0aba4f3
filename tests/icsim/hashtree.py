"""IC hash trees: build from nested labelled state, reveal only requested paths, digest, CBOR form."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

State = dict[bytes, Union["State", bytes]]


def _domain(name: str) -> bytes:
    return bytes([len(name)]) + name.encode()


DS_EMPTY = _domain("ic-hashtree-empty")
DS_FORK = _domain("ic-hashtree-fork")
DS_LABELED = _domain("ic-hashtree-labeled")
DS_LEAF = _domain("ic-hashtree-leaf")


@dataclass(frozen=True)
class Node:
    """One hash-tree node; `kind` is empty|fork|labeled|leaf|pruned."""

    kind: str
    left: Node | None = None
    right: Node | None = None
    label: bytes = b""
    data: bytes = b""

    def digest(self) -> bytes:
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


def _fork_all(nodes: list[Node]) -> Node:
    if not nodes:
        return EMPTY
    if len(nodes) == 1:
        return nodes[0]
    middle = (len(nodes) + 1) // 2
    left, right = _fork_all(nodes[:middle]), _fork_all(nodes[middle:])
    if left.kind == "pruned" and right.kind == "pruned":
        return pruned(Node("fork", left, right))
    return Node("fork", left, right)


def build(state: State | bytes) -> Node:
    """The full tree of a state (labels sorted, children combined in a balanced fork tree)."""
    if isinstance(state, (bytes, bytearray)):
        return Node("leaf", data=bytes(state))
    return _fork_all([Node("labeled", build(state[label]), label=label) for label in sorted(state)])


def reveal(state: State | bytes, paths: Sequence[Sequence[bytes]]) -> Node:
    """A tree with the same root digest as build(state) that shows only the subtrees under `paths`."""
    if any(len(p) == 0 for p in paths) or isinstance(state, (bytes, bytearray)):
        return build(state)
    children = []
    for label in sorted(state):
        below = [p[1:] for p in paths if p[0] == label]
        child = Node(
            "labeled", build(state[label]) if not below else reveal(state[label], below), label=label
        )
        children.append(child if below else pruned(child))
    return _fork_all(children)
