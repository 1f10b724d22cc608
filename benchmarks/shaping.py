"""The reward-shaping study: sparse, instant, token, mixed, a schedule from instant to sparse, and instant with an
adaptive KL penalty, on every task, over seeds, at equal env-step budgets with the same learner.

    python -m benchmarks.shaping --quick                       # a few minutes on 2 cores: matching:summary, 2 seeds
    python -m benchmarks.shaping [--data-dir ../shared/data]   # every built-in task (+ the real-data ones with
                                                               # a data folder), 5 seeds, 60k env steps per run
    python -m benchmarks.shaping --tasks translation --seeds 0 1 2 3 4 --tokens 100000 --workers 8

Every run is ``agents.trainer.train`` with the same ``PPOConfig`` and model; only the env's reward (and, for
two conditions, the schedule or the KL penalty) differs. Each run is one process with
``torch.set_num_threads(1)``, ``--workers`` at a time, and is deterministic given its seed on CPU, so
rerunning the command reproduces every number.

What is compared: the *task score* R(y) (BLEU, F1, ROUGE-L, VADER), never the shaped return, which differs
between conditions by construction.

- curve: the mean score of each update's sampled episodes against cumulative env steps (``metrics.csv``);
  plotted per condition as the mean over seeds with a 95% bootstrap band;
- final: greedy score on ``--eval-examples`` valid examples after training; mean with a 95% bootstrap
  confidence interval over seeds, and the interquartile mean;
- steps to threshold: env steps until the curve reaches halfway between the task's starting score and the
  best condition's final training score (median over seeds; "never" counts as not reached);
- AUC: the mean height of the training curve (area / steps), which rewards learning early;
- held-out judge: chrF (sacrebleu) of the greedy valid outputs against their references, a metric no
  condition is trained on (tasks with references; the sentiment task has none);
- signs of hacking, on the same outputs: mean length, repetition (share of tokens that repeat an earlier
  token of the same output) and distinct-2 (distinct bigrams / bigrams over all outputs).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.fluency import generation_stats
from benchmarks.machine import code_version, machine_description
from benchmarks.stats import (
    binned_curve,
    bootstrap_ci,
    iqm,
    normalized_auc,
    steps_to_threshold,
)


@dataclass(frozen=True)
class Condition:
    """One reward signal: the env's shaping plus, optionally, a schedule or a KL penalty."""

    name: str
    reward: str
    reward_weights: dict[str, float] | None = None
    ppo: dict[str, Any] = field(default_factory=dict)
    description: str = ""


CONDITIONS: tuple[Condition, ...] = (
    Condition("sparse", "sparse", description="R(y) at the last token, 0 before"),
    Condition("instant", "instant", description="potential-based: Phi(y<=t) - Phi(y<t), sums to R(y)"),
    Condition("token", "token", description="naive control: 1/|y*| per token equal to the reference at its position"),
    Condition("mixed", "mixed", {"instant": 0.5, "token": 0.5}, description="0.5 instant + 0.5 token"),
    Condition("instant→sparse", "instant",
              ppo={"schedule": "linear", "weights_start": {"instant": 1.0}, "weights_end": {"sparse": 1.0}},
              description="linear schedule from instant to sparse over the budget"),
    Condition("instant+KL", "instant", ppo={"kl_coef": 0.05, "kl_target": 6.0},
              description="instant with a per-token KL penalty to the initial policy, coefficient adapted "
                          "towards 6 nats per sequence (Ziegler et al. 2019)"),
)
CONDITION_NAMES = tuple(c.name for c in CONDITIONS)

#: The learner every condition shares (from scratch, tiny model; everything else PPOConfig's defaults).
LEARNER = {"num_envs": 16, "learning_rate": 1e-3}
MODEL = "tiny"
FINAL_FRACTION = 0.2
SMOOTH = 5
BINS = 16


@dataclass(frozen=True)
class Job:
    task: str
    condition: str
    seed: int
    tokens: int
    eval_examples: int
    init: str = "scratch"  # or the weights file of the (task, seed) warm start
    learning_rate: float = LEARNER["learning_rate"]


