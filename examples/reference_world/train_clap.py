"""Trains the reference world's CLAP from scratch on :mod:`audio_world`'s sound events.

A real ``ClapModel`` (HTSAT audio tower, RoBERTa text tower), small enough to train on two CPU
cores in minutes, saved with its ``ClapProcessor`` (``ClapFeatureExtractor`` + a RoBERTa-style
byte-level BPE) so that ``edgemm compile`` takes the folder like a downloaded checkpoint::

    .venv/bin/python -m examples.reference_world.train_clap --out examples/reference_world/models/clap --seed 0
    .venv/bin/edgemm compile examples/reference_world/models/clap --out packs/audio --precision int8 --offline

Audio: 2 s at 48 kHz, 64 log-mel bins every 1600 samples (61 frames, resized to the tower's 64 inside
the model). Training is contrastive: every clip against every templated prompt of every label
(:data:`audio_world.PROMPT_TEMPLATES`), both directions, on class-balanced batches; plus a loss that
puts "background noise" above every wrong event label, so an alert scored against that background
alone (edgemm's default for audio) stays quiet on other sounds. Progress and the held-out results
are printed; ``training.json`` beside the checkpoint records the configuration and results.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from examples.reference_world import audio_world as aw

__all__ = [
    "AUDIO_CONFIG",
    "FEATURE_EXTRACTOR",
    "PROJECTION_DIM",
    "TEXT_CONFIG",
    "Evaluation",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "build_processor",
    "build_tokenizer",
    "evaluate",
    "features",
    "main",
    "train",
]

FEATURE_EXTRACTOR: dict[str, Any] = {
    "feature_size": 64,
    "sampling_rate": aw.SAMPLE_RATE_HZ,
    "hop_length": 1600,
    # An int: the extractor slices waveforms with max_length_s * sampling_rate.
    "max_length_s": round(aw.CLIP_S),
    "fft_window_size": 2048,
    "frequency_min": 50,
    "frequency_max": 14_000,
    "truncation": "rand_trunc",
    "padding": "repeatpad",
}
"""``ClapFeatureExtractor`` settings: 2 s clips, 33 ms hops (61 frames, under the tower's 64)."""

AUDIO_CONFIG: dict[str, Any] = {
    "spec_size": 64,
    "num_mel_bins": 64,
    "patch_size": 4,
    "patch_stride": [4, 4],
    "window_size": 4,
    "depths": [2, 2, 2],
    "num_attention_heads": [2, 4, 8],
    "patch_embeds_hidden_size": 32,
    "hidden_size": 128,
    "enable_fusion": False,
}
"""HTSAT with 3 stages (widths 32, 64, 128) on a 64x64 spectrogram image (16x16 patches)."""

TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 34,
}
"""A 2-layer RoBERTa, 32 tokens."""

PROJECTION_DIM = 64
_VOCAB_SIZE = 400
_SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run; the defaults made the committed checkpoint.

    Attributes:
        seed: seeds torch, numpy, random and the training clips (:func:`audio_world.dataset`).
        clips_per_label: training clips per label, generated once.
        steps: optimiser steps.
        clips_per_label_per_batch: a batch holds this many clips of every label.
        learning_rate: AdamW peak rate (linear warm-up, cosine decay).
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up.
        gain_jitter_db: random level change of each training clip (added to its log-mel, dB).
        background_weight: weight of the loss that puts "background noise" above every wrong event
            label (so alerts against the default background alone stay quiet on other sounds).
        eval_clips_per_label: held-out ("test") clips per label for the final accuracy.
        threads: torch threads. 1: the development machine's 2 cores are shared with other work,
            and torch's 2-thread kernels ran 5-10x slower than 1 thread under that contention
            (on an idle machine 2 threads are faster; results are not bit-identical across counts).
    """

    seed: int = 0
    clips_per_label: int = 400
    steps: int = 1500
    clips_per_label_per_batch: int = 6
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 150
    gain_jitter_db: float = 6.0
    background_weight: float = 1.0
    eval_clips_per_label: int = 40
    threads: int = 1


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a run made and measured.

    Attributes:
        out: the checkpoint folder.
        accuracy: held-out zero-shot accuracy, canonical prompts (the labels themselves).
        template_accuracy: held-out accuracy with each label's prompt embeddings averaged over templates.
        alone_hit_rate, alone_false_alert_rate, alone_false_alert_clips: see :class:`Evaluation`.
        per_label_accuracy: held-out accuracy per label (canonical prompts).
        confusion: rows true label, columns predicted label, counts (labels in ``audio_world.LABELS`` order).
        data_s, train_s: seconds generating the data and training.
        logit_scale: the learned ``exp(logit_scale_a)``.
    """

    out: str
    accuracy: float
    template_accuracy: float
    alone_hit_rate: float
    alone_false_alert_rate: float
    alone_false_alert_clips: float
    per_label_accuracy: dict[str, float]
    confusion: list[list[int]]
    data_s: float
    train_s: float
    logit_scale: float


