"""The SST-2 sentiment classifier: training, files, the ClassifierSentiment prefix metric, and the
``sentiment:sst2`` scorers and judges.

Tests on the module and the metric use small random classifiers and run everywhere; tests that train on
SST-2 or build the task need the data folder (IR_DATA_DIR or ../shared/data next to the repository) and
skip when it is absent. Training runs on a few thousand phrases with a small model, in seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from hypothesis import given, settings
from hypothesis import strategies as st
from shipped import shipped

from agents.classifier import train_sentiment_classifier
from agents.cli import main as cli_main
from ir_env import EOS, InstantRewardEnv
from ir_env.rewards.classifier import (
    META_FILE,
    WEIGHTS_FILE,
    ClassifierConfig,
    ClassifierFileError,
    ClassifierSentiment,
    SentimentCNN,
    load_classifier,
    save_classifier,
)
from ir_env.tasks import make_task
from ir_env.tasks.base import Examples
from ir_env.tasks.real import CLASSIFIER_ENV, Sst2Task
from ir_env.tokenizer import NUM_SPECIAL, Vocabulary

#: A small, quick classifier: about 0.69 dev accuracy after 2 s of training on 4,000 phrases.
TINY = ClassifierConfig(embedding_dim=32, num_filters=16)
QUICK = {"epochs": 3, "max_train": 4_000, "learning_rate": 1e-2, "config": TINY, "progress": False}
SMALL_TASK = {"max_train": 300}


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return shipped("sst2")


@pytest.fixture(scope="module")
def trained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """(folder, dev accuracy) of a classifier trained quickly on the first 4,000 SST-2 phrases."""
    folder = tmp_path_factory.mktemp("classifier") / "sst2-cnn"
    return folder, train_sentiment_classifier(data_dir, folder, **QUICK)


# ---------------------------------------------------------------------------------------------------
# A synthetic vocabulary and random classifier, for tests that need no data.

WORDS = [f"w{i}" for i in range(40)]


def random_module(seed: int = 0, config: ClassifierConfig = TINY, words: list[str] = WORDS[:30]) -> SentimentCNN:
    torch.manual_seed(seed)
    module = SentimentCNN(words, config)
    with torch.no_grad():  # larger weights than the init, so probabilities spread over (0, 1)
        for p in module.parameters():
            p.mul_(4.0)
    return module.eval()


def synthetic_examples(attributes: list[int]) -> Examples:
    n = len(attributes)
    return Examples.from_sequences([np.array([4])] * n, [np.array([5])] * n, 1, 1, np.array(attributes))


def signed_score(module: SentimentCNN, vocab: Vocabulary, ids: list[int], attribute: int) -> float:
    """attribute * (2 P(positive) - 1) of one output's words, scored alone by the module (0 when empty)."""
    if not ids:
        return 0.0
    p = module.positive_probability([[vocab.tokens[i] for i in ids]])[0]
    return attribute * (2.0 * p - 1.0)


# ---------------------------------------------------------------------------------------------------
# The prefix metric.


@pytest.mark.parametrize("widths", [(3, 4, 5), (1, 2), (6,)])
def test_batched_potential_equals_the_module_on_each_prefix(widths):
    module = random_module(config=ClassifierConfig(embedding_dim=16, num_filters=8, widths=widths))
    vocab = Vocabulary(WORDS)  # w30..w39 are no classifier words (UNK)
    attributes = [1, -1, 1, 1, -1, -1, 1]
    n, max_len = len(attributes), 12
    metric = ClassifierSentiment(synthetic_examples(attributes), n, vocab, module, max_len=max_len)
    rng = np.random.default_rng(0)
    rows = np.arange(n)
    assert metric.reset(rows, rows).tolist() == [0.0] * n
    outputs: list[list[int]] = [[] for _ in range(n)]
    for step in range(3 * max_len):
        active = np.array([r for r in rows if len(outputs[r]) < max_len and rng.random() < 0.6], dtype=np.int64)
        if not len(active):
            continue
        tokens = rng.integers(NUM_SPECIAL, len(vocab), size=len(active))
        for r, t in zip(active, tokens):
            outputs[r].append(int(t))
        phi = metric.push(active, tokens)
        expected = [signed_score(module, vocab, outputs[r], attributes[r]) for r in active]
        np.testing.assert_allclose(phi, expected, atol=1e-5, err_msg=f"step {step}")  # float32 sums in another order
        if step == max_len:  # restart two rows mid-way: their old windows must not leak into the new outputs
            metric.reset(np.array([0, 3]), np.array([0, 3]))
            outputs[0], outputs[3] = [], []


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), data=st.data())
def test_potential_stays_in_minus_one_to_one(seed, data):
    module = random_module(seed % 8)
    vocab = Vocabulary(WORDS)
    attributes = data.draw(st.lists(st.sampled_from([-1, 1]), min_size=1, max_size=5))
    n = len(attributes)
    metric = ClassifierSentiment(synthetic_examples(attributes), n, vocab, module, max_len=16)
    rows = np.arange(n)
    metric.reset(rows, rows)
    tokens = data.draw(st.lists(st.integers(0, len(vocab) - 1), min_size=1, max_size=16))
    for t in tokens:
        phi = metric.push(rows, np.full(n, t))
        assert np.all(np.abs(phi) <= 1.0) and np.all(np.isfinite(phi))


