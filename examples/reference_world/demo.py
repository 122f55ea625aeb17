"""The offline demo: the reference-world models compiled into one pack and run on a scripted scene.

    python -m examples.reference_world.demo            # what scripts/demo.sh runs
    python -m examples.reference_world.demo --fast     # no real-time pacing (CI, impatient people)

1. Compiles the three committed reference checkpoints (captioner, CLIP, CLAP) into one pack with
   int8 graphs for the CPU, through the ``edgemm compile`` command line (skipped when the pack
   was already compiled from the same checkpoints).
2. Generates the demo video (24 s, objects appearing, moving and leaving at known times) and its
   soundtrack (event sounds at known times in room noise). OpenCV writes no audio tracks, so the
   soundtrack is a WAV file beside the video, played as the microphone.
3. Streams both through ``edgemm.open(pack, camera=..., mic=...)`` with a visual alert ("a red
   triangle") and an audio alert ("an alarm"), printing each event next to the ground truth.
4. Ends with a summary: captions right, alerts against their true onsets, latency, frame rate.

Everything is generated or shipped in the repository: no network, no download.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import edgemm

from . import audio_world, world

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MODELS = HERE / "models"

VISUAL_ALERT = world.object_prompt(*world.DEMO_ALERT)  # "a red triangle"
VISUAL_THRESHOLD = 0.5
AUDIO_ALERT = "an alarm"
AUDIO_THRESHOLD = 0.5
SOUND_EVENTS: tuple[tuple[float, str] | tuple[float, str, float], ...] = (
    (1.5, "a chime"),
    (5.0, "a siren", 3.0),
    (10.0, "knocking"),
    (16.0, AUDIO_ALERT, 4.0),
    (21.5, "a bell"),
)
"""The soundtrack: (onset s, label[, duration s]). The siren is a near miss for the alarm alert."""

ALERT_BOUND_S = 1.5
"""An alert counts as on time when it fires within this many seconds after the true onset."""


def _say(text: str = "") -> None:
    print(text, flush=True)


# --- 1. the pack --------------------------------------------------------------------------------


def _checkpoints_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in MODELS.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(MODELS)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def compile_pack(pack_dir: Path, *, force: bool = False) -> Path:
    """Compiles the reference checkpoints into ``pack_dir`` (int8 for the CPU besides fp32)."""
    stamp = pack_dir / ".demo-checkpoints"
    digest = _checkpoints_digest()
    if not force and stamp.exists() and stamp.read_text() == digest:
        _say(f"pack: {pack_dir} (compiled earlier from the same checkpoints)")
        return pack_dir
    jobs: list[tuple[str, list[str]]] = [
        ("caption", []),
        ("clip", ["--name", "alerts", "--prompt", VISUAL_ALERT]),
        ("clap", ["--name", "audio_alerts", "--prompt", AUDIO_ALERT, "--background", audio_world.BACKGROUND]),
    ]
    for model, extra in jobs:
        folder = "captioner" if model == "caption" else model
        command = ["edgemm", "compile", str(MODELS / folder), "--out", str(pack_dir), "--precision", "int8", "--target", "cpu", "--offline", "--quiet", *extra]
        _say("$ " + " ".join(f'"{c}"' if " " in c else c for c in command).replace(str(REPO) + "/", ""))
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "edgemm", *command[1:]], capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(f"demo: compiling {folder} failed (output above)")
        _say(f"  compiled in {time.monotonic() - started:.0f} s")
    stamp.write_text(digest)
    return pack_dir


# --- 2. the media -------------------------------------------------------------------------------


def make_media(workdir: Path) -> tuple[Path, Path, world.Timeline, audio_world.Soundtrack]:
    timeline = world.demo_timeline()
    video = world.write_video(workdir / "demo.avi", timeline)
    track = audio_world.soundtrack(timeline.duration_s, SOUND_EVENTS, seed=0)
    audio = audio_world.write_wav(workdir / "demo.wav", track.waveform, track.sample_rate_hz)
    return video, audio, timeline, track


# --- 3. the stream ------------------------------------------------------------------------------


class Report:
    """Prints events next to the truth and keeps what the summary needs."""

    def __init__(self, timeline: world.Timeline, track: audio_world.Soundtrack) -> None:
        self.timeline = timeline
        self.track = track
        self.captions: list[tuple[float, str, bool]] = []
        self.alerts: list[tuple[float, str, str]] = []

    def truth_onsets(self, name: str) -> list[float]:
        if name == VISUAL_ALERT:
            return [start for start, _ in self.timeline.intervals(*world.DEMO_ALERT)]
        return [e.onset_s for e in self.track.events if e.label == name]

    def on_event(self, event: Any) -> None:
        if isinstance(event, edgemm.Caption):
            t = event.time_s or 0.0
            truth = self.timeline.caption_at(t) or "?"
            right = event.text == truth
            self.captions.append((t, event.text, right))
            mark = "ok " if right else "MISS"
            note = "" if right else f"   (truth: {truth})"
            _say(f"{t:6.1f} s  caption  {mark} {event.text}{note}")
        elif isinstance(event, edgemm.AlertEvent):
            name = event.alert.name
            onsets = self.truth_onsets(name)
            late = [event.time_s - onset for onset in onsets if 0 <= event.time_s - onset <= ALERT_BOUND_S]
            verdict = f"true onset {event.time_s - late[0]:.1f} s, +{late[0]:.1f} s" if late else "FALSE ALARM"
            self.alerts.append((event.time_s, name, verdict))
            kind = "sound" if event.alert.modality == "audio" else "sight"
            _say(f"{event.time_s:6.1f} s  ALERT    [{kind}] {name} ({event.score:.2f})   {verdict}")
        else:
            _say(f"         {type(event).__name__}: {event}")

    def summary(self, stats: edgemm.SessionStats, wall_s: float) -> dict[str, Any]:
        right = sum(1 for _, _, ok in self.captions if ok)
        expected = {VISUAL_ALERT: self.truth_onsets(VISUAL_ALERT), AUDIO_ALERT: self.truth_onsets(AUDIO_ALERT)}
        on_time = {name: sum(1 for _, n, v in self.alerts if n == name and v != "FALSE ALARM") for name in expected}
        false = sum(1 for _, _, v in self.alerts if v == "FALSE ALARM")
        cam = stats.sources.get("cam", {})
        return {
            "captions": len(self.captions),
            "captions_right": right,
            "alerts_expected": {k: len(v) for k, v in expected.items()},
            "alerts_on_time": on_time,
            "false_alerts": false,
            "latency_ms": {k: {"p50": round(v["p50"]), "p95": round(v["p95"])} for k, v in stats.latency_ms.items()},
            "camera_fps": round(float(cam.get("fps", 0.0)), 1),
            "frames_dropped": cam.get("dropped"),
            "wall_s": round(wall_s, 1),
        }


def run(pack_dir: Path, video: Path, audio: Path, timeline: world.Timeline, track: audio_world.Soundtrack, *, fast: bool) -> dict[str, Any]:
    pack = edgemm.load(pack_dir, options=edgemm.OrtOptions(providers=("cpu",)))
    report = Report(timeline, track)
    alerts = [
        edgemm.Alert(VISUAL_ALERT, threshold=VISUAL_THRESHOLD, cooldown_s=30.0),
        # Held for two scoring windows: a siren's first glide can read as an alarm for one window.
        edgemm.Alert(AUDIO_ALERT, threshold=AUDIO_THRESHOLD, modality="audio", min_duration_s=0.5, cooldown_s=30.0),
    ]
    _say()
    _say(f"streaming {video.name} (camera) and {audio.name} (microphone){'' if fast else ' in real time'}; watching for "
         f'"{VISUAL_ALERT}" (sight) and "{AUDIO_ALERT}" (sound)')
    _say(f"{'time':>8}  event")
    started = time.monotonic()
    with edgemm.open(
        pack,
        camera=f"file://{video}",
        mic=f"file://{audio}",
        realtime=not fast,
        # A small object entering a large frame is a small pixel change, so rather than the
        # scene-change test: a caption every second, printed only when its text changes.
        caption_every_s=1.0,
        on_change_only=False,
        alerts=alerts,
        alerts_max_fps=4.0,
    ) as session:
        for event in session.events():
            report.on_event(event)
    wall_s = time.monotonic() - started
    summary = report.summary(session.stats(), wall_s)
    _say()
    _say(f"captions: {summary['captions_right']}/{summary['captions']} exactly right")
    for name, count in summary["alerts_expected"].items():
        _say(f'alert "{name}": {summary["alerts_on_time"][name]}/{count} fired within {ALERT_BOUND_S} s of the true onset')
    _say(f"false alerts: {summary['false_alerts']}")
    for component, latency in summary["latency_ms"].items():
        _say(f"latency {component}: p50 {latency['p50']} ms, p95 {latency['p95']} ms")
    _say(f"camera: {summary['camera_fps']} fps, {summary['frames_dropped']} frames dropped; {summary['wall_s']} s in all")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workdir", type=Path, default=REPO / ".cache" / "demo", help="where the pack and media go (default .cache/demo)")
    parser.add_argument("--fast", action="store_true", help="stream as fast as the models go instead of in real time")
    parser.add_argument("--recompile", action="store_true", help="compile the pack even when it is up to date")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the summary as JSON")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    _say("edgemm reference-world demo (offline; models trained on generated scenes and sounds)")
    pack_dir = compile_pack(args.workdir / "pack", force=args.recompile)
    video, audio, timeline, track = make_media(args.workdir)
    summary = run(pack_dir, video, audio, timeline, track, fast=args.fast)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
