"""LinearBLEU: linearised corpus BLEU, checked against sacrebleu's statistics and its corpus BLEU."""

from __future__ import annotations

import numpy as np
import pytest
import sacrebleu
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ir_env.rewards.bleu import LinearBLEU, check_bleu_point
from tests.test_bleu import FIRST_WORD, make_examples

token_lists = st.lists(st.integers(FIRST_WORD, FIRST_WORD + 7), min_size=1, max_size=24)
#: a point with the output shorter than the references (the brevity penalty's slope applies) and one longer
SHORT_POINT = [11.0, 12.0, 7.0, 4.5, 3.0, 2.0, 11.0, 10.0, 9.0, 8.0]
LONG_POINT = [13.0, 12.0, 7.0, 4.5, 3.0, 2.0, 13.0, 12.0, 11.0, 10.0]


def statistics(hyp: list[int], ref: list[int]) -> np.ndarray:
    """The independent reference: sacrebleu's BLEU statistics of one output (sys_len, ref_len, 4 matches, 4 totals)."""
    s = sacrebleu.sentence_bleu(" ".join(map(str, hyp)), [" ".join(map(str, ref))], tokenize="none")
    return np.array([s.sys_len, s.ref_len, *s.counts, *s.totals], dtype=np.float64)


def corpus_bleu(stats: np.ndarray) -> float:
    """sacrebleu's corpus BLEU / 100 of summed (integer) statistics."""
    sys_len, ref_len, *counts = (int(x) for x in stats)
    return sacrebleu.BLEU.compute_bleu(counts[:4], counts[4:], sys_len, ref_len).score / 100


@settings(max_examples=100, deadline=None)
@given(refs=st.lists(token_lists, min_size=1, max_size=4), point=st.sampled_from([SHORT_POINT, LONG_POINT]),
       data=st.data())  # fmt: skip
def test_every_prefix_is_the_first_order_change_of_corpus_bleu(refs, point, data):
    """Phi(prefix) = K * (corpus BLEU of K sentences at the point plus this prefix - without it), as K grows,
    up to the prefix-independent reference term, for every prefix of every row."""
    num_rows = data.draw(st.integers(1, 3))
    metric = LinearBLEU(make_examples(refs), num_rows, point)
    rows = np.arange(num_rows)
    example_ids = np.array(data.draw(st.lists(st.integers(0, len(refs) - 1), min_size=num_rows, max_size=num_rows)))
    assert np.all(metric.reset(rows, example_ids) == 0.0)
    k = 10**7  # the corpus: k sentences at the point; the linearisation error is O(1/k)
    base = (np.asarray(point) * k).astype(np.int64)
    c, r = point[0], point[1]
    hyps: list[list[int]] = [[] for _ in rows]
    last = np.zeros(num_rows)
    for _ in range(data.draw(st.integers(1, 12))):
        subset = np.array(sorted(data.draw(st.sets(st.integers(0, num_rows - 1), min_size=1))))
        tokens = np.array([data.draw(st.integers(FIRST_WORD, FIRST_WORD + 7)) for _ in subset])
        phi = metric.push(subset, tokens)
        for row, tok, value in zip(subset, tokens, phi):
            hyps[row].append(int(tok))
            last[row] = value
            s = statistics(hyps[row], refs[example_ids[row]]).astype(np.int64)
            change = k * (corpus_bleu(base + s) - corpus_bleu(base))
            reference_term = metric.bleu_at_point * s[1] / c if c < r else 0.0
            assert value - reference_term == pytest.approx(change, abs=1e-4)
    assert np.allclose(metric.score(rows), last, rtol=0, atol=1e-12)  # the final score is the last potential


def test_counts_are_clipped_and_linear():
    """An output's Phi is a weighted sum of its clipped matches, totals and length: the reference itself
    earns every match once, a repeated word earns its match only as often as the reference has it."""
    refs = [[5, 6, 7, 8, 9]]
    metric = LinearBLEU(make_examples(refs), 2, SHORT_POINT)
    b = metric.bleu_at_point
    rows = np.arange(2)
    metric.reset(rows, np.zeros(2, dtype=np.int64))
    for a, z in zip(refs[0], [5, 5, 5, 5, 5]):
        phi = metric.push(rows, np.array([a, z]))
    m, t = np.array(SHORT_POINT[2:6]), np.array(SHORT_POINT[6:10])
    slope = SHORT_POINT[1] / SHORT_POINT[0] ** 2
    totals = np.array([5, 4, 3, 2])
    expected_ref = b * ((np.array([5, 4, 3, 2]) / m - totals / t).sum() / 4 + slope * 5)
    expected_rep = b * ((np.array([1, 0, 0, 0]) / m - totals / t).sum() / 4 + slope * 5)
    assert phi == pytest.approx([expected_ref, expected_rep], abs=1e-12)
    assert np.array_equal(metric.score(rows), phi)


