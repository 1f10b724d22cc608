"""benchmarks/multi30k_runs.py: the table of every committed Multi30k quality run, read from the results files."""

from __future__ import annotations

import json

import pytest

from benchmarks.multi30k_runs import (
    RESULTS,
    cpu_of,
    load_run,
    load_runs,
    main,
    recipe_of,
    render,
)

ARGS = {"seed": 0, "minutes": 60.0, "ema": [0.995, 0.998], "rl_algo": "rloo", "rl_lr": 2e-5,
        "rl_length_groups": 4, "rl_bleu": "moving", "rl_length_weight": 0.0, "rl_mle_coef": 0.0, "dropout": 0.1}


def _section(seed: int, mle: tuple[float, float], rl: tuple[float, float], **args) -> dict:
    """A minimal multi30k section as benchmarks.quality writes it (candidates: the chosen average and the last weights)."""
    return {"args": {**ARGS, "seed": seed, **args}, "mle_steps": 4000,
            "machine": "AMD EPYC, 2 cores; 2026-11-30; code: commit abc1234",
            "mle": {"valid_bleu": mle[0], "test_bleu": mle[1], "weights": "EMA 0.995"},
            "mle_candidates": {"last weights": {"valid_bleu": mle[0] - 1.0, "test_bleu": mle[1] - 0.5},
                               "EMA 0.995": {"valid_bleu": mle[0], "test_bleu": mle[1]}},
            "mle_snapshot": {"valid_bleu": 35.0, "test_bleu": 34.0},
            "mle_rl": {"valid_bleu": rl[0], "test_bleu": rl[1]}}


def _write(folder, name: str, results: dict) -> None:
    (folder / f"{name}.json").write_text(json.dumps(results), encoding="utf-8")


def _with_bootstrap(section: dict) -> dict:
    """The section with the paired bootstrap and greedy length ratios that runs since cf8ad04 record."""
    gain = {split: {"delta": section["mle_rl"][f"{split}_bleu"] - section["mle"][f"{split}_bleu"], "low": -0.5,
                    "high": 1.5, "length_ratio_a": 0.99, "length_ratio_b": ratio}
            for split, ratio in (("valid", 0.955), ("test", 0.993))}
    section["mle_rl"]["gain_over_mle"] = gain
    section["mle_snapshot"]["length_ratio"] = {"valid": 0.978, "test": 1.018}
    return section


def test_rows_gains_recipe_means_and_the_selection_check_come_from_the_files(tmp_path):
    _write(tmp_path, "quality_a", {"multi30k": _with_bootstrap(_section(0, (36.0, 35.0), (36.5, 36.2)))})
    _write(tmp_path, "quality_b", {"multi30k": _section(1, (35.0, 35.5), (35.1, 36.3))})
    _write(tmp_path, "quality_c", {"multi30k": _section(0, (36.0, 35.0), (35.0, 35.0), rl_length_weight=0.5)})
    _write(tmp_path, "quality_sst2_only", {"sst2": {"positive_rate": 0.6}})
    runs = load_runs(tmp_path)
    assert [r.name for r in runs] == ["quality_a", "quality_b", "quality_c"]  # the SST-2-only file has no run
    a = runs[0]
    assert a.gain == pytest.approx((0.5, 1.2))
    assert a.commit == "abc1234" and a.cpu == "AMD EPYC"
    assert cpu_of("Intel(R) Xeon(R) Processor @ 2.80GHz, 2 cores, 24 GiB RAM") == "Intel Xeon @ 2.80GHz"
    # chosen gap 1.0, last weights' gap 0.5: choosing on valid added 1.0 - mean(1.0, 0.5) = 0.25
    assert a.selection_excess == pytest.approx(0.25)
    assert a.lengths == (0.978, 1.018, 0.955, 0.993) and runs[1].lengths is None
    assert a.mle_lengths == (0.99, 0.99) and runs[1].mle_lengths is None
    table = render(runs)
    # seeds 0 and 1 of one recipe are averaged: valid (+0.5 + 0.1) / 2, test (+1.2 + 0.8) / 2; the other has one seed
    assert f"| {a.recipe} | 0, 1 | +0.50 / +0.10 | **+0.30** | +1.20 / +0.80 | **+1.00** |" in table
    assert runs[2].recipe not in table.split("## Recipes")[1].split("## Selection")[0]
    assert "[quality_c](quality_c.md)" in table
    assert "| +0.50 [−0.50, +1.50] | +1.20 [−0.50, +1.50] | 0.978 → 0.955 | 1.018 → 0.993 |" in table
    assert "Mean over the 3 runs: **+0.250** BLEU." in table
    # MLE alone on test2016: 35.0, 35.5, 35.0
    assert "Over the 3 runs: test2016 35.00 to 35.50, mean **35.17**; at or above 35 on 3 of 3." in table
    assert "in the 1 of them that record it: valid 0.990 to 0.990, test2016 0.990 to 0.990." in table


