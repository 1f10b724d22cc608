"""Built-in generated tasks: determinism, disjoint splits, sizes, caps, masks, bad input, and the
linguistic properties each generator promises (agreement and word order, VADER polarity, answerable
spans, recoverable cores)."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import string
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ir_env.tasks import matching, sentiment, translation
from ir_env.tasks.base import SPLITS, Task
from ir_env.tasks.matching import QATask, SummaryTask
from ir_env.tasks.sentiment import SentimentTask
from ir_env.tasks.translation import TranslationTask
from ir_env.tokenizer import BOS, EOS, NUM_SPECIAL, PAD, UNK

TASK_CLASSES = [TranslationTask, SentimentTask, QATask, SummaryTask]
DEFAULT_SIZES = {
    TranslationTask: (20_000, 1_000, 1_000),
    SentimentTask: (5_000, 500, 500),
    QATask: (10_000, 500, 500),
    SummaryTask: (10_000, 500, 500),
}
SMALL = {"num_train": 200, "num_valid": 30, "num_test": 30}
MAX_BUILD_SECONDS = 1.5


@functools.cache
def built(cls: type[Task]) -> tuple[Task, float]:
    """The task with default arguments, built once per test session, and the CPU seconds it took."""
    start = time.process_time()
    task = cls()
    return task, time.process_time() - start


def default(cls: type[Task]) -> Task:
    return built(cls)[0]


def rows(task: Task, split: str) -> list[tuple[list[int], list[int]]]:
    """(source ids, reference ids) of every example of ``split``, without padding."""
    ex = task.examples(split)
    return [
        (ex.source[i, : ex.source_len[i]].tolist(), ex.reference[i, : ex.reference_len[i]].tolist())
        for i in range(len(ex))
    ]


def words(task: Task, ids: list[int]) -> list[str]:
    return [task.vocab.tokens[i] for i in ids]


def fingerprint(task: Task) -> str:
    """A hash of every array of every split."""
    digest = hashlib.sha256()
    for split in SPLITS:
        ex = task.examples(split)
        for array in (ex.source, ex.source_len, ex.reference, ex.reference_len, ex.attribute):
            digest.update(array.tobytes())
    digest.update(" ".join(task.vocab.tokens).encode())
    return digest.hexdigest()


# -- the contract every task keeps -------------------------------------------------------------------


@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_default_build_is_fast(cls):
    _, seconds = built(cls)
    assert seconds < MAX_BUILD_SECONDS, f"{cls.__name__}() took {seconds:.2f} s of CPU time"


@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_default_split_sizes(cls):
    task = default(cls)
    assert tuple(len(task.examples(s)) for s in SPLITS) == DEFAULT_SIZES[cls]


@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_requested_split_sizes(cls):
    task = cls(seed=3, num_train=17, num_valid=5, num_test=9)
    assert [len(task.examples(s)) for s in SPLITS] == [17, 5, 9]


@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_same_seed_gives_identical_arrays(cls):
    assert fingerprint(cls(seed=7, **SMALL)) == fingerprint(cls(seed=7, **SMALL))


@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_other_seed_gives_other_examples(cls):
    a, b = cls(seed=0, **SMALL), cls(seed=1, **SMALL)
    assert a.vocab.tokens == b.vocab.tokens  # the vocabulary does not depend on the seed
    assert not np.array_equal(a.examples("train").source, b.examples("train").source)


def test_data_is_identical_in_another_process_with_another_hash_seed():
    code = (
        "from tests.test_tasks import TASK_CLASSES, SMALL, fingerprint\n"
        "print(' '.join(fingerprint(cls(seed=5, **SMALL)) for cls in TASK_CLASSES))"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [fingerprint(cls(seed=5, **SMALL)) for cls in TASK_CLASSES]


@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_splits_are_disjoint(cls):
    task = default(cls)
    keys = {split: {(tuple(s), tuple(r)) for s, r in rows(task, split)} for split in SPLITS}
    assert sum(len(k) for k in keys.values()) == sum(DEFAULT_SIZES[cls])  # distinct within a split too
    assert not keys["train"] & keys["valid"] and not keys["train"] & keys["test"] and not keys["valid"] & keys["test"]


@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_lengths_and_padding(cls):
    task = default(cls)
    for split in SPLITS:
        ex = task.examples(split)
        assert ex.source.shape[1] == task.max_source_len and ex.reference.shape[1] == task.max_generation_len
        assert ex.source.dtype == np.int64 and ex.reference.dtype == np.int64
        assert ex.source_len.min() >= 1 and ex.reference_len.min() >= 1  # references are never empty
        assert ex.source_len.max() <= task.max_source_len
        assert ex.reference_len.max() <= task.max_generation_len
        for array, lengths in ((ex.source, ex.source_len), (ex.reference, ex.reference_len)):
            inside = np.arange(array.shape[1])[None, :] < lengths[:, None]
            assert np.all(array[~inside] == PAD)
            assert not np.isin(array[inside], [PAD, BOS, EOS, UNK]).any()
            assert array.max() < len(task.vocab)


@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_action_mask_allows_references_and_eos_only_among_specials(cls):
    task = default(cls)
    mask = task.action_mask()
    assert mask.dtype == bool and mask.shape == (len(task.vocab),)
    assert mask[EOS] and not mask[[PAD, BOS, UNK]].any()
    for split in SPLITS:
        ex = task.examples(split)
        used = ex.reference[np.arange(ex.reference.shape[1])[None, :] < ex.reference_len[:, None]]
        assert mask[np.unique(used)].all()


@pytest.mark.parametrize("cls", TASK_CLASSES)
@pytest.mark.parametrize(
    ("keyword", "value"),
    [("num_train", 0), ("num_valid", -1), ("num_test", 2.5), ("num_train", "10"), ("seed", -1), ("seed", True)],
)
def test_bad_constructor_values_raise_naming_the_value(cls, keyword, value):
    with pytest.raises(ValueError, match=re.escape(keyword)) as error:
        cls(**{keyword: value})
    assert repr(value) in str(error.value)


@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_unknown_split_raises(cls):
    with pytest.raises(ValueError, match="'dev'"):
        cls(**SMALL).examples("dev")


@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_names_and_metrics(cls):
    task = default(cls)
    expected = {
        TranslationTask: ("translation", "bleu"),
        SentimentTask: ("sentiment", "vader"),
        QATask: ("matching:qa", "f1"),
        SummaryTask: ("matching:summary", "rouge_l"),
    }
    assert (task.name, task.metric_name) == expected[cls]
    assert task.name in task.describe()


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), num_train=st.integers(1, 40), cls=st.sampled_from(TASK_CLASSES))
def test_invariants_hold_for_any_seed(seed, num_train, cls):
    task = cls(seed=seed, num_train=num_train, num_valid=3, num_test=2)
    mask = task.action_mask()
    for split in SPLITS:
        for source, reference in rows(task, split):
            assert 1 <= len(source) <= task.max_source_len and 1 <= len(reference) <= task.max_generation_len
            assert mask[reference].all()


# -- translation ---------------------------------------------------------------------------------------


def test_translation_lexicon_has_300_pairs_of_every_class():
    lexicon = translation.build_lexicon()
    counts = {word_class: len(lemmas) for word_class, lemmas in lexicon.items()}
    assert sum(counts.values()) >= 300
    assert counts["noun"] >= 100 and counts["adjective"] >= 50 and counts["transitive"] + counts["intransitive"] >= 50
    assert min(counts[c] for c in ("adverb", "preposition", "determiner")) >= 15


def test_translation_vocabulary_is_joint_and_languages_do_not_collide():
    task = default(TranslationTask)
    assert set(task.source_words).isdisjoint(task.target_words)
    assert len(task.vocab) == NUM_SPECIAL + len(task.source_words) + len(task.target_words)
    assert all(re.fullmatch(r"[a-z]+", w) for w in task.target_words)
    mask = task.action_mask()
    assert not mask[[task.vocab.id(w) for w in task.source_words if w != "."]].any()
    assert mask[[task.vocab.id(w) for w in task.target_words]].all()


def test_translation_sizes_and_length_range():
    task = default(TranslationTask)
    all_rows = [r for split in SPLITS for r in rows(task, split)]
    lengths = np.array([len(s) for s, _ in all_rows])
    assert len(all_rows) >= 20_000
    assert lengths.min() >= 4 and lengths.max() <= 20 and task.max_source_len == 20
    assert (lengths <= 5).sum() > 100 and (lengths >= 16).sum() > 100  # the whole range is covered
    assert task.max_generation_len == max(len(r) for _, r in all_rows) + translation.GENERATION_MARGIN


def _target_analysis(task: TranslationTask) -> dict[int, tuple[str, int, int]]:
    """Target word id -> (word class, lemma index, form index)."""
    analysis = {}
    for word_class, lemmas in task.lexicon.items():
        for i, lemma in enumerate(lemmas):
            for form, word in enumerate(lemma.target):
                if word:
                    analysis[task.vocab.id(word)] = (word_class, i, form)
    return analysis


def test_translation_is_verb_final_with_agreement_and_noun_adjective_order():
    task = default(TranslationTask)
    analysis = _target_analysis(task)
    genders = [lemma.gender for lemma in task.lexicon["noun"]]
    verbs = ("transitive", "intransitive")
    for _, reference in rows(task, "train")[:3000]:
        tags = [analysis.get(t, ("period", 0, 0)) for t in reference]
        assert tags[-1][0] == "period" and tags[-2][0] in verbs  # SOV: the verb comes last
        assert sum(tag[0] in verbs for tag in tags) == 1
        # Subject-verb number agreement: the subject noun follows the first determiner.
        assert tags[0][0] == "determiner" and tags[1][0] == "noun" and tags[-2][2] == tags[1][2]
        for k, (word_class, lemma, form) in enumerate(tags):
            if word_class == "determiner":  # det' noun' adj'*, all agreeing in gender and number
                noun_class, noun, number = tags[k + 1]
                assert noun_class == "noun" and form == 2 * genders[noun] + number
                j = k + 2
                while j < len(tags) and tags[j][0] == "adjective":
                    assert tags[j][2] == form
                    j += 1
            if word_class == "adjective":
                assert tags[k - 1][0] in ("noun", "adjective")  # adjectives follow their noun


def test_translation_source_is_english_like():
    task = default(TranslationTask)
    source_class = {}
    for word_class, lemmas in task.lexicon.items():
        for lemma in lemmas:
            for word in lemma.source:
                source_class[word] = word_class
    vowel_initial = {w for w in source_class if w[0] in "aeiou"}
    for source, _ in rows(task, "train")[:3000]:
        ws = words(task, source)
        classes = [source_class.get(w, "other") for w in ws]
        assert classes[0] in ("determiner", "other")  # "the", "a" or "an"
        verb_at = [k for k, c in enumerate(classes) if c in ("transitive", "intransitive")]
        assert len(verb_at) == 1 and classes[verb_at[0] - 1] == "noun"  # SVO: the verb follows the subject
        for k, c in enumerate(classes[:-1]):
            if c == "adjective":
                assert classes[k + 1] in ("adjective", "noun")  # adjectives precede their noun
            if ws[k] == "a":
                assert ws[k + 1] not in vowel_initial


def test_translation_is_a_function_of_the_source_and_uses_plurals():
    task = default(TranslationTask)
    translation_of: dict[tuple[int, ...], tuple[int, ...]] = {}
    for split in SPLITS:
        for source, reference in rows(task, split):
            assert translation_of.setdefault(tuple(source), tuple(reference)) == tuple(reference)
    analysis = _target_analysis(task)
    forms = {analysis[t][1:] for ref in translation_of.values() for t in ref if analysis.get(t, ("",))[0] == "noun"}
    assert {number for _, number in forms} == {0, 1}
    assert all(lemma.target[0] != lemma.target[1] for lemma in task.lexicon["noun"])


# -- sentiment -----------------------------------------------------------------------------------------


def test_sentiment_vocabulary_holds_500_vader_words():
    task = default(SentimentTask)
    lexicon = sentiment.vader_lexicon()
    rated = [w for w in task.vocab.tokens if w in lexicon and w.isalpha() and w.islower()]
    assert len(rated) >= 500
    assert {".", ",", "!"} <= set(task.vocab.tokens)


def test_sentiment_template_words_are_vader_rated_with_the_right_sign():
    lexicon = sentiment.vader_lexicon()
    for polarity, slots in sentiment.SENTIMENT_WORDS.items():
        for slot, fillers in slots.items():
            for word in fillers:
                assert lexicon.get(word, 0) * polarity > 0, (slot, word, lexicon.get(word))
    neutral = sentiment.INTENSIFIERS + sentiment.ASPECTS + sentiment.MASS_ASPECTS
    neutral += tuple(w for prompt in sentiment.PROMPTS for w in prompt.split())
    assert not [w for w in neutral if lexicon.get(w, 0) != 0]


def test_sentiment_references_have_the_requested_vader_sign():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    task = default(SentimentTask)
    agree = total = 0
    for split in SPLITS:
        ex = task.examples(split)
        for i in range(len(ex)):
            text = task.vocab.detokenize(ex.reference[i, : ex.reference_len[i]])
            agree += analyzer.polarity_scores(text)["compound"] * ex.attribute[i] > 0
            total += 1
    assert agree / total >= 0.95


def test_sentiment_sources_are_polarity_token_then_prompt_and_balanced():
    task = default(SentimentTask)
    assert len(sentiment.PROMPTS) >= 30 and len(task.examples("train")) >= 5_000
    assert task.max_generation_len == 16
    positive, negative = task.vocab.id("<positive>"), task.vocab.id("<negative>")
    for split in SPLITS:
        ex = task.examples(split)
        assert set(ex.attribute.tolist()) == {1, -1} and abs(int(ex.attribute.sum())) <= 1
        assert np.array_equal(ex.source[:, 0], np.where(ex.attribute == 1, positive, negative))
        assert not np.isin(ex.source[:, 1:], [positive, negative]).any()
    prompts = {" ".join(words(task, s[1:])) for s, _ in rows(task, "train")}
    assert prompts <= set(sentiment.PROMPTS) and len(prompts) >= 30


def test_sentiment_mask_excludes_polarity_tokens():
    task = default(SentimentTask)
    mask = task.action_mask()
    assert not mask[task.vocab.id("<positive>")] and not mask[task.vocab.id("<negative>")]
    assert mask.sum() == len(task.vocab) - NUM_SPECIAL - 2 + 1  # every word, plus EOS


# -- matching ------------------------------------------------------------------------------------------


def _squad_normalize(text: str) -> str:
    """SQuAD v1.1's normalize_answer."""
    text = "".join(c for c in text.lower() if c not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


@pytest.mark.parametrize("cls", [QATask, SummaryTask])
def test_matching_words_normalise_token_by_token(cls):
    task = default(cls)
    output_words = [w for w, allowed in zip(task.vocab.tokens, task.action_mask()) if allowed and w != "<eos>"]
    assert all(re.fullmatch(r"[a-z0-9]+|[.?,]", w) for w in output_words)
    for _, reference in rows(task, "train")[:2000]:
        tokens = words(task, reference)
        per_token = " ".join(n for n in map(_squad_normalize, tokens) if n)
        assert per_token == _squad_normalize(" ".join(tokens))


def test_matching_entity_lists_are_disjoint():
    groups = [matching.NAMES, matching.CITIES, matching.JOBS, matching.COLOURS, matching.PETS, matching.PET_NAMES]
    groups.append(matching.AGES)
    flat = [w for g in groups for w in g]
    assert len(flat) == len(set(flat))


def test_qa_answer_is_a_span_of_the_context():
    task = default(QATask)
    sep = task.vocab.id(matching.SEPARATOR)
    assert task.max_source_len == 64 and task.max_generation_len == 8
    for split in SPLITS:
        for source, reference in rows(task, split):
            assert source.count(sep) == 1
            context = source[: source.index(sep)]
            assert 1 <= len(reference) <= 4
            assert any(context[k : k + len(reference)] == reference for k in range(len(context)))
            assert 3 <= words(task, context).count(".") <= 6
    assert len(task.examples("train")) >= 10_000


def _fact_key(sentence: list[str]) -> tuple[str, str, tuple[str, ...]]:
    """(kind, person, value) of a generated fact sentence, read back from its words."""
    person, verb, rest = sentence[0], sentence[1], sentence[2:-1]
    if verb == "is":
        if rest[0].isdigit():
            return "age", person, (rest[0],)
        return rest[0], person, (rest[-1],)  # "married to X", "friends with X"
    if verb == "works":
        return ("work", person, (rest[-1],)) if rest[0] == "with" else ("job", person, (rest[-1],))
    if verb == "has":
        return "pet", person, (rest[1], rest[-1])
    if verb == "drives":
        return "car", person, (rest[1],)
    return verb, person, tuple(rest[1:] if verb == "lives" else rest)


def test_qa_contexts_make_every_question_unambiguous():
    task = default(QATask)
    sep = task.vocab.id(matching.SEPARATOR)
    relations = ("work", "married", "friends")
    for source, _ in rows(task, "train")[:3000]:
        context = " ".join(words(task, source[: source.index(sep)]))
        facts = [_fact_key(s.split() + ["."]) for s in context.split(" .")[:-1]]
        stated = [(kind, person) for kind, person, _ in facts if kind not in relations]
        assert len(stated) == len(set(stated))  # one fact of each kind per person
        for kind in {kind for kind, _, _ in facts}:
            values = [w for k, _, value in facts if k == kind for w in value]
            if kind in relations:
                values += [person for k, person, _ in facts if k == kind]
            assert len(values) == len(set(values)), (kind, context)  # reverse questions have one answer


def test_summary_core_is_a_subsequence_recovered_by_dropping_fillers():
    task = default(SummaryTask)
    filler_words = {w for filler in matching.FILLERS for w in filler}
    for split in SPLITS:
        for source, reference in rows(task, split):
            src, core = words(task, source), words(task, reference)
            assert matching.MIN_CORE_LEN <= len(core) <= matching.MAX_CORE_LEN
            assert not filler_words & set(core)
            assert [w for w in src if w not in filler_words] == core  # so the core is a subsequence
            assert len(src) > len(core) and core[-1] == "."
    lengths = [len(r) for split in SPLITS for _, r in rows(task, split)]
    assert task.max_generation_len == max(lengths) + matching.SUMMARY_GENERATION_MARGIN


def test_summary_references_differ_between_splits():
    task = default(SummaryTask)
    cores = {split: {tuple(r) for _, r in rows(task, split)} for split in SPLITS}
    assert sum(len(c) for c in cores.values()) == sum(DEFAULT_SIZES[SummaryTask])
