"""Text tokenization with the ``tokenizers`` library only, equal to the Hugging Face tokenizer it came from."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .errors import DependencyMissingError, PackError

__all__ = ["TextTokenizer", "clean_up_tokenization"]


def clean_up_tokenization(text: str) -> str:
    """The spacing clean-up Hugging Face applies to WordPiece decodes (``" ."`` -> ``"."``, ...)."""
    return (
        text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
    )


class TextTokenizer:
    """A ``tokenizer.json`` from a pack, with the decode settings the source tokenizer used.

    Args:
        path: the pack's tokenizer.json (the Hugging Face fast-tokenizer format).
        clean_up_spaces: apply :func:`clean_up_tokenization` after decoding, as the source
            tokenizer did (transformers applies it to WordPiece tokenizers such as BERT's).
    """

    def __init__(self, path: str | Path, *, clean_up_spaces: bool = False) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise DependencyMissingError("tokenizers", "decoding captions", "pip install tokenizers") from exc
        try:
            self._tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise PackError(f"{path}: expected a tokenizers JSON file, could not load it: {exc}") from exc
        self.clean_up_spaces = clean_up_spaces

    @property
    def vocab_size(self) -> int:
        return int(self._tokenizer.get_vocab_size(with_added_tokens=True))

    def token_id(self, token: str) -> int | None:
        found = self._tokenizer.token_to_id(token)
        return None if found is None else int(found)

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text`` (no padding, no truncation)."""
        return list(self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        text: str = self._tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)
        return clean_up_tokenization(text) if self.clean_up_spaces else text