def warm_start(task_name: str, seed: int, steps: int, folder: str, batch_size: int = 128) -> str:
    """Train the ``MODEL`` on the task's references by maximum likelihood (``MLEConfig`` defaults but
    ``steps`` and ``batch_size``) and save it; every run of the task starts RL from the file. Own process.
    A file already saved for the same settings is reused (the warm start is deterministic)."""
    import torch

    torch.set_num_threads(1)
    from agents.checkpoint import export_weights
    from agents.supervised import MLEConfig, mle_train
    from agents.trainer import RunConfig, build_model
    from ir_env import make_task

    path = Path(folder) / f"warm_{task_name.replace(':', '_')}_seed{seed}_{steps}x{batch_size}.safetensors"
    if path.exists():
        return str(path)
    task = make_task(task_name)
    model = build_model(RunConfig(task=task_name, model=MODEL, seed=seed), task, torch.device("cpu"))
    mle_train(model, task, MLEConfig(steps=steps, batch_size=batch_size), seed=seed)
    export_weights(model, path)
    return str(path)


def _warm_start(args: tuple[str, int, int, str, int]) -> str:
    return warm_start(*args)


def judge_chrf(task, outputs: list[list[int]], example_ids: np.ndarray, split: str = "valid") -> float | None:
    """Corpus chrF (0-1) of the outputs against their references, or None for a task without references."""
    if task.name.startswith("sentiment"):
        return None
    import sacrebleu

    examples = task.examples(split)
    hyps = [task.vocab.detokenize(o) for o in outputs]
    refs = [task.vocab.detokenize(examples.reference[i, : examples.reference_len[i]]) for i in example_ids]
    return sacrebleu.corpus_chrf(hyps, [refs]).score / 100.0


def held_out_judges(task, outputs: list[list[int]], example_ids: np.ndarray, split: str = "valid") -> dict[str, float]:
    """Judge name -> mean score of the outputs, under metrics no condition trains on.

    The task's own judges where it has them (``judge_names``/``judges``: SST-2's classifier or VADER, MRPC's
    chrF and embedding similarity), else corpus chrF against the references (none for a task without them).
    """
    if getattr(task, "judge_names", ()):
        return {name: float(np.mean(v)) for name, v in task.judges(outputs, example_ids, split).items()}
    chrf = judge_chrf(task, outputs, example_ids, split)
    return {} if chrf is None else {"chrF": chrf}


