"""BLIP captioners (``BlipForConditionalGeneration``, e.g. Salesforce/blip-image-captioning-base)."""

from __future__ import annotations

from typing import Any

import torch

from ._step import CachedDecoderStep
from .base import CaptionFamily, PromptSpec, split_heads

__all__ = ["BlipFamily"]


class _Encoder(torch.nn.Module):
    def __init__(self, model: Any, heads: int, head_dim: int) -> None:
        super().__init__()
        self.vision = model.vision_model
        self.layers = model.text_decoder.bert.encoder.layer
        self.heads, self.head_dim = heads, head_dim

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = self.vision(pixel_values=pixel_values).last_hidden_state
        out: list[torch.Tensor] = []
        for layer in self.layers:
            attention = layer.crossattention.self
            out += [split_heads(attention.key(hidden), self.heads, self.head_dim), split_heads(attention.value(hidden), self.heads, self.head_dim)]
        return tuple(out)


class _DecoderStep(CachedDecoderStep):
    def __init__(self, model: Any, num_layers: int) -> None:
        super().__init__()
        self.decoder = model.text_decoder
        self.num_layers = num_layers

    def decode(self, input_ids: torch.Tensor, selector: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        out = self.decoder(
            input_ids=input_ids, encoder_hidden_states=selector, past_key_values=cache, use_cache=True, is_decoder=True, return_dict=True
        )
        return out.logits, out.past_key_values


class BlipFamily(CaptionFamily):
    """BLIP: ViT vision encoder + BERT-style text decoder with cross-attention.

    Decoding starts from the text config's ``bos_token_id`` ([DEC]) and ends at ``sep_token_id``
    ([SEP]), as ``BlipForConditionalGeneration.generate`` does; a text prompt ("a photography of")
    follows the start token and is part of the caption, as in transformers.
    """

    name = "blip"
    architectures = ("BlipForConditionalGeneration",)
    encoder_module = _Encoder
    step_module = _DecoderStep

    @classmethod
    def from_pretrained(cls, path: str, *, revision: str | None, local_files_only: bool) -> BlipFamily:
        from transformers import BlipForConditionalGeneration, BlipProcessor

        kwargs: dict[str, Any] = {"revision": revision, "local_files_only": local_files_only}
        model = BlipForConditionalGeneration.from_pretrained(path, attn_implementation="eager", dtype=torch.float32, **kwargs).eval()
        processor = BlipProcessor.from_pretrained(path, **kwargs)
        # generate() hands over to the text decoder, which decodes with its own generation config.
        return cls(model, processor.image_processor, processor.tokenizer, model.text_decoder.generation_config)

    def geometry(self) -> tuple[int, int, int]:
        tc = self.model.config.text_config
        return tc.num_hidden_layers, tc.num_attention_heads, tc.hidden_size // tc.num_attention_heads

    def prompt_spec(self, prompt: str | None) -> PromptSpec:
        return PromptSpec(mode="decoder", decoder_start_ids=(int(self.model.config.text_config.bos_token_id),), default_prompt=prompt)

    def eos_token_ids(self) -> tuple[int, ...]:
        return (int(self.model.config.text_config.sep_token_id),)

    def pad_token_id(self) -> int | None:
        return int(self.model.config.text_config.pad_token_id)

    def decoder_prompt_ids(self, prompt: str | None) -> list[int]:
        if not prompt:
            return []
        return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def reference_generate(self, pixel_values: torch.Tensor, prompt: str | None, generate_kwargs: dict[str, Any]) -> torch.Tensor:
        # BLIP's generate() sets eos (= sep) and pad itself; they equal the pack's settings.
        kwargs = {k: v for k, v in generate_kwargs.items() if k not in ("eos_token_id", "pad_token_id")}
        if prompt:
            ids = self.tokenizer([prompt] * pixel_values.shape[0], return_tensors="pt")["input_ids"]
            kwargs["input_ids"] = ids
        with torch.no_grad():
            return self.model.generate(pixel_values=pixel_values, **kwargs)

    def reference_logits(self, pixel_values: torch.Tensor, prompt: str | None, decoder_ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(pixel_values=pixel_values, input_ids=decoder_ids).logits
