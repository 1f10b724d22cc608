"""Tasks on real data: Multi30k translation, SST-2 continuation, SQuAD answers, MRPC paraphrases.

The tasks build on ``CorpusTask`` (``ir_env.tasks.corpus``), whose docstring gives the rules all four
share: vocabulary, length caps, ``max_train`` and deterministic splits.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ir_env.tasks.base import SPLITS, Examples, check_split
from ir_env.tasks.corpus import (
    BleuCorpusTask,
    CorpusTask,
    DataDir,
    WordPair,
    assign_splits,
    check_bool,
)
from ir_env.tasks.data import (
    SquadRecord,
    frequent_words,
    read_mrpc,
    read_multi30k,
    read_squad,
    read_sst2,
    tokenize_13a,
    tokenize_words,
)
from ir_env.tasks.generation import check_count
from ir_env.tasks.matching import SEPARATOR
from ir_env.tasks.sentiment import NEGATIVE, POLARITY_TOKENS, POSITIVE
from ir_env.tokenizer import EOS

if TYPE_CHECKING:
    from ir_env.rewards.base import PrefixMetric
    from ir_env.rewards.classifier import LoadedClassifier

# ---------------------------------------------------------------------------------------------------
# Translation.

#: Task split -> Multi30k file split.
MULTI30K_FILES: dict[str, str] = {"train": "train", "valid": "val", "test": "test_2016_flickr"}


class Multi30kTask(BleuCorpusTask):
    """Translate Multi30k image captions from English into German (metric: sentence BLEU).

    Example (validation pair 0, lower-cased)::

        a group of men are loading cotton onto a truck  ->  eine gruppe von männern lädt baumwolle auf
        einen lastwagen

    Both sides are tokenised by sacrebleu's 13a tokeniser (lower-cased first by default) and share one
    vocabulary; the action mask allows the German words only (those seen ``min_freq`` times in the
    German training side), plus EOS. The metric is ``IncrementalBLEU`` on token ids, which is
    ``sacrebleu.sentence_bleu(" ".join(output), [" ".join(reference)], tokenize="none")``; since 13a is
    idempotent, that also equals sacrebleu's default (13a) sentence BLEU of the space-joined output
    against the raw German sentence (with ``lowercase=True`` when the task lower-cases), for every
    reference within the cap T. BLEU is cased only when ``lowercase=False``.

    Sizes with the defaults: 29,000 / 1,014 / 1,000 pairs (train / val / test_2016_flickr); a vocabulary
    of 13,183 tokens (7,814 German words, 5,365 more English ones); S = T = 32 (the 99th percentile of
    training lengths is 25); 3 val/test sentences are cut. About 4% of val/test reference tokens are UNK.

    Args:
        data_dir: the data folder (holding ``multi30k/``); None reads ``$IR_DATA_DIR``.
        lowercase: lower-case both sides before tokenising (BLEU is then case-insensitive).
        min_freq: a word needs this many training occurrences (on its side) to get an id.
        max_vocab: keep at most this many words per language, the most frequent.
        max_train: use only the first ``max_train`` training pairs.
        max_source_len, max_generation_len: S and T; None derives them from the training lengths.
        bleu_point: None (the metric is sentence BLEU), or the 10 mean per-sentence BLEU statistics of a
            system (``sys_len, ref_len``, the matches and the totals of the 1- to 4-grams, e.g. the mean of
            ``benchmarks.corpus_bleu.bleu_statistics`` rows): the metric is then ``LinearBLEU``, what an
            output adds to corpus BLEU at that point, the score BLEU papers report.
    """

    name = "translation:multi30k"

    def __init__(
        self,
        data_dir: DataDir = None,
        lowercase: bool = True,
        min_freq: int = 2,
        max_vocab: int | None = None,
        max_train: int | None = None,
        max_source_len: int | None = None,
        max_generation_len: int | None = None,
        bleu_point: Sequence[float] | None = None,
    ):
        self._check_options(data_dir, min_freq, max_vocab, max_train, max_source_len, max_generation_len)
        self._set_bleu_point(bleu_point)
        self.lowercase = check_bool("lowercase", lowercase)
        pairs: dict[str, list[WordPair]] = {}
        for split, file_split in MULTI30K_FILES.items():
            raw = read_multi30k(data_dir, file_split)
            if split == "train":
                raw = raw[: self.max_train]
            pairs[split] = [(tokenize_13a(en, lowercase), tokenize_13a(de, lowercase)) for en, de in raw]
        german = frequent_words((r for _, r in pairs["train"]), self.min_freq, self.max_vocab)
        english = frequent_words((s for s, _ in pairs["train"]), self.min_freq, self.max_vocab)
        self._build(pairs, output_words=german, source_words=english)
        self._check_bleu_ids()


# ---------------------------------------------------------------------------------------------------
# Sentiment.

PROMPT_LEN = 5
#: A sentence needs this many words after the prompt to make an example.
MIN_CONTINUATION = 3
POLARITIES: tuple[str, ...] = ("positive", "label")
#: The metrics ``sentiment:sst2`` can be scored by (``scorer=``); the others are its held-out judges.
SST2_SCORERS: tuple[str, ...] = ("vader", "classifier")
#: The environment variable read for the classifier folder when ``classifier`` is None.
CLASSIFIER_ENV = "IR_SST2_CLASSIFIER"


class Sst2Task(CorpusTask):
    """Continue the opening words of an SST-2 film-review sentence with positive sentiment (VADER or a CNN).

    Example (valid example 0)::

        <positive> it 's a charming and  ->  often affecting journey .

    The source is a polarity token and the sentence's first ``prompt_len`` words; the reference is the
    rest of the sentence (for supervised warm starts; the metric does not read it, and a reference may
    well be negative). ``Examples.attribute`` is +1 for every example (``polarity="positive"``: steer any
    review positive, the usual RL text-continuation benchmark), or the sentence's own label as +1/-1
    (``polarity="label"``: references then agree with the attribute).

    Scorers: the metric (the reward's potential and the episode score) is chosen by ``scorer``:

    - ``"vader"`` (default): ``VaderCompound``, attribute * VADER compound of the detokenised output.
    - ``"classifier"``: ``ClassifierSentiment``, attribute * (2 * P(positive) - 1) under a CNN trained on
      SST-2 train (``instant-reward train-classifier``), read from the folder ``classifier`` or, when
      that is None, ``$IR_SST2_CLASSIFIER``.

    Both read the generated output only, never the prompt, and are in [-1, 1]. The scorer that is not
    the reward is a held-out judge: ``judges(outputs, example_ids, split)`` scores finished outputs under
    each of them (the classifier judges only when a classifier folder is given or set), so a policy that
    games its reward shows it as a gap between reward and judge; ``score_outputs`` scores under any one.

    Data: SST-2 is lower-cased and PTB-tokenised already; its whitespace words are the tokens. Train is
    GLUE's train file (phrases as well as sentences), keeping phrases of at least ``prompt_len`` + 3
    words, each distinct phrase once. GLUE's dev file (872 sentences; the test labels are not public) is
    split in two halves by line: the first 436 rows are ``valid``, the other 436 ``test``, each keeping
    the sentences of at least ``prompt_len`` + 3 words.

    Sizes with the defaults: 31,105 / 408 / 399 examples; a vocabulary of 13,420 tokens; S = 6
    (polarity token + 5 words); T = 40 (from the 99th percentile of training continuation lengths).

    Args:
        data_dir: the data folder (holding ``sst2/``); None reads ``$IR_DATA_DIR``.
        prompt_len: the number of opening words in the source.
        polarity: ``"positive"`` (every attribute +1) or ``"label"`` (the SST-2 label as +1/-1).
        min_freq, max_vocab, max_train, max_generation_len: as for ``Multi30kTask``.
        scorer: the metric, ``"vader"`` or ``"classifier"`` (named ``scorer``, not ``reward``: the env's
            ``reward=`` is the shaping mode).
        classifier: the folder written by ``instant-reward train-classifier``; None reads
            ``$IR_SST2_CLASSIFIER`` (and needs it only for ``scorer="classifier"`` or its judge).

    Attributes:
        scorer, metric_name: the scorer of the metric.
        classifier_path: the classifier folder, or None.
        judge_names: the scorers other than ``scorer`` that ``judges`` reports.
    """

    name = "sentiment:sst2"
    metric_name = "vader"
    MARKERS = (POLARITY_TOKENS[POSITIVE], POLARITY_TOKENS[NEGATIVE])

    def __init__(
        self,
        data_dir: DataDir = None,
        prompt_len: int = PROMPT_LEN,
        polarity: str = "positive",
        min_freq: int = 2,
        max_vocab: int | None = None,
        max_train: int | None = None,
        max_generation_len: int | None = None,
        scorer: str = "vader",
        classifier: str | os.PathLike[str] | None = None,
    ):
        self.prompt_len = check_count("prompt_len", prompt_len)
        if polarity not in POLARITIES:
            raise ValueError(f"polarity must be one of {list(POLARITIES)}, got {polarity!r}")
        self.polarity = polarity
        self._init_scorer(scorer, classifier)
        self._check_options(data_dir, min_freq, max_vocab, max_train, 1 + self.prompt_len, max_generation_len)
        dev = read_sst2(data_dir, "dev")
        rows = {"train": read_sst2(data_dir, "train"), "valid": dev[: len(dev) // 2], "test": dev[len(dev) // 2 :]}
        unique: dict[str, int] = {}
        for sentence, label in rows["train"]:
            unique.setdefault(sentence, label)  # each distinct phrase once (GLUE repeats a few)
        rows["train"] = list(unique.items())
        pairs: dict[str, list[WordPair]] = {}
        attributes: dict[str, list[int]] = {}
        for split, labelled in rows.items():
            kept = [(s.split(), label) for s, label in labelled]
            kept = [(words, label) for words, label in kept if len(words) >= self.prompt_len + MIN_CONTINUATION]
            if split == "train":
                kept = kept[: self.max_train]
            wanted = [POSITIVE if polarity == "positive" or label == 1 else NEGATIVE for _, label in kept]
            pairs[split] = [
                ([POLARITY_TOKENS[w]] + words[: self.prompt_len], words[self.prompt_len :])
                for (words, _), w in zip(kept, wanted)
            ]
            attributes[split] = wanted
        words = frequent_words((s[1:] + r for s, r in pairs["train"]), self.min_freq, self.max_vocab, self.MARKERS)
        self._build(pairs, output_words=words, source_words=[], attributes=attributes)

    def _init_scorer(self, scorer: object, classifier: object) -> None:
        if scorer not in SST2_SCORERS:
            raise ValueError(f"scorer must be one of {list(SST2_SCORERS)}, got {scorer!r}")
        if classifier is None:
            classifier = os.environ.get(CLASSIFIER_ENV) or None
        elif not isinstance(classifier, (str, os.PathLike)):
            raise TypeError(f"classifier must be a folder path or None, got {classifier!r} ({type(classifier).__name__})")
        self.scorer = self.metric_name = scorer
        self.classifier_path = None if classifier is None else Path(classifier).expanduser()
        self._classifier: LoadedClassifier | None = None
        if scorer == "classifier":
            self.classifier()  # a missing or broken file fails here, not in the first episode
        self.judge_names: tuple[str, ...] = tuple(
            name for name in SST2_SCORERS if name != scorer and (name != "classifier" or self.classifier_path)
        )

    def classifier(self) -> LoadedClassifier:
        """The sentiment classifier (module and description), read on first use from ``classifier_path``."""
        if self._classifier is None:
            if self.classifier_path is None:
                raise ValueError(
                    f"{self.name}: no sentiment classifier given; pass classifier=FOLDER (written by "
                    f"`instant-reward train-classifier --out FOLDER`) or set {CLASSIFIER_ENV}=FOLDER"
                )
            from ir_env.rewards.classifier import load_classifier

            self._classifier = load_classifier(self.classifier_path)
        return self._classifier

    def metric(self, examples: Examples, num_rows: int) -> PrefixMetric:
        return self.scorer_metric(self.scorer, examples, num_rows)

    def scorer_metric(self, scorer: str, examples: Examples, num_rows: int) -> PrefixMetric:
        """A fresh prefix metric of ``scorer`` (one of SST2_SCORERS) for ``num_rows`` episodes."""
        if scorer == "vader":
            from ir_env.rewards.sentiment import VaderCompound

            return VaderCompound(examples, num_rows, self.vocab, max_len=self.max_generation_len)
        if scorer == "classifier":
            from ir_env.rewards.classifier import ClassifierSentiment

            module = self.classifier().module
            return ClassifierSentiment(examples, num_rows, self.vocab, module, max_len=self.max_generation_len)
        raise ValueError(f"scorer must be one of {list(SST2_SCORERS)}, got {scorer!r}")

    def score_outputs(
        self, outputs: Sequence[Sequence[int]], example_ids: Sequence[int], split: str = "valid", scorer: str | None = None
    ) -> np.ndarray:
        """The score R(y) of finished outputs under ``scorer`` (default: the task's own), float64 (len(outputs),).

        Args:
            outputs: token ids of each output (an EOS and what follows it are ignored).
            example_ids: the example of ``split`` each output answers (its attribute signs the score).
            split: the split of ``example_ids``.
            scorer: one of SST2_SCORERS; None is ``self.scorer``.

        The score is what the env reports as ``info["score"]`` for the same tokens under that scorer.
        """
        scorer = self.scorer if scorer is None else scorer
        if scorer not in SST2_SCORERS:
            raise ValueError(f"scorer must be one of {list(SST2_SCORERS)}, got {scorer!r}")
        ids = np.asarray(example_ids, dtype=np.int64).reshape(-1)
        attribute = self.examples(split).attribute
        if len(ids) != len(outputs):
            raise ValueError(f"got {len(outputs)} outputs but {len(ids)} example_ids; pass one example id per output")
        if len(ids) and (ids.min() < 0 or ids.max() >= len(attribute)):
            raise ValueError(f"example_ids must lie in [0, {len(attribute)}) for split {split!r}, got {ids.tolist()}")
        rows = [[int(t) for t in o] for o in outputs]
        rows = [r[: r.index(EOS)] if EOS in r else r for r in rows]
        if scorer == "vader":
            from ir_env.rewards.sentiment import vader_compound

            value = np.array([vader_compound(self.vocab.detokenize(r)) for r in rows], dtype=np.float64)
        else:
            from ir_env.rewards.classifier import potential_of

            tokens = self.vocab.tokens  # a special token or a marker is no classifier word: its UNK, as in the metric
            value = np.zeros(len(rows), dtype=np.float64)
            filled = [i for i, r in enumerate(rows) if r]  # the empty output scores 0 by definition
            if filled:
                words = [[tokens[t] for t in rows[i]] for i in filled]
                value[filled] = potential_of(self.classifier().module.positive_probability(words))
        return attribute[ids] * value + 0.0

    def judges(self, outputs: Sequence[Sequence[int]], example_ids: Sequence[int], split: str = "valid") -> dict[str, np.ndarray]:
        """Held-out judges: ``score_outputs`` of the outputs under each scorer of ``judge_names``."""
        return {name: self.score_outputs(outputs, example_ids, split, scorer=name) for name in self.judge_names}


# ---------------------------------------------------------------------------------------------------
# Question answering.

#: SQuAD contexts have a long tail (up to 700 tokens): the default S covers 90% of training sources.
SQUAD_SOURCE_PERCENTILE = 90.0


class SquadTask(CorpusTask):
    """Answer a SQuAD v1.1 question about a Wikipedia paragraph (metric: SQuAD token F1).

    Example::

        which nfl team represented the afc at super bowl 50 ? <sep> super bowl 50 was an american football
        game ...  ->  denver broncos

    The source is the question, ``<sep>``, and the paragraph, or a window of it when the whole does not
    fit in S: the window holds the first answer, at an offset drawn from a hash of the question id (so
    the answer's place in the window tells nothing, and the choice is the same in every run). The
    reference is the first human answer; ``TokenF1`` scores one reference, so the official metric's
    maximum over all answers is not computed (it can only be higher). Tokens come from
    ``tokenize_words``, lower-cased by default, which keeps SQuAD's answer normalisation unchanged: for an
    answer without UNK, cut or window loss, the F1 of an output equals the official ``f1_score`` of its
    detokenised text against the raw answer. SQuAD's normalisation lower-cases, so lower-casing the
    tokens changes no score.

    Data: only the development set (48 articles, 10,570 questions) is in the data folder, so it is split
    by article: the sorted titles in a seeded permutation fill test, then valid, to 10% of the questions
    each; the rest is train. No paragraph is in two splits. The vocabulary comes from the training
    paragraphs (each once), questions and first answers; answers about unseen articles are often rare
    names, so many valid/test answers hold an UNK word that no policy can produce.

    Sizes with the defaults: 8,213 / 1,254 / 1,103 questions (37 / 5 / 6 articles); a vocabulary of
    14,750 tokens; S = 224 (from the 90th percentile of training sources; about 10% of the paragraphs
    are windowed); T = 24. About 98% of the answers are a token span of their source (the others start
    or end inside a word, such as "8" in "20–18").

    Args:
        data_dir: the data folder (holding ``squad/``); None reads ``$IR_DATA_DIR``.
        lowercase: lower-case the text before tokenising.
        min_freq, max_vocab, max_train, max_source_len, max_generation_len: as for ``Multi30kTask``.
    """

    name = "matching:squad"
    metric_name = "f1"
    MARKERS = (SEPARATOR,)
    SOURCE_PERCENTILE = SQUAD_SOURCE_PERCENTILE

    def __init__(
        self,
        data_dir: DataDir = None,
        lowercase: bool = True,
        min_freq: int = 2,
        max_vocab: int | None = None,
        max_train: int | None = None,
        max_source_len: int | None = None,
        max_generation_len: int | None = None,
    ):
        self._check_options(data_dir, min_freq, max_vocab, max_train, max_source_len, max_generation_len)
        self.lowercase = check_bool("lowercase", lowercase)
        records = read_squad(data_dir)
        by_split: dict[str, list[SquadRecord]] = {split: [] for split in SPLITS}
        for record, split in zip(records, assign_splits([r.title for r in records])):
            by_split[split].append(record)
        by_split["train"] = by_split["train"][: self.max_train]
        tokens = {text: tokenize_words(text, lowercase) for r in records for text in (r.context, r.question)}
        answers = {r.id: tokenize_words(r.answers[0], lowercase) for r in records}
        train_full = [(tokens[r.question] + [SEPARATOR] + tokens[r.context], answers[r.id]) for r in by_split["train"]]
        source_cap, _ = self._caps(train_full)
        pairs = {
            split: [(self._source(r, tokens, answers[r.id], source_cap), answers[r.id]) for r in by_split[split]]
            for split in SPLITS
        }
        self._source_cap = source_cap  # _build takes S from here: the windows were cut to it
        train_text = [tokens[c] for c in dict.fromkeys(r.context for r in by_split["train"])]
        train_text += [tokens[r.question] + answers[r.id] for r in by_split["train"]]
        words = frequent_words(train_text, self.min_freq, self.max_vocab, self.MARKERS)
        self._build(pairs, output_words=words, source_words=[])
        for split in SPLITS:  # a source is cut when its paragraph is windowed (or its question shortened)
            cut = sum(len(tokens[r.question]) + 1 + len(tokens[r.context]) > source_cap for r in by_split[split])
            self.truncated[split] = (cut, self.truncated[split][1])

    def _source(self, record: SquadRecord, tokens: dict[str, list[str]], answer: list[str], cap: int) -> list[str]:
        """Question, separator and the paragraph, or the window of the paragraph that holds the answer."""
        question = tokens[record.question][: cap // 2]
        context = tokens[record.context]
        width = cap - len(question) - 1
        if len(context) > width:
            prefix = record.context[: record.answer_starts[0]]
            first = len(tokenize_words(prefix, self.lowercase))
            last = min(first + len(answer), len(context))  # one past the answer
            lo, hi = max(0, last - width), min(first, len(context) - width)
            if lo <= hi:
                start = lo + zlib.crc32(record.id.encode()) % (hi - lo + 1)
            else:  # an answer longer than the window: show its beginning
                start = min(first, len(context) - width)
            context = context[start : start + width]
        return question + [SEPARATOR] + context

    def metric(self, examples: Examples, num_rows: int) -> PrefixMetric:
        from ir_env.rewards.f1 import TokenF1

        return TokenF1(examples, num_rows, self.vocab)


# ---------------------------------------------------------------------------------------------------
# Paraphrase.


def sentence_clusters(pairs: Sequence[tuple[str, str]]) -> list[int]:
    """For each (id1, id2) pair, the index of the first pair of its cluster (pairs linked by a shared id)."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent[root(a)] = root(b)
    first: dict[str, int] = {}
    return [first.setdefault(root(a), i) for i, (a, _) in enumerate(pairs)]


class MrpcTask(BleuCorpusTask):
    """Paraphrase an MRPC news sentence (metric: sentence BLEU against the human-judged paraphrase).

    Example::

        amrozi accused his brother , whom he called " the witness " , of deliberately distorting his
        evidence .  ->  referring to him as only " the witness " , amrozi accused his brother of
        deliberately distorting his evidence .

    Only the 2,753 pairs labelled paraphrase are used: sentence 1 is the source, sentence 2 the
    reference, tokenised (lower-cased by default) as in ``Multi30kTask``, with the same BLEU and the same
    equality with sacrebleu. Some sentences occur in several pairs, so pairs that share a sentence id
    form a cluster, and whole clusters are assigned to splits (seeded permutation; 10% test, 10% valid).
    The action mask allows every vocabulary word: a paraphrase may reuse any word of its source.

    Sizes with the defaults: 2,201 / 276 / 276 pairs; a vocabulary of 7,685 tokens; S = T = 40. With so
    little training text, about 12% of valid/test reference tokens are UNK.

    Judges: BLEU is the reward; ``judges(outputs, example_ids, split)`` scores finished outputs by held-out
    metrics of the same reference, so a policy that games n-gram overlap shows a gap between the two:

    - ``"chrf"``: sacrebleu's sentence chrF / 100, in [0, 1]; always reported.
    - ``"embedding"``: cosine similarity of all-MiniLM-L6-v2 sentence embeddings, in [-1, 1]
      (``ir_env.rewards.embedding``; an empty output scores 0). It needs the optional extra,
      ``pip install "instant-reward[embed]"``, and is reported when that is installed (or always with
      ``embedding_judge=True``, which raises ImportError here when it is not).

    Judges compare the detokenised output with the reference sentence as written (lower-cased when the
    task lower-cases), not with its token ids: no UNK and no cut at T, so even the reference's own ids
    may score below 1. The embedding judge costs a transformer pass per text (about 50 pairs per second
    on one CPU thread), so judges score finished outputs, not prefixes.

    Args:
        data_dir: the data folder (holding ``mrpc/``); None reads ``$IR_DATA_DIR``.
        lowercase: lower-case both sentences before tokenising (BLEU is then case-insensitive).
        min_freq, max_vocab, max_train, max_source_len, max_generation_len: as for ``Multi30kTask``.
        embedding_judge: None (default) judges by embedding similarity when the ``embed`` extra is
            installed; True always (ImportError naming the pip command if the extra is missing); False never.
        embedding_device: the torch device of the embedding judge, ``"cpu"`` or ``"cuda"``.
        bleu_point: as for ``Multi30kTask``.

    Attributes:
        judge_names: the judges ``judges`` reports, ``("chrf",)`` or ``("chrf", "embedding")``.
        reference_texts: split -> the reference sentences the judges read (as written, lower-cased when
            ``lowercase``), in example order.
    """

    name = "matching:mrpc"
    #: Every judge this task can report, in report order.
    JUDGES: tuple[str, ...] = ("chrf", "embedding")

    def __init__(
        self,
        data_dir: DataDir = None,
        lowercase: bool = True,
        min_freq: int = 2,
        max_vocab: int | None = None,
        max_train: int | None = None,
        max_source_len: int | None = None,
        max_generation_len: int | None = None,
        embedding_judge: bool | None = None,
        embedding_device: str = "cpu",
        bleu_point: Sequence[float] | None = None,
    ):
        self._check_options(data_dir, min_freq, max_vocab, max_train, max_source_len, max_generation_len)
        self._set_bleu_point(bleu_point)
        self.lowercase = check_bool("lowercase", lowercase)
        self._init_judges(embedding_judge, embedding_device)
        positive = [row for row in read_mrpc(data_dir) if row.label == 1]
        splits = assign_splits(sentence_clusters([(row.id1, row.id2) for row in positive]))
        pairs: dict[str, list[WordPair]] = {split: [] for split in SPLITS}
        self.reference_texts: dict[str, list[str]] = {split: [] for split in SPLITS}
        for row, split in zip(positive, splits):
            pairs[split].append((tokenize_13a(row.sentence1, lowercase), tokenize_13a(row.sentence2, lowercase)))
            self.reference_texts[split].append(row.sentence2.lower() if lowercase else row.sentence2)
        pairs["train"] = pairs["train"][: self.max_train]
        self.reference_texts["train"] = self.reference_texts["train"][: self.max_train]
        words = frequent_words((s + r for s, r in pairs["train"]), self.min_freq, self.max_vocab)
        self._build(pairs, output_words=words, source_words=[])
        self._check_bleu_ids()

    def _init_judges(self, embedding_judge: object, embedding_device: object) -> None:
        from ir_env.rewards.embedding import (
            check_device,
            check_embedding_installed,
            embedding_installed,
        )

        if embedding_judge is not None and not isinstance(embedding_judge, bool):
            raise TypeError(f"embedding_judge must be None, True or False, got {embedding_judge!r} "
                            f"({type(embedding_judge).__name__})")
        if not isinstance(embedding_device, str):
            raise TypeError(f"embedding_device must be a string such as 'cpu' or 'cuda', got {embedding_device!r} "
                            f"({type(embedding_device).__name__})")
        if embedding_judge:
            check_embedding_installed()  # asked for by name: a missing extra fails here, not in the first judging
        embedding = embedding_installed() if embedding_judge is None else embedding_judge
        self.embedding_device = check_device(embedding_device) if embedding else embedding_device
        self.judge_names: tuple[str, ...] = self.JUDGES if embedding else ("chrf",)

    def judges(self, outputs: Sequence[Sequence[int]], example_ids: Sequence[int], split: str = "valid") -> dict[str, np.ndarray]:
        """Held-out judges of finished outputs: judge name (``judge_names``) -> float64 scores (len(outputs),).

        Args:
            outputs: token ids of each output (an EOS and what follows it are ignored).
            example_ids: the example of ``split`` each output paraphrases (its reference is judged against).
            split: the split of ``example_ids``.
        """
        import sacrebleu

        references = self.reference_texts[check_split(split)]
        ids = np.asarray(example_ids, dtype=np.int64).reshape(-1)
        if len(ids) != len(outputs):
            raise ValueError(f"got {len(outputs)} outputs but {len(ids)} example_ids; pass one example id per output")
        if len(ids) and (ids.min() < 0 or ids.max() >= len(references)):
            raise ValueError(f"example_ids must lie in [0, {len(references)}) for split {split!r}, got {ids.tolist()}")
        texts = [self.vocab.detokenize(o) for o in outputs]  # stops at EOS
        wanted = [references[i] for i in ids.tolist()]
        scores = {"chrf": np.array([sacrebleu.sentence_chrf(h, [r]).score / 100.0 for h, r in zip(texts, wanted)],
                                   dtype=np.float64).reshape(-1)}
        if "embedding" in self.judge_names:
            from ir_env.rewards.embedding import embedding_similarity

            scores["embedding"] = embedding_similarity(texts, wanted, device=self.embedding_device)
        return scores
