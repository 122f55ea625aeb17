"""Trains the reference captioner: a ViT encoder + BERT decoder ``VisionEncoderDecoderModel``.

From scratch, on scenes of :mod:`examples.reference_world.world` (a new scene every sample, never
one of the test split), on the CPU::

    .venv/bin/python -m examples.reference_world.train_captioner --out examples/reference_world/models/captioner --seed 0

The checkpoint is a standard Hugging Face one (``save_pretrained``: config, float32 safetensors,
ViT image processor, BERT WordPiece tokenizer of the grammar's words, generation config), so
``edgemm compile`` treats it like a downloaded model. ``training.json`` beside it records the
command, seed, time and held-out exact-match accuracy of greedy decoding in torch.

Architecture: ViT (96x96 input, 12x12 patches, hidden 128, 4 layers) -> BERT decoder with
cross-attention (hidden 128, 2 layers), about 1.0 M parameters; decoding starts at [CLS] and ends
at [SEP].
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import world

__all__ = [
    "IMAGE_MEAN",
    "IMAGE_STD",
    "build",
    "exact_match",
    "generate_captions",
    "main",
    "pixel_values",
    "sincos_position_embeddings",
    "train",
    "vocabulary",
]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)
MAX_NEW_TOKENS = 16
"""The longest caption is 12 words, one token each, plus [SEP]."""
HIDDEN = 128
PATCH = 12
GRID = world.IMAGE_SIZE // PATCH
"""Patches per side of the ViT's input."""
PATCH_CLASSES = 1 + len(world.SIZES) * len(world.COLOURS) * len(world.SHAPES)
"""What a patch shows, for the auxiliary loss: background, or one of the 24 kinds of object."""


def vocabulary() -> dict[str, int]:
    """BERT's special tokens (ids 0..4: [PAD], [UNK], [CLS], [SEP], [MASK]), then the grammar's words."""
    return {token: i for i, token in enumerate((*SPECIAL_TOKENS, *world.VOCABULARY))}


