"""benchmarks/shaping.py end to end with a tiny budget, and its per-run measurements."""

from __future__ import annotations

import numpy as np
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
        judge, value = cells[6].split()  # the summary task has no judges of its own: corpus chrF
        assert judge == "chrF" and 0.0 <= float(value) <= 1.0
    results = summary["results"]
    assert len(results) == 2 * len(CONDITION_NAMES)
    for r in results:
        assert r["total_steps"] >= 500 and r["steps"] == sorted(r["steps"]) and r["steps"][-1] == r["total_steps"]
    png = tmp_path / "shaping_matching_summary.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the saved runs rebuild the same report without training, with the machine, code and date of the runs
    header = [line for line in text.splitlines() if line.startswith(("Machine:", "Date:"))]
    assert len(header) == 2 and "; code: " in header[0]
    png.unlink()
    main(["--report-only", "--out", str(out)])
    rebuilt = out.read_text()
    assert table_rows(rebuilt) == rows and png.exists()
    assert [line for line in rebuilt.splitlines() if line.startswith(("Machine:", "Date:"))] == header


def test_a_rerun_with_the_same_seed_reproduces_the_numbers(tmp_path):
    args = ["--tasks", "matching:summary", "--seeds", "3", "--conditions", "instant", "--tokens", "300",
            "--eval-examples", "8", "--workers", "1"]
    a = main(args + ["--out", str(tmp_path / "a.md")])["results"][0]
    b = main(args + ["--out", str(tmp_path / "b.md")])["results"][0]
    for key in ("steps", "scores", "final_valid", "judges", "length", "repetition", "distinct2"):
        assert a[key] == b[key], key


def test_unknown_task_fails_before_any_run(tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        main(["--tasks", "nope", "--out", str(tmp_path / "x.md")])


def test_held_out_judges_use_the_task_judges_where_there_are_some():
    from benchmarks.shaping import held_out_judges
    from ir_env import make_task

    task = make_task("matching:summary")  # references, no judges of its own: corpus chrF
    examples = task.examples("valid")
    refs = [list(examples.reference[i, : examples.reference_len[i]]) for i in range(4)]
    perfect = held_out_judges(task, refs, np.arange(4))
    assert list(perfect) == ["chrF"] and perfect["chrF"] == pytest.approx(1.0)
    assert held_out_judges(task, [refs[1], refs[0], refs[3], refs[2]], np.arange(4))["chrF"] < 0.9
    assert held_out_judges(make_task("sentiment"), [[5]], np.arange(1)) == {}  # no references, no judges

    class Judged:
        name, judge_names = "judged", ("a", "b")

        def judges(self, outputs, example_ids, split):
            return {"a": np.array([0.0, 1.0]), "b": np.array([0.5, 0.5])}

    assert held_out_judges(Judged(), [[5], [6]], np.arange(2)) == {"a": 0.5, "b": 0.5}


def test_runs_from_a_shared_maximum_likelihood_warm_start(tmp_path):
    out = tmp_path / "warm.md"
    args = ["--tasks", "matching:summary", "--seeds", "0", "--conditions", "sparse", "instant", "--tokens", "200",
            "--eval-examples", "8", "--workers", "1", "--init", "mle", "--mle-steps", "30", "--learning-rate", "1e-4",
            "--out", str(out)]
    warm = main(args)["results"]
    text = out.read_text()
    assert "from a maximum-likelihood warm start (30 steps" in text and "learning_rate=0.0001" in text
    scratch = main(args[:-8] + ["--out", str(tmp_path / "scratch.md")])["results"]
    # every condition's first rollout comes from the one shared warm start, which is not the fresh policy
    assert [r["condition"] for r in warm] == [r["condition"] for r in scratch] == ["sparse", "instant"]
    assert warm[0]["scores"][0] == warm[1]["scores"][0]
    assert warm[0]["scores"][0] != scratch[0]["scores"][0]


def test_an_interrupted_study_keeps_its_finished_runs_and_a_rerun_does_only_the_rest(tmp_path, monkeypatch):
    import benchmarks.shaping as shaping

    out = tmp_path / "study.md"
    args = ["--tasks", "matching:summary", "--seeds", "0", "--conditions", "sparse", "instant", "--tokens", "200",
            "--eval-examples", "8", "--workers", "1", "--out", str(out)]
    real_run_job, ran = shaping.run_job, []

    def dies_on_the_second_run(job):
        if ran:
            raise KeyboardInterrupt
        ran.append(job.condition)
        return real_run_job(job)

    monkeypatch.setattr(shaping, "run_job", dies_on_the_second_run)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    saved = list(out.with_suffix(".runs").glob("*.json"))
    assert ran == ["sparse"] and len(saved) == 1 and not out.exists()
    # the finished run can be reported as it is
    partial = main(["--report-only", "--out", str(out)])
    assert [r["condition"] for r in partial["results"]] == ["sparse"]
    assert "(interrupted: 1 runs finished)" in out.read_text() and "no total wall time" in out.read_text()
    out.unlink()
    out.with_suffix(".json").unlink()

    def counts(job):
        ran.append(job.condition)
        return real_run_job(job)

    monkeypatch.setattr(shaping, "run_job", counts)
    results = main(args)["results"]
    assert ran == ["sparse", "instant"]  # only the missing run was trained
    assert [r["condition"] for r in results] == ["sparse", "instant"] and out.exists()
    assert not out.with_suffix(".runs").exists()  # folded into study.json
    # runs saved under other settings (here: another budget) are not reused
    ran.clear()
    monkeypatch.setattr(shaping, "run_job", dies_on_the_second_run)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    monkeypatch.setattr(shaping, "run_job", counts)
    main(args[:-2] + ["--tokens", "300", "--out", str(out)])
    assert ran == ["sparse", "sparse", "instant"]
    # nor runs saved by other code (another commit)
    ran.clear()
    monkeypatch.setattr(shaping, "run_job", dies_on_the_second_run)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    monkeypatch.setattr(shaping, "run_job", counts)
    monkeypatch.setattr(shaping, "code_version", lambda: "commit 0000000")
    main(args)
    assert ran == ["sparse", "sparse", "instant"]
    assert "; code: commit 0000000" in out.read_text()
