"""The RLOO update with the encoder run once per distinct source (``PPOConfig.share_encoder``) against
once per row.

    python -m benchmarks.shared_encoder [--task translation:multi30k] [--data-dir DIR] [--model small]
                                        [--num-envs 256] [--minibatches 4] [--rloo-k 4] [--groups 4]
                                        [--repeats 5] [--out benchmarks/results/shared_encoder.md]

RLOO plays each example ``rloo_k`` times; its update's minibatches hold whole groups of samples of one
example (``minibatch_order``), so a minibatch of 64 rows has 16 distinct sources at k = 4. The rollout is
``num_envs / k`` random train examples, each played k times with its reference (then EOS) as the actions
(``benchmarks.length_groups.reference_rollout``): episode lengths of a policy that translates well. Each
timed call is one ``ppo_update`` from the same start weights, the two settings taking turns within each
repeat (same process); the table gives the median seconds, the speed relative to encoding every row, and
the largest weight difference between the two updates. Dropout is off (eval mode) so that the two compute
the same update up to float rounding; the quality benchmark's RL phase trains with dropout 0.1.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from agents.model import ModelConfig, PolicyModel, make_adam
from agents.ppo import ActionEvaluator, PPOConfig, advantages_for, ppo_update
from benchmarks.length_groups import reference_rollout
from benchmarks.machine import machine_description, write_results
from ir_env import PAD, make_task


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="translation:multi30k")
    parser.add_argument("--data-dir", default=None, help="folder of the real data sets (default: $IR_DATA_DIR)")
    parser.add_argument("--model", default="small")
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--minibatches", type=int, default=4)
    parser.add_argument("--rloo-k", type=int, default=4)
    parser.add_argument("--groups", type=int, default=4, help="length_groups of both settings")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    kwargs = {} if args.data_dir is None or ":" not in args.task else {"data_dir": args.data_dir}
    task = make_task(args.task, **kwargs)
    torch.manual_seed(args.seed)
    model = PolicyModel(ModelConfig.preset(args.model, len(task.vocab), task.max_source_len, task.max_generation_len))
    model.eval()
    start_state = {k: v.clone() for k, v in model.state_dict().items()}
    batch = reference_rollout(task, args.num_envs, args.seed, repeats=args.rloo_k)
    mask = torch.as_tensor(task.action_mask())
    settings = (False, True)
    seconds: dict[bool, list[float]] = {s: [] for s in settings}
    weights: dict[bool, dict[str, torch.Tensor]] = {}
    print(f"{args.task}, {args.model}, {args.num_envs} episodes (k = {args.rloo_k}), {args.minibatches} minibatches, "
          f"length_groups {args.groups}, {args.repeats} repeats", flush=True)
    for repeat in range(args.repeats + 1):  # the first round warms up and is not timed
        for share in settings:
            model.load_state_dict(start_state)
            config = PPOConfig(algo="rloo", num_envs=args.num_envs, num_minibatches=args.minibatches,
                               rloo_k=args.rloo_k, length_groups=args.groups, share_encoder=share, learning_rate=1e-5)
            advantages, returns = advantages_for(batch, batch.rewards, config)
            optimizer = make_adam(model.parameters(), lr=config.learning_rate)
            t0 = time.perf_counter()
            ppo_update(ActionEvaluator(model), optimizer, batch, advantages, returns, config, mask,
                       np.random.default_rng(args.seed))
            elapsed = time.perf_counter() - t0
            if repeat:
                seconds[share].append(elapsed)
            weights[share] = {k: v.clone() for k, v in model.state_dict().items()}
        if repeat:
            print(f"  repeat {repeat}: " + ", ".join(f"share {s}: {t[-1]:.2f} s" for s, t in seconds.items()), flush=True)
    base = statistics.median(seconds[False])
    rows = []
    for share in settings:
        med = statistics.median(seconds[share])
        diff = max(float((weights[share][k] - weights[False][k]).abs().max()) for k in weights[False])
        rows.append({"share_encoder": share, "seconds": med, "speedup": base / med, "max_weight_diff": diff,
                     "tokens_per_second": float(batch.lengths.sum()) / med})
    lines = [
        "# The RLOO update with the encoder run once per distinct source",
        "",
        f"Command: `python -m benchmarks.shared_encoder --task {args.task} --model {args.model} "
        f"--num-envs {args.num_envs} --minibatches {args.minibatches} --rloo-k {args.rloo_k} --groups {args.groups} "
        f"--repeats {args.repeats}" + (" --data-dir DIR`" if args.data_dir else "`"),
        f"Machine: {machine_description()}; torch threads: {torch.get_num_threads()}",
        "",
        f"One RLOO update (one pass, {args.minibatches} minibatches of {args.num_envs // args.minibatches} episodes, "
        f"length_groups {args.groups}) of the `{args.model}` policy on a rollout of {args.num_envs // args.rloo_k} "
        f"train examples of `{args.task}` played {args.rloo_k} times each with their references as actions "
        f"(mean episode {batch.lengths.mean():.1f} tokens, source "
        f"{float((batch.source != PAD).sum(1).float().mean()):.1f}); dropout off; median of {args.repeats} timed "
        "calls per setting, the settings taking turns.",
        "",
        "| share_encoder | seconds per update | speed vs per-row encoding | trained tok/s | max weight difference |",
        "|---|---|---|---|---|",
        *[f"| {r['share_encoder']} | {r['seconds']:.3f} | {r['speedup']:.2f}x | {r['tokens_per_second']:,.0f} | "
          f"{r['max_weight_diff']:.1e} |" for r in rows],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    write_results(text, args.out)
    return rows


if __name__ == "__main__":
    main()
