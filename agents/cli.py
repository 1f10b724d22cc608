"""The ``instant-reward`` command.

    instant-reward list                      # tasks, reward shapings and registered env ids
    instant-reward play --task translation   # a reference-following and a random policy, token by token
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

import ir_env
from ir_env import ENV_IDS, EOS, REWARD_MODES, InstantRewardEnv, make_task, task_names
from ir_env.tasks import TASKS


def cmd_list(args: argparse.Namespace) -> int:
    print("Tasks:")
    for name, (_, description) in TASKS.items():
        print(f"  {name:18s} {description}")
    for alias, target in ir_env.tasks.ALIASES.items():
        print(f"  {alias:18s} alias of {target}")
    print("\nRewards (--reward):")
    print("  sparse             R(y) at the last token, 0 before")
    print("  instant            potential-based: Phi(y<=t) - Phi(y<t); the return equals R(y) (gamma = 1)")
    print("  token              naive control: 1/|y*| per token equal to the reference at its position")
    print("  mixed              weighted sum of the three (reward_weights)")
    print("\nEnvironment ids (gym.make / gym.make_vec):")
    for env_id, task in ENV_IDS.items():
        print(f"  {env_id:30s} task={task}")
    return 0


def _play_episode(env: InstantRewardEnv, policy: str, rng: np.random.Generator, seed: int) -> None:
    env.reset(seed=seed)
    allowed = np.flatnonzero(env.action_masks())
    reference = env.episodes.reference(0).tolist()
    rewards = []
    for t in range(env.task.max_generation_len + 1):
        if policy == "reference":
            action = reference[t] if t < len(reference) else EOS
        else:
            action = int(rng.choice(allowed))
        _, reward, terminated, _, info = env.step(action)
        rewards.append(reward)
        if terminated:
            break
    print(f"--- {policy} policy ---")
    print(env.render())
    print(f"score {info['score']:.4f}  (return {sum(rewards):.4f}, {len(rewards)} steps)\n")


def cmd_play(args: argparse.Namespace) -> int:
    env = InstantRewardEnv(task=args.task, reward=args.reward, gamma=args.gamma, split=args.split, render_mode="ansi")
    print(env.task.describe(), f"| reward {args.reward}\n")
    rng = np.random.default_rng(args.seed)
    for i in range(args.episodes):
        for policy in ("reference", "random"):
            _play_episode(env, policy, rng, seed=args.seed + i)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="instant-reward", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list tasks, reward shapings and env ids").set_defaults(func=cmd_list)
    play = sub.add_parser("play", help="play episodes with a reference-following and a random policy")
    play.add_argument("--task", default="translation", choices=task_names())
    play.add_argument("--reward", default="instant", choices=REWARD_MODES)
    play.add_argument("--gamma", type=float, default=1.0)
    play.add_argument("--split", default="valid")
    play.add_argument("--episodes", type=int, default=2)
    play.add_argument("--seed", type=int, default=0)
    play.set_defaults(func=cmd_play)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        parser.exit(2, f"instant-reward: error: {err}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "build_parser", "make_task"]
