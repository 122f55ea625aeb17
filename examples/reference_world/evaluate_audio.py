"""Measures the reference CLAP: held-out zero-shot accuracy in torch and through edgemm packs, score
distributions of events against background noise, and audio alerts on a soundtrack with known onsets.

    .venv/bin/python -m examples.reference_world.evaluate_audio --model examples/reference_world/models/clap

What it does:

1. torch: ``ClapModel`` + ``ClapProcessor`` (transformers' own feature extractor) on held-out clips
   (:func:`audio_world.dataset`, split "test"); the predicted label is the prompt (the labels
   themselves) with the highest ``logits_per_audio``.
2. ``edgemm compile`` of the checkpoint (fp32 + int8, every label compiled in as a prompt), then
   ``edgemm.load(pack, precision=...).scorer()`` on the same clips, fp32 and int8; and one clip
   through ``edgemm score PACK clip.wav --json``, which must give the Python API's scores.
3. Onset windows (:func:`audio_world.onset_dataset`): accuracy and wrong alerts where an event has
   just started, the hardest windows of a stream.
4. Score distributions, per label, of its prompt on clips of that label (positives), on background
   noise and on the other labels' clips (negatives), with two background sets: edgemm's default
   ("background noise" alone) and every other label; and a threshold that separates them.
5. A soundtrack with events at known times, scored in sliding windows (2 s every 0.5 s, each window
   stamped with its end time, when a stream would have it) and turned into alert events with
   :class:`edgemm.runtime.alerts.AlertRule`: when each alert fires against its true onset.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgemm.runtime.alerts import Alert, AlertRule
from examples.reference_world import audio_world as aw

__all__ = [
    "DEMO_DURATION_S",
    "DEMO_EVENTS",
    "MODEL_DIR",
    "ScoreStats",
    "alert_times",
    "compile_pack",
    "evaluate",
    "main",
    "pack_predictions",
    "score_stats",
    "separating_threshold",
    "torch_predictions",
    "window_embeddings",
    "window_scores",
]

MODEL_DIR = Path(__file__).resolve().parent / "models" / "clap"
"""The committed checkpoint."""

DEMO_EVENTS: tuple[aw.EventSpec, ...] = (
    (1.0, "a person speaking", 3.0),
    (6.0, "a siren", 3.0),
    (11.0, "an alarm", 4.0),
    (17.0, "a chime"),
    (20.0, "a phone ringing", 3.0),
    (25.0, "knocking"),
    (28.0, "a bell"),
)
"""A 30 s soundtrack's events: (onset_s, label[, duration_s])."""

DEMO_DURATION_S = 30.0


