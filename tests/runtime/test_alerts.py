"""Alert rules as a table: score sequences in, the times the alert fires out."""

from __future__ import annotations

import pytest

from edgemm import errors
from edgemm.runtime.alerts import Alert, AlertRule


def fires(alert: Alert, scores: list[tuple[float, float]]) -> list[float]:
    rule = AlertRule(alert)
    return [t for t, score in scores if rule.update(t, score)]


def ramp(*values: float, step_s: float = 1.0) -> list[tuple[float, float]]:
    return [(i * step_s, v) for i, v in enumerate(values)]


CASES = [
    ("never-above", Alert("x", threshold=0.5), ramp(0.1, 0.4, 0.49, 0.2), []),
    ("fires-on-crossing", Alert("x", threshold=0.5), ramp(0.1, 0.6, 0.7, 0.8), [1.0]),
    ("fires-at-threshold", Alert("x", threshold=0.5), ramp(0.1, 0.5), [1.0]),
    ("first-sample-above", Alert("x", threshold=0.5), ramp(0.9, 0.9), [0.0]),
    ("latched-until-rearmed", Alert("x", threshold=0.5, hysteresis=0.1, cooldown_s=0), ramp(0.6, 0.45, 0.6, 0.39, 0.6), [0.0, 4.0]),
    ("dip-inside-hysteresis-no-refire", Alert("x", threshold=0.5, hysteresis=0.2, cooldown_s=0), ramp(0.6, 0.35, 0.6, 0.31, 0.7), [0.0]),
    ("zero-hysteresis-rearms-below-threshold", Alert("x", threshold=0.5, hysteresis=0.0, cooldown_s=0), ramp(0.6, 0.49, 0.6), [0.0, 2.0]),
    ("min-duration-needs-sustained", Alert("x", threshold=0.5, min_duration_s=2), ramp(0.6, 0.6, 0.6, 0.6), [2.0]),
    ("min-duration-reset-by-dip", Alert("x", threshold=0.5, min_duration_s=2), ramp(0.6, 0.6, 0.4, 0.6, 0.6, 0.6), [5.0]),
    ("min-duration-never-long-enough", Alert("x", threshold=0.5, min_duration_s=3), ramp(0.6, 0.6, 0.1, 0.6, 0.6, 0.1), []),
    ("cooldown-blocks-refire", Alert("x", threshold=0.5, hysteresis=0.1, cooldown_s=10), ramp(0.6, 0.1, 0.6, 0.1, 0.6), [0.0]),
    (
        "cooldown-then-refire-when-condition-holds",
        Alert("x", threshold=0.5, hysteresis=0.1, cooldown_s=3),
        ramp(0.6, 0.1, 0.6, 0.6, 0.6, 0.6),
        [0.0, 3.0],
    ),
    ("cooldown-zero-each-rearm", Alert("x", threshold=0.5, hysteresis=0.1, cooldown_s=0), ramp(0.6, 0.1, 0.6, 0.1, 0.6), [0.0, 2.0, 4.0]),
    (
        "irregular-times",
        Alert("x", threshold=0.5, min_duration_s=1.0),
        [(0.0, 0.6), (0.4, 0.6), (0.9, 0.6), (1.05, 0.6), (1.5, 0.2)],
        [1.05],
    ),
]


@pytest.mark.parametrize(("alert", "scores", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule_table(alert: Alert, scores: list[tuple[float, float]], expected: list[float]) -> None:
    assert fires(alert, scores) == expected


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"text": ""}, "expected a description"),
        ({"text": "   "}, "expected a description"),
        ({"text": "x", "threshold": 0.0}, r"threshold must be a score in \(0, 1\], got 0.0"),
        ({"text": "x", "threshold": 1.5}, r"threshold must be a score in \(0, 1\], got 1.5"),
        ({"text": "x", "modality": "video"}, "modality must be 'image' or 'audio'"),
        ({"text": "x", "cooldown_s": -1}, "must be >= 0"),
        ({"text": "x", "threshold": 0.3, "hysteresis": 0.3}, r"hysteresis must be in \[0, threshold\)"),
    ],
)
def test_bad_alerts_are_typed_errors(kwargs: dict, pattern: str) -> None:
    with pytest.raises(errors.InputError, match=pattern):
        Alert(**kwargs)


def test_name_defaults_to_text_and_time_must_increase() -> None:
    alert = Alert("  smoke ")
    assert alert.name == "smoke"
    assert Alert("smoke", name="fire-1").name == "fire-1"
    rule = AlertRule(alert)
    rule.update(5.0, 0.1)
    with pytest.raises(errors.InputError, match="time order"):
        rule.update(4.0, 0.1)
