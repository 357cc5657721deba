"""Classification of AWS call results: one small vocabulary that drives retries and spilling."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.Enum):
    OK = "ok"
    #: 200, but ``rejectedLogEventsInfo`` names events CloudWatch refused.
    PARTIAL = "partial"
    THROTTLED = "throttled"
    #: Network errors, timeouts, 5xx, expired credentials: worth retrying.
    TRANSIENT = "transient"
    #: ResourceNotFoundException: the group or stream must be created.
    NO_RESOURCE = "no_resource"
    #: The request itself is wrong; retrying it unchanged cannot help.
    INVALID = "invalid"
    #: Bad credentials or missing permissions.
    AUTH = "auth"


@dataclass(frozen=True)
class RejectedInfo:
    """``rejectedLogEventsInfo`` of a PutLogEvents response (indices into the sent, sorted batch)."""

    too_new_start: int | None = None  # inclusive
    too_old_end: int | None = None  # exclusive
    expired_end: int | None = None  # exclusive


@dataclass(frozen=True)
class CallResult:
    """What one AWS call came to, as the engine needs to know it."""

    outcome: Outcome
    error_code: str | None = None
    message: str = ""
    rejected: RejectedInfo | None = None
    #: True when the request may have been applied although we saw no answer (timeout, reset).
    ambiguous: bool = False
    #: Bytes put on the wire (body after compression), for stats.
    wire_bytes: int = 0


_THROTTLE_CODES = frozenset(
    {"ThrottlingException", "Throttling", "ThrottledException", "RequestLimitExceeded", "TooManyRequestsException",
     "LimitExceededException", "SlowDown", "RequestThrottled", "RequestThrottledException"}
)
_TRANSIENT_CODES = frozenset(
    {"ServiceUnavailableException", "ServiceUnavailable", "InternalFailure", "InternalError",
     "InternalServerError", "OperationAbortedException", "RequestTimeout", "RequestTimeoutException",
     "ExpiredToken", "ExpiredTokenException", "RequestExpired", "IDPCommunicationError",
     "PriorRequestNotComplete"}
)
_AUTH_CODES = frozenset(
    {"UnrecognizedClientException", "AccessDenied", "AccessDeniedException", "InvalidClientTokenId",
     "InvalidSignatureException", "SignatureDoesNotMatch", "MissingAuthenticationToken",
     "IncompleteSignature", "NotAuthorized", "UnauthorizedOperation", "AuthFailure",
     "NoCredentialsError"}
)
_NO_RESOURCE_CODES = frozenset({"ResourceNotFoundException"})
#: ResourceAlreadyExistsException is a success for the Create* calls.
ALREADY_EXISTS_CODES = frozenset({"ResourceAlreadyExistsException"})


#: PutLogEvents answered that it had taken this very batch already (endpoints that still use sequence tokens): it is
#: delivered; spilling it would store it twice after a replay.
_ALREADY_ACCEPTED_CODES = frozenset({"DataAlreadyAcceptedException"})


def classify_error(code: str | None, http_status: int | None) -> Outcome:
    """Map an AWS error code and HTTP status to an :class:`Outcome`."""
    if code in _ALREADY_ACCEPTED_CODES:
        return Outcome.OK
    if code in _THROTTLE_CODES or http_status == 429:
        return Outcome.THROTTLED
    if code in _NO_RESOURCE_CODES:
        return Outcome.NO_RESOURCE
    if code in _AUTH_CODES or http_status in (401, 403):
        return Outcome.AUTH
    if code in _TRANSIENT_CODES:
        return Outcome.TRANSIENT
    if http_status is not None and http_status >= 500:
        return Outcome.TRANSIENT
    if http_status is None and code is None:
        return Outcome.TRANSIENT
    return Outcome.INVALID
