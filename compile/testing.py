"""Random-weight checkpoints of real architectures, built offline, for tests and benchmarks.

Each builder writes a complete Hugging Face checkpoint directory (config, weights, processor,
tokenizer, generation config) with ``save_pretrained``, so ``edgemm compile`` treats it exactly
like a downloaded model. ``tiny_*`` builders make models of a few hundred kilobytes whose weights
are scaled so greedy decoding varies (random models otherwise repeat one token); ``*_base``
builders use the released checkpoints' configurations (sizes, special tokens, processors,
generation settings) with random weights.

Nothing here downloads anything. The released configurations are written from the published
config files as best known; ``docs/CAPTIONING.md`` says what has been checked against real weights.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "CAPTION_WORDS",
    "bert_vocab",
    "blip_base",
    "byte_level_bpe",
    "florence2_base",
    "tiny_blip",
    "tiny_florence2",
    "tiny_vit_bert",
    "tiny_vit_gpt2",
    "vit_gpt2_base",
]

CAPTION_WORDS = ["a", "an", "the", "of", "on", "in", "with", "and", "to", "at", "near", "next", "left", "right", "above", "below", "small", "large", "big", "red", "green", "blue", "yellow", "white", "black", "orange", "purple", "gray", "man", "woman", "person", "child", "dog", "cat", "bird", "car", "bus", "truck", "bike", "street", "road", "table", "chair", "couch", "bed", "room", "kitchen", "window", "door", "tree", "grass", "field", "sky", "water", "beach", "boat", "train", "plane", "sitting", "standing", "walking", "running", "lying", "holding", "looking", "playing", "riding", "eating", "two", "three", "group", "photo", "picture", "image", "of", "view", "front", "back", "top", "side", "circle", "square", "triangle", "shape", "object", "floor", "wall", "light", "dark"]

_CORPUS_TEMPLATES = (
    "a {} {} sitting on a {}",
    "the {} is {} next to the {}",
    "two {} {} in a {} with a {}",
    "What does the image describe?",
    "Describe in detail what is shown in the image.",
    "Describe with a paragraph what is shown in the image.",
    "a photography of a {} {}",
)


def bert_vocab(size: int, extra: Sequence[str] = ()) -> dict[str, int]:
    """A WordPiece vocabulary laid out like bert-base-uncased's: [PAD]=0, [UNK]=100, [CLS]=101,
    [SEP]=102, [MASK]=103, caption words in the unused slots, filler tokens up to ``size``,
    then ``extra`` tokens (BLIP's [DEC], [ENC]) after it."""
    if size < 110:
        raise ValueError(f"size must be >= 110 to keep bert-base-uncased's special ids, got {size}")
    vocab: dict[str, int] = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
    words = list(dict.fromkeys(CAPTION_WORDS)) + [f"##{s}" for s in ("s", "ing", "ed", "er")]
    free = [i for i in range(size) if i not in vocab.values()]
    for token_id, word in zip(free, words):
        vocab[word] = token_id
    for token_id in free[len(words) :]:
        vocab[f"[unused{token_id}]"] = token_id
    for offset, token in enumerate(extra):
        vocab[token] = size + offset
    return vocab


def byte_level_bpe(vocab_size: int, special_tokens: Sequence[str]) -> tuple[dict[str, int], list[Any]]:
    """A byte-level BPE (GPT-2/BART style) trained on caption-like text: (vocab, merges)."""
    import random

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    rng = random.Random(0)
    corpus = [
        template.format(*(rng.choice(CAPTION_WORDS) for _ in range(template.count("{}"))))
        for _ in range(400)
        for template in _CORPUS_TEMPLATES
    ]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(special_tokens), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(corpus, trainer)
    data = json.loads(tokenizer.to_str())
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else (m[0], m[1]) for m in data["model"]["merges"]]
    return {str(k): int(v) for k, v in data["model"]["vocab"].items()}, merges


def _sharpen(model: Any, std: float, seed: int) -> None:
    """Rescales matrix weights so a random model's greedy decoding is not one repeated token."""
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() >= 2 and "pos_idx_to_embed" not in name:
                parameter.normal_(0.0, std)


