"""Learner throughput: trained tokens per second, rollout and update apart, the env's share, and (on a GPU)
the update phase's model FLOP utilisation.

    python -m benchmarks.learner [--device auto] [--model tiny] [--num-envs 64] [--updates 5]
                                 [--task translation] [--out benchmarks/results/learner_cpu.md]

One "trained token" is one generated token that goes through a full PPO update (rollout with the KV cache,
then ``update_epochs`` teacher-forced passes). Each configuration runs a warm-up update, then ``--updates``
timed ones; the table gives their mean. The update's FLOPs are counted as 6 x (encoder weights x source
tokens + decoder and output weights x target tokens) per pass (forward + backward; attention's
quadratic terms are left out, so the MFU is a slight underestimate) against the GPU's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import numpy as np
import torch

from agents.model import ModelConfig, PolicyModel
from agents.ppo import ActionEvaluator, PPOConfig, advantages_for, ppo_update
from agents.rollout import collect
from benchmarks.machine import machine_description
from ir_env import BatchedInstantRewardEnv, make_task

#: Dense bf16 tensor-core peaks (TFLOP/s) by device-name fragment, from the vendors' spec sheets.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def update_flops(model: PolicyModel, batch_size: int, source_len: int, target_len: int, epochs: int) -> float:
    """Approximate FLOPs of one PPO update: 6 x weights x tokens per teacher-forced pass."""
    c = model.config
    enc = sum(p.numel() for n, p in model.named_parameters() if n.startswith("encoder"))
    dec = sum(p.numel() for n, p in model.named_parameters() if n.startswith("decoder"))
    out = c.vocab_size * c.d_model
    return 6.0 * epochs * batch_size * (enc * source_len + (dec + out) * target_len)


def measure(task_name: str, preset: str, num_envs: int, updates: int, device: torch.device, seed: int = 0) -> dict[str, float]:
    task = make_task(task_name)
    env = BatchedInstantRewardEnv(num_envs=num_envs, task=task, info_text=False, copy=False)
    torch.manual_seed(seed)
    model = PolicyModel(ModelConfig.preset(preset, len(task.vocab), task.max_source_len, task.max_generation_len)).to(device)
    config = PPOConfig(num_envs=num_envs, num_minibatches=max(1, num_envs // 1024) if device.type == "cuda" else 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    evaluator = ActionEvaluator(model)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None
    mask = torch.as_tensor(task.action_mask(), device=device)
    totals = {"tokens": 0.0, "rollout": 0.0, "update": 0.0, "env": 0.0, "flops": 0.0}
    for u in range(updates + 1):
        generator = torch.Generator(device=device).manual_seed(u)
        sync()
        t0 = time.perf_counter()
        model.eval()
        with autocast if autocast is not None else contextlib.nullcontext():
            batch = collect(model, env, seed=u, generator=generator)
        sync()
        t1 = time.perf_counter()
        advantages, returns = advantages_for(batch, batch.rewards, config)
        model.train()
        ppo_update(evaluator, optimizer, batch, advantages, returns, config, mask, np.random.default_rng(u), autocast)
        sync()
        t2 = time.perf_counter()
        if u == 0:
            continue  # warm-up
        totals["tokens"] += batch.num_tokens
        totals["rollout"] += t1 - t0
        totals["update"] += t2 - t1
        totals["env"] += batch.env_seconds
        totals["flops"] += update_flops(model, num_envs, task.max_source_len, task.max_generation_len, config.update_epochs)
    wall = totals["rollout"] + totals["update"]
    peak = peak_tflops(device)
    return {
        "params": float(model.num_parameters()),
        "tokens_per_update": totals["tokens"] / updates,
        "trained_tok_s": totals["tokens"] / wall,
        "rollout_tok_s": totals["tokens"] / totals["rollout"],
        "update_tok_s": totals["tokens"] / totals["update"],
        "rollout_share": totals["rollout"] / wall,
        "env_share": totals["env"] / wall,
        "update_tflops": totals["flops"] / totals["update"] / 1e12,
        "mfu": (totals["flops"] / totals["update"] / 1e12) / peak if peak else float("nan"),
    }


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", nargs="+", default=["tiny"])
    parser.add_argument("--num-envs", nargs="+", type=int, default=[64])
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--task", default="translation")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else "cpu" if args.device == "auto" else args.device)
    out = args.out or Path(f"benchmarks/results/learner_{device.type}.md")
    header = "| model | params | N | tokens/update | trained tok/s | rollout tok/s | update tok/s | rollout share | env share | update TFLOP/s | MFU |"
    lines = [
        f"# Learner throughput ({device.type})",
        "",
        f"Command: `python -m benchmarks.learner --device {args.device} --model {' '.join(args.model)} "
        f"--num-envs {' '.join(map(str, args.num_envs))} --updates {args.updates} --task {args.task}`  ",
        f"Machine: {machine_description()}  ",
        f"Task {args.task}, instant reward, PPO with 4 epochs; bf16 autocast on CUDA. Means over {args.updates} updates after one warm-up.",
        "",
        header,
        "|" + "---|" * (header.count("|") - 1),
    ]
    for preset in args.model:
        for n in args.num_envs:
            r = measure(args.task, preset, n, args.updates, device)
            lines.append(
                f"| {preset} | {r['params'] / 1e6:.1f}M | {n} | {r['tokens_per_update']:.0f} | {r['trained_tok_s']:,.0f} | "
                f"{r['rollout_tok_s']:,.0f} | {r['update_tok_s']:,.0f} | {r['rollout_share']:.0%} | {r['env_share']:.1%} | "
                f"{r['update_tflops']:.2f} | {r['mfu']:.1%} |"
            )
            print(lines[-1], flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
