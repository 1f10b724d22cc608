"""benchmarks/quality.py end to end on the real files with tiny budgets (skipped without the data folder), and its
BLEU statistics for the paired bootstrap against sacrebleu (always run)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import sacrebleu
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from shipped import shipped

from benchmarks import quality
from benchmarks.corpus_bleu import bleu_of_statistics, bleu_statistics, paired_bleu
from benchmarks.quality import main

WORDS = ["ein", "mann", "hund", "im", "schnee", ".", "Frau", "rot"]


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return shipped("multi30k")


def test_multi30k_part_writes_both_arms_and_keeps_other_sections(tmp_path, data_dir, monkeypatch, capsys):
    monkeypatch.setenv("IR_DATA_DIR", str(data_dir))
    (tmp_path / "quality.json").write_text(json.dumps({"kept": {"from": "an earlier run"}}))
    rl_runs, rl_from = [], quality.rl_from

    def recording_rl_from(*args, **run):
        rl_runs.append({**run, "ppo": args[5]})
        return rl_from(*args, **run)

    monkeypatch.setattr(quality, "rl_from", recording_rl_from)
    import agents.supervised
    import agents.trainer

    seeds, precisions, train = [], [], agents.trainer.train
    monkeypatch.setattr(agents.trainer, "train", lambda config: seeds.append(config.seed) or precisions.append(config.precision) or train(config))
    mle_autocasts, mle_train = [], agents.supervised.mle_train

    def recording_mle_train(*args, autocast=None, **kwargs):
        mle_autocasts.append(None if autocast is None else (autocast.device, autocast.fast_dtype))
        return mle_train(*args, autocast=autocast, **kwargs)

    monkeypatch.setattr(agents.supervised, "mle_train", recording_mle_train)
    main(["--parts", "multi30k", "--model", "tiny", "--minutes", "0.12", "--rl-minutes", "0.04",
          "--eval-minutes", "0.04", "--rl-envs", "16", "--threads", "1", "--ema", "0.998", "0.9", "--precision", "bf16",
          "--rl-length-weight", "0.5", "--rl-bleu", "moving", "--rl-hold-length", "32", "--out", str(tmp_path)])
    assert mle_autocasts == [("cpu", torch.bfloat16)] and precisions == ["bf16"], "--precision reaches both arms"
    assert [(run["reward"], run["reward_weights"]) for run in rl_runs] == [("mixed", {"instant": 1.0, "length": 0.5})]
    point = rl_runs[0]["task_kwargs"]["bleu_point"]  # LinearBLEU at the snapshot's mean valid statistics
    assert len(point) == 10 and all(x > 0 for x in point) and point[2] <= point[6]
    results = json.loads((tmp_path / "quality.json").read_text())
    assert results["kept"] == {"from": "an earlier run"}
    r = results["multi30k"]
    assert r["signature"].startswith("nrefs:1|case:lc|eff:no|tok:13a")
    assert r["mle_steps"] > 0 and r["mle_snapshot"]["step"] <= r["mle_steps"]
    for arm in ("mle", "mle_snapshot", "mle_rl"):
        assert 0.0 <= r[arm]["test_bleu"] <= 100.0 and 0.0 <= r[arm]["valid_bleu"] <= 100.0
    # Every candidate scored; the arm holds the one with the best valid BLEU, and its scores are that one's.
    candidates = r["mle_candidates"]
    assert list(candidates) == ["last weights", "EMA 0.9", "EMA 0.998"]
    best = max(candidates, key=lambda name: candidates[name]["valid_bleu"])
    assert r["mle"]["weights"] == best
    assert r["mle"]["valid_bleu"] == pytest.approx(candidates[best]["valid_bleu"])
    assert r["mle"]["test_bleu"] == pytest.approx(candidates[best]["test_bleu"])
    snap = r["mle_snapshot"]
    assert list(snap["candidates"]) == list(candidates)
    assert snap["weights"] == max(snap["candidates"], key=lambda name: snap["candidates"][name]["valid_bleu"])
    assert snap["valid_bleu"] == pytest.approx(snap["candidates"][snap["weights"]]["valid_bleu"])
    assert r["mle_rl"]["rl_tokens"] > 0
    gain = r["mle_rl"]["gain_over_mle"]
    for split in ("valid", "test"):  # the bootstrap's delta is the difference of the two arms' corpus BLEU
        assert gain[split]["delta"] == pytest.approx(r["mle_rl"][f"{split}_bleu"] - r["mle"][f"{split}_bleu"], abs=1e-9)
        assert gain[split]["low"] <= gain[split]["high"] and 0.0 <= gain[split]["p_not_better"] <= 1.0
    assert r["valid_curve"] and all(c["minutes"] >= 0.04 for c in r["valid_curve"])
    assert len(r["mle"]["test_examples"]) == 5 and all(isinstance(h, str) for h in r["mle"]["test_examples"])
    outputs = {  # every arm's greedy outputs, one line per sentence of the split
        (arm, split): (tmp_path / "multi30k_outputs" / f"{arm}.{split}.txt").read_text(encoding="utf-8").split("\n")
        for arm in ("mle", "mle_snapshot", "mle_rl") for split in ("valid", "test")
    }
    assert {key: (len(lines), lines[-1]) for key, lines in outputs.items()} == {
        (arm, split): (size + 1, "") for (arm, split) in outputs for size in [{"valid": 1014, "test": 1000}[split]]
    }
    assert outputs["mle", "test"][:5] == r["mle"]["test_examples"]
    assert outputs["mle_rl", "test"][:5] == r["mle_rl"]["test_examples"]
    assert "All greedy outputs: multi30k_outputs/" in (tmp_path / "quality.md").read_text()
    assert sorted(p.name for p in (tmp_path / "multi30k_weights").iterdir()) == ["mle.safetensors", "mle_snapshot.safetensors"]
    text = (tmp_path / "quality.md").read_text()
    assert "## Multi30k en->de (test2016)" in text and "| MLE + RL (rloo" in text
    assert "moving averages of the weights (decays 0.9, 0.998;" in text
    assert f"| MLE, {best}, chosen on valid |" in text
    assert sum(f"| MLE, {name} (not chosen) |" in text for name in candidates) == 2
    assert f"{r['mle']['test_bleu']:.2f}" in text
    assert f"- test: {gain['test']['delta']:+.2f} BLEU, [" in text
    assert ", + 0.5 x length penalty)" in text
    assert snap["bleu_point"] == point and "| MLE + RL (rloo, instant corpus BLEU linearised at each rollout, " in text
    assert [run["ppo"].relinearise_bleu for run in rl_runs] == [True]
    assert "- the RL reward's BLEU: `LinearBLEU` at the snapshot's mean per-sentence valid statistics" in text
    assert all(0.0 < snap["length_ratio"][split] < 3.0 for split in ("valid", "test"))
    assert f"length ratio {snap['length_ratio']['valid']:.3f} (valid)" in text
    curve = r["mle_rl"]["rl_curve"]
    assert [c["update"] for c in curve] == list(range(1, r["mle_rl"]["rl_updates"] + 1))
    assert all(0.0 < c["length_ratio"] < 5.0 for c in curve)
    assert "- the RL phase's sampled outputs (temperature 0.5, train split): output/reference length ratio " in text
    # where each update's wall time went: the env's steps are part of sampling the rollout
    assert all(c["rollout_seconds"] > 0 and 0 <= c["env_seconds"] <= c["rollout_seconds"] and c["update_seconds"] > 0
               and c["hold_seconds"] >= 0 for c in curve)
    mean_update = np.mean([c["update_seconds"] for c in curve])
    assert f"- the RL phase's time, mean per update over {len(curve)} updates: " in text
    assert f"rewards, advantages and the update {mean_update:.2f} s (" in text
    # The RL arm is decoded with the EOS bias that holds its greedy length on 32 training sources; the record
    # keeps its scores without the bias.
    hold = r["mle_rl"]["length_hold"]
    assert hold["sources"] == 32 and -4.0 <= hold["eos_bias"] <= 4.0 and hold["seconds"] >= 0.0
    assert hold["target_tokens"] >= 0 and hold["tokens"] >= 0
    assert all(0.0 <= hold["without"][f"{split}_bleu"] <= 100.0 for split in ("valid", "test"))
    assert f"| MLE + RL without the length hold | the same weights | {hold['without']['valid_bleu']:.2f} |" in text
    assert f"- the length hold (`benchmarks.length_hold`): EOS logit bias {hold['eos_bias']:+.4f}" in text

    # --rl-from: a second RL arm on this run's MLE weights, here with the greedy length held during RL
    same = ["--parts", "multi30k", "--model", "tiny", "--minutes", "0.12", "--rl-minutes", "0.04", "--eval-minutes",
            "0.04", "--threads", "1", "--ema", "0.998", "0.9", "--precision", "bf16"]
    again = tmp_path / "again"
    main([*same, "--rl-envs", "16", "--rl-length-weight", "0.5", "--rl-hold-greedy", "16", "--rl-hold-ratio", "1.0", "--rl-seed", "5",
          "--no-rl-share-encoder", "--rl-ema", "0.5", "0.9", "--rl-from", str(tmp_path), "--out", str(again)])
    rerun = json.loads((again / "quality.json").read_text())["multi30k"]
    assert rerun["mle_from"]["run"] == str(tmp_path) and rerun["mle_from"]["command"] == r["command"]
    for key in ("mle_steps", "valid_curve", "mle_candidates"):
        assert rerun[key] == r[key], key
    for arm in ("mle", "mle_snapshot"):  # the reloaded weights decode to the recorded scores and outputs
        assert (rerun[arm]["valid_bleu"], rerun[arm]["test_bleu"]) == (r[arm]["valid_bleu"], r[arm]["test_bleu"])
        assert (again / "multi30k_outputs" / f"{arm}.test.txt").read_text().split("\n") == outputs[arm, "test"]
    assert rerun["mle_snapshot"]["weights"] == snap["weights"] and rerun["mle_rl"]["rl_tokens"] > 0
    assert [run["ppo"].hold_greedy_length for run in rl_runs] == [0, 16]
    assert [run["ppo"].hold_greedy_ratio for run in rl_runs] == [0.0, 1.0]
    assert [run["ppo"].share_encoder for run in rl_runs] == [True, False], "--rl-share-encoder reaches PPOConfig"
    assert rerun["args"]["rl_share_encoder"] is False
    assert [run["ppo"].weight_averages for run in rl_runs] == [(), (0.5, 0.9)]
    assert "weights" not in r["mle_rl"], "without --rl-ema the RL arm is its last weights"
    rl = rerun["mle_rl"]  # --rl-ema: the RL arm is the candidate of the RL phase that scores best on valid
    assert list(rl["candidates"]) == ["last weights", "EMA 0.5", "EMA 0.9"]
    assert rl["weights"] == max(rl["candidates"], key=lambda name: rl["candidates"][name]["valid_bleu"])
    assert (rl["valid_bleu"], rl["test_bleu"]) == pytest.approx(
        (rl["candidates"][rl["weights"]]["valid_bleu"], rl["candidates"][rl["weights"]]["test_bleu"]))
    rerun_text = (again / "quality.md").read_text()
    assert f"{rl['weights']}, chosen on valid) |" in rerun_text
    assert sum(f"| MLE + RL, {name} of the RL phase (not chosen) |" in rerun_text for name in rl["candidates"]) == 2
    assert seeds == [0, 5], "--rl-seed seeds the RL phase alone"
    assert mle_autocasts == [("cpu", torch.bfloat16)] and precisions == ["bf16", "bf16"], "no MLE run with --rl-from"
    assert "matrix products of both arms' training in bf16" in text
    held = [c for c in rerun["mle_rl"]["rl_curve"] if "greedy_length_ratio" in c]
    assert held and held[0]["update"] == 1 and all(0.5 <= c["length_target"] <= 2.0 for c in held)
    assert f"- MLE arm and RL start reused from `{tmp_path}`, the run of `{r['command']}` ({r['date']}, {r['machine']})" in (
        again / "quality.md").read_text()
    with pytest.raises(SystemExit):  # another seed would be another MLE run
        main([*same, "--seed", "1", "--rl-from", str(tmp_path), "--out", str(tmp_path / "other")])
    capsys.readouterr()
    with pytest.raises(SystemExit):  # so would another precision
        quality.earlier_mle_run(argparse.ArgumentParser(), argparse.Namespace(**{**r["args"], "precision": "fp32", "rl_from": str(tmp_path)}))
    assert "--precision 'bf16' there, 'fp32' here" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
    # a run from before --precision existed trained in fp32: it matches fp32 and only fp32
    record = json.loads((tmp_path / "quality.json").read_text())
    del record["multi30k"]["args"]["precision"]
    (tmp_path / "quality.json").write_text(json.dumps(record))
    quality.earlier_mle_run(argparse.ArgumentParser(), argparse.Namespace(**{**r["args"], "precision": "fp32", "rl_from": str(tmp_path)}))
    with pytest.raises(SystemExit):
        quality.earlier_mle_run(argparse.ArgumentParser(), argparse.Namespace(**{**r["args"], "rl_from": str(tmp_path)}))
    assert "--precision 'fp32' there, 'bf16' here" in capsys.readouterr().err


def test_sst2_part_reports_reward_and_judge_for_both_models(tmp_path, data_dir, monkeypatch):
    from agents.classifier import train_sentiment_classifier
    from ir_env.rewards.classifier import ClassifierConfig

    monkeypatch.setenv("IR_DATA_DIR", str(data_dir))
    classifier = tmp_path / "cnn"
    train_sentiment_classifier(str(data_dir), str(classifier), epochs=1, max_train=2000, progress=False,
                               config=ClassifierConfig(embedding_dim=16, num_filters=8))
    main(["--parts", "sst2", "--model", "tiny", "--sst2-mle-minutes", "0.05", "--sst2-rl-minutes", "0.05",
          "--samples", "1", "--classifier", str(classifier), "--threads", "1", "--out", str(tmp_path)])
    r = json.loads((tmp_path / "quality.json").read_text())["sst2"]
    assert r["reward"] == "classifier" and r["judges"] == ["vader"]
    for model in ("reference", "rl"):
        row = r[model]
        for scorer in ("classifier", "vader"):
            assert 0.0 <= row[scorer]["positive_rate"] <= 1.0 and -1.0 <= row[scorer]["mean"] <= 1.0
        assert row["perplexity"] > 1.0 and 0.0 <= row["distinct2"] <= 1.0
    assert r["rl"]["tokens"] > 0
    text = (tmp_path / "quality.md").read_text()
    assert "## SST-2: steer continuations positive" in text
    assert "| positive rate (classifier = reward) | positive rate (vader, judge) |" in text


def test_sst2_part_needs_a_held_out_judge(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("IR_DATA_DIR", str(data_dir))
    monkeypatch.delenv("IR_SST2_CLASSIFIER", raising=False)
    with pytest.raises(SystemExit, match="held-out judge"):
        main(["--parts", "sst2", "--sst2-reward", "vader", "--out", str(tmp_path)])


def test_squad_part_reports_f1_and_exact_match(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("IR_DATA_DIR", str(data_dir))
    main(["--parts", "squad", "--squad-minutes", "0.03", "--threads", "1", "--out", str(tmp_path)])
    r = json.loads((tmp_path / "quality.json").read_text())["squad"]
    assert r["mle_steps"] > 0 and r["test_examples"] > 1000
    assert 0.0 <= r["test_em"] <= r["test_f1"] <= 100.0  # an exact match is an F1 of 1
    text = (tmp_path / "quality.md").read_text()
    assert "## SQuAD v1.1: answer generation" in text and f"| {r['test_f1']:.2f} | {r['test_em']:.2f} |" in text


def test_rl_minutes_must_leave_mle_time(tmp_path):
    with pytest.raises(SystemExit):
        main(["--parts", "multi30k", "--minutes", "1", "--rl-minutes", "1", "--out", str(tmp_path)])


@pytest.mark.parametrize("weight", ["-0.5", "nan"])
def test_length_weight_must_be_a_number_at_least_zero(tmp_path, weight, capsys):
    with pytest.raises(SystemExit):
        main(["--parts", "multi30k", "--rl-length-weight", weight, "--out", str(tmp_path)])
    assert "--rl-length-weight must be a finite number >= 0" in capsys.readouterr().err


def test_hold_length_must_be_a_number_of_sources_at_least_zero(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--parts", "multi30k", "--rl-hold-length", "-1", "--out", str(tmp_path)])
    assert "--rl-hold-length must be a number of training sources >= 0, got -1" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [["--rl-hold-ratio", "1.0"], ["--rl-hold-ratio", "-1", "--rl-hold-greedy", "16",
                                                                  "--rl-length-weight", "0.5"]])
def test_hold_ratio_must_be_positive_and_needs_the_greedy_hold(tmp_path, extra, capsys):
    with pytest.raises(SystemExit):
        main(["--parts", "multi30k", *extra, "--out", str(tmp_path)])
    assert "--rl-hold-ratio must be in (0, 10) and needs --rl-hold-greedy" in capsys.readouterr().err


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from(WORDS), max_size=12),
                          st.lists(st.sampled_from(WORDS), min_size=1, max_size=12)), min_size=1, max_size=8))
def test_bleu_statistics_sum_to_sacrebleus_corpus_score(pairs):
    hyps, refs = [" ".join(h) for h, _ in pairs], [" ".join(r) for _, r in pairs]
    expected = sacrebleu.BLEU(lowercase=True, force=True).corpus_score(hyps, [refs]).score
    assert bleu_of_statistics(bleu_statistics(hyps, refs).sum(0)) == pytest.approx(expected, abs=1e-9)


def test_paired_bleu_finds_the_better_system_and_no_difference_with_itself():
    refs = ["ein mann mit einem roten hut .", "zwei hunde spielen im schnee .", "eine frau liest ein buch ."] * 20
    worse = ["ein mann mit hut .", "hunde im schnee .", "eine frau liest ."] * 20
    same = paired_bleu(worse, worse, refs, resamples=200)
    assert same["delta"] == same["low"] == same["high"] == 0.0 and same["p_not_better"] == 1.0
    better = paired_bleu(worse, refs, refs, resamples=200)
    score = sacrebleu.BLEU(lowercase=True, force=True).corpus_score(worse, [refs])
    assert better["delta"] == pytest.approx(100.0 - score.score) and better["low"] > 0.0 and better["p_not_better"] == 0.0
    assert better["length_ratio_a"] == pytest.approx(score.sys_len / score.ref_len) and better["length_ratio_b"] == 1.0
    with pytest.raises(ValueError, match="2 outputs for 3 references"):
        bleu_statistics(worse[:2], refs[:3])
