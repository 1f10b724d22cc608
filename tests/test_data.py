"""Real data: the readers on the shipped files and on broken ones, the tokenisers, and the four real-data
tasks (sizes, splits, the env checkers, reference scores and metric parity with independent references).

The shipped files are found through IR_DATA_DIR or at ../shared/data next to the repository; tests that
need them skip when that folder is absent. Tasks are built with a small ``max_train`` to stay fast.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import string
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import sacrebleu
from gymnasium.utils.env_checker import check_env as gym_check_env
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from shipped import shipped
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from ir_env import EOS, InstantRewardEnv
from ir_env.tasks import DATA_TASKS, TASKS, make_task
from ir_env.tasks.base import SPLITS
from ir_env.tasks.data import (
    EXPECTED_FILES,
    DataError,
    frequent_words,
    length_cap,
    read_mrpc,
    read_multi30k,
    read_squad,
    read_sst2,
    resolve_data_dir,
    tokenize_13a,
    tokenize_words,
)
from ir_env.tasks.real import MULTI30K_FILES, assign_splits, sentence_clusters
from ir_env.tokenizer import BOS, NUM_SPECIAL, PAD, UNK, Vocabulary

REAL_TASKS = sorted(DATA_TASKS)
#: Small builds: the first 300 training examples (vocabulary and caps come from them).
SMALL = {"max_train": 300}
PUNCTUATION = frozenset(string.punctuation)


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return shipped()


def small_task(name: str, data_dir: Path, **kwargs):
    return make_task(name, data_dir=str(data_dir), **{**SMALL, **kwargs})


def rows(examples, i: int) -> tuple[list[int], list[int]]:
    """(source ids, reference ids) of example ``i`` without padding."""
    return (
        examples.source[i, : examples.source_len[i]].tolist(),
        examples.reference[i, : examples.reference_len[i]].tolist(),
    )


def play(env: InstantRewardEnv, actions: list[int], example: int) -> tuple[list[float], dict]:
    """Reset to ``example``, step through ``actions`` until the episode ends; (rewards, last info)."""
    env.reset(seed=0, options={"example_index": example})
    rewards, info = [], {}
    for a in actions:
        _, r, terminated, truncated, info = env.step(a)
        rewards.append(r)
        if terminated or truncated:
            break
    return rewards, info


def official_f1(prediction: str, truth: str) -> float:
    """SQuAD v1.1 token F1 (evaluate-v1.1.py), written out again here as the independent reference."""

    def normalize(s: str) -> list[str]:
        s = "".join(ch for ch in s.lower() if ch not in PUNCTUATION)
        return re.sub(r"\b(a|an|the)\b", " ", s).split()

    p, t = normalize(prediction), normalize(truth)
    same = sum((Counter(p) & Counter(t)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(t)
    return 2 * precision * recall / (precision + recall)


# -- readers on the shipped files -------------------------------------------------------------------


@pytest.mark.parametrize(("split", "count"), [("train", 29000), ("val", 1014), ("test_2016_flickr", 1000)])
def test_multi30k_reader_gives_aligned_pairs(data_dir, split, count):
    pairs = read_multi30k(data_dir, split)
    assert len(pairs) == count
    assert all(en and de and en == en.strip() and "\n" not in en + de for en, de in pairs)
    if split == "val":
        assert pairs[0] == (
            "A group of men are loading cotton onto a truck",
            "Eine Gruppe von Männern lädt Baumwolle auf einen Lastwagen",
        )


def test_sst2_reader_counts_and_labels(data_dir):
    train, dev = read_sst2(data_dir, "train"), read_sst2(data_dir, "dev")
    assert len(train) == 67349 and sum(label for _, label in train) == 37569
    assert len(dev) == 872 and sum(label for _, label in dev) == 444
    assert dev[0] == ("it 's a charming and often affecting journey .", 1)  # GLUE's trailing space stripped


def test_squad_reader_records_and_answer_spans(data_dir):
    records = read_squad(data_dir)
    assert len(records) == 10570
    assert len({r.title for r in records}) == 48 and len({r.context for r in records}) == 2067
    assert len({r.id for r in records}) == 10570
    for r in records:
        assert r.answers and len(r.answers) == len(r.answer_starts)
        for text, start in zip(r.answers, r.answer_starts):
            assert r.context[start : start + len(text)] == text


def test_mrpc_reader_handles_bom_crlf_and_quotes(data_dir):
    rows_ = read_mrpc(data_dir)
    assert len(rows_) == 4076 and sum(r.label for r in rows_) == 2753
    first = rows_[0]
    assert (first.label, first.id1, first.id2) == (1, "702876", "702977")
    assert first.sentence1.startswith('Amrozi accused his brother, whom he called "the witness"')
    assert not any("\r" in r.sentence2 or "\ufeff" in r.sentence1 for r in rows_)


# -- readers on broken files ------------------------------------------------------------------------


def write(path: Path, data: bytes | str) -> Path:
    """Write ``data`` (gzipped when the name ends in .gz), creating folders; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def multi30k_val(root: Path, en: bytes | str, de: bytes | str) -> tuple[Path, Path]:
    return write(root / "multi30k" / "val.en.gz", en), write(root / "multi30k" / "val.de.gz", de)


