"""Exactly-once delivery of one signed call: resend the same envelope until the outcome is certified.

A retry never signs a new request for the same bytes while the old one might still execute; only when
`request_status` proves the old request id unknown outside its validity window (the replica refuses
expired messages, so it can never run) does the caller get `CallExpired` and may sign a fresh call.
The one `RetryPolicy` of the client paces errors, polls and resends; each stall is reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pipeline.ic.calls import Outcome, RequestStatus, SignedCall, rejection_error
from pipeline.ic.errors import CallExpired, ExpiryRefused, GaveUp, TransientIcError

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


def deliver(client: IcClient, call: SignedCall, *, on_retry: Callable[[str], None] | None = None) -> Outcome:
    """Submits `call` and returns its certified outcome, resending the same envelope as needed.

    Raises CallRejected for a certified reject, CallExpired when it provably never executed,
    GaveUp when its fate cannot be learned long after its expiry, PermanentIcError for failures no
    resend can fix.
    """
    policy = client.retry
    where = f"call {call.method} on {call.canister_id} at {client.network.url}"
    errors = polls = 0
    must_submit = True
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
                    result = _submit(client, call)
                    if result is not None:
                        return _outcome(call, result)
                status = client.request_status(call, patient=False)
            errors = 0
            failing_since = None
        except TransientIcError as err:
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


def _submit(client: IcClient, call: SignedCall) -> RequestStatus | None:
    """One submission; a refused expiry corrects the client's clock and leaves the fate to the status."""
    try:
        result = client.submit(call)
    except ExpiryRefused:
        client.sync_clock(call.route)
        return None
    return None if result is None else RequestStatus(**vars(result))


def _outcome(call: SignedCall, status: RequestStatus) -> Outcome:
    if status.status == "rejected":
        raise rejection_error(call.canister_id, call.method, status)
    return Outcome(status.status, status.reply)