def build_tokenizer() -> Any:
    """A RoBERTa-style byte-level BPE (``<s>``=0, ``<pad>``=1, ``</s>``=2) trained on the labels'
    prompts and alert-like text, so other prompts tokenize too (every byte is in the vocabulary)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import RobertaTokenizer

    from edgemm.compile.testing import ALERT_WORDS
    from edgemm.compile.zero_shot import AUDIO_VALIDATION_PROMPTS

    rng = random.Random(0)
    corpus = [p for label in aw.LABELS for p in aw.prompts(label)] * 20
    corpus += list(AUDIO_VALIDATION_PROMPTS) * 5
    corpus += [" ".join(rng.choice(ALERT_WORDS) for _ in range(4)) for _ in range(500)]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE, special_tokens=list(_SPECIAL_TOKENS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(corpus, trainer)
    data = json.loads(tokenizer.to_str())
    vocab = {str(k): int(v) for k, v in data["model"]["vocab"].items()}
    merges: list[Any] = [tuple(m.split(" ", 1)) if isinstance(m, str) else (m[0], m[1]) for m in data["model"]["merges"]]
    return RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=TEXT_CONFIG["max_position_embeddings"] - 2)


def build_processor(tokenizer: Any) -> Any:
    """The ``ClapProcessor``: :data:`FEATURE_EXTRACTOR` + ``tokenizer``."""
    from transformers import ClapFeatureExtractor, ClapProcessor

    return ClapProcessor(feature_extractor=ClapFeatureExtractor(**FEATURE_EXTRACTOR), tokenizer=tokenizer)


def build_model(tokenizer: Any, *, seed: int) -> Any:
    """A randomly initialised ``ClapModel`` of :data:`AUDIO_CONFIG` and :data:`TEXT_CONFIG`."""
    import torch
    from transformers import ClapConfig, ClapModel

    vocab = tokenizer.get_vocab()
    config = ClapConfig(
        audio_config={**AUDIO_CONFIG, "projection_dim": PROJECTION_DIM},
        text_config={
            **TEXT_CONFIG,
            "vocab_size": len(vocab),
            "projection_dim": PROJECTION_DIM,
            "pad_token_id": vocab["<pad>"],
            "bos_token_id": vocab["<s>"],
            "eos_token_id": vocab["</s>"],
        },
        projection_dim=PROJECTION_DIM,
        logit_scale_init_value=10.0,
    )
    torch.manual_seed(seed)
    return ClapModel(config)


def features(waveforms: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Log-mel features of 48 kHz clips with the checkpoint's extractor settings, computed by edgemm's
    runtime (equal to ``ClapFeatureExtractor`` within 1e-4 dB, and much faster).

    Args:
        waveforms: clips, each shape (n,), float32 at 48 kHz.

    Returns:
        np.ndarray, shape (batch, 1, 61, 64), float32.
    """
    from transformers import ClapFeatureExtractor

    from edgemm.compile.zero_shot import audio_preprocessing_from_extractor
    from edgemm.runtime.audio_features import clap_features

    spec = audio_preprocessing_from_extractor(ClapFeatureExtractor(**FEATURE_EXTRACTOR))
    return clap_features(list(waveforms), spec)[0]


