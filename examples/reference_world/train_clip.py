"""Trains the reference CLIP: a small ``CLIPModel`` for zero-shot visual alerts ("a red triangle").

Contrastive, on scenes of :mod:`examples.reference_world.world` (a new scene every sample, never
one of the test split), on the CPU, with the image tower started from the trained captioner's ViT
encoder (:func:`vision_from_captioner`)::

    .venv/bin/python -m examples.reference_world.train_clip --out examples/reference_world/models/clip \
        --vision-from examples/reference_world/models/captioner --seed 0

Every batch of scenes is scored against the same texts (:func:`batch_texts`): "a photo", "an
empty scene", the 12 colour-and-shape prompts ("a red triangle"), the 24 size-colour-shape phrases
and the batch's captions. A text is true of many scenes and a scene makes many texts true, so the
loss is CLIP's symmetric cross-entropy with every true pair as a target, not only a diagonal:
each scene spreads its target evenly over the texts true of it, with "a photo" (true of every
scene) weighted :data:`GENERIC_WEIGHT`, so that it settles below what a scene shows and above what
it does not. That makes "a photo", edgemm's default background prompt for CLIP packs, the level an
alert rises above: ``edgemm compile models/clip --prompt "a red triangle"`` needs no
``--background``. An auxiliary per-patch classifier (as in the captioner's training, not saved)
keeps the image tower's patches knowing what covers them.

Architecture: ViT (96x96 input, 12x12 patches, hidden 128, 4 layers; GELU, as the captioner's) and a
text transformer (hidden 128, 3 layers, 32 positions, CLIP-style BPE in which every grammar word
is one token) projected to 128 dimensions, 1.1 M parameters. ``training.json`` beside the
checkpoint records the command, seed, time and held-out zero-shot accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import world
from .train_captioner import (
    GRID,
    HIDDEN,
    IMAGE_MEAN,
    IMAGE_STD,
    PATCH,
    PatchHead,
    patch_labels,
    sincos_position_embeddings,
)

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "GENERIC_TEXT",
    "GENERIC_WEIGHT",
    "Text",
    "batch_texts",
    "build",
    "clip_bpe",
    "embed_images",
    "embed_texts",
    "fixed_texts",
    "main",
    "pixel_values",
    "train",
    "vision_from_captioner",
    "zero_shot_accuracy",
]

CLIP_MEAN = IMAGE_MEAN
CLIP_STD = IMAGE_STD
"""The captioner's image normalisation (not CLIP's usual one), so its ViT can start the image tower as it is."""

_TEXT_POSITIONS = 32
_INITIAL_LOGIT_SCALE = 30.0


def _corpus() -> list[str]:
    """Every text the model is trained on: captions of both relations and every object phrase."""
    phrases = [f"a {size} {colour} {shape}" for size in world.SIZES for colour in world.COLOURS for shape in world.SHAPES]
    texts = [world.EMPTY_CAPTION, GENERIC_TEXT, *world.OBJECT_PROMPTS, *phrases]
    texts += [f"{a} {relation} {b}" for a in phrases for b in phrases for relation in world.RELATIONS]
    return texts


def clip_bpe(vocab_size: int = 400) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP-style BPE (lowercased, byte-level, ``</w>`` ends words) trained on the grammar's texts:
    (vocab, merges). Every grammar word is one token; every byte alone and ending a word is in the
    vocabulary too, as in CLIP's, so no prompt is unknown (words outside the grammar are spelled)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(end_of_word_suffix="</w>", continuing_subword_prefix=""))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|startoftext|>", "<|endoftext|>"],
        initial_alphabet=alphabet,
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer)
    data = json.loads(tokenizer.to_str())
    vocab = {str(k): int(v) for k, v in data["model"]["vocab"].items()}
    for char in sorted(alphabet):
        for token in (char, f"{char}</w>"):
            vocab.setdefault(token, len(vocab))
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else (m[0], m[1]) for m in data["model"]["merges"]]
    return vocab, [(a, b) for a, b in merges]


def build(seed: int) -> tuple[Any, Any]:
    """A freshly initialised CLIP with its processor: (CLIPModel, CLIPProcessor)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab, merges = clip_bpe()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=_TEXT_POSITIONS)  # type: ignore[arg-type]
    for word in (*world.VOCABULARY, *GENERIC_TEXT.split()):
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise RuntimeError(f"the BPE splits the grammar word {word!r} into {len(ids)} tokens; raise its vocab_size")
    size = world.IMAGE_SIZE
    config = CLIPConfig(
        # The captioner's ViT in CLIP's terms (GELU, its LayerNorm epsilon), so its weights can start this tower.
        vision_config={
            "hidden_size": HIDDEN,
            "intermediate_size": 256,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "patch_size": PATCH,
            "image_size": size,
            "hidden_act": "gelu",
            "layer_norm_eps": 1e-12,
        },
        text_config={
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
            "max_position_embeddings": _TEXT_POSITIONS,
            "vocab_size": len(vocab),
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        projection_dim=128,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    with torch.no_grad():
        # Position embeddings start as 2-D sines and cosines (as ViT-MAE's), then train as usual.
        table = sincos_position_embeddings(HIDDEN, GRID, class_token=True)[0]
        model.vision_model.embeddings.position_embedding.weight.copy_(table)
        # A sharper start than CLIP's 1/0.07: each text is true of many scenes here, and scores
        # (softmax shares) should be near 0 or near 1 for alert thresholds to be easy to set.
        model.logit_scale.fill_(math.log(_INITIAL_LOGIT_SCALE))
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}, image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD)
    )
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


