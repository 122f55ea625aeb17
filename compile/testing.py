"""Random-weight checkpoints of real architectures, built offline, for tests and benchmarks.

Each builder writes a complete Hugging Face checkpoint directory (config, weights, processor,
tokenizer, generation config) with ``save_pretrained``, so ``edgemm compile`` treats it exactly
like a downloaded model. ``tiny_*`` builders make models of a few hundred kilobytes whose weights
are scaled so outputs vary with the input (random models otherwise repeat one token, or give every
image nearly the same embedding): captioners (BLIP, ViT-GPT2, ViT-BERT, Florence-2), zero-shot
models (CLIP, SigLIP, CLAP with and without fusion) and speech recognisers (Whisper, English-only and
multilingual); ``*_base`` (and ``whisper_tiny_en``, ``whisper_small``)
builders use the released checkpoints' configurations (sizes, special tokens, processors,
generation settings) with random weights.

Nothing here downloads anything. The released configurations are written from the published
config files as best known; ``docs/CAPTIONING.md`` says what has been checked against real weights.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ALERT_WORDS",
    "CAPTION_WORDS",
    "CLAP_EXTRACTOR_FUSED",
    "CLAP_EXTRACTOR_UNFUSED",
    "WHISPER_EN_SUPPRESS_TOKENS",
    "WHISPER_EXTRACTOR",
    "WHISPER_MULTILINGUAL_SUPPRESS_TOKENS",
    "bert_vocab",
    "blip_base",
    "byte_level_bpe",
    "clap_base",
    "clip_base",
    "clip_bpe",
    "florence2_base",
    "siglip_base",
    "tiny_blip",
    "tiny_clap",
    "tiny_clip",
    "tiny_florence2",
    "tiny_siglip",
    "tiny_vit_bert",
    "tiny_vit_gpt2",
    "tiny_whisper",
    "vit_gpt2_base",
    "whisper_base",
    "whisper_languages",
    "whisper_small",
    "whisper_tiny_en",
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
    """Redraws matrix weights with a larger spread, so a random model's outputs depend on its input:
    greedy decoding is not one repeated token, embeddings of different images or clips differ."""
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


# --- zero-shot: CLIP, SigLIP, CLAP ---------------------------------------------------------------

ALERT_WORDS = ["a", "photo", "of", "the", "sound", "person", "dog", "cat", "car", "fire", "smoke", "door", "window", "glass", "breaking", "barking", "alarm", "bell", "speech", "music", "noise", "background", "empty", "room", "lying", "floor", "falling", "open", "street", "night", "siren", "baby", "crying", "knock", "water", "running"]

CLAP_EXTRACTOR_UNFUSED: dict[str, Any] = {
    "feature_size": 64,
    "sampling_rate": 48_000,
    "hop_length": 480,
    "max_length_s": 10,
    "fft_window_size": 1024,
    "frequency_min": 50,
    "frequency_max": 14_000,
    "truncation": "rand_trunc",
    "padding": "repeatpad",
}
"""laion/clap-htsat-unfused's feature extractor settings (preprocessor_config.json, as best known)."""

CLAP_EXTRACTOR_FUSED: dict[str, Any] = {**CLAP_EXTRACTOR_UNFUSED, "truncation": "fusion"}
"""laion/clap-htsat-fused's feature extractor settings: as the unfused one, with fusion truncation."""


def _alert_corpus() -> list[str]:
    import random

    rng = random.Random(0)
    templates = ("a photo of a {}", "the sound of a {} {}", "a {} {} on the {}", "{} {} at night", "a {} and a {}")
    return [t.format(*(rng.choice(ALERT_WORDS) for _ in range(t.count("{}")))) for _ in range(300) for t in templates]


def clip_bpe(vocab_size: int) -> tuple[dict[str, int], list[Any]]:
    """A CLIP-style BPE (lowercased, byte-level, ``</w>`` ends words) trained on alert-like text."""
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
    tokenizer.train_from_iterator(_alert_corpus(), trainer)
    data = json.loads(tokenizer.to_str())
    vocab = {str(k): int(v) for k, v in data["model"]["vocab"].items()}
    for char in sorted(alphabet):
        # Every byte, alone and ending a word, as CLIP's vocabulary has them: no prompt is unknown.
        for token in (char, f"{char}</w>"):
            vocab.setdefault(token, len(vocab))
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else (m[0], m[1]) for m in data["model"]["merges"]]
    return vocab, [(a, b) for a, b in merges]


