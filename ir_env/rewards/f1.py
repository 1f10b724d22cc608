"""SQuAD token F1 of a growing prefix, for N episodes at once, in O(1) per token.

The score is the official SQuAD v1.1 token F1 (``evaluate-v1.1.py``: ``f1_score`` with
``normalize_answer`` = lowercase, delete the characters of ``string.punctuation``, replace the articles
a/an/the by spaces, collapse whitespace; F1 of the bag-of-words overlap, 0 when nothing overlaps) between
``vocab.detokenize(prefix)`` and ``vocab.detokenize(reference)``, one reference per example. Range [0, 1];
the reference itself scores 1 unless it normalises to no word at all. ``squad_f1`` below is a faithful
copy of the official function, and the tests check the metric against it to 1e-9 after every token.

How a token is scored incrementally: detokenised text is a sequence of space-separated chunks (a word
and the closing punctuation glued to it, such as ``cat 's .`` -> ``cat's.``), and normalisation works on
each chunk alone, so the normalised words of the prefix are the concatenation of its chunks' words. At
construction every vocabulary token gets the tuple of its normalised word ids (articles and pure
punctuation give none; ``x—a—y`` gives two), and the tuple it has with one ``'s`` glued on (``the`` + ``'s``
-> ``thes``). Glued ``'s`` only ever extends the chunk's last word, through a word -> word + ``s`` table.
Only words that occur in some reference can overlap, so they alone get ids; every other word is one
"miss" id that only counts towards the prediction's length and is never looked up. The reference words
of each example sit, with their counts, in the example's small hash table (``ExampleHashTables``, shared
with BLEU; built once per split and shared by every metric reading it).
Each row keeps the clipped overlap, the prediction length and a counter per slot of its example's table;
a word adds one to its slot's counter and to the overlap while the counter is within the reference count.
Cost per token: O(1) (a lookup ends at its first or second slot nearly always).
"""

from __future__ import annotations

import re
import string
import weakref
from collections import Counter

import numpy as np

from ir_env.rewards.base import PrefixMetric, check_reference_ids
from ir_env.rewards.tables import ExampleHashTables
from ir_env.tasks.base import Examples
from ir_env.tokenizer import BOS, EOS, PAD, UNK, Vocabulary, pad_batch

_ARTICLES = ("a", "an", "the")
_OOV = "\x00oov"  # what a reference UNK normalises to: no vocabulary token can produce a NUL character

# Token kinds: what pushing the token does to a row's detokenised text.
_SKIP = 0  # PAD, BOS, EOS: not part of the text
_WORD = 1  # starts a new space-separated chunk
_INERT_GLUE = 2  # glues onto the previous chunk and normalises to nothing (".", ",", ")")
_SUFFIX_GLUE = 3  # glues onto the previous chunk and appends a suffix to its last word ("'s" -> "s")


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (official SQuAD v1.1)."""

    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def squad_f1(prediction: str, ground_truth: str) -> float:
    """Token F1 of one prediction against one ground truth (official SQuAD v1.1 ``f1_score``)."""
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def _strip_punctuation(text: str) -> str:
    """The first two steps of ``normalize_answer``: lowercase, delete punctuation characters."""
    exclude = set(string.punctuation)
    return "".join(ch for ch in text.lower() if ch not in exclude)


def _ragged(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged id lists -> PAD-filled (len(rows), max(1, longest)) int64 array and (len(rows),) lengths."""
    return pad_batch(rows, max(1, max(map(len, rows))))


