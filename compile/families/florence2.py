"""Florence-2 (``Florence2ForConditionalGeneration``, native in transformers 5)."""

from __future__ import annotations

from typing import Any

import torch

from ._step import CachedDecoderStep
from .base import CaptionFamily, PromptSpec, split_heads

__all__ = ["CAPTION_TASKS", "Florence2Family"]

CAPTION_TASKS = ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>")
"""Florence-2 task prompts that produce captions."""


class _Encoder(torch.nn.Module):
    """DaViT + projector -> image features; [image features, prompt embeddings] -> BART encoder ->
    each decoder layer's cross-attention keys/values."""

    def __init__(self, model: Any, heads: int, head_dim: int) -> None:
        super().__init__()
        self.model = model.model
        self.embed = self.model.get_input_embeddings()
        self.text_encoder = self.model.language_model.encoder
        self.decoder_layers = self.model.language_model.decoder.layers
        self.heads, self.head_dim = heads, head_dim

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        image = self.model.get_image_features(pixel_values).pooler_output
        # The processor puts all image tokens first, so transformers' masked_scatter of image
        # features into the placeholder positions is this concatenation (and needs no If).
        embeds = torch.cat([image.to(self.embed.weight.dtype), self.embed(input_ids)], dim=1)
        hidden = self.text_encoder(inputs_embeds=embeds).last_hidden_state
        out: list[torch.Tensor] = []
        for layer in self.decoder_layers:
            attention = layer.encoder_attn
            out += [split_heads(attention.k_proj(hidden), self.heads, self.head_dim), split_heads(attention.v_proj(hidden), self.heads, self.head_dim)]
        return tuple(out)


class _DecoderStep(CachedDecoderStep):
    def __init__(self, model: Any, num_layers: int) -> None:
        super().__init__()
        self.decoder = model.model.language_model.decoder
        self.lm_head = model.lm_head
        self.num_layers = num_layers

    def decode(self, input_ids: torch.Tensor, selector: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        out = self.decoder(input_ids=input_ids, encoder_hidden_states=selector, past_key_values=cache, use_cache=True, return_dict=True)
        return self.lm_head(out.last_hidden_state), out.past_key_values


class Florence2Family(CaptionFamily):
    """Florence-2: the task prompt goes through the text encoder with the image features.

    Caption tasks: ``<CAPTION>`` (default), ``<DETAILED_CAPTION>``, ``<MORE_DETAILED_CAPTION>``;
    the processor's own table expands them into the text the model was trained on.
    """

    name = "florence2"
    architectures = ("Florence2ForConditionalGeneration",)
    encoder_module = _Encoder
    step_module = _DecoderStep
    encoder_reads_prompt = True

    def __init__(self, model: Any, image_processor: Any, tokenizer: Any, generation_config: Any, processor: Any) -> None:
        super().__init__(model, image_processor, tokenizer, generation_config)
        self.processor = processor

    @classmethod
    def from_pretrained(cls, path: str, *, revision: str | None, local_files_only: bool) -> Florence2Family:
        from transformers import Florence2ForConditionalGeneration, Florence2Processor

        kwargs: dict[str, Any] = {"revision": revision, "local_files_only": local_files_only}
        model = Florence2ForConditionalGeneration.from_pretrained(path, attn_implementation="eager", dtype=torch.float32, **kwargs).eval()
        processor = Florence2Processor.from_pretrained(path, **kwargs)
        return cls(model, processor.image_processor, processor.tokenizer, model.generation_config, processor)

    def geometry(self) -> tuple[int, int, int]:
        tc = self.model.config.text_config
        return tc.decoder_layers, tc.decoder_attention_heads, tc.d_model // tc.decoder_attention_heads

    def prompt_spec(self, prompt: str | None) -> PromptSpec:
        table = self.processor.task_prompts_without_inputs
        start = self.generation_config.decoder_start_token_id
        if start is None:
            start = self.model.config.text_config.decoder_start_token_id
        return PromptSpec(
            mode="encoder",
            decoder_start_ids=(int(start),),
            default_prompt=prompt or "<CAPTION>",
            encoder_template=f"{self.tokenizer.bos_token}{{prompt}}{self.tokenizer.eos_token}",
            task_prompts=tuple((task, table[task]) for task in CAPTION_TASKS if task in table),
        )

    def encoder_prompt_ids(self, prompt: str | None) -> list[int]:
        spec = self.prompt_spec(prompt)
        text = dict(spec.task_prompts).get(spec.default_prompt or "", spec.default_prompt or "")
        return list(self.tokenizer(spec.encoder_template.format(prompt=text), add_special_tokens=False)["input_ids"])

    def _model_input_ids(self, prompt: str | None, batch: int) -> torch.Tensor:
        image_tokens = [int(self.processor.image_token_id)] * int(self.processor.num_image_tokens)
        ids = image_tokens + self.encoder_prompt_ids(prompt)
        return torch.tensor([ids] * batch, dtype=torch.long)

    def reference_generate(self, pixel_values: torch.Tensor, prompt: str | None, generate_kwargs: dict[str, Any]) -> torch.Tensor:
        with torch.no_grad():
            return self.model.generate(
                input_ids=self._model_input_ids(prompt, pixel_values.shape[0]), pixel_values=pixel_values, **generate_kwargs
            )

    def reference_logits(self, pixel_values: torch.Tensor, prompt: str | None, decoder_ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(
                input_ids=self._model_input_ids(prompt, pixel_values.shape[0]), pixel_values=pixel_values, decoder_input_ids=decoder_ids
            ).logits