def _clip(
    out: Path, vision: dict[str, Any], text: dict[str, Any], projection_dim: int, image_size: int, vocab_size: int, std: float | None, seed: int
) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab, merges = clip_bpe(vocab_size)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=text["max_position_embeddings"])
    config = CLIPConfig(
        vision_config={**vision, "image_size": image_size},
        text_config={
            **text,
            "vocab_size": len(vocab),
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    if std is not None:
        _sharpen(model, std, seed)
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    return _save(model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer), out)


def tiny_clip(out: str | Path, *, seed: int = 0) -> Path:
    """A CLIP with 2-layer towers (hidden 32), 32x32 input (shortest edge + center crop, as CLIP's
    processor) and a CLIP-style BPE of about 600 tokens."""
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "patch_size": 8}
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 32}
    return _clip(Path(out), vision, text, 16, 32, 300, 0.2, seed)


def clip_base(out: str | Path, *, seed: int = 0) -> Path:
    """openai/clip-vit-base-patch32's configuration (ViT-B/32 at 224, 12-layer 512-wide text tower,
    77 positions, projection 512) with random weights and a small CLIP-style BPE standing in for its
    49408-token one."""
    vision = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12, "patch_size": 32}
    text = {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8, "max_position_embeddings": 77}
    return _clip(Path(out), vision, text, 512, 224, 2000, None, seed)


