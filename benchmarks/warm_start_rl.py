"""RL after a maximum-likelihood warm start: does the valid score rise? One warm start, several RL runs from it.

    python -m benchmarks.warm_start_rl --algo rloo --lr 3e-5 --num-envs 256 --temperature 0.5 --seeds 0 1 2
    python -m benchmarks.warm_start_rl --algo ppo --lr 1e-4 --num-envs 64 --temperature 1.0 --tokens 30000

The warm start (``--mle-steps`` at ``--mle-lr``, seed 0, the ``tiny`` model on synthetic translation by
default) is trained once and saved; every RL seed then starts from that same file through
``agents.trainer.train(init=<file>)`` with the given learner settings, one thread, greedy valid evaluation
every ``--eval-every`` updates. Printed per seed: the valid score (greedy BLEU/100 on ``--eval-examples``
examples) after each evaluation, and the mean sampled score of the first and last fifth of updates.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="translation")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--mle-steps", type=int, default=600)
    parser.add_argument("--mle-lr", type=float, default=2e-3)
    parser.add_argument("--algo", default="rloo", choices=["ppo", "reinforce", "rloo"])
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--tokens", type=int, default=60_000)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--eval-examples", type=int, default=256)
    args = parser.parse_args(argv)

    import torch

    from agents.checkpoint import export_weights
    from agents.ppo import PPOConfig
    from agents.rollout import evaluate
    from agents.supervised import MLEConfig, mle_train
    from agents.trainer import RunConfig, build_model, train
    from ir_env import make_task

    torch.set_num_threads(1)
    task = make_task(args.task)
    results: dict[str, Any] = {"runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        warm = RunConfig(task=args.task, model=args.model, seed=0)
        model = build_model(warm, task, torch.device("cpu"))
        t0 = time.perf_counter()
        mle_train(model, task, MLEConfig(steps=args.mle_steps, learning_rate=args.mle_lr), seed=0)
        model.eval()
        greedy = evaluate(model, args.task, "valid", greedy=True, max_examples=args.eval_examples)["score"]
        sampled = evaluate(model, args.task, "valid", greedy=False, max_examples=args.eval_examples)["score"]
        results["warm_start"] = {"greedy": greedy, "sampled": sampled}
        print(f"warm start: {args.mle_steps} steps in {time.perf_counter() - t0:.0f} s; valid greedy {greedy:.4f}, "
              f"sampled {sampled:.4f}", flush=True)
        init = str(Path(tmp) / "warm.safetensors")
        export_weights(model, init)
        for seed in args.seeds:
            out = Path(tmp) / f"rl_{seed}"
            config = RunConfig(
                task=args.task, model=args.model, seed=seed, total_tokens=args.tokens, device="cpu", out=str(out),
                init=init, ppo=PPOConfig(algo=args.algo, learning_rate=args.lr, num_envs=args.num_envs,
                                         temperature=args.temperature),
                eval_every=args.eval_every, eval_examples=args.eval_examples, checkpoint_every=10**9, progress=False,
            )
            train(config)
            with open(out / "metrics.csv", newline="") as f:
                rows = list(csv.DictReader(f))
            valid = [round(float(r["valid_score"]), 4) for r in rows if r["valid_score"] != "nan"]
            scores = [float(r["score"]) for r in rows]
            k = max(1, len(scores) // 5)
            run = {"valid": valid, "sampled_first": float(np.mean(scores[:k])), "sampled_last": float(np.mean(scores[-k:]))}
            results["runs"][seed] = run
            print(f"seed {seed}: valid {valid}; sampled score {run['sampled_first']:.4f} -> {run['sampled_last']:.4f}",
                  flush=True)
    return results


if __name__ == "__main__":
    main()
