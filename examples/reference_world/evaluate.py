"""Measures the reference models through an edgemm pack, as a device runs them (vision half).

Compiles the committed captioner and CLIP into one pack (fp32 and int8 for the CPU), then reports:

- caption exact match of greedy decoding on held-out scenes (test split), fp32 and int8, and in
  torch for comparison;
- CLIP zero-shot accuracy on held-out scenes (the best of the 12 colour-and-shape prompts is the
  scene's object; the two best are the two objects), fp32 and int8;
- the alert "a red triangle": its score on held-out scenes with and without a red triangle, against
  the pack's background prompt ("a photo") and against every object prompt, and the errors at 0.5;
- on the demo video (:func:`world.demo_timeline`), streamed through ``edgemm.open``: the captions
  against the true ones and when the alert fires against when the red triangle is in view.

::

    .venv/bin/python -m examples.reference_world.evaluate --pack /tmp/reference-pack

The functions are what tests/quality/test_reference_vision.py checks.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import edgemm

from . import world

__all__ = [
    "ALERT_PROMPT",
    "CAPTIONER_DIR",
    "CLIP_DIR",
    "AlertScores",
    "VideoRun",
    "alert_scores",
    "caption_accuracy",
    "compile_reference_pack",
    "main",
    "run_video",
    "torch_caption_accuracy",
    "write_calibration_scenes",
    "zero_shot_accuracy",
]

MODELS = Path(__file__).resolve().parent / "models"
CAPTIONER_DIR = MODELS / "captioner"
CLIP_DIR = MODELS / "clip"
ALERT_PROMPT = world.object_prompt(*world.DEMO_ALERT)
"""The demo's visual alert: "a red triangle"."""