class _F1Tables:
    """Normalised words of every vocabulary token and every reference of a split, as id arrays."""

    def __init__(self, examples: Examples, vocab: Vocabulary):
        tokens = vocab.tokens
        kind = np.full(len(tokens), _WORD, dtype=np.int8)
        suffixes: dict[str, str] = {}
        for t, text in enumerate(tokens):
            if t in (PAD, BOS, EOS):
                kind[t] = _SKIP
            elif vocab.detokenize([UNK, t]) == tokens[UNK] + text:  # detokenize glues it on
                suffix = _strip_punctuation(text)
                kind[t] = _SUFFIX_GLUE if suffix else _INERT_GLUE
                if suffix:
                    suffixes[text] = suffix
        if len(set(suffixes.values())) > 1:
            raise ValueError(
                f"TokenF1 supports one normalised suffix for glued closing punctuation, got {suffixes}; "
                "keep at most one such suffix in Vocabulary's closing punctuation"
            )
        glue_text, suffix = next(iter(suffixes.items()), ("", ""))
        if suffix and (not re.fullmatch(r"\w+", suffix) or any(a.endswith(suffix) for a in _ARTICLES)):
            raise ValueError(
                f"TokenF1 cannot glue {glue_text!r} incrementally: its normalised form {suffix!r} must be "
                "word characters that do not end an article"
            )

        # Only reference words (and what a glued suffix can grow into one) need ids.
        # A reference UNK stands for a word outside the vocabulary: it becomes a word no output can write.
        ref_words = [
            normalize_answer(vocab.detokenize(ref).replace(tokens[UNK], _OOV) if (ref == UNK).any() else vocab.detokenize(ref)).split()
            for ref in (examples.reference[e, : examples.reference_len[e]] for e in range(len(examples)))
        ]
        space = {w for words in ref_words for w in words}
        if suffix:
            for w in list(space):
                while w.endswith(suffix):
                    w = w[: -len(suffix)]
                    if w:
                        space.add(w)
        word_id = {w: i for i, w in enumerate(sorted(space))}
        self.miss = len(word_id)  # the id of every word in no reference

        def ids(text: str) -> list[int]:
            return [word_id.get(w, self.miss) for w in normalize_answer(text).split()]

        self.kind = kind
        self.words, self.num_words = _ragged(
            [ids(text) if kind[t] != _SKIP else [] for t, text in enumerate(tokens)]
        )
        glued = [ids(text + glue_text) if suffix and kind[t] != _SKIP else [self.miss] for t, text in enumerate(tokens)]
        self.glued_words, self.num_glued_words = _ragged(glued)
        # An output UNK is one word that matches nothing: an UNK in a reference stands for a word outside the
        # vocabulary, which writing "<unk>" must not earn.
        for words, num in ((self.words, self.num_words), (self.glued_words, self.num_glued_words)):
            words[UNK], num[UNK] = self.miss, 1
        self.glued_last = self.glued_words[np.arange(len(tokens)), np.maximum(self.num_glued_words - 1, 0)]
        self.grow = np.array([word_id.get(w + suffix, self.miss) for w in word_id] + [self.miss], dtype=np.int64)

        # One power-of-two hash table of (word, count) per example, at most half full.
        bags = [Counter(word_id[w] for w in words) for words in ref_words]
        self.ref_len = np.array([len(words) for words in ref_words], dtype=np.int64)  # (M,)
        distinct = np.array([len(bag) for bag in bags], dtype=np.int64)  # (M,)
        example = np.repeat(np.arange(len(bags)), distinct)  # (K,) one entry per distinct (example, word)
        word = np.array([w for bag in bags for w in bag], dtype=np.int64)  # (K,)
        count = np.array([c for bag in bags for c in bag.values()], dtype=np.int32)  # (K,)
        self.table = ExampleHashTables(example, word + 1, count, len(bags))  # keys must be non-zero
        self.max_size = self.table.max_slots


_TABLES: weakref.WeakKeyDictionary[Examples, weakref.WeakKeyDictionary[Vocabulary, _F1Tables]] = (
    weakref.WeakKeyDictionary()
)


def _tables_for(examples: Examples, vocab: Vocabulary) -> _F1Tables:
    per_vocab = _TABLES.setdefault(examples, weakref.WeakKeyDictionary())
    tables = per_vocab.get(vocab)
    if tables is None:
        tables = per_vocab[vocab] = _F1Tables(examples, vocab)
    return tables


