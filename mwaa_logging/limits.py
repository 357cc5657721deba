"""CloudWatch Logs PutLogEvents rules and account quotas, in one place.

Source: the botocore service model ``logs/2014-03-28`` and the CloudWatch Logs quota table.
"""

from typing import Final

#: Per-event overhead CloudWatch adds when it counts a batch's size.
EVENT_OVERHEAD_BYTES: Final = 26
#: Largest PutLogEvents batch: sum of UTF-8 message bytes + 26 bytes per event.
MAX_BATCH_BYTES: Final = 1_048_576
#: Most events in one PutLogEvents call.
MAX_BATCH_EVENTS: Final = 10_000
#: Largest message that fits in a batch alone (one event may be at most 1 MB).
MAX_EVENT_MESSAGE_BYTES: Final = MAX_BATCH_BYTES - EVENT_OVERHEAD_BYTES
#: The valid events of one call may not span more than 24 hours.
MAX_BATCH_SPAN_MS: Final = 24 * 3600 * 1000
#: Events more than 2 hours in the future are rejected.
MAX_FUTURE_MS: Final = 2 * 3600 * 1000
#: Events older than 14 days are rejected.
MAX_AGE_MS: Final = 14 * 24 * 3600 * 1000
#: Safety margin kept from the future/age limits, for clock skew between us and AWS.
TIME_LIMIT_MARGIN_MS: Final = 5 * 60 * 1000

#: Default account-wide quotas (per account and Region), in calls per second.
PUT_LOG_EVENTS_TPS: Final = 5_000
CREATE_LOG_STREAM_TPS: Final = 50
CREATE_LOG_GROUP_TPS: Final = 10