def test_a_run_on_another_runs_mle_is_paired_with_it_and_its_mle_counted_once(tmp_path):
    first = {**_section(0, (36.0, 35.0), (36.5, 36.2), rl_length_weight=0.5), "command": "python -m q --seed 0",
             "date": "2026-12-01T00:03"}
    again = _section(0, (36.0, 35.0), (37.0, 36.0), rl_length_weight=0.5, rl_hold_greedy=256)
    again.update(command="python -m q --rl-from /tmp/x", date="2026-12-01T01:30",
                 mle_from={"run": "/tmp/x", "command": first["command"], "date": first["date"], "machine": "AMD EPYC"})
    orphan = _section(1, (35.0, 35.5), (35.1, 36.3))
    orphan["mle_from"] = {"run": "/tmp/y", "command": "python -m q --seed 1", "date": "2026-11-01T00:00"}
    for name, section in (("quality_first", first), ("quality_held", again), ("quality_orphan", orphan)):
        _write(tmp_path, name, {"multi30k": section})
    runs = {r.name: r for r in load_runs(tmp_path)}
    assert (runs["quality_held"].reused, runs["quality_held"].mle_of) == (True, "quality_first")
    assert (runs["quality_first"].reused, runs["quality_first"].mle_of) == (False, "")
    assert runs["quality_orphan"].mle_of == "an uncommitted run"
    table = render(list(runs.values()))
    assert "| [quality_held](quality_held.md), MLE of [quality_first](quality_first.md) | 60 |" in table
    assert "| [quality_orphan](quality_orphan.md), MLE of an uncommitted run | 60 |" in table
    shared = table.split("## RL recipes on one MLE run")[1].split("##")[0]
    assert shared.count("| quality_first | ") == 2 and "| quality_first | quality_held | " in shared
    assert "greedy length held on 256 sources | 37.00 / 36.00 | +1.00 | +1.00 |" in shared
    assert "Over the 1 runs: test2016 35.00 to 35.00" in table, "the reused MLE arms are not counted again"
    assert "Mean over the 1 runs:" in table


def test_rl_runs_on_one_mle_run_are_averaged_before_the_mean_over_mle_seeds(tmp_path):
    first = {**_section(7, (35.0, 34.0), (35.5, 35.5)), "command": "python -m q --seed 7", "date": "2026-12-03T08:00"}
    _write(tmp_path, "quality_s7", {"multi30k": first})
    for name, rl_seed, rl in (("quality_s7_again", None, (35.3, 35.1)), ("quality_s7_rl8", 8, (35.6, 34.6))):
        again = _section(7, (35.0, 34.0), rl, **({"rl_seed": rl_seed} if rl_seed else {}))
        again.update(command="python -m q --rl-from /tmp/x", date="2026-12-03T09:00",
                     mle_from={"run": "/tmp/x", "command": first["command"], "date": first["date"]})
        _write(tmp_path, name, {"multi30k": again})
    _write(tmp_path, "quality_s1", {"multi30k": _section(1, (36.0, 35.0), (36.0, 36.0))})
    runs = load_runs(tmp_path)
    assert {r.family for r in runs} == {recipe_of(ARGS)}
    assert next(r for r in runs if r.name == "quality_s7_rl8").recipe == recipe_of(ARGS) + ", RL seed 8"
    means = render(runs).split("## Recipes")[1].split("##")[0]
    # seed 7: three RL runs, valid (0.5 + 0.3 + 0.6) / 3 = 0.47, test (1.5 + 1.1 + 0.6) / 3 = 1.07; seed 1: 0.0 / 1.0
    assert (f"| {recipe_of(ARGS)} | 1, 7 | +0.00 / +0.47 (3) | **+0.23** | +1.00 / +1.07 (3) | **+1.03** |"
            in means), means
    assert means.count(f"| {recipe_of(ARGS)}") == 1, "the RL seed's run is not a recipe of its own"


