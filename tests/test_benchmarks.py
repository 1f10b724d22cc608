"""benchmarks/throughput.py end to end with a tiny budget, and the correctness of what it compares."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.env_drivers import (
    ActionStream,
    batched_driver,
    naive_potential,
    reward_path_driver,
    scalar_driver,
    sync_driver,
)
from benchmarks.long_targets import METRICS, LongTargetTask
from benchmarks.one_cell import settings_from_json
from benchmarks.throughput import SECTIONS, main
from benchmarks.timing import task_named
from ir_env import EOS, InstantRewardEnv
from ir_env.tasks import BUILTIN_TASKS

TOLERANCE = 1e-9
TINY = ["--seconds", "0.01", "--num-envs", "1,4", "--sync-num-envs", "4", "--lengths", "4,8", "--sweep-num-envs", "4",
        "--fresh-processes", "2"]
NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?x?†?$")
NAIVE_TASKS = list(BUILTIN_TASKS) + [f"long:{metric}:8" for metric in METRICS]


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every table of a Markdown text as rows of cells (header first, separator dropped)."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append([cell.strip() for cell in line.strip("|").split("|")])
        elif current:
            assert re.fullmatch(r"(---\|?)+", "|".join(current[1])), f"no separator under the header {current[0]}"
            tables.append([current[0]] + current[2:])
            current = []
    return tables


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("bench") / "throughput.md"
    assert main([*TINY, "--out", str(out)]) == out
    return out.read_text()


def test_report_names_the_command_machine_and_date(report: str) -> None:
    assert "Command: `python -m benchmarks.throughput --seconds 0.01" in report
    assert re.search(r"Machine: .+ \d+ cores.*Python \d+\.\d+.*numpy .*gymnasium ", report)
    assert re.search(r"Date: \d{4}-\d\d-\d\dT\d\d:\d\d", report)


def test_report_has_every_section_and_the_targets(report: str) -> None:
    headings = re.findall(r"^## (.+)$", report, flags=re.MULTILINE)
    assert headings[0] == "Targets"
    assert len(headings) == 1 + len(SECTIONS)
    assert re.findall(r"^- \[[ x]\] .+: measured \S+", report, flags=re.MULTILINE), "the targets are a checklist"


def test_every_table_is_well_formed_with_positive_numbers(report: str) -> None:
    tables = markdown_tables(report)
    assert len(tables) == 6  # headline, scalar, comparison, length sweep, length growth, cache check
    for table in tables:
        header, rows = table[0], table[1:]
        assert rows, f"table {header} is empty"
        for row in rows:
            assert len(row) == len(header), f"row {row} does not match header {header}"
            numbers = [float(c.rstrip("x†").replace(",", "")) for c in row[1:] if NUMBER.match(c)]
            assert numbers and all(v > 0 for v in numbers), f"row {row} lacks positive measurements"


def test_every_task_appears_in_the_env_tables(report: str) -> None:
    scalar, comparison = markdown_tables(report)[1:3]
    assert [row[0] for row in scalar[1:]] == list(BUILTIN_TASKS)
    assert scalar[0][2:] == ["sparse", "instant", "token", "mixed"]
    for task in BUILTIN_TASKS:
        envs = {(row[1], row[2]) for row in comparison[1:] if row[0] == task}
        assert len(envs) == 6, f"{task}: {envs}"  # scalar, naive, sync 4, batched 1 and 4, batched 4 without text
        assert ("InstantRewardEnv", "1") in envs and ("BatchedInstantRewardEnv, info_text=False", "4") in envs


def test_headline_cell_runs_in_fresh_processes_and_checks_their_median(report: str) -> None:
    headline = markdown_tables(report)[0]
    assert [row[0] for row in headline[1:]] == ["1", "2", "median"]
    rates = [float(row[1].rstrip("†").replace(",", "")) for row in headline[1:]]
    assert min(rates[:2]) <= rates[2] <= max(rates[:2])  # the median of two lies between them
    assert re.search(r"^- \[[ x]\] at least 2,000,000 .+ median of 2 fresh processes: measured ", report, re.MULTILINE)


def test_one_cell_refuses_unknown_settings() -> None:
    with pytest.raises(ValueError, match="unknown Settings fields \\['secs'\\]"):
        settings_from_json('{"secs": 1}')


def test_length_tables_cover_every_metric(report: str) -> None:
    sweep, growth, cache = markdown_tables(report)[3:]
    assert {(row[0], row[1]) for row in sweep[1:]} >= {(m, str(L)) for m in ("bleu", "f1", "rouge_l") for L in (4, 8)}
    assert "vader" in {row[0] for row in sweep[1:]}
    assert [row[0] for row in growth[1:]] == ["bleu", "f1", "rouge_l"]
    assert "copy=False" in sweep[0] and "copy=False" in growth[0]
    assert len(re.findall(r"^- \[[ x]\] the same with copy=False", report, flags=re.MULTILINE)) == 3
    assert [row[0] for row in cache[1:]] == ["bleu", "f1", "rouge_l"] and "8 examples" in cache[0][3]
    reward_path = {(row[0], row[1]): row[4].rstrip("†") for row in sweep[1:]}  # the same measurements
    for row in cache[1:]:
        assert row[1:3] == [reward_path[row[0], "4"], reward_path[row[0], "8"]]


@pytest.mark.parametrize("task_name", NAIVE_TASKS)
def test_naive_baseline_rewards_equal_the_instant_env(task_name: str) -> None:
    task = task_named(task_name)
    instant, naive = InstantRewardEnv(task=task), InstantRewardEnv(task=task, potential=naive_potential(task))
    actions = ActionStream(task, 1, seed=3).next(300)[:, 0]
    instant.reset(seed=3)
    naive.reset(seed=3)
    for t, a in enumerate(actions.tolist()):
        _, r1, done1, _, info1 = instant.step(a)
        _, r2, done2, _, info2 = naive.step(a)
        assert done1 == done2
        assert r2 == pytest.approx(r1, abs=TOLERANCE), f"step {t}: naive {r2} != instant {r1}"
        assert info2["potential"] == pytest.approx(info1["potential"], abs=TOLERANCE)
        if done1:
            instant.reset()
            naive.reset()


@pytest.mark.parametrize("kind", ["scalar", "batched", "sync", "rewards"])
@pytest.mark.parametrize("task_name", ["translation", "matching:summary"])
def test_action_stream_follows_the_env_episodes(kind: str, task_name: str) -> None:
    task = task_named(task_name)
    driver = {
        "scalar": lambda: scalar_driver(task),
        "batched": lambda: batched_driver(task, 4),
        "sync": lambda: sync_driver(task, 4),
        "rewards": lambda: reward_path_driver(task, 4),
    }[kind]()
    stream = ActionStream(task, driver.num_rows, seed=11)
    driver.reset(stream.seed)
    stream.check(*driver.state())
    for _ in range(60):
        driver.run(driver.prepare(stream.next(1)))
        stream.check(*driver.state())
    assert stream.episodes > 4 * driver.num_rows


def test_action_stream_copies_about_half_the_reference() -> None:
    task = task_named("translation")
    stream = ActionStream(task, 64, seed=0)
    examples = task.examples("train")
    example, length = stream.example.copy(), stream.length.copy()
    actions = stream.next(1)[0]
    in_ref = length < examples.reference_len[example]
    copied = actions[in_ref] == examples.reference[example[in_ref], length[in_ref]]
    assert 0.3 < copied.mean() < 0.7


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_long_target_episodes_run_to_length_and_the_reference_scores_one(metric: str) -> None:
    task = LongTargetTask(12, metric, num_examples=8)
    examples = task.examples("train")
    assert (examples.reference_len == 12).all() and task.max_generation_len == 12
    env = InstantRewardEnv(task=task)
    env.reset(seed=0, options={"example_index": 1})
    for t, token in enumerate(examples.reference[1].tolist()):
        _, _, done, _, info = env.step(token)
        assert done == (t == 11)
    if metric != "vader":
        assert info["score"] == pytest.approx(1.0)
    assert EOS not in examples.reference


def test_task_named_reads_the_examples_per_split_of_a_long_target_task() -> None:
    assert len(task_named("long:bleu:12:3").examples("valid").reference) == 3
    assert task_named("long:bleu:12").examples("valid").reference.shape == (512, 12)


def test_long_target_task_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="length must be a positive integer"):
        LongTargetTask(0)
    with pytest.raises(ValueError, match="unknown metric"):
        LongTargetTask(8, "meteor")


def test_cli_rejects_unknown_sections(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main([*TINY, "--sections", "scalar,gpu", "--out", str(tmp_path / "x.md")])


def test_warm_start_rl_runs_end_to_end_with_a_tiny_budget():
    from benchmarks.warm_start_rl import main as warm_start_rl

    out = warm_start_rl(["--mle-steps", "3", "--tokens", "200", "--num-envs", "8", "--seeds", "0", "1",
                         "--eval-every", "1", "--eval-examples", "8"])
    assert 0.0 <= out["warm_start"]["greedy"] <= 1.0
    assert set(out["runs"]) == {0, 1}
    for run in out["runs"].values():
        assert run["valid"] and all(0.0 <= v <= 1.0 for v in run["valid"])


def test_length_groups_benchmark_runs_and_finds_the_same_update(tmp_path: Path) -> None:
    from benchmarks.length_groups import main as length_groups

    out = tmp_path / "length_groups.md"
    rows = length_groups(["--task", "translation", "--model", "tiny", "--num-envs", "32", "--groups", "2", "4",
                          "--repeats", "1", "--out", str(out)])
    assert [r["groups"] for r in rows] == [1, 2, 4], "the one-pass baseline is added and comes first"
    assert rows[0]["speedup"] == 1.0 and rows[0]["max_weight_diff"] == 0.0
    for r in rows[1:]:
        assert r["max_weight_diff"] < 1e-5, "grouping must not change the update beyond float rounding"
        assert r["width"] < rows[0]["width"], "groups of similar length pad less"
        assert r["seconds"] > 0 and r["tokens_per_second"] > 0
    text = out.read_text()
    assert "Command: `python -m benchmarks.length_groups" in text and "| 4 |" in text


def test_finished_rows_benchmark_runs_and_decodes_the_same_tokens(tmp_path: Path) -> None:
    import agents.model as model_module
    from benchmarks.finished_rows import main as finished_rows

    default = model_module.COMPACT_AT
    out = tmp_path / "finished_rows.md"
    rows = finished_rows(["--task", "translation", "--model", "tiny", "--num-envs", "16", "--batch-size", "16",
                          "--repeats", "1", "--out", str(out)])
    assert model_module.COMPACT_AT == default, "the benchmark puts the default back"
    assert len(rows) == 4 and all(r["seconds"] > 0 for r in rows)
    assert [r["speedup"] for r in rows if r["setting"] == "step every row"] == [1.0, 1.0]
    text = out.read_text()
    assert "Greedy tokens the same both ways: yes" in text and "Command: `python -m benchmarks.finished_rows" in text


def test_rollout_start_benchmark_runs_plays_the_same_greedy_tokens_and_puts_collects_start_back(tmp_path: Path) -> None:
    import agents.rollout as rollout_module
    from benchmarks.rollout_start import main as rollout_start

    start = rollout_module.start_distinct
    out = tmp_path / "rollout_start.md"
    rows = rollout_start(["--task", "translation", "--model", "tiny", "--num-envs", "16", "--repeats", "1",
                          "--out", str(out)])
    assert rollout_module.start_distinct is start, "the benchmark puts collect's start back"
    assert len(rows) == 4 and all(r["seconds"] > 0 for r in rows)
    assert [r["speedup"] for r in rows if r["setting"] == "every row, full width"] == [1.0, 1.0]
    text = out.read_text()
    assert "Greedy rollout plays the same tokens both ways: yes" in text
    assert "Command: `python -m benchmarks.rollout_start" in text
    with pytest.raises(SystemExit):
        rollout_start(["--task", "translation", "--model", "tiny", "--num-envs", "16", "--rloo-k", "3"])


def test_precision_benchmark_times_each_job_in_both_precisions(tmp_path: Path) -> None:
    from benchmarks.precision import main as precision

    out = tmp_path / "precision.md"
    rows = precision(["--task", "translation", "--model", "tiny", "--batch-size", "16", "--num-envs", "16",
                      "--repeats", "1", "--out", str(out)])
    assert [(r["job"].split(",")[0], r["precision"]) for r in rows] == [
        (job, p) for job in ("MLE step", "RLOO update", "RLOO rollout") for p in ("fp32", "bf16")]
    assert all(r["seconds"] > 0 for r in rows) and [r["speedup"] for r in rows[::2]] == [1.0, 1.0, 1.0]
    assert "Command: `python -m benchmarks.precision --task translation --model tiny" in out.read_text()
    with pytest.raises(SystemExit):
        precision(["--task", "translation", "--model", "tiny", "--num-envs", "12", "--rloo-k", "4"])


def test_shared_encoder_benchmark_runs_and_finds_the_same_update(tmp_path: Path) -> None:
    from benchmarks.shared_encoder import main as shared_encoder

    out = tmp_path / "shared_encoder.md"
    rows = shared_encoder(["--task", "translation", "--model", "tiny", "--num-envs", "32", "--minibatches", "2",
                           "--repeats", "1", "--out", str(out)])
    assert [r["share_encoder"] for r in rows] == [False, True], "the per-row baseline comes first"
    assert rows[0]["speedup"] == 1.0 and rows[0]["max_weight_diff"] == 0.0
    assert rows[1]["max_weight_diff"] < 1e-5, "sharing the encoder must not change the update beyond float rounding"
    assert rows[1]["seconds"] > 0 and rows[1]["tokens_per_second"] > 0
    text = out.read_text()
    assert "Command: `python -m benchmarks.shared_encoder" in text and "| True |" in text