def test_metric_refuses_a_prefix_past_max_len_and_bad_attributes():
    module = random_module()
    vocab = Vocabulary(WORDS)
    metric = ClassifierSentiment(synthetic_examples([1]), 1, vocab, module, max_len=2)
    metric.reset(np.array([0]), np.array([0]))
    metric.push(np.array([0]), np.array([5]))
    metric.push(np.array([0]), np.array([5]))
    with pytest.raises(ValueError, match="max_len=2"):
        metric.push(np.array([0]), np.array([5]))
    with pytest.raises(ValueError, match="attribute"):
        ClassifierSentiment(synthetic_examples([0]), 1, vocab, module)


# ---------------------------------------------------------------------------------------------------
# Files.


def test_save_load_round_trip(tmp_path):
    module = random_module()
    save_classifier(module, tmp_path / "clf", dev_accuracy=0.75, training={"epochs": 1})
    loaded = load_classifier(tmp_path / "clf")
    assert loaded.dev_accuracy == 0.75 and loaded.meta["training"] == {"epochs": 1}
    assert loaded.module.words == module.words and loaded.module.config == module.config
    for name, tensor in module.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[name], tensor), name
    sentences = ["w1 w2 w3", "w4", "w9 w8 w7 w6 w5 w4 unknown"]
    assert loaded.module.positive_probability(sentences).tolist() == module.positive_probability(sentences).tolist()


def _truncate_weights(folder: Path) -> None:
    path = folder / WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:-100])


def _garble_json(folder: Path) -> None:
    (folder / META_FILE).write_text("{ not json")


def _other_format(folder: Path) -> None:
    meta = json.loads((folder / META_FILE).read_text())
    (folder / META_FILE).write_text(json.dumps({**meta, "format": "something-else"}))


def _drop_key(folder: Path) -> None:
    meta = json.loads((folder / META_FILE).read_text())
    del meta["words"]
    (folder / META_FILE).write_text(json.dumps(meta))


def _fewer_words(folder: Path) -> None:  # the JSON describes a smaller embedding than the weights hold
    meta = json.loads((folder / META_FILE).read_text())
    (folder / META_FILE).write_text(json.dumps({**meta, "words": meta["words"][:-1]}))


def _unreadable_weights(folder: Path) -> None:  # the hash is right, the content is not safetensors
    path = folder / WEIGHTS_FILE
    path.write_bytes(b"\x00" * 64)
    meta = json.loads((folder / META_FILE).read_text())
    import hashlib

    meta["weights_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / META_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "damage, file, message",
    [
        (lambda f: (f / WEIGHTS_FILE).unlink(), WEIGHTS_FILE, "does not exist"),
        (lambda f: (f / META_FILE).unlink(), META_FILE, "does not exist"),
        (_truncate_weights, WEIGHTS_FILE, "sha256"),
        (_garble_json, META_FILE, "JSON"),
        (_other_format, META_FILE, "format"),
        (_drop_key, META_FILE, "words"),
        (_fewer_words, WEIGHTS_FILE, "do not fit"),
        (_unreadable_weights, WEIGHTS_FILE, "safetensors"),
    ],
    ids=["no-weights", "no-json", "truncated", "garbled-json", "other-format", "missing-key", "mismatch", "unreadable"],
)
def test_a_broken_folder_is_refused_naming_the_file(tmp_path, damage, file, message):
    folder = save_classifier(random_module(), tmp_path / "clf", dev_accuracy=0.5)
    damage(folder)
    with pytest.raises(ClassifierFileError, match=message) as error:
        load_classifier(folder)
    assert str(folder / file) in str(error.value)
    assert isinstance(error.value, ValueError)


