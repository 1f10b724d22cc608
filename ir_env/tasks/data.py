"""Readers of the real data sets (Multi30k, SST-2, SQuAD v1.1, MRPC), word tokenisers and vocabulary cuts.

Readers return plain Python lists of strings and labels; the tasks in ``ir_env.tasks.real`` tokenise them
and build their arrays. The data folder (the one that holds ``multi30k/``, ``sst2/``, ``squad/`` and
``mrpc/``, laid out as each folder's README.md describes) comes from a task's ``data_dir`` argument or the
``IR_DATA_DIR`` environment variable. Nothing is downloaded or copied.

Every problem in a file is a ``DataError`` (a ValueError) raised where it is read, naming the file and,
for line-based files, the line: a missing file (with the files its folder should hold), a truncated or
corrupt gzip stream, bytes that are not UTF-8, an empty line or sentence, a missing column, a bad label,
unequal line counts between two aligned files, a missing JSON key, and a file without a single example.

Tokenisers (each task uses the one whose metric's reference implementation it matches):

- ``tokenize_13a``: sacrebleu's default "13a" tokeniser (mteval-v13a), regex for regex, for the BLEU
  tasks. It splits ASCII punctuation off words (and ``.``/``,`` unless between digits; ``-`` after a
  digit) but keeps apostrophes and hyphens inside words: ``"A man's t-shirt, 1.5 m."`` ->
  ``A man's t-shirt , 1.5 m .``. It is idempotent on its own output, so the BLEU of token ids equals
  ``sacrebleu.sentence_bleu`` (default tokenize) of the space-joined output against the raw reference.
- ``tokenize_words``: whitespace words with leading and trailing ASCII punctuation split off, one
  character a token, inner punctuation kept (``"(U.S.-born)"`` -> ``( U.S.-born )``), for SQuAD. SQuAD's
  answer normalisation deletes ASCII punctuation inside a whitespace word, so splitting only at the
  edges keeps ``normalize_answer(detokenize(tokens)) == normalize_answer(text)``: token F1 equals the
  official F1 on the raw strings.
- SST-2 is already lower-cased and PTB-tokenised; its tokens are its whitespace-separated words.
"""

from __future__ import annotations

import codecs
import gzip
import json
import math
import os
import re
import string
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ir_env.tokenizer import SPECIAL_TOKENS

#: The environment variable read when a task gets no ``data_dir``.
DATA_DIR_ENV = "IR_DATA_DIR"
#: The files each data set folder must hold.
EXPECTED_FILES: dict[str, tuple[str, ...]] = {
    "multi30k": tuple(f"{split}.{lang}.gz" for split in ("train", "val", "test_2016_flickr") for lang in ("en", "de")),
    "sst2": ("train.tsv.gz", "dev.tsv"),
    "squad": ("dev-v1.1.json.gz",),
    "mrpc": ("msr_paraphrase_train.txt",),
}
MULTI30K_SPLITS: tuple[str, ...] = ("train", "val", "test_2016_flickr")
SST2_FILES: dict[str, str] = {"train": "train.tsv.gz", "dev": "dev.tsv"}
SST2_HEADER: tuple[str, ...] = ("sentence", "label")
MRPC_HEADER: tuple[str, ...] = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
LABELS: dict[str, int] = {"0": 0, "1": 1}


class DataError(ValueError):
    """A data file is missing, unreadable or malformed; the message names the file (and line)."""


# ---------------------------------------------------------------------------------------------------
# Locating and reading files.


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """The data folder: ``data_dir``, else ``$IR_DATA_DIR``; raises DataError if neither names a folder."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
        if data_dir is None:
            raise DataError(
                f"no data folder given: pass data_dir=... (--data-dir on the command line) or set {DATA_DIR_ENV} "
                f"to the folder that holds {', '.join(d + '/' for d in EXPECTED_FILES)}"
            )
    if not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir must be a path (str or os.PathLike), got {data_dir!r} ({type(data_dir).__name__})")
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DataError(
            f"data folder {str(path)!r} does not exist or is not a folder; it must hold "
            f"{', '.join(d + '/' for d in EXPECTED_FILES)}"
        )
    return path


def data_file(data_dir: str | os.PathLike[str] | None, dataset: str, name: str) -> Path:
    """The path of ``dataset/name`` in the data folder; raises DataError listing the expected files if absent."""
    path = resolve_data_dir(data_dir) / dataset / name
    if not path.is_file():
        expected = ", ".join(EXPECTED_FILES[dataset])
        raise DataError(
            f"{path} does not exist; the {dataset} folder {path.parent} must hold {expected} "
            f"(see {dataset}/README.md in the data folder)"
        )
    return path


def read_bytes(path: Path) -> bytes:
    """The bytes of ``path``, gunzipped when its name ends in ``.gz``; DataError if the stream is broken."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read the file ({error})") from error
    if path.suffix != ".gz":
        return data
    try:
        return gzip.decompress(data)
    except EOFError as error:
        raise DataError(f"{path}: the gzip stream is truncated ({error}); copy the file again") from error
    except (gzip.BadGzipFile, zlib.error, OSError) as error:
        raise DataError(f"{path}: not a valid gzip file ({error}); copy the file again") from error


