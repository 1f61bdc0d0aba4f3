"""Exactly-once delivery of one signed call: resend the same envelope until the outcome is certified.

A retry never signs a new request for the same bytes while the old one might still execute; only when
`request_status` proves the old request id unknown after its expiry (the replica refuses expired
messages, so it can never run) does the caller get `CallExpired` and may sign a fresh call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.ic.client import IcClient, RequestStatus, SignedCall, rejection_error
from pipeline.ic.errors import CallRejected, IcError, TransientIcError
from pipeline.targets.retry import Backoff

# Reject codes (IC interface spec): 2 = SYS_TRANSIENT, 5 = CANISTER_ERROR (a trap: state rolled back).
RETRYABLE_REJECT_CODES = (2, 5)
# Error codes that no retry can fix even though their reject code is "transient".
PERMANENT_ERROR_CODES = ("IC0207", "IC0301", "IC0302", "IC0406", "IC0512", "IC0536")
# The replica may not know a message for a moment after accepting it; resend if still unknown then.
RESUBMIT_UNKNOWN_AFTER_S = 2.0
# Past this close to expiry the replica would refuse the envelope: only ask for its status.
EXPIRY_MARGIN_NS = 1_000_000_000


class CallExpired(IcError):
    """The call expired without executing (certified "unknown" after expiry): sign a new one."""


@dataclass(frozen=True)
class Outcome:
    """A certified end state: "replied" (reply set) or "done" (executed, reply already pruned)."""

    status: str
    reply: bytes | None


def is_retryable(err: CallRejected) -> bool:
    """A rejected message changed nothing; some rejects are worth a freshly signed try."""
    return err.reject_code in RETRYABLE_REJECT_CODES and (err.error_code or "") not in PERMANENT_ERROR_CODES


def deliver(
    client: IcClient,
    call: SignedCall,
    *,
    backoff: Backoff | None = None,
    on_retry: Callable[[str], None] | None = None,
) -> Outcome:
    """Submits `call` and returns its certified outcome, resending the same envelope as needed.

    Raises CallRejected for a certified reject, CallExpired when it provably never executed,
    PermanentIcError for failures no resend can fix.
    """
    backoff = backoff or Backoff()
    errors = polls = 0
    must_submit = True
    unknown_since: float | None = None
    while True:
        try:
            if must_submit and time.time_ns() < call.expiry_ns - EXPIRY_MARGIN_NS:
                result = client.submit(call)
                must_submit = False
                unknown_since = None
                if result is not None:
                    return _outcome(call, RequestStatus(**vars(result)))
            status = client.request_status(call)
            errors = 0
        except TransientIcError as err:
            if on_retry is not None:
                on_retry(str(err))
            must_submit = True
            time.sleep(backoff.error_delay(errors))
            errors += 1
            continue
        if status.is_terminal:
            return _outcome(call, status)
        if status.status == "unknown":
            if time.time_ns() > call.expiry_ns:
                raise CallExpired(f"{call.method} on {call.canister_id} expired without executing")
            now = time.monotonic()
            unknown_since = unknown_since or now
            if now - unknown_since >= RESUBMIT_UNKNOWN_AFTER_S:
                must_submit = True  # the replica lost it or never got it: the same bytes again
        else:
            unknown_since = None
        time.sleep(backoff.poll_delay(polls))
        polls += 1


def _outcome(call: SignedCall, status: RequestStatus) -> Outcome:
    if status.status == "rejected":
        raise rejection_error(call.canister_id, call.method, status)
    return Outcome(status.status, status.reply)
