"""Warning and error classes, named as in watchtower so existing ``except``/filters keep working."""


class WatchtowerWarning(UserWarning):
    """Something went wrong but nothing was lost (e.g. a record emitted after close())."""


class WatchtowerError(Exception):
    """Invalid use of the handler (e.g. both ``boto3_client`` and ``boto3_profile_name``)."""