def _gemma_bpe(vocab_size: int) -> tuple[dict[str, int], list[Any]]:
    """A Gemma-style BPE ("▁" for spaces; <pad>=0, <eos>=1, <bos>=2, <unk>=3) on alert-like text."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.pre_tokenizer = pre_tokenizers.Split(pattern="▁", behavior="merged_with_previous")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"], show_progress=False)
    tokenizer.train_from_iterator([*_alert_corpus(), " ".join(ALERT_WORDS).upper()], trainer)
    data = json.loads(tokenizer.to_str())
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else (m[0], m[1]) for m in data["model"]["merges"]]
    return {str(k): int(v) for k, v in data["model"]["vocab"].items()}, [(a, b) for a, b in merges]


def _siglip(out: Path, vision: dict[str, Any], text: dict[str, Any], image_size: int, vocab_size: int, std: float | None, seed: int) -> Path:
    import torch
    from transformers import GemmaTokenizer, SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    vocab, merges = _gemma_bpe(vocab_size)
    # SigLIP was trained on text padded to its 64 positions with no attention mask: the text tower
    # pools the last position, padding included. The tokenizer says so by taking input_ids only.
    tokenizer = GemmaTokenizer(vocab=vocab, merges=merges, model_max_length=text["max_position_embeddings"], model_input_names=["input_ids"])
    config = SiglipConfig(
        vision_config={**vision, "image_size": image_size},
        text_config={**text, "vocab_size": len(vocab), "pad_token_id": vocab["<pad>"], "bos_token_id": vocab["<bos>"], "eos_token_id": vocab["<eos>"]},
    )
    torch.manual_seed(seed)
    model = SiglipModel(config).eval()
    with torch.no_grad():
        # SigLIP's initial temperature and bias (log 10, -10): transformers draws them at random.
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-10.0)
    if std is not None:
        _sharpen(model, std, seed)
    image_processor = SiglipImageProcessor(size={"height": image_size, "width": image_size})
    return _save(model, SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer), out)


def tiny_siglip(out: str | Path, *, seed: int = 0) -> Path:
    """A SigLIP with 2-layer towers (hidden 32), 32x32 input, 16 text positions (padded to them,
    no attention mask, as SigLIP is trained) and a Gemma-style BPE (as SigLIP 2's fixed-resolution
    checkpoints, which are ``SiglipModel``s)."""
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "patch_size": 8}
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 16}
    return _siglip(Path(out), vision, text, 32, 300, 0.2, seed)


def siglip_base(out: str | Path, *, seed: int = 0) -> Path:
    """google/siglip-base-patch16-224's configuration (ViT-B/16 at 224, 12-layer text tower with 64
    positions) with random weights and a small Gemma-style BPE standing in for its 32000-token
    SentencePiece vocabulary."""
    vision = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12, "patch_size": 16}
    text = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12, "max_position_embeddings": 64}
    return _siglip(Path(out), vision, text, 224, 2000, None, seed)


def _clap(
    out: Path, audio: dict[str, Any], text: dict[str, Any], extractor: dict[str, Any], projection_dim: int, vocab_size: int, std: float | None, seed: int
) -> Path:
    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    vocab, merges = byte_level_bpe(vocab_size, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=text["max_position_embeddings"] - 2)
    config = ClapConfig(
        audio_config={**audio, "projection_dim": projection_dim},
        text_config={**text, "vocab_size": len(vocab), "projection_dim": projection_dim, "pad_token_id": vocab["<pad>"], "bos_token_id": vocab["<s>"], "eos_token_id": vocab["</s>"]},
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = ClapModel(config).eval()
    if std is not None:
        _sharpen(model, std, seed)
    return _save(model, ClapProcessor(feature_extractor=ClapFeatureExtractor(**extractor), tokenizer=tokenizer), out)


def tiny_clap(out: str | Path, *, fused: bool = False, seed: int = 0) -> Path:
    """A CLAP with a 2-stage HTSAT audio tower on 64 mel bins of 1 s at 8 kHz (51 frames, resized
    to the tower's 64 inside the model, as the released models resize 1001 frames to 1024) and a
    2-layer RoBERTa text tower. ``fused=True`` adds the feature fusion of laion/clap-htsat-fused
    (4-channel input, ``is_longer``) and its "fusion" truncation."""
    audio = {
        "spec_size": 64,
        "num_mel_bins": 64,
        "patch_size": 4,
        "patch_stride": [4, 4],
        "window_size": 4,
        "depths": [1, 1],
        "num_attention_heads": [2, 4],
        "patch_embeds_hidden_size": 16,
        "hidden_size": 32,
        "enable_fusion": fused,
        "fusion_type": "aff_2d" if fused else None,
    }
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 66}
    extractor = {
        "feature_size": 64,
        "sampling_rate": 8000,
        "hop_length": 160,
        "max_length_s": 1,
        "fft_window_size": 512,
        "frequency_min": 50,
        "frequency_max": 4000,
        "truncation": "fusion" if fused else "rand_trunc",
        "padding": "repeatpad",
    }
    return _clap(Path(out), audio, text, extractor, 16, 300, 0.2, seed)


def clap_base(out: str | Path, *, fused: bool = False, seed: int = 0) -> Path:
    """laion/clap-htsat-unfused's configuration (HTSAT: 4 stages [2, 2, 6, 2], 96-wide patches,
    spec size 256, 64 mel bins; RoBERTa-base text tower; projection 512; 10 s at 48 kHz) with random
    weights and a small byte-level BPE standing in for RoBERTa's 50265 tokens. ``fused=True``:
    laion/clap-htsat-fused (feature fusion, "fusion" truncation)."""
    audio = {"enable_fusion": fused, "fusion_type": "aff_2d" if fused else None, "hidden_size": 768}
    text = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12, "max_position_embeddings": 514}
    extractor = CLAP_EXTRACTOR_FUSED if fused else CLAP_EXTRACTOR_UNFUSED
    return _clap(Path(out), audio, text, extractor, 512, 2000, None, seed)


# --- Whisper -------------------------------------------------------------------------------------

WHISPER_EN_SUPPRESS_TOKENS = (
    1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 28, 29, 31, 58, 59, 60, 61, 62, 63, 90, 91, 92, 93, 357, 366, 438, 532, 685, 705,
    796, 930, 1058, 1220, 1267, 1279, 1303, 1343, 1377, 1391, 1635, 1782, 1875, 2162, 2361, 2488, 3467, 4008, 4211, 4600,
    4808, 5299, 5855, 6329, 7203, 9609, 9959, 10563, 10786, 11420, 11709, 11907, 13163, 13697, 13700, 14808, 15306, 16410,
    16791, 17992, 19203, 19510, 20724, 22305, 22935, 27007, 30109, 30420, 33409, 34949, 40283, 40493, 40549, 47282, 49146,
    50257, 50357, 50358, 50359, 50360, 50361,
)  # fmt: skip
"""``suppress_tokens`` of openai/whisper-{tiny,base,small,medium}.en's generation_config.json (90 ids):
openai-whisper's non-speech symbols in the GPT-2 vocabulary, then <|startoftranscript|>, <|translate|>,
<|transcribe|>, <|startoflm|>, <|startofprev|> and <|nocaptions|>."""

WHISPER_MULTILINGUAL_SUPPRESS_TOKENS = (
    1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 28, 29, 31, 58, 59, 60, 61, 62, 63, 90, 91, 92, 93, 359, 503, 522, 542, 873, 893,
    902, 918, 922, 931, 1350, 1853, 1982, 2460, 2627, 3246, 3253, 3268, 3536, 3846, 3961, 4183, 4667, 6585, 6647, 7273,
    9061, 9383, 10428, 10929, 11938, 12033, 12331, 12562, 13793, 14157, 14635, 15265, 15618, 16553, 16604, 18362, 18956,
    20075, 21675, 22520, 26130, 26161, 26435, 28279, 29464, 31650, 32302, 32470, 36865, 42863, 47425, 49870, 50254, 50258,
    50358, 50359, 50360, 50361, 50362,
)  # fmt: skip
"""``suppress_tokens`` of the multilingual openai/whisper-{tiny,base,small,medium,large-v2} (88 ids), the same
symbols in the multilingual vocabulary, then <|startoftranscript|> and <|translate|> .. <|nocaptions|>."""

WHISPER_EXTRACTOR: dict[str, Any] = {
    "feature_size": 80,
    "sampling_rate": 16_000,
    "hop_length": 160,
    "chunk_length": 30,
    "n_fft": 400,
    "padding_value": 0.0,
    "return_attention_mask": False,
}
"""The released checkpoints' preprocessor_config.json (80 mel bins; large-v3 has 128)."""

