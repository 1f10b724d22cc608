"""Text metrics (token F1, ROUGE-L, VADER) against their reference implementations, token by token.

Each metric is driven through random multi-row protocols (rows of different examples and lengths, pushed
in arbitrary subsets and orders, reset at random) and must equal, after every push and for every row, the
reference implementation run from scratch on ``vocab.detokenize`` of the row's prefix.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from rouge_score.rouge_scorer import RougeScorer
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from ir_env.rewards.base import PrefixMetric
from ir_env.rewards.f1 import TokenF1, normalize_answer, squad_f1
from ir_env.rewards.rouge import RougeL
from ir_env.rewards.sentiment import VaderCompound
from ir_env.tasks.base import Examples
from ir_env.tokenizer import BOS, EOS, PAD, UNK, Vocabulary

TOLERANCE = 1e-9
PROPERTY = settings(max_examples=200, deadline=None)

# Words that exercise normalisation: articles in both cases, closing punctuation that detokenize glues on
# ("'s" renormalises the word before it: "the 's" -> "thes"), words whose punctuation is deleted (F1) or
# splits them (ROUGE), a token that normalises to several words, non-ASCII, digits, and words that
# collide after normalisation ("don't" / "dont", "<unk>" / "unk", "U.S." / "us").
TEXT_WORDS = (
    "the a an The A cat Cat cats catss s ss thes 's . , ! ? ) ( don't dont U.S. us — x—a—y a—b —b "
    "café x_y 42 - unk good"
).split()
SENTIMENT_WORDS = (
    "good great bad terrible not very ! ? but GOOD BAD don't love hate kind of no :) . , the movie 's "
    "never so isn't at all least"
).split()

TEXT_VOCAB = Vocabulary(TEXT_WORDS)
SENTIMENT_VOCAB = Vocabulary(SENTIMENT_WORDS)
ROUGE = RougeScorer(["rougeL"], use_stemmer=False)
VADER = SentimentIntensityAnalyzer()


def official_squad_f1(prediction: str, ground_truth: str) -> float:
    """SQuAD v1.1 token F1 written afresh from the definition (independent of ``squad_f1``)."""

    def normalize(text: str) -> list[str]:
        text = text.lower().translate(str.maketrans("", "", string.punctuation))
        return re.sub(r"\b(a|an|the)\b", " ", text).split()

    pred, truth = normalize(prediction), normalize(ground_truth)
    same = sum((Counter(pred) & Counter(truth)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(truth)
    return 2 * precision * recall / (precision + recall)


def both_squad_f1(prediction: str, ground_truth: str) -> float:
    """``squad_f1``, after checking it against the test's own copy of the definition."""
    value = squad_f1(prediction, ground_truth)
    assert value == pytest.approx(official_squad_f1(prediction, ground_truth), abs=TOLERANCE)
    return value


def rouge_l(prediction: str, reference: str) -> float:
    return ROUGE.score(reference, prediction)["rougeL"].fmeasure


def make_examples(references: list[list[int]], attributes: list[int] | None = None) -> Examples:
    width = max(1, max(map(len, references)))
    sources = [np.array([UNK])] * len(references)
    refs = [np.array(r, dtype=np.int64) for r in references]
    return Examples.from_sequences(sources, refs, 1, width, None if attributes is None else np.array(attributes))


# --- one spec per metric: how to build it and what it must equal on a prefix -------------------------
@dataclass(frozen=True, repr=False)
class Spec:
    """A metric under test: how to build it, and the reference value of (prefix text, reference text, attribute)."""

    name: str
    vocab: Vocabulary
    build: Callable[[Examples, int], PrefixMetric]
    expected: Callable[[str, str, int], float]
    low: float  # the bottom of the metric's range; the top is 1

    def __repr__(self) -> str:
        return self.name


SPECS = [
    Spec("f1", TEXT_VOCAB, lambda ex, n: TokenF1(ex, n, TEXT_VOCAB), lambda p, r, a: both_squad_f1(p, r), 0.0),
    Spec("rouge_l", TEXT_VOCAB, lambda ex, n: RougeL(ex, n, TEXT_VOCAB), lambda p, r, a: rouge_l(p, r), 0.0),
    Spec(
        "vader",
        SENTIMENT_VOCAB,
        lambda ex, n: VaderCompound(ex, n, SENTIMENT_VOCAB, max_len=32),
        lambda p, r, a: a * VADER.polarity_scores(p)["compound"],
        -1.0,
    ),
]
SCORED = SPECS[:2]  # the metrics with a reference to reproduce


