"""One canister of a known kind, reached through an IcClient: profile calls in, plain answers out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.ic.client import IcClient, SignedCall
from pipeline.targets.calls import encode_args, interpret_reply
from pipeline.targets.profile import CallSpec, TargetProfile


@dataclass
class TargetSession:
    """`variables` fill the profile's call templates (remote names, load args, principal, ...)."""

    client: IcClient
    canister_id: str
    profile: TargetProfile
    variables: dict[str, Any] = field(default_factory=dict)

    def args(self, spec: CallSpec, **extra: Any) -> bytes:
        return encode_args(self.profile, spec, {**self.variables, **extra})

    def query(self, spec: CallSpec, *, whole: bool = False, **extra: Any) -> Any:
        """The answer of a query call; `whole` skips picking the spec's `value` from it."""
        arg = self.args(spec, **extra)
        reply = self.client.query(self.canister_id, spec.method, arg)
        return interpret_reply(self.profile, spec, reply, pick_value=not whole)

    def prepare(self, spec: CallSpec, **extra: Any) -> SignedCall:
        return self.client.prepare_call(self.canister_id, spec.method, self.args(spec, **extra))

    def interpret(self, spec: CallSpec, reply: bytes | None) -> Any:
        return None if reply is None else interpret_reply(self.profile, spec, reply)

    def is_query(self, spec: CallSpec) -> bool:
        return self.profile.is_query(spec.method)
