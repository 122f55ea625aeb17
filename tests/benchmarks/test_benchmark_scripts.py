"""The benchmark scripts run end to end on tiny models (speed is not checked here, only that they
work and what they compare): each builds nothing, compiles the tiny checkpoint into a pack in a
child process, times transformers eager against the pack's fp32 and int8 graphs on real media, and
reports JSON in which the fp32 pack decodes exactly transformers' tokens."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytest.importorskip("torch")
pytest.importorskip("transformers")


def _run(script: str, *args: str, ok: bool = True) -> dict:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--repeats", "1", "--warmup", "0", "--threads", "1", "--new-tokens", "3", "--json", *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if not ok:
        assert done.returncode != 0
        return {"stderr": done.stderr}
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout))


def _check(report: dict, units: int) -> None:
    names = [r["name"] for r in report["results"]]
    assert names == ["transformers eager fp32", "pack fp32", "pack int8 (ort-dynamic-u8s8)"]
    reference, fp32, _ = report["results"]
    assert fp32["same_tokens_as_reference"] == units  # the exported graphs decode transformers' tokens
    assert reference["same_tokens_as_reference"] == units
    for result in report["results"]:
        assert result["total_ms"] > 0 and result["ratios"]["total"] > 0
    assert report["setup"]["versions"]["onnxruntime"]


def test_caption_benchmark_on_a_tiny_blip(tmp_path: Path) -> None:
    from edgemm.compile.testing import tiny_blip

    model = tiny_blip(tmp_path / "blip")
    _check(_run("caption.py", "--model", str(model), "--workdir", str(tmp_path / "work"), "--images", "2"), units=2)


def test_asr_benchmark_refuses_a_model_that_emits_timestamps(tmp_path: Path) -> None:
    # A tiny random Whisper (small vocabulary) emits timestamp tokens, after which generate() decodes
    # the segment again, so "exactly N new tokens" cannot hold: the script says so instead of
    # comparing unequal work.
    from edgemm.compile.testing import tiny_whisper

    model = tiny_whisper(tmp_path / "whisper")
    out = _run("asr.py", "--model", str(model), "--workdir", str(tmp_path / "work"), "--clips", "1", "--min-agreement", "0", ok=False)
    assert "the model emitted timestamp tokens" in out["stderr"]


@pytest.mark.slow
def test_asr_benchmark_on_whisper_tiny_en(tmp_path: Path) -> None:
    # the released tiny.en configuration (random weights, 39M parameters): a few minutes
    report = _run("asr.py", "--model-size", "tiny.en", "--workdir", str(tmp_path / "work"), "--clips", "2", "--min-agreement", "0")
    _check(report, units=2)