def torch_predictions(model_dir: str | Path, waveforms: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """Zero-shot labels from the torch checkpoint with transformers' processor.

    Args:
        waveforms: np.ndarray, shape (n, samples), float32 at 48 kHz.

    Returns:
        np.ndarray, shape (n,), int64: indices into :data:`audio_world.LABELS`.
    """
    import torch
    from transformers import ClapModel, ClapProcessor

    model = ClapModel.from_pretrained(str(model_dir), local_files_only=True).eval()
    processor = ClapProcessor.from_pretrained(str(model_dir), local_files_only=True)
    text = processor.tokenizer(list(aw.LABELS), padding=True, return_tensors="pt")
    out = []
    with torch.no_grad():
        for start in range(0, len(waveforms), batch_size):
            chunk = list(waveforms[start : start + batch_size])
            # Clips are exactly max_length_s long: the extractor draws no random crop.
            audio = processor.feature_extractor(chunk, sampling_rate=aw.SAMPLE_RATE_HZ, return_tensors="pt")
            logits = model(input_ids=text["input_ids"], attention_mask=text["attention_mask"], input_features=audio["input_features"]).logits_per_audio
            out.append(logits.argmax(-1).numpy())
    return np.concatenate(out).astype(np.int64)


def compile_pack(
    model_dir: str | Path, out: str | Path, *, precisions: Sequence[Literal["fp16", "int8"]] = ("int8",), show_progress: bool = False
) -> Path:
    """``edgemm compile MODEL --out OUT --precision int8 --prompt LABEL ...`` through the Python API:
    fp32 and the ``precisions`` variants for the CPU, every label compiled in as an alert prompt,
    edgemm's default background ("background noise", itself a label)."""
    from edgemm.compile.config import CompileConfig, ExportConfig, LoadConfig, VariantConfig
    from edgemm.compile.zero_shot import compile_zero_shot

    config = CompileConfig(
        load=LoadConfig(str(model_dir), local_files_only=True),
        out=str(out),
        variants=tuple(VariantConfig(p, "cpu") for p in precisions),
        export=ExportConfig(prompts=aw.LABELS),
    )
    compile_zero_shot(config, show_progress=show_progress)
    return Path(out)


def pack_predictions(scorer: Any, waveforms: np.ndarray, *, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Zero-shot labels and scores from a pack's scorer (``edgemm.load(pack).scorer()``).

    Returns:
        (labels, scores): labels np.ndarray shape (n,) int64 into :data:`audio_world.LABELS`;
        scores np.ndarray shape (n, len(LABELS)) float32 (softmax over all labels).
    """
    embeddings = np.concatenate(
        [scorer.embed_audio(list(waveforms[i : i + batch_size]), aw.SAMPLE_RATE_HZ) for i in range(0, len(waveforms), batch_size)]
    )
    scores = scorer.scores(embeddings, list(aw.LABELS))
    return scores.argmax(-1).astype(np.int64), scores


def window_embeddings(scorer: Any, waveform: np.ndarray, *, window_s: float = aw.CLIP_S, hop_s: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Audio embeddings of sliding windows of a soundtrack.

    Args:
        waveform: np.ndarray, shape (n,), float32 at 48 kHz.
        window_s: window length (the model's clip length).
        hop_s: the step between windows.

    Returns:
        (times_s, embeddings): times_s np.ndarray shape (w,), each window's end (when a stream has
        it); embeddings np.ndarray shape (w, d) float32.
    """
    window = round(window_s * aw.SAMPLE_RATE_HZ)
    hop = round(hop_s * aw.SAMPLE_RATE_HZ)
    ends = np.arange(window, waveform.size + 1, hop)
    clips = [waveform[end - window : end] for end in ends]
    embeddings = np.concatenate([scorer.embed_audio(clips[i : i + 64], aw.SAMPLE_RATE_HZ) for i in range(0, len(clips), 64)])
    return ends / aw.SAMPLE_RATE_HZ, embeddings


def window_scores(
    scorer: Any, waveform: np.ndarray, prompts: Sequence[str], *, window_s: float = aw.CLIP_S, hop_s: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of ``prompts`` (softmax over them and the scorer's background prompts) on sliding windows.

    Returns:
        (times_s, scores): times_s np.ndarray shape (w,), window ends; scores np.ndarray shape
        (w, len(prompts)) float32.
    """
    times, embeddings = window_embeddings(scorer, waveform, window_s=window_s, hop_s=hop_s)
    return times, scorer.scores(embeddings, list(prompts))


def alert_times(times_s: np.ndarray, scores: np.ndarray, alert: Alert) -> list[float]:
    """When ``alert`` fires, feeding one prompt's window scores (shape (w,)) to an :class:`AlertRule`."""
    rule = AlertRule(alert)
    return [float(t) for t, s in zip(times_s, scores) if rule.update(float(t), float(s))]


@dataclasses.dataclass(frozen=True)
class ScoreStats:
    """One prompt's scores on positives and negatives.

    Attributes:
        label: the prompt (a label).
        positive: percentiles (min, 5th, median) on clips of the label.
        background: percentiles (median, 95th, max) on background-noise clips.
        other: percentiles (median, 95th, max) on the other labels' event clips.
        threshold: a score that separates positives from all negatives (see :func:`separating_threshold`).
        errors: positives below plus negatives at or above ``threshold``.
    """

    label: str
    positive: tuple[float, float, float]
    background: tuple[float, float, float]
    other: tuple[float, float, float]
    threshold: float
    errors: int


def separating_threshold(positive: np.ndarray, negative: np.ndarray) -> float:
    """The middle of the gap between the highest negative and the lowest positive when there is
    one; else the score with the fewest errors (positives below it, negatives at or above it)."""
    low, high = float(np.max(negative)), float(np.min(positive))
    if high > low:
        return 0.5 * (low + high)
    candidates = np.unique(np.concatenate([positive, negative]))
    errors = [(np.sum(positive < c) + np.sum(negative >= c), c) for c in candidates]
    return float(min(errors)[1])


def score_stats(scores: np.ndarray, targets: np.ndarray) -> list[ScoreStats]:
    """Per label, its score's distribution on positives and negatives.

    Args:
        scores: np.ndarray, shape (n, len(LABELS)): each label's prompt scored on each clip (one call
            per label with its own background set, or one call over all labels).
        targets: np.ndarray, shape (n,), true label indices.
    """
    noise = aw.LABELS.index(aw.BACKGROUND)
    out = []
    for i, label in enumerate(aw.LABELS):
        if i == noise:
            continue
        positive, background, other = scores[targets == i, i], scores[targets == noise, i], scores[(targets != i) & (targets != noise), i]
        negative = np.concatenate([background, other])
        threshold = separating_threshold(positive, negative)
        out.append(
            ScoreStats(
                label,
                (float(positive.min()), float(np.percentile(positive, 5)), float(np.median(positive))),
                (float(np.median(background)), float(np.percentile(background, 95)), float(background.max())),
                (float(np.median(other)), float(np.percentile(other, 95)), float(other.max())),
                threshold,
                int(np.sum(positive < threshold) + np.sum(negative >= threshold)),
            )
        )
    return out


def _alone_scores(scorer: Any, embeddings: np.ndarray) -> np.ndarray:
    """Each label's score against edgemm's default background alone ("background noise")."""
    scorer.set_background([aw.BACKGROUND])
    columns = [scorer.scores(embeddings, [label])[:, 0] if label != aw.BACKGROUND else np.zeros(len(embeddings)) for label in aw.LABELS]
    return np.stack(columns, axis=1)


def _cli_check(pack: Path, clip: np.ndarray, scorer: Any) -> dict[str, Any]:
    """``edgemm score PACK clip.wav --json --precision fp32`` against the Python API on the same WAV."""
    from edgemm.runtime.audio_features import read_wav

    with tempfile.TemporaryDirectory() as folder:
        path = aw.write_wav(Path(folder) / "clip.wav", clip)
        command = [sys.executable, "-m", "edgemm", "score", str(pack), str(path), "--precision", "fp32", "--json"]
        command += [arg for label in aw.LABELS for arg in ("--prompt", label)]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        cli = json.loads(result.stdout.strip().splitlines()[-1])["scores"]
        samples, rate = read_wav(path)
    scorer.set_background([aw.BACKGROUND])
    api = scorer.scores(scorer.embed_audio([samples], rate), list(aw.LABELS))[0]
    return {"cli_scores": cli, "max_abs_diff": float(max(abs(cli[label] - float(api[i])) for i, label in enumerate(aw.LABELS)))}


def evaluate(model_dir: Path, pack: Path | None, clips_per_label: int) -> dict[str, Any]:
    """Runs every measurement; returns them as a JSON-able dict (and prints as it goes)."""
    import edgemm

    report: dict[str, Any] = {"model": str(model_dir), "clips_per_label": clips_per_label, "labels": list(aw.LABELS)}
    waveforms, targets = aw.dataset("test", clips_per_label)
    print(f"held-out clips: {len(targets)} ({clips_per_label} per label, split 'test')")
    onset_waveforms, onset_targets = aw.onset_dataset(clips_per_label)

    started = time.perf_counter()
    torch_labels = torch_predictions(model_dir, waveforms)
    report["torch_accuracy"] = float(np.mean(torch_labels == targets))
    print(f"torch fp32 (transformers' processor): accuracy {report['torch_accuracy']:.3f}  [{time.perf_counter() - started:.0f} s]")

    with tempfile.TemporaryDirectory() as folder:
        if pack is None:
            started = time.perf_counter()
            pack = compile_pack(model_dir, Path(folder) / "pack", show_progress=True)
            report["compile_s"] = time.perf_counter() - started
        for precision in ("fp32", "int8"):
            scorer = edgemm.load(pack, precision=precision).scorer()
            scorer.set_background([aw.BACKGROUND])
            labels, _ = pack_predictions(scorer, waveforms)
            accuracy = float(np.mean(labels == targets))
            report[f"pack_{precision}_accuracy"] = accuracy
            report[f"pack_{precision}_agreement_with_torch"] = float(np.mean(labels == torch_labels))
            per_label = {label: float(np.mean(labels[targets == i] == i)) for i, label in enumerate(aw.LABELS)}
            report[f"pack_{precision}_per_label"] = per_label
            print(f"pack {precision} ({scorer.describe()}): accuracy {accuracy:.3f}, same label as torch on {report[f'pack_{precision}_agreement_with_torch']:.3f}")
            print("  per label: " + ", ".join(f"{label} {value:.2f}" for label, value in per_label.items()))
            embeddings = scorer.embed_audio(list(waveforms), aw.SAMPLE_RATE_HZ)
            for name, scores in (("background_noise_only", _alone_scores(scorer, embeddings)), ("all_labels", _all_scores(scorer, embeddings))):
                stats = score_stats(scores, targets)
                report[f"pack_{precision}_scores_{name}"] = [dataclasses.asdict(s) for s in stats]
                print(f"  scores, background {name.replace('_', ' ')}: label: positives min/p5/median | noise median/p95/max | other events median/p95/max -> threshold (errors)")
                for s in stats:
                    print(
                        f"    {s.label:18s} {s.positive[0]:.2f}/{s.positive[1]:.2f}/{s.positive[2]:.2f} | {s.background[0]:.2f}/{s.background[1]:.2f}/{s.background[2]:.2f}"
                        f" | {s.other[0]:.2f}/{s.other[1]:.2f}/{s.other[2]:.2f} -> {s.threshold:.2f} ({s.errors})"
                    )
            report[f"pack_{precision}_onsets"] = _onsets(scorer, onset_waveforms, onset_targets)
            track = aw.soundtrack(DEMO_DURATION_S, DEMO_EVENTS)
            report[f"pack_{precision}_soundtrack"] = _soundtrack_alerts(scorer, track)
        report["cli_check"] = _cli_check(pack, waveforms[int(np.flatnonzero(targets == 0)[0])], edgemm.load(pack, precision="fp32").scorer())
        print(f"edgemm score CLI vs Python API (fp32, one clip): max |score difference| {report['cli_check']['max_abs_diff']:.2e}")
    return report


def _onsets(scorer: Any, waveforms: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """On windows where an event has just started (:func:`audio_world.onset_dataset`): accuracy,
    and how often another label's alert would fire (score >= 0.5 against "background noise" alone,
    or against every other label)."""
    scorer.set_background([aw.BACKGROUND])
    embeddings = scorer.embed_audio(list(waveforms), aw.SAMPLE_RATE_HZ)
    every = _all_scores(scorer, embeddings)
    alone = _alone_scores(scorer, embeddings)
    wrong = np.ones_like(every, dtype=bool)
    wrong[np.arange(len(targets)), targets] = False
    wrong[:, aw.LABELS.index(aw.BACKGROUND)] = False
    out = {
        "windows": float(len(targets)),
        "accuracy": float(np.mean(every.argmax(-1) == targets)),
        "hit_rate_background_noise_only": float(np.mean(alone[np.arange(len(targets)), targets] >= 0.5)),
        "false_alert_windows_background_noise_only": float(np.mean(((alone >= 0.5) & wrong).any(axis=1))),
        "false_alert_windows_all_labels": float(np.mean(((every >= 0.5) & wrong).any(axis=1))),
    }
    print(
        f"  onset windows ({len(targets)}, the event's first 0.5-1 s at the window's end): accuracy {out['accuracy']:.3f}; "
        f"alert at 0.5 on the right label {out['hit_rate_background_noise_only']:.3f}, on a wrong label in "
        f"{out['false_alert_windows_background_noise_only']:.3f} of windows (background noise only) / "
        f"{out['false_alert_windows_all_labels']:.3f} (all labels)"
    )
    return out


def _all_scores(scorer: Any, embeddings: np.ndarray) -> np.ndarray:
    """Each label's share of a softmax over all labels (the others are its background)."""
    scorer.set_background([aw.BACKGROUND])
    return np.asarray(scorer.scores(embeddings, list(aw.LABELS)))


def _soundtrack_alerts(scorer: Any, track: aw.Soundtrack) -> dict[str, Any]:
    """Alerts on every event label of ``track`` (threshold 0.5, fired at once or held for two windows)
    with two background sets: "background noise" alone (each label scored on its own against it,
    edgemm's default) and every other label."""
    labels = [label for label in aw.LABELS if label != aw.BACKGROUND]
    scorer.set_background([aw.BACKGROUND])
    times, embeddings = window_embeddings(scorer, track.waveform)
    report: dict[str, Any] = {"events": [dataclasses.asdict(e) for e in track.events]}
    print(f"  soundtrack ({track.duration_s:.0f} s, windows of 2 s every 0.5 s, alerts at 0.5): fired at (s)")
    sets = {
        "background_noise_only": np.stack([scorer.scores(embeddings, [label])[:, 0] for label in labels], axis=1),
        "all_labels": scorer.scores(embeddings, list(aw.LABELS))[:, [aw.LABELS.index(label) for label in labels]],
    }
    present = {e.label for e in track.events}
    for name, scores in sets.items():
        for hold_s in (0.0, 0.5):
            fired = {
                label: alert_times(times, scores[:, i], Alert(label, threshold=0.5, modality="audio", min_duration_s=hold_s, cooldown_s=5.0))
                for i, label in enumerate(labels)
            }
            events = ", ".join(f"{e.label} {e.onset_s:.1f}-{e.offset_s:.1f}: {fired[e.label]}" for e in track.events)
            stray = {label: t for label, t in fired.items() if label not in present and t}
            print(f"    background {name.replace('_', ' ')}, min_duration_s {hold_s}: {events}; labels not in the soundtrack: {stray or 'none'}")
            report[f"{name}_min_duration_{hold_s}"] = fired
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(MODEL_DIR), help="the CLAP checkpoint folder (default: the committed one)")
    parser.add_argument("--pack", default=None, help="an already compiled pack (fp32 + int8) instead of compiling one")
    parser.add_argument("--clips-per-label", type=int, default=40)
    parser.add_argument("--json", default=None, help="also write the measurements to this file")
    args = parser.parse_args(argv)
    report = evaluate(Path(args.model), Path(args.pack) if args.pack else None, args.clips_per_label)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
