"""loadtest/maxload.py: the doubling-then-bisecting search against measure functions whose
answer is known, the step's figures from real Locust 2.47 output, and one real Locust
step against a local HTTP server."""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path

import maxload
import pytest
from maxload import Sample, conclude, judge, read_samples, search_max_users, write_samples

FIXTURES = Path(__file__).resolve().parent / "fixtures"
THRESHOLD = 1200.0

# The samples of the article's "perftest maxload" run: slowest response (ms) by users.
ARTICLE = {
    1: 138,
    2: 124,
    4: 120,
    8: 157,
    16: 123,
    32: 182,
    64: 920,
    128: 6844,
    96: 3754,
    80: 2407,
    72: 1449,
    68: 1227,
    66: 1232,
    65: 939,
}


def table_measure(slowest_by_users: dict[int, float], taken: list[int]):
    def measure(users: int) -> Sample:
        taken.append(users)
        return judge(users, slowest_by_users[users], 0, 10 * users, users / 2, THRESHOLD)

    return measure


def step_measure(known_max: int, taken: list[int]):
    """Good up to known_max users, too slow beyond."""

    def measure(users: int) -> Sample:
        taken.append(users)
        slowest = 300.0 if users <= known_max else 5000.0
        return judge(users, slowest, 0, 100, 10.0, THRESHOLD)

    return measure


def test_the_article_search_is_replayed_step_for_step():
    taken: list[int] = []
    result = search_max_users(table_measure(ARTICLE, taken), max_users=256, log=lambda _: None)
    # Same order as the article's CSV: the shaft by doubling, then the knee by bisection.
    assert taken == list(ARTICLE)
    assert result.max_users == 65
    assert not result.capped
    assert result.best is not None and result.best.max_response_ms == 939


@pytest.mark.parametrize("known_max", [1, 2, 3, 37, 64, 65, 127, 200, 255])
def test_the_search_finds_the_known_maximum(known_max):
    taken: list[int] = []
    result = search_max_users(step_measure(known_max, taken), max_users=256, log=lambda _: None)
    assert result.max_users == known_max
    assert not result.capped
    assert len(taken) == len(set(taken)), "a user count was measured twice"
    # Doubling to the first bad count, then about log2 of the gap.
    assert len(taken) <= 9 + 8


def test_every_step_good_stops_at_the_cap():
    taken: list[int] = []
    result = search_max_users(step_measure(10_000, taken), max_users=100, log=lambda _: None)
    assert taken == [1, 2, 4, 8, 16, 32, 64, 100]
    assert result.max_users == 100
    assert result.capped
    line = maxload.conclusion("Reader", "GET /", result, 15)
    assert line.startswith("Maximum load is at least 100 users (Reader: slowest 'GET /' 300 ms")
    assert line.endswith("). 100 is the cap: raise --max-users to look further.")


def test_one_user_too_many_means_zero():
    taken: list[int] = []
    result = search_max_users(step_measure(0, taken), max_users=256, log=lambda _: None)
    assert taken == [1]
    assert result.max_users == 0
    assert result.best is None
    assert "Maximum load is 0 users for Member" in maxload.conclusion(
        "Member", "GET room page", result, 15
    )


def test_the_conclusion_states_the_load_and_its_response_time():
    result = search_max_users(table_measure(ARTICLE, []), max_users=256, log=lambda _: None)
    line = maxload.conclusion("Reader", "GET /", result, 5)
    assert line == (
        "Maximum load is 65 users (Reader: slowest 'GET /' 939 ms, 32.5 requests/s over 5 s steps)."
    )


@pytest.mark.parametrize(
    ("slowest", "failures", "requests", "ok"),
    [
        (1200.0, 0, 10, True),  # the threshold itself is still good
        (1200.1, 0, 10, False),
        (100.0, 1, 10, False),  # any failure spoils the step
        (None, 0, 0, False),  # the request of interest never happened
    ],
)
def test_judge(slowest, failures, requests, ok):
    assert judge(4, slowest, failures, requests, 1.0, THRESHOLD).ok is ok


def test_samples_round_trip_and_conclude_like_the_search(tmp_path):
    result = search_max_users(table_measure(ARTICLE, []), max_users=256, log=lambda _: None)
    path = tmp_path / "maxload-Reader.csv"
    write_samples(path, result.samples)
    assert path.read_text().splitlines()[0] == "users,max_response_ms,failures,requests,rate,ok"
    samples = read_samples(path)
    assert [s.users for s in samples] == list(ARTICLE)
    assert conclude(samples).max_users == 65
    assert not conclude(samples).capped


def test_step_figures_prefer_locusts_final_json():
    # The real run's JSON counts 34 "GET /" where its _stats.csv, written a second
    # earlier, had 33; failures are the whole step's (9 on "GET room page").
    slowest, failures, requests = maxload.step_figures(FIXTURES / "step" / "step", "GET /")
    assert requests == 34
    assert failures == 9
    assert slowest == pytest.approx(43.714, abs=0.001)