def _save(model: Any, processor: Any, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


# --- BLIP ----------------------------------------------------------------------------------------


def _blip(out: Path, vision: dict[str, Any], text: dict[str, Any], vocab_size: int, image_size: int, std: float | None, seed: int) -> Path:
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    vocab = bert_vocab(vocab_size, extra=("[DEC]", "[ENC]"))
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, bos_token="[DEC]", extra_special_tokens=["[ENC]"])
    text_vocab = len(vocab)
    config = BlipConfig(
        vision_config={**vision, "image_size": image_size},
        text_config={**text, "vocab_size": text_vocab, "bos_token_id": vocab["[DEC]"], "sep_token_id": 102, "pad_token_id": 0, "eos_token_id": 2},
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    if std is not None:
        _sharpen(model, std, seed)
    image_processor = BlipImageProcessor(size={"height": image_size, "width": image_size})
    return _save(model, BlipProcessor(image_processor=image_processor, tokenizer=tokenizer), out)


def tiny_blip(out: str | Path, *, seed: int = 0) -> Path:
    """A BLIP captioner with 2-layer towers, 64x64 input and a 122-token vocabulary."""
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "patch_size": 16}
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "encoder_hidden_size": 32, "max_position_embeddings": 64}
    return _blip(Path(out), vision, text, 120, 64, 0.2, seed)


def blip_base(out: str | Path, *, seed: int = 0) -> Path:
    """Salesforce/blip-image-captioning-base's configuration (ViT-B/16 at 384, BERT-base decoder,
    vocabulary 30524 with [DEC]=30522) with random weights: about 250M parameters."""
    vision = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12, "patch_size": 16, "layer_norm_eps": 1e-5}
    text = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12, "encoder_hidden_size": 768, "max_position_embeddings": 512}
    return _blip(Path(out), vision, text, 30522, 384, None, seed)


# --- VisionEncoderDecoder ------------------------------------------------------------------------


def _vit_gpt2(out: Path, vit: dict[str, Any], gpt2: dict[str, Any], bpe_vocab: int, image_size: int, std: float | None, seed: int) -> Path:
    import torch
    from transformers import (
        GPT2Config,
        GPT2Tokenizer,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    vocab, merges = byte_level_bpe(bpe_vocab, ["<|endoftext|>"])
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=merges)
    eot = vocab["<|endoftext|>"]
    encoder = ViTConfig(**vit, image_size=image_size)
    decoder = GPT2Config(**gpt2, vocab_size=len(vocab), bos_token_id=eot, eos_token_id=eot)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = eot, eot, eot
    torch.manual_seed(seed)
    model = VisionEncoderDecoderModel(config=config).eval()
    if std is not None:
        _sharpen(model, std, seed)
    model.generation_config.decoder_start_token_id = eot
    model.generation_config.pad_token_id = eot
    model.generation_config.eos_token_id = eot
    image_processor = ViTImageProcessor(size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=2)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    image_processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def tiny_vit_gpt2(out: str | Path, *, seed: int = 0) -> Path:
    """ViT (hidden 48) + GPT-2 (hidden 32) with a 300-token byte-level BPE: the hidden sizes differ,
    so the encoder-to-decoder projection is exercised."""
    vit = {"hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64, "patch_size": 8}
    gpt2 = {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64}
    return _vit_gpt2(Path(out), vit, gpt2, 300, 32, 0.2, seed)


def vit_gpt2_base(out: str | Path, *, seed: int = 0) -> Path:
    """nlpconnect/vit-gpt2-image-captioning's configuration (ViT-B/16 at 224, GPT-2 small) with
    random weights and a small byte-level BPE standing in for GPT-2's 50257-token one (the model's
    vocabulary is sized to the tokenizer)."""
    vit = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "patch_size": 16}
    gpt2 = {"n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024}
    return _vit_gpt2(Path(out), vit, gpt2, 2000, 224, None, seed)


def tiny_vit_bert(out: str | Path, *, seed: int = 0) -> Path:
    """ViT + a BERT decoder (start [CLS], end [SEP]), the other decoder kind VisionEncoderDecoder uses."""
    import torch
    from transformers import (
        BertConfig,
        BertTokenizer,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    vocab = bert_vocab(120)
    tokenizer = BertTokenizer(vocab=vocab)
    encoder = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8)
    decoder = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=64, pad_token_id=0)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = 101, 0, 102
    torch.manual_seed(seed)
    model = VisionEncoderDecoderModel(config=config).eval()
    _sharpen(model, 0.2, seed)
    model.generation_config.decoder_start_token_id = 101
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = 102
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# --- Florence-2 ----------------------------------------------------------------------------------


