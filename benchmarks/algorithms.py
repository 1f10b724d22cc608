"""Our PPO against stable-baselines3's PPO and A2C and sb3-contrib's MaskablePPO, at the same env-step budget
and the same policy network.

    python -m benchmarks.algorithms [--task matching:summary] [--seeds 0 1 2] [--steps 30000]
                                    [--num-envs 16] [--workers 2] [--quick] [--out benchmarks/results/algorithms.md]
                                    [--algorithms ours_ppo sb3_ppo ...] [--data-dir DIR]

    # speed at generation length 32 (Multi30k: T = 32, and an untrained policy rarely emits EOS):
    python -m benchmarks.algorithms --task translation:multi30k --data-dir ../shared/data \
        --algorithms ours_ppo sb3_ppo --seeds 0 1 --steps 4096 --out benchmarks/results/algorithms_len32.md

Every algorithm trains the same preset of ``agents/model.py`` (``--model``, default ``tiny``) from scratch: ours the ``PolicyModel`` itself
(KV-cached rollouts, one teacher-forced pass per sequence in the update), SB3's a ``TransformerExtractor``
built from the same preset with the action head tied to the token table (``make_sb3_model``). Each
(algorithm, seed) run is one process with ``torch.set_num_threads(1)``; ``--workers`` of them run at once,
so every algorithm sees the same contention.

Recorded per run: the score of every finished episode against the cumulative env steps (ours: each update's
mean score over its ``num_envs`` episodes, from ``metrics.csv``; SB3: ``infos[i]["score"]`` of finished rows
via a callback), and the wall time of the learn call (ours: ``summary.json``'s ``wall_seconds``, the update
loop without the final evaluation and checkpoint). Trained tokens/s = env steps / that wall time. Final
score = mean over the last 20% of episodes. A PNG plots the score against env steps (binned, mean over seeds)
with the random policy's score as a horizontal line.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import stats

ALGORITHMS = ("ours_ppo", "ours_ppo_bf16", "sb3_ppo", "sb3_a2c", "sb3_maskable_ppo")
DEFAULT_ALGORITHMS = ("ours_ppo", "sb3_ppo", "sb3_a2c", "sb3_maskable_ppo")
LABELS = {
    "ours_ppo": "ours PPO (agents.ppo)",
    "ours_ppo_bf16": "ours PPO, bf16 matrix products (precision='bf16')",
    "sb3_ppo": "SB3 PPO",
    "sb3_a2c": "SB3 A2C",
    "sb3_maskable_ppo": "sb3-contrib MaskablePPO",
}
SB3_NAMES = {"sb3_ppo": "ppo", "sb3_a2c": "a2c", "sb3_maskable_ppo": "maskable_ppo"}
#: our PPO's settings (everything else PPOConfig's defaults: 4 epochs, 4 minibatches, clip 0.2, GAE 0.95, gamma 1).
OURS_LR = 1e-3
FINAL_FRACTION = 0.2
BINS = 20


def run_ours(task: str, seed: int, steps: int, num_envs: int, preset: str = "tiny",
             num_minibatches: int = 4, precision: str = "fp32") -> dict[str, Any]:
    from agents.ppo import PPOConfig
    from agents.trainer import RunConfig, train

    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(
            task=task, seed=seed, total_tokens=steps, model=preset, device="cpu", precision=precision, out=tmp,
            init="scratch",
            ppo=PPOConfig(num_envs=num_envs, learning_rate=OURS_LR, num_minibatches=num_minibatches),
            eval_every=0, eval_examples=16, checkpoint_every=10**9, progress=False,
        )
        summary = train(config)
        with open(Path(tmp) / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    # one entry per update: its cumulative tokens and the mean score of its num_envs episodes
    return {
        "steps": [float(r["tokens"]) for r in rows],
        "scores": [float(r["score"]) for r in rows],
        "weights": [num_envs] * len(rows),
        "total_steps": int(summary["tokens"]),
        "wall": float(summary["wall_seconds"]),
        # (env steps, seconds) at the end of each rollout-and-update iteration, for the rate after the first
        "iterations": [(float(r["tokens"]), float(r["wall_seconds"])) for r in rows],
    }


def run_sb3(algo: str, task: str, seed: int, steps: int, num_envs: int, preset: str = "tiny") -> dict[str, Any]:
    from stable_baselines3.common.callbacks import BaseCallback

    from agents.sb3 import make_sb3_model

    class ScoreRecorder(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.steps: list[float] = []
            self.scores: list[float] = []
            self.iterations: list[tuple[float, float]] = []

        def _on_rollout_start(self) -> None:  # the previous iteration (rollout + train) has ended
            if self.num_timesteps:
                self.iterations.append((float(self.num_timesteps), time.perf_counter() - t0))

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "score" in info:
                    self.steps.append(float(self.num_timesteps))
                    self.scores.append(info["score"])
            return True

    model = make_sb3_model(SB3_NAMES[algo], task=task, num_envs=num_envs, model_preset=preset, seed=seed, device="cpu")
    recorder = ScoreRecorder()
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps, callback=recorder)
    wall = time.perf_counter() - t0
    return {
        "steps": recorder.steps,
        "scores": recorder.scores,
        "weights": [1] * len(recorder.scores),
        "total_steps": int(model.num_timesteps),
        "wall": wall,
        "iterations": [*recorder.iterations, (float(model.num_timesteps), wall)],
    }


def after_first_iteration(run: dict[str, Any]) -> float:
    """Env steps per second after the run's first rollout-and-update iteration, which also pays one-time
    costs (first calls into torch and the env, allocations); NaN for a run of a single iteration."""
    (first_steps, first_wall), (steps, wall) = run["iterations"][0], run["iterations"][-1]
    return (steps - first_steps) / (wall - first_wall) if len(run["iterations"]) > 1 else float("nan")


def run_one(job: tuple[str, str, int, int, int, str, int]) -> tuple[str, int, dict[str, Any]]:
    algo, task, seed, steps, num_envs, preset, ours_minibatches = job
    import torch

    torch.set_num_threads(1)
    if algo.startswith("ours_ppo"):
        precision = "bf16" if algo == "ours_ppo_bf16" else "fp32"
        result = run_ours(task, seed, steps, num_envs, preset, ours_minibatches, precision)
    else:
        result = run_sb3(algo, task, seed, steps, num_envs, preset)
    print(f"  {algo} seed {seed}: {result['total_steps']} steps in {result['wall']:.1f} s, "
          f"{len(result['scores'])} score points", flush=True)
    return algo, seed, result


def _speed(tok_s: float) -> str:
    return f"{tok_s:,.0f}" if tok_s >= 100 else f"{tok_s:.1f}"


def final_score(result: dict[str, Any]) -> float:
    """Mean score of the last FINAL_FRACTION of episodes (ours: of updates, each the same number of episodes)."""
    scores = np.asarray(result["scores"], dtype=float)
    k = max(1, int(round(len(scores) * FINAL_FRACTION)))
    return float(scores[-k:].mean())


def binned_curve(result: dict[str, Any], edges: np.ndarray) -> np.ndarray:
    """Episode-weighted mean score per env-step bin (NaN where a bin has no finished episode)."""
    return stats.binned_curve(result["steps"], result["scores"], edges, result["weights"])


def plot(results: dict[str, dict[int, dict[str, Any]]], steps: int, random_score: float, task: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.linspace(0, steps, BINS + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for algo in results:
        curves = np.stack([binned_curve(r, edges) for r in results[algo].values()])
        with np.errstate(invalid="ignore"), __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(curves, axis=0)
            std = np.nanstd(curves, axis=0)
        line, = ax.plot(centres, mean, marker="o", markersize=3, label=LABELS[algo])
        if curves.shape[0] > 1:
            ax.fill_between(centres, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    ax.axhline(random_score, color="grey", linestyle="--", label=f"random policy ({random_score:.3f})")
    ax.set_xlabel("env steps (generated tokens)")
    ax.set_ylabel("episode score")
    ax.set_title(f"{task}: score vs env steps (mean ± std over {len(next(iter(results.values())))} seeds)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="matching:summary")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=30_000, help="env-step budget of every run")
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--model", default="tiny", help="agents.model.PRESETS name, the same for every algorithm")
    parser.add_argument("--workers", type=int, default=2, help="runs at once, one process each")
    parser.add_argument("--ours-minibatches", type=int, default=4,
                        help="our PPO's minibatches per epoch (PPOConfig's default 4). With 16 envs, 2 gives SB3 PPO's "
                             "optimiser work: 8 steps per 512 env steps, minibatches of ~256 samples at length 32")
    parser.add_argument("--quick", action="store_true", help="smoke test: 2,000 steps, seed 0")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/algorithms.md"))
    parser.add_argument("--algorithms", nargs="+", default=list(DEFAULT_ALGORITHMS), choices=list(ALGORITHMS),
                        help="ours_ppo_bf16: our PPO with bf16 autocast of the matrix products (weights, optimiser "
                             "and losses float32; pays on CPUs with bf16 instructions), not in the default set")
    parser.add_argument("--data-dir", default=None, help="data folder for the real-data tasks (default: $IR_DATA_DIR)")
    args = parser.parse_args(argv)
    if "sb3_ppo" not in args.algorithms:
        parser.error("--algorithms must include sb3_ppo: every speed is given as a ratio to it")
    if args.data_dir is not None:
        import os

        os.environ["IR_DATA_DIR"] = str(Path(args.data_dir).resolve())  # the spawned workers inherit it
    if args.quick:
        args.steps, args.seeds = 2_000, [0]
    command = "python -m benchmarks.algorithms " + " ".join(argv if argv is not None else sys.argv[1:])

    from agents.sb3 import ALGO_DEFAULTS
    from benchmarks.baselines import policy_scores
    from benchmarks.machine import machine_description
    from ir_env.tasks import make_task

    algos = [a for a in ALGORITHMS if a in args.algorithms]
    task = make_task(args.task)
    metric_name = task.metric_name
    from agents.model import ModelConfig, PolicyModel

    size = sum(p.numel() for p in PolicyModel(ModelConfig.preset(
        args.model, len(task.vocab), task.max_source_len, task.max_generation_len)).parameters())
    params = f"{size / 1e6:.1f}M parameters in our PolicyModel"
    jobs = [(algo, args.task, seed, args.steps, args.num_envs, args.model, args.ours_minibatches)
            for seed in args.seeds for algo in algos]
    print(f"{len(jobs)} runs of {args.steps} env steps, {args.workers} at a time", flush=True)
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers, maxtasksperchild=1) as pool:
        outputs = pool.map(run_one, jobs, chunksize=1)
    total_wall = time.perf_counter() - t0
    results: dict[str, dict[int, dict[str, Any]]] = {a: {} for a in algos}
    for algo, seed, result in outputs:
        results[algo][seed] = result
    random_score = float(policy_scores(args.task, "random", 500, "train", seed=0).mean())

    rows = {}
    for algo in algos:
        runs = [results[algo][s] for s in args.seeds]
        tok_s = np.array([r["total_steps"] / r["wall"] for r in runs])
        steady = np.array([after_first_iteration(r) for r in runs])
        finals = np.array([final_score(r) for r in runs])
        rows[algo] = {"tok_s": float(tok_s.mean()), "tok_s_std": float(tok_s.std()),
                      "steady": float(steady.mean()), "steady_std": float(steady.std()),
                      "final": float(finals.mean()), "final_std": float(finals.std()),
                      "finals": finals.tolist(), "episodes": float(np.mean([sum(r["weights"]) for r in runs]))}
    base, steady_base = rows["sb3_ppo"]["tok_s"], rows["sb3_ppo"]["steady"]
    for row in rows.values():
        row["ratio"], row["steady_ratio"] = row["tok_s"] / base, row["steady"] / steady_base

    png = args.out.with_suffix(".png")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot(results, args.steps, random_score, args.task, png)

    header = ("| algorithm | trained tok/s | vs SB3 PPO | after the first iteration: tok/s | vs SB3 PPO | "
              "final score (last 20% of episodes) | per seed | episodes/run |")
    table = [header, "|---|---|---|---|---|---|---|---|"]
    for algo in algos:
        r = rows[algo]
        table.append(
            f"| {LABELS[algo]} | {_speed(r['tok_s'])} ± {_speed(r['tok_s_std'])} | {r['ratio']:.2f}x | "
            f"{_speed(r['steady'])} ± {_speed(r['steady_std'])} | {r['steady_ratio']:.2f}x | "
            f"{r['final']:.3f} ± {r['final_std']:.3f} | {', '.join(f'{x:.3f}' for x in r['finals'])} | {r['episodes']:,.0f} |"
        )
    table.append(f"| random policy | | | | | {random_score:.3f} | | 500 |")
    sb3 = {k: ALGO_DEFAULTS[v] for k, v in SB3_NAMES.items()}
    lines = [
        f"# Our PPO against {', '.join(LABELS[a] for a in algos if not a.startswith('ours_ppo'))}",
        "",
        f"Command: `{command}`  ",
        f"Seeds: {' '.join(map(str, args.seeds))}; budget {args.steps:,} env steps per run; {args.num_envs} envs; "
        f"task {args.task} (instant reward, scored by {metric_name}); model preset `{args.model}` ({params}) from scratch for all.  ",
        f"Machine: {machine_description()}  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; "
        f"{len(jobs)} runs, {args.workers} at a time (one process each, torch.set_num_threads(1)), {total_wall:.0f} s in all.",
        "",
        "Settings:",
        "",
        f"- ours PPO: `agents.trainer.train`, `init=\"scratch\"`, `PPOConfig(num_envs={args.num_envs}, "
        f"learning_rate={OURS_LR}" + (f", num_minibatches={args.ours_minibatches}" if args.ours_minibatches != 4 else "")
        + f")`, otherwise the defaults (Adam, 10-update lr warm-up, 4 epochs x {args.ours_minibatches} minibatches "
        "of whole sequences, clip 0.2, gamma 1, GAE 0.95, no entropy bonus, grad clip 1.0); one rollout = "
        f"{args.num_envs} complete episodes, KV-cached. Eval and progress bar off; wall = the update loop. "
        "Float32 throughout (`precision=\"fp32\"`)"
        + (", and again with bf16 autocast of the matrix products (`precision=\"bf16\"`: weights, Adam, heads and "
           "losses float32), the `ours PPO, bf16` row" if "ours_ppo_bf16" in algos else "") + ".",
        *[f"- {LABELS[a]}: `make_sb3_model(\"{SB3_NAMES[a]}\", num_envs={args.num_envs}, model_preset=\"{args.model}\")`, "
          f"`agents/sb3.py` ALGO_DEFAULTS {json.dumps(sb3[a])}; tied action head; wall = `model.learn`."
          for a in SB3_NAMES if a in algos],
        "- Final score: mean over the last 20% of each run's finished episodes (ours: of its updates, each "
        f"{args.num_envs} episodes); ± is the std over seeds. Trained tok/s: env steps / wall of the learn call, "
        "mean ± std over seeds; 'vs SB3 PPO' divides by SB3 PPO's mean from this same run. *After the first "
        "iteration*: the same from the end of each run's first rollout-and-update iteration to its end (the first "
        "also pays one-time costs: first calls into torch and the env, allocations), a short run's steady rate; "
        "NaN where a run had one iteration.",
        "- Budgets: each run stops at the first update boundary at or past the budget (SB3 PPO and MaskablePPO: "
        f"{args.num_envs} x 64 steps per rollout; ours: whole episodes), so runs differ slightly in steps; "
        "tok/s uses each run's own count.",
        "- Random policy: uniform over the allowed tokens, 500 episodes of the train split (`benchmarks.baselines.policy_scores`).",
        "",
        *table,
        "",
        f"![score against env steps]({png.name})",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(table))
    print(f"wrote {args.out} and {png}")
    return {"rows": rows, "random": random_score, "results": results}


if __name__ == "__main__":
    main()
