"""Control a LocalAWS endpoint running in another process through its admin HTTP API.

Routes (JSON, under ``/_local_aws/``): ``GET health``; ``GET stats`` (``DELETE`` resets);
``GET|POST|DELETE faults`` (list, add one rule, clear all; ``DELETE faults?id=N`` one rule);
``GET|POST quota`` (``{"PutLogEvents": 100}``, null removes); ``GET events?group=G&stream=S``; ``GET streams``.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from dataclasses import replace
from typing import Any

import orjson

from mwaa_logging.testing.faults import FaultKind, FaultRule
from mwaa_logging.testing.middleware import ADMIN_PREFIX
from mwaa_logging.testing.stats import Stats


class AdminError(Exception):
    """The admin API refused a request."""


class RemoteLocalAWS:
    """The admin side of :class:`~mwaa_logging.testing.local_aws.LocalAWS`, over HTTP."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, route: str, payload: Any = None, **query: str) -> Any:
        address = f"{self.url}{ADMIN_PREFIX}{route}"
        if query:
            address += "?" + urllib.parse.urlencode(query)
        data = None if payload is None else orjson.dumps(payload)
        request = urllib.request.Request(address, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return orjson.loads(response.read())
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            raise AdminError(f"{method} {route}: {error.code} {detail}") from None

    def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = self._call("GET", "health")
        return answer

    def stats(self) -> Stats:
        return Stats.from_json(self._call("GET", "stats"))

    def reset_stats(self) -> None:
        self._call("DELETE", "stats")

    def inject(
        self,
        kind: FaultKind | str,
        *,
        api: str = "PutLogEvents",
        count: int | None = None,
        probability: float = 1.0,
        duration: float | None = None,
        delay: float = 0.0,
    ) -> FaultRule:
        payload = {"kind": FaultKind(kind).value, "api": api, "count": count, "probability": probability,
                   "duration": duration, "delay": delay}
        stored = self._call("POST", "faults", payload)
        return replace(FaultRule.from_json({key: stored[key] for key in payload}), id=int(stored["id"]))

    def throttle_for(self, seconds: float, api: str = "PutLogEvents") -> FaultRule:
        return self.inject(FaultKind.THROTTLE, api=api, duration=seconds)

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def remove_fault(self, rule_id: int) -> None:
        """Remove one rule (by the ``id`` the endpoint gave it); the others stay."""
        self._call("DELETE", "faults", id=str(int(rule_id)))

    def faults(self) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = self._call("GET", "faults")["faults"]
        return rules

    def set_quota(
        self,
        put_tps: float | None = None,
        *,
        create_stream_tps: float | None = None,
        create_group_tps: float | None = None,
    ) -> dict[str, float]:
        quotas: dict[str, float] = self._call("POST", "quota", {
            "PutLogEvents": put_tps, "CreateLogStream": create_stream_tps, "CreateLogGroup": create_group_tps,
        })["quotas"]
        return quotas

    def events(self, group: str, stream: str) -> list[tuple[int, str]]:
        events = self._call("GET", "events", group=group, stream=stream)["events"]
        return [(int(timestamp), str(message)) for timestamp, message in events]

    def streams(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = self._call("GET", "streams")["groups"]
        return groups