def decode_utf8(path: Path, data: bytes) -> str:
    """``data`` decoded as UTF-8 (a leading byte-order mark dropped); DataError naming the line otherwise."""
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DataError(f"{path}, line {line}: not valid UTF-8 ({error.reason} at byte {error.start})") from error


def read_lines(path: Path) -> list[str]:
    """The lines of a (possibly gzipped) UTF-8 text file without their LF or CRLF endings."""
    lines = decode_utf8(path, read_bytes(path)).split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start another
    return [line.removesuffix("\r") for line in lines]


def _check_not_empty(path: Path, count: int) -> None:
    if count == 0:
        raise DataError(f"{path}: the file holds no examples; copy the file again")


def _label(path: Path, line: int, value: str) -> int:
    if value not in LABELS:
        raise DataError(f"{path}, line {line}: label {value!r} is not 0 or 1")
    return LABELS[value]


def _sentence(path: Path, line: int, value: str, what: str = "sentence") -> str:
    text = value.strip()
    if not text:
        raise DataError(f"{path}, line {line}: the {what} is empty")
    return text


# ---------------------------------------------------------------------------------------------------
# Multi30k.


def read_multi30k(data_dir: str | os.PathLike[str] | None, split: str) -> list[tuple[str, str]]:
    """(English, German) sentence pairs of a Multi30k task-1 split (``train``, ``val``, ``test_2016_flickr``).

    The raw files are cased and untokenised; surrounding whitespace is stripped.
    """
    if split not in MULTI30K_SPLITS:
        raise ValueError(f"unknown Multi30k split {split!r}; expected one of {list(MULTI30K_SPLITS)}")
    paths = [data_file(data_dir, "multi30k", f"{split}.{lang}.gz") for lang in ("en", "de")]
    sides = [read_lines(path) for path in paths]
    if len(sides[0]) != len(sides[1]):
        raise DataError(
            f"{paths[0]} has {len(sides[0])} lines but {paths[1]} has {len(sides[1])}: the two sides of a "
            "split must be line-aligned; copy the files again"
        )
    _check_not_empty(paths[0], len(sides[0]))
    for path, lines in zip(paths, sides):
        for i, line in enumerate(lines):
            if not line.strip():
                raise DataError(f"{path}, line {i + 1}: the line is empty; every line must hold one sentence")
    return [(en.strip(), de.strip()) for en, de in zip(*sides)]


# ---------------------------------------------------------------------------------------------------
# SST-2.


