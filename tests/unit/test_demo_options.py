"""``mwaa-logging demo``: its options and the pure parts of its verdict (fast: no endpoint, no task process)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import pytest

from mwaa_logging.demo import add_arguments
from mwaa_logging.demo.runner import DemoConfig, Run
from mwaa_logging.demo.worker import MWAA_LOGGING, WATCHTOWER


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mwaa-logging demo")
    add_arguments(parser)
    return parser.parse_args(list(argv))


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_blank_spill_to_is_a_usage_error_naming_the_option(blank: str, capsys: pytest.CaptureFixture[str]) -> None:
    # The handler reads "" as unset and spills to its default directory: the demo would not read it back.
    err = usage_error(capsys, "--spill-to", blank)
    assert "argument --spill-to: must not be blank" in err, err


def no_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make starting an endpoint or a run fail the test (a usage error must come before either)."""
    from mwaa_logging.demo import runner
    from mwaa_logging.demo.endpoint import Target

    def must_not_start(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("started before the options were checked")

    for name in ("embedded", "remote", "real_aws"):
        monkeypatch.setattr(Target, name, must_not_start)
    monkeypatch.setattr(runner, "run_handlers", must_not_start)


def _run(tmp_path: Path, handler: str, spill_to: str | None) -> Run:
    config = DemoConfig(spill_to=spill_to)
    return Run(config, target=Any, handler=handler, console=Any, workdir=tmp_path)  # type: ignore[arg-type]


def test_the_read_back_always_searches_the_default_spill_directory_the_handler_falls_back_to(tmp_path: Path) -> None:
    from mwaa_logging.spill.local import default_spill_directory

    default = str(default_spill_directory())
    assert _run(tmp_path, MWAA_LOGGING, "s3://b/p").spill_locations() == ["s3://b/p", default]
    assert _run(tmp_path, MWAA_LOGGING, None).spill_locations() == [default]
    assert _run(tmp_path, MWAA_LOGGING, default).spill_locations() == [default]
    assert _run(tmp_path, WATCHTOWER, None).spill_locations() == []  # watchtower does not spill


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--tasks", "99999999999999999999", "must be at most 64"),  # no fork bomb
    ("--tasks", "65", "must be at most 64"),
    ("--tasks", "0", "must be >= 1"),
    ("--lines", "99999999999999999999", "must be at most 1,000,000 per task"),  # orjson: TypeError at the tasks
    ("--lines", "0", "must be >= 1"),
    ("--big-events", "99999999999999999999", "must be at most 100"),
    ("--big-events", "-1", "must be >= 0"),
    ("--seed", "99999999999999999999", "must be at most 9,223,372,036,854,775,807 (2**63-1)"),
    ("--seed", "-1", "must be >= 0"),
    ("--neighbour-tps", "1e9", "must be at most 1000 calls/s"),
    ("--neighbour-tps", "nan", "must be >= 0"),
    ("--quota", "1e300", "must be at most 10000 calls/s (or 'none')"),
    ("--rate-limit", "1e300", "must be at most 10000 calls/s (or 'none')"),
    # a rate above 0 but tiny made the replay's time limit overflow subprocess.run (OverflowError)
    ("--rate-limit", "1e-300", "must be at least 0.01 calls/s (or 'none')"),
    ("--quota", "0.009", "must be at least 0.01 calls/s (or 'none')"),
    # not a number: the message says what was expected, not an internal converter's name
    ("--tasks", "abc", "expected a whole number, got 'abc'"),
    ("--lines", "1.5", "expected a whole number, got '1.5'"),
    ("--seed", "x", "expected a whole number, got 'x'"),
    ("--duration", "abc", "expected a number, got 'abc'"),
    ("--storm", "abc", "expected a number, got 'abc'"),
    ("--quota", "abc", "expected a number, got 'abc'"),
    ("--rate-limit", "abc", "expected a number, got 'abc'"),
    ("--neighbour-tps", "abc", "expected a number, got 'abc'"),
    ("--max-latency", "abc", "expected a number, got 'abc'"),
])
def test_numeric_options_are_bounded_and_their_errors_name_the_option_and_the_limit(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = usage_error(capsys, option, value)
    assert f"argument {option}: {message}" in err, err
    assert "invalid" not in err and "_int" not in err and "_non_negative" not in err, err


def test_the_limits_themselves_are_accepted() -> None:
    args = parse("--tasks", "64", "--lines", "1000000", "--big-events", "100", "--seed", str(2**63 - 1),
                 "--neighbour-tps", "1000", "--quota", "0.01", "--rate-limit", "0.01")
    assert (args.tasks, args.lines, args.big_events, args.seed, args.neighbour_tps, args.quota, args.rate_limit) == (
        64, 1_000_000, 100, 2**63 - 1, 1000.0, 0.01, 0.01)


def test_the_replay_time_limit_is_capped_at_a_day(tmp_path: Path) -> None:
    # At the slowest rates and many spill objects EXIT_GRACE + 4 * objects / rate grows without bound; a huge
    # timeout overflows subprocess.run (OverflowError: timestamp too large).
    from mwaa_logging.demo.runner import MAX_REPLAY_SECONDS
    from mwaa_logging.demo.verify import TaskCheck

    run = Run(DemoConfig(quota=0.01, rate_limit=0.01), target=Any, handler=MWAA_LOGGING, console=Any,  # type: ignore[arg-type]
              workdir=tmp_path)
    check = TaskCheck("t", "s", 1, spill_objects={f"s3://b/p/{n}" for n in range(10_000)})
    assert run.replay_timeout([check]) == MAX_REPLAY_SECONDS == 86_400.0


@pytest.mark.parametrize("chart", ["x.png", "chart.svg", "chart", "out/chart.HTML.txt"])
def test_a_chart_path_not_ending_in_html_is_a_usage_error(chart: str, capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The chart is an HTML page: written into x.png it would be HTML in a .png.
    from mwaa_logging.cli import main

    no_start(monkeypatch)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--quiet", "--compare", "watchtower", "--chart", chart])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --chart: {chart}: must end in .html or .htm" in err, err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("chart", ["x.html", "x.htm", "X.HTML"])
def test_html_chart_paths_are_accepted(chart: str, tmp_path: Path) -> None:
    from mwaa_logging.demo import chart_problem

    assert chart_problem(tmp_path / chart) is None


@pytest.mark.parametrize(("options", "named"), [
    (["--quota", "3"], "--quota"), (["--quota", "none"], "--quota"), (["--storm", "5"], "--storm"),
    (["--neighbour-tps", "2"], "--neighbour-tps"),
    # their default values, given on the command line, were accepted silently (compared with the defaults)
    (["--quota", "5"], "--quota"), (["--storm", "12"], "--storm"), (["--neighbour-tps", "1.5"], "--neighbour-tps"),
])
def test_simulated_conditions_with_real_aws_are_usage_errors(
    options: list[str], named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    from mwaa_logging.cli import main

    no_start(monkeypatch)
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--quiet", "--real-aws", "--spill-to", str(tmp_path), *options])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {named}: not allowed with --real-aws" in err, err


def test_conditions_that_ask_for_nothing_are_not_counted_as_given() -> None:
    from mwaa_logging.demo import conditions_given

    assert conditions_given(parse()) == []
    assert conditions_given(parse("--storm", "0", "--neighbour-tps", "0")) == []
    assert conditions_given(parse("--quota", "3", "--storm", "1", "--neighbour-tps", "2")) == [
        "--quota", "--storm", "--neighbour-tps"]
    # given on the command line at their default values: given
    assert conditions_given(parse("--neighbour-tps", "1.5", "--quota", "5", "--storm", "12")) == [
        "--quota", "--storm", "--neighbour-tps"]
    args = parse("--storm", "12")
    assert args.storm == 12.0 and args.quota == DemoConfig().quota  # the others still get their defaults


def test_on_an_endpoint_without_the_admin_api_the_ignored_conditions_are_said_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mwaa_logging.cli import main
    from mwaa_logging.demo import runner
    from mwaa_logging.demo.endpoint import Target

    url = "http://127.0.0.1:9"
    other = Target(f"endpoint at {url}", {}, url, None)  # answers, but is not a mwaa-logging local endpoint
    monkeypatch.setattr(Target, "remote", lambda *args, **kwargs: other)
    monkeypatch.setattr(Target, "probe", lambda self, group: None, raising=False)

    def stopped(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_handlers", stopped)
    assert main(["demo", "--quiet", "--endpoint-url", url, "--storm", "4", "--quota", "2"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"--quota, --storm ignored: {url} has no mwaa-logging admin API" in err, err
    # the default value given on the command line is ignored too, and said
    assert main(["demo", "--quiet", "--endpoint-url", url, "--quota", "5"]) == 130
    err = capsys.readouterr().err
    assert f"--quota ignored: {url} has no mwaa-logging admin API" in err, err


def _result(*, lost: int = 0, duplicates: int = 0, after_replay: bool = True) -> Any:
    from mwaa_logging.demo.runner import RunResult
    from mwaa_logging.demo.verify import TaskCheck

    check = TaskCheck("t", "s", 1000, arrived=1000 - lost, in_cloudwatch=600 - lost, lost=lost)
    check.spilled["max_latency"] = 400
    replayed = TaskCheck("t", "s", 1000, arrived=1000 - lost, in_cloudwatch=1000 - lost, lost=lost,
                         duplicates=duplicates)
    return RunResult(MWAA_LOGGING, "g", "s3://b/p", [check], {}, [], None, 1.0, 0.1,
                     after_replay=[replayed] if after_replay else None)


def test_the_verdict_names_the_duplicates_left_in_cloudwatch_after_the_replay() -> None:
    # 489 duplicates (a lost_reply fault on half the PutLogEvents calls) gave "RESULT ... success" without a
    # word on them. Delivery is at least once: they are named, and only loss fails the run.
    from mwaa_logging.demo.report import verdict

    result = _result(duplicates=489)
    assert result.ok
    line = verdict(result)
    assert line.startswith("RESULT (mwaa-logging): all 1,000 lines verified, 0 lost (600 in CloudWatch, "
                           "400 spilled and replayed); 489 duplicates in CloudWatch after the replay"), line
    assert "at least once" in line
    assert verdict(_result()).endswith("spilled and replayed); 0 duplicates")
    failed = verdict(_result(lost=3, duplicates=2))
    assert failed.startswith("RESULT (mwaa-logging): FAILED: 3 lost; 2 duplicates in CloudWatch after the replay")


def test_after_a_good_replay_the_run_removes_its_files_from_the_default_spill_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # S3 failing (or a bucket that does not exist) makes the handler spill to the default local directory; the
    # replay renames the files *.replayed and leaves its lock: they stayed in ~/.cache after every such run.
    from mwaa_logging.spill.layout import quote_name
    from mwaa_logging.spill.local import default_spill_directory

    (tmp_path / "xdg").mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    run = _run(tmp_path / "work", MWAA_LOGGING, "s3://b/p")
    default = default_spill_directory()
    assert default == tmp_path / "xdg" / "mwaa-logging" / "spill" and not default.exists()

    def spill(group: str) -> Path:
        directory = default / group / "stream"
        directory.mkdir(parents=True)
        (directory / "20261208T000000-vm-1-00000001.jsonl.gz.replayed").write_bytes(b"x")
        (directory / ".mwaa-logging-replay.lock").write_bytes(b"")
        return default / group

    ours, theirs = spill(quote_name(run.group)), spill("airflow-other-Task")
    run.remove_fallback_spill()
    assert not ours.exists()
    assert (theirs / "stream" / ".mwaa-logging-replay.lock").exists()  # another group's: kept
    shutil.rmtree(theirs)
    spill(quote_name(run.group))
    run.remove_fallback_spill()
    assert not (tmp_path / "xdg" / "mwaa-logging").exists()  # made by this run, now empty
    spill("airflow-other-Task")
    later = _run(tmp_path / "work2", MWAA_LOGGING, "s3://b/p")
    ours = spill(quote_name(later.group))
    shutil.rmtree(theirs)
    later.remove_fallback_spill()
    assert not ours.exists() and default.is_dir()  # there before this run: left, even empty
    # a directory named with --spill-to is the user's: left as it is
    named = _run(tmp_path / "work3", MWAA_LOGGING, str(default))
    ours = spill(quote_name(named.group))
    named.remove_fallback_spill()
    assert ours.exists()
    # also when named through a symbolic link to it
    shutil.rmtree(ours)
    (tmp_path / "link").symlink_to(default)
    linked = _run(tmp_path / "work4", MWAA_LOGGING, str(tmp_path / "link"))
    ours = spill(quote_name(linked.group))
    linked.remove_fallback_spill()
    assert ours.exists()


def test_a_task_killed_midway_counts_its_unlogged_lines_apart_from_the_lost_ones() -> None:
    # Task 0 was killed after logging 600 of 1,000 lines (its last status said 590; its line 600 was read back),
    # 5 of those never arrived. The totals said "lines logged 1,000" and "lost 405".
    from mwaa_logging.demo.report import compare_table, facts, verdict
    from mwaa_logging.demo.runner import RunResult
    from mwaa_logging.demo.verify import TaskCheck, compare
    from mwaa_logging.reader import CLOUDWATCH, ReadEvent

    expected = [f"line {i}" for i in range(1000)]
    arrived = [m for i, m in enumerate(expected[:600]) if i not in (3, 50, 51, 52, 400)]
    killed = TaskCheck("t0", "s0", 1000)
    compare(killed, expected, [ReadEvent(i, m, CLOUDWATCH) for i, m in enumerate(arrived)])
    assert killed.found_through == 600
    whole = TaskCheck("t1", "s1", 1000)
    compare(whole, expected, [ReadEvent(i, m, CLOUDWATCH) for i, m in enumerate(expected)])
    statuses = {0: {"logged": 590, "done": False}, 1: {"logged": 1000, "done": True}}
    result = RunResult(MWAA_LOGGING, "g", None, [killed, whole], statuses, [], None, 1.0, 0.1,
                       failures=["task 0 exited with -9: "])
    assert (result.expected, result.logged, result.never_logged, result.lost_after_logging) == (2000, 1600, 400, 5)
    rows = dict(facts(result, DemoConfig(tasks=2, lines=1000), "endpoint"))
    assert rows["lines planned"] == "2,000" and rows["lines logged (by the tasks)"] == "1,600"
    assert rows["lost after logging"] == "5" and rows["never logged (task died)"] == "400"
    assert "lines logged" not in rows and "lost" not in rows
    assert verdict(result).startswith("RESULT (mwaa-logging): FAILED: 5 lost after logging, 400 never logged "
                                      "(task died)")
    table = compare_table([result])
    labels = list(table.columns[0].cells)
    logged = list(table.columns[1].cells)[labels.index("lines logged")]
    assert logged == "1,600" and "lines never logged (task died)" in labels


def test_ctrl_c_during_the_replay_says_the_streams_were_read_back(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # It said "task processes stopped, nothing verified" though every line had been read back and verified.
    from mwaa_logging.cli import main
    from mwaa_logging.demo import runner
    from mwaa_logging.demo.verify import TaskCheck

    def stopped_in_the_replay(self: Run) -> Any:
        self._stage = "replay"
        self._checks = [TaskCheck("t", "s", 200, arrived=200)]
        raise KeyboardInterrupt

    monkeypatch.setattr(runner.Run, "_execute", stopped_in_the_replay)
    assert main(["demo", "--quiet", "--tasks", "1", "--lines", "200", "--duration", "2"]) == 130
    out = " ".join(capsys.readouterr().out.split())
    assert ("interrupted: mwaa-logging: read back, 200 of 200 lines verified (0 lost); `mwaa-logging replay` "
            "stopped, CloudWatch alone not checked") in out, out
    assert "nothing verified" not in out


@pytest.mark.parametrize("owned", [True, False])
def test_ctrl_c_during_the_replay_advises_running_it_again_only_on_an_endpoint_that_outlives_the_demo(
    tmp_path: Path, owned: bool
) -> None:
    # "run the replay again to finish" was said on the embedded endpoint too, whose CloudWatch and S3 are gone
    # once the demo exits.
    from types import SimpleNamespace

    from mwaa_logging.demo.verify import TaskCheck

    run = Run(DemoConfig(spill_to="s3://b/p"), target=SimpleNamespace(owned=owned), handler=MWAA_LOGGING,  # type: ignore[arg-type]
              console=Any, workdir=tmp_path)  # type: ignore[arg-type]
    run._stage, run._checks = "replay", [TaskCheck("t", "s", 200, arrived=200)]
    said = run.stopped_text()
    assert said.startswith("mwaa-logging: read back, 200 of 200 lines verified (0 lost); `mwaa-logging replay` "
                           "stopped, CloudWatch alone not checked (its spilled lines may be partly replayed"), said
    if owned:
        assert "again" not in said
        assert said.endswith("; the embedded endpoint stops with the demo: this run's log group and S3 spill are "
                             "gone with it)"), said
    else:
        assert said.endswith(": run the replay again to finish)"), said


@pytest.mark.parametrize(("stage", "said"), [("tasks", "task processes stopped, nothing verified"),
                                             ("read-back", "read-back stopped, nothing verified")])
def test_ctrl_c_before_the_read_back_ended_says_nothing_was_verified(tmp_path: Path, stage: str, said: str) -> None:
    run = _run(tmp_path, MWAA_LOGGING, "s3://b/p")
    run._stage = stage
    finished = "the task processes had finished; " if stage != "tasks" else ""
    assert run.stopped_text() == f"mwaa-logging: {finished}{said}"


def test_the_chart_shades_every_runs_storm(tmp_path: Path) -> None:
    # Only the first run's storm window was shaded; watchtower's run had its own, at another time.
    from mwaa_logging.demo.chart import write_chart
    from mwaa_logging.demo.progress import Sample

    ours, theirs = _result(), _result()
    theirs.handler = WATCHTOWER
    for result, storm in ((ours, (3.0, 9.0)), (theirs, (5.0, 11.0))):
        result.storm = storm
        result.timeline = [Sample(float(t), 10 * t, 8 * t, 0, 0, t, 0) for t in range(15)]
    page = write_chart(tmp_path / "c.html", [ours, theirs], "t").read_text()
    assert page.count("every PutLogEvents call throttled") == 2, page
    assert "storm (mwaa-logging)" in page and "storm (watchtower)" in page


def test_a_task_that_died_before_its_first_status_counts_as_never_logged_not_lost() -> None:
    # kill -9 of a task ~0.1 s after its start (no status file yet) was reported as "lost after logging 500,
    # never logged 0": a task with no status counted as having logged every line.
    from mwaa_logging.demo.runner import RunResult
    from mwaa_logging.demo.verify import TaskCheck

    died = TaskCheck("t0", "s0", 500, lost=500)
    whole = TaskCheck("t1", "s1", 500, arrived=500, in_cloudwatch=500, found_through=500)
    result = RunResult(MWAA_LOGGING, "g", None, [died, whole], {1: {"logged": 500, "done": True}}, [], None, 1.0,
                       0.1, failures=["task 0 exited with -9: "], failed_tasks=frozenset({0}))
    assert (result.logged, result.never_logged, result.lost_after_logging) == (500, 500, 0)
    # a task that exited 0 without a status file still counts as having logged every line
    clean = RunResult(MWAA_LOGGING, "g", None, [died, whole], {1: {"logged": 500, "done": True}}, [], None, 1.0, 0.1)
    assert (clean.logged, clean.lost_after_logging) == (1000, 500)


def test_the_task_process_says_it_logged_nothing_before_it_builds_its_handler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import orjson

    from mwaa_logging.demo import worker

    config = tmp_path / "config.json"
    config.write_bytes(orjson.dumps({"handler": MWAA_LOGGING, "group": "g", "seed": 1, "lines": 50, "big_events": 0,
                                     "run_id": "r", "duration": 0.0, "status_dir": str(tmp_path), "settings": {}}))

    def dies(*args: Any) -> Any:
        raise SystemExit(137)  # killed while building the handler

    monkeypatch.setattr(worker, "build_handler", dies)
    with pytest.raises(SystemExit):
        worker.main([str(config), "3"])
    status = orjson.loads(worker.status_path(tmp_path, 3).read_bytes())
    assert (status["task"], status["logged"], status["done"]) == (3, 0, False)


def test_the_chart_counts_never_logged_lines_apart_from_the_lost_ones(tmp_path: Path) -> None:
    # Task 0 died after logging 600 of 1,000 lines, 5 of them lost: the chart said "2,000 lines logged, 405 lost"
    # where the verdict said "5 lost after logging, 400 never logged".
    from mwaa_logging.demo.chart import write_chart
    from mwaa_logging.demo.runner import RunResult
    from mwaa_logging.demo.verify import TaskCheck

    killed = TaskCheck("t0", "s0", 1000, arrived=595, in_cloudwatch=595, lost=405, found_through=600)
    whole = TaskCheck("t1", "s1", 1000, arrived=1000, in_cloudwatch=1000, found_through=1000)
    statuses = {0: {"logged": 590, "done": False}, 1: {"logged": 1000, "done": True}}
    ours = RunResult(MWAA_LOGGING, "g", None, [killed, whole], statuses, [], None, 1.0, 0.1)
    theirs = _result()
    theirs.handler = WATCHTOWER
    page = " ".join(write_chart(tmp_path / "c.html", [ours, theirs], "t").read_text().split())
    assert "mwaa-logging: 2,000 lines planned, 1,600 logged, 1,595 arrived exactly, 5 lost after logging, 400 " \
           "never logged (task died);" in page, page
    assert "watchtower: 1,000 lines planned, 1,000 logged, 1,000 arrived exactly, 0 lost after logging;" in page
    assert "lost after logging: 5</title>" in page and "never logged (task died): 400</title>" in page
    assert "lost after logging 5, never logged (task died) 400" in page
    assert ">5; 400 never logged (task died)</text>" in page
    assert "lines logged" not in page and "405" not in page


def test_the_endpoint_probe_reads_a_stream_of_the_run_and_makes_no_describe_call(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # It called DescribeLogGroups, a permission the demo never needs otherwise (the library makes no Describe*
    # call): a least-privilege role on real AWS was refused before anything started.
    from botocore.exceptions import ClientError

    from mwaa_logging.demo.endpoint import EndpointError, Target

    calls: list[tuple[str, dict[str, Any]]] = []

    class Logs:
        def __init__(self, code: str) -> None:
            self.code = code

        def get_log_events(self, **kwargs: Any) -> Any:
            calls.append(("GetLogEvents", kwargs))
            raise ClientError({"Error": {"Code": self.code, "Message": "m"}}, "GetLogEvents")

        def describe_log_groups(self, **kwargs: Any) -> Any:
            raise AssertionError("DescribeLogGroups called")

    target = Target.real_aws()
    monkeypatch.setattr(target, "client", lambda *args, **kwargs: Logs("ResourceNotFoundException"))
    target.probe("airflow-demo-x-Task")
    assert calls[0][0] == "GetLogEvents" and calls[0][1]["logGroupName"] == "airflow-demo-x-Task"
    monkeypatch.setattr(target, "client", lambda *args, **kwargs: Logs("AccessDeniedException"))
    with pytest.raises(EndpointError, match=r"^the real AWS account refused GetLogEvents on airflow-demo-x-Task"):
        target.probe("airflow-demo-x-Task")


def test_a_missing_region_or_missing_credentials_are_said_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both were "does not answer as CloudWatch Logs (DescribeLogGroups)", though no call was made.
    from mwaa_logging.demo.endpoint import EndpointError, Target

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(EndpointError, match=r"^no AWS region configured .*no call was made$"):
        Target.real_aws().probe("g")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with pytest.raises(EndpointError, match=r"^no AWS credentials found .*no call was made$"):
        Target.real_aws().probe("g")


def test_the_compare_tables_duplicates_are_the_verdicts(capsys: pytest.CaptureFixture[str]) -> None:
    # The row showed the first read-back's duplicates (removed by the reader) while the verdict counted those in
    # CloudWatch after the replay.
    from mwaa_logging.demo.report import compare_table

    result = _result(duplicates=489)
    result.checks[0].duplicates = 7
    table = compare_table([result])
    labels = list(table.columns[0].cells)
    row = next(i for i, label in enumerate(labels) if label.startswith("duplicates"))
    assert list(table.columns[1].cells)[row] == "489"