def word_ids(vocab: Vocabulary) -> list[int]:
    """Ids a reference may hold: UNK and every word."""
    return list(range(UNK, len(vocab)))


def pushable_ids(vocab: Vocabulary) -> list[int]:
    """Ids a policy may push: every id but EOS (PAD and BOS are invisible in the text)."""
    return [i for i in range(len(vocab)) if i != EOS]


@pytest.mark.parametrize("spec", SPECS, ids=repr)
@PROPERTY
@given(data=st.data())
def test_every_push_equals_the_reference_implementation(spec: Spec, data: st.DataObject) -> None:
    vocab = spec.vocab
    m = data.draw(st.integers(1, 4), label="examples")
    references = data.draw(st.lists(st.lists(st.sampled_from(word_ids(vocab)), max_size=8), min_size=m, max_size=m))
    attributes = data.draw(st.lists(st.sampled_from([-1, 1]), min_size=m, max_size=m))
    examples = make_examples(references, attributes)
    n = data.draw(st.integers(1, 5), label="rows")
    metric = spec.build(examples, n)

    example_of = data.draw(st.lists(st.integers(0, m - 1), min_size=n, max_size=n))
    assert np.array_equal(metric.reset(np.arange(n), np.array(example_of)), np.zeros(n))
    prefixes: list[list[int]] = [[] for _ in range(n)]

    def expected(row: int) -> float:
        e = example_of[row]
        prediction, reference = vocab.detokenize(prefixes[row]), vocab.detokenize(references[e])
        if spec.name == "f1":  # UNK is a word outside the vocabulary: it matches nothing on either side
            prediction = prediction.replace(vocab.tokens[UNK], "zzunkzz")
            reference = reference.replace(vocab.tokens[UNK], "zzoovzz")
        return spec.expected(prediction, reference, attributes[e])

    for _ in range(data.draw(st.integers(1, 20), label="operations")):
        order = data.draw(st.permutations(range(n)))
        rows = np.array(order[: data.draw(st.integers(1, n))], dtype=np.int64)
        if data.draw(st.integers(0, 4)) == 0:
            new = data.draw(st.lists(st.integers(0, m - 1), min_size=len(rows), max_size=len(rows)))
            assert np.array_equal(metric.reset(rows, np.array(new)), np.zeros(len(rows)))
            for r, e in zip(rows, new):
                example_of[r], prefixes[r] = e, []
        else:
            tokens = data.draw(st.lists(st.sampled_from(pushable_ids(vocab)), min_size=len(rows), max_size=len(rows)))
            phi = metric.push(rows, np.array(tokens, dtype=np.int64))
            for r, t in zip(rows, tokens):
                prefixes[r].append(t)
            for i, r in enumerate(rows):
                assert phi[i] == pytest.approx(expected(r), abs=TOLERANCE), (vocab.detokenize(prefixes[r]), r)
        # Rows not in this operation keep their values; every value stays in the metric's range.
        score = metric.score(np.arange(n))
        assert score == pytest.approx([expected(r) for r in range(n)], abs=TOLERANCE)
        assert np.all((spec.low <= score) & (score <= 1.0))


@pytest.mark.parametrize("spec", SCORED, ids=repr)
@PROPERTY
@given(data=st.data())
def test_the_reference_itself_scores_one(spec: Spec, data: st.DataObject) -> None:
    vocab = spec.vocab
    # without UNK: a reference UNK is a word outside the vocabulary, which no output matches
    reference = data.draw(st.lists(st.sampled_from(word_ids(vocab)[1:]), min_size=1, max_size=12))
    text = vocab.detokenize(reference)
    assume(spec.expected(text, text, 1) > 0)  # a reference of only articles and punctuation scores 0
    others = data.draw(st.lists(st.lists(st.sampled_from(word_ids(vocab)), max_size=12), max_size=2))
    metric = spec.build(make_examples([reference, *others]), 2)
    metric.reset(np.array([0, 1]), np.array([0, 0]))
    for t in reference:
        metric.push(np.array([0]), np.array([t]))
    assert metric.score(np.array([0, 1])) == pytest.approx([1.0, 0.0], abs=TOLERANCE)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_rouge_l_is_exact_on_references_longer_than_one_machine_word(data: st.DataObject) -> None:
    # The bit-parallel LCS keeps 64 reference positions per uint64 word and adds with carries across
    # words: references of 60-200 words from a few words (many repeated matches; multi-token and empty rouge tokens too) cross 1-4 words.
    words = [TEXT_VOCAB.id(w) for w in ("cat", "good", "the", "cats", "U.S.", "42", "don't", ".")]
    references = data.draw(st.lists(st.lists(st.sampled_from(words), min_size=60, max_size=200), min_size=1, max_size=3))
    metric = RougeL(make_examples(references), len(references), TEXT_VOCAB)
    rows = np.arange(len(references))
    metric.reset(rows, rows)
    prefix = data.draw(st.lists(st.sampled_from(words), min_size=1, max_size=220))
    for i, t in enumerate(prefix):
        phi = metric.push(rows, np.full(len(rows), t))
        if i % 10 == 9 or i == len(prefix) - 1:
            text = TEXT_VOCAB.detokenize(prefix[: i + 1])
            expected = [rouge_l(text, TEXT_VOCAB.detokenize(r)) for r in references]
            assert phi == pytest.approx(expected, abs=TOLERANCE), i