def test_multi30k_unequal_line_counts_name_both_files_and_counts(tmp_path):
    en, de = multi30k_val(tmp_path, "a dog\na cat\na cow\n", "ein Hund\neine Katze\n")
    with pytest.raises(DataError) as error:
        read_multi30k(tmp_path, "val")
    message = str(error.value)
    assert str(en) in message and str(de) in message and "3 lines" in message and "has 2" in message


def test_multi30k_truncated_gzip_names_the_file(tmp_path):
    en, _ = multi30k_val(tmp_path, "a dog\n" * 200, "ein Hund\n" * 200)
    en.write_bytes(en.read_bytes()[:-12])  # drop the end-of-stream marker
    with pytest.raises(DataError, match=re.escape(str(en)) + ".*truncated"):
        read_multi30k(tmp_path, "val")


def test_multi30k_garbage_instead_of_gzip_names_the_file(tmp_path):
    en, _ = multi30k_val(tmp_path, "a dog\n", "ein Hund\n")
    en.write_bytes(b"this is not gzip data at all")
    with pytest.raises(DataError, match=re.escape(str(en)) + ".*not a valid gzip"):
        read_multi30k(tmp_path, "val")


def test_bad_utf8_names_the_file_and_line(tmp_path):
    _, de = multi30k_val(tmp_path, "a dog\na cat\na cow\n", b"ein Hund\neine Katze\nK\xfch\n")  # Latin-1 ue
    with pytest.raises(DataError, match=re.escape(f"{de}, line 3: not valid UTF-8")):
        read_multi30k(tmp_path, "val")


def test_empty_line_names_the_file_and_line(tmp_path):
    en, _ = multi30k_val(tmp_path, "a dog\n  \na cow\n", "ein Hund\neine Katze\neine Kuh\n")
    with pytest.raises(DataError, match=re.escape(f"{en}, line 2: the line is empty")):
        read_multi30k(tmp_path, "val")


def test_empty_split_is_an_error(tmp_path):
    multi30k_val(tmp_path, "", "")
    with pytest.raises(DataError, match="no examples"):
        read_multi30k(tmp_path, "val")
    dev = write(tmp_path / "sst2" / "dev.tsv", "sentence\tlabel\n")
    with pytest.raises(DataError, match=re.escape(str(dev)) + ".*no examples"):
        read_sst2(tmp_path, "dev")


