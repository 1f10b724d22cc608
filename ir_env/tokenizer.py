"""Word-level vocabulary: special ids, encode/decode and detokenisation.

Every task has one vocabulary that covers its sources and its outputs, so observations and actions share
one id space (``Discrete(V)``) and a policy needs one embedding table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numba
import numpy as np

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>")
NUM_SPECIAL = len(SPECIAL_TOKENS)

# Punctuation that attaches to the previous word when text is shown to a person.
_CLOSING_PUNCTUATION = frozenset({".", ",", "?", "!", ";", ":", ")", "'s"})


class Vocabulary:
    """A fixed list of word tokens after the four specials ``<pad> <bos> <eos> <unk>`` (ids 0-3).

    Args:
        words: the task's words, in id order starting at id 4. Each must be a non-empty string without
            whitespace, and no word may repeat or collide with a special token.
    """

    def __init__(self, words: Iterable[str]):
        words = list(words)
        tokens = list(SPECIAL_TOKENS) + words
        index: dict[str, int] = {}
        for i, token in enumerate(tokens):
            if not isinstance(token, str) or not token or any(c.isspace() for c in token):
                raise ValueError(f"vocabulary token {i} is {token!r}: expected a non-empty string without whitespace")
            if token in index:
                raise ValueError(f"vocabulary token {token!r} appears twice (ids {index[token]} and {i})")
            index[token] = i
        self.tokens: tuple[str, ...] = tuple(tokens)
        self.index: dict[str, int] = index
        # What each id adds to detokenised text: nothing (PAD, BOS), the word glued on (closing
        # punctuation) or a space and the word; detokenize joins these pieces in one pass.
        self._pieces: list[str] = [
            "" if i in (PAD, BOS) else t if t in _CLOSING_PUNCTUATION else " " + t for i, t in enumerate(self.tokens)
        ]
        self._piece_bytes: np.ndarray | None = None  # the pieces' UTF-8 bytes end to end, for detokenize_rows
        self._piece_start: np.ndarray | None = None  # (V + 1,) where each id's bytes start in _piece_bytes

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)})"

    def id(self, word: str) -> int:
        """The id of ``word``; raises KeyError naming the word if it is not in the vocabulary."""
        try:
            return self.index[word]
        except KeyError:
            raise KeyError(f"{word!r} is not in the vocabulary ({len(self)} tokens)") from None

    def encode(self, text: str | Sequence[str]) -> np.ndarray:
        """Ids (int64) of a whitespace-separated string or a list of words; unknown words map to UNK."""
        words = text.split() if isinstance(text, str) else text
        return np.array([self.index.get(w, UNK) for w in words], dtype=np.int64)

    def decode(self, ids: Iterable[int], strip_special: bool = True) -> list[str]:
        """Words of ``ids``. With ``strip_special`` PAD/BOS are dropped and decoding stops at EOS."""
        words = []
        for i in ids:
            i = int(i)
            if strip_special:
                if i == EOS:
                    break
                if i in (PAD, BOS):
                    continue
            words.append(self.tokens[i])
        return words

    def detokenize(self, ids: Iterable[int]) -> str:
        """Readable text: words joined by spaces, closing punctuation attached to the word before it.

        PAD and BOS are skipped and the text stops at EOS, as in ``decode``.
        """
        ids = ids.tolist() if isinstance(ids, np.ndarray) else [int(i) for i in ids]
        if EOS in ids:
            ids = ids[: ids.index(EOS)]
        return "".join(map(self._pieces.__getitem__, ids)).lstrip(" ")

    def detokenize_rows(self, ids: np.ndarray, lengths: np.ndarray) -> list[str]:
        """The text of each row's first ``lengths[i]`` ids of a (k, T) array, as ``detokenize`` writes it.

        One compiled pass writes every row's UTF-8 bytes into one buffer, rows separated by a newline
        (no piece holds whitespace but its leading space), then the buffer is decoded and split once: what
        ``detokenize`` costs per row in Python adds up when a batched env ends a hundred episodes a step.
        """
        ids, lengths = np.asarray(ids), np.asarray(lengths)
        if ids.ndim != 2 or lengths.shape != (len(ids),):
            raise ValueError(
                f"detokenize_rows takes (k, T) ids and (k,) lengths, got shapes {ids.shape} and {lengths.shape}"
            )
        if not len(ids):
            return []
        if self._piece_bytes is None:
            encoded = [p.encode("utf-8") for p in self._pieces]
            self._piece_bytes = np.frombuffer(b"".join(encoded), dtype=np.uint8)
            self._piece_start = np.cumsum([0] + [len(b) for b in encoded], dtype=np.int64)
        ids, lengths = ids.astype(np.int64, copy=False), lengths.astype(np.int64, copy=False)
        buffer = _join_pieces(ids, lengths, self._piece_bytes, self._piece_start)
        if buffer is None:
            raise ValueError(f"ids must lie in [0, {len(self.tokens)}), got values from {ids.min()} to {ids.max()}")
        return buffer.tobytes().decode("utf-8").split("\n")

    def mask(self, words: Iterable[str]) -> np.ndarray:
        """A bool mask of shape (V,) that is True at the ids of ``words`` (each must exist)."""
        mask = np.zeros(len(self), dtype=bool)
        for w in words:
            mask[self.id(w)] = True
        return mask


@numba.njit(cache=True, nogil=True)
def _join_pieces(ids, lengths, piece_bytes, piece_start):
    """Every row's pieces end to end as UTF-8 bytes, a newline between rows, each row's leading space dropped
    (``str.lstrip(" ")``: a piece holds at most one space, at its start). None if an id is out of range."""
    num_ids = len(piece_start) - 1
    size = len(ids) - 1  # the newlines
    for i in range(len(ids)):
        for t in range(min(lengths[i], ids.shape[1])):
            token = ids[i, t]
            if token < 0 or token >= num_ids:
                return None
            size += piece_start[token + 1] - piece_start[token]
    buffer = np.empty(size, dtype=np.uint8)
    at = 0
    for i in range(len(ids)):
        if i:
            buffer[at] = 10  # "\n"
            at += 1
        row_start = at
        for t in range(min(lengths[i], ids.shape[1])):
            first, last = piece_start[ids[i, t]], piece_start[ids[i, t] + 1]
            if at == row_start and first < last and piece_bytes[first] == 32:  # the row's leading space
                first += 1
            for j in range(first, last):
                buffer[at] = piece_bytes[j]
                at += 1
    return buffer[:at]


def pad_batch(sequences: Sequence[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack id sequences into a PAD-filled (M, width) int64 array and their lengths (M,)."""
    out = np.full((len(sequences), width), PAD, dtype=np.int64)
    lengths = np.zeros(len(sequences), dtype=np.int64)
    for i, seq in enumerate(sequences):
        if len(seq) > width:
            raise ValueError(f"sequence {i} has {len(seq)} tokens, more than the width {width}")
        out[i, : len(seq)] = seq
        lengths[i] = len(seq)
    return out, lengths
