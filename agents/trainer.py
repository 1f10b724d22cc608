"""A training run: set-up (device, torchrun ranks, env, model, warm start), the update loop, logging and
checkpoints. ``instant-reward train`` builds a ``RunConfig`` and calls ``train``.

Outputs in ``--out``: ``metrics.csv`` and TensorBoard events (``tb/``), ``checkpoint/`` (weights in
safetensors, optimizer and counters; written atomically, the previous one kept until the new one is
complete), ``reference.safetensors`` (the frozen KL reference), ``ema_<decay>.safetensors`` (the moving
averages of the policy's weights that ``PPOConfig.weight_averages`` asks for) and ``summary.json``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from agents.checkpoint import (
    CheckpointError,
    export_weights,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from agents.model import ModelConfig, PolicyModel, make_adam
from agents.ppo import (
    ActionEvaluator,
    KLController,
    PPOConfig,
    ShapingSchedule,
    advantages_for,
    all_reduce_mean,
    kl_penalty,
    ppo_update,
    rollout_examples,
)
from agents.rollout import collect, evaluate
from agents.supervised import MLEConfig, WeightAverage, mle_train, reference_targets
from ir_env import EOS, PAD, BatchedInstantRewardEnv, make_task

ARCHITECTURE_KEYS = ("task", "model", "task_kwargs")


@dataclass
class RunConfig:
    """One training run."""

    task: str = "translation"
    """Task name (``instant-reward list``)."""
    reward: str = "instant"
    """Env reward shaping: sparse, instant, token or mixed."""
    reward_weights: dict[str, float] | None = None
    """Weights for reward='mixed'."""
    seed: int = 0
    """Seeds the model init, the warm start, every rollout and every minibatch order."""
    total_tokens: int = 100_000
    """Budget of generated tokens (env steps of the recorded episodes, summed over ranks)."""
    max_seconds: float | None = None
    """Also stop (with a checkpoint) once the run's wall time, evaluations included, reaches this; None: no limit."""
    model: str = "tiny"
    """Model preset: tiny, small, base, large."""
    device: str = "auto"
    """auto (CUDA if present), cpu, cuda or cuda:N."""
    precision: str = "auto"
    """Matrix products in ``bf16`` (torch.autocast; weights, optimiser, heads and losses stay float32) or
    ``fp32``; ``auto``: bf16 on CUDA, fp32 on CPU (bf16 on a CPU pays only where it has bf16 instructions)."""
    out: str = "runs/default"
    """Output folder (logs, checkpoints)."""
    init: str = "mle"
    """scratch, mle (maximum-likelihood warm start) or a checkpoint / .safetensors path."""
    mle: MLEConfig = field(default_factory=MLEConfig)
    """Warm-start settings (init='mle')."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """Learner settings."""
    eval_every: int = 10
    """Greedy evaluation on the valid split every this many updates (and at the end); 0 = only at the end."""
    eval_examples: int = 256
    """Valid examples per evaluation."""
    checkpoint_every: int = 20
    """Checkpoint every this many updates (and at the end)."""
    resume: bool = False
    """Continue the run in ``out`` from its checkpoint."""
    stop_after_updates: int | None = None
    """Stop (with a checkpoint) after this many updates in this invocation; ``resume`` continues exactly."""
    progress: bool = True
    """Show a progress bar."""
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    """Task constructor keywords (seed, sizes)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named device (validated)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available; use --device cpu or auto")
    return device


def setup_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); under torchrun, joins the process group (NCCL on GPU, gloo on CPU)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, resolve_device(device_name)
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def output_length_ratio(batch, reference_len: np.ndarray) -> float:
    """Output words (steps less a final EOS) over reference words, summed over a rollout's episodes: the
    length ratio of BLEU's brevity penalty, of the sampled outputs. NaN where the examples have no references."""
    words = int(((batch.actions != EOS) & batch.mask).sum())  # EOS can only be an episode's last step
    reference = int(reference_len[batch.example_ids].sum())
    return words / reference if reference else float("nan")