def build(seed: int) -> tuple[Any, Any, Any]:
    """A freshly initialised captioner with its image processor and tokenizer.

    Returns:
        (VisionEncoderDecoderModel, ViTImageProcessor, BertTokenizer).
    """
    import torch
    from transformers import (
        BertConfig,
        BertTokenizer,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    vocab = vocabulary()
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=32)
    encoder = ViTConfig(
        hidden_size=HIDDEN, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256, image_size=world.IMAGE_SIZE, patch_size=PATCH
    )
    # No dropout: every training scene is new, so there is nothing to overfit.
    decoder = BertConfig(
        vocab_size=len(vocab),
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        max_position_embeddings=32,
        pad_token_id=0,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    start, end, pad = vocab["[CLS]"], vocab["[SEP]"], vocab["[PAD]"]
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = start, pad, end
    torch.manual_seed(seed)
    model = VisionEncoderDecoderModel(config=config)
    with torch.no_grad():
        # Where a patch is decides the caption's relation: position embeddings start as 2-D sines
        # and cosines (as ViT-MAE's), then train as usual.
        encoder_model: Any = model.encoder
        encoder_model.embeddings.position_embeddings.copy_(sincos_position_embeddings(HIDDEN, GRID, class_token=True))
    model.generation_config.decoder_start_token_id = start
    model.generation_config.pad_token_id = pad
    model.generation_config.eos_token_id = end
    model.generation_config.max_new_tokens = MAX_NEW_TOKENS
    size = world.IMAGE_SIZE
    # Bicubic, as the runtime resizes camera frames to the model's input; images already 96x96 pass unchanged.
    image_processor = ViTImageProcessor(size={"height": size, "width": size}, image_mean=list(IMAGE_MEAN), image_std=list(IMAGE_STD), resample=3)
    return model, image_processor, tokenizer


def sincos_position_embeddings(dim: int, grid: int, *, class_token: bool) -> Any:
    """2-D sine-cosine position embeddings of a ``grid`` x ``grid`` patch grid (row by row), after
    a zero row for the class token when ``class_token``: torch tensor, shape (1, [1 +] grid * grid, dim)."""
    import torch

    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij")
    parts = [f(axis.reshape(-1, 1) * omega) for axis in (xs, ys) for f in (torch.sin, torch.cos)]
    table = torch.cat(parts, dim=1)
    if class_token:
        table = torch.cat([torch.zeros(1, dim, dtype=torch.float64), table])
    return table.unsqueeze(0).float()


def pixel_values(images: list[np.ndarray]) -> np.ndarray:
    """What the image processor makes of 96x96 images (they need no resizing).

    Args:
        images: arrays of shape (96, 96, 3), uint8, RGB.

    Returns:
        np.ndarray, shape (n, 3, 96, 96), float32.
    """
    batch = np.stack(images).astype(np.float32) / np.float32(255.0)
    normalised = (batch - np.asarray(IMAGE_MEAN, np.float32)) / np.asarray(IMAGE_STD, np.float32)
    return np.ascontiguousarray(normalised.transpose(0, 3, 1, 2), dtype=np.float32)


def patch_labels(objects: list[list[world.SceneObject]]) -> np.ndarray:
    """The class of each ViT patch (:data:`PATCH_CLASSES`; 0 background) of each scene: (n, GRID * GRID) int64."""
    out = np.zeros((len(objects), GRID * GRID), dtype=np.int64)
    for row, objs in zip(out, objects):
        classes = np.asarray([0] + [1 + (world.SIZES.index(o.size) * len(world.COLOURS) + world.COLOURS.index(o.colour)) * len(world.SHAPES) + world.SHAPES.index(o.shape) for o in objs])
        row[:] = classes[world.object_map(objs, GRID).reshape(-1)]
    return out


class PatchHead:
    """An auxiliary linear classifier of each patch's final hidden state into :data:`PATCH_CLASSES`.

    Used only in training and never saved: it gives the encoder a label for every patch (which
    object covers it, or none) besides the caption's few words, so it learns shapes, colours and
    sizes in a fraction of the scenes. The checkpoint stays a plain transformers model.
    """

    def __init__(self, hidden: int) -> None:
        import torch

        self.linear = torch.nn.Linear(hidden, PATCH_CLASSES)

    def loss(self, patch_states: Any, labels: np.ndarray) -> Any:
        """Cross-entropy of ``patch_states`` (n, GRID * GRID, hidden) against ``labels`` (n, GRID * GRID)."""
        import torch

        logits = self.linear(patch_states)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, PATCH_CLASSES), torch.from_numpy(labels).reshape(-1))