def test_one_objective_before_and_after_the_encoder_once_change_gets_a_mean_over_all_its_mle_runs(tmp_path):
    # seeds 1 and 2 encoded every row (older runs), seeds 3 and 4 ran the encoder once per source
    for seed, gain, shared in ((1, (0.4, 1.0), False), (2, (0.2, 0.6), False), (3, (-0.2, 1.4), True), (4, (0.0, 0.2), True)):
        rl = (35.0 + gain[0], 34.0 + gain[1])
        _write(tmp_path, f"quality_s{seed}", {"multi30k": _section(seed, (35.0, 34.0), rl,
                                                                   **({"rl_share_encoder": True} if shared else {}))})
    _write(tmp_path, "quality_other", {"multi30k": _section(5, (35.0, 34.0), (36.0, 36.0), rl_length_weight=0.5)})
    runs = load_runs(tmp_path)
    assert {r.objective for r in runs if r.seed < 5} == {recipe_of(ARGS)}
    assert recipe_of({**ARGS, "rl_share_encoder": True}, computation=False) == recipe_of(ARGS)
    means = render(runs).split("## Recipes")[1].split("##")[0]
    assert f"| {recipe_of(ARGS)} | 1, 2 | +0.40 / +0.20 | **+0.30** | +1.00 / +0.60 | **+0.80** |" in means, means
    shared = recipe_of({**ARGS, "rl_share_encoder": True})
    assert f"| {shared} | 3, 4 | −0.20 / +0.00 | **−0.10** | +1.40 / +0.20 | **+0.80** |" in means, means
    # all four: valid (0.4 + 0.2 - 0.2 + 0.0) / 4 = 0.10, test (1.0 + 0.6 + 1.4 + 0.2) / 4 = 0.80
    assert (f"| {recipe_of(ARGS)}; with and without the encoder once per source | 1, 2, 3, 4 "
            f"| +0.40 / +0.20 / −0.20 / +0.00 | **+0.10** | +1.00 / +0.60 / +1.40 / +0.20 | **+0.80** |") in means, means
    assert means.count("; with and without the encoder") == 1, "only an objective run both ways gets the row"


def test_check_fails_until_the_table_is_rendered_again(tmp_path, capsys):
    _write(tmp_path, "quality_a", {"multi30k": _section(0, (36.0, 35.0), (36.5, 36.2))})
    assert main(["--results", str(tmp_path), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert main(["--results", str(tmp_path)]) == 0
    assert main(["--results", str(tmp_path), "--check"]) == 0
    _write(tmp_path, "quality_b", {"multi30k": _section(1, (35.0, 35.5), (35.1, 36.3))})
    assert main(["--results", str(tmp_path), "--check"]) == 1


def test_the_recipe_names_what_tells_runs_apart():
    assert recipe_of(ARGS) == "EMA, RLOO lr 2e-05, 4 length groups, moving point"
    assert recipe_of({**ARGS, "ema": 0.0, "rl_bleu": None, "rl_length_groups": None}) == \
        "last weights, RLOO lr 2e-05, sentence BLEU"
    assert recipe_of({**ARGS, "rl_length_weight": 0.5, "rl_mle_coef": 1.0}).endswith("length x0.5, MLE term x1")
    assert recipe_of({**ARGS, "rl_minutes": 20.0, "rl_temperature": 0.3}).endswith("RL 20 min, rollouts at T 0.3")
    assert recipe_of({**ARGS, "rl_minutes": 10.0, "rl_temperature": 0.5}) == recipe_of(ARGS), "the defaults go unsaid"
    assert recipe_of({**ARGS, "rl_envs": 128}).endswith("moving point, 128 episodes per update")
    assert recipe_of({**ARGS, "rl_envs": 256}) == recipe_of(ARGS), "the default rollout goes unsaid"
    assert recipe_of({**ARGS, "rl_hold_greedy": 256, "rl_seed": 7}).endswith("greedy length held on 256 sources, RL seed 7")
    assert recipe_of({**ARGS, "rl_hold_greedy": 256, "rl_hold_ratio": 1.0}).endswith(
        "greedy length held on 256 sources at 1 of the references'")
    assert recipe_of({**ARGS, "rl_seed": 0}) == recipe_of(ARGS), "an RL seed equal to the run's goes unsaid"
    assert recipe_of({**ARGS, "rl_seed": 7}, rl_seed=False) == recipe_of(ARGS), "the family leaves the RL seed out"
    assert recipe_of({**ARGS, "rl_ema": [0.99, 0.98]}).endswith("moving point, RL EMA 0.98/0.99")
    assert recipe_of({**ARGS, "rl_share_encoder": True}) == "EMA, RLOO lr 2e-05, 4 length groups, encoder once per source, moving point"
    assert recipe_of({**ARGS, "rl_share_encoder": False}) == recipe_of(ARGS), "per-row encoding (the old runs') goes unsaid"
    assert recipe_of({**ARGS, "precision": "bf16"}) == recipe_of(ARGS) + ", bf16 training"
    assert recipe_of({**ARGS, "precision": "fp32"}) == recipe_of(ARGS), "fp32 (the old runs') goes unsaid"


def test_the_committed_table_is_up_to_date_with_the_committed_results():
    assert main(["--check"]) == 0, "run: python -m benchmarks.multi30k_runs"


def test_each_committed_gain_is_the_one_its_bootstrap_measured():
    runs = {r.name: r for r in load_runs()}
    assert len(runs) >= 12
    for path in RESULTS.glob("quality*.json"):
        section = json.loads(path.read_text(encoding="utf-8")).get("multi30k", {})
        bootstrap = section.get("mle_rl", {}).get("gain_over_mle")
        if bootstrap:
            run = load_run(path)
            assert run.gain == pytest.approx((bootstrap["valid"]["delta"], bootstrap["test"]["delta"]), abs=1e-9)
            assert run.intervals[1] == (bootstrap["test"]["low"], bootstrap["test"]["high"])