_VIT_TO_CLIP = {
    "attention.q_proj": "self_attn.q_proj",
    "attention.k_proj": "self_attn.k_proj",
    "attention.v_proj": "self_attn.v_proj",
    "attention.o_proj": "self_attn.out_proj",
    "layernorm_before": "layer_norm1",
    "layernorm_after": "layer_norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


def vision_from_captioner(model: Any, captioner: str | Path) -> None:
    """Starts the CLIP's image tower from the trained captioner's ViT encoder (same shape).

    The captioner has learnt to see shapes, colours, sizes and places; contrastive training then
    only has to align the text tower with it and pool it into one embedding, which takes a few
    hundred steps instead of thousands. Differences made up for: CLIP's patch embedding has no
    bias (it moves into the position embeddings of the patches); CLIP normalises the embeddings
    once more before the first layer (its ``pre_layrnorm`` starts as the identity affine map, so
    the first layer's normalised input is the same); the ViT's final LayerNorm becomes CLIP's
    ``post_layernorm`` of the class token.

    Raises:
        ValueError: the captioner's encoder is not a ViT of the same shape.
    """
    import torch
    from transformers import VisionEncoderDecoderModel

    vit = VisionEncoderDecoderModel.from_pretrained(str(captioner), local_files_only=True).encoder
    ours, theirs = model.config.vision_config, vit.config
    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "patch_size", "image_size", "layer_norm_eps")
    if vit.config.model_type != "vit" or any(getattr(ours, k) != getattr(theirs, k) for k in keys) or theirs.hidden_act != ours.hidden_act:
        raise ValueError(f"{captioner}: expected a ViT encoder with {[(k, getattr(ours, k)) for k in keys]}, got {theirs}")
    source = vit.state_dict()
    target = model.vision_model
    with torch.no_grad():
        target.embeddings.patch_embedding.weight.copy_(source["embeddings.patch_embeddings.projection.weight"])
        positions = source["embeddings.position_embeddings"][0].clone()
        positions[1:] += source["embeddings.patch_embeddings.projection.bias"]
        target.embeddings.position_embedding.weight.copy_(positions)
        target.embeddings.class_embedding.copy_(source["embeddings.cls_token"][0, 0])
        for i, layer in enumerate(target.encoder.layers):
            for vit_name, clip_name in _VIT_TO_CLIP.items():
                module = layer.get_submodule(clip_name)
                module.weight.copy_(source[f"layers.{i}.{vit_name}.weight"])
                module.bias.copy_(source[f"layers.{i}.{vit_name}.bias"])
        target.post_layernorm.weight.copy_(source["layernorm.weight"])
        target.post_layernorm.bias.copy_(source["layernorm.bias"])


def pixel_values(images: Sequence[np.ndarray]) -> np.ndarray:
    """What the CLIP processor makes of 96x96 images (they need no resizing or cropping).

    Args:
        images: arrays of shape (96, 96, 3), uint8, RGB.

    Returns:
        np.ndarray, shape (n, 3, 96, 96), float32.
    """
    batch = np.stack(images).astype(np.float32) / np.float32(255.0)
    normalised = (batch - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)
    return np.ascontiguousarray(normalised.transpose(0, 3, 1, 2), dtype=np.float32)


# --- texts and what they are true of --------------------------------------------------------------


GENERIC_TEXT = "a photo"
"""True of every scene, as "a photo" is of every photograph, but trained to score below what a scene
really shows (:data:`GENERIC_WEIGHT`): it is edgemm's default background prompt for CLIP packs
(``edgemm compile`` without ``--background``), the level an alert's prompt must rise above."""

GENERIC_WEIGHT = 0.1
"""The target weight of :data:`GENERIC_TEXT` for a scene, against 1 for each specific text true of
it: a scene's "a photo" logit settles about log(10) = 2.3 below its true texts' and far above its
false ones', so an alert scored against "a photo" alone gets about 0.9 when its object is in view
and about 0 when it is not."""