def mean_over_ranks(values: np.ndarray, device: torch.device) -> np.ndarray:
    """The mean of ``values`` over ranks (identity without torch.distributed), so every rank moves the
    BLEU point to the statistics of the whole rollout, not of its own share."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.as_tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / dist.get_world_size()).cpu().numpy()


class GreedyLengthHold:
    """``PPOConfig.hold_greedy_length``: greedy-decode a fixed set of training sources every few updates and
    move the env's length target k so that their output/reference length ratio stays at its first value (or
    goes to ``PPOConfig.hold_greedy_ratio``)."""

    BOUNDS = (0.5, 2.0)

    def __init__(self, pc, examples, seed: int, max_len: int, action_mask: torch.Tensor):
        rows = np.random.default_rng(seed).choice(len(examples), size=min(pc.hold_greedy_length, len(examples)),
                                                  replace=False)
        self.sources = examples.source[np.sort(rows)]
        self.reference_words = int(examples.reference_len[rows].sum())
        if not self.reference_words:
            raise ValueError("hold_greedy_length needs a task with references: the sources drawn have none")
        self.every, self.gain, self.max_len, self.action_mask = pc.hold_greedy_every, pc.hold_greedy_gain, max_len, action_mask
        self.goal = pc.hold_greedy_ratio or None  # None: the first measured ratio

    def ratio(self, model: PolicyModel, autocast) -> float:
        """Greedy output words over reference words on the held sources."""
        device, words = self.action_mask.device, 0
        with torch.no_grad(), autocast if autocast is not None else contextlib.nullcontext():
            for start in range(0, len(self.sources), 256):
                source = torch.as_tensor(self.sources[start:start + 256], device=device)
                out = model.sample(source, self.max_len, action_mask=self.action_mask, greedy=True)
                words += int(((out != EOS) & (out != PAD)).sum())
        return words / self.reference_words

    def step(self, update: int, state: dict[str, Any], model: PolicyModel, env, autocast) -> float:
        """On every ``every``-th update: measure, move ``state["length_target"]`` and the env's target; returns
        the measured ratio (NaN on other updates)."""
        if update % self.every:
            return float("nan")
        ratio = self.ratio(model, autocast)
        if state.get("greedy_length_start") is None:
            state["greedy_length_start"] = ratio
        goal = state["greedy_length_start"] if self.goal is None else self.goal
        target = state.get("length_target") or 1.0
        target += self.gain * (goal - ratio)
        state["length_target"] = float(np.clip(target, *self.BOUNDS))
        env.set_length_target(state["length_target"])
        return ratio


def restore_averages(model: PolicyModel, decays: tuple[float, ...], state: dict[str, Any],
                     resumed: bool) -> dict[float, WeightAverage]:
    """``PPOConfig.weight_averages``: one ``WeightAverage`` per decay, starting from the model's weights, or
    from the checkpoint's ``state["weight_averages"]`` on resume. ``state`` then holds their (live) tensors,
    so every checkpoint saves them where they are."""
    saved = state.get("weight_averages") or {}
    averages = {}
    for decay in decays:
        average, key = WeightAverage(model, decay), f"{decay:g}"
        if key in saved:
            tensors = saved[key]
            if len(tensors) != len(average.params) or any(t.shape != p.shape for t, p in zip(tensors, average.params)):
                raise CheckpointError(f"the checkpoint's weight average at decay {key} does not fit the model "
                                      f"({len(tensors)} tensors for {len(average.params)} parameters); start a new run")
            average.params = [t.to(device=p.device, dtype=p.dtype) for t, p in zip(tensors, average.params)]
        elif resumed and state["update"]:
            warnings.warn(f"the checkpoint holds no weight average at decay {key} (its run kept none); it starts "
                          f"from the resumed weights at update {state['update']}", stacklevel=3)
        averages[decay] = average
    state["weight_averages"] = {f"{d:g}": a.params for d, a in averages.items()}
    return averages


def export_average(model: PolicyModel, average: WeightAverage, out: Path) -> Path:
    """Write ``average``'s weights to ``<out>/ema_<decay>.safetensors`` (the model keeps its own)."""
    import copy

    averaged = copy.deepcopy(model)
    average.copy_to(averaged)
    return export_weights(averaged, out / f"ema_{average.decay:g}.safetensors")


