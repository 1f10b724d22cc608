"""The learner: advantage estimators, schedules, KL control, resume, torchrun, the CLI, and that it learns."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.checkpoint import CheckpointError
from agents.cli import main as cli_main
from agents.ppo import (
    KLController,
    PPOConfig,
    ShapingSchedule,
    gae,
    masked_mean,
    returns_to_go,
    rloo_advantages,
)
from agents.rollout import Rollout
from agents.trainer import RunConfig, autocast_for, output_length_ratio, train
from ir_env import EOS, PAD

ROOT = Path(__file__).resolve().parents[1]


# -- estimators on known inputs ------------------------------------------------------------------------
def test_returns_to_go_stop_at_the_episode_end():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 9.0]])
    mask = torch.tensor([[True, True, True, False]])
    assert returns_to_go(rewards, mask, 0.5).tolist() == [[1 + 0.5 * (2 + 0.5 * 3), 2 + 0.5 * 3, 3.0, 0.0]]


def test_gae_with_lambda_one_is_monte_carlo_minus_value_and_lambda_zero_is_td():
    rewards = torch.tensor([[0.1, 0.2, 0.7]])
    values = torch.tensor([[0.3, 0.5, 0.6]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    adv1, ret1 = gae(rewards, values, mask, gamma=0.9, lam=1.0)
    assert torch.allclose(adv1, returns_to_go(rewards, mask, 0.9) - values)
    assert torch.allclose(ret1, returns_to_go(rewards, mask, 0.9))
    adv0, _ = gae(rewards, values, mask, gamma=0.9, lam=0.0)
    td = torch.tensor([[0.1 + 0.9 * 0.5 - 0.3, 0.2 + 0.9 * 0.6 - 0.5, 0.7 - 0.6]])
    assert torch.allclose(adv0, td)


def test_rloo_baseline_is_the_mean_of_the_other_samples():
    rewards = torch.tensor([[1.0], [2.0], [6.0], [0.0], [0.0], [3.0]])
    mask = torch.ones(6, 1, dtype=torch.bool)
    adv = rloo_advantages(rewards, mask, 1.0, k=3)
    assert adv[:, 0].tolist() == [1 - 4, 2 - 3.5, 6 - 1.5, 0 - 1.5, 0 - 1.5, 3 - 0]


def test_masked_mean_ignores_masked_entries():
    assert masked_mean(torch.tensor([1.0, 100.0, 3.0]), torch.tensor([True, False, True])).item() == 2.0


@pytest.mark.parametrize("kind, progress, score, expected_instant", [
    ("constant", 0.7, None, 1.0), ("linear", 0.25, None, 0.75), ("cosine", 0.5, None, 0.5), ("adaptive", 0.9, 0.25, 0.5),
])
def test_shaping_schedules_move_from_start_to_end_weights(kind, progress, score, expected_instant):
    config = PPOConfig(schedule=kind, weights_start={"instant": 1.0}, weights_end={"sparse": 1.0}, adaptive_target=0.5)
    weights = ShapingSchedule(config, {"instant": 1.0, "sparse": 0.0, "token": 0.0}).weights(progress, score)
    assert weights["instant"] == pytest.approx(expected_instant)
    assert weights["sparse"] == pytest.approx(1 - expected_instant)


def test_adaptive_kl_coefficient_moves_towards_the_target():
    kl = KLController(0.1, target=1.0, horizon=100)
    kl.update(current_kl=3.0, num_sequences=10)
    assert kl.value == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))
    kl.update(current_kl=0.5, num_sequences=10)
    assert kl.value < 0.1 * (1 + 0.2 * 10 / 100)
    fixed = KLController(0.1, target=None, horizon=100)
    fixed.update(5.0, 10)
    assert fixed.value == 0.1


@pytest.mark.parametrize("kwargs, message", [
    ({"algo": "a2c"}, "unknown algo"), ({"schedule": "step"}, "unknown schedule"),
    ({"num_envs": 10, "num_minibatches": 4}, "multiple"), ({"algo": "rloo", "num_envs": 8, "rloo_k": 3}, "rloo_k"),
    ({"schedule": "linear"}, "weights_end"), ({"weights_end": {"bonus": 1.0}, "schedule": "linear"}, "unknown parts"),
    ({"mle_coef": -0.5}, "mle_coef"), ({"length_groups": 0}, "length_groups"),
    ({"hold_greedy_length": -1}, "hold_greedy_length"), ({"hold_greedy_every": 0}, "hold_greedy_every"),
    ({"hold_greedy_gain": 0.0}, "hold_greedy_gain"), ({"hold_greedy_gain": float("nan")}, "hold_greedy_gain"),
    ({"hold_greedy_ratio": -1.0}, "hold_greedy_ratio"), ({"hold_greedy_ratio": float("nan")}, "hold_greedy_ratio"),
])
def test_bad_learner_config_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PPOConfig(**kwargs)


# -- runs ----------------------------------------------------------------------------------------------
def tiny_run(out: Path, **overrides) -> RunConfig:
    ppo = overrides.pop("ppo", PPOConfig(num_envs=16, num_minibatches=2, update_epochs=2))
    defaults = dict(task="matching:qa", model="tiny", total_tokens=400, out=str(out), init="scratch", ppo=ppo,
                    eval_every=0, eval_examples=16, checkpoint_every=100, progress=False,
                    task_kwargs={"num_train": 200, "num_valid": 32, "num_test": 32})
    defaults.update(overrides)
    return RunConfig(**defaults)


def weights_of(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "checkpoint" / "model.safetensors"))


@pytest.mark.parametrize("algo", ["ppo", "reinforce", "rloo"])
def test_resume_continues_exactly_where_the_run_stopped(tmp_path, algo):
    ppo = PPOConfig(algo=algo, num_envs=16, num_minibatches=2, update_epochs=2, kl_coef=0.05, kl_target=1.0)
    straight = train(tiny_run(tmp_path / "straight", ppo=ppo, reward="mixed", reward_weights={"instant": 0.5, "token": 0.5}))
    assert straight["updates"] >= 4
    half = straight["updates"] // 2
    train(tiny_run(tmp_path / "split", ppo=ppo, reward="mixed", reward_weights={"instant": 0.5, "token": 0.5}, stop_after_updates=half))
    resumed = train(tiny_run(tmp_path / "split", ppo=ppo, reward="mixed", reward_weights={"instant": 0.5, "token": 0.5}, resume=True))
    assert resumed["updates"] == straight["updates"] and resumed["tokens"] == straight["tokens"]
    a, b = weights_of(tmp_path / "straight"), weights_of(tmp_path / "split")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    rows = (tmp_path / "split" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + straight["updates"], "one CSV row per update, appended on resume"


@pytest.mark.parametrize("goal", [0.0, 1.0])
def test_the_greedy_length_hold_follows_its_control_law_and_resumes_exactly(tmp_path, goal):
    # a large learning rate, so that the greedy outputs (and k) move within a few updates
    ppo = PPOConfig(algo="rloo", num_envs=16, num_minibatches=2, hold_greedy_length=24, hold_greedy_every=1,
                    hold_greedy_gain=2.0, learning_rate=1e-2, lr_warmup_updates=1, hold_greedy_ratio=goal)
    reward = dict(reward="mixed", reward_weights={"instant": 1.0, "length": 0.5})
    straight = train(tiny_run(tmp_path / "straight", ppo=ppo, **reward))
    assert straight["updates"] >= 4
    train(tiny_run(tmp_path / "split", ppo=ppo, **reward, stop_after_updates=straight["updates"] // 2))
    train(tiny_run(tmp_path / "split", ppo=ppo, **reward, resume=True))
    a, b = weights_of(tmp_path / "straight"), weights_of(tmp_path / "split")
    for name in a:
        assert torch.equal(a[name], b[name]), name
    with open(tmp_path / "split" / "metrics.csv", newline="") as f:
        records = list(csv.DictReader(f))
    rows = [(float(r["greedy_length_ratio"]), float(r["length_target"])) for r in records]
    assert len(rows) == straight["updates"]
    assert all(float(r["hold_seconds"]) > 0 for r in records), "every update decodes (hold_greedy_every=1), timed apart"
    start, target = goal or rows[0][0], 1.0  # the goal: hold_greedy_ratio, or the first update's ratio
    assert 0.0 < rows[0][0] < 10.0 and len({ratio for ratio, _ in rows}) > 1, "the greedy length moved"
    if goal:
        assert rows[0][1] != 1.0, "with a goal away from the start's ratio, k moves at the first update"
    for ratio, logged in rows:  # k moves by the gain times how far the greedy length ratio is below the goal
        target = min(max(target + 2.0 * (start - ratio), 0.5), 2.0)
        assert logged == pytest.approx(target, abs=1e-12)


def test_weight_averages_follow_their_recursion_resume_exactly_and_are_written(tmp_path):
    from safetensors.torch import load_file

    from agents.checkpoint import export_weights
    from agents.trainer import build_model
    from ir_env import make_task

    ppo = PPOConfig(num_envs=16, num_minibatches=2, update_epochs=2, learning_rate=1e-2, weight_averages=(0.5, 0.9))
    probe = tiny_run(tmp_path / "probe", ppo=ppo)
    init = str(export_weights(build_model(probe, make_task(probe.task, **probe.task_kwargs), torch.device("cpu")),
                              tmp_path / "init.safetensors"))
    straight = train(tiny_run(tmp_path / "straight", ppo=ppo, init=init))
    assert straight["updates"] >= 3 and straight["weight_averages"] == {"0.5": "ema_0.5.safetensors", "0.9": "ema_0.9.safetensors"}
    # one update per call, resumed each time: each average is decay * itself + (1 - decay) * the new weights
    averages = {d: {k: v.double() for k, v in load_file(init).items()} for d in (0.5, 0.9)}
    for update in range(straight["updates"]):
        summary = train(tiny_run(tmp_path / "split", ppo=ppo, init=init, stop_after_updates=1, resume=update > 0))
        assert summary["updates"] == update + 1
        weights = weights_of(tmp_path / "split")
        for d, average in averages.items():
            written = load_file(str(tmp_path / "split" / f"ema_{d:g}.safetensors"))
            assert written.keys() == weights.keys()
            for name in weights:
                average[name] = d * average[name] + (1 - d) * weights[name].double()
                assert torch.allclose(written[name].double(), average[name], atol=1e-6), (update, d, name)
    moved = weights_of(tmp_path / "straight")
    for d in (0.5, 0.9):  # the straight run and the run resumed at every update write the same averages
        a = load_file(str(tmp_path / "straight" / f"ema_{d:g}.safetensors"))
        b = load_file(str(tmp_path / "split" / f"ema_{d:g}.safetensors"))
        assert all(torch.equal(a[name], b[name]) for name in a)
        assert any(not torch.equal(a[name], moved[name]) for name in a), "an average is not the last weights"


def test_weight_averages_are_checked_and_start_at_the_resumed_weights_where_the_checkpoint_has_none(tmp_path):
    for bad in [(1.0,), (0.0,), (0.9, 0.9)]:
        with pytest.raises(ValueError, match="weight_averages must be distinct decays in \\(0, 1\\)"):
            PPOConfig(weight_averages=bad)
    assert PPOConfig(weight_averages=[0.9]).weight_averages == (0.9,), "a list (from JSON) becomes a tuple"
    train(tiny_run(tmp_path / "run", stop_after_updates=1))
    ppo = PPOConfig(num_envs=16, num_minibatches=2, update_epochs=2, weight_averages=(0.9,))
    with pytest.warns(UserWarning, match="no weight average at decay 0.9 .* from the resumed weights at update 1"):
        train(tiny_run(tmp_path / "run", ppo=ppo, resume=True, stop_after_updates=1))
    assert (tmp_path / "run" / "ema_0.9.safetensors").exists()


def test_the_greedy_length_hold_needs_a_length_part(tmp_path):
    with pytest.raises(ValueError, match="'length' reward part's target, but its weight is 0"):
        train(tiny_run(tmp_path / "run", ppo=PPOConfig(num_envs=16, num_minibatches=2, hold_greedy_length=8)))


def test_same_seed_same_training_curve(tmp_path):
    a = train(tiny_run(tmp_path / "a", eval_every=1))
    b = train(tiny_run(tmp_path / "b", eval_every=1))
    curve = lambda p: [line.split(",")[:12] for line in (p / "metrics.csv").read_text().splitlines()[1:]]  # noqa: E731
    assert a["tokens"] == b["tokens"]
    assert [r[:2] + r[5:12] for r in curve(tmp_path / "a")] == [r[:2] + r[5:12] for r in curve(tmp_path / "b")]


def test_bf16_precision_trains_on_cpu_close_to_float32_and_bad_precision_is_refused(tmp_path):
    fp32 = train(tiny_run(tmp_path / "fp32", precision="fp32"))
    bf16 = train(tiny_run(tmp_path / "bf16", precision="bf16"))
    assert fp32["tokens"] > 0 and bf16["tokens"] > 0
    a, b = weights_of(tmp_path / "fp32"), weights_of(tmp_path / "bf16")
    assert all(b[name].dtype == torch.float32 for name in b), "autocast leaves the weights in float32"
    moved = sum(float((b[name] - a[name]).abs().max()) > 0 for name in a)
    assert moved > 0, "bf16 matrix products give (slightly) different updates"
    for name in a:  # the same seed and data: the two runs stay close
        assert torch.allclose(a[name], b[name], atol=0.05), name
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        train(tiny_run(tmp_path / "bad", precision="fp16"))
    assert not (tmp_path / "bad").exists(), "refused before anything is written"
    assert autocast_for("auto", torch.device("cpu")) is None
    assert autocast_for("bf16", torch.device("cpu")).fast_dtype == torch.bfloat16


def test_output_length_ratio_counts_words_without_the_final_eos():
    actions = torch.tensor([[5, 6, EOS, PAD], [5, 5, 5, 5], [EOS, PAD, PAD, PAD]])  # EOS after 2; cap at 4; empty
    batch = Rollout(source=torch.zeros(3, 2, dtype=torch.long), actions=actions, logprobs=torch.zeros(3, 4),
                    values=torch.zeros(3, 4), rewards=torch.zeros(3, 4), mask=actions != PAD, scores=np.zeros(3),
                    lengths=np.array([3, 4, 1]), example_ids=np.array([0, 1, 1]))
    assert output_length_ratio(batch, np.array([2, 8])) == (2 + 4 + 0) / (2 + 8 + 8)
    assert np.isnan(output_length_ratio(batch, np.array([0, 0])))


def test_metrics_log_the_sampled_length_ratio(tmp_path):
    train(tiny_run(tmp_path / "run", stop_after_updates=2))
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("length_ratio")
    assert all(0.0 < float(row.split(",")[column]) < 10.0 for row in rows[1:])
    header = rows[0].split(",")
    for row in rows[1:]:  # where the update's wall time went; no greedy length hold here
        seconds = {k: float(row.split(",")[header.index(k)]) for k in ("hold_seconds", "rollout_seconds", "env_seconds", "update_seconds")}
        assert 0 < seconds["env_seconds"] < seconds["rollout_seconds"] and seconds["update_seconds"] > 0
        assert seconds["hold_seconds"] == 0.0


def test_a_new_run_refuses_to_overwrite_a_checkpoint(tmp_path):
    train(tiny_run(tmp_path / "run"))
    before = (tmp_path / "run" / "checkpoint" / "model.safetensors").read_bytes()
    with pytest.raises(CheckpointError, match="--resume"):
        train(tiny_run(tmp_path / "run"))
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize("damage", ["truncate", "header", "shapes"])
def test_resume_from_a_damaged_or_mismatched_checkpoint_fails_clearly_and_writes_nothing(tmp_path, damage, capsys):
    out = tmp_path / "run"
    train(tiny_run(out))
    weights = out / "checkpoint" / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "header":
        data = bytearray(weights.read_bytes())
        data[:8] = b"\xff" * 8
        weights.write_bytes(bytes(data))
    snapshot = {p: p.read_bytes() for p in (out / "checkpoint").iterdir()}
    model = "small" if damage == "shapes" else "tiny"
    args = ["train", "--task", "matching:qa", "--model", model, "--out", str(out), "--resume", "--no-progress",
            "--total-tokens", "800", "--num-envs", "16"]
    with pytest.raises(SystemExit) as exit_info:
        cli_main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "checkpoint" in err and ("corrupt" in err or "model" in err or "d_model" in err or "shape" in err)
    assert {p: p.read_bytes() for p in (out / "checkpoint").iterdir()} == snapshot


def test_cli_train_eval_and_sample_run_end_to_end(tmp_path, capsys):
    out = tmp_path / "cli"
    code = cli_main(["train", "--task", "matching:summary", "--model", "tiny", "--total-tokens", "500", "--num-envs", "16",
                     "--minibatches", "2", "--init", "mle", "--mle-steps", "5", "--out", str(out), "--no-progress",
                     "--eval-examples", "16", "--kl-coef", "0.1", "--mle-schedule", "inverse_sqrt", "--mle-warmup", "2",
                     "--mle-label-smoothing", "0.1", "--mle-beta2", "0.98", "--mle-length-buckets", "--mle-ema", "0.9",
                     "--reward", "mixed", "--reward-weights", '{"instant": 1.0, "length": 0.5}',
                     "--hold-greedy-length", "8", "--hold-greedy-every", "2", "--hold-greedy-gain", "0.25",
                     "--no-share-encoder"])
    assert code == 0
    meta = json.loads(next(out.rglob("meta.json")).read_text())
    assert meta["config"]["ppo"]["share_encoder"] is False
    assert {k: meta["config"]["ppo"][k] for k in ("hold_greedy_length", "hold_greedy_every", "hold_greedy_gain")} == {
        "hold_greedy_length": 8, "hold_greedy_every": 2, "hold_greedy_gain": 0.25}
    assert meta["config"]["mle"] == {**meta["config"]["mle"], "schedule": "inverse_sqrt", "warmup_steps": 2,
                                     "label_smoothing": 0.1, "adam_beta2": 0.98, "length_buckets": True, "ema_decay": 0.9}
    assert (out / "metrics.csv").exists() and (out / "reference.safetensors").exists() and any((out / "tb").iterdir())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tokens"] >= 500 and 0.0 <= summary["valid"]["score"] <= 1.0
    assert cli_main(["eval", "--checkpoint", str(out), "--max-examples", "32"]) == 0
    assert cli_main(["sample", "--checkpoint", str(out), "-n", "1"]) == 0
    printed = capsys.readouterr().out
    assert "greedy" in printed and "sampled" in printed and "score" in printed and "output:" in printed


def test_torchrun_two_cpu_processes_train_and_match_single_process_gradients(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    check = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                            str(ROOT / "tests" / "scripts" / "ddp_grad_check.py")], env=env, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count("max |grad_ddp - grad_single|") == 2

    out = tmp_path / "ddp"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "agents.cli", "train",
                          "--task", "matching:qa", "--model", "tiny", "--total-tokens", "300", "--num-envs", "8",
                          "--minibatches", "2", "--init", "scratch", "--out", str(out), "--no-progress",
                          "--eval-examples", "16"], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["tokens"] >= 300


def test_ppo_from_scratch_beats_a_random_policy_by_a_wide_margin(tmp_path):
    """Short-sequence task (matching:summary, outputs <= 16 tokens), tiny model, instant reward, no warm start:
    about a minute of CPU."""
    from benchmarks.baselines import policy_scores

    random_score = float(policy_scores("matching:summary", "random", episodes=500, split="train").mean())
    ppo = PPOConfig(num_envs=64, learning_rate=1e-3)
    summary = train(tiny_run(tmp_path / "scratch", task="matching:summary", total_tokens=100_000, ppo=ppo, task_kwargs={}))
    rows = (tmp_path / "scratch" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    scores = [float(r.split(",")[header.index("score")]) for r in rows[1:]]
    assert summary["tokens"] >= 100_000
    assert np.mean(scores[:5]) < 2 * random_score, "the untrained policy starts near random"
    assert np.mean(scores[-5:]) > 2.5 * random_score, (random_score, scores[-5:])


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.7])
def test_the_update_scores_actions_under_the_temperature_they_were_sampled_at(temperature):
    """PPO's first ratio must be exactly 1: the teacher-forced pass has to use the rollout's temperature."""
    from agents.model import ModelConfig, PolicyModel
    from agents.ppo import ActionEvaluator
    from agents.rollout import collect
    from ir_env import BatchedInstantRewardEnv, make_task

    task = make_task("matching:summary")
    torch.manual_seed(0)
    model = PolicyModel(ModelConfig.preset("tiny", len(task.vocab), task.max_source_len, task.max_generation_len)).eval()
    env = BatchedInstantRewardEnv(num_envs=8, task=task, info_text=False)
    batch = collect(model, env, seed=0, generator=torch.Generator().manual_seed(0), temperature=temperature)
    with torch.no_grad():
        new_logp, _, _ = ActionEvaluator(model, temperature)(batch.source, batch.actions, torch.as_tensor(task.action_mask()))
    torch.testing.assert_close(torch.where(batch.mask, new_logp, 0.0), batch.logprobs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("algo", ["ppo", "reinforce"])
def test_scoring_a_minibatch_up_to_its_longest_episode_and_source_changes_nothing(algo):
    """ppo_update cuts each minibatch's pass to its longest episode and source; loss and gradients must be
    those of the full-width pass."""
    import dataclasses

    from agents.model import ModelConfig, PolicyModel
    from agents.ppo import ActionEvaluator, PPOConfig, advantages_for, minibatch_loss
    from agents.rollout import collect
    from ir_env import PAD, BatchedInstantRewardEnv, make_task

    task = make_task("translation")
    torch.manual_seed(0)
    model = PolicyModel(ModelConfig.preset("tiny", len(task.vocab), task.max_source_len, task.max_generation_len))
    env = BatchedInstantRewardEnv(num_envs=12, task=task, info_text=False)
    batch = collect(model, env, seed=0, generator=torch.Generator().manual_seed(0))
    # An untrained policy runs to the length cap; end its episodes earlier, at lengths of 3..15.
    lengths = np.random.default_rng(0).integers(3, 16, size=12)
    live = torch.arange(batch.actions.shape[1]) < torch.as_tensor(lengths)[:, None]
    batch = dataclasses.replace(batch, actions=batch.actions.masked_fill(~live, PAD), mask=live, lengths=lengths,
                                logprobs=batch.logprobs * live, values=batch.values * live, rewards=batch.rewards * live)
    config = PPOConfig(algo=algo, num_envs=12)
    advantages, returns = advantages_for(batch, batch.rewards, config)
    rows = torch.arange(2, 9)
    width = int(batch.lengths[2:9].max())
    source_width = int((batch.source[2:9] != PAD).sum(1).max())
    assert width < batch.actions.shape[1] and source_width < batch.source.shape[1], "the test needs something to cut"
    mask = torch.as_tensor(task.action_mask())
    results = []
    for widths in ((None, None), (width, source_width)):
        model.zero_grad()
        loss, parts = minibatch_loss(ActionEvaluator(model), batch, rows, advantages, returns, config, mask, None, *widths)
        loss.backward()
        results.append((loss.detach(), parts, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (full, full_parts, full_grads), (cut, cut_parts, cut_grads) = results
    torch.testing.assert_close(cut, full, atol=1e-6, rtol=1e-5)
    for key in full_parts:
        torch.testing.assert_close(cut_parts[key], full_parts[key], atol=1e-6, rtol=1e-5, msg=key)
    for name, grad in full_grads.items():
        torch.testing.assert_close(cut_grads[name], grad, atol=1e-6, rtol=1e-4, msg=name)
    short, _ = minibatch_loss(ActionEvaluator(model), batch, rows, advantages, returns, config, mask, None, width - 1, source_width)
    assert not torch.isclose(short, full), "cutting into an episode must change the loss (the check can fail)"


def test_split_by_length_sorts_rows_into_groups_by_episode_then_source_length():
    from agents.ppo import split_by_length

    lengths, source_len = np.array([9, 3, 3, 7, 1, 5]), np.array([2, 8, 4, 1, 6, 3])
    rows = np.array([0, 1, 2, 3, 4, 5])
    groups = split_by_length(rows, lengths, source_len, 3)
    assert [g.tolist() for g in groups] == [[4, 2], [1, 5], [3, 0]]
    assert split_by_length(rows, lengths, source_len, 1)[0] is rows
    assert sorted(np.concatenate(split_by_length(rows[:2], lengths, source_len, 4)).tolist()) == [0, 1]


@pytest.mark.parametrize("algo, mle_coef", [("ppo", 0.0), ("rloo", 0.0), ("reinforce", 0.5)])
def test_an_update_in_length_groups_is_the_update_in_one_pass(algo, mle_coef):
    """ppo_update with length_groups > 1 scores each minibatch in several passes over rows of similar
    length and adds their gradients: weights and logged statistics must be those of one pass per minibatch."""
    import dataclasses

    from agents.model import ModelConfig, PolicyModel
    from agents.ppo import ActionEvaluator, advantages_for, ppo_update
    from agents.rollout import collect
    from agents.supervised import reference_targets
    from ir_env import PAD, UNK, BatchedInstantRewardEnv, make_task

    task = make_task("translation")
    torch.manual_seed(0)
    start = PolicyModel(ModelConfig.preset("tiny", len(task.vocab), task.max_source_len, task.max_generation_len))
    env = BatchedInstantRewardEnv(num_envs=16, task=task, info_text=False, copy=False)
    batch = collect(start, env, seed=0, generator=torch.Generator().manual_seed(0))
    lengths = np.random.default_rng(1).integers(2, 16, size=16)  # episodes of many lengths
    live = torch.arange(batch.actions.shape[1]) < torch.as_tensor(lengths)[:, None]
    references = torch.as_tensor(reference_targets(env.episodes.examples, task.max_generation_len))[batch.example_ids]
    references[3, 0] = UNK  # forbidden by the action mask: not scored, in one pass or in groups
    batch = dataclasses.replace(batch, actions=batch.actions.masked_fill(~live, PAD), mask=live, lengths=lengths,
                                logprobs=batch.logprobs * live, values=batch.values * live,
                                rewards=batch.rewards * live, references=references)
    mask = torch.as_tensor(task.action_mask())
    results = []
    for groups in (1, 3):
        model = PolicyModel(start.config)
        model.load_state_dict(start.state_dict())
        config = PPOConfig(algo=algo, num_envs=16, num_minibatches=2, update_epochs=2, mle_coef=mle_coef,
                           length_groups=groups)
        advantages, returns = advantages_for(batch, batch.rewards, config)
        # plain SGD: the weights move by the gradients themselves (Adam would blow float noise in tiny ones up)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        stats = ppo_update(ActionEvaluator(model), optimizer, batch, advantages, returns, config, mask,
                           np.random.default_rng(0))
        results.append((stats, model.state_dict()))
    (one, one_weights), (grouped, grouped_weights) = results
    assert one.keys() == grouped.keys()
    for key in one:
        assert grouped[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key
    moved = False
    for name, weight in one_weights.items():
        torch.testing.assert_close(grouped_weights[name], weight, atol=2e-6, rtol=1e-4, msg=name)
        moved |= not torch.equal(weight, start.state_dict()[name])
    assert moved, "the update must change the weights (the check can fail)"


def test_the_mle_term_adds_the_references_negative_log_likelihood_to_the_loss():
    """mle_coef * NLL of the rows' references, scored in the same pass as the sampled actions, and nothing
    else changes: checked against a separate teacher-forced pass over the references alone."""
    import dataclasses

    from agents.model import ModelConfig, PolicyModel
    from agents.ppo import ActionEvaluator, PPOConfig, advantages_for, minibatch_loss
    from agents.rollout import collect
    from agents.supervised import reference_targets
    from ir_env import PAD, UNK, BatchedInstantRewardEnv, make_task

    task = make_task("translation")
    torch.manual_seed(0)
    model = PolicyModel(ModelConfig.preset("tiny", len(task.vocab), task.max_source_len, task.max_generation_len))
    env = BatchedInstantRewardEnv(num_envs=8, task=task, info_text=False, copy=False)
    batch = collect(model, env, seed=0, generator=torch.Generator().manual_seed(0), temperature=0.7)
    references = torch.as_tensor(reference_targets(env.episodes.examples, task.max_generation_len))[batch.example_ids]
    references[0, 1] = UNK  # a token the action mask forbids: left out of the likelihood, not -inf
    batch = dataclasses.replace(batch, references=references)
    mask, rows = torch.as_tensor(task.action_mask()), torch.arange(1, 7)
    evaluator = ActionEvaluator(model, temperature=0.7)
    plain, with_mle = PPOConfig(algo="reinforce", num_envs=8), PPOConfig(algo="reinforce", num_envs=8, mle_coef=0.3)
    advantages, returns = advantages_for(batch, batch.rewards, plain)
    loss_plain, parts_plain = minibatch_loss(evaluator, batch, rows, advantages, returns, plain, mask)
    loss_mle, parts_mle = minibatch_loss(evaluator, batch, torch.arange(0, 7), advantages, returns, with_mle, mask)
    loss_mle_rows, parts_mle_rows = minibatch_loss(evaluator, batch, rows, advantages, returns, with_mle, mask)
    assert torch.isfinite(parts_mle["mle_nll"]), "a forbidden reference token must not make the likelihood -inf"
    with torch.no_grad():
        ref_logp, _, _ = evaluator(batch.source[rows], references[rows], mask)
    keep = references[rows] != PAD
    expected_nll = -(ref_logp * keep).sum() / keep.sum()
    torch.testing.assert_close(parts_mle_rows["mle_nll"], expected_nll, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss_mle_rows, loss_plain + 0.3 * expected_nll, atol=1e-5, rtol=1e-5)
    for key in parts_plain:  # the policy-gradient parts are those of the pass without references
        torch.testing.assert_close(parts_mle_rows[key], parts_plain[key], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="references"):
        minibatch_loss(evaluator, dataclasses.replace(batch, references=None), rows, advantages, returns, with_mle, mask)


def test_rl_with_the_mle_term_raises_the_references_likelihood(tmp_path):
    ppo = PPOConfig(algo="reinforce", num_envs=16, num_minibatches=2, learning_rate=3e-3, mle_coef=1.0,
                    lr_warmup_updates=1)
    summary = train(tiny_run(tmp_path / "run", ppo=ppo, task="translation", total_tokens=3_000,
                             task_kwargs={"num_train": 64, "num_valid": 16, "num_test": 16}))
    rows = (tmp_path / "run" / "metrics.csv").read_text().strip().splitlines()
    header = rows[0].split(",")
    nll = [float(r.split(",")[header.index("mle_nll")]) for r in rows[1:]]
    assert summary["updates"] == len(nll) >= 6
    assert np.mean(nll[-2:]) < np.mean(nll[:2]) - 0.5 and all(np.diff(nll) < 0.1), nll


def test_a_rollout_that_drops_finished_rows_records_the_same_episodes(monkeypatch, stop_by_source_length):
    """collect drops finished rows from the decode state; greedy episodes, log-probabilities, values and
    rewards must be those of stepping every row to the end (COMPACT_AT = 0 never drops one)."""
    import agents.rollout as rollout_module
    from agents.model import ModelConfig, PolicyModel
    from agents.rollout import collect
    from ir_env import BatchedInstantRewardEnv, make_task

    task = make_task("translation")
    torch.manual_seed(0)
    model = PolicyModel(ModelConfig.preset("tiny", len(task.vocab), task.max_source_len, task.max_generation_len)).eval()
    calls = stop_by_source_length(model)
    batches = []
    for share in (rollout_module.COMPACT_AT, 0.0):
        monkeypatch.setattr(rollout_module, "COMPACT_AT", share)
        env = BatchedInstantRewardEnv(num_envs=12, task=task, info_text=False)
        batches.append(collect(model, env, seed=3, greedy=True))
    assert calls, "rows finished at different steps and were dropped"
    dropped, kept = batches
    assert len(set(dropped.lengths.tolist())) > 2, "the test needs episodes of different lengths"
    np.testing.assert_array_equal(dropped.lengths, kept.lengths)
    np.testing.assert_array_equal(dropped.scores, kept.scores)
    for name in ("actions", "mask", "rewards"):
        assert torch.equal(getattr(dropped, name), getattr(kept, name)), name
    for name in ("logprobs", "values"):
        torch.testing.assert_close(getattr(dropped, name), getattr(kept, name), atol=1e-5, rtol=0, msg=name)