_WHISPER_SPECIALS = ("<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, in the order GPT-2's first 256 ids follow (220 is "Ġ", a space)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def _whisper_bpe(merges_wanted: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE whose first 256 ids are GPT-2's byte alphabet in GPT-2's order (so id 220 is the
    space, as in both Whisper vocabularies), then ``merges_wanted`` merges trained on caption-like text."""
    import random

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    rng = random.Random(0)
    corpus = [
        template.format(*(rng.choice(CAPTION_WORDS) for _ in range(template.count("{}"))))
        for _ in range(400)
        for template in _CORPUS_TEMPLATES
    ]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=256 + merges_wanted, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(corpus, trainer)
    data = json.loads(tokenizer.to_str())
    trained = sorted(((int(v), str(k)) for k, v in data["model"]["vocab"].items()))
    alphabet = list(_bytes_to_unicode().values())
    vocab = {char: i for i, char in enumerate(alphabet)}
    for _, token in trained:
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else (m[0], m[1]) for m in data["model"]["merges"]]
    return vocab, [(a, b) for a, b in merges]


def whisper_languages(count: int = 99) -> tuple[str, ...]:
    """Whisper's language codes in token order (99 before large-v3, which adds "yue")."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return tuple(LANGUAGES)[:count]


def _whisper(
    out: Path, dims: dict[str, Any], *, multilingual: bool, base_vocab: int | None, merges: int, std: float | None, seed: int
) -> Path:
    """A Whisper checkpoint laid out as the released ones.

    Token ids: the BPE (``base_vocab`` ids, unreachable fillers after the trained merges), then
    <|endoftext|>, <|startoftranscript|>, 99 languages, <|translate|>, <|transcribe|>, <|startoflm|>,
    <|startofprev|>, <|nocaptions|>, <|notimestamps|>, and 1501 timestamps <|0.00|> .. <|30.00|>. With
    ``base_vocab`` 50256 (English-only) or 50257 (multilingual) every special id and the vocabulary size
    (51864 / 51865) are the released ones. ``base_vocab=None`` keeps only the trained BPE (tiny models).
    """
    import torch
    from tokenizers import AddedToken
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    vocab, bpe_merges = _whisper_bpe(merges)
    if base_vocab is not None:
        if base_vocab < len(vocab):
            raise ValueError(f"base_vocab must be >= the trained BPE's {len(vocab)} tokens, got {base_vocab}")
        for i in range(len(vocab), base_vocab):
            vocab[f"\u0100filler{i}"] = i  # no merge produces these: never emitted by the tokenizer
    n = len(vocab)
    languages = whisper_languages()
    specials = ["<|endoftext|>", "<|startoftranscript|>", *(f"<|{code}|>" for code in languages), *_WHISPER_SPECIALS]
    timestamps = [f"<|{i * 0.02:.2f}|>" for i in range(1501)]
    for token in [*specials, *timestamps]:
        vocab[token] = len(vocab)
    eot, sot = vocab["<|endoftext|>"], vocab["<|startoftranscript|>"]
    ids = {token: vocab[token] for token in specials}
    tokenizer = WhisperTokenizer(vocab=vocab, merges=bpe_merges)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials[1:]], special_tokens=True)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in timestamps])
    tokenizer.pad_token = "<|endoftext|>"
    special_run = [sot, *(ids[t] for t in _WHISPER_SPECIALS[:-1])]
    released = WHISPER_MULTILINGUAL_SUPPRESS_TOKENS if multilingual else WHISPER_EN_SUPPRESS_TOKENS
    # The symbol ids as released where the BPE has them, then the special tokens.
    suppress = [t for t in released if t < min(n, 50254)] + ([eot - 3] if multilingual and n > 50254 else []) + special_run
    begin_suppress = [220, eot]
    config = WhisperConfig(
        vocab_size=len(vocab),
        num_mel_bins=WHISPER_EXTRACTOR["feature_size"],
        max_source_positions=1500,
        max_target_positions=448,
        pad_token_id=eot,
        bos_token_id=eot if multilingual else sot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        begin_suppress_tokens=begin_suppress,
        suppress_tokens=suppress,
        **dims,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    if std is not None:
        _sharpen(model, std, seed)
    generation: dict[str, Any] = {
        "begin_suppress_tokens": begin_suppress,
        "bos_token_id": config.bos_token_id,
        "decoder_start_token_id": sot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "max_initial_timestamp_index": 50,
        "max_length": 448,
        "no_timestamps_token_id": ids["<|notimestamps|>"],
        "prev_sot_token_id": ids["<|startofprev|>"],
        "return_timestamps": False,
        "suppress_tokens": suppress,
        "is_multilingual": multilingual,
    }
    if multilingual:
        generation["forced_decoder_ids"] = [[1, None], [2, ids["<|transcribe|>"]]]
        generation["lang_to_id"] = {f"<|{code}|>": ids[f"<|{code}|>"] for code in languages}
        generation["task_to_id"] = {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}
    else:
        generation["forced_decoder_ids"] = [[1, ids["<|notimestamps|>"]]]
    model.generation_config = GenerationConfig(**generation)
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(**WHISPER_EXTRACTOR), tokenizer=tokenizer)
    return _save(model, processor, out)