def _labels(captions: list[str], vocab: dict[str, int]) -> np.ndarray:
    """Token ids of each caption then [SEP], padded with -100 (ignored by the loss): (n, T) int64."""
    rows = [[vocab[w] for w in caption.split()] + [vocab["[SEP]"]] for caption in captions]
    out = np.full((len(rows), max(len(r) for r in rows)), -100, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def generate_captions(model: Any, tokenizer: Any, images: list[np.ndarray], batch_size: int = 128) -> list[str]:
    """Greedy captions of 96x96 images with the torch model."""
    import torch

    out: list[str] = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            pixels = torch.from_numpy(pixel_values(images[i : i + batch_size]))
            ids = model.generate(pixel_values=pixels, num_beams=1, do_sample=False, max_new_tokens=MAX_NEW_TOKENS)
            out += [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return out


def exact_match(model: Any, tokenizer: Any, count: int, *, split: str = "test", start: int = 0) -> float:
    """Fraction of scenes ``start .. start + count - 1`` of ``split`` whose greedy caption equals the true one."""
    items = list(world.scenes(split, count, start=start))
    predicted = generate_captions(model, tokenizer, [image for image, _, _ in items])
    return float(np.mean([p == caption for p, (_, caption, _) in zip(predicted, items)]))


def train(
    model: Any, *, steps: int, batch_size: int, lr: float, warmup: int, log_every: int = 100, eval_every: int = 0, tokenizer: Any = None
) -> float:
    """Trains in place on scenes 0 .. steps * batch_size - 1 of the train split. Returns the last
    caption loss (running mean, per token)."""
    import torch

    vocab = vocabulary()
    head = PatchHead(HIDDEN)
    optimizer = torch.optim.AdamW([*model.parameters(), *head.linear.parameters()], lr=lr, weight_decay=0.01, betas=(0.9, 0.98))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    start, running, patch_running = time.monotonic(), 0.0, 0.0
    for step in range(steps):
        items = list(world.scenes("train", batch_size, start=step * batch_size))
        pixels = torch.from_numpy(pixel_values([image for image, _, _ in items]))
        labels = torch.from_numpy(_labels([caption for _, caption, _ in items], vocab))
        encoded = model.encoder(pixel_values=pixels)
        caption_loss = model(encoder_outputs=encoded, labels=labels).loss
        patch_loss = head.loss(encoded.last_hidden_state[:, 1:], patch_labels([objects for _, _, objects in items]))
        loss = caption_loss + patch_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        value = float(caption_loss.detach())
        running = 0.98 * running + 0.02 * value if step else value
        patch_running = 0.98 * patch_running + 0.02 * float(patch_loss.detach()) if step else float(patch_loss.detach())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            elapsed = time.monotonic() - start
            eta = elapsed / (step + 1) * (steps - step - 1)
            print(f"step {step + 1}/{steps}  caption loss {running:.4f}  patch loss {patch_running:.4f}  lr {scheduler.get_last_lr()[0]:.2e}  {elapsed:.0f} s, {eta:.0f} s left", flush=True)
        if eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
            # A few held-out scenes from the end of the test split (the reported accuracy uses its start).
            print(f"  exact match on 200 held-out scenes: {exact_match(model, tokenizer, 200, split='test', start=900_000):.3f}", flush=True)
            model.train()
    model.eval()
    return running


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="checkpoint directory to write")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed (the data is the train split, always the same)")
    parser.add_argument("--steps", type=int, default=2400)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=150)
    parser.add_argument("--eval-scenes", type=int, default=500, help="held-out scenes the accuracy is measured on")
    parser.add_argument("--eval-every", type=int, default=400, help="print exact match on 200 other held-out scenes every N steps (0: never)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: see the README)")
    args = parser.parse_args(argv)

    import torch
    import transformers

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    model, image_processor, tokenizer = build(args.seed)
    params = sum(p.numel() for p in model.parameters())
    print(f"captioner: {params / 1e6:.2f} M parameters; {args.steps} steps of {args.batch_size} scenes", flush=True)
    start = time.monotonic()
    loss = train(model, steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, eval_every=args.eval_every, tokenizer=tokenizer)
    train_s = time.monotonic() - start
    accuracy = exact_match(model, tokenizer, args.eval_scenes)
    print(f"held-out exact match (greedy, torch, {args.eval_scenes} test scenes): {accuracy:.3f}; trained in {train_s:.0f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    image_processor.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    note = {
        "command": "python -m examples.reference_world.train_captioner " + " ".join(sys.argv[1:] if argv is None else argv),
        "seed": args.seed,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup": args.warmup,
        "train_scenes": f"train split, scenes 0..{args.steps * args.batch_size - 1}",
        "parameters": params,
        "final_loss": round(loss, 5),
        "train_time_s": round(train_s),
        "threads": args.threads,
        "heldout_exact_match_torch": accuracy,
        "heldout_scenes": f"test split, scenes 0..{args.eval_scenes - 1}",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    (args.out / "training.json").write_text(json.dumps(note, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
