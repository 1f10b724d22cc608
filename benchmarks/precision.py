"""bf16 matrix products (torch.autocast; weights, Adam, the heads and the losses stay float32) against float32,
for the three jobs of the quality benchmark's Multi30k arms.

    python -m benchmarks.precision [--task translation:multi30k] [--data-dir DIR] [--model small]
                                   [--batch-size 128] [--num-envs 256] [--rloo-k 4] [--repeats 5]
                                   [--out benchmarks/results/precision.md]

Jobs: one maximum-likelihood step (``sequence_loss`` with label smoothing 0.1 on ``batch-size`` train
sentences of similar length, as the length buckets draw them, backward, gradient clipping, Adam); one RLOO
update (``ppo_update``: one pass, 4 minibatches, 4 length groups, the encoder once per source) on a rollout
of ``num_envs / k`` examples played k times with references as actions (``benchmarks.length_groups
.reference_rollout``); one RLOO rollout (``collect``, sampled at temperature 0.5, rows ending once they have
generated as many tokens as their source has, as in ``benchmarks.finished_rows``). Each repeat runs every
job in both precisions, taking turns, from the same start weights; the table gives the median seconds and
the speed of bf16 relative to float32. bf16 pays only on a processor with bf16 instructions (avx512_bf16
or AMX on x86, or a GPU); elsewhere it can be slower than float32.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from agents.model import ModelConfig, PolicyModel, make_adam
from agents.ppo import ActionEvaluator, PPOConfig, advantages_for, ppo_update
from agents.rollout import collect
from agents.supervised import reference_targets, sequence_loss
from agents.trainer import autocast_for
from benchmarks.finished_rows import stop_at_source_length
from benchmarks.length_groups import reference_rollout
from benchmarks.machine import machine_description, write_results
from ir_env import PAD, BatchedInstantRewardEnv, make_task

PRECISIONS = ("fp32", "bf16")


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="translation:multi30k")
    parser.add_argument("--data-dir", default=None, help="folder of the real data sets (default: $IR_DATA_DIR)")
    parser.add_argument("--model", default="small")
    parser.add_argument("--batch-size", type=int, default=128, help="sentences of the MLE step")
    parser.add_argument("--num-envs", type=int, default=256, help="episodes of the RLOO update and rollout")
    parser.add_argument("--rloo-k", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.rloo_k < 2 or args.num_envs % (4 * args.rloo_k):
        parser.error(f"--rloo-k must be >= 2 and 4 x it must divide --num-envs, got {args.rloo_k} and {args.num_envs}")
    kwargs = {} if args.data_dir is None or ":" not in args.task else {"data_dir": args.data_dir}
    task = make_task(args.task, **kwargs)
    torch.manual_seed(args.seed)
    model = PolicyModel(ModelConfig.preset(args.model, len(task.vocab), task.max_source_len, task.max_generation_len))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    mask = torch.as_tensor(task.action_mask())
    rng = np.random.default_rng(args.seed)

    examples = task.examples("train")  # an MLE batch as the length buckets draw one: neighbours in length
    targets = reference_targets(examples, task.max_generation_len)
    order = np.argsort((examples.source != PAD).sum(1) + (targets != PAD).sum(1), kind="stable")
    at = int(rng.integers(len(order) - args.batch_size))
    rows = order[at : at + args.batch_size]
    source_len, target_len = int((examples.source[rows] != PAD).sum(1).max()), int((targets[rows] != PAD).sum(1).max())
    source = torch.as_tensor(examples.source[rows, :source_len])
    target = torch.as_tensor(targets[rows, :target_len])
    rollout = reference_rollout(task, args.num_envs, args.seed, repeats=args.rloo_k)
    ppo = PPOConfig(algo="rloo", num_envs=args.num_envs, rloo_k=args.rloo_k, length_groups=4, learning_rate=1e-5)
    advantages, returns = advantages_for(rollout, rollout.rewards, ppo)
    env = BatchedInstantRewardEnv(num_envs=args.num_envs, task=task, info_text=False, copy=False)
    groups = np.repeat(rng.integers(len(examples.source_len), size=args.num_envs // args.rloo_k), args.rloo_k)
    stop_at_source_length(model)

    def mle_step(autocast) -> float:
        model.train()
        optimizer = make_adam(model.parameters(), lr=1e-4)
        t0 = time.perf_counter()
        with autocast:
            loss = sequence_loss(model, source, target, 0.1, mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return time.perf_counter() - t0

    def rloo_update(autocast) -> float:
        model.train()
        optimizer = make_adam(model.parameters(), lr=ppo.learning_rate)
        t0 = time.perf_counter()
        ppo_update(ActionEvaluator(model), optimizer, rollout, advantages, returns, ppo, mask,
                   np.random.default_rng(args.seed), autocast=autocast)
        return time.perf_counter() - t0

    def rloo_rollout(autocast) -> float:
        model.eval()
        t0 = time.perf_counter()
        with autocast:
            collect(model, env, seed=args.seed, generator=torch.Generator().manual_seed(args.seed), temperature=0.5,
                    example_ids=groups)
        return time.perf_counter() - t0

    jobs = {f"MLE step, {args.batch_size} sentences": mle_step,
            f"RLOO update, {args.num_envs} episodes": rloo_update,
            f"RLOO rollout, {args.num_envs // args.rloo_k} examples x {args.rloo_k}, sampled": rloo_rollout}
    seconds = {(job, p): [] for job in jobs for p in PRECISIONS}
    print(f"{args.task}, {args.model}, {args.repeats} repeats", flush=True)
    for repeat in range(args.repeats + 1):  # the first round warms up and is not timed
        for job, run in jobs.items():
            for precision in PRECISIONS:
                model.load_state_dict(start)
                autocast = autocast_for(precision, torch.device("cpu"))  # as RunConfig.precision runs it
                elapsed = run(contextlib.nullcontext() if autocast is None else autocast)
                if repeat:
                    seconds[job, precision].append(elapsed)
    result = []
    for job in jobs:
        base = statistics.median(seconds[job, "fp32"])
        for precision in PRECISIONS:
            med = statistics.median(seconds[job, precision])
            result.append({"job": job, "precision": precision, "seconds": med, "speedup": base / med})
    lines = [
        "# bf16 matrix products against float32",
        "",
        f"Command: `python -m benchmarks.precision --task {args.task} --model {args.model} --batch-size "
        f"{args.batch_size} --num-envs {args.num_envs} --rloo-k {args.rloo_k} --repeats {args.repeats}`"
        + (" with `--data-dir` (or `IR_DATA_DIR`) set" if ":" in args.task else ""),
        f"Machine: {machine_description()}; torch threads: {torch.get_num_threads()}",
        "",
        f"The `{args.model}` policy (untrained weights). bf16: `torch.autocast('cpu', dtype=torch.bfloat16)` "
        "around the job, as `RunConfig.precision='bf16'` and the quality benchmark's `--precision bf16` run it "
        f"(weights, Adam, the heads and the losses float32). MLE batch: {args.batch_size} train sentences of "
        f"neighbouring length ({source_len} source and {target_len} target columns). Median of {args.repeats} "
        "timed calls per setting, the settings taking turns.",
        "",
        "| job | precision | seconds | speed vs fp32 |",
        "|---|---|---|---|",
        *[f"| {r['job']} | {r['precision']} | {r['seconds']:.3f} | {r['speedup']:.2f}x |" for r in result],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    write_results(text, args.out)
    return result


if __name__ == "__main__":
    main()
