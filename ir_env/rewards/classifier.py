"""A from-scratch CNN sentiment classifier (Kim 2014) and the prefix metric that uses it as a reward.

``SentimentCNN`` reads word tokens (SST-2's own: lower-cased, PTB-tokenised, so a task token is a
classifier word): embeddings, one convolution per filter width (3, 4, 5 by default) with ReLU, max-pool
over time, dropout, and a linear layer to two classes (negative, positive). ``agents.classifier`` trains
one on SST-2 train; ``save_classifier`` / ``load_classifier`` keep it in a folder::

    <folder>/model.safetensors   the state_dict
    <folder>/classifier.json     format, hyper-parameters, vocabulary, dev accuracy, sha256 of the weights

A sentence shorter than a filter is padded to the filter's width, so every width sees exactly one
window then; otherwise a width w pools over the ``n - w + 1`` windows inside the sentence. That rule lets
``ClassifierSentiment`` keep the max-pool incrementally: a new token adds one window per width (or, while
the prefix is shorter than the width, changes the only one), so a push costs O(1) per row whatever the
prefix length, and its potential equals the module's own forward pass on the prefix.

torch is imported at the top of this module, and only here on the environment side: ``ir_env`` imports
it lazily, when a task scored by a classifier builds its metric.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch
import torch.nn as nn
import torch.nn.functional as F

from ir_env.rewards.base import PrefixMetric, check_prefix_room
from ir_env.tasks.base import Examples
from ir_env.tokenizer import Vocabulary

#: Classifier ids of padding and of a word outside its vocabulary; its words start at id 2.
PAD_ID, UNK_ID = 0, 1
CLASSIFIER_SPECIALS: tuple[str, ...] = ("<pad>", "<unk>")
LABELS: tuple[str, ...] = ("negative", "positive")
WEIGHTS_FILE = "model.safetensors"
META_FILE = "classifier.json"
FORMAT_NAME = "instant-reward-sentiment-classifier"
FORMAT_VERSION = 1
_HASH_CHUNK = 1 << 20

PathLike = str | os.PathLike[str]


class ClassifierFileError(ValueError):
    """A classifier folder or file that is missing, corrupt, or does not match its own description."""


@dataclass(frozen=True)
class ClassifierConfig:
    """Hyper-parameters of ``SentimentCNN`` (Kim 2014's CNN-rand, smaller embeddings)."""

    embedding_dim: int = 128
    """Width of the word embeddings, learnt from scratch."""
    num_filters: int = 100
    """Feature maps per filter width."""
    widths: tuple[int, ...] = (3, 4, 5)
    """Filter widths in words; each adds ``num_filters`` max-pooled features."""
    dropout: float = 0.5
    """Dropout on the pooled features while training."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        for name in ("embedding_dim", "num_filters"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ClassifierConfig.{name} must be a positive int, got {value!r}")
        if not self.widths or min(self.widths) < 1 or len(set(self.widths)) != len(self.widths):
            raise ValueError(f"ClassifierConfig.widths must be distinct positive ints, got {self.widths!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ClassifierConfig.dropout must be in [0, 1), got {self.dropout!r}")


class SentimentCNN(nn.Module):
    """Kim (2014) CNN sentence classifier over its own word vocabulary: logits of (negative, positive).

    Args:
        words: the vocabulary, in id order from id 2 (ids 0 and 1 are padding and unknown words).
        config: the hyper-parameters.

    Attributes:
        words: ``("<pad>", "<unk>", *words)``, the word of each id.
        index: word -> id, for the words only (``"<pad>"`` or ``"<unk>"`` in a text are unknown words).
    """

    def __init__(self, words: Sequence[str], config: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        words = list(words)
        if len(set(words)) != len(words) or any(w in CLASSIFIER_SPECIALS for w in words):
            raise ValueError("classifier words must be distinct and must not include <pad> or <unk>")
        self.config = config
        self.words: tuple[str, ...] = (*CLASSIFIER_SPECIALS, *words)
        self.index: dict[str, int] = {w: i for i, w in enumerate(words, start=len(CLASSIFIER_SPECIALS))}
        self.embedding = nn.Embedding(len(self.words), config.embedding_dim, padding_idx=PAD_ID)
        self.convs = nn.ModuleList(nn.Conv1d(config.embedding_dim, config.num_filters, w) for w in config.widths)
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.num_filters * len(config.widths), len(LABELS))

    @property
    def max_width(self) -> int:
        return max(self.config.widths)

    def encode(self, sentences: Sequence[Sequence[str] | str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids (B, L), lengths (B,)) of sentences given as word lists or whitespace-separated text.

        L is the longest sentence, at least the widest filter; unknown words get UNK_ID.
        """
        rows = [s.split() if isinstance(s, str) else list(s) for s in sentences]
        lengths = [len(r) for r in rows]
        ids = np.full((len(rows), max([self.max_width, *lengths])), PAD_ID, dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = [self.index.get(w, UNK_ID) for w in r]
        return torch.from_numpy(ids), torch.tensor(lengths, dtype=torch.int64)

    def features(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Max-pooled ReLU feature maps (B, len(widths) * num_filters) of PAD-filled ids (B, L), L >= max width."""
        x = self.embedding(ids).transpose(1, 2)  # (B, E, L)
        pooled = []
        for conv, w in zip(self.convs, self.config.widths):
            h = F.relu(conv(x))  # (B, F, L - w + 1)
            # windows that start inside the sentence; one window (padded) when it is shorter than w
            windows = torch.clamp(lengths - w + 1, min=1)  # (B,)
            inside = torch.arange(h.shape[2], device=h.device)[None, :] < windows[:, None]  # (B, L - w + 1)
            # ReLU outputs are >= 0 and one window is always inside: zeroing the others leaves the max
            pooled.append((h * inside[:, None, :]).amax(dim=2))  # (B, F)
        return torch.cat(pooled, dim=1)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits (B, 2) of pooled features (B, len(widths) * num_filters)."""
        return self.out(self.dropout(features))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits (B, 2) of (negative, positive) for PAD-filled ids (B, L) with their lengths (B,)."""
        if ids.shape[1] < self.max_width:
            ids = F.pad(ids, (0, self.max_width - ids.shape[1]), value=PAD_ID)
        return self.head(self.features(ids, lengths))

    @torch.no_grad()
    def positive_probability(self, sentences: Sequence[Sequence[str] | str]) -> np.ndarray:
        """P(positive) of each sentence (word lists or whitespace-separated text), float64 (B,), in eval mode."""
        was_training = self.training
        self.eval()
        try:
            logits = self(*self.encode(sentences))
        finally:
            self.train(was_training)
        return torch.softmax(logits.double(), dim=1)[:, 1].numpy()

    def window_weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each convolution as a matrix over one flattened window: (w * E, F) weights and (F,) bias."""
        out = []
        for conv in self.convs:
            # conv.weight is (F, E, w); a window is flattened as (w, E), word-major
            weight = conv.weight.detach().permute(2, 1, 0).reshape(-1, conv.out_channels)  # (w * E, F)
            out.append((weight.contiguous(), conv.bias.detach().clone()))
        return out


def potential_of(probability: np.ndarray) -> np.ndarray:
    """2 * P(positive) - 1: the signed sentiment in [-1, 1] that attribute multiplies."""
    return 2.0 * np.asarray(probability, dtype=np.float64) - 1.0


# ---------------------------------------------------------------------------------------------------
# The reward.


class ClassifierSentiment(PrefixMetric):
    """attribute * (2 * P(positive | prefix) - 1) under a ``SentimentCNN``, for N rows at once.

    Range [-1, 1]; 0 for the empty prefix (by definition: no text, no sentiment). The prefix is the
    generated output only (the prompt is not read), as for ``VaderCompound``; its tokens are the
    classifier's words (task words outside the classifier's vocabulary, and the task's special tokens,
    are its UNK). The potential equals ``module.positive_probability`` of the prefix's words, to float32
    rounding (the convolution sums in another order; under 1e-5).

    Cost per push: one batched matrix product per filter width over the pushed rows' newest window,
    O(1) per row in the prefix length; no Python loop over rows.

    Args:
        examples: the split; ``examples.attribute`` must be +1 (positive wanted) or -1 (negative wanted).
        num_rows: N, the number of episodes tracked at once.
        vocab: the vocabulary of the ids pushed.
        module: the classifier (put in eval mode; its weights are copied, so training it later changes
            no metric built before).
        max_len: the longest prefix a row may reach (the task's output length cap).
    """

    name = "classifier"
    empty_is_zero = True

    def __init__(self, examples: Examples, num_rows: int, vocab: Vocabulary, module: SentimentCNN, max_len: int = 64):
        super().__init__(examples, num_rows)
        bad = np.setdiff1d(examples.attribute, [-1, 1])
        if len(bad):
            raise ValueError(
                f"ClassifierSentiment needs examples.attribute in {{-1, +1}} (the wanted sentiment), got "
                f"{bad.tolist()}; build the split with attribute=+1 for positive and -1 for negative targets"
            )
        if not isinstance(module, SentimentCNN):
            raise TypeError(f"module must be a SentimentCNN, got {type(module).__name__}")
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        module.eval()
        self.vocab = vocab
        self.max_len = max_len
        self.widths = module.config.widths
        self.lookup = classifier_ids(vocab, module)  # (V,) task id -> classifier id
        self.embedding = module.embedding.weight.detach().clone()  # (C, E)
        self.windows = module.window_weights()
        self.out_weight = module.out.weight.detach().clone()  # (2, len(widths) * F)
        self.out_bias = module.out.bias.detach().clone()  # (2,)
        # classifier ids of each row's prefix, wide enough for a whole window while the prefix is short
        self.prefix = np.zeros((num_rows, max(max_len, module.max_width)), dtype=np.int64)
        self.pooled = [torch.zeros(num_rows, module.config.num_filters) for _ in self.widths]  # per width (N, F)
        self.value = np.zeros(num_rows, dtype=np.float64)

    def _reset(self, rows: np.ndarray) -> None:
        self.prefix[rows] = PAD_ID
        self.value[rows] = 0.0

    def _push(self, rows: np.ndarray, tokens: np.ndarray) -> None:
        length = self.length[rows]
        check_prefix_room(rows, length, self.max_len)
        self.prefix[rows, length - 1] = self.lookup[tokens]
        rows_t = torch.as_tensor(rows, dtype=torch.int64)
        length_t = torch.from_numpy(length)
        with torch.inference_mode():
            features = []
            for (weight, bias), pooled, w in zip(self.windows, self.pooled, self.widths):
                # the newest window: it ends at the new token, or starts at 0 while the prefix is shorter
                start = np.maximum(length - w, 0)
                window = self.prefix[rows[:, None], start[:, None] + np.arange(w)]  # (k, w)
                # index_select: several times faster than advanced indexing for this gather
                x = self.embedding.index_select(0, torch.from_numpy(window.reshape(-1))).reshape(len(rows), -1)
                h = torch.relu(torch.addmm(bias, x, weight))  # (k, F) from x (k, w * E)
                # up to length w the only window changes with each token; past it, windows only add up
                grown = (length_t > w)[:, None]
                h = torch.where(grown, torch.maximum(pooled.index_select(0, rows_t), h), h)
                pooled.index_copy_(0, rows_t, h)
                features.append(h)
            logits = F.linear(torch.cat(features, dim=1), self.out_weight, self.out_bias).double()  # (k, 2)
            probability = torch.softmax(logits, dim=1)[:, 1].numpy()
        attribute = self.examples.attribute[self.example_ids[rows]]
        self.value[rows] = attribute * potential_of(probability) + 0.0  # + 0.0: no -0.0

    def _potential(self, rows: np.ndarray) -> np.ndarray:
        return self.value[rows].copy()


def classifier_ids(vocab: Vocabulary, module: SentimentCNN) -> np.ndarray:
    """(V,) int64: the classifier id of each task token (UNK_ID for specials and unknown words)."""
    index = module.index
    return np.array([index.get(w, UNK_ID) for w in vocab.tokens], dtype=np.int64)


# ---------------------------------------------------------------------------------------------------
# Files.


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_classifier(module: SentimentCNN, folder: PathLike, dev_accuracy: float, training: dict[str, Any] | None = None) -> Path:
    """Write ``module`` into ``folder`` (created if needed): weights, then the JSON that vouches for them.

    Each file is written to a temporary name and renamed; the JSON holds the weights' sha256, so a folder
    whose weights changed after its JSON was written is refused on load. Returns the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous() for name, t in module.state_dict().items()}
    weights = folder / WEIGHTS_FILE
    _atomic_write(weights, safetensors.torch.save(tensors, metadata={"format": FORMAT_NAME}))
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "config": {**asdict(module.config), "widths": list(module.config.widths)},
        "labels": list(LABELS),
        "dev_accuracy": float(dev_accuracy),
        "training": training or {},
        "weights_sha256": _sha256(weights),
        "words": list(module.words[len(CLASSIFIER_SPECIALS) :]),
    }
    _atomic_write(folder / META_FILE, (json.dumps(meta, indent=1) + "\n").encode())
    return folder


@dataclass(frozen=True)
class LoadedClassifier:
    """A classifier read by ``load_classifier``: the module (eval mode) and its JSON description."""

    module: SentimentCNN
    folder: Path
    dev_accuracy: float
    meta: dict[str, Any] = field(repr=False)


def load_classifier(folder: PathLike) -> LoadedClassifier:
    """Read a folder written by ``save_classifier``, checking everything before building the module.

    Raises ClassifierFileError naming the file for a missing folder or file, JSON that does not parse or
    lacks a key, another format or version, weights whose sha256 differs from the JSON's, an unreadable
    safetensors file, or tensors whose names or shapes do not fit the described model.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ClassifierFileError(
            f"{folder}: no such classifier folder; write one with `instant-reward train-classifier --out {folder}`"
        )
    meta_path, weights_path = folder / META_FILE, folder / WEIGHTS_FILE
    for path in (meta_path, weights_path):
        if not path.is_file():
            raise ClassifierFileError(f"{path} does not exist; the classifier folder must hold {META_FILE} and {WEIGHTS_FILE}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ClassifierFileError(f"{meta_path}: not a readable JSON file ({error}); train the classifier again") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ClassifierFileError(f"{meta_path}: not a sentiment classifier description (format must be {FORMAT_NAME!r})")
    if meta.get("version") != FORMAT_VERSION:
        raise ClassifierFileError(f"{meta_path}: format version {meta.get('version')!r}, this code reads {FORMAT_VERSION}")
    try:
        config = ClassifierConfig(**meta["config"])
        words, sha256, accuracy = meta["words"], meta["weights_sha256"], float(meta["dev_accuracy"])
        module = SentimentCNN(words, config)
    except (KeyError, TypeError, ValueError) as error:
        raise ClassifierFileError(f"{meta_path}: missing or invalid entry ({type(error).__name__}: {error})") from error
    actual = _sha256(weights_path)
    if actual != sha256:
        raise ClassifierFileError(
            f"{weights_path}: sha256 {actual[:16]}... differs from {sha256[:16]}... recorded in {meta_path.name}; "
            "the file is corrupt or belongs to another classifier: train it again"
        )
    try:
        tensors = safetensors.torch.load_file(weights_path)
    except (OSError, safetensors.SafetensorError) as error:
        raise ClassifierFileError(f"{weights_path}: not a readable safetensors file ({error})") from error
    expected = {name: tuple(t.shape) for name, t in module.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in tensors.items()}
    if found != expected:
        wrong = sorted(set(expected) ^ set(found) | {n for n in expected.keys() & found.keys() if expected[n] != found[n]})
        raise ClassifierFileError(
            f"{weights_path}: tensors do not fit the model described in {meta_path.name} (mismatched: {wrong[:5]})"
        )
    module.load_state_dict(tensors)
    return LoadedClassifier(module.eval(), folder, accuracy, meta)


__all__ = [
    "ClassifierConfig",
    "ClassifierFileError",
    "ClassifierSentiment",
    "LoadedClassifier",
    "SentimentCNN",
    "classifier_ids",
    "load_classifier",
    "save_classifier",
]
