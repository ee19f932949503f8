"""The toy world's recovery gate (pat_lite.reproduce.recovery): gate checking."""

from __future__ import annotations

from pat_lite.reproduce import recovery


def test_the_recovery_gate_names_each_split_that_gains_too_little():
    report = {"skill_recovery": {"validation": 12.0, "test": 9.5}}
    assert recovery.check_recovery(report) == [
        "test: prune→tune gains only 9.5 points of skill over the untuned cut (< 10.0)"
    ]
    assert recovery.check_recovery(report, minimum=9.0) == []