def _tsv_rows(path: Path, header: tuple[str, ...]) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every data row of a TSV file whose first line must be ``header``."""
    lines = read_lines(path)
    if not lines or tuple(lines[0].split("\t")) != header:
        got = repr(lines[0]) if lines else "an empty file"
        raise DataError(f"{path}, line 1: expected the header {chr(9).join(header)!r}, got {got}")
    rows = []
    for i, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DataError(
                f"{path}, line {i}: expected {len(header)} tab-separated fields ({', '.join(header)}), "
                f"got {len(fields)}: {line[:80]!r}"
            )
        rows.append((i, fields))
    _check_not_empty(path, len(rows))
    return rows


def read_sst2(data_dir: str | os.PathLike[str] | None, split: str) -> list[tuple[str, int]]:
    """(sentence, label) rows of SST-2 ``train`` (phrases) or ``dev`` (sentences); label 1 positive, 0 negative.

    Sentences are stripped of GLUE's trailing space; they are lower-cased and PTB-tokenised already.
    """
    if split not in SST2_FILES:
        raise ValueError(f"unknown SST-2 split {split!r}; expected one of {list(SST2_FILES)}")
    path = data_file(data_dir, "sst2", SST2_FILES[split])
    return [
        (_sentence(path, i, sentence), _label(path, i, label)) for i, (sentence, label) in _tsv_rows(path, SST2_HEADER)
    ]


# ---------------------------------------------------------------------------------------------------
# MRPC.


@dataclass(frozen=True)
class MrpcPair:
    """One MRPC row: ``label`` 1 if the sentences are paraphrases, with both sentence ids and texts."""

    label: int
    id1: str
    id2: str
    sentence1: str
    sentence2: str


def read_mrpc(data_dir: str | os.PathLike[str] | None) -> list[MrpcPair]:
    """Every row of ``msr_paraphrase_train.txt`` (UTF-8 with BOM, CRLF, 5 tab-separated fields, no quoting)."""
    path = data_file(data_dir, "mrpc", "msr_paraphrase_train.txt")
    return [
        MrpcPair(_label(path, i, q), _sentence(path, i, a, "#1 ID"), _sentence(path, i, b, "#2 ID"),
                 _sentence(path, i, s1, "#1 String"), _sentence(path, i, s2, "#2 String"))
        for i, (q, a, b, s1, s2) in _tsv_rows(path, MRPC_HEADER)
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# SQuAD v1.1.


@dataclass(frozen=True)
class SquadRecord:
    """One SQuAD question with its paragraph.

    Attributes:
        title: the Wikipedia article's title.
        context: the paragraph.
        question: the question.
        answers: the human answers (one or more), each a span of ``context``.
        answer_starts: the character offset of each answer in ``context``.
        id: the question id.
    """

    title: str
    context: str
    question: str
    answers: tuple[str, ...]
    answer_starts: tuple[int, ...]
    id: str


def _field(node: Any, key: str, kind: type, where: str, path: Path) -> Any:
    """``node[key]``, checked to be a ``kind``; DataError naming the key and its place otherwise."""
    if not isinstance(node, dict):
        raise DataError(f"{path}: {where} is a {type(node).__name__}, expected a JSON object")
    if key not in node:
        raise DataError(f"{path}: {where} has no key {key!r} (SQuAD v1.1 format; see squad/README.md)")
    value = node[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(f"{path}: {where}[{key!r}] is a {type(value).__name__}, expected a {kind.__name__}")
    return value


def read_squad(data_dir: str | os.PathLike[str] | None) -> list[SquadRecord]:
    """Every question of ``dev-v1.1.json.gz`` (the only SQuAD file in the data folder), in file order."""
    path = data_file(data_dir, "squad", "dev-v1.1.json.gz")
    text = decode_utf8(path, read_bytes(path))
    try:
        root = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}, line {error.lineno}: not valid JSON ({error.msg})") from error
    records = []
    for a, article in enumerate(_field(root, "data", list, "the top level", path)):
        where = f"data[{a}]"
        title = _field(article, "title", str, where, path)
        for p, paragraph in enumerate(_field(article, "paragraphs", list, where, path)):
            where = f"data[{a}].paragraphs[{p}]"
            context = _field(paragraph, "context", str, where, path)
            for q, qa in enumerate(_field(paragraph, "qas", list, where, path)):
                where = f"data[{a}].paragraphs[{p}].qas[{q}]"
                answers = _field(qa, "answers", list, where, path)
                if not answers:
                    raise DataError(f"{path}: {where}['answers'] is empty; every question needs an answer")
                texts = [_field(x, "text", str, f"{where}.answers[{k}]", path) for k, x in enumerate(answers)]
                starts = [_field(x, "answer_start", int, f"{where}.answers[{k}]", path) for k, x in enumerate(answers)]
                question = _field(qa, "question", str, where, path)
                qid = _field(qa, "id", str, where, path)
                records.append(SquadRecord(title, context, question.strip(), tuple(texts), tuple(starts), qid))
    _check_not_empty(path, len(records))
    return records


# ---------------------------------------------------------------------------------------------------
# Tokenisers.

# sacrebleu's TokenizerRegexp rules, in order (the 13a tokeniser's second stage).
_13A_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),  # ASCII punctuation but ' - . ,
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),  # . and , not after a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),  # . and , not before a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # - after a digit
)
_13A_ENTITIES: tuple[tuple[str, str], ...] = (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"))
_ASCII_PUNCTUATION = frozenset(string.punctuation)


def tokenize_13a(text: str, lowercase: bool = False) -> list[str]:
    """Tokens of ``text`` by sacrebleu's 13a tokeniser (``lowercase`` first, as sacrebleu's option does)."""
    if lowercase:
        text = text.lower()
    text = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in text:
        for entity, char in _13A_ENTITIES:
            text = text.replace(entity, char)
    text = f" {text} "
    for pattern, replacement in _13A_RULES:
        text = pattern.sub(replacement, text)
    return text.split()


def tokenize_words(text: str, lowercase: bool = False) -> list[str]:
    """Whitespace words with their leading and trailing ASCII punctuation split off, one character a token."""
    if lowercase:
        text = text.lower()
    tokens: list[str] = []
    for word in text.split():
        start, end = 0, len(word)
        while start < end and word[start] in _ASCII_PUNCTUATION:
            start += 1
        while end > start and word[end - 1] in _ASCII_PUNCTUATION:
            end -= 1
        tokens.extend(word[:start])
        if start < end:
            tokens.append(word[start:end])
        tokens.extend(word[end:])
    return tokens


# ---------------------------------------------------------------------------------------------------
# Vocabulary cuts and length caps.

#: Length caps are rounded up to a multiple of this.
LENGTH_CAP_MULTIPLE = 8


def frequent_words(
    sentences: Iterable[Sequence[str]], min_freq: int, max_size: int | None = None, exclude: Iterable[str] = ()
) -> list[str]:
    """Words seen at least ``min_freq`` times, most frequent first (ties by spelling), at most ``max_size``.

    Special tokens and ``exclude`` (a task's markers) are never words.
    """
    counts = Counter(w for sentence in sentences for w in sentence)
    for token in (*SPECIAL_TOKENS, *exclude):
        counts.pop(token, None)
    words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    return words if max_size is None else words[:max_size]


def length_cap(lengths: Sequence[int], percentile: float) -> int:
    """The ``percentile`` of ``lengths`` rounded up to a multiple of LENGTH_CAP_MULTIPLE (at least one)."""
    value = float(np.percentile(np.asarray(lengths, dtype=np.float64), percentile))
    return max(1, math.ceil(value / LENGTH_CAP_MULTIPLE)) * LENGTH_CAP_MULTIPLE
