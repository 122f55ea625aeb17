"""The decoder step module all captioner families share (see :mod:`.base` for the convention)."""

from __future__ import annotations

from typing import Any

import torch

from .base import encoder_decoder_cache, flatten_self_cache

__all__ = ["CachedDecoderStep"]


class CachedDecoderStep(torch.nn.Module):
    """The decoder step every family exports: flat past/cross tensors in, logits and present out.

    Subclasses set ``self.num_layers`` and implement :meth:`decode`, one call of their decoder.
    """

    num_layers: int

    def decode(self, input_ids: torch.Tensor, selector: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        """Runs the decoder on ``input_ids`` with ``cache``; returns (logits, updated cache)."""
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, *flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        past, cross = flat[: 2 * self.num_layers], flat[2 * self.num_layers :]
        cache = encoder_decoder_cache(past, cross)
        # encoder_hidden_states only selects the cross-attention branch; the cache marked as
        # computed supplies the keys/values, so these values are never read (and are pruned).
        selector = cross[0].transpose(1, 2).flatten(2)
        logits, cache = self.decode(input_ids, selector, cache)
        return (logits, *flatten_self_cache(cache))
