"""Exactly-once delivery of one signed call: resend the same envelope until the outcome is certified.

A retry never signs a new request for the same bytes while the old one might still execute; only when
`request_status` proves the old request id unknown outside its validity window (the replica refuses
expired messages, so it can never run) does the caller get `CallExpired` and may sign a fresh call.
The one `RetryPolicy` of the client paces errors, polls and resends; each stall is reported.

A resend that the replica refuses (a 4xx, an uncertified rejection: out of cycles, frozen) says nothing
about an earlier copy of the same envelope: once a copy may have reached the replica, only a certified
`request_status` or the expiry passing with the status unknown decides.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pipeline.ic.calls import Outcome, RequestStatus, SignedCall, rejection_error
from pipeline.ic.errors import (
    CallExpired,
    ExpiryRefused,
    GaveUp,
    IcError,
    Overloaded,
    PermanentIcError,
    TransientIcError,
)

if TYPE_CHECKING:
    from pipeline.ic.client import IcClient

NS_PER_S = 1_000_000_000
# Past this close to expiry the replica would refuse the envelope: only ask for its status.
EXPIRY_MARGIN_NS = NS_PER_S // 5
# The replica accepts expiries up to 5 minutes (plus some drift) after its own time.
MAX_EXPIRY_AHEAD_NS = 330 * NS_PER_S
# A call still "received"/"processing" this long after its expiry is stuck; say so instead of polling.
IN_FLIGHT_PATIENCE_NS = 300 * NS_PER_S
# A synchronous call may hold its connection this long before the replica answers 202.
SYNC_CALL_WAIT_S = 10.0


def deliver(
    client: IcClient,
    call: SignedCall,
    *,
    on_retry: Callable[[str], None] | None = None,
    on_overload: Callable[[], None] | None = None,
    sent_before: bool = False,
) -> Outcome:
    """Submits `call` and returns its certified outcome, resending the same envelope as needed.

    `sent_before`: an earlier process may have submitted this envelope (a journaled call being settled).
    `on_overload`: told each time a submission is refused for load (then retried like any transient error).

    Raises CallRejected for a certified reject, CallExpired when it provably never executed,
    GaveUp when its fate cannot be learned long after its expiry, PermanentIcError for failures no
    resend can fix.
    """
    policy = client.retry
    where = f"call {call.method} on {call.canister_id} at {client.network.url}"
    errors = polls = 0
    must_submit = True
    may_have_run = sent_before
    unknown_since: float | None = None
    failing_since: float | None = None
    last_error = ""
    while True:
        try:
            with client.waits.watch(
                where,
                until="its envelope is resent until it runs or expires",
                quiet_for_s=policy.notice_after_s + SYNC_CALL_WAIT_S,
            ):
                if must_submit and client.clock.now_ns() < call.expiry_ns - EXPIRY_MARGIN_NS:
                    must_submit = False
                    unknown_since = None
                    result = _submit(client, call, may_have_run, on_overload)
                    may_have_run = True
                    if result is not None:
                        return _outcome(call, result)
                status = client.request_status(call, patient=False)
            errors = 0
            failing_since = None
        except _RefusedResend as refused:
            if on_retry is not None:
                on_retry(f"{refused}; waiting for the certified status of the earlier copy")
            must_submit, unknown_since = False, None  # ask for the status; resend once it stays unknown
            time.sleep(policy.error_delay(errors))
            errors += 1
            continue
        except TransientIcError as err:
            may_have_run = True  # it may have reached the replica before the error
            last_error = f"; last error: {err.message}"
            if on_retry is not None:
                on_retry(str(err))
            failing_since = failing_since or time.monotonic()
            if client.clock.now_ns() > call.expiry_ns and time.monotonic() - failing_since > policy.budget_s:
                raise GaveUp(
                    f"{where}: its fate is unknown: no answer for {time.monotonic() - failing_since:.0f} s "
                    f"and it has expired; last error: {err.message}",
                    hint=f"request id {call.request_id.hex()}; check the replica, then run the command again "
                    "(an upload settles the call from its journal); " + policy.setting(),
                ) from err
            must_submit = True
            time.sleep(policy.error_delay(errors))
            errors += 1
            continue
        if status.is_terminal:
            return _outcome(call, status)
        now_ns = client.clock.now_ns()
        if status.status == "unknown":
            if now_ns > call.expiry_ns or call.expiry_ns > now_ns + MAX_EXPIRY_AHEAD_NS:
                raise CallExpired(
                    f"{where} expired without executing{last_error}",
                    hint="its request id can no longer run; it is safe to sign and send a new call",
                )
            now = time.monotonic()
            unknown_since = unknown_since or now
            if now - unknown_since >= policy.resend_after_s:
                must_submit = True  # the replica lost it or never got it: the same bytes again
        else:
            unknown_since = None
            if now_ns > call.expiry_ns + IN_FLIGHT_PATIENCE_NS:
                raise GaveUp(
                    f"{where} is still {status.status} long after its expiry",
                    hint=f"request id {call.request_id.hex()}: ask again later with request_status",
                )
        time.sleep(policy.poll_delay(polls))
        polls += 1


class _RefusedResend(IcError):
    """A resend was refused, but an earlier copy of the envelope may have run: its fate is still open."""


def _submit(
    client: IcClient, call: SignedCall, may_have_run: bool, on_overload: Callable[[], None] | None
) -> RequestStatus | None:
    """One submission; a refused expiry corrects the client's clock and leaves the fate to the status.
    Any other refusal decides the call's fate only if no earlier copy can have reached the replica; an
    uncertified rejection of a resend is checked against the certified status. A refusal for load is
    reported to `on_overload` (only submissions: a status read refused for load adds no ingress)."""
    try:
        result = client.submit(call)
    except Overloaded:
        if on_overload is not None:
            on_overload()
        raise
    except ExpiryRefused:
        client.sync_clock(call.route)
        return None
    except PermanentIcError as err:
        if not may_have_run:
            raise
        raise _RefusedResend(f"resend refused ({err.message})") from err
    if result is None:
        return None
    status = RequestStatus(**vars(result))
    if status.status == "rejected" and may_have_run:
        certified = client.request_status(call, patient=False)
        if certified.status != "rejected":
            raise _RefusedResend(f"resend rejected ({status.reject_message})")
        return certified
    return status


def _outcome(call: SignedCall, status: RequestStatus) -> Outcome:
    if status.status == "rejected":
        raise rejection_error(call.canister_id, call.method, status)
    return Outcome(status.status, status.reply)
