"""What a signed update call is and what can become of it: the records the client and delivery share."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.ic.errors import CallRejected

TERMINAL_STATUSES = ("replied", "rejected", "done")
# Reject codes (IC interface spec): 2 = SYS_TRANSIENT, 5 = CANISTER_ERROR (a trap: state rolled back).
RETRYABLE_REJECT_CODES = (2, 5)
# Error codes that no retry can fix even though their reject code is "transient".
PERMANENT_ERROR_CODES = ("IC0207", "IC0301", "IC0302", "IC0406", "IC0512", "IC0536")
_HINTS_BY_ERROR_CODE = {
    "IC0207": "the canister is out of cycles: top it up",
    "IC0301": "no such canister on this network: check --canister and --network",
    "IC0302": "the canister has no such method: is it the canister kind you think?",
    "IC0406": "the canister refused the message (often: this identity is not allowed); try a controller",
    "IC0502": "the canister trapped: its message says why",
    "IC0503": "the canister trapped: its message says why",
    "IC0507": "the canister ran out of memory",
    "IC0508": "the canister is stopped: start it",
    "IC0512": "only a controller may do this: use a controller identity",
    "IC0522": "the message hit the instruction limit",
    "IC0536": "the canister has no such method: is it the canister kind you think?",
}


@dataclass(frozen=True)
class SignedCall:
    """One signed update call. Resending `envelope` is the only exactly-once retry."""

    canister_id: str
    method: str
    request_id: bytes
    envelope: bytes
    expiry_ns: int
    effective_canister_id: str | None = None  # calls to aaaaa-aa: the canister they are about

    @property
    def route(self) -> str:
        """The canister id in the URL (and whose subnet certifies the outcome)."""
        return self.effective_canister_id or self.canister_id


@dataclass(frozen=True)
class CallResult:
    status: str  # "replied" | "rejected"
    reply: bytes | None = None
    reject_code: int | None = None
    reject_message: str | None = None
    error_code: str | None = None


@dataclass(frozen=True)
class RequestStatus:
    status: str  # "unknown" | "received" | "processing" | "replied" | "rejected" | "done"
    reply: bytes | None = None
    reject_code: int | None = None
    reject_message: str | None = None
    error_code: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class Outcome:
    """A certified end state: "replied" (reply set) or "done" (executed, reply already pruned)."""

    status: str
    reply: bytes | None


def rejection_error(canister_id: str, method: str, outcome: CallResult | RequestStatus) -> CallRejected:
    """The user-facing error for a certified reject, with the replica's words and a hint by error code."""
    code = outcome.error_code or ""
    return CallRejected(
        f"{method} on {canister_id} was rejected (reject code {outcome.reject_code}"
        + (f", {code}" if code else "")
        + f"): {outcome.reject_message}",
        reject_code=outcome.reject_code or 0,
        reject_message=outcome.reject_message or "",
        error_code=outcome.error_code,
        hint=_HINTS_BY_ERROR_CODE.get(code),
    )


def is_retryable(err: CallRejected) -> bool:
    """A rejected message changed nothing; some rejects are worth a freshly signed try."""
    return err.reject_code in RETRYABLE_REJECT_CODES and (err.error_code or "") not in PERMANENT_ERROR_CODES
