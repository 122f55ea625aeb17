"""``VisionEncoderDecoderModel`` captioners (e.g. nlpconnect/vit-gpt2-image-captioning).

Any vision encoder transformers supports for it (ViT, DeiT, Swin, ...) works unchanged; the
decoder needs cross-attention whose keys/values this adapter can compute once per image: GPT-2,
BERT-style (BERT, RoBERTa, Electra, ...) and TrOCR-style decoders are supported.
"""

from __future__ import annotations

from typing import Any

import torch

from edgemm.runtime.errors import UnsupportedModelError

from ._step import CachedDecoderStep
from .base import CaptionFamily, PromptSpec, split_heads

__all__ = ["VisionEncoderDecoderFamily"]

_BERT_LIKE = ("bert", "roberta", "electra", "camembert", "xlm-roberta", "ernie")


def _cross_projections(decoder: Any, model_type: str) -> list[Any]:
    """For each decoder layer, a function hidden -> (key, value) of its cross-attention."""
    if model_type == "gpt2":
        projections = []
        for block in decoder.transformer.h:
            attention = block.crossattention

            def kv(hidden: torch.Tensor, attention: Any = attention) -> tuple[torch.Tensor, torch.Tensor]:
                key, value = attention.c_attn(hidden).split(attention.split_size, dim=2)
                return key, value

            projections.append(kv)
        return projections
    if model_type in _BERT_LIKE:
        base = getattr(decoder, decoder.base_model_prefix)
        return [
            (lambda hidden, a=layer.crossattention.self: (a.key(hidden), a.value(hidden)))
            for layer in base.encoder.layer
        ]
    if model_type == "trocr":
        return [
            (lambda hidden, a=layer.encoder_attn: (a.k_proj(hidden), a.v_proj(hidden)))
            for layer in decoder.model.decoder.layers
        ]
    raise UnsupportedModelError(
        f"VisionEncoderDecoderModel with a {model_type!r} decoder: edgemm supports gpt2, trocr and BERT-style "
        f"decoders ({', '.join(_BERT_LIKE)})"
    )


class _Encoder(torch.nn.Module):
    def __init__(self, model: Any, heads: int, head_dim: int) -> None:
        super().__init__()
        self.encoder = model.encoder
        # transformers projects encoder states only when the hidden sizes differ and the decoder
        # does not declare its own cross_attention_hidden_size.
        uses_projection = getattr(model.config.decoder, "cross_attention_hidden_size", None) is None
        self.projection = getattr(model, "enc_to_dec_proj", None) if uses_projection else None
        self.decoder = model.decoder
        self.kv = _cross_projections(model.decoder, model.config.decoder.model_type)
        self.heads, self.head_dim = heads, head_dim

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = self.encoder(pixel_values=pixel_values).last_hidden_state
        if self.projection is not None:
            hidden = self.projection(hidden)
        out: list[torch.Tensor] = []
        for kv in self.kv:
            key, value = kv(hidden)
            out += [split_heads(key, self.heads, self.head_dim), split_heads(value, self.heads, self.head_dim)]
        return tuple(out)


class _DecoderStep(CachedDecoderStep):
    def __init__(self, model: Any, num_layers: int) -> None:
        super().__init__()
        self.decoder = model.decoder
        self.num_layers = num_layers

    def decode(self, input_ids: torch.Tensor, selector: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        out = self.decoder(input_ids=input_ids, encoder_hidden_states=selector, past_key_values=cache, use_cache=True, return_dict=True)
        return out.logits, out.past_key_values


class VisionEncoderDecoderFamily(CaptionFamily):
    """A vision encoder and a text decoder joined by cross-attention. Takes no text prompt."""

    name = "vision_encoder_decoder"
    architectures = ("VisionEncoderDecoderModel",)
    encoder_module = _Encoder
    step_module = _DecoderStep

    @classmethod
    def from_pretrained(cls, path: str, *, revision: str | None, local_files_only: bool) -> VisionEncoderDecoderFamily:
        from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

        kwargs: dict[str, Any] = {"revision": revision, "local_files_only": local_files_only}
        model = VisionEncoderDecoderModel.from_pretrained(path, attn_implementation="eager", dtype=torch.float32, **kwargs).eval()
        _cross_projections(model.decoder, model.config.decoder.model_type)  # fail early on unsupported decoders
        image_processor = AutoImageProcessor.from_pretrained(path, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        return cls(model, image_processor, tokenizer, model.generation_config)

    def geometry(self) -> tuple[int, int, int]:
        dc = self.model.config.decoder
        return dc.num_hidden_layers, dc.num_attention_heads, dc.hidden_size // dc.num_attention_heads

    def prompt_spec(self, prompt: str | None) -> PromptSpec:
        if prompt:
            raise UnsupportedModelError("VisionEncoderDecoderModel captioners take no text prompt; drop --prompt")
        start = self.generation_config.decoder_start_token_id
        if start is None:
            start = self.model.config.decoder_start_token_id
        if start is None:
            raise UnsupportedModelError("VisionEncoderDecoderModel: the checkpoint sets no decoder_start_token_id")
        return PromptSpec(mode="none", decoder_start_ids=(int(start),))

    def reference_generate(self, pixel_values: torch.Tensor, prompt: str | None, generate_kwargs: dict[str, Any]) -> torch.Tensor:
        with torch.no_grad():
            return self.model.generate(pixel_values=pixel_values, **generate_kwargs)

    def reference_logits(self, pixel_values: torch.Tensor, prompt: str | None, decoder_ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(pixel_values=pixel_values, decoder_input_ids=decoder_ids).logits
