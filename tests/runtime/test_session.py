"""The streaming session end to end: real video files and a real MJPEG server through a tiny caption pack."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgemm
from edgemm import errors
from edgemm.runtime.session import CaptionPolicy, Session, scene_change
from edgemm.runtime.sources import open_source
from tests.media import opencv_sample

cv2 = pytest.importorskip("cv2")
pytest.importorskip("torch")

FPS = 10
SEGMENT_FRAMES = 20  # 2 s per scene


def _photo(name: str, size: tuple[int, int] = (160, 120)) -> np.ndarray:
    return cv2.resize(cv2.imread(str(opencv_sample(name))), size)


def _write_video(path: Path, scenes: list[np.ndarray], frames_per_scene: int, noise: int = 0) -> Path:
    """An MJPG .avi at FPS showing each BGR scene for ``frames_per_scene`` frames, with sensor-like noise."""
    height, width = scenes[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (width, height))
    rng = np.random.default_rng(0)
    for scene in scenes:
        for _ in range(frames_per_scene):
            jitter = rng.integers(-noise, noise + 1, size=scene.shape)
            writer.write(np.clip(scene.astype(int) + jitter, 0, 255).astype(np.uint8))
    writer.release()
    return path


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> edgemm.Pack:
    from edgemm.compile.caption import compile_captioner
    from edgemm.compile.config import CompileConfig, LoadConfig, ValidateConfig
    from edgemm.compile.testing import tiny_blip

    root = tmp_path_factory.mktemp("session")
    model = tiny_blip(root / "model")
    config = CompileConfig(load=LoadConfig(str(model), local_files_only=True), out=str(root / "pack"), validate=ValidateConfig(num_images=2))
    compile_captioner(config, show_progress=False)
    return edgemm.load(root / "pack", options=edgemm.OrtOptions(providers=("cpu",), intra_op_threads=1))


@pytest.fixture(scope="module")
def scenes_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s: fruits (0-2 s), baboon (2-4 s), fruits again (4-6 s)."""
    fruits, baboon = _photo("fruits.jpg"), _photo("baboon.jpg")
    return _write_video(tmp_path_factory.mktemp("video") / "scenes.avi", [fruits, baboon, fruits], SEGMENT_FRAMES)


class Recording:
    """Wraps a captioner: records every batch's size, optionally sleeps to play a slow model."""

    def __init__(self, captioner: Any, sleep_s: float = 0.0) -> None:
        self.captioner = captioner
        self.sleep_s = sleep_s
        self.batches: list[int] = []

    def caption_batch(self, images: list[np.ndarray]) -> list[edgemm.Caption]:
        self.batches.append(len(images))
        time.sleep(self.sleep_s)
        return self.captioner.caption_batch(images)


def test_scene_change_measure() -> None:
    a = np.zeros((120, 160, 3), np.uint8)
    b = np.full((120, 160, 3), 255, np.uint8)
    change, thumb = scene_change(None, a)
    assert change == 1.0
    assert scene_change(thumb, a)[0] == 0.0
    assert scene_change(thumb, b)[0] == pytest.approx(1.0)
    half = a.copy()
    half[:, :80] = 255
    assert scene_change(thumb, half)[0] == pytest.approx(0.5, abs=0.02)


def test_captions_follow_scene_changes(pack: edgemm.Pack, scenes_video: Path) -> None:
    recording = Recording(pack.captioner())
    source = open_source(scenes_video, realtime=False)
    session = Session(recording, [source], policy=CaptionPolicy(every_s=0.5, on_change_only=True))
    with session:
        captions = list(session.captions())
    # The model ran once per scene: at 0 s, at the cut to the baboon (2 s) and back (4 s).
    assert len(recording.batches) == 3
    times = [c.time_s for c in captions]
    assert times == sorted(times)
    assert times[0] == 0.0
    expected = {0.0, 2.0, 4.0}
    assert set(times) <= expected
    assert all(c.source == source.name and c.frame_index == round(c.time_s * FPS) for c in captions)
    assert all(c.text and c.latency_ms >= 0 and len(c.id) == 32 for c in captions)
    assert session.stats().captions + session.stats().suppressed == 3


def test_static_stretch_is_not_captioned_twice(pack: edgemm.Pack, scenes_video: Path) -> None:
    recording = Recording(pack.captioner())
    policy = CaptionPolicy(every_s=0.5, on_change_only=False)  # caption every 0.5 s of video regardless
    with Session(recording, [open_source(scenes_video, realtime=False)], policy=policy) as session:
        captions = list(session.captions())
    assert len(recording.batches) == 12  # 6 s / 0.5 s
    texts = [c.text for c in captions]
    assert all(a != b for a, b in itertools.pairwise(texts))  # never the same caption twice in a row
    assert session.stats().suppressed == 12 - len(captions) >= 9  # the static stretches were suppressed
    with Session(Recording(pack.captioner()), [open_source(scenes_video, realtime=False)], policy=CaptionPolicy(every_s=0.5, on_change_only=False, repeat_identical=True)) as again:
        assert len(list(again.captions())) == 12


def test_real_video_file_end_to_end(pack: edgemm.Pack) -> None:
    with edgemm.open(pack, camera=opencv_sample("vtest.avi"), realtime=False, caption_every_s=10.0, on_change_only=False, repeat_identical=True) as session:
        captions = list(session.captions())
    # vtest.avi: 795 frames at 10 fps; one caption every 10 s of video.
    assert [round(c.time_s) for c in captions] == [0, 10, 20, 30, 40, 50, 60, 70]
    stats = session.stats()
    assert stats.sources["cam"]["captured"] == 795
    assert stats.latency_ms["caption"]["p50"] > 0