def rollout_bleu_point(batch, examples) -> np.ndarray:
    """The mean BLEU statistics of a rollout's outputs (``ir_env.rewards.bleu.bleu_point_of``)."""
    from ir_env.rewards.bleu import bleu_point_of

    actions = batch.actions.cpu().numpy()
    words = ((actions != EOS) & batch.mask.cpu().numpy()).sum(axis=1)  # EOS can only be an episode's last step
    return bleu_point_of(examples, batch.example_ids, actions, words)


PRECISIONS = ("auto", "bf16", "fp32")


def autocast_for(precision: str, device: torch.device) -> torch.autocast | None:
    """The autocast context of a run's ``precision`` on ``device`` (None: float32 throughout)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {list(PRECISIONS)}")
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return None


def build_model(config: RunConfig, task, device: torch.device) -> PolicyModel:
    torch.manual_seed(config.seed)
    model_config = ModelConfig.preset(config.model, len(task.vocab), task.max_source_len, task.max_generation_len)
    return PolicyModel(model_config).to(device)


def update_seed(seed: int, rank: int, update: int) -> int:
    """The seed of one rank's update: distinct across seeds, ranks and updates, and reproducible."""
    return int(np.random.SeedSequence([seed, rank, update]).generate_state(1, dtype=np.uint32)[0])


class MetricsLog:
    """metrics.csv (appended on resume) and TensorBoard scalars."""

    def __init__(self, out: Path, enabled: bool):
        self.enabled, self.path, self.writer, self.fields = enabled, out / "metrics.csv", None, None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tb"))

    def write(self, row: dict[str, float], step: int) -> None:
        if not self.enabled:
            return
        if self.fields is None:
            self.fields = list(row)
            if self.path.exists():
                with open(self.path, newline="") as f:
                    header = next(csv.reader(f), None)
                self.fields = header or self.fields
                self.fields += [k for k in row if k not in self.fields]
            else:
                with open(self.path, "w", newline="") as f:
                    csv.writer(f).writerow(self.fields)
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in self.fields])
        for k, v in row.items():
            if isinstance(v, (int, float)) and k not in ("update",):
                self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _warm_start(model: PolicyModel, task, config: RunConfig, autocast, is_main: bool) -> None:
    """The maximum-likelihood warm start, with a progress bar and the valid score before and after."""

    def report(when: str) -> None:
        if is_main:
            score = evaluate(model.eval(), config.task, "valid", max_examples=config.eval_examples, task_kwargs=config.task_kwargs)
            print(f"valid score {when} the warm start: {score['score']:.4f}", flush=True)

    report("before")
    bar = None
    if is_main and config.progress:
        from tqdm import tqdm

        bar = tqdm(total=config.mle.steps, desc="warm start (MLE)", unit="step", dynamic_ncols=True)

    def on_step(step: int, loss: float) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")

    mle_train(model.train(), task, config.mle, seed=config.seed, autocast=autocast, on_step=on_step)
    if bar is not None:
        bar.close()
    report("after")