def test_at_or_past_the_reference_length_no_brevity_slope_is_paid():
    metric = LinearBLEU(make_examples([[5, 6]]), 1, LONG_POINT)
    metric.reset(np.arange(1), np.zeros(1, dtype=np.int64))
    phi = metric.push(np.arange(1), np.array([11]))  # an unmatched word: only its share of the totals
    assert phi[0] == pytest.approx(-metric.bleu_at_point / (4 * LONG_POINT[6]))


@pytest.mark.parametrize(
    ("point", "message"),
    [
        ([1.0] * 9, "10 numbers"),
        ("twelve", "10 numbers"),
        ([11.0, 12.0, 7.0, 4.5, 3.0, 0.0, 11.0, 10.0, 9.0, 8.0], "> 0"),
        ([11.0, 12.0, 7.0, 4.5, 3.0, float("nan"), 11.0, 10.0, 9.0, 8.0], "finite"),
        ([11.0, 12.0, 12.0, 4.5, 3.0, 2.0, 11.0, 10.0, 9.0, 8.0], "exceed the totals"),
    ],
)
def test_a_bad_point_is_refused_with_what_is_wrong(point, message):
    with pytest.raises(ValueError, match=message):
        check_bleu_point(point)


def test_multi30k_env_pays_linear_bleu_instantly_and_batched_equals_scalar():
    """With ``bleu_point`` the Multi30k env's instant rewards sum to the output's LinearBLEU (from sacrebleu's
    statistics of the output text), and the batched env steps as the scalar one."""
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    from ir_env import EOS, BatchedInstantRewardEnv, InstantRewardEnv
    from ir_env.tokenizer import UNK
    from tests.shipped import shipped
    from tests.test_vector import assert_same, rollout_actions

    kwargs = {"task": "translation:multi30k", "data_dir": str(shipped("multi30k")), "bleu_point": SHORT_POINT,
              "split": "valid"}  # fmt: skip
    batched = BatchedInstantRewardEnv(num_envs=4, **kwargs)
    assert batched.task.metric_name == "linear_bleu"
    sync = SyncVectorEnv([lambda: InstantRewardEnv(**kwargs) for _ in range(4)], autoreset_mode=AutoresetMode.SAME_STEP)
    examples = batched.task.examples("valid")
    probe = LinearBLEU(examples, 1, SHORT_POINT)
    b, (c, r) = probe.bleu_at_point, SHORT_POINT[:2]
    rng = np.random.default_rng(0)
    allowed = np.flatnonzero(batched.task.action_mask())
    batched.reset(seed=3)
    sync.reset(seed=3)
    returns, outputs, checked = np.zeros(4), [[] for _ in range(4)], 0
    for _ in range(300):
        ep = batched.episodes
        example_ids = ep.example_ids.copy()
        actions = rollout_actions(rng, [ep.reference(i) for i in range(4)], ep.length, allowed)
        out_b, out_s = batched.step(actions), sync.step(actions)
        for x, y in zip(out_b[:4], out_s[:4]):
            assert_same(x, y, "step")
        returns += out_b[1]
        for i in range(4):
            if actions[i] != EOS:
                outputs[i].append(int(actions[i]))
            if out_b[2][i] or out_b[3][i]:
                ref = examples.reference[example_ids[i], : examples.reference_len[example_ids[i]]]
                ref = [-1 if w == UNK else w for w in ref.tolist()]  # a reference UNK is matched by nothing
                s = statistics(outputs[i], ref)  # ids as words: the env's token-level BLEU
                m, t = np.array(SHORT_POINT[2:6]), np.array(SHORT_POINT[6:10])
                expected = b * ((s[2:6] / m - s[6:10] / t).sum() / 4 + (r / c**2) * s[0]) if outputs[i] else 0.0
                assert returns[i] == pytest.approx(expected, abs=1e-9)
                assert out_b[4]["final_info"]["score"][i] == pytest.approx(expected, abs=1e-9)
                returns[i], outputs[i], checked = 0.0, [], checked + 1
    assert checked > 30