def test_missing_file_names_the_path_and_the_expected_files(tmp_path):
    write(tmp_path / "multi30k" / "val.en.gz", "a dog\n")
    with pytest.raises(DataError) as error:
        read_multi30k(tmp_path, "val")
    message = str(error.value)
    assert str(tmp_path / "multi30k" / "val.de.gz") in message and "does not exist" in message
    assert all(name in message for name in EXPECTED_FILES["multi30k"])


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("a fine film \t1\nno label here\n", 3, "expected 2 tab-separated fields"),
        ("a fine film \t1\na dull film \t2\n", 3, "label '2' is not 0 or 1"),
        ("a fine film \tpositive\n", 2, "label 'positive' is not 0 or 1"),
        (" \t1\n", 2, "the sentence is empty"),
    ],
)
def test_sst2_bad_rows_name_the_file_and_line(tmp_path, body, line, message):
    dev = write(tmp_path / "sst2" / "dev.tsv", "sentence\tlabel\n" + body)
    with pytest.raises(DataError, match=re.escape(f"{dev}, line {line}: {message}")):
        read_sst2(tmp_path, "dev")


def test_sst2_wrong_header_is_reported(tmp_path):
    train = write(tmp_path / "sst2" / "train.tsv.gz", "text\tlabel\na fine film \t1\n")
    with pytest.raises(DataError, match=re.escape(f"{train}, line 1: expected the header")):
        read_sst2(tmp_path, "train")


MRPC_HEADER = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\r\n"


def test_mrpc_small_file_parses_with_quotes_and_crlf(tmp_path):
    write(tmp_path / "mrpc" / "msr_paraphrase_train.txt", MRPC_HEADER + '1\t1\t2\tHe said "no".\tHe said no.\r\n')
    (row,) = read_mrpc(tmp_path)
    assert (row.label, row.id1, row.id2, row.sentence1, row.sentence2) == (1, "1", "2", 'He said "no".', "He said no.")


@pytest.mark.parametrize(
    ("row", "message"),
    [("1\t1\t2\tonly one sentence\r\n", "expected 5 tab-separated fields"), ("x\t1\t2\ta\tb\r\n", "label 'x'")],
)
def test_mrpc_bad_rows_name_the_file_and_line(tmp_path, row, message):
    path = write(tmp_path / "mrpc" / "msr_paraphrase_train.txt", MRPC_HEADER + "0\t1\t2\ta\tb\r\n" + row)
    with pytest.raises(DataError, match=re.escape(f"{path}, line 3: {message}")):
        read_mrpc(tmp_path)


def squad_json(qa: dict) -> str:
    return json.dumps(
        {"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "Paris is big.", "qas": [qa]}]}]}
    )


@pytest.mark.parametrize("missing", ["answers", "question", "id"])
def test_squad_missing_key_is_named(tmp_path, missing):
    qa = {"id": "q1", "question": "What is big?", "answers": [{"text": "Paris", "answer_start": 0}]}
    del qa[missing]
    path = write(tmp_path / "squad" / "dev-v1.1.json.gz", squad_json(qa))
    with pytest.raises(DataError, match=re.escape(f"{path}: data[0].paragraphs[0].qas[0] has no key {missing!r}")):
        read_squad(tmp_path)


def test_squad_wrong_type_and_bad_json_are_reported(tmp_path):
    qa = {"id": "q1", "question": "What is big?", "answers": [{"text": "Paris", "answer_start": "0"}]}
    path = write(tmp_path / "squad" / "dev-v1.1.json.gz", squad_json(qa))
    with pytest.raises(DataError, match=re.escape("answers[0]['answer_start'] is a str, expected a int")):
        read_squad(tmp_path)
    write(path, '{"data": [\n{"title": }')
    with pytest.raises(DataError, match=re.escape(f"{path}, line 2: not valid JSON")):
        read_squad(tmp_path)


def test_no_data_folder_tells_how_to_give_one(monkeypatch, tmp_path):
    monkeypatch.delenv("IR_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="pass data_dir=.*--data-dir.*IR_DATA_DIR"):
        resolve_data_dir(None)
    with pytest.raises(DataError, match="does not exist or is not a folder"):
        resolve_data_dir(tmp_path / "nowhere")
    monkeypatch.setenv("IR_DATA_DIR", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path


# -- tokenisers, vocabulary cuts, caps, split assignment ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ('A man\'s t-shirt, 1.5 m. "Hi"!', ["a", "man's", "t-shirt", ",", "1.5", "m", ".", '"', "hi", '"', "!"]),
        ("(U.S.-born) x/y &amp; 3-4", ["(", "u", ".", "s", ".", "-born", ")", "x", "/", "y", "&", "3", "-", "4"]),
    ],
)
def test_tokenize_13a_examples(text, tokens):
    assert tokenize_13a(text, lowercase=True) == tokens


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ('"(U.S.-born)", he said.', ['"', "(", "U.S.-born", ")", '"', ",", "he", "said", "."]),
        ("Denver's 2½ sacks ... 20–18", ["Denver's", "2½", "sacks", ".", ".", ".", "20–18"]),
    ],
)
def test_tokenize_words_examples(text, tokens):
    assert tokenize_words(text) == tokens