def run_job(job: Job) -> dict[str, Any]:
    """Train one (task, condition, seed) and measure it; runs in its own process."""
    import torch

    torch.set_num_threads(1)
    from agents.checkpoint import load_weights
    from agents.ppo import PPOConfig
    from agents.rollout import collect
    from agents.trainer import RunConfig, build_model, train
    from ir_env import EOS, BatchedInstantRewardEnv, make_task

    condition = next(c for c in CONDITIONS if c.name == job.condition)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(
            task=job.task, reward=condition.reward, reward_weights=condition.reward_weights, seed=job.seed,
            total_tokens=job.tokens, model=MODEL, device="cpu", out=tmp, init=job.init,
            ppo=PPOConfig(**{**LEARNER, "learning_rate": job.learning_rate}, **condition.ppo), eval_every=0, eval_examples=job.eval_examples,
            checkpoint_every=10**9, progress=False,
        )
        summary = train(config)
        with open(Path(tmp) / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        task = make_task(job.task)
        model = build_model(config, task, torch.device("cpu"))
        load_weights(tmp, model)
    model.eval()
    n_valid = len(task.examples("valid"))
    ids = np.arange(min(job.eval_examples, n_valid))
    env = BatchedInstantRewardEnv(num_envs=len(ids), task=task, split="valid", info_text=False, copy=False)
    out = collect(model, env, seed=0, greedy=True, example_ids=ids)
    actions = out.actions.numpy()
    outputs = [[int(a) for a in actions[i, : out.lengths[i]] if a != EOS] for i in range(len(ids))]
    result = {
        "task": job.task, "condition": job.condition, "seed": job.seed,
        "steps": [float(r["tokens"]) for r in rows],
        "scores": [float(r["score"]) for r in rows],
        "lengths": [float(r["length"]) for r in rows],
        "final_valid": float(out.scores.mean()),
        "judges": held_out_judges(task, outputs, ids),
        **generation_stats(outputs),
        "total_steps": int(summary["tokens"]),
        "seconds": time.perf_counter() - t0,
    }
    print(f"  {job.task:18s} {job.condition:15s} seed {job.seed}: valid {result['final_valid']:.3f} "
          f"in {result['seconds']:.0f} s", flush=True)
    return result


def smoothed(scores: list[float]) -> np.ndarray:
    """Trailing mean over the last SMOOTH updates: one lucky rollout must not count as reaching a threshold."""
    x = np.asarray(scores, dtype=float)
    c = np.cumsum(np.insert(x, 0, 0.0))  # c[i] = sum of the first i scores
    end = np.arange(1, x.size + 1)
    begin = np.maximum(end - SMOOTH, 0)
    return (c[end] - c[begin]) / (end - begin)


def final_train_score(result: dict[str, Any]) -> float:
    """Mean rollout score over the last FINAL_FRACTION of a run's updates."""
    scores = np.asarray(result["scores"])
    k = max(1, int(round(len(scores) * FINAL_FRACTION)))
    return float(scores[-k:].mean())


def _judges(result: dict[str, Any]) -> dict[str, float]:
    """A run's held-out judges (results saved before task judges existed hold one chrF as ``judge``)."""
    if "judges" in result:
        return result["judges"]
    return {} if result.get("judge") is None else {"chrF": result["judge"]}


def summarize(results: list[dict[str, Any]], task: str, names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Per-condition statistics of one task (see the module docstring)."""
    by_condition = {c: [r for r in results if r["task"] == task and r["condition"] == c] for c in names}
    starts = [float(np.mean(r["scores"][:SMOOTH])) for rs in by_condition.values() for r in rs]
    start = float(np.mean(starts))
    best_final = max(np.mean([final_train_score(r) for r in rs]) for rs in by_condition.values())
    # if no condition got clear of the starting score's own 95% interval, a threshold would measure noise
    threshold = start + 0.5 * (best_final - start) if best_final > bootstrap_ci(starts)[1] else float("nan")
    table: dict[str, dict[str, Any]] = {}
    for c, rs in by_condition.items():
        finals = [r["final_valid"] for r in rs]
        to_threshold = [steps_to_threshold(r["steps"], smoothed(r["scores"]), threshold) if np.isfinite(threshold)
                        else float("nan") for r in rs]
        reached = [s for s in to_threshold if np.isfinite(s)]
        names_ = list(dict.fromkeys(name for r in rs for name in _judges(r)))
        table[c] = {
            "final_mean": float(np.mean(finals)),
            "final_ci": bootstrap_ci(finals),
            "final_iqm": iqm(finals),
            "train_final": float(np.mean([final_train_score(r) for r in rs])),
            "auc": float(np.mean([normalized_auc(r["steps"], r["scores"]) for r in rs])),
            "steps_median": (float("nan") if not np.isfinite(threshold) else
                             float(np.median(to_threshold)) if len(reached) * 2 > len(rs) else float("inf")),
            "reached": len(reached),
            "runs": len(rs),
            "judges": {name: float(np.mean([_judges(r)[name] for r in rs if name in _judges(r)])) for name in names_},
            "length": float(np.mean([r["length"] for r in rs])),
            "repetition": float(np.mean([r["repetition"] for r in rs])),
            "distinct2": float(np.mean([r["distinct2"] for r in rs])),
        }
    table["_meta"] = {"threshold": threshold, "start": start}
    return table


def plot(results: list[dict[str, Any]], task: str, tokens: int, names: tuple[str, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.linspace(0, tokens * 1.05, BINS + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for c in names:
        curves = np.stack([binned_curve(r["steps"], r["scores"], edges) for r in results
                           if r["task"] == task and r["condition"] == c])
        mean, low, high = np.full(BINS, np.nan), np.full(BINS, np.nan), np.full(BINS, np.nan)
        for k in range(BINS):
            column = curves[:, k][np.isfinite(curves[:, k])]
            if column.size:
                mean[k] = column.mean()
                low[k], high[k] = bootstrap_ci(column, resamples=2000)
        line, = ax.plot(centres, mean, marker="o", markersize=3, label=c)
        ax.fill_between(centres, low, high, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("env steps (generated tokens)")
    ax.set_ylabel("task score of sampled episodes")
    n = len({r["seed"] for r in results if r["task"] == task})
    ax.set_title(f"{task}: score vs env steps (mean, 95% bootstrap band over {n} seeds)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def available_tasks() -> list[str]:
    """The built-in tasks, plus the real-data ones when a data folder is set ($IR_DATA_DIR)."""
    from ir_env.tasks import BUILTIN_TASKS, DATA_TASKS

    tasks = list(BUILTIN_TASKS)
    if os.environ.get("IR_DATA_DIR") and Path(os.environ["IR_DATA_DIR"]).is_dir():
        tasks += sorted(DATA_TASKS)
    return tasks


def _fmt_steps(value: float) -> str:
    if np.isnan(value):
        return "n/a"
    return "never" if not np.isfinite(value) else f"{value:,.0f}"


def markdown(tables: dict[str, dict[str, dict[str, Any]]], args: argparse.Namespace, command: str, wall: float,
             pngs: dict[str, Path], names: tuple[str, ...], machine: str | None = None, date: str | None = None) -> str:
    """The results file. ``machine`` and ``date``: those saved with the runs (results saved before they
    were kept have none: this machine's and now are used)."""
    lines = [
        "# Reward shaping: sparse, instant, token, mixed, scheduled and KL-penalised",
        "",
        f"Command: `{command}`  ",
        f"Seeds: {' '.join(map(str, args.seeds))}; {args.tokens:,} env steps per run; tasks {', '.join(tables)}.  ",
        f"Machine: {machine or machine_description()}  ",
        f"Date: {date or utc_now()}; "
        f"{args.workers} runs at a time (one process each, torch.set_num_threads(1)); "
        + (f"{wall:.0f} s in all." if np.isfinite(wall) else "interrupted, so no total wall time."),
        "",
        f"Learner (the same for every condition): `agents.trainer.train`, model `{MODEL}` "
        + ("from scratch, " if args.init == "scratch" else
           f"from a maximum-likelihood warm start ({args.mle_steps} steps of {args.mle_batch_size} sequences, "
           "`MLEConfig` defaults otherwise, one per task "
           "trained with the first seed and shared by every seed and condition, so the seeds vary the RL runs "
           "only; PPO's first updates fit only the critic), ") +
        f"`PPOConfig({', '.join(f'{k}={v}' for k, v in {**LEARNER, 'learning_rate': args.learning_rate}.items())})`, "
        "otherwise the defaults "
        "(4 epochs x 4 minibatches, clip 0.2, gamma 1, GAE 0.95, 10-update lr warm-up, no entropy bonus).",
        "",
        "Conditions:",
        "",
        *[f"- **{c.name}**: {c.description}." for c in CONDITIONS if c.name in names],
        "",
        "Columns: *final valid* = greedy task score on the first "
        f"{args.eval_examples} valid examples after training, mean over seeds [95% bootstrap CI] and IQM; "
        "*train final* = mean sampled-episode score over the last 20% of updates; *AUC* = mean height of the "
        "training curve; *steps to thr.* = median env steps until the training curve reaches the threshold "
        "(halfway from the starting score to the best condition's train final), 'never' if most seeds did not, "
        "with how many reached it; *held-out judge* = mean score of the greedy valid outputs under metrics no "
        "condition trains on: the task's own judges where it has them (SST-2: the CNN classifier's or VADER's "
        "positive-minus-negative potential, whichever is not the reward; MRPC: sentence chrF and MiniLM "
        "embedding cosine), else corpus chrF against the references; *len*, *rep* (share of repeated tokens) "
        "and *distinct-2* of those outputs show hacking.",
        "",
    ]
    for task, table in tables.items():
        meta = table["_meta"]
        threshold = (f"threshold {meta['threshold']:.4f}" if np.isfinite(meta["threshold"])
                     else "no condition got clear of the starting score's 95% interval in this budget, so there is "
                          "no threshold (n/a)")
        lines += [f"## {task}", "", f"Starting score {meta['start']:.4f} (first {SMOOTH} updates); {threshold}.", "",
                  "| condition | final valid [95% CI] | IQM | train final | AUC | steps to thr. (reached) | held-out judge | len | rep | distinct-2 |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for c in names:
            r = table[c]
            judge = ", ".join(f"{name} {value:.3f}" for name, value in r["judges"].items()) or "—"
            lines.append(
                f"| {c} | {r['final_mean']:.4f} [{r['final_ci'][0]:.4f}, {r['final_ci'][1]:.4f}] | {r['final_iqm']:.4f} | "
                f"{r['train_final']:.4f} | {r['auc']:.4f} | {_fmt_steps(r['steps_median'])} ({r['reached']}/{r['runs']}) | "
                f"{judge} | {r['length']:.1f} | {r['repetition']:.3f} | {r['distinct2']:.3f} |"
            )
        lines += ["", f"![{task}]({pngs[task].name})", ""]
    return "\n".join(lines)


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _saved_runs(folder: Path, settings: dict[str, Any]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """The runs saved in ``folder`` with these settings, by (task, condition, seed)."""
    runs = {}
    for file in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        saved = json.loads(file.read_text())
        if saved["settings"] == settings:
            r = saved["result"]
            runs[r["task"], r["condition"], r["seed"]] = r
    return runs


def _save_run(folder: Path, settings: dict[str, Any], result: dict[str, Any], command: str, workers: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{result['task']}_{result['condition']}_{result['seed']}".replace(":", "_").replace("→", "-to-")
    tmp = folder / f".{name}.tmp"
    tmp.write_text(json.dumps({"settings": settings, "command": command, "workers": workers, "result": result}))
    os.replace(tmp, folder / f"{name}.json")  # atomic: an interrupted write leaves no half file


def _imap(fn, items: list, workers: int):
    """``fn`` over ``items``, yielding each result as it finishes (in any order)."""
    if workers == 1:
        yield from (fn(item) for item in items)
        return
    with mp.get_context("spawn").Pool(workers, maxtasksperchild=1) as pool:
        yield from pool.imap_unordered(fn, items, chunksize=1)


def _map(fn, items: list, workers: int) -> list:
    """``fn`` over ``items``, in this process (workers == 1) or in fresh spawned ones, ``workers`` at a time."""
    if workers == 1:
        return [fn(item) for item in items]
    with mp.get_context("spawn").Pool(workers, maxtasksperchild=1) as pool:
        return pool.map(fn, items, chunksize=1)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=None,
                        help="default: the built-in tasks, and the real-data ones when a data folder is given")
    parser.add_argument("--data-dir", default=None, help="folder of the real data sets (default: $IR_DATA_DIR)")
    parser.add_argument("--sst2-classifier", default=None,
                        help="SST-2 classifier folder (`instant-reward train-classifier`), the held-out judge of "
                             "sentiment:sst2 (default: $IR_SST2_CLASSIFIER; without one that task has no judge)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--tokens", type=int, default=60_000, help="env-step budget of every run")
    parser.add_argument("--conditions", nargs="+", default=list(CONDITION_NAMES), choices=CONDITION_NAMES)
    parser.add_argument("--eval-examples", type=int, default=256)
    parser.add_argument("--init", choices=["scratch", "mle"], default="scratch",
                        help="RL from a fresh policy, or from a maximum-likelihood warm start of --mle-steps trained "
                             "once per task (with the first seed) and shared by every seed and condition")
    parser.add_argument("--learning-rate", type=float, default=LEARNER["learning_rate"],
                        help="PPO's Adam step size, the same for every condition (fine-tuning a warm start wants less)")
    parser.add_argument("--mle-steps", type=int, default=300, help="warm-start steps (MLEConfig defaults otherwise)")
    parser.add_argument("--mle-batch-size", type=int, default=128, help="warm-start sequences per step")
    parser.add_argument("--workers", type=int, default=2, help="runs at once, one process each")
    parser.add_argument("--quick", action="store_true",
                        help="matching:summary, seeds 0 1, 20,000 steps (a few minutes on 2 cores); explicit options win")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/shaping.md"))
    parser.add_argument("--report-only", action="store_true",
                        help="no training: rebuild the tables and plots from the runs saved next to --out (.json; "
                             "for an interrupted study, the finished runs in the .runs folder)")
    args = parser.parse_args(argv)
    given = set(argv if argv is not None else sys.argv[1:])
    if args.data_dir:
        os.environ["IR_DATA_DIR"] = str(Path(args.data_dir).resolve())  # inherited by the worker processes
    if args.sst2_classifier:
        os.environ["IR_SST2_CLASSIFIER"] = str(Path(args.sst2_classifier).resolve())
    if args.quick:
        args.tasks = args.tasks or ["matching:summary"]
        if "--seeds" not in given:
            args.seeds = [0, 1]
        if "--tokens" not in given:
            args.tokens = 20_000
        if "--eval-examples" not in given:
            args.eval_examples = 128
    args.tasks = args.tasks or available_tasks()
    from ir_env import make_task

    for task in args.tasks:
        make_task(task)  # a bad name or a missing data folder fails here, not in a worker
    if len(args.seeds) < 1:
        parser.error("need at least one seed")
    command = "python -m benchmarks.shaping " + " ".join(argv if argv is not None else sys.argv[1:])

    names = tuple(c for c in CONDITION_NAMES if c in args.conditions)
    raw = args.out.with_suffix(".json")
    if args.report_only and not raw.exists() and raw.with_suffix(".runs").is_dir():
        # an interrupted study: report the runs it finished (the table's "reached (k/n)" shows n per condition)
        files = [json.loads(f.read_text()) for f in sorted(raw.with_suffix(".runs").glob("*.json"))]
        settings = files[0]["settings"]
        if any(f["settings"] != settings for f in files):
            raise SystemExit(f"{raw.with_suffix('.runs')} holds runs of different settings; report them apart")
        results = [f["result"] for f in files]
        seeds = sorted({r["seed"] for r in results})
        raw.write_text(json.dumps({
            "command": f"{files[0]['command']} (interrupted: {len(results)} runs finished)", "seeds": seeds,
            "workers": files[0]["workers"], "wall": float("nan"),
            "machine": machine_description(code=settings.get("code", "code version unknown")),
            **settings,
            "results": results}))
    if args.report_only:
        saved = json.loads(raw.read_text())
        results, wall, command = saved["results"], saved["wall"], saved["command"]
        machine, date = saved.get("machine"), saved.get("date")
        args.seeds, args.tokens, args.workers = saved["seeds"], saved["tokens"], saved["workers"]
        args.eval_examples = saved["eval_examples"]
        args.init, args.mle_steps = saved.get("init", "scratch"), saved.get("mle_steps", 0)
        args.mle_batch_size = saved.get("mle_batch_size", 128)
        args.learning_rate = saved.get("learning_rate", LEARNER["learning_rate"])
        args.tasks = list(dict.fromkeys(r["task"] for r in results))
        names = tuple(c for c in CONDITION_NAMES if any(r["condition"] == c for r in results))
    else:
        t0 = time.perf_counter()
        # every finished run is saved at once in runs_dir; a rerun of the same command skips those runs
        runs_dir = args.out.with_suffix(".runs")
        # the code's commit is part of the settings: runs saved by other code are not mixed in
        settings = {"tokens": args.tokens, "eval_examples": args.eval_examples, "init": args.init,
                    "mle_steps": args.mle_steps if args.init == "mle" else 0, "learning_rate": args.learning_rate,
                    "code": code_version()}
        machine = machine_description(code=settings["code"])
        if args.init == "mle":
            settings["mle_batch_size"] = args.mle_batch_size
        wanted = [(t, c, s) for s in args.seeds for t in args.tasks for c in names]  # seed-major
        done = _saved_runs(runs_dir, settings)
        todo = [key for key in wanted if key not in done]
        if len(todo) < len(wanted):
            print(f"{len(wanted) - len(todo)} runs already saved in {runs_dir}; {len(todo)} to go", flush=True)
        init = {t: "scratch" for t in dict.fromkeys(t for t, _, _ in todo)}
        if args.init == "mle" and init:  # one per task (seed: the first), so the seeds vary the RL runs only
            print(f"{len(init)} warm starts of {args.mle_steps} maximum-likelihood steps", flush=True)
            runs_dir.mkdir(parents=True, exist_ok=True)  # kept with the runs, so a rerun reuses them
            paths = _map(_warm_start, [(t, args.seeds[0], args.mle_steps, str(runs_dir), args.mle_batch_size)
                                       for t in init], args.workers)
            init = dict(zip(init, paths))
        jobs = [Job(t, c, s, args.tokens, args.eval_examples, init[t], args.learning_rate) for t, c, s in todo]
        print(f"{len(jobs)} runs of {args.tokens:,} env steps, {args.workers} at a time", flush=True)
        for result in _imap(run_job, jobs, args.workers):
            _save_run(runs_dir, settings, result, command, args.workers)
            done[result["task"], result["condition"], result["seed"]] = result
        results = [done[key] for key in wanted]
        wall = time.perf_counter() - t0
        args.out.parent.mkdir(parents=True, exist_ok=True)
        date = utc_now()
        raw.write_text(json.dumps({"command": command, "seeds": args.seeds, "tokens": args.tokens, "workers": args.workers,
                                   "eval_examples": args.eval_examples, "init": args.init, "learning_rate": args.learning_rate, "mle_steps": args.mle_steps,
                                   "mle_batch_size": args.mle_batch_size, "code": settings["code"],
                                   "machine": machine, "date": date, "wall": wall, "results": results}))
        shutil.rmtree(runs_dir)  # everything is in the .json now

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tables, pngs = {}, {}
    for task in args.tasks:
        tables[task] = summarize(results, task, names)
        pngs[task] = args.out.with_name(f"{args.out.stem}_{task.replace(':', '_')}.png")
        plot(results, task, args.tokens, names, pngs[task])
    text = markdown(tables, args, command, wall, pngs, names, machine, date)
    args.out.write_text(text)
    print(text)
    print(f"wrote {args.out} and {', '.join(str(p) for p in pngs.values())}")
    return {"tables": tables, "results": results}


if __name__ == "__main__":
    main()