def train(config: RunConfig) -> dict[str, Any]:
    """Run (or resume) training; returns the summary (also written to ``summary.json``)."""
    rank, world, device = setup_distributed(config.device)
    autocast = autocast_for(config.precision, device)
    is_main = rank == 0
    out = Path(config.out)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
    pc = config.ppo
    task = make_task(config.task, **config.task_kwargs)
    env = BatchedInstantRewardEnv(
        num_envs=pc.num_envs, task=task, reward=config.reward, gamma=pc.gamma,
        reward_weights=config.reward_weights, info_text=False, copy=False,
    )
    if pc.relinearise_bleu and task.metric_name != "linear_bleu":
        raise ValueError(f"relinearise_bleu needs a BLEU task built with bleu_point=..., but {task.name} is scored by "
                         f"{task.metric_name!r}: pass task_kwargs={{'bleu_point': [...]}}")
    model = build_model(config, task, device)
    optimizer = make_adam(model.parameters(), lr=pc.learning_rate, eps=1e-5)
    reference_path = out / "reference.safetensors"
    architecture = {k: config.to_dict()[k] for k in ARCHITECTURE_KEYS}

    state: dict[str, Any] = {"update": 0, "tokens": 0, "kl_coef": pc.kl_coef, "last_score": None, "wall": 0.0}
    if config.resume:
        trainer_state, _ = load_checkpoint(out, model, optimizer, expected_config=architecture)
        state.update(trainer_state)
        if pc.relinearise_bleu and state.get("bleu_point") is not None:  # where the stopped run had moved it
            env.set_bleu_point(np.asarray(state["bleu_point"], dtype=np.float64))
        if state.get("length_target") is not None:
            env.set_length_target(state["length_target"])
    else:
        if (out / "checkpoint").exists():
            raise CheckpointError(f"{out} already holds a checkpoint; pass --resume to continue it or choose a new --out")
        if config.init == "mle":
            _warm_start(model, task, config, autocast, is_main)
        elif config.init != "scratch":
            load_weights(config.init, model)
    averages = restore_averages(model, pc.weight_averages, state, resumed=config.resume)
    reference = None
    if pc.kl_coef > 0 or pc.kl_target is not None:
        reference = build_model(config, task, device)
        if config.resume and reference_path.exists():
            load_weights(reference_path, reference)
        else:
            reference.load_state_dict(model.state_dict())
            if is_main:
                export_weights(reference, reference_path)
        reference.eval().requires_grad_(False)

    evaluator: torch.nn.Module = ActionEvaluator(model, pc.temperature, entropy_grad=pc.ent_coef != 0)
    if world > 1:
        evaluator = torch.nn.parallel.DistributedDataParallel(evaluator, device_ids=[device.index] if device.type == "cuda" else None)
    schedule = ShapingSchedule(pc, env.get_reward_weights())
    kl = KLController(state["kl_coef"], pc.kl_target, pc.kl_horizon)
    action_mask = torch.as_tensor(task.action_mask(), device=device)
    hold = None
    if pc.hold_greedy_length:
        if not any(w.get("length", 0.0) > 0 for w in (env.get_reward_weights(), pc.weights_start, pc.weights_end)):
            raise ValueError("hold_greedy_length moves the 'length' reward part's target, but its weight is 0: use "
                             "reward='mixed' with reward_weights={'length': w > 0, ...}")
        hold = GreedyLengthHold(pc, env.episodes.examples, config.seed, task.max_generation_len, action_mask)
    references = None  # (M, T) each train example's reference + EOS, for the maximum-likelihood term
    if pc.mle_coef:
        references = torch.as_tensor(reference_targets(env.episodes.examples, task.max_generation_len), device=device)
    log = MetricsLog(out, enabled=is_main)
    bar = None
    if is_main and config.progress:
        from tqdm import tqdm

        bar = tqdm(total=config.total_tokens, initial=min(state["tokens"], config.total_tokens), unit="tok", dynamic_ncols=True)

    last_eval: dict[str, float] = {}
    start_wall = time.perf_counter() - state["wall"]
    updates_here = 0
    while state["tokens"] < config.total_tokens:
        u = state["update"]
        progress = state["tokens"] / config.total_tokens
        weights = schedule.weights(progress, state["last_score"])
        env.set_reward_weights(weights)
        lr = pc.learning_rate * min(1.0, (u + 1) / max(pc.lr_warmup_updates, 1))
        if pc.anneal_lr:
            lr *= 1.0 - progress
        for group in optimizer.param_groups:
            group["lr"] = lr
        seed_u = update_seed(config.seed, rank, u)
        generator = torch.Generator(device=device).manual_seed(seed_u)
        rng = np.random.default_rng(seed_u)

        t0 = time.perf_counter()
        model.eval()
        greedy_ratio = hold.step(u, state, model, env, autocast) if hold is not None else float("nan")
        t_hold = time.perf_counter()
        with autocast if autocast is not None else contextlib.nullcontext():
            batch = collect(model, env, seed=seed_u, generator=generator, temperature=pc.temperature,
                            example_ids=rollout_examples(pc, rng, len(env.episodes.examples)))
        t1 = time.perf_counter()
        if pc.relinearise_bleu:  # every episode of the rollout has ended: the next update's point
            point = mean_over_ranks(rollout_bleu_point(batch, env.episodes.examples), device)
            env.set_bleu_point(point)
            state["bleu_point"] = point.tolist()  # saved with the checkpoint, so a resumed run starts there
        if references is not None:
            batch.references = references[torch.as_tensor(batch.example_ids, device=device)]
        rewards, seq_kl = kl_penalty(reference, batch, action_mask, kl, pc.temperature)
        advantages, returns = advantages_for(batch, rewards, pc)
        model.train()
        critic_warmup = pc.algo == "ppo" and u < pc.value_warmup_updates and config.init != "scratch"
        stats = ppo_update(evaluator, optimizer, batch, advantages, returns, pc, action_mask, rng, autocast, value_only=critic_warmup)
        for average in averages.values():
            average.update()
        t2 = time.perf_counter()

        row = {
            "episode_return": float(batch.rewards.sum(1).mean()),
            "score": float(batch.scores.mean()),
            "length": float(batch.lengths.mean()),
            "length_ratio": output_length_ratio(batch, env.episodes.examples.reference_len),
            "kl": seq_kl,
            "tokens_local": float(batch.num_tokens),
            # hold_greedy_length's step (its greedy decodes, on the updates that make one); 0 without the hold
            "hold_seconds": t_hold - t0 if hold is not None else 0.0,
            "rollout_seconds": t1 - t_hold,
            "update_seconds": t2 - t1,
            "env_seconds": batch.env_seconds,
            **stats,
        }
        row = all_reduce_mean(row, device)
        tokens_now = int(round(row.pop("tokens_local") * world))
        kl.update(row["kl"], pc.num_envs * world)
        state.update(update=u + 1, tokens=state["tokens"] + tokens_now, kl_coef=kl.value, last_score=row["score"])
        state["wall"] = time.perf_counter() - start_wall
        row = {
            "update": u + 1,
            "tokens": state["tokens"],
            "wall_seconds": state["wall"],  # of the update loop so far (resumed runs carry it on)
            "tokens_per_second": tokens_now / (t2 - t0),
            "env_share": row["env_seconds"] / (t2 - t0),
            "kl_coef": kl.value,
            "lr": optimizer.param_groups[0]["lr"],
            **{f"w_{k}": v for k, v in weights.items()},
            "length_target": state.get("length_target") or 1.0,
            "greedy_length_ratio": greedy_ratio,  # hold_greedy_length's decode, on the updates that make one
            **row,
        }
        updates_here += 1
        done = state["tokens"] >= config.total_tokens or (config.max_seconds is not None and state["wall"] >= config.max_seconds)
        stopping = done or updates_here == config.stop_after_updates
        row["valid_score"] = float("nan")  # every row has every column; filled on evaluation updates
        if is_main and ((config.eval_every and (u + 1) % config.eval_every == 0) or stopping):
            model.eval()
            with autocast if autocast is not None else contextlib.nullcontext():
                last_eval = evaluate(model, config.task, "valid", greedy=True, max_examples=config.eval_examples,
                                     task_kwargs=config.task_kwargs)
            row["valid_score"] = last_eval["score"]
        log.write(row, state["tokens"])
        if bar is not None:
            bar.update(min(tokens_now, config.total_tokens - bar.n))
            bar.set_postfix(tok_s=f"{row['tokens_per_second']:.0f}", ret=f"{row['episode_return']:.3f}",
                            score=f"{row['score']:.3f}", valid=f"{last_eval.get('score', float('nan')):.3f}")
        if is_main and ((u + 1) % config.checkpoint_every == 0 or stopping):
            save_checkpoint(out, model, optimizer, dict(state), config.to_dict(), state["tokens"])
        if stopping:
            break
    if bar is not None:
        bar.close()
    log.close()
    summary = {"updates": state["update"], "tokens": state["tokens"], "valid": last_eval, "wall_seconds": state["wall"],
               "world_size": world, "device": str(device)}
    if is_main:
        for decay, average in averages.items():
            summary.setdefault("weight_averages", {})[f"{decay:g}"] = export_average(model, average, out).name
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if world > 1:
        dist.barrier()
    return summary