def test_a_missing_folder_is_refused_with_the_command_to_make_it(tmp_path):
    with pytest.raises(ClassifierFileError, match="train-classifier"):
        load_classifier(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------------
# Choosing the scorer (no data needed: the scorer is checked before the files are read).


def test_the_classifier_scorer_needs_a_classifier(monkeypatch):
    monkeypatch.delenv(CLASSIFIER_ENV, raising=False)
    with pytest.raises(ValueError, match=CLASSIFIER_ENV):
        Sst2Task(data_dir="/nonexistent", scorer="classifier")


def test_an_unknown_scorer_is_refused():
    with pytest.raises(ValueError, match="scorer must be one of"):
        Sst2Task(data_dir="/nonexistent", scorer="bert")


def test_a_broken_classifier_fails_when_the_task_is_built(tmp_path):
    with pytest.raises(ClassifierFileError, match=str(tmp_path / "none")):
        Sst2Task(data_dir="/nonexistent", scorer="classifier", classifier=tmp_path / "none")


def test_ir_env_imports_without_torch():
    code = "import sys, ir_env, ir_env.tasks.real, ir_env.rewards.sentiment; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------------
# Training on SST-2 and the task (need the data).


def test_training_beats_chance_on_dev(trained):
    folder, accuracy = trained
    assert accuracy > 0.6  # dev is 51% positive; this quick run reaches about 0.69
    assert load_classifier(folder).dev_accuracy == accuracy


def test_the_same_seed_gives_the_same_weights(data_dir, tmp_path):
    run = {**QUICK, "epochs": 1, "max_train": 500}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train_sentiment_classifier(data_dir, tmp_path / name, seed=seed, **run)
    a, b, c = (safetensors.torch.load_file(tmp_path / name / WEIGHTS_FILE) for name in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_train_classifier_command(data_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["train-classifier", "--data-dir", str(data_dir), "--out", str(out), "--epochs", "1", "--max-train", "200"]
    assert cli_main([*argv, "--no-progress"]) == 0
    assert "dev accuracy" in capsys.readouterr().out
    assert load_classifier(out).meta["training"]["train_examples"] == 200


def classifier_task(data_dir: Path, folder: Path, scorer: str = "classifier") -> Sst2Task:
    return make_task("sentiment:sst2", data_dir=str(data_dir), scorer=scorer, classifier=str(folder), **SMALL_TASK)


def test_env_checker_passes_with_the_classifier_scorer(data_dir, trained):
    task = classifier_task(data_dir, trained[0])
    assert task.metric_name == "classifier" and task.judge_names == ("vader",)
    gym_check_env(InstantRewardEnv(task=task), skip_render_check=True)


def test_gym_make_passes_the_scorer_to_the_task(data_dir, trained):
    import gymnasium as gym

    env = gym.make("InstantReward-v0", task="sentiment:sst2", reward="sparse", scorer="classifier",
                   classifier=str(trained[0]), data_dir=str(data_dir), **SMALL_TASK)
    assert env.unwrapped.task.metric_name == "classifier"
    assert env.unwrapped.shaping.mode == "sparse"
    env.close()


def play_random(env: InstantRewardEnv, episodes: int, seed: int = 0) -> tuple[list[list[int]], list[int], list[float]]:
    """(outputs without EOS, example ids, scores) of random episodes of different lengths."""
    rng = np.random.default_rng(seed)
    allowed = np.flatnonzero(env.action_masks() & (np.arange(len(env.action_masks())) != EOS))
    outputs, ids, scores = [], [], []
    for i in range(episodes):
        _, info = env.reset(seed=i)
        ids.append(info["example_index"])
        output = [int(a) for a in rng.choice(allowed, size=i % 9)]
        for a in [*output, EOS]:
            _, _, terminated, _, info = env.step(a)
        assert terminated
        outputs.append(output)
        scores.append(info["score"])
    return outputs, ids, scores


@pytest.mark.parametrize("scorer", ["classifier", "vader"])
def test_scores_of_outputs_equal_the_env_and_the_judge_is_the_other_scorer(data_dir, trained, scorer):
    task = classifier_task(data_dir, trained[0], scorer)
    other = {"classifier": "vader", "vader": "classifier"}[scorer]
    env = InstantRewardEnv(task=task, split="valid")
    outputs, ids, scores = play_random(env, 12)
    np.testing.assert_allclose(task.score_outputs(outputs, ids, "valid"), scores, atol=1e-6)
    judged = task.judges(outputs, ids, "valid")
    assert list(judged) == [other]
    other_env = InstantRewardEnv(task=classifier_task(data_dir, trained[0], other), split="valid")
    _, _, other_scores = play_random(other_env, 12)
    np.testing.assert_allclose(judged[other], other_scores, atol=1e-6)


def test_vader_task_without_a_classifier_has_no_judge(data_dir, monkeypatch):
    monkeypatch.delenv(CLASSIFIER_ENV, raising=False)
    task = Sst2Task(data_dir=str(data_dir), **SMALL_TASK)
    assert task.metric_name == "vader" and task.judge_names == ()
    assert task.judges([[task.vocab.id("good")]], [0]) == {}