def _features_of(split: aw.Split, clips_per_label: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    chunks, targets = [], []
    for label in aw.LABELS:
        waveforms, target = aw.dataset(split, clips_per_label, seed=seed, labels=[label])
        chunks.append(features(waveforms))
        targets.append(target)
    return np.concatenate(chunks), np.concatenate(targets)


def _text_inputs(tokenizer: Any) -> tuple[dict[str, Any], np.ndarray]:
    """Every templated prompt of every label, tokenized; and each prompt's label index."""
    import torch

    texts = [p for label in aw.LABELS for p in aw.prompts(label)]
    owners = np.asarray([i for i, label in enumerate(aw.LABELS) for _ in aw.prompts(label)])
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    return {k: torch.as_tensor(v) for k, v in encoded.items() if k in ("input_ids", "attention_mask")}, owners


def _embed_audio(model: Any, feats: Any) -> Any:
    import torch

    return torch.nn.functional.normalize(model.get_audio_features(input_features=feats).pooler_output, dim=-1)


def _embed_text(model: Any, text: dict[str, Any]) -> Any:
    import torch

    return torch.nn.functional.normalize(model.get_text_features(**text).pooler_output, dim=-1)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Held-out zero-shot measurements of a model (see :func:`evaluate`).

    Attributes:
        accuracy: top-1 over all labels, canonical prompts (the labels themselves).
        template_accuracy: top-1 with each label's prompt embeddings averaged over the templates.
        confusion: rows true label, columns predicted (canonical), counts; (labels, labels) int64.
        alone_hit_rate: event clips whose own label beats "background noise" alone (an alert
            scored against edgemm's default background would fire at 0.5).
        alone_false_alert_rate: (clip, other event label) pairs where the other label beats
            "background noise" alone (an alert on it would fire at 0.5).
        alone_false_alert_clips: clips with at least one such pair.
    """

    accuracy: float
    template_accuracy: float
    confusion: np.ndarray
    alone_hit_rate: float
    alone_false_alert_rate: float
    alone_false_alert_clips: float


def evaluate(model: Any, tokenizer: Any, feats: np.ndarray, targets: np.ndarray) -> Evaluation:
    """Zero-shot measurements of ``model`` (set to eval mode) on log-mel features, shape (n, 1, 61, 64)."""
    import torch

    model.eval()
    text, owners = _text_inputs(tokenizer)
    with torch.no_grad():
        prompts = _embed_text(model, text)
        audio = torch.cat([_embed_audio(model, torch.from_numpy(feats[i : i + 256])) for i in range(0, len(feats), 256)])
    canonical = prompts[[int(np.flatnonzero(owners == i)[0]) for i in range(len(aw.LABELS))]]
    averaged = torch.nn.functional.normalize(torch.stack([prompts[torch.from_numpy(owners == i)].mean(0) for i in range(len(aw.LABELS))]), dim=-1)
    cosines = (audio @ canonical.T).numpy()
    predictions = cosines.argmax(-1)
    averaged_predictions = (audio @ averaged.T).argmax(-1).numpy()
    confusion = np.zeros((len(aw.LABELS), len(aw.LABELS)), np.int64)
    np.add.at(confusion, (targets, predictions), 1)
    background = aw.LABELS.index(aw.BACKGROUND)
    rows = np.arange(len(targets))
    events = targets != background
    beats = cosines >= cosines[:, background : background + 1]  # (n, labels): 2-way score >= 0.5
    wrong = np.ones_like(beats)
    wrong[rows, targets] = False
    wrong[:, background] = False
    return Evaluation(
        accuracy=float(np.mean(predictions == targets)),
        template_accuracy=float(np.mean(averaged_predictions == targets)),
        confusion=confusion,
        alone_hit_rate=float(np.mean(beats[rows, targets][events])),
        alone_false_alert_rate=float(beats[wrong].mean()),
        alone_false_alert_clips=float(np.mean((beats & wrong).any(axis=1))),
    )


def train(config: TrainConfig, out: str | Path) -> TrainResult:
    """Generates the data, trains, evaluates on the held-out split and saves the checkpoint to ``out``."""
    import torch

    torch.set_num_threads(config.threads)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    tokenizer = build_tokenizer()
    print(f"generating {config.clips_per_label} training clips per label ({len(aw.LABELS)} labels) ...", flush=True)
    train_x, train_y = _features_of("train", config.clips_per_label, config.seed)
    test_x, test_y = _features_of("test", config.eval_clips_per_label, 0)
    data_s = time.perf_counter() - started
    print(f"data: {train_x.shape[0]} training and {test_x.shape[0]} held-out clips in {data_s:.0f} s", flush=True)

    model = build_model(tokenizer, seed=config.seed)
    text, owners = _text_inputs(tokenizer)
    owners_t = torch.from_numpy(owners)
    background = aw.LABELS.index(aw.BACKGROUND)
    templates = len(aw.PROMPT_TEMPLATES)
    # For every prompt, the "background noise" prompt of the same template.
    background_prompt = torch.from_numpy(np.flatnonzero(owners == background)[np.arange(len(owners)) % templates])
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)

    def rate(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    by_label = [np.flatnonzero(train_y == i) for i in range(len(aw.LABELS))]
    generator = np.random.default_rng(config.seed)
    train_x_t = torch.from_numpy(train_x)
    started = time.perf_counter()
    model.train()
    for step in range(config.steps):
        index = np.concatenate([generator.choice(rows, config.clips_per_label_per_batch, replace=False) for rows in by_label])
        batch_y = torch.from_numpy(train_y[index])
        gain = torch.from_numpy(generator.uniform(-config.gain_jitter_db, config.gain_jitter_db, (len(index), 1, 1, 1)).astype(np.float32))
        audio = _embed_audio(model, train_x_t[index] + gain)
        prompts = _embed_text(model, text)
        scale = model.logit_scale_a.exp().clamp(max=100.0)
        logits = scale * audio @ prompts.T  # (batch, labels * templates)
        # Every template of the clip's label is a positive; every clip of the prompt's label too.
        positive = (batch_y[:, None] == owners_t[None, :]).float()
        audio_loss = -(torch.log_softmax(logits, dim=1) * positive).sum(1).div(templates).mean()
        text_loss = -(torch.log_softmax(logits.T, dim=1) * positive.T).sum(1).div(positive.sum(0)).mean()
        # "background noise" must beat every wrong event label (same template), so that an alert
        # scored against that background alone (edgemm's default) stays quiet on other sounds.
        wrong = (positive == 0) & (owners_t[None, :] != background) & (batch_y[:, None] != background)
        background_loss = torch.nn.functional.softplus(logits - logits[:, background_prompt])[wrong].mean()
        loss = 0.5 * (audio_loss + text_loss) + config.background_weight * background_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % 100 == 0 or step == config.steps - 1:
            elapsed = time.perf_counter() - started
            left = elapsed / (step + 1) * (config.steps - step - 1)
            print(f"step {step:5d}/{config.steps}  loss {loss.item():.3f}  scale {scale.item():5.1f}  {elapsed:4.0f} s, ~{left:.0f} s left", flush=True)
    train_s = time.perf_counter() - started
    with torch.no_grad():
        # Both directions trained with logit_scale_a; keep logits_per_text on the same scale.
        model.logit_scale_a.clamp_(max=math.log(100.0))
        model.logit_scale_t.copy_(model.logit_scale_a)
    measured = evaluate(model, tokenizer, test_x, test_y)
    confusion = measured.confusion
    per_label = {label: float(confusion[i, i] / max(1, confusion[i].sum())) for i, label in enumerate(aw.LABELS)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    build_processor(tokenizer).save_pretrained(out)
    result = TrainResult(
        out=str(out),
        accuracy=measured.accuracy,
        template_accuracy=measured.template_accuracy,
        alone_hit_rate=measured.alone_hit_rate,
        alone_false_alert_rate=measured.alone_false_alert_rate,
        alone_false_alert_clips=measured.alone_false_alert_clips,
        per_label_accuracy=per_label,
        confusion=confusion.tolist(),
        data_s=data_s,
        train_s=train_s,
        logit_scale=float(model.logit_scale_a.detach().exp()),
    )
    (out / "training.json").write_text(json.dumps({"config": dataclasses.asdict(config), "result": dataclasses.asdict(result)}, indent=1) + "\n")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="checkpoint folder (created)")
    defaults = TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(getattr(defaults, field.name)), default=getattr(defaults, field.name))
    args = parser.parse_args(argv)
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    result = train(config, args.out)
    print(f"held-out zero-shot accuracy {result.accuracy:.3f} (template-averaged prompts {result.template_accuracy:.3f})")
    print(
        f"against 'background noise' alone: own label wins on {result.alone_hit_rate:.3f} of event clips; a wrong label wins on "
        f"{result.alone_false_alert_rate:.4f} of (clip, label) pairs, {result.alone_false_alert_clips:.3f} of clips"
    )
    for label, value in result.per_label_accuracy.items():
        print(f"  {label:20s} {value:.3f}")
    print(f"data {result.data_s:.0f} s, training {result.train_s:.0f} s; saved to {result.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