@dataclass(frozen=True)
class Text:
    """A text and the condition under which it describes a scene.

    Attributes:
        text: e.g. "a red triangle".
        caption: true only of scenes with exactly this caption (a full caption).
        colour, shape, size: true of scenes holding an object with these (size None: any size).
        generic: true of every scene.
    """

    text: str
    caption: str | None = None
    colour: str | None = None
    shape: str | None = None
    size: str | None = None
    generic: bool = False

    def holds(self, caption: str, objects: Sequence[world.SceneObject]) -> bool:
        if self.generic:
            return True
        if self.caption is not None:
            return caption == self.caption
        return any(o.colour == self.colour and o.shape == self.shape and self.size in (None, o.size) for o in objects)


def fixed_texts() -> list[Text]:
    """The texts every training batch is scored against: "a photo", "an empty scene", the 12
    colour-and-shape prompts and the 24 size-colour-shape phrases."""
    texts = [Text(GENERIC_TEXT, generic=True), Text(world.EMPTY_CAPTION, caption=world.EMPTY_CAPTION)]
    texts += [Text(world.object_prompt(c, s), colour=c, shape=s) for c in world.COLOURS for s in world.SHAPES]
    texts += [Text(f"a {z} {c} {s}", colour=c, shape=s, size=z) for z in world.SIZES for c in world.COLOURS for s in world.SHAPES]
    return texts


def batch_texts(captions: Sequence[str]) -> list[Text]:
    """:func:`fixed_texts` and every other caption of the batch, once each."""
    texts = fixed_texts()
    seen = {t.text for t in texts}
    for caption in captions:
        if caption not in seen:
            seen.add(caption)
            texts.append(Text(caption, caption=caption))
    return texts


# --- training ------------------------------------------------------------------------------------


def _tokenize(tokenizer: Any, texts: Sequence[str]) -> dict[str, Any]:
    return dict(tokenizer(list(texts), padding=True, return_tensors="pt"))