def test_cameras_share_the_model_in_batches(pack: edgemm.Pack, scenes_video: Path) -> None:
    recording = Recording(pack.captioner())
    sources = [open_source(scenes_video, name="left", realtime=False), open_source(scenes_video, name="right", realtime=False)]
    with Session(recording, sources, policy=CaptionPolicy(every_s=0.5)) as session:
        captions = list(session.captions())
    assert 2 in recording.batches  # both cameras' frames went to the model together
    assert {c.source for c in captions} == {"left", "right"}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_slow_model_drops_frames_and_latency_stays_bounded(pack: edgemm.Pack, tmp_path: Path) -> None:
    from tests.servers.mjpeg import MjpegServer

    slow = Recording(pack.captioner(), sleep_s=0.25)
    with MjpegServer(fps=25) as server:
        source = open_source(server.url, timeout_s=5)
        session = Session(slow, [source], policy=CaptionPolicy(every_s=0.0, on_change_only=False, repeat_identical=True))
        with session:
            rss = []
            for i, _caption in enumerate(session.captions()):
                rss.append(_rss_mb())
                if i == 15:
                    break
        stats = session.stats()
    assert stats.sources[source.name]["dropped"] > 30  # 25 fps in, ~3.5 captions/s out: the rest dropped
    assert stats.latency_ms["caption"]["p95"] < 1000  # one model run plus a frame, not a growing queue
    assert max(rss[5:]) - rss[5] < 20  # memory flat once warm


def test_events_go_to_sinks_and_callbacks(pack: edgemm.Pack, scenes_video: Path, tmp_path: Path) -> None:
    seen: list[edgemm.Caption] = []
    sink_path = tmp_path / "events.jsonl"
    session = edgemm.open(pack, camera=scenes_video, realtime=False, caption_every_s=0.5, sinks=[sink_path], start=False)
    session.on(edgemm.Caption, seen.append)
    with session:
        assert session.wait(60)
    records = [json.loads(line) for line in sink_path.read_text().splitlines()]
    assert [r["id"] for r in records] == [c.id for c in seen]
    assert all(r["type"] == "caption" and r["source"] == "cam" for r in records)
    assert len(records) >= 1


def test_open_errors(pack: edgemm.Pack, tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidSourceError, match=r"unknown scheme|supported"):
        edgemm.open(pack, camera="ftp://127.0.0.1/x")
    start = time.monotonic()
    with pytest.raises(errors.SourceUnavailableError):
        edgemm.open(pack, camera="rtsp://127.0.0.1:9/none", source_timeout_s=2)
    assert time.monotonic() - start < 15
    with pytest.raises(errors.PackError, match="no asr or zero_shot_audio component"):
        edgemm.open(pack, camera=str(tmp_path), mic="default")
    with pytest.raises(errors.InputError, match="neither"):
        edgemm.open(pack)
    assert threading.active_count() < 20  # nothing left running


def _cli(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "edgemm", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_cli_run_file_to_end(pack: edgemm.Pack, scenes_video: Path) -> None:
    proc = _cli("run", str(pack.path), "--camera", str(scenes_video), "--fast", "--json", "--caption-every", "0.5")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert records
    assert all(r["type"] == "caption" and "text" in r and "latency_ms" in r for r in records)
    assert "captions" in err and "source cam" in err  # stats at exit


def test_cli_run_stops_cleanly_on_sigterm(pack: edgemm.Pack, scenes_video: Path) -> None:
    proc = _cli("run", str(pack.path), "--camera", str(scenes_video), "--loop", "--caption-every", "0.5")
    time.sleep(4)
    assert proc.poll() is None  # still streaming (looping file)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "stopping" in err and "captions" in err
    assert "cam:" in out


def test_cli_run_duration(pack: edgemm.Pack, scenes_video: Path) -> None:
    env = {**os.environ}
    proc = _cli("run", str(pack.path), "--camera", str(scenes_video), "--loop", "--duration", "3", env=env)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "ran 3." in err or "ran 2." in err or "ran 4." in err


def test_camera_drop_and_reconnect_reach_the_session(pack: edgemm.Pack) -> None:
    from edgemm.runtime.events import SourceDisconnected, SourceReconnected
    from edgemm.runtime.sources import ReconnectPolicy
    from tests.servers.mjpeg import MjpegServer

    server = MjpegServer(fps=10).start()
    source = open_source(server.url, timeout_s=3, reconnect=ReconnectPolicy(initial_delay_s=0.1, max_delay_s=0.5))
    session = Session(pack.captioner(), [source], policy=CaptionPolicy(every_s=0.2, on_change_only=False, repeat_identical=True))
    kinds: list[str] = []
    try:
        with session:
            for event in session.events():
                kinds.append(type(event).__name__)
                if kinds.count("Caption") == 2 and "SourceDisconnected" not in kinds:
                    server.stop()  # the camera reboots
                    server = MjpegServer(server.port, fps=10).start()
                if "SourceReconnected" in kinds and kinds[-1] == "Caption":
                    break  # captions continue after the reconnection
    finally:
        server.stop()
    assert kinds.index("SourceDisconnected") < kinds.index("SourceReconnected") < len(kinds) - 1
    assert session.stats().sources[source.name]["reconnects"] == 1
    assert isinstance(SourceDisconnected(0.0, "x", "y").id, str) and SourceReconnected(0.0, "x", 1, 0.1).id
