"""Throttle scenarios of the adaptive budget (no ``put_rate_limit``), real worker processes against the local endpoint.

    .venv/bin/python benchmarks/throttle_scenarios.py s1 3   # 16 processes, host scope, quota 4/s, flush at the end
    .venv/bin/python benchmarks/throttle_scenarios.py s3 3   # the same, process scope
    .venv/bin/python benchmarks/throttle_scenarios.py s2 3   # 8 processes, host scope, quota 10 -> 2 -> 10 calls/s

One JSON line a run: calls, throttled, peak calls in one second, lost, spilled, goodput (calls/s).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("MWAA_LOGGING_SPILL_TO", tempfile.mkdtemp())
import bench_throttle as bt
from _workloads import Endpoint


def per_second(samples, start, end):
    out = []
    prev = min(samples, key=lambda s: abs(s[0] - start))
    t = start + 1
    while t <= end + 1e-9:
        cur = min(samples, key=lambda s: abs(s[0] - t))
        out.append((cur[1] - prev[1], cur[2] - prev[2]))
        prev, t = cur, t + 1
    return out


def flush_burst(endpoint, scenario, procs, scope, quota, rate_per_s, seconds, batch=None):
    bt.QUOTA_TPS = quota
    settings = {"rate_limit_scope": scope}
    if batch:
        settings["max_batch_count"] = batch
    with tempfile.TemporaryDirectory() as tmp:
        run = bt.run_fleet(endpoint, "ours", procs, Path(tmp), settings, int(rate_per_s * seconds), seconds)
    s = run.summary()
    first = next((t for t, _, th in run.samples if th), None)
    tail = per_second(run.samples, run.emitted_until, run.samples[-1][0])
    return {"scenario": scenario, "calls": s["calls"], "throttled": s["throttled"], "share": s["throttled_share"],
            "peak_1s": s["peak_calls_1s"], "lost": s["lost"], "spilled": s["spilled"], "seconds": s["seconds"],
            "first_throttle": first, "emitted_until": round(run.emitted_until, 1),
            "flush_s": round(run.seconds - run.emitted_until, 1),
            "goodput": round((s["calls"] - s["throttled"]) / run.seconds, 2),
            "after_emit_calls_throttled_per_s": tail,
            "timeline": per_second(run.samples, 0, run.samples[-1][0] - 1)}


def quota_change(endpoint, procs=8):
    bt.QUOTA_TPS = 10.0
    seconds = 36.0
    marks = {}

    def changer():
        time.sleep(12)
        endpoint.admin.set_quota(2.0)
        marks["low"] = time.time()
        time.sleep(12)
        endpoint.admin.set_quota(10.0)
        marks["high"] = time.time()

    th = threading.Thread(target=changer, daemon=True)
    with tempfile.TemporaryDirectory() as tmp:
        orig = bt.Sampler.__init__

        def start_changer(self, *a, **k):
            orig(self, *a, **k)
            marks["start"] = a[1]
            th.start()
        bt.Sampler.__init__ = start_changer
        try:
            run = bt.run_fleet(endpoint, "ours", procs, Path(tmp), {"rate_limit_scope": "host", "max_batch_count": 50},
                               int(60 * seconds), seconds)
        finally:
            bt.Sampler.__init__ = orig
    th.join()
    low, high = marks["low"] - marks["start"], marks["high"] - marks["start"]
    def seg(a, b):
        return bt.window(run.samples, a, b)
    _, c1, t1 = seg(0, low)
    _, c2, t2 = seg(low, high)
    sp3, c3, t3 = seg(high, run.emitted_until)
    return {"scenario": "quota 10->2->10, 8 procs host", "calls": run.calls, "throttled": run.throttled,
            "lost": run.lost, "spilled": run.spilled,
            "phase10": (c1, t1), "phase2": (c2, t2), "phase10b": (c3, t3),
            "phase10b_ok_per_s": round((c3 - t3) / sp3, 2),
            "low_per_s": per_second(run.samples, low, low + 10), "high_per_s": per_second(run.samples, high, high + 6)}


if __name__ == "__main__":
    which = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with Endpoint(put_quota=4.0) as endpoint:
        for _ in range(runs):
            if which == "s1":
                r = flush_burst(endpoint, "16 procs host quota 4", 16, "host", 4.0, 30, 15.0)
            elif which == "s3":
                r = flush_burst(endpoint, "16 procs process quota 4", 16, "process", 4.0, 30, 15.0)
            elif which == "s2":
                r = quota_change(endpoint)
            print(json.dumps(r), flush=True)
