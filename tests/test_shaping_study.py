"""benchmarks/shaping.py end to end with a tiny budget, and its per-run measurements."""

from __future__ import annotations

import pytest

from benchmarks.shaping import CONDITION_NAMES, main


def table_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


def test_quick_study_runs_end_to_end_and_writes_a_well_formed_table(tmp_path):
    out = tmp_path / "shaping.md"
    summary = main(["--quick", "--tokens", "500", "--eval-examples", "16", "--workers", "1", "--out", str(out)])
    text = out.read_text()
    assert text.startswith("# Reward shaping")
    assert "Command: `python -m benchmarks.shaping --quick" in text and "Machine:" in text and "Seeds: 0 1;" in text
    rows = table_rows(text)
    assert rows["condition"][:3] == ["condition", "final valid [95% CI]", "IQM"]
    for name in CONDITION_NAMES:
        cells = rows[name]
        assert len(cells) == 10, cells
        mean = float(cells[1].split("[")[0])
        low, high = (float(x) for x in cells[1].split("[")[1].rstrip("]").split(","))
        assert 0.0 <= low <= mean <= high <= 1.0, cells
        assert 0.0 <= float(cells[6]) <= 1.0  # chrF judge
    results = summary["results"]
    assert len(results) == 2 * len(CONDITION_NAMES)
    for r in results:
        assert r["total_steps"] >= 500 and r["steps"] == sorted(r["steps"]) and r["steps"][-1] == r["total_steps"]
    png = tmp_path / "shaping_matching_summary.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the saved runs rebuild the same report without training
    png.unlink()
    main(["--report-only", "--out", str(out)])
    assert table_rows(out.read_text()) == rows and png.exists()


def test_a_rerun_with_the_same_seed_reproduces_the_numbers(tmp_path):
    args = ["--tasks", "matching:summary", "--seeds", "3", "--conditions", "instant", "--tokens", "300",
            "--eval-examples", "8", "--workers", "1"]
    a = main(args + ["--out", str(tmp_path / "a.md")])["results"][0]
    b = main(args + ["--out", str(tmp_path / "b.md")])["results"][0]
    for key in ("steps", "scores", "final_valid", "judge", "length", "repetition", "distinct2"):
        assert a[key] == b[key], key


def test_unknown_task_fails_before_any_run(tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        main(["--tasks", "nope", "--out", str(tmp_path / "x.md")])
