"""A rollout's decode started on each distinct source once (``agents.rollout.start_distinct``) against
``PolicyModel.start`` on the env's (N, S) sources as they come.

    python -m benchmarks.rollout_start [--task translation:multi30k] [--data-dir DIR] [--model small]
                                       [--num-envs 256] [--rloo-k 4] [--temperature 0.5] [--repeats 5]
                                       [--out benchmarks/results/rollout_start.md]

RLOO plays each of ``num_envs / k`` examples k times, and the env pads every source to the task's cap, so
the plain start encodes k copies of each source at the full width. Two jobs: the RLOO rollout (sampled at
the quality benchmark's temperature) and a greedy rollout of ``num_envs`` distinct valid examples (as the
trainer's evaluation plays them: only the cut columns save work there). Rows end as in
``benchmarks.finished_rows`` (once they have generated as many tokens as their source has), so the decode's
own cost is that of a policy that translates. Each timed call alternates the two starts; the table gives
the median seconds and the speed-up, and checks that the greedy rollout plays the same tokens both ways.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import agents.rollout as rollout_module
from agents.model import ModelConfig, PolicyModel
from agents.rollout import collect
from benchmarks.finished_rows import stop_at_source_length
from benchmarks.machine import machine_description, write_results
from ir_env import BatchedInstantRewardEnv, make_task


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="translation:multi30k")
    parser.add_argument("--data-dir", default=None, help="folder of the real data sets (default: $IR_DATA_DIR)")
    parser.add_argument("--model", default="small")
    parser.add_argument("--num-envs", type=int, default=256, help="rows of each rollout")
    parser.add_argument("--rloo-k", type=int, default=4, help="samples of each example in the RLOO rollout")
    parser.add_argument("--temperature", type=float, default=0.5, help="of the RLOO rollout's sampling")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.rloo_k < 2 or args.num_envs % args.rloo_k:
        parser.error(f"--rloo-k must be >= 2 and divide --num-envs, got {args.rloo_k} and {args.num_envs}")
    kwargs = {} if args.data_dir is None or ":" not in args.task else {"data_dir": args.data_dir}
    task = make_task(args.task, **kwargs)
    torch.manual_seed(args.seed)
    model = PolicyModel(ModelConfig.preset(args.model, len(task.vocab), task.max_source_len, task.max_generation_len)).eval()
    stop_at_source_length(model)
    train_env = BatchedInstantRewardEnv(num_envs=args.num_envs, task=task, info_text=False, copy=False)
    valid_env = BatchedInstantRewardEnv(num_envs=args.num_envs, task=task, split="valid", info_text=False, copy=False)
    rng = np.random.default_rng(args.seed)
    groups = np.repeat(rng.integers(len(train_env.episodes.examples.source_len), size=args.num_envs // args.rloo_k), args.rloo_k)
    distinct = np.arange(args.num_envs) % len(valid_env.episodes.examples.source_len)
    starts = {"distinct sources, used columns": rollout_module.start_distinct,
              "every row, full width": lambda model, source: model.start(source)}
    jobs = {
        f"RLOO rollout, {args.num_envs // args.rloo_k} examples x {args.rloo_k}, sampled": lambda: collect(
            model, train_env, seed=args.seed, generator=torch.Generator().manual_seed(args.seed),
            temperature=args.temperature, example_ids=groups),
        f"greedy rollout, {args.num_envs} distinct valid examples": lambda: collect(
            model, valid_env, seed=args.seed, greedy=True, example_ids=distinct),
    }
    seconds = {(job, name): [] for job in jobs for name in starts}
    greedy_actions: dict[str, torch.Tensor] = {}
    print(f"{args.task}, {args.model}, {args.repeats} repeats", flush=True)
    try:
        for repeat in range(args.repeats + 1):  # the first round warms up and is not timed
            for job, run in jobs.items():
                for name, start in starts.items():
                    rollout_module.start_distinct = start
                    t0 = time.perf_counter()
                    out = run()
                    elapsed = time.perf_counter() - t0
                    if repeat:
                        seconds[job, name].append(elapsed)
                    if job.startswith("greedy"):
                        greedy_actions[name] = out.actions
    finally:
        rollout_module.start_distinct = starts["distinct sources, used columns"]
    same = torch.equal(*greedy_actions.values())
    source_len = train_env.episodes.examples.source_len
    rows = []
    for job in jobs:
        base = statistics.median(seconds[job, "every row, full width"])
        for name in starts:
            med = statistics.median(seconds[job, name])
            rows.append({"job": job, "setting": name, "seconds": med, "speedup": base / med})
    lines = [
        "# A rollout's decode started on each distinct source once",
        "",
        f"Command: `python -m benchmarks.rollout_start --task {args.task} --model {args.model} --num-envs "
        f"{args.num_envs} --rloo-k {args.rloo_k} --temperature {args.temperature:g} --repeats {args.repeats}`"
        + (" with `--data-dir` (or `IR_DATA_DIR`) set" if ":" in args.task else ""),
        f"Machine: {machine_description()}; torch threads: {torch.get_num_threads()}",
        "",
        f"The `{args.model}` policy (untrained weights; each row ends once it has generated as many tokens as its "
        f"source has). Sources: {source_len.mean():.1f} tokens on average over the train split, the env pads them "
        f"to {task.max_source_len}; the RLOO rollout's longest source has {int(source_len[groups].max())}. "
        f"'distinct sources, used columns': `agents.rollout.start_distinct` (collect's start); 'every row, full "
        f"width': `PolicyModel.start` on the env's sources. Median of {args.repeats} timed calls per setting, the "
        f"settings taking turns. Greedy rollout plays the same tokens both ways: {'yes' if same else 'NO'}.",
        "",
        "| job | start | seconds | speed vs every row, full width |",
        "|---|---|---|---|",
        *[f"| {r['job']} | {r['setting']} | {r['seconds']:.3f} | {r['speedup']:.2f}x |" for r in rows],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not same:
        raise SystemExit("the greedy rollout plays different tokens when started on distinct sources")
    write_results(text, args.out)
    return rows


if __name__ == "__main__":
    main()