@settings(max_examples=50, deadline=None)
@given(refs=st.lists(token_lists, min_size=1, max_size=4), data=st.data())
def test_bleu_point_of_outputs_is_the_mean_of_sacrebleu_statistics(refs, data):
    from ir_env.rewards.bleu import bleu_point_of

    n = data.draw(st.integers(1, 5))
    example_ids = np.array(data.draw(st.lists(st.integers(0, len(refs) - 1), min_size=n, max_size=n)))
    outputs = [data.draw(st.lists(st.integers(FIRST_WORD, FIRST_WORD + 7), min_size=1, max_size=10)) for _ in range(n)]
    tokens = np.zeros((n, 12), dtype=np.int64)
    for i, out in enumerate(outputs):
        tokens[i, : len(out)] = out
    point = bleu_point_of(make_examples(refs), example_ids, tokens, np.array([len(o) for o in outputs]))
    expected = np.mean([statistics(o, refs[e]) for o, e in zip(outputs, example_ids)], axis=0)
    expected[2:6] = np.maximum(expected[2:6], 1 / n)  # an order nothing matched counts as matched once
    assert point == pytest.approx(expected, abs=1e-12)


def test_moving_the_point_equals_a_metric_built_there_and_non_linear_envs_refuse_it():
    from ir_env import BatchedInstantRewardEnv

    refs = [[5, 6, 7, 8, 9], [9, 9, 5]]
    moved, fresh = LinearBLEU(make_examples(refs), 2, SHORT_POINT), LinearBLEU(make_examples(refs), 2, LONG_POINT)
    moved.set_point(LONG_POINT)
    rows = np.arange(2)
    for metric in (moved, fresh):
        metric.reset(rows, np.array([0, 1]))
    for a, b in zip([5, 6, 11, 8], [9, 9, 5, 5]):
        assert np.array_equal(moved.push(rows, np.array([a, b])), fresh.push(rows, np.array([a, b])))
    env = BatchedInstantRewardEnv(num_envs=2, task="translation")
    with pytest.raises(ValueError, match="set_bleu_point needs a BLEU task built with bleu_point"):
        env.set_bleu_point(LONG_POINT)


def test_trainer_refuses_relinearise_without_a_bleu_point(tmp_path):
    from agents.ppo import PPOConfig
    from agents.trainer import RunConfig, train

    config = RunConfig(task="translation", model="tiny", total_tokens=100, out=str(tmp_path / "run"), progress=False,
                       ppo=PPOConfig(num_envs=4, relinearise_bleu=True))  # fmt: skip
    with pytest.raises(ValueError, match="relinearise_bleu needs a BLEU task built with bleu_point"):
        train(config)


def test_a_resumed_relinearised_run_continues_from_the_point_it_had_moved_to(tmp_path):
    """The moving point is part of the run's state: stopping and resuming gives the weights of a straight run."""
    from agents.ppo import PPOConfig
    from agents.trainer import RunConfig, train
    from tests.shipped import shipped
    from tests.test_learner import weights_of

    def run(out, **extra):
        return RunConfig(task="translation:multi30k", model="tiny", total_tokens=10**9, max_seconds=None, out=str(out),
                         init="scratch", eval_every=0, eval_examples=8, checkpoint_every=100, progress=False,
                         task_kwargs={"data_dir": str(shipped("multi30k")), "bleu_point": SHORT_POINT},
                         ppo=PPOConfig(algo="rloo", num_envs=8, relinearise_bleu=True), **extra)  # fmt: skip

    straight = train(run(tmp_path / "straight", stop_after_updates=4))
    train(run(tmp_path / "split", stop_after_updates=2))
    resumed = train(run(tmp_path / "split", stop_after_updates=2, resume=True))
    assert resumed["updates"] == straight["updates"] == 4
    a, b = weights_of(tmp_path / "straight"), weights_of(tmp_path / "split")
    for name in a:
        assert torch.equal(a[name], b[name]), name