def test_tokenize_13a_equals_sacrebleu_and_is_idempotent(data_dir):
    sacrebleu_13a = Tokenizer13a()
    for split in ("val", "test_2016_flickr"):
        for sentence in (s for pair in read_multi30k(data_dir, split) for s in pair):
            tokens = tokenize_13a(sentence, lowercase=True)
            assert tokens == sacrebleu_13a(sentence.lower()).split()
            assert tokenize_13a(" ".join(tokens)) == tokens


def test_tokenize_words_keeps_every_squad_answer_normalisation(data_dir):
    answers = [r.answers[0] for r in read_squad(data_dir)]
    tokens = [tokenize_words(a, lowercase=True) for a in answers]
    vocab = Vocabulary(sorted({t for ts in tokens for t in ts}))
    for answer, ts in zip(answers, tokens):
        assert official_f1(vocab.detokenize(vocab.encode(ts)), answer) == official_f1(answer, answer)  # 1, or 0 if
        # the answer normalises to nothing


def test_frequent_words_cut_order_and_exclusions():
    sentences = [["b", "a", "<unk>", "<sep>"], ["a", "c", "b", "<sep>"], ["a", "d"]]
    assert frequent_words(sentences, min_freq=2, exclude=["<sep>"]) == ["a", "b"]
    assert frequent_words(sentences, min_freq=1) == ["a", "<sep>", "b", "c", "d"]  # ties by spelling
    assert frequent_words(sentences, min_freq=1, max_size=3, exclude=["<sep>"]) == ["a", "b", "c"]


def test_length_cap_rounds_the_percentile_up_to_a_multiple_of_8():
    assert length_cap([3] * 99 + [100], 99) == 8
    assert length_cap(list(range(1, 101)), 99) == 104
    assert length_cap([1], 99) == 8


def test_assign_splits_keeps_groups_whole_and_holds_out_a_tenth():
    groups = [f"g{i % 37}" for i in range(1000)]
    splits = assign_splits(groups)
    assert splits == assign_splits(list(groups))  # deterministic
    split_of = {}
    for g, s in zip(groups, splits):
        assert split_of.setdefault(g, s) == s
    counts = Counter(splits)
    assert counts["test"] >= 100 and counts["valid"] >= 100 and counts["train"] >= 700


def test_sentence_clusters_join_pairs_through_shared_ids():
    assert sentence_clusters([("a", "b"), ("c", "d"), ("b", "e"), ("e", "c"), ("x", "y")]) == [0, 0, 0, 0, 4]


# -- the real-data tasks ----------------------------------------------------------------------------


def test_real_tasks_are_registered():
    assert set(REAL_TASKS) == {"translation:multi30k", "sentiment:sst2", "matching:squad", "matching:mrpc"}
    assert set(REAL_TASKS) <= set(TASKS)


