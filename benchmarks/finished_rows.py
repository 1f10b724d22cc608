"""Batched decoding that drops finished rows (``agents.model.COMPACT_AT``) against stepping every row to the end.

    python -m benchmarks.finished_rows [--task translation:multi30k] [--data-dir DIR] [--model small]
                                       [--num-envs 256] [--batch-size 200] [--repeats 5]
                                       [--out benchmarks/results/finished_rows.md]

A rollout (``agents.rollout.collect``, sampling) and greedy decoding (``PolicyModel.sample``, as the quality
benchmark's corpus BLEU decodes) cost per step what the rows in the decode state cost, so a batch whose
episodes end at different steps wastes the steps of its finished rows unless they are dropped. An untrained
policy runs every episode to the length cap and has nothing to drop; so that the lengths are those of a
policy that translates, each row here is made to end (its EOS logit raised by 100) once it has generated as
many tokens as its source has (Multi30k: sources average 13.0 tokens, German references 12.4 plus EOS). The
cost of a step does not depend on which tokens are chosen, only on how many rows are decoded. Each timed
call alternates the two settings (``COMPACT_AT`` at its default, then 0: no row is ever dropped); the table
gives the median seconds and the speed-up, and checks that greedy decoding gives the same tokens both ways.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import agents.model as model_module
import agents.rollout as rollout_module
from agents.model import ModelConfig, PolicyModel
from agents.rollout import collect
from benchmarks.machine import machine_description, write_results
from ir_env import EOS, PAD, BatchedInstantRewardEnv, make_task


def stop_at_source_length(model: PolicyModel) -> None:
    """Make ``model.step`` end each row once it has generated as many tokens as its source has."""
    step = model.step

    def stopping_step(state, prev_tokens, output_ids=None):
        logits, values = step(state, prev_tokens, output_ids)
        source_len = state.memory_mask[:, 0, 0, :].sum(-1)  # (R,)
        col = EOS if output_ids is None else int((output_ids == EOS).nonzero())
        logits[:, col] += 100.0 * (state.positions > source_len)
        return logits, values

    model.step = stopping_step


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="translation:multi30k")
    parser.add_argument("--data-dir", default=None, help="folder of the real data sets (default: $IR_DATA_DIR)")
    parser.add_argument("--model", default="small")
    parser.add_argument("--num-envs", type=int, default=256, help="rows of the rollout")
    parser.add_argument("--batch-size", type=int, default=200, help="rows of greedy decoding (valid split)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    kwargs = {} if args.data_dir is None or ":" not in args.task else {"data_dir": args.data_dir}
    task = make_task(args.task, **kwargs)
    torch.manual_seed(args.seed)
    model = PolicyModel(ModelConfig.preset(args.model, len(task.vocab), task.max_source_len, task.max_generation_len)).eval()
    stop_at_source_length(model)
    mask = torch.as_tensor(task.action_mask())
    valid = task.examples("valid")
    source = torch.as_tensor(valid.source[: args.batch_size])
    env = BatchedInstantRewardEnv(num_envs=args.num_envs, task=task, info_text=False, copy=False)
    default = model_module.COMPACT_AT
    shares = {"drop finished rows": default, "step every row": 0.0}
    jobs = {
        f"rollout, {args.num_envs} rows, sampled": lambda: collect(
            model, env, seed=args.seed, generator=torch.Generator().manual_seed(args.seed)).num_tokens,
        f"greedy decoding, {len(source)} valid sources": lambda: model.sample(
            source, task.max_generation_len, action_mask=mask, greedy=True),
    }
    seconds = {(job, name): [] for job in jobs for name in shares}
    outputs: dict[str, torch.Tensor] = {}
    print(f"{args.task}, {args.model}, {args.repeats} repeats", flush=True)
    for repeat in range(args.repeats + 1):  # the first round warms up and is not timed
        for job, run in jobs.items():
            for name, share in shares.items():
                model_module.COMPACT_AT = rollout_module.COMPACT_AT = share
                t0 = time.perf_counter()
                out = run()
                elapsed = time.perf_counter() - t0
                if repeat:
                    seconds[job, name].append(elapsed)
                if isinstance(out, torch.Tensor):
                    outputs[name] = out
    model_module.COMPACT_AT = rollout_module.COMPACT_AT = default
    same = all(torch.equal(outputs[name], outputs["step every row"]) for name in outputs)
    lengths = (outputs["step every row"] != PAD).sum(1).float()
    rows = []
    for job in jobs:
        base = statistics.median(seconds[job, "step every row"])
        for name in shares:
            med = statistics.median(seconds[job, name])
            rows.append({"job": job, "setting": name, "seconds": med, "speedup": base / med})
    lines = [
        "# Batched decoding that drops finished rows",
        "",
        f"Command: `python -m benchmarks.finished_rows --task {args.task} --model {args.model} --num-envs "
        f"{args.num_envs} --batch-size {args.batch_size} --repeats {args.repeats}`"
        + (" with `--data-dir` (or `IR_DATA_DIR`) set" if ":" in args.task else ""),
        f"Machine: {machine_description()}; torch threads: {torch.get_num_threads()}",
        "",
        f"The `{args.model}` policy (untrained weights; each row ends once it has generated as many tokens as its "
        f"source has: greedy outputs of {lengths.mean():.1f} tokens on average, {int(lengths.max())} at most, cap "
        f"{task.max_generation_len}). Median of {args.repeats} timed calls per setting, the settings taking turns. "
        f"'drop finished rows': `COMPACT_AT` = {default:.3g} (the default); 'step every row': 0. "
        f"Greedy tokens the same both ways: {'yes' if same else 'NO'}.",
        "",
        "| job | setting | seconds | speed vs stepping every row |",
        "|---|---|---|---|",
        *[f"| {r['job']} | {r['setting']} | {r['seconds']:.3f} | {r['speedup']:.2f}x |" for r in rows],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not same:
        raise SystemExit("greedy decoding differs when finished rows are dropped")
    write_results(text, args.out)
    return rows


if __name__ == "__main__":
    main()