def write_calibration_scenes(folder: str | Path, count: int = 32) -> Path:
    """Writes train-split scenes as PNGs, for int8 calibration and compile-time validation on
    the world's own pictures (never test scenes)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, (image, _, _) in enumerate(world.scenes("train", count, start=10_000_000)):
        Image.fromarray(image).save(folder / f"scene{i:04d}.png")
    return folder


def compile_reference_pack(
    out: str | Path,
    *,
    captioner: str | Path = CAPTIONER_DIR,
    clip: str | Path | None = CLIP_DIR,
    calibration: str | Path | None = None,
    show_progress: bool = False,
) -> edgemm.Pack:
    """Compiles the captioner (component "caption") and the CLIP (component "alerts", with
    :data:`ALERT_PROMPT` and edgemm's default background prompt, "a photo") into one pack, fp32 +
    int8/cpu: what ``edgemm compile DIR --out PACK --precision int8 [--prompt "a red triangle"]``
    makes of each.

    Args:
        calibration: a folder of scenes for static int8 and in-distribution validation
            (:func:`write_calibration_scenes`); None: dynamic int8, validation on edgemm's own
            synthetic images.

    Raises:
        edgemm.errors.ValidationFailedError: a graph outside its tolerance (the compile's own checks).
    """
    from edgemm.compile.config import CompileConfig, ExportConfig, LoadConfig, VariantConfig
    from edgemm.compile.dispatch import compile_model

    int8 = (VariantConfig("int8", "cpu"),)
    calibration_dir = None if calibration is None else str(calibration)
    pack = compile_model(
        CompileConfig(load=LoadConfig(str(captioner), local_files_only=True), out=str(out), variants=int8, calibration=calibration_dir),
        show_progress=show_progress,
    )
    if clip is not None:
        export = ExportConfig(prompts=(ALERT_PROMPT,))
        pack = compile_model(
            CompileConfig(load=LoadConfig(str(clip), local_files_only=True), out=str(out), variants=int8, export=export, calibration=calibration_dir),
            show_progress=show_progress,
        )
    return pack


def _options() -> edgemm.OrtOptions:
    return edgemm.OrtOptions(providers=("cpu",), intra_op_threads=2)


def caption_accuracy(pack: edgemm.Pack | str | Path, precision: str, count: int, *, batch_size: int = 50) -> tuple[float, list[tuple[str, str]]]:
    """Exact match of the pack's greedy captions on test scenes 0 .. count - 1.

    Returns:
        (accuracy, [(predicted, true) for each wrong caption]).
    """
    from edgemm.runtime.captioner import Captioner

    loaded = pack if isinstance(pack, edgemm.Pack) else edgemm.load(pack)
    captioner = Captioner(loaded, precision=precision, options=_options())
    items = list(world.scenes("test", count))
    predicted: list[str] = []
    for i in range(0, count, batch_size):
        predicted += [c.text for c in captioner.caption_batch([image for image, _, _ in items[i : i + batch_size]], num_beams=1)]
    wrong = [(p, caption) for p, (_, caption, _) in zip(predicted, items) if p != caption]
    return 1.0 - len(wrong) / count, wrong


def torch_caption_accuracy(count: int, model_dir: str | Path = CAPTIONER_DIR) -> float:
    """Exact match of greedy decoding in torch (transformers' ``generate``) on the same scenes."""
    from transformers import AutoTokenizer, VisionEncoderDecoderModel

    from .train_captioner import exact_match

    model = VisionEncoderDecoderModel.from_pretrained(model_dir, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    return exact_match(model, tokenizer, count)


def zero_shot_accuracy(pack: edgemm.Pack | str | Path, precision: str, count: int) -> dict[str, float]:
    """CLIP zero-shot accuracy of the pack on test scenes 0 .. count - 1 (see
    :func:`train_clip.zero_shot_accuracy` for the measures)."""
    from edgemm.runtime.zero_shot import ZeroShotScorer

    from .train_clip import zero_shot_accuracy as accuracy

    loaded = pack if isinstance(pack, edgemm.Pack) else edgemm.load(pack)
    scorer = ZeroShotScorer(loaded, precision=precision, options=_options())
    items = list(world.scenes("test", count))
    return accuracy(scorer.embed_images([image for image, _, _ in items]), scorer.embed_texts(world.OBJECT_PROMPTS), [objects for _, _, objects in items])


@dataclass(frozen=True)
class AlertScores:
    """An alert prompt's scores (its share against the pack's background prompts) on test scenes.

    Attributes:
        with_object: scores of scenes holding the object.
        without_object: scores of the other scenes.
    """

    with_object: np.ndarray
    without_object: np.ndarray

    @property
    def threshold(self) -> float:
        """Halfway between the lowest score with the object and the highest without (the margin's middle)."""
        return float(self.with_object.min() + self.without_object.max()) / 2

    @property
    def separated(self) -> bool:
        return bool(self.with_object.min() > self.without_object.max())

    def errors_at(self, threshold: float) -> tuple[int, int]:
        """(missed scenes with the object, false alerts on scenes without it) at ``threshold``."""
        return int((self.with_object < threshold).sum()), int((self.without_object >= threshold).sum())

    def summary(self) -> dict[str, float]:
        def q(values: np.ndarray, p: float) -> float:
            return round(float(np.percentile(values, p)), 4)

        return {
            "with_n": float(len(self.with_object)),
            "with_min": round(float(self.with_object.min()), 4),
            "with_p5": q(self.with_object, 5),
            "with_median": q(self.with_object, 50),
            "without_n": float(len(self.without_object)),
            "without_median": q(self.without_object, 50),
            "without_p99": q(self.without_object, 99),
            "without_max": round(float(self.without_object.max()), 4),
        }


def alert_scores(
    pack: edgemm.Pack | str | Path,
    precision: str,
    count: int,
    colour_shape: tuple[str, str] = world.DEMO_ALERT,
    *,
    background: Sequence[str] | None = None,
) -> AlertScores:
    """Scores of the alert for ``colour_shape`` on test scenes 0 .. count - 1.

    Args:
        background: background prompts (None: the pack's, "a photo" unless compiled otherwise).
    """
    from edgemm.runtime.zero_shot import ZeroShotScorer

    loaded = pack if isinstance(pack, edgemm.Pack) else edgemm.load(pack)
    scorer = ZeroShotScorer(loaded, precision=precision, options=_options(), background_prompts=background)
    items = list(world.scenes("test", count))
    scores = scorer.score_images([image for image, _, _ in items], [world.object_prompt(*colour_shape)])[:, 0]
    holds = np.array([any((o.colour, o.shape) == colour_shape for o in objects) for _, _, objects in items])
    return AlertScores(scores[holds], scores[~holds])


@dataclass(frozen=True)
class VideoRun:
    """What a session made of a video.

    Attributes:
        captions: (time_s, text) of every caption event.
        alerts: (time_s, score) of every alert event.
    """

    captions: tuple[tuple[float, str], ...]
    alerts: tuple[tuple[float, float], ...]

    def caption_accuracy(self, timeline: world.Timeline) -> float:
        """Fraction of caption events whose text is the true caption at their time."""
        return float(np.mean([text == timeline.caption_at(t) for t, text in self.captions])) if self.captions else 0.0


def run_video(
    pack: edgemm.Pack | str | Path,
    video: str | Path,
    *,
    alert_threshold: float,
    precision: str = "fp32",
    caption_every_s: float = 0.5,
    alerts_max_fps: float = 5.0,
) -> VideoRun:
    """Streams a video file through ``edgemm.open`` (not paced: every frame is read) with the
    captioner and the :data:`ALERT_PROMPT` alert, and collects the events."""
    loaded = pack if isinstance(pack, edgemm.Pack) else edgemm.load(pack, precision=precision, options=_options())
    alert = edgemm.Alert(ALERT_PROMPT, threshold=alert_threshold, cooldown_s=0.0)
    captions: list[tuple[float, str]] = []
    alerts: list[tuple[float, float]] = []
    with edgemm.open(
        loaded,
        camera=f"file://{Path(video).resolve()}",
        realtime=False,
        alerts=[alert],
        alerts_max_fps=alerts_max_fps,
        caption_every_s=caption_every_s,
        on_change_only=False,
    ) as session:
        for event in session.events(edgemm.Caption, edgemm.AlertEvent):
            if isinstance(event, edgemm.AlertEvent):
                alerts.append((event.time_s, event.score))
            elif isinstance(event, edgemm.Caption):
                captions.append((float(event.time_s or 0.0), event.text))
    return VideoRun(tuple(captions), tuple(alerts))


def _report(pack: edgemm.Pack, count: int, *, torch_too: bool) -> dict[str, Any]:
    report: dict[str, Any] = {"scenes": count}
    for precision in ("fp32", "int8"):
        start = time.perf_counter()
        accuracy, wrong = caption_accuracy(pack, precision, count)
        report[f"caption_exact_match_{precision}"] = accuracy
        report[f"caption_examples_wrong_{precision}"] = wrong[:5]
        report[f"caption_time_s_{precision}"] = round(time.perf_counter() - start, 1)
    if torch_too:
        report["caption_exact_match_torch"] = torch_caption_accuracy(count)
    if pack.components_for("zero_shot_image"):
        for precision in ("fp32", "int8"):
            report[f"zero_shot_{precision}"] = zero_shot_accuracy(pack, precision, count)
            for name, background in (("a_photo", None), ("objects", world.BACKGROUND_PROMPTS)):
                scores = alert_scores(pack, precision, count, background=background)
                report[f"alert_scores_{precision}_vs_{name}"] = {
                    **scores.summary(),
                    "separated": scores.separated,
                    "threshold_midway": round(scores.threshold, 4),
                    "missed_and_false_at_0.5": scores.errors_at(0.5),
                }
    return report


def _video_report(pack_dir: Path, threshold: float) -> dict[str, Any]:
    timeline = world.demo_timeline()
    report: dict[str, Any] = {"alert_true_intervals": timeline.intervals(*world.DEMO_ALERT), "alert_threshold": threshold}
    with tempfile.TemporaryDirectory() as tmp:
        video = world.write_video(Path(tmp) / "demo.avi", timeline)
        for precision in ("fp32", "int8"):
            run = run_video(pack_dir, video, alert_threshold=threshold, precision=precision)
            report[f"video_{precision}"] = {
                "caption_accuracy": run.caption_accuracy(timeline),
                "captions": [(round(t, 1), text, text == timeline.caption_at(t)) for t, text in run.captions],
                "alerts": [(round(t, 1), round(s, 3)) for t, s in run.alerts],
            }
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack", type=Path, help="compile into this pack (default: a temporary one)")
    parser.add_argument("--scenes", type=int, default=1000, help="held-out scenes to measure on")
    parser.add_argument("--calibration", action="store_true", help="static int8, calibrated and validated on train-split scenes")
    parser.add_argument("--no-clip", action="store_true", help="the captioner only")
    parser.add_argument("--torch", action="store_true", help="also measure the torch captioner on the same scenes")
    parser.add_argument("--alert-threshold", type=float, default=None, help="for the video (default 0.5)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        pack_dir = args.pack or Path(tmp) / "pack"
        calibration = write_calibration_scenes(Path(tmp) / "calibration") if args.calibration else None
        start = time.perf_counter()
        pack = compile_reference_pack(pack_dir, clip=None if args.no_clip else CLIP_DIR, calibration=calibration, show_progress=True)
        print(f"compiled {pack_dir} in {time.perf_counter() - start:.0f} s", flush=True)
        report = _report(pack, args.scenes, torch_too=args.torch)
        if not args.no_clip:
            threshold = args.alert_threshold or 0.5
            report.update(_video_report(pack_dir, threshold))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
