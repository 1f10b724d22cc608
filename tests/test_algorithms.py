"""benchmarks/algorithms.py end to end with a tiny budget, and its scoring helpers."""

from __future__ import annotations

import numpy as np

from benchmarks.algorithms import (
    DEFAULT_ALGORITHMS,
    LABELS,
    after_first_iteration,
    binned_curve,
    final_score,
    main,
)


def table_rows(text: str) -> dict[str, list[str]]:
    """The results table's body rows keyed by their first cell."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


def number(cell: str) -> float:
    return float(cell.split("±")[0].replace(",", "").rstrip("x").strip())


def test_quick_run_writes_table_and_plot(tmp_path):
    out = tmp_path / "algorithms.md"
    summary = main(["--quick", "--out", str(out)])
    text = out.read_text()
    assert "Command: `python -m benchmarks.algorithms --quick" in text
    assert "Machine:" in text and "Seeds: 0;" in text
    rows = table_rows(text)
    assert rows["algorithm"][1] == "trained tok/s"
    assert LABELS["ours_ppo_bf16"] not in rows, "bf16 is not in the default set"
    for algo in DEFAULT_ALGORITHMS:
        cells = rows[LABELS[algo]]
        tok_s, ratio, steady, steady_ratio, final = (number(c) for c in cells[1:6])
        assert tok_s > 0 and ratio > 0 and steady > 0 and steady_ratio > 0 and 0 < final <= 1, cells
        # every run used (at least) the budget and recorded episodes over it
        result = summary["results"][algo][0]
        assert result["total_steps"] >= 2_000
        assert sum(result["weights"]) >= 16 and max(result["steps"]) <= result["total_steps"]
    assert number(rows[LABELS["sb3_ppo"]][2]) == 1.0 and number(rows[LABELS["sb3_ppo"]][4]) == 1.0
    assert rows["algorithm"][3] == "after the first iteration: tok/s"
    assert 0 < summary["random"] < 1
    png = out.with_suffix(".png")
    assert png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_final_score_is_mean_of_last_fifth():
    result = {"scores": list(range(10)), "steps": list(range(10)), "weights": [1] * 10}
    assert final_score(result) == np.mean([8, 9])


def test_rate_after_the_first_iteration_leaves_it_out():
    run = {"iterations": [(100.0, 5.0), (200.0, 6.0), (300.0, 8.0)]}  # the first iteration took 5 s
    assert after_first_iteration(run) == 200.0 / 3.0
    assert np.isnan(after_first_iteration({"iterations": [(100.0, 5.0)]}))


def test_binned_curve_weights_episodes_and_leaves_empty_bins_nan():
    edges = np.array([0.0, 10.0, 20.0, 30.0])
    # two updates in the first bin (weights 1 and 3), none in the second, one in the third
    result = {"steps": [5.0, 10.0, 25.0], "scores": [0.0, 1.0, 0.5], "weights": [1, 3, 2]}
    curve = binned_curve(result, edges)
    assert curve[0] == 0.75 and np.isnan(curve[1]) and curve[2] == 0.5


def test_a_subset_of_algorithms_and_its_guard(tmp_path):
    import pytest

    out = tmp_path / "two.md"
    summary = main(["--algorithms", "ours_ppo", "ours_ppo_bf16", "sb3_ppo", "--seeds", "0", "--steps", "600",
                    "--workers", "1", "--task", "sentiment", "--out", str(out)])
    rows = table_rows(out.read_text())
    assert set(summary["results"]) == {"ours_ppo", "ours_ppo_bf16", "sb3_ppo"}
    assert LABELS["sb3_a2c"] not in rows and LABELS["ours_ppo"] in rows and LABELS["ours_ppo_bf16"] in rows
    assert summary["results"]["ours_ppo_bf16"][0]["total_steps"] >= 600
    assert out.read_text().startswith("# Our PPO against SB3 PPO\n")
    assert 'again with bf16 autocast of the matrix products (`precision="bf16"`' in out.read_text()
    assert "scored by vader" in out.read_text()
    with pytest.raises(SystemExit):
        main(["--algorithms", "ours_ppo", "--out", str(tmp_path / "x.md")])