@pytest.mark.parametrize("spec", SPECS, ids=repr)
def test_reset_clears_a_row_and_leaves_the_others(spec: Spec) -> None:
    vocab = spec.vocab
    words = ["good", "the"] if spec.vocab is SENTIMENT_VOCAB else ["cat", "good", "'s"]
    ids = [vocab.id(w) for w in words]
    metric = spec.build(make_examples([ids, ids[::-1]], [1, -1]), 3)
    metric.reset(np.arange(3), np.array([0, 1, 0]))
    for t in ids:
        metric.push(np.arange(3), np.full(3, t))
    before = metric.score(np.arange(3))
    assert np.all(before != 0)

    assert metric.reset(np.array([1]), np.array([0])) == pytest.approx([0.0])
    after = metric.score(np.arange(3))
    assert after[[0, 2]] == pytest.approx(before[[0, 2]], abs=0)
    assert after[1] == 0.0
    metric.push(np.array([1]), np.array([ids[0]]))  # the reset row starts over against its new example
    assert metric.score(np.array([1]))[0] == pytest.approx(
        spec.expected(vocab.detokenize(ids[:1]), vocab.detokenize(ids), 1), abs=TOLERANCE
    )


@PROPERTY
@given(
    prediction=st.lists(
        st.sampled_from(["the", "a", "an", "The", " ", ".", "'", "s", "cat", "—", "é", "_", "1", "\t"])
    ).map("".join),
    ground_truth=st.text(alphabet=st.sampled_from("theanATHE .,'s-—_é1\n"), max_size=20),
)
def test_squad_f1_is_the_official_definition(prediction: str, ground_truth: str) -> None:
    expected = official_squad_f1(prediction, ground_truth)
    assert squad_f1(prediction, ground_truth) == pytest.approx(expected, abs=TOLERANCE)
    assert squad_f1(prediction, prediction) == (1.0 if normalize_answer(prediction) else 0.0)


@pytest.mark.parametrize(
    ("prediction", "reference", "f1"),
    [
        ("cat 's", "cats", 1.0),  # detokenised "cat's" normalises to "cats"
        ("the 's", "thes", 1.0),  # glued "'s" turns the article into a word
        ("cat 's 's", "catss", 1.0),
        ("cat . 's", "cats", 1.0),  # inert closing punctuation keeps the chunk open
        ("( 's", "s", 1.0),  # "(" is not glued: "( 's" -> "('s" -> "s"
        ("don't", "dont", 1.0),
        ("x—a—y", "—b", 0.0),
        ("the a an .", "the", 0.0),  # nothing survives normalisation
    ],
)
def test_f1_normalises_detokenised_text(prediction: str, reference: str, f1: float) -> None:
    vocab = TEXT_VOCAB
    metric = TokenF1(make_examples([list(vocab.encode(reference))]), 1, vocab)
    metric.reset(np.array([0]), np.array([0]))
    for t in vocab.encode(prediction):
        metric.push(np.array([0]), np.array([t]))
    assert metric.score(np.array([0]))[0] == pytest.approx(f1, abs=TOLERANCE)
    assert squad_f1(vocab.detokenize(vocab.encode(prediction)), reference) == pytest.approx(f1, abs=TOLERANCE)