def tiny_whisper(out: str | Path, *, multilingual: bool = False, seed: int = 0) -> Path:
    """A Whisper with 2+2 layers of width 32 on the released 80 x 3000 log-mel input (1500 encoder
    positions) and 448 decoder positions, a 400-token byte-level BPE and every special token of the
    released vocabularies after it (about 2000 tokens). ``multilingual=False`` is laid out as the
    ``.en`` checkpoints (no language or task tokens in the prompt), ``True`` as the multilingual ones
    (language detection, transcribe/translate)."""
    dims = {
        "d_model": 32,
        "encoder_layers": 2,
        "decoder_layers": 2,
        "encoder_attention_heads": 4,
        "decoder_attention_heads": 4,
        "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64,
    }
    return _whisper(Path(out), dims, multilingual=multilingual, base_vocab=None, merges=144, std=0.2, seed=seed)


def _whisper_dims(width: int, layers: int, heads: int) -> dict[str, Any]:
    return {
        "d_model": width,
        "encoder_layers": layers,
        "decoder_layers": layers,
        "encoder_attention_heads": heads,
        "decoder_attention_heads": heads,
        "encoder_ffn_dim": 4 * width,
        "decoder_ffn_dim": 4 * width,
    }


def whisper_tiny_en(out: str | Path, *, seed: int = 0) -> Path:
    """openai/whisper-tiny.en's configuration (4+4 layers of width 384, 6 heads; vocabulary 51864 with
    <|endoftext|>=50256, <|startoftranscript|>=50257, <|notimestamps|>=50362; its generation config)
    with random weights: about 39M parameters."""
    return _whisper(Path(out), _whisper_dims(384, 4, 6), multilingual=False, base_vocab=50256, merges=400, std=None, seed=seed)


def whisper_base(out: str | Path, *, seed: int = 0) -> Path:
    """openai/whisper-base's configuration (6+6 layers of width 512, 8 heads; multilingual vocabulary
    51865 with <|endoftext|>=50257, <|startoftranscript|>=50258, <|en|>=50259, <|transcribe|>=50359,
    <|notimestamps|>=50363; lang_to_id, task_to_id) with random weights: about 74M parameters."""
    return _whisper(Path(out), _whisper_dims(512, 6, 8), multilingual=True, base_vocab=50257, merges=400, std=None, seed=seed)


def whisper_small(out: str | Path, *, seed: int = 0) -> Path:
    """openai/whisper-small's configuration (12+12 layers of width 768, 12 heads; the multilingual
    vocabulary of :func:`whisper_base`) with random weights: about 244M parameters."""
    return _whisper(Path(out), _whisper_dims(768, 12, 12), multilingual=True, base_vocab=50257, merges=400, std=None, seed=seed)