def test_step_figures_fall_back_to_the_stats_csv(tmp_path):
    shutil.copy(FIXTURES / "step" / "step_stats.csv", tmp_path / "step_stats.csv")
    slowest, failures, requests = maxload.step_figures(tmp_path / "step", "GET home")
    assert (requests, failures) == (48, 9)
    assert slowest == pytest.approx(66.642, abs=0.001)
    assert maxload.step_figures(tmp_path / "step", "GET nothing") == (None, 9, 0)


def test_options():
    args = maxload.parse_args(["--classes", "Reader,Member", "--request", "Member=GET room"])
    assert args.classes == ["Reader", "Member"]
    assert args.requests["Member"] == "GET room"
    assert args.requests["Reader"] == "GET /"
    with pytest.raises(SystemExit):
        maxload.parse_args(["--classes", "Visitor"])


@pytest.mark.skipif(importlib.util.find_spec("locust") is None, reason="locust not installed")
def test_one_real_locust_step(tmp_path, monkeypatch):
    """The command line maxload builds works with the installed Locust: a 2 s step of a
    one-request journey against `python -m http.server` on 127.0.0.1."""
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("hello\n")
    (tmp_path / "locustfile.py").write_text(
        "from locust import HttpUser, constant, task\n\n"
        "class Reader(HttpUser):\n"
        "    wait_time = constant(0.2)\n\n"
        "    @task\n"
        "    def index(self):\n"
        "        self.client.get('/', name='GET /')\n\n"
        "class Other(HttpUser):\n"
        "    @task\n"
        "    def other(self):\n"
        "        self.client.get('/other', name='GET other')\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "-d", "www"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # "Serving HTTP on 127.0.0.1 port NNNNN ..." tells the port it was given.
        banner = server.stdout.readline()
        port = int(banner.split(" port ")[1].split()[0])
        args = argparse.Namespace(
            locustfile=tmp_path / "locustfile.py",
            step_seconds=2,
            threshold_ms=THRESHOLD,
            pause_seconds=0,
        )
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        started = time.monotonic()
        # The project's locustfile takes its host from LOADTEST_SITE_URL; this one from
        # Locust's own variable.
        monkeypatch.setenv("LOCUST_HOST", f"http://127.0.0.1:{port}")
        sample = maxload.locust_measure("Reader", "GET /", args, scratch)(2)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert time.monotonic() - started < 60
    assert sample.users == 2
    assert sample.requests > 0
    assert sample.rate == sample.requests / 2
    assert sample.failures == 0, "only the Reader class ran; 'GET other' would 404"
    assert sample.ok
    assert (scratch / "Reader-2.json").exists()
    assert (scratch / "Reader-2_stats.csv").exists()


def test_main_writes_every_sample_and_the_conclusion(tmp_path, monkeypatch, capsys):
    taken: list[int] = []

    def fake_locust_measure(journey, request, args, scratch):
        assert (journey, request) == ("Newcomer", "GET home")
        assert args.step_seconds == 5
        return step_measure(12, taken)

    monkeypatch.setattr(maxload, "locust_measure", fake_locust_measure)
    code = maxload.main(
        ["--classes", "Newcomer", "--step-seconds", "5", "--out-dir", str(tmp_path)]
    )
    assert code == 0
    samples = read_samples(tmp_path / "maxload-Newcomer.csv")
    assert [s.users for s in samples] == taken == [1, 2, 4, 8, 16, 12, 14, 13]
    out = capsys.readouterr().out
    assert (
        "Maximum load is 12 users (Newcomer: slowest 'GET home' 300 ms, 10.0 requests/s "
        "over 5 s steps)." in out
    )


def test_a_step_that_measured_nothing(tmp_path, monkeypatch):
    """One user and no request of interest: the step was too short, not the site too slow.
    More users and none completed: too many. Locust crashing: no sample at all."""
    returncode = 0

    def run(command, env, stdout, stderr):
        assert env["LOADTEST_WS_REPORT"].startswith(str(tmp_path)), "the main report is kept"
        return subprocess.CompletedProcess(command, returncode)

    monkeypatch.setattr(maxload.subprocess, "run", run)
    monkeypatch.setattr(maxload, "step_figures", lambda prefix, request: (None, 0, 0))
    args = argparse.Namespace(
        locustfile=Path("locustfile.py"), step_seconds=3, threshold_ms=THRESHOLD, pause_seconds=0
    )
    measure = maxload.locust_measure("Reader", "GET /", args, tmp_path)
    with pytest.raises(RuntimeError, match="lengthen --step-seconds"):
        measure(1)
    assert not measure(8).ok
    returncode = 2
    with pytest.raises(RuntimeError, match="locust exited 2 with 8 users"):
        measure(8)