def train(
    model: Any, processor: Any, *, steps: int, batch_size: int, lr: float, warmup: int, vision_lr_scale: float = 1.0, log_every: int = 100
) -> float:
    """Trains in place on scenes 0 .. steps * batch_size - 1 of the train split. Returns the last
    contrastive loss (running mean).

    Args:
        vision_lr_scale: the image tower's learning rate relative to ``lr`` (below 1 for a tower
            started from the captioner, so the young text tower's gradients do not undo it).
    """
    import torch

    head = PatchHead(HIDDEN)
    vision = list(model.vision_model.parameters())
    ids = {id(p) for p in vision}
    rest = [p for p in model.parameters() if id(p) not in ids] + list(head.linear.parameters())
    groups = [{"params": vision, "lr": lr * vision_lr_scale}, {"params": rest, "lr": lr}]
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=0.05, betas=(0.9, 0.98))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    start, running, patch_running = time.monotonic(), 0.0, 0.0
    for step in range(steps):
        items = list(world.scenes("train", batch_size, start=step * batch_size))
        texts = batch_texts([caption for _, caption, _ in items])
        truth = torch.tensor([[t.holds(caption, objects) for t in texts] for _, caption, objects in items], dtype=torch.float32)
        weights = torch.tensor([GENERIC_WEIGHT if t.generic else 1.0 for t in texts]) * truth
        pixels = torch.from_numpy(pixel_values([image for image, _, _ in items]))
        vision = model.vision_model(pixel_values=pixels)
        image_embeds = torch.nn.functional.normalize(model.visual_projection(vision.pooler_output), dim=-1)
        text_embeds = torch.nn.functional.normalize(model.get_text_features(**_tokenize(processor.tokenizer, [t.text for t in texts])).pooler_output, dim=-1)
        logits = model.logit_scale.exp().clamp(max=100.0) * image_embeds @ text_embeds.T
        # Each scene's targets: every specific text true of it, equally weighted (it always has its
        # caption), and "a photo" at GENERIC_WEIGHT. Each text's targets: the scenes it is true of
        # (texts true of none in the batch are left out).
        image_loss = -(weights / weights.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
        present = truth.sum(0) > 0
        column_targets = truth[:, present] / truth[:, present].sum(0, keepdim=True)
        text_loss = -(column_targets * logits[:, present].log_softmax(0)).sum(0).mean()
        contrastive_loss = (image_loss + text_loss) / 2
        patch_loss = head.loss(vision.last_hidden_state[:, 1:], patch_labels([objects for _, _, objects in items]))
        loss = contrastive_loss + patch_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        value = float(contrastive_loss.detach())
        running = 0.98 * running + 0.02 * value if step else value
        patch_running = 0.98 * patch_running + 0.02 * float(patch_loss.detach()) if step else float(patch_loss.detach())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            elapsed = time.monotonic() - start
            eta = elapsed / (step + 1) * (steps - step - 1)
            scale = float(model.logit_scale.exp())
            print(f"step {step + 1}/{steps}  contrastive loss {running:.4f}  patch loss {patch_running:.4f}  scale {scale:.1f}  lr {scheduler.get_last_lr()[0]:.2e}  {elapsed:.0f} s, {eta:.0f} s left", flush=True)
    model.eval()
    return running


# --- evaluation ----------------------------------------------------------------------------------


def embed_images(model: Any, images: Sequence[np.ndarray], batch_size: int = 256) -> np.ndarray:
    """L2-normalised image embeddings of 96x96 images with the torch model: (n, d) float32."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            features = model.get_image_features(pixel_values=torch.from_numpy(pixel_values(images[i : i + batch_size]))).pooler_output
            out.append(torch.nn.functional.normalize(features, dim=-1).numpy())
    return np.concatenate(out).astype(np.float32)


def embed_texts(model: Any, processor: Any, texts: Sequence[str]) -> np.ndarray:
    """L2-normalised text embeddings with the torch model: (k, d) float32."""
    import torch

    with torch.no_grad():
        features = model.get_text_features(**_tokenize(processor.tokenizer, texts)).pooler_output
        return np.asarray(torch.nn.functional.normalize(features, dim=-1).numpy(), dtype=np.float32)


def zero_shot_accuracy(image_embeds: np.ndarray, prompt_embeds: np.ndarray, objects: Sequence[Sequence[world.SceneObject]]) -> dict[str, float]:
    """Zero-shot accuracy against :data:`world.OBJECT_PROMPTS`.

    Args:
        image_embeds: np.ndarray, shape (n, d): the scenes' embeddings.
        prompt_embeds: np.ndarray, shape (12, d): the embeddings of :data:`world.OBJECT_PROMPTS`, in order.
        objects: each scene's objects.

    Returns:
        "one_object_top1": scenes with one object whose best prompt is it; "two_objects_top2":
        scenes with two objects of different colour-and-shape whose two best prompts are exactly
        them; "counts" of each kind of scene, as floats.
    """
    similarity = image_embeds @ prompt_embeds.T
    index = {prompt: i for i, prompt in enumerate(world.OBJECT_PROMPTS)}
    one, two = [], []
    for row, objs in zip(similarity, objects):
        truth = {index[world.object_prompt(o.colour, o.shape)] for o in objs}
        if len(objs) == 1:
            one.append(int(row.argmax()) in truth)
        elif len(objs) == 2 and len(truth) == 2:
            two.append(set(np.argsort(-row)[:2].tolist()) == truth)
    return {
        "one_object_top1": float(np.mean(one)),
        "two_objects_top2": float(np.mean(two)),
        "one_object_scenes": float(len(one)),
        "two_object_scenes": float(len(two)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="checkpoint directory to write")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed (the scenes are the train split, always the same)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--eval-scenes", type=int, default=500, help="held-out scenes the accuracy is measured on")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: see the README)")
    parser.add_argument("--vision-from", type=Path, help="start the image tower from this captioner checkpoint (train_captioner's)")
    parser.add_argument("--vision-lr-scale", type=float, default=1.0, help="the image tower's learning rate relative to --lr, when started from a captioner")
    args = parser.parse_args(argv)

    import torch
    import transformers

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    model, processor = build(args.seed)
    if args.vision_from is not None:
        vision_from_captioner(model, args.vision_from)
    params = sum(p.numel() for p in model.parameters())
    print(f"clip: {params / 1e6:.2f} M parameters; {args.steps} steps of {args.batch_size} scenes", flush=True)
    start = time.monotonic()
    scale = args.vision_lr_scale if args.vision_from is not None else 1.0
    loss = train(model, processor, steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, vision_lr_scale=scale)
    train_s = time.monotonic() - start
    items = list(world.scenes("test", args.eval_scenes))
    accuracy = zero_shot_accuracy(
        embed_images(model, [image for image, _, _ in items]), embed_texts(model, processor, world.OBJECT_PROMPTS), [objects for _, _, objects in items]
    )
    print(f"held-out zero-shot accuracy (torch, {args.eval_scenes} test scenes): {accuracy}; trained in {train_s:.0f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    processor.save_pretrained(args.out)
    note = {
        "command": "python -m examples.reference_world.train_clip " + " ".join(sys.argv[1:] if argv is None else argv),
        "seed": args.seed,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup": args.warmup,
        "vision_from": None if args.vision_from is None else str(args.vision_from),
        "vision_lr_scale": scale,
        "train_scenes": f"train split, scenes 0..{args.steps * args.batch_size - 1}",
        "parameters": params,
        "final_loss": round(loss, 5),
        "logit_scale": round(float(model.logit_scale.exp()), 3),
        "train_time_s": round(train_s),
        "threads": args.threads,
        "heldout_zero_shot_torch": accuracy,
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
