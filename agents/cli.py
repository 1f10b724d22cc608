"""The ``instant-reward`` command.

    instant-reward list                                  # tasks, reward shapings and registered env ids
    instant-reward play --task translation               # reference-following and random policy, token by token
    instant-reward train --task translation --out runs/t # warm start + PPO on the instant reward
    instant-reward eval --checkpoint runs/t --split test # greedy and sampled task score
    instant-reward sample --checkpoint runs/t -n 3       # generations with each token's reward
    instant-reward prepare-data --out data               # fetch Multi30k, SST-2, SQuAD, MRPC for --data-dir
    instant-reward train-classifier --out runs/sst2-cnn  # the SST-2 sentiment CNN (reward or judge of sentiment:sst2)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import ir_env
from agents.checkpoint import CheckpointError
from ir_env import ENV_IDS, EOS, REWARD_MODES, InstantRewardEnv, make_task, task_names
from ir_env.tasks import DATA_TASKS, TASKS


def cmd_list(args: argparse.Namespace) -> int:
    print("Tasks (those marked * read a data folder: --data-dir or $IR_DATA_DIR):")
    for name, (_, description) in TASKS.items():
        star = "*" if name in DATA_TASKS else " "
        print(f" {star}{name:21s} {description}")
    for alias, target in ir_env.tasks.ALIASES.items():
        print(f"  {alias:21s} alias of {target}")
    print("\nRewards (--reward):")
    print("  sparse             R(y) at the last token, 0 before")
    print("  instant            potential-based: Phi(y<=t) - Phi(y<t); the return equals R(y) (gamma = 1)")
    print("  token              naive control: 1/|y*| per token equal to the reference at its position")
    print("  mixed              weighted sum of the parts (reward_weights): sparse, instant, token, and length,")
    print("                     a length penalty -|c - r|/r per episode (c output words, r reference words)")
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


def _json_dict(text: str) -> dict[str, float]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"instant\": 0.5}}', got {text!r} ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def cmd_train(args: argparse.Namespace) -> int:
    from agents.ppo import PPOConfig
    from agents.supervised import MLEConfig
    from agents.trainer import RunConfig, train

    ppo = PPOConfig(
        algo=args.algo, num_envs=args.num_envs,
        learning_rate=args.lr if args.lr is not None else (3e-4 if args.init == "scratch" else 3e-5), gamma=args.gamma, update_epochs=args.epochs,
        num_minibatches=args.minibatches, ent_coef=args.ent_coef, temperature=args.temperature, kl_coef=args.kl_coef,
        kl_target=args.kl_target, rloo_k=args.rloo_k, schedule=args.schedule, weights_start=args.weights_start or {},
        weights_end=args.weights_end or {}, adaptive_target=args.adaptive_target, anneal_lr=args.anneal_lr,
        mle_coef=args.mle_coef, length_groups=args.length_groups, share_encoder=args.share_encoder,
        relinearise_bleu=args.relinearise_bleu,
        hold_greedy_length=args.hold_greedy_length, hold_greedy_every=args.hold_greedy_every,
        hold_greedy_gain=args.hold_greedy_gain, weight_averages=tuple(args.weight_averages),
    )
    config = RunConfig(
        task=args.task, reward=args.reward, reward_weights=args.reward_weights, seed=args.seed,
        total_tokens=args.total_tokens, model=args.model, device=args.device, precision=args.precision,
        out=args.out, init=args.init,
        mle=MLEConfig(steps=args.mle_steps, learning_rate=args.mle_lr, batch_size=args.mle_batch_size,
                      warmup_steps=args.mle_warmup, schedule=args.mle_schedule, label_smoothing=args.mle_label_smoothing,
                      adam_beta2=args.mle_beta2, length_buckets=args.mle_length_buckets,
                      max_seconds=None if args.mle_minutes is None else args.mle_minutes * 60, ema_decay=args.mle_ema),
        ppo=ppo, eval_every=args.eval_every,
        eval_examples=args.eval_examples, checkpoint_every=args.checkpoint_every, resume=args.resume,
        stop_after_updates=args.stop_after_updates, progress=not args.no_progress, task_kwargs=args.task_kwargs or {},
    )
    summary = train(config)
    if summary.get("valid"):
        print(f"valid score (greedy, {int(summary['valid']['episodes'])} examples): {summary['valid']['score']:.4f}")
    return 0


def _load_policy(path: str, device_name: str):
    from agents.checkpoint import load_weights
    from agents.trainer import RunConfig, build_model, resolve_device

    meta_file = Path(path) / "checkpoint" / "meta.json"
    if not meta_file.exists():
        meta_file = Path(path) / "meta.json"
    if not meta_file.exists():
        raise ValueError(f"{path} holds no checkpoint (no checkpoint/meta.json); pass a train --out folder")
    run = json.loads(meta_file.read_text())["config"]
    config = RunConfig(task=run["task"], model=run["model"], seed=run["seed"], task_kwargs=run.get("task_kwargs", {}))
    device = resolve_device(device_name)
    model = build_model(config, make_task(config.task, **config.task_kwargs), device)
    load_weights(path, model)
    return model.eval(), config


def cmd_eval(args: argparse.Namespace) -> int:
    from agents.rollout import evaluate

    model, config = _load_policy(args.checkpoint, args.device)
    for greedy in (True, False):
        result = evaluate(model, config.task, args.split, greedy=greedy, max_examples=args.max_examples,
                          seed=args.seed, task_kwargs=config.task_kwargs)
        mode = "greedy " if greedy else "sampled"
        print(f"{config.task} {args.split} {mode}: score {result['score']:.4f}  length {result['length']:.1f}  "
              f"({int(result['episodes'])} examples)")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    model, config = _load_policy(args.checkpoint, args.device)
    env = InstantRewardEnv(task=config.task, split=args.split, render_mode="ansi", **config.task_kwargs)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(args.seed)
    mask = torch.as_tensor(env.action_masks(), device=device)
    for i in range(args.n):
        obs, _ = env.reset(seed=args.seed + i)
        tokens = model.sample(torch.as_tensor(obs["source"][None], device=device), env.task.max_generation_len,
                              action_mask=mask, greedy=args.greedy, generator=generator)[0].tolist()
        for token in tokens:
            _, _, terminated, _, info = env.step(int(token))
            if terminated:
                break
        print(env.render())
        print(f"score {info['score']:.4f}\n")
    return 0


def cmd_prepare_data(args: argparse.Namespace) -> int:
    from ir_env.tasks.prepare import check_folder, prepare

    root = prepare(args.out)
    for name, count in check_folder(root).items():
        print(f"  {name:24s} {count:,} records")
    print(f"ready: pass --data-dir {root} or set IR_DATA_DIR={root}")
    return 0


def cmd_train_classifier(args: argparse.Namespace) -> int:
    import time

    from agents.classifier import train_sentiment_classifier

    started = time.perf_counter()
    accuracy = train_sentiment_classifier(args.data_dir, args.out, epochs=args.epochs, seed=args.seed,
                                          max_train=args.max_train, progress=not args.no_progress)
    print(f"SST-2 dev accuracy {accuracy:.4f} (872 sentences) after {time.perf_counter() - started:.0f} s; "
          f"classifier written to {args.out}")
    print(f"use it: --task sentiment:sst2 with IR_SST2_CLASSIFIER={Path(args.out).resolve()} "
          "(reward: scorer=\"classifier\"; otherwise it judges the VADER-trained policy)")
    return 0


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None, help="folder of the real data sets (default: $IR_DATA_DIR)")


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
    _add_data_dir(play)
    play.set_defaults(func=cmd_play)

    from agents.ppo import ALGOS, SCHEDULES

    train = sub.add_parser("train", help="train a policy (warm start + PPO by default)",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--task", default="translation", choices=task_names())
    train.add_argument("--reward", default="instant", choices=REWARD_MODES)
    train.add_argument("--reward-weights", type=_json_dict, default=None, help="JSON weights for --reward mixed")
    train.add_argument("--task-kwargs", type=_json_dict, default=None,
                       help="JSON keywords of the task, e.g. '{\"scorer\": \"classifier\"}' for sentiment:sst2")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--total-tokens", type=int, default=100_000, help="budget of generated tokens")
    train.add_argument("--model", default="tiny", choices=["tiny", "small", "base", "large"])
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    train.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                       help="matrix products in bf16 (autocast) or fp32; auto: bf16 on CUDA, fp32 on CPU")
    train.add_argument("--out", default="runs/default", help="output folder")
    train.add_argument("--init", default="mle", help="scratch, mle, or a checkpoint folder / .safetensors file")
    train.add_argument("--mle-steps", type=int, default=1000, help="warm-start steps (--init mle)")
    train.add_argument("--mle-lr", type=float, default=2e-3)
    train.add_argument("--mle-batch-size", type=int, default=128)
    train.add_argument("--mle-warmup", type=int, default=100, help="warm-start steps of linear lr warm-up")
    train.add_argument("--mle-schedule", default="linear", choices=["linear", "inverse_sqrt"],
                       help="warm-start lr after the warm-up: linear decay to 10%% at --mle-steps, or inverse-sqrt")
    train.add_argument("--mle-label-smoothing", type=float, default=0.0)
    train.add_argument("--mle-beta2", type=float, default=0.999, help="warm-start Adam beta2 (translation recipes: 0.98)")
    train.add_argument("--mle-length-buckets", action="store_true", help="warm-start batches of similar length")
    train.add_argument("--mle-minutes", type=float, default=None, help="stop the warm start after this much training time")
    train.add_argument("--mle-ema", type=float, default=None,
                       help="start RL from an exponential moving average of the warm start's weights (decay, e.g. 0.998)")
    train.add_argument("--algo", default="ppo", choices=ALGOS)
    train.add_argument("--num-envs", type=int, default=64, help="episodes per rollout (per rank)")
    train.add_argument("--lr", type=float, default=None,
                       help="RL learning rate (default 3e-4 from scratch, 3e-5 after a warm start)")
    train.add_argument("--gamma", type=float, default=1.0)
    train.add_argument("--epochs", type=int, default=4, help="PPO epochs per rollout")
    train.add_argument("--minibatches", type=int, default=4)
    train.add_argument("--length-groups", type=int, default=1,
                       help="score each minibatch in this many passes over sequences of similar length (the same "
                            "update, less padding; 2-4 where lengths vary, e.g. a trained translation policy)")
    train.add_argument("--share-encoder", action=argparse.BooleanOptionalAction, default=True,
                       help="encode each distinct source of an update's minibatch once (RLOO plays each example "
                            "--rloo-k times; the same update up to float rounding without dropout)")
    train.add_argument("--ent-coef", type=float, default=0.0)
    train.add_argument("--temperature", type=float, default=1.0)
    train.add_argument("--kl-coef", type=float, default=0.0, help="per-token KL penalty to the initial policy")
    train.add_argument("--kl-target", type=float, default=None, help="adapt --kl-coef towards this sequence KL")
    train.add_argument("--rloo-k", type=int, default=4)
    train.add_argument("--mle-coef", type=float, default=0.0,
                       help="weight of a maximum-likelihood term on the references during RL (0: off)")
    train.add_argument("--relinearise-bleu", action="store_true",
                       help="with --task-kwargs '{\"bleu_point\": [...]}' (LinearBLEU, linearised corpus BLEU): move the "
                            "point to each rollout's own BLEU statistics after every update")
    train.add_argument("--hold-greedy-length", type=int, default=0, metavar="N",
                       help="with a 'length' reward weight > 0: every --hold-greedy-every updates, greedy-decode N "
                            "training sources and move the length part's target so that their length stays at its "
                            "start (0: off)")
    train.add_argument("--hold-greedy-every", type=int, default=4)
    train.add_argument("--hold-greedy-gain", type=float, default=0.5)
    train.add_argument("--weight-averages", type=float, nargs="*", default=[], metavar="DECAY",
                       help="keep moving averages of the policy's weights at these decays (checkpointed) and write "
                            "each to OUT/ema_<decay>.safetensors at the end")
    train.add_argument("--schedule", default="constant", choices=SCHEDULES, help="how the shaping weights move")
    train.add_argument("--weights-start", type=_json_dict, default=None)
    train.add_argument("--weights-end", type=_json_dict, default=None)
    train.add_argument("--adaptive-target", type=float, default=0.5)
    train.add_argument("--anneal-lr", action="store_true")
    train.add_argument("--eval-every", type=int, default=10)
    train.add_argument("--eval-examples", type=int, default=256)
    train.add_argument("--checkpoint-every", type=int, default=20)
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train.add_argument("--stop-after-updates", type=int, default=None, help="stop early (resumable)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_data_dir(train)
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="task score of a checkpoint, greedy and sampled")
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--split", default="valid")
    ev.add_argument("--max-examples", type=int, default=None)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--seed", type=int, default=0)
    _add_data_dir(ev)
    ev.set_defaults(func=cmd_eval)

    sample = sub.add_parser("sample", help="generations of a checkpoint with each token's reward")
    sample.add_argument("--checkpoint", required=True)
    sample.add_argument("-n", type=int, default=3)
    sample.add_argument("--split", default="valid")
    sample.add_argument("--greedy", action="store_true")
    sample.add_argument("--device", default="auto")
    sample.add_argument("--seed", type=int, default=0)
    _add_data_dir(sample)
    sample.set_defaults(func=cmd_sample)
    prep = sub.add_parser("prepare-data", help="download the real data sets' public files into a data folder")
    prep.add_argument("--out", required=True, help="the data folder to make (files already there are checked)")
    prep.set_defaults(func=cmd_prepare_data)

    from agents.classifier import EPOCHS

    clf = sub.add_parser("train-classifier", help="train the SST-2 sentiment CNN (sentiment:sst2's reward or judge)",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    clf.add_argument("--out", required=True, help="the folder to write (model.safetensors, classifier.json)")
    clf.add_argument("--epochs", type=int, default=EPOCHS)
    clf.add_argument("--seed", type=int, default=0)
    clf.add_argument("--max-train", type=int, default=None, help="train on the first N phrases only (quick runs)")
    clf.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_data_dir(clf)
    clf.set_defaults(func=cmd_train_classifier)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "data_dir", None):
        # the real-data tasks read $IR_DATA_DIR; an env variable rather than a task keyword keeps the folder
        # out of checkpoints, so a run trained on one machine evaluates on another
        os.environ["IR_DATA_DIR"] = str(Path(args.data_dir).resolve())
    try:
        return args.func(args)
    except (ValueError, CheckpointError) as err:
        parser.exit(2, f"instant-reward: error: {err}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["build_parser", "main", "make_task"]
