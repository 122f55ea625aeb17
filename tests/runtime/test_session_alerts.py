"""Zero-shot alerts in a running session: a video where the alert's subject appears at a known time.

The tiny CLIP pack has random weights, so no text prompt means anything to it. To make the test
deterministic, the alert's prompt embedding is the image tower's embedding of the target scene and
the background prompt's is the usual scene's (ZeroShotScorer.set_prompt_embedding): the alert must
fire exactly once, when the target scene appears.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgemm
from edgemm import errors
from edgemm.runtime.alerts import Alert, AlertEvent
from edgemm.runtime.session import Session
from edgemm.runtime.sinks import open_sink
from edgemm.runtime.sources import open_source
from tests import zero_shot_packs
from tests.media import opencv_sample

cv2 = pytest.importorskip("cv2")
pytest.importorskip("torch")

FPS = 10
TARGET_AT_S = 3.0


def _scene(name: str) -> np.ndarray:
    return cv2.resize(cv2.imread(str(opencv_sample(name))), (160, 120))


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of fruits, 3 s of the baboon (the alert's subject), 2 s of fruits again."""
    path = tmp_path_factory.mktemp("alert-video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (160, 120))
    for name, seconds in (("fruits.jpg", 3), ("baboon.jpg", 3), ("fruits.jpg", 2)):
        for _ in range(seconds * FPS):
            writer.write(_scene(name))
    writer.release()
    return path


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> edgemm.Pack:
    compiled = zero_shot_packs.compiled("clip", tmp_path_factory.getbasetemp() / "zero-shot")
    return edgemm.load(compiled.pack_dir, precision="fp32", options=edgemm.OrtOptions(providers=("cpu",), intra_op_threads=1))


def _target_alert(pack: edgemm.Pack, **kwargs: object) -> Alert:
    scorer = pack.scorer()
    baboon, fruits = scorer.embed_images([_scene("baboon.jpg")[..., ::-1], _scene("fruits.jpg")[..., ::-1]])
    scorer.set_prompt_embedding("the baboon", baboon)
    # The usual scene is the background the subject competes with in CLIP's softmax.
    scorer.set_prompt_embedding("the usual scene", fruits)
    scorer.set_background(["the usual scene"])
    inside, outside = scorer.score_images([_scene("baboon.jpg")[..., ::-1], _scene("fruits.jpg")[..., ::-1]], ["the baboon"])[:, 0]
    assert inside - outside > 0.2, (inside, outside)  # the scenes are told apart
    return Alert("the baboon", threshold=float(inside + outside) / 2, hysteresis=0.05, **kwargs)  # type: ignore[arg-type]


def test_alert_fires_once_when_the_subject_appears(pack: edgemm.Pack, video: Path, tmp_path: Path) -> None:
    alert = _target_alert(pack, cooldown_s=60)
    seen: list[AlertEvent] = []
    session = Session(None, [open_source(video, realtime=False)], scorer=pack.scorer(), alerts_max_fps=5, events_dir=tmp_path / "events", sinks=[open_sink(tmp_path / "events.jsonl")])
    session.add_alert(alert, seen.append)
    with session:
        events = list(session.alerts())
    assert len(events) == 1
    (event,) = events
    assert TARGET_AT_S <= event.time_s <= TARGET_AT_S + 0.5  # within the alert rate of the true onset
    assert event.alert.name == "the baboon" and event.score >= alert.threshold
    assert seen == events
    assert event.snapshot is not None and Path(event.snapshot).stat().st_size > 0
    record = json.loads((tmp_path / "events.jsonl").read_text().splitlines()[0])
    assert record["type"] == "alert" and record["id"] == event.id and record["alert"]["name"] == "the baboon"
    assert session.stats().alerts == 1


def test_min_duration_delays_the_alert(pack: edgemm.Pack, video: Path) -> None:
    alert = _target_alert(pack, min_duration_s=1.0)
    session = Session(None, [open_source(video, realtime=False)], scorer=pack.scorer(), alerts_max_fps=5)
    session.add_alert(alert)
    with session:
        events = list(session.alerts())
    assert len(events) == 1
    assert TARGET_AT_S + 1.0 <= events[0].time_s <= TARGET_AT_S + 1.5


def test_alerts_added_and_removed_while_running(pack: edgemm.Pack, video: Path) -> None:
    alert = _target_alert(pack)
    session = Session(None, [open_source(video, realtime=True)], scorer=pack.scorer(), alerts_max_fps=5)
    with session:
        session.add_alert(alert)
        with pytest.raises(errors.InputError, match="already watched"):
            session.add_alert(alert)
        assert session.remove_alert("the baboon") is alert
        with pytest.raises(errors.InputError, match=r"no alert named 'the baboon'; watched alerts: \[\]"):
            session.remove_alert("the baboon")
        session.add_alert(alert)  # back again: it fires when the baboon shows at 3 s
        events = []
        for event in session.alerts():
            events.append(event)
            break
    assert events and events[0].time_s >= TARGET_AT_S


def test_alert_errors(pack: edgemm.Pack, video: Path) -> None:
    session = Session(None, [open_source(video, realtime=False)], scorer=pack.scorer())
    with pytest.raises(errors.PackError, match=r"no zero_shot_audio \(CLAP\) component"):
        session.add_alert(Alert("glass breaking", modality="audio"))
    with pytest.raises(errors.InputError, match="expected a description"):
        Alert("")
    with pytest.raises(errors.InputError, match=r"threshold must be a score in \(0, 1\]"):
        Alert("smoke", threshold=2.0)
    with pytest.raises(errors.PackError, match="neither"):
        Session(None, [open_source(video)], scorer=None)
