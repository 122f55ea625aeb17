"""Graph input/output names, defined once and used by both the exporters and the runtime.

Every decoder of every family follows one key/value-cache convention (``edgemm-kv-1``), so the
runtime has one decode loop:

- the encoder graph outputs the cross-attention keys/values once per input
  (``cross.{layer}.key`` / ``cross.{layer}.value``), never recomputed per token;
- the decoder step graph takes ``input_ids`` ``[batch, sequence]``, the self-attention cache
  ``past.{layer}.key`` / ``past.{layer}.value`` ``[batch, heads, past_sequence, head_dim]``
  (``past_sequence`` may be 0: prefill uses the same graph with an empty past) and the cross
  keys/values, and returns ``logits`` ``[batch, sequence, vocab]`` and
  ``present.{layer}.key`` / ``present.{layer}.value`` ``[batch, heads, past_sequence + sequence, head_dim]``.
"""

from __future__ import annotations

__all__ = [
    "ATTENTION_MASK",
    "AUDIO_EMBEDS",
    "ENCODER_HIDDEN_STATES",
    "IMAGE_EMBEDS",
    "INPUT_FEATURES",
    "INPUT_IDS",
    "KV_CONVENTION",
    "LOGITS",
    "PIXEL_VALUES",
    "TEXT_EMBEDS",
    "cross_names",
    "past_names",
    "present_names",
]

KV_CONVENTION = "edgemm-kv-1"

PIXEL_VALUES = "pixel_values"
"""float ``[batch, 3, height, width]``, preprocessed as the manifest's ImagePreprocessing says."""
INPUT_FEATURES = "input_features"
"""float ``[batch, n_mels, frames]`` log-mel features (speech and audio models)."""
INPUT_IDS = "input_ids"
"""int64 ``[batch, sequence]`` token ids."""
ATTENTION_MASK = "attention_mask"
"""int64 ``[batch, sequence]``, 1 for real tokens and 0 for padding (text towers only)."""
ENCODER_HIDDEN_STATES = "encoder_hidden_states"
LOGITS = "logits"
IMAGE_EMBEDS = "image_embeds"
TEXT_EMBEDS = "text_embeds"
AUDIO_EMBEDS = "audio_embeds"


def past_names(layer: int) -> tuple[str, str]:
    """Names of the self-attention cache inputs of decoder layer ``layer`` (key, value)."""
    return f"past.{layer}.key", f"past.{layer}.value"


def present_names(layer: int) -> tuple[str, str]:
    """Names of the updated self-attention cache outputs of decoder layer ``layer`` (key, value)."""
    return f"present.{layer}.key", f"present.{layer}.value"


def cross_names(layer: int) -> tuple[str, str]:
    """Names of the cross-attention keys/values of decoder layer ``layer`` (key, value)."""
    return f"cross.{layer}.key", f"cross.{layer}.value"
