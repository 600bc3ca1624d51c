"""The drills' probe (roles/drills/files/hpd_drill_probe.py): reading Varnish's backend list
and counters, uWSGI's stats and /proc, without the services."""

from __future__ import annotations

import sys
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "files" / "hpd_drill_probe.py"
_loader = SourceFileLoader("hpd_drill_probe", str(SCRIPT))
_spec = spec_from_loader("hpd_drill_probe", _loader)
probe = module_from_spec(_spec)
sys.modules["hpd_drill_probe"] = probe
_loader.exec_module(probe)

VARNISH7 = """Backend name                   Admin      Probe    Health     Last change
boot.hpd_web1                  probe      0/5      sick       Fri, 04 Dec 2026 21:00:00 GMT
boot.hpd_web2                  probe      5/5      healthy    Fri, 04 Dec 2026 20:00:00 GMT
"""
VARNISH6 = """Backend name                   Admin      Probe                Last updated
boot.hpd_web1                  probe      Sick 0/5             Fri, 04 Dec 2026 21:00:00 GMT
boot.hpd_web2                  probe      Healthy 5/5          Fri, 04 Dec 2026 20:00:00 GMT
"""


def test_backend_state_in_both_listings():
    for listing in (VARNISH7, VARNISH6):
        assert probe.backend_state(listing, "hpd-web1") == "sick"
        assert probe.backend_state(listing, "hpd-web2") == "healthy"
        assert probe.backend_state(listing, "hpd-web3") is None


def test_backend_state_ignores_the_header():
    assert probe.backend_state("Backend name Admin Probe Health sick\n", "name") is None


def test_hit_counters_in_both_layouts():
    seven = {
        "version": 1,
        "counters": {"MAIN.cache_hit": {"value": 90}, "MAIN.cache_miss": {"value": 10}},
    }
    six = {"MAIN.cache_hit": {"value": 5}, "MAIN.cache_miss": {"value": 7}}
    assert probe.hit_counters(seven) == (90, 10)
    assert probe.hit_counters(six) == (5, 7)


def test_ratio_between_samples_needs_enough_lookups():
    assert probe.ratio((100, 50), (190, 60), 20) == 0.9
    assert probe.ratio((100, 50), (105, 50), 20) is None
    assert probe.ratio((0, 0), (0, 0), 0) is None


def test_busy_workers():
    stats = {
        "workers": [{"status": "busy"}, {"status": "idle"}, {"status": "busy"}, {"status": "cheap"}]
    }
    assert probe.busy_workers(stats) == (2, 4)
    assert probe.busy_workers({}) == (0, 0)


def write_stat(proc: Path, pid: int, ppid: int, comm: str, utime: int, stime: int) -> None:
    (proc / str(pid)).mkdir()
    rest = ["S", str(ppid)] + ["0"] * 9 + [str(utime), str(stime)] + ["0"] * 10
    (proc / str(pid) / "stat").write_text(f"{pid} ({comm}) " + " ".join(rest) + "\n")


def test_children_and_the_busiest(tmp_path):
    write_stat(tmp_path, 100, 1, "celery", 50, 5)
    write_stat(tmp_path, 101, 100, "celery: worker (x)", 10, 2)
    write_stat(tmp_path, 102, 100, "celery: worker (y)", 40, 9)
    write_stat(tmp_path, 103, 7, "other", 999, 0)
    (tmp_path / "self").mkdir()
    found = probe.children(100, tmp_path)
    assert found == {101: 12, 102: 49}
    assert probe.busiest(found) == 102
    assert probe.busiest({5: 1, 4: 1}) == 4  # a tie: the oldest
    assert probe.busiest({}) is None


def test_working_is_the_child_using_the_cpu_between_two_samples():
    # 101 has more CPU time overall but used none since the last sample: between two tasks.
    assert probe.working({101: 500, 102: 40}, {101: 500, 102: 43}) == 102
    assert probe.working({101: 500, 102: 40}, {101: 500, 102: 40}) is None
    # A process that appeared since the first sample (a replaced one) is not judged.
    assert probe.working({101: 500}, {101: 500, 103: 9}) is None


def test_poll_returns_the_first_answer_or_none():
    answers = iter([None, None, 42.0])
    assert probe.poll(lambda: next(answers), 5, 0) == 42.0
    assert probe.poll(lambda: None, 0, 0) is None