@pytest.mark.parametrize("name", REAL_TASKS)
def test_task_without_data_folder_says_how_to_give_one(monkeypatch, name):
    monkeypatch.delenv("IR_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="--data-dir.*IR_DATA_DIR"):
        TASKS[name][0](**SMALL)


@pytest.mark.parametrize("name", REAL_TASKS)
def test_task_arrays_caps_and_mask(data_dir, name):
    task = small_task(name, data_dir)
    assert task.name == name and len(task.examples("train")) == 300
    mask = task.action_mask()
    assert mask[EOS] and not mask[[PAD, BOS, UNK]].any()
    for split in SPLITS:
        ex = task.examples(split)
        assert ex.source.shape == (len(ex), task.max_source_len)
        assert ex.reference.shape == (len(ex), task.max_generation_len)
        assert ex.source_len.min() >= 1 and ex.reference_len.min() >= 1
        for array, lengths in ((ex.source, ex.source_len), (ex.reference, ex.reference_len)):
            inside = np.arange(array.shape[1])[None, :] < lengths[:, None]
            assert np.all(array[~inside] == PAD) and not np.isin(array[inside], [PAD, BOS, EOS]).any()
        used = ex.reference[
            (np.arange(ex.reference.shape[1])[None, :] < ex.reference_len[:, None]) & (ex.reference != UNK)
        ]
        assert mask[np.unique(used)].all(), "every reference token but UNK is an allowed action"
    assert name in task.describe()


@pytest.mark.parametrize("name", REAL_TASKS)
def test_gymnasium_and_sb3_checkers_pass(data_dir, name):
    env = InstantRewardEnv(task=small_task(name, data_dir))
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(InstantRewardEnv(task=small_task(name, data_dir)), warn=False)


@pytest.mark.parametrize("name", REAL_TASKS)
def test_following_the_reference_scores_the_maximum(data_dir, name):
    # MRPC's 300 first pairs leave no valid reference free of UNK: build it whole (it is small)
    task = small_task(name, data_dir, **({"max_train": None} if name == "matching:mrpc" else {}))
    env = InstantRewardEnv(task=task, split="valid")
    ex = task.examples("valid")
    clean = [i for i in range(len(ex)) if UNK not in rows(ex, i)[1]][:5]
    assert len(clean) == 5
    for i in clean:
        reference = rows(ex, i)[1]
        rewards, info = play(env, reference + [EOS], i)
        assert sum(rewards) == pytest.approx(info["score"], abs=1e-9)
        if task.metric_name == "vader":
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            compound = SentimentIntensityAnalyzer().polarity_scores(task.vocab.detokenize(reference))["compound"]
            assert info["score"] == pytest.approx(ex.attribute[i] * compound, abs=1e-9)
        else:
            assert info["score"] == pytest.approx(1.0, abs=1e-9)


def random_outputs(task, ex, i: int, rng: np.random.Generator, count: int) -> list[list[int]]:
    """Outputs mixing the reference of example ``i`` (edited) with random allowed words."""
    allowed = np.flatnonzero(task.action_mask())
    allowed = allowed[allowed != EOS]
    reference = [t for t in rows(ex, i)[1] if t != UNK]
    outputs = []
    for _ in range(count):
        out = [t if rng.random() < 0.7 else int(rng.choice(allowed)) for t in reference if rng.random() < 0.9]
        outputs.append(out[: task.max_generation_len] or [int(rng.choice(allowed))])
    return outputs


def score(env: InstantRewardEnv, output: list[int], example: int) -> float:
    return play(env, output + [EOS], example)[1]["score"]


@pytest.mark.parametrize("name", ["translation:multi30k", "matching:mrpc"])
def test_bleu_equals_sacrebleu_on_words_and_on_the_raw_reference(data_dir, name):
    task = small_task(name, data_dir)
    env = InstantRewardEnv(task=task, split="valid")
    ex = task.examples("valid")
    if name == "translation:multi30k":
        raw = [de for _, de in read_multi30k(data_dir, MULTI30K_FILES["valid"])]
    else:
        positive = [r for r in read_mrpc(data_dir) if r.label == 1]
        splits = assign_splits(sentence_clusters([(r.id1, r.id2) for r in positive]))
        raw = [r.sentence2 for r, s in zip(positive, splits) if s == "valid"]
    assert len(raw) == len(ex)
    rng = np.random.default_rng(0)
    tokens = task.vocab.tokens
    checked = 0
    for i in range(12):
        if len(tokenize_13a(raw[i])) > task.max_generation_len:
            continue
        reference_words = " ".join(tokens[t] for t in rows(ex, i)[1])
        for output in random_outputs(task, ex, i, rng, 4):
            words = " ".join(tokens[t] for t in output)
            value = score(env, output, i)
            assert value == pytest.approx(
                sacrebleu.sentence_bleu(words, [reference_words], tokenize="none").score / 100, abs=1e-9
            )
            assert value == pytest.approx(
                sacrebleu.sentence_bleu(words, [raw[i]], lowercase=True).score / 100, abs=1e-9
            )
            checked += value > 0
    assert checked >= 10, "the comparison covers non-zero scores"


def test_squad_f1_equals_the_official_formula_on_the_raw_answer(data_dir):
    task = small_task("matching:squad", data_dir)
    env = InstantRewardEnv(task=task, split="valid")
    ex = task.examples("valid")
    records = read_squad(data_dir)
    answers = [r.answers[0] for r, s in zip(records, assign_splits([r.title for r in records])) if s == "valid"]
    rng = np.random.default_rng(1)
    checked = 0
    for i in range(len(ex)):
        reference = rows(ex, i)[1]
        if UNK in reference or len(tokenize_words(answers[i])) > task.max_generation_len:
            continue  # the raw answer is then not what the tokens spell
        for output in random_outputs(task, ex, i, rng, 3):
            expected = official_f1(task.vocab.detokenize(output), answers[i])
            assert score(env, output, i) == pytest.approx(expected, abs=1e-9)
        checked += 1
        if checked == 10:
            break
    assert checked == 10


def test_sst2_prompts_references_and_polarity(data_dir):
    task = small_task("sentiment:sst2", data_dir)
    labelled = small_task("sentiment:sst2", data_dir, polarity="label")
    dev = read_sst2(data_dir, "dev")
    halves = {"valid": dev[: len(dev) // 2], "test": dev[len(dev) // 2 :]}
    for split, rows_ in halves.items():
        kept = [(s, label) for s, label in rows_ if len(s.split()) >= 8]
        ex, ex_labelled = task.examples(split), labelled.examples(split)
        assert len(ex) == len(kept) and np.all(ex.attribute == 1)
        assert ex_labelled.attribute.tolist() == [1 if label else -1 for _, label in kept]
        source, reference = rows(ex, 0)
        assert task.vocab.tokens[source[0]] == "<positive>" and len(source) == 1 + 5
        words = kept[0][0].split()
        expected = [w if w in task.vocab else "<unk>" for w in words]
        assert [task.vocab.tokens[t] for t in source[1:] + reference] == expected[: 5 + task.max_generation_len]
    assert not task.action_mask()[[task.vocab.id("<positive>"), task.vocab.id("<negative>")]].any()


def test_squad_splits_share_no_article_and_sources_hold_the_answer(data_dir):
    task = small_task("matching:squad", data_dir)
    records = read_squad(data_dir)
    splits = assign_splits([r.title for r in records])
    titles = {s: {r.title for r, x in zip(records, splits) if x == s} for s in SPLITS}
    assert (
        not titles["train"] & titles["valid"]
        and not titles["train"] & titles["test"]
        and not titles["valid"] & titles["test"]
    )
    sep = task.vocab.id("<sep>")
    for split in ("valid", "test"):
        ex = task.examples(split)
        assert task.truncated[split][0] > 0, "some paragraphs are windowed"
        spans = 0
        for i in range(len(ex)):
            source, reference = rows(ex, i)
            assert source.count(sep) == 1
            context = source[source.index(sep) + 1 :]
            spans += any(context[k : k + len(reference)] == reference for k in range(len(context)))
        assert spans / len(ex) > 0.97


def test_mrpc_splits_share_no_sentence(data_dir):
    positive = [r for r in read_mrpc(data_dir) if r.label == 1]
    splits = assign_splits(sentence_clusters([(r.id1, r.id2) for r in positive]))
    split_of: dict[str, str] = {}
    for r, s in zip(positive, splits):
        for sentence_id in (r.id1, r.id2):
            assert split_of.setdefault(sentence_id, s) == s
    task = make_task("matching:mrpc", data_dir=str(data_dir))
    assert [len(task.examples(s)) for s in SPLITS] == [Counter(splits)[s] for s in SPLITS] == [2201, 276, 276]


def test_multi30k_vocabulary_is_joint_and_the_mask_allows_german_words(data_dir):
    task = small_task("translation:multi30k", data_dir)
    assert task.lowercase and len(task.vocab) > NUM_SPECIAL + len(task.output_words)  # English words too
    mask = task.action_mask()
    assert mask.sum() == len(task.output_words) + 1
    assert mask[task.vocab.id("eine")] and not mask[task.vocab.id("the")]
    assert [len(task.examples(s)) for s in ("valid", "test")] == [1014, 1000]
    cased = small_task("translation:multi30k", data_dir, lowercase=False, max_vocab=50)
    assert "Eine" in cased.vocab and len(cased.output_words) == 50


@pytest.mark.parametrize(
    ("name", "keyword", "value"),
    [
        ("translation:multi30k", "min_freq", 0),
        ("translation:multi30k", "max_train", -3),
        ("matching:squad", "max_source_len", "64"),
        ("matching:mrpc", "lowercase", "yes"),
        ("sentiment:sst2", "polarity", "negative"),
        ("sentiment:sst2", "prompt_len", 0),
    ],
)
def test_bad_options_raise_naming_the_option_and_value(data_dir, name, keyword, value):
    with pytest.raises(ValueError, match=re.escape(keyword)) as error:
        TASKS[name][0](data_dir=data_dir, **{keyword: value})
    assert repr(value) in str(error.value)


def test_length_caps_from_keywords_truncate_and_are_counted(data_dir):
    task = small_task("matching:mrpc", data_dir, max_source_len=8, max_generation_len=6)
    assert (task.max_source_len, task.max_generation_len) == (8, 6)
    assert task.truncated["valid"] == (len(task.examples("valid")),) * 2  # every sentence is longer than 8


#: Prints a hash of the vocabulary and every array of a small MRPC task (clusters, split assignment, cuts).
FINGERPRINT = """
import hashlib, sys
from ir_env.tasks.real import MrpcTask
task = MrpcTask(data_dir=sys.argv[1], max_train=200)
digest = hashlib.sha256(" ".join(task.vocab.tokens).encode())
for split in ("train", "valid", "test"):
    digest.update(task.examples(split).source.tobytes())
    digest.update(task.examples(split).reference.tobytes())
print(digest.hexdigest())
"""


def test_real_task_is_identical_in_processes_with_other_hash_seeds(data_dir):
    root = Path(__file__).resolve().parents[1]
    digests = [
        subprocess.run(
            [sys.executable, "-c", FINGERPRINT, str(data_dir)],
            env=dict(os.environ, PYTHONHASHSEED=seed),
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        for seed in ("1", "12345")
    ]
    assert digests[0] == digests[1] and len(digests[0]) == 1


@pytest.mark.parametrize("name", sorted(DATA_TASKS))
def test_a_short_training_run_on_each_real_task_runs_end_to_end(data_dir, name, tmp_path):
    """Warm start + a few PPO updates + evaluation through the trainer, on a small slice of the real data."""
    from agents.ppo import PPOConfig
    from agents.supervised import MLEConfig
    from agents.trainer import RunConfig, train

    kwargs = {"data_dir": str(data_dir), "max_train": 300}
    config = RunConfig(task=name, task_kwargs=kwargs, total_tokens=300, model="tiny", device="cpu",
                       out=str(tmp_path / "run"), init="mle", mle=MLEConfig(steps=5, batch_size=16),
                       ppo=PPOConfig(num_envs=8, num_minibatches=2), eval_every=0, eval_examples=8, progress=False)
    summary = train(config)
    assert summary["tokens"] >= 300 and summary["valid"]["episodes"] == 8
    low = -1.0 if name.startswith("sentiment") else 0.0
    assert low <= summary["valid"]["score"] <= 1.0
    assert (tmp_path / "run" / "checkpoint" / "meta.json").exists()
