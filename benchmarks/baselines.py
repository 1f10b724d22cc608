"""Scores of two fixed policies on every built-in task: follow the reference, and act uniformly at random.

    python -m benchmarks.baselines [--episodes 500] [--split valid] [--out benchmarks/results/baselines.md]

The random policy draws uniformly from the task's action mask (EOS included), so it mostly writes until
the length cap. The table also gives each task's vocabulary size and lengths, and one example.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.machine import machine_description
from ir_env import EOS, BatchedInstantRewardEnv, make_task
from ir_env.tasks import BUILTIN_TASKS

POLICIES = ("reference", "random")


def policy_scores(task_name: str, policy: str, episodes: int, split: str, seed: int = 0) -> np.ndarray:
    """Final scores of ``episodes`` episodes of ``policy`` on ``task_name`` (batched env, 64 rows)."""
    env = BatchedInstantRewardEnv(num_envs=64, task=task_name, split=split, info_text=False)
    rng = np.random.default_rng(seed)
    allowed = np.flatnonzero(env.task.action_mask())
    env.reset(seed=seed)
    scores: list[float] = []
    ep = env.episodes
    while len(scores) < episodes:
        if policy == "reference":
            ref = ep.examples.reference[ep.example_ids]
            pos = np.minimum(ep.length, ref.shape[1] - 1)
            actions = np.where(ep.length < ep.examples.reference_len[ep.example_ids], ref[np.arange(env.num_envs), pos], EOS)
        else:
            actions = rng.choice(allowed, size=env.num_envs)
        _, _, terminated, _, info = env.step(actions)
        if terminated.any():
            scores.extend(info["final_info"]["score"][terminated].tolist())
    return np.array(scores[:episodes])


def example_line(task_name: str) -> str:
    task = make_task(task_name)
    ex = task.examples("valid")
    src = task.vocab.detokenize(ex.source[0, : ex.source_len[0]])
    ref = task.vocab.detokenize(ex.reference[0, : ex.reference_len[0]])
    return f"`{src}` → `{ref}`"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=500)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/baselines.md"))
    args = parser.parse_args()

    lines = [
        "# Built-in tasks: sizes and the scores of two fixed policies",
        "",
        f"Command: `python -m benchmarks.baselines --episodes {args.episodes} --split {args.split}`  ",
        f"Machine: {machine_description()}.  ",
        "Scores are the task metric in [0, 1] (sentiment: signed "
        "VADER compound in [-1, 1]); mean ± standard deviation over episodes of the split.",
        "",
        "| task | metric | vocabulary | source ≤ | output ≤ | train / valid / test | reference policy | random policy | example (valid[0]) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in BUILTIN_TASKS:
        task = make_task(name)
        sizes = " / ".join(str(len(task.examples(s))) for s in ("train", "valid", "test"))
        cells = []
        for policy in POLICIES:
            s = policy_scores(name, policy, args.episodes, args.split)
            cells.append(f"{s.mean():.3f} ± {s.std():.3f}")
        lines.append(
            f"| {name} | {task.metric_name} | {len(task.vocab)} | {task.max_source_len} | {task.max_generation_len} | "
            f"{sizes} | {cells[0]} | {cells[1]} | {example_line(name)} |"
        )
        print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
