"""The PPO update in length groups (``PPOConfig.length_groups``) against one pass per minibatch.

    python -m benchmarks.length_groups [--task translation:multi30k] [--data-dir DIR] [--model small]
                                       [--num-envs 256] [--minibatches 4] [--groups 1 2 4 8] [--repeats 5]
                                       [--out benchmarks/results/length_groups.md]

The rollout is built from the task's train examples with each example's reference (then EOS) as the
actions, so its episode lengths are those of a policy that translates well rather than of an untrained one
that runs every episode to the length cap (where grouping has nothing to cut). Rewards, log-probabilities
and values are random; they change what the update computes, not what it costs. Each timed call is one
``ppo_update`` (RLOO, so one pass over the rollout, as in ``benchmarks.quality``'s RL phase) from the same
start weights, the settings taking turns within each repeat; the table gives the median seconds, the speed
relative to one pass (same process), the mean padded width of the passes, and the largest weight
difference from the one-pass update (it is the same update up to float rounding).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from agents.model import ModelConfig, PolicyModel, make_adam
from agents.ppo import (
    ActionEvaluator,
    PPOConfig,
    advantages_for,
    minibatch_order,
    ppo_update,
    split_by_length,
)
from agents.rollout import Rollout
from agents.supervised import reference_targets
from benchmarks.machine import machine_description, write_results
from ir_env import PAD, make_task


def reference_rollout(task, num_envs: int, seed: int, repeats: int = 1) -> Rollout:
    """A rollout whose episodes are ``num_envs`` random train examples' references, each ended by EOS.
    ``repeats`` > 1: the sources are ``num_envs / repeats`` examples', each played that many times in a row
    as RLOO plays them, and the actions still ``num_envs`` random references, so that the samples of one
    source differ (with equal ones RLOO's gradient is zero)."""
    rng = np.random.default_rng(seed)
    examples = task.examples("train")
    ids = rng.integers(len(examples.source_len), size=num_envs)
    actions = torch.as_tensor(reference_targets(examples, task.max_generation_len)[ids])
    if repeats > 1:
        ids = np.repeat(rng.integers(len(examples.source_len), size=num_envs // repeats), repeats)
    mask = actions != PAD
    lengths = mask.sum(dim=1).numpy()
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(actions.shape, generator=g)
    return Rollout(source=torch.as_tensor(examples.source[ids]), actions=actions,
                   logprobs=torch.where(mask, -noise.abs(), 0.0), values=torch.zeros(actions.shape),
                   rewards=torch.where(mask, noise * 0.1, 0.0), mask=mask, scores=np.zeros(num_envs),
                   lengths=lengths, example_ids=ids)


def mean_width(batch: Rollout, rows_per_minibatch: int, groups: int, seed: int) -> tuple[float, float]:
    """Mean padded (episode, source) width of the passes one epoch makes, per sequence."""
    source_len = (batch.source != PAD).sum(dim=1).numpy()
    perm = minibatch_order(len(batch.lengths), PPOConfig(algo="rloo", num_envs=len(batch.lengths)),
                           np.random.default_rng(seed))  # as ppo_update orders them
    cells = [0, 0]
    for start in range(0, len(perm), rows_per_minibatch):
        for rows in split_by_length(perm[start : start + rows_per_minibatch], batch.lengths, source_len, groups):
            cells[0] += len(rows) * int(batch.lengths[rows].max())
            cells[1] += len(rows) * int(source_len[rows].max())
    return cells[0] / len(perm), cells[1] / len(perm)


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="translation:multi30k")
    parser.add_argument("--data-dir", default=None, help="folder of the real data sets (default: $IR_DATA_DIR)")
    parser.add_argument("--model", default="small")
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--minibatches", type=int, default=4)
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if 1 not in args.groups:
        args.groups = [1, *args.groups]  # the baseline every ratio is against
    kwargs = {} if args.data_dir is None or ":" not in args.task else {"data_dir": args.data_dir}
    task = make_task(args.task, **kwargs)
    torch.manual_seed(args.seed)
    start = PolicyModel(ModelConfig.preset(args.model, len(task.vocab), task.max_source_len, task.max_generation_len))
    start_state = {k: v.clone() for k, v in start.state_dict().items()}
    batch = reference_rollout(task, args.num_envs, args.seed)
    mask = torch.as_tensor(task.action_mask())
    seconds: dict[int, list[float]] = {g: [] for g in args.groups}
    weights: dict[int, dict[str, torch.Tensor]] = {}
    print(f"{args.task}, {args.model}, {args.num_envs} episodes (mean length {batch.lengths.mean():.1f}), "
          f"{args.minibatches} minibatches, groups {args.groups}, {args.repeats} repeats", flush=True)
    for repeat in range(args.repeats + 1):  # the first round warms up and is not timed
        for groups in args.groups:
            start.load_state_dict(start_state)
            config = PPOConfig(algo="rloo", num_envs=args.num_envs, num_minibatches=args.minibatches,
                               length_groups=groups, learning_rate=1e-5)
            advantages, returns = advantages_for(batch, batch.rewards, config)
            optimizer = make_adam(start.parameters(), lr=config.learning_rate)
            t0 = time.perf_counter()
            ppo_update(ActionEvaluator(start), optimizer, batch, advantages, returns, config, mask,
                       np.random.default_rng(args.seed))
            elapsed = time.perf_counter() - t0
            if repeat:
                seconds[groups].append(elapsed)
            weights[groups] = {k: v.clone() for k, v in start.state_dict().items()}
        print(f"  repeat {repeat}: " + ", ".join(f"{g}: {s[-1]:.2f} s" for g, s in seconds.items() if s), flush=True)
    base = statistics.median(seconds[1])
    rows = []
    for groups in args.groups:
        width, source_width = mean_width(batch, args.num_envs // args.minibatches, groups, args.seed)
        diff = max(float((weights[groups][k] - weights[1][k]).abs().max()) for k in weights[1])
        med = statistics.median(seconds[groups])
        rows.append({"groups": groups, "seconds": med, "speedup": base / med, "width": width,
                     "source_width": source_width, "max_weight_diff": diff,
                     "tokens_per_second": float(batch.lengths.sum()) / med})
    lines = [
        "# The PPO update in length groups",
        "",
        f"Command: `python -m benchmarks.length_groups --task {args.task} --model {args.model} "
        f"--num-envs {args.num_envs} --minibatches {args.minibatches} --groups {' '.join(map(str, args.groups))} "
        f"--repeats {args.repeats}" + (" --data-dir DIR`" if args.data_dir else "`"),
        f"Machine: {machine_description()}; torch threads: {torch.get_num_threads()}",
        "",
        f"One RLOO update (one pass, {args.minibatches} minibatches of {args.num_envs // args.minibatches} episodes) "
        f"of the `{args.model}` policy on a rollout of {args.num_envs} train references of `{args.task}` "
        f"(mean episode {batch.lengths.mean():.1f} tokens, source {float((batch.source != PAD).sum(1).float().mean()):.1f}); "
        f"median of {args.repeats} timed calls per setting, the settings taking turns.",
        "",
        "| length_groups | seconds per update | speed vs 1 | trained tok/s | mean padded width (episode, source) | max weight difference vs 1 |",
        "|---|---|---|---|---|---|",
        *[f"| {r['groups']} | {r['seconds']:.3f} | {r['speedup']:.2f}x | {r['tokens_per_second']:,.0f} | "
          f"{r['width']:.1f}, {r['source_width']:.1f} | {r['max_weight_diff']:.1e} |" for r in rows],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    write_results(text, args.out)
    return rows


if __name__ == "__main__":
    main()