def _florence2(out: Path, vision: dict[str, Any], text: dict[str, Any], bpe_vocab: int, image_size: int, std: float | None, seed: int, generation: dict[str, Any]) -> Path:
    import torch
    from transformers import (
        BartTokenizer,
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
    )

    vocab, merges = byte_level_bpe(bpe_vocab, ["<s>", "<pad>", "</s>", "<unk>"])
    vocab["<image>"] = len(vocab)
    tokenizer = BartTokenizer(vocab=vocab, merges=merges, extra_special_tokens={"image_token": "<image>"})
    image_tokens = 1 + (image_size // 32) ** 2
    config = Florence2Config(
        vision_config=vision,
        text_config={**text, "vocab_size": len(vocab), "bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": 2, "forced_eos_token_id": 2},
        image_token_id=vocab["<image>"],
    )
    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration(config).eval()
    if std is not None:
        _sharpen(model, std, seed)
    for key, value in generation.items():
        setattr(model.generation_config, key, value)
    image_processor = CLIPImageProcessor(
        size={"height": image_size, "width": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=False,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        do_convert_rgb=False,
        image_seq_length=image_tokens,
    )
    return _save(model, Florence2Processor(image_processor=image_processor, tokenizer=tokenizer), out)


def tiny_florence2(out: str | Path, *, seed: int = 0, num_beams: int = 1) -> Path:
    """Florence-2 with a 4-stage DaViT of width 16..64, 2+2 BART layers and 64x64 input."""
    vision = {"depths": [1, 1, 1, 1], "embed_dim": [16, 32, 48, 64], "num_heads": [2, 2, 4, 4], "num_groups": [2, 2, 4, 4], "window_size": 2, "projection_dim": 32, "drop_path_rate": 0.0}
    text = {"d_model": 32, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4, "decoder_attention_heads": 4, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "max_position_embeddings": 64, "scale_embedding": True}
    generation = {"num_beams": num_beams, "no_repeat_ngram_size": 3}
    return _florence2(Path(out), vision, text, 400, 64, 0.2, seed, generation)


def florence2_base(out: str | Path, *, seed: int = 0) -> Path:
    """microsoft/Florence-2-base's configuration (DaViT [128, 256, 512, 1024] at 768x768, BART with
    6+6 layers, d_model 768; generation: 3 beams, no_repeat_ngram_size 3) with random weights and
    a small byte-level BPE standing in for its 51289-token one."""
    vision = {"depths": [1, 1, 9, 1], "embed_dim": [128, 256, 512, 1024], "num_heads": [4, 8, 16, 32], "num_groups": [4, 8, 16, 32], "window_size": 12, "projection_dim": 768, "drop_path_rate": 0.0}
    text = {"d_model": 768, "encoder_layers": 6, "decoder_layers": 6, "encoder_attention_heads": 12, "decoder_attention_heads": 12, "encoder_ffn_dim": 3072, "decoder_ffn_dim": 3072, "max_position_embeddings": 1024, "scale_embedding": False}
    generation = {"num_beams": 3, "no_repeat_ngram_size": 3, "max_new_tokens": 1024}
    return _florence2(Path(out), vision, text, 2000, 768, None, seed, generation)


def temporary_checkpoint(builder: Any, **kwargs: Any) -> Path:
    """Builds a checkpoint into a new temporary directory (left for the caller to remove)."""
    return Path(builder(tempfile.mkdtemp(prefix="edgemm-model-"), **kwargs))