class TokenF1(PrefixMetric):
    """SQuAD v1.1 token F1 of each row's detokenised prefix against its detokenised reference.

    Range [0, 1]; the reference itself scores 1 (0 if it normalises to no word). Cost per token: O(1),
    one hash lookup per normalised word that occurs in some reference of the split.

    Args:
        examples: the split whose references the rows are scored against.
        num_rows: N, the number of episodes tracked at once.
        vocab: the vocabulary of the ids pushed and of the references.
    """

    name = "f1"
    empty_is_zero = True

    def __init__(self, examples: Examples, num_rows: int, vocab: Vocabulary):
        super().__init__(examples, num_rows)
        check_reference_ids(examples, vocab)
        self.vocab = vocab
        self.tables = _tables_for(examples, vocab)
        self.overlap = np.zeros(num_rows, dtype=np.int64)  # clipped matches, sum over words of min(pred, ref)
        self.pred_len = np.zeros(num_rows, dtype=np.int64)  # normalised words in the prefix
        self.used = np.zeros((num_rows, self.tables.max_size), dtype=np.int32)  # (N, S) pred count per slot
        self.chunk_base = np.full(num_rows, -1, dtype=np.int64)  # first token of the last chunk; -1: no text yet
        self.chunk_last = np.full(num_rows, -1, dtype=np.int64)  # last word id once a suffix is glued; else -1

    def _reset(self, rows: np.ndarray) -> None:
        self.overlap[rows] = 0
        self.pred_len[rows] = 0
        self.used[rows] = 0
        self.chunk_base[rows] = -1
        self.chunk_last[rows] = -1

    def _push(self, rows: np.ndarray, tokens: np.ndarray) -> None:
        t = self.tables
        kind = t.kind[tokens]
        has_text = self.chunk_base[rows] >= 0
        starts = (kind == _WORD) | ((kind >= _INERT_GLUE) & ~has_text)  # detokenize glues nothing onto ""
        if starts.any():
            r, tok = (rows, tokens) if starts.all() else (rows[starts], tokens[starts])
            self.chunk_base[r] = tok
            self.chunk_last[r] = -1
            self._add(r, t.words[tok], t.num_words[tok], +1)

        grows = (kind == _SUFFIX_GLUE) & has_text
        if grows.any():
            r = rows[grows]
            last = self.chunk_last[r]
            first = last < 0
            if first.any():  # the chunk's words are renormalised once: "the" + "'s" -> "thes"
                rf = r[first]
                base = self.chunk_base[rf]
                self._add(rf, t.words[base], t.num_words[base], -1)
                self._add(rf, t.glued_words[base], t.num_glued_words[base], +1)
                self.chunk_last[rf] = t.glued_last[base]
            if not first.all():  # later suffixes only grow the last word: "cats" + "'s" -> "catss"
                rl, old = r[~first], last[~first]
                new = t.grow[old]
                one = np.ones(len(rl), dtype=np.int64)
                self._add(rl, old[:, None], one, -1)
                self._add(rl, new[:, None], one, +1)
                self.chunk_last[rl] = new

    def _add(self, rows: np.ndarray, words: np.ndarray, num_words: np.ndarray, sign: int) -> None:
        """Add (sign +1) or remove (-1) the first num_words[i] of words[i] (k, L) to/from rows[i]."""
        self.pred_len[rows] += sign * num_words
        for j in range(words.shape[1]):  # L is the most words one token normalises to, usually 1
            look = (num_words > j) & (words[:, j] != self.tables.miss)  # a word in no reference cannot match
            r, slot, cell = self._find(rows[look], words[look, j])  # rows are distinct: no repeated (row, slot)
            used = self.used[r, slot]
            if sign > 0:
                used += 1
                self.overlap[r] += used <= self.tables.table.count[cell]
            else:
                self.overlap[r] -= used <= self.tables.table.count[cell]
                used -= 1
            self.used[r, slot] = used

    def _find(self, rows: np.ndarray, words: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows whose reference holds their word, the word's slot in the example's table, and its cell."""
        table = self.tables.table
        e = self.example_ids[rows]
        cell = table.lookup(e, words.astype(np.uint64) + np.uint64(1))
        found = cell >= 0
        return rows[found], cell[found] - table.start[e[found]], cell[found]

    def _potential(self, rows: np.ndarray) -> np.ndarray:
        overlap = self.overlap[rows].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = overlap / self.pred_len[rows]
            recall = overlap / self.tables.ref_len[self.example_ids[rows]]
            f1 = (2 * precision * recall) / (precision + recall)  # the official formula, for bitwise parity
        return np.where(overlap > 0, f1, 0.0)