@pytest.mark.parametrize("reference", ["unk", "<unk>", "cat <unk>"])
def test_an_output_unk_matches_no_reference_word_not_even_unk(reference: str) -> None:
    """UNK stands for a word outside the vocabulary: writing it must not earn F1, although "<unk>" and "unk"
    normalise to the same text; the reference's UNK still counts towards its length."""
    vocab = TEXT_VOCAB
    metric = TokenF1(make_examples([list(vocab.encode(reference))]), 1, vocab)
    metric.reset(np.array([0]), np.array([0]))
    for t in vocab.encode("cat <unk>"):
        metric.push(np.array([0]), np.array([t]))
    expected = 0.5 if reference == "cat <unk>" else 0.0  # "cat" matches: precision 1/2, recall 1/2
    assert metric.score(np.array([0]))[0] == pytest.approx(expected, abs=TOLERANCE)


def test_rouge_splits_tokens_like_rouge_score() -> None:
    vocab = TEXT_VOCAB
    metric = RougeL(make_examples([list(vocab.encode("don t")), list(vocab.encode("s"))]), 2, vocab)
    metric.reset(np.array([0, 1]), np.array([0, 1]))
    # "don't" is two rouge tokens, "don t" (both unknown: "<unk> <unk>") is "unk unk"; "U.S." is "u s".
    phi = metric.push(np.array([0, 1]), np.array([vocab.id("don't"), vocab.id("U.S.")]))
    assert phi == pytest.approx([0.0, 2 / 3], abs=TOLERANCE)
    metric.reset(np.array([0]), np.array([1]))
    metric.push(np.array([0]), np.array([vocab.id("cat")]))
    assert metric.push(np.array([0]), np.array([vocab.id("'s")]))[0] == pytest.approx(2 / 3, abs=TOLERANCE)


def test_vader_counts_cache_hits_and_scores_shared_prefixes_alike() -> None:
    vocab = SENTIMENT_VOCAB
    metric = VaderCompound(make_examples([[vocab.id("good")]] * 2, [1, -1]), 4, vocab)
    metric.reset(np.arange(4), np.array([0, 1, 0, 1]))
    hits = metric.cache.hits
    phi = metric.push(np.arange(4), np.full(4, vocab.id("love")))
    assert metric.cache.hits >= hits + 3  # one VADER call at most for four identical prefixes
    assert phi == pytest.approx(np.array([1, -1, 1, -1]) * VADER.polarity_scores("love")["compound"])


def test_vader_rejects_bad_attributes_and_long_prefixes() -> None:
    vocab = SENTIMENT_VOCAB
    with pytest.raises(ValueError, match="attribute"):
        VaderCompound(make_examples([[vocab.id("good")]], [0]), 1, vocab)
    metric = VaderCompound(make_examples([[vocab.id("good")]], [1]), 1, vocab, max_len=2)
    metric.reset(np.array([0]), np.array([0]))
    metric.push(np.array([0]), np.array([vocab.id("very")]))
    metric.push(np.array([0]), np.array([vocab.id("good")]))
    with pytest.raises(ValueError, match="max_len=2"):
        metric.push(np.array([0]), np.array([vocab.id("!")]))


def test_special_ids_are_invisible() -> None:
    vocab = TEXT_VOCAB
    ref = list(vocab.encode("the cat"))
    for metric in (TokenF1(make_examples([ref]), 1, vocab), RougeL(make_examples([ref]), 1, vocab)):
        metric.reset(np.array([0]), np.array([0]))
        for t in (BOS, PAD, vocab.id("the"), PAD, vocab.id("cat")):
            phi = metric.push(np.array([0]), np.array([t]))
        assert phi[0] == pytest.approx(1.0)  # the text is "the cat", as if BOS and PAD were never pushed


def test_f1_finds_every_word_of_a_long_reference() -> None:
    # Long references of scattered word ids make hash collisions (linear probing) certain.
    vocab = Vocabulary([f"w{i}" for i in range(2000)])
    rng = np.random.default_rng(0)
    references = [sorted(rng.choice(np.arange(UNK + 1, len(vocab)), 200, replace=False).tolist()) for _ in range(8)]
    metric = TokenF1(make_examples(references), 2, vocab)
    metric.reset(np.array([0, 1]), np.array([3, 5]))
    prefixes: list[list[int]] = [[], []]
    for i in range(200):
        tokens = [references[3][-1 - i], references[5][i]]
        phi = metric.push(np.array([0, 1]), np.array(tokens))
        for row, e in ((0, 3), (1, 5)):
            prefixes[row].append(tokens[row])
            truth = squad_f1(vocab.detokenize(prefixes[row]), vocab.detokenize(references[e]))
            assert phi[row] == pytest.approx(truth, abs=TOLERANCE)
    assert phi == pytest.approx([1.0, 1.0])
