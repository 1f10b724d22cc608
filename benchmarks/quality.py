"""Quality on real data: Multi30k en->de test2016 BLEU (MLE alone and followed by RL), and SST-2 steering.

    python -m benchmarks.quality --data-dir ../shared/data --parts multi30k   # 60 min budget (about 75 min wall)
    instant-reward train-classifier --data-dir ../shared/data --out runs/sst2-cnn
    python -m benchmarks.quality --data-dir ../shared/data --parts sst2 --classifier runs/sst2-cnn
    python -m benchmarks.quality --data-dir ../shared/data --minutes 3 --rl-minutes 1 --out /tmp/q   # smoke run

Each part writes its section of ``<out>/quality.json``, keeping the sections of parts not rerun, and
``<out>/quality.md`` is rendered from all of them.

**multi30k**: two arms at one total training budget of ``--minutes`` (wall time of optimiser steps on this
machine):

- **MLE**: the ``small`` Transformer (3+3 layers, d=256, 4 heads, FF 1024, tied embeddings; dropout
  ``--dropout``, label smoothing 0.1) trained from scratch by maximum likelihood on the 29,000 training
  pairs for the whole budget: Adam (0.9, 0.98), peak lr ``--lr`` after ``--warmup`` steps then
  inverse-square-root decay, ``--batch-size`` sentences per step drawn from length buckets.
- **MLE + RL**: the same run's weights after ``--minutes`` - ``--rl-minutes`` of training (the schedule does
  not depend on the budget, so this snapshot is what a shorter MLE run would have produced), then
  ``--rl-minutes`` of RL with the instant BLEU reward (``agents.trainer.train``, the ``--rl-algo`` learner at
  ``--rl-lr``, temperature ``--rl-temperature``, ``--rl-envs`` episodes per update, with
  ``--rl-mle-coef`` a maximum-likelihood term on the references of each update's examples, and with
  ``--rl-length-weight`` W the env's ``length`` reward part, -|c - r|/r per episode, at weight W beside
  the instant BLEU: sentence BLEU alone pays for dropping uncertain words, and corpus BLEU's brevity
  penalty then takes more than that pays). With ``--rl-bleu linear`` the reward's BLEU is the env's
  ``LinearBLEU`` (``bleu_point``): what an output adds to corpus BLEU (the score reported), to first order
  at the mean per-sentence BLEU statistics of the snapshot's greedy valid outputs, instead of its
  sentence BLEU; with ``--rl-bleu moving`` that point then moves after each update to the statistics of
  its rollout (``PPOConfig.relinearise_bleu``). With ``--rl-hold-length N`` the RL arm is decoded with the EOS
  logit bias that brings its greedy length on the first N training sources back to the length of its start's
  (``benchmarks.length_hold``: RL shortens greedy outputs, and the brevity penalty then costs BLEU on valid,
  where MLE's outputs are already short); its scores without the bias are reported beside. With
  ``--rl-hold-greedy N`` the RL phase itself holds the greedy length: every 4 updates it greedy-decodes N
  training sources and moves the length part's target so that their length stays at its start
  (``PPOConfig.hold_greedy_length``; needs ``--rl-length-weight``), or with ``--rl-hold-ratio R`` goes to R
  times their references' length (``PPOConfig.hold_greedy_ratio``).
  ``--rl-ema DECAY ...`` keeps moving averages of the RL phase's weights (``PPOConfig.weight_averages``); the
  RL arm is then whichever of its last weights and these averages scores best on valid after the RL phase
  (outside the budget, as the MLE arm's candidates are scored at 60 minutes). All are reported.

``--rl-from RUN_OUT`` skips the MLE training: the MLE arm and the RL arm's start are the weights an earlier
run of this part wrote to ``RUN_OUT/multi30k_weights/`` (their scores are checked against its record), and its
MLE record is carried over, so RL recipes are compared on one MLE run. The options that shape the MLE arm
(``MLE_OPTIONS``) must match that run's. ``--rl-seed`` seeds the RL phase alone (default ``--seed``): with
``--rl-from``, two runs that differ only in it measure RL's own run-to-run spread on one start.

With ``--ema DECAY ...``, exponential moving averages of the weights are kept beside the last weights
(updated each step, inside the budget); each arm's MLE weights (the MLE arm's at the end, the RL arm's at its
snapshot) are whichever of these candidates scores best on valid at that moment. All are reported.

Scores: corpus BLEU of greedy output against the raw German references (sacrebleu, 13a, case-insensitive
because the task lower-cases both sides; the signature is in the results file), on valid during training
(every ``--eval-minutes``, not counted in the budget) and on test2016 at the end. Outputs are joined by
spaces; sacrebleu's 13a tokenisation of that gives back the task's tokens, so no detokeniser is involved.
The MLE + RL arm's difference from the MLE arm on each split comes with a paired bootstrap over sentences
(``benchmarks.corpus_bleu.paired_bleu``: 1,000 resampled test sets, a 95% interval and the share of resamples where RL is not better).
Every arm's greedy outputs are written to ``<out>/multi30k_outputs/`` for ``benchmarks.compare_outputs``.

**squad**: a model trained from scratch by maximum likelihood for ``--squad-minutes`` on ``matching:squad``
(question + context window -> answer), greedy test F1 and exact match.

**sst2**: continue the opening words of SST-2 test sentences (``sentiment:sst2``, want: positive). A
reference model is trained by maximum likelihood on the training continuations for ``--sst2-mle-minutes``;
RL then runs from it for ``--sst2-rl-minutes`` with the instant reward of the ``--sst2-reward`` scorer (the
CNN classifier by default) and an adaptive per-token KL penalty to the reference model. Both models sample
``--samples`` continuations per test prompt at temperature 1 (seeded). Reported for each: the positive rate
under the reward scorer and under the held-out judge (VADER: compound >= 0.05, its authors' threshold;
classifier: P(positive) > 0.5), the mean scores, the perplexity of the samples under the reference model,
and length, repetition and distinct-2.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.compare_outputs import OUTPUTS_DIR, save_outputs
from benchmarks.corpus_bleu import (
    bleu_statistics,
    corpus_bleu,
    length_ratio,
    multi30k_references,
    paired_bleu,
)
from benchmarks.length_hold import greedy_length, hold_length
from benchmarks.machine import machine_description
from benchmarks.quality_report import TIME_COLUMNS, report

#: Where the multi30k part writes the MLE arm's weights and the RL arm's start (``--rl-from`` reads them).
WEIGHTS_DIR = "multi30k_weights"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    parser.add_argument("--data-dir", default=None, help="data folder holding multi30k/ and sst2/ (default: $IR_DATA_DIR)")
    parser.add_argument("--minutes", type=float, default=60.0, help="multi30k: total training budget of each arm")
    parser.add_argument("--rl-minutes", type=float, default=10.0, help="multi30k: the RL share of the MLE + RL arm")
    parser.add_argument("--eval-minutes", type=float, default=10.0, help="multi30k: valid BLEU every this many minutes")
    parser.add_argument("--model", default="small")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--dropout", type=float, default=0.1, help="multi30k and squad: dropout of the MLE model")
    parser.add_argument("--ema", type=float, nargs="*", default=[], metavar="DECAY",
                        help="multi30k: decays of moving averages of the weights (agents.supervised.WeightAverage) "
                             "kept beside the last weights; each MLE arm is scored with whichever has the best valid "
                             "BLEU (test never chooses), all reported. None (default): the last weights")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                        help="multi30k: matrix products of both arms' training (MLE and RL) in bf16 (torch.autocast; "
                             "weights, Adam, heads and losses float32) or fp32; the BLEU decodes run in fp32")
    parser.add_argument("--rl-algo", default="rloo", choices=["ppo", "reinforce", "rloo"])
    parser.add_argument("--rl-lr", type=float, default=1e-5)
    parser.add_argument("--rl-temperature", type=float, default=0.5)
    parser.add_argument("--rl-envs", type=int, default=256)
    parser.add_argument("--rl-share-encoder", action=argparse.BooleanOptionalAction, default=True,
                        help="RLOO update: one encoder pass per distinct source (PPOConfig.share_encoder; default on)")
    parser.add_argument("--rl-length-groups", type=int, default=1,
                        help="multi30k: PPOConfig.length_groups of the RL phase (1.4x faster updates at 2-4)")
    parser.add_argument("--rl-mle-coef", type=float, default=0.0,
                        help="multi30k: weight of a maximum-likelihood term on the references in the RL phase")
    parser.add_argument("--rl-length-weight", type=float, default=0.0,
                        help="multi30k: weight of the env's length penalty (-|c - r|/r per episode) beside the "
                             "instant BLEU in the RL phase (reward 'mixed'); 0: instant BLEU alone")
    parser.add_argument("--rl-bleu", default="sentence", choices=["sentence", "linear", "moving"],
                        help="multi30k: the RL phase's BLEU reward: 'sentence' BLEU, 'linear' (LinearBLEU at the "
                             "RL arm's start, see above) or 'moving' (re-linearised after each update)")
    parser.add_argument("--rl-hold-length", type=int, default=0, metavar="N",
                        help="multi30k: decode the RL arm with the EOS bias that brings its greedy length on the first "
                             "N training sources back to the RL arm's start (benchmarks.length_hold); its scores "
                             "without the bias are reported beside. 0 (default): off")
    parser.add_argument("--rl-hold-greedy", type=int, default=0, metavar="N",
                        help="multi30k: hold the greedy length on N training sources during RL through the length "
                             "part's target (PPOConfig.hold_greedy_length; needs --rl-length-weight)")
    parser.add_argument("--rl-hold-ratio", type=float, default=0.0, metavar="R",
                        help="multi30k: with --rl-hold-greedy, the greedy output/reference length ratio to hold "
                             "(PPOConfig.hold_greedy_ratio); 0 (default): the RL start's")
    parser.add_argument("--rl-ema", type=float, nargs="*", default=[], metavar="DECAY",
                        help="multi30k: keep moving averages of the RL phase's weights at these decays "
                             "(PPOConfig.weight_averages); the RL arm is whichever of its last weights and these "
                             "scores best on valid, as the MLE arms are chosen with --ema")
    parser.add_argument("--rl-seed", type=int, default=None,
                        help="seed of the RL phases (default: --seed); with --rl-from, RL's own run-to-run spread")
    parser.add_argument("--rl-from", default=None, metavar="RUN_OUT",
                        help="multi30k: reuse the MLE arm and the RL arm's start of an earlier run's --out")
    parser.add_argument("--classifier", default=None, help="sst2: classifier folder (default: $IR_SST2_CLASSIFIER)")
    parser.add_argument("--sst2-reward", default="classifier", choices=["classifier", "vader"])
    parser.add_argument("--sst2-mle-minutes", type=float, default=8.0)
    parser.add_argument("--sst2-rl-minutes", type=float, default=8.0)
    parser.add_argument("--sst2-algo", default="ppo", choices=["ppo", "reinforce", "rloo"])
    parser.add_argument("--sst2-rl-lr", type=float, default=3e-5)
    parser.add_argument("--sst2-kl-target", type=float, default=2.0, help="adaptive KL: wanted KL per sequence (nats)")
    parser.add_argument("--samples", type=int, default=4, help="sst2: samples per test prompt")
    parser.add_argument("--squad-model", default="tiny")
    parser.add_argument("--squad-minutes", type=float, default=10.0, help="squad: MLE budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    if any(not 0.0 < d < 1.0 for d in args.ema):
        parser.error(f"--ema decays must be in (0, 1), got {args.ema}")
    if any(not 0.0 < d < 1.0 for d in args.rl_ema) or len(set(args.rl_ema)) < len(args.rl_ema):
        parser.error(f"--rl-ema decays must be distinct and in (0, 1), got {args.rl_ema}")
    if not (np.isfinite(args.rl_length_weight) and args.rl_length_weight >= 0):
        parser.error(f"--rl-length-weight must be a finite number >= 0, got {args.rl_length_weight}")
    if args.rl_hold_length < 0:
        parser.error(f"--rl-hold-length must be a number of training sources >= 0, got {args.rl_hold_length}")
    if args.rl_hold_greedy < 0 or (args.rl_hold_greedy and not args.rl_length_weight):
        parser.error(f"--rl-hold-greedy must be a number of training sources >= 0 and needs --rl-length-weight > 0, "
                     f"got {args.rl_hold_greedy} with --rl-length-weight {args.rl_length_weight}")
    if args.rl_hold_ratio and not (args.rl_hold_greedy and 0 < args.rl_hold_ratio < 10):
        parser.error(f"--rl-hold-ratio must be in (0, 10) and needs --rl-hold-greedy, got {args.rl_hold_ratio} with "
                     f"--rl-hold-greedy {args.rl_hold_greedy}")
    if args.rl_from is not None:
        if args.parts != ["multi30k"] or not args.rl_minutes:
            parser.error("--rl-from reruns the RL arm of the multi30k part: use it with --parts multi30k and --rl-minutes > 0")
        earlier_mle_run(parser, args)  # checked before any training
    if not 0 <= args.rl_minutes < args.minutes:
        parser.error(f"--rl-minutes must be in [0, --minutes={args.minutes}), got {args.rl_minutes}")
    if args.data_dir is not None:
        os.environ["IR_DATA_DIR"] = str(Path(args.data_dir).resolve())
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    path = out / "quality.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    command = "python -m benchmarks.quality " + " ".join(argv if argv is not None else sys.argv[1:])
    for part in args.parts:
        t0 = time.perf_counter()
        started = time.strftime("%Y-%m-%dT%H:%M")
        section = PARTS[part](args)
        section.update(command=command, date=started, machine=machine_description(), args=vars(args),
                       wall_seconds=time.perf_counter() - t0)
        results[part] = section
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))  # after each part: a later failure keeps it
        (out / "quality.md").write_text(report(results))
    return results


MLE_OPTIONS = ("model", "minutes", "rl_minutes", "eval_minutes", "batch_size", "lr", "warmup", "dropout", "ema", "seed",
               "precision")
"""The options that decide the multi30k part's MLE arm and the RL arm's start: ``--rl-from`` needs them equal."""
AS_RUN_BEFORE = {"precision": "fp32"}
"""Options that runs older than them lack, with the value those runs ran with."""


def earlier_mle_run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Check the run ``--rl-from`` names: a multi30k record with an RL arm, its weights, and its MLE options."""
    run = Path(args.rl_from)
    try:
        record = json.loads((run / "quality.json").read_text())["multi30k"]
    except (OSError, ValueError, KeyError) as e:
        parser.error(f"--rl-from {run}: no multi30k record in {run / 'quality.json'} ({type(e).__name__}: {e})")
    missing = [name for name in ("mle.safetensors", "mle_snapshot.safetensors") if not (run / WEIGHTS_DIR / name).is_file()]
    if missing or "mle_snapshot" not in record:
        parser.error(f"--rl-from {run}: the run did not keep its weights ({', '.join(missing) or 'no RL arm'}); "
                     "only runs of this version of the part do")
    there = {k: record["args"].get(k, AS_RUN_BEFORE.get(k)) for k in MLE_OPTIONS}
    differ = [f"--{k.replace('_', '-')} {there[k]!r} there, {getattr(args, k)!r} here"
              for k in MLE_OPTIONS if there[k] != getattr(args, k)]
    if differ:
        parser.error(f"--rl-from {run}: the MLE options differ: " + "; ".join(differ))


def mle_recipe(args: argparse.Namespace, minutes: float, label_smoothing: float):
    """The maximum-likelihood recipe every part uses: length buckets, Adam (0.9, 0.98), warm-up then
    inverse-sqrt decay, stopped after ``minutes`` of optimiser steps."""
    from agents.supervised import MLEConfig

    return MLEConfig(steps=10**9, batch_size=args.batch_size, learning_rate=args.lr, warmup_steps=args.warmup,
                     schedule="inverse_sqrt", label_smoothing=label_smoothing, adam_beta2=0.98, length_buckets=True,
                     max_seconds=minutes * 60)


def rl_from(start, into, task_name: str, args: argparse.Namespace, minutes: float, ppo, **run: Any) -> dict[str, Any]:
    """RL with ``agents.trainer.train`` from the weights of ``start`` for ``minutes`` of wall time; the
    trained weights are loaded into ``into`` (which may be ``start``). Returns the run's summary, with
    ``averages``: {"EMA <decay>": state dict} of ``ppo.weight_averages``."""
    from agents.checkpoint import export_weights, load_weights
    from agents.trainer import RunConfig, train
    from benchmarks.weight_choice import state_of

    with tempfile.TemporaryDirectory() as tmp:
        init = str(Path(tmp) / "start.safetensors")
        export_weights(start, init)
        seed = args.seed if args.rl_seed is None else args.rl_seed
        config = RunConfig(task=task_name, model=args.model, seed=seed, total_tokens=10**12,
                           max_seconds=minutes * 60, device="cpu", out=str(Path(tmp) / "rl"), init=init, ppo=ppo,
                           eval_every=0, checkpoint_every=10**9, progress=False, **run)
        summary = train(config)
        averages = {}
        for decay, name in summary.get("weight_averages", {}).items():  # PPOConfig.weight_averages
            load_weights(Path(tmp) / "rl" / name, into)
            averages[f"EMA {decay}"] = state_of(into)
        summary["averages"] = averages
        load_weights(Path(tmp) / "rl", into)
        with open(Path(tmp) / "rl" / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    # per update: the sampled rollout's mean score and output/reference length ratio (and the greedy hold's),
    # and where its wall time went
    summary["curve"] = [{"update": int(r["update"]), "score": float(r["score"]), "length_ratio": float(r["length_ratio"]),
                         **greedy_hold_columns(r), **{k: float(r[k]) for k in TIME_COLUMNS}} for r in rows]
    return summary


def check_reloaded(record: dict[str, Any], valid: float, test: float, name: str) -> None:
    """``--rl-from``: the reloaded weights must give the earlier run's recorded greedy BLEU (decoding is
    deterministic), or they are not the weights that record describes."""
    if abs(valid - record["valid_bleu"]) > 1e-6 or abs(test - record["test_bleu"]) > 1e-6:
        raise SystemExit(f"--rl-from: {name} gives valid {valid:.4f} / test {test:.4f} BLEU, but the run's record says "
                         f"{record['valid_bleu']:.4f} / {record['test_bleu']:.4f}: not the weights it describes")


def greedy_hold_columns(row: dict[str, str]) -> dict[str, float]:
    """An RL metrics row's length target and greedy length ratio, where the greedy length hold measured one."""
    if not np.isfinite(float(row.get("greedy_length_ratio", "nan"))):
        return {}
    return {"length_target": float(row["length_target"]), "greedy_length_ratio": float(row["greedy_length_ratio"])}


def run_multi30k(args: argparse.Namespace) -> dict[str, Any]:
    """The multi30k part: MLE for the whole budget, and MLE snapshot + RL, scored on test2016."""
    import torch

    from agents.checkpoint import export_weights, load_weights
    from agents.model import ModelConfig, PolicyModel
    from agents.ppo import PPOConfig
    from agents.supervised import mle_train
    from agents.trainer import autocast_for
    from benchmarks.weight_choice import WeightCandidates, choose_weights, state_of
    from ir_env.tasks.real import Multi30kTask

    torch.manual_seed(args.seed)
    task = Multi30kTask()
    refs = multi30k_references()
    config = ModelConfig.preset(args.model, len(task.vocab), task.max_source_len, task.max_generation_len,
                                dropout=args.dropout)
    model = PolicyModel(config)
    mle = mle_recipe(args, args.minutes, label_smoothing=0.1)
    candidates = WeightCandidates(model, args.ema) if args.ema else None
    snapshot_at = (args.minutes - args.rl_minutes) * 60
    curve: list[dict[str, float]] = []
    snapshot: dict[str, torch.Tensor] = {}
    snapshot_choice: dict[str, Any] = {}
    clock = {"start": time.perf_counter(), "outside": 0.0, "next_eval": args.eval_minutes * 60}

    def evaluate(split: str) -> float:
        return corpus_bleu(model, task, split, refs[split])[0]

    def on_step(step: int, loss: float) -> None:
        t0 = time.perf_counter()
        trained = t0 - clock["start"] - clock["outside"]
        if args.rl_minutes > 0 and not snapshot and trained >= snapshot_at:
            if candidates is None:
                snapshot.update({k: v.detach().clone() for k, v in model.state_dict().items()})
            else:  # the RL arm starts from the candidate that scores best on valid, as the MLE arm is scored
                chosen, scores, state = candidates.score(evaluate, ("valid",))
                snapshot.update(state)
                snapshot_choice.update(weights=chosen, candidates=scores)
                print(f"  snapshot candidates (valid BLEU): {scores}; chosen: {chosen}", flush=True)
                model.train()
            snapshot["_step"] = torch.tensor(step + 1)
        if trained >= clock["next_eval"]:
            score, _, _ = corpus_bleu(model, task, "valid", refs["valid"])
            model.train()
            curve.append({"minutes": trained / 60, "step": step + 1, "loss": loss, "valid_bleu": score})
            print(f"  {trained / 60:5.1f} min, step {step + 1}: loss {loss:.3f}, valid BLEU {score:.2f}", flush=True)
            clock["next_eval"] += args.eval_minutes * 60
        clock["outside"] += time.perf_counter() - t0

    earlier = None
    if args.rl_from is not None:  # the MLE arm and the RL arm's start of an earlier run (checked by main)
        earlier = json.loads((Path(args.rl_from) / "quality.json").read_text())["multi30k"]
        result: dict[str, Any] = {key: earlier[key] for key in ("parameters", "mle_steps", "mle_train_seconds",
                                                                "valid_curve", "mle_candidates") if key in earlier}
        result["mle_from"] = {"run": str(args.rl_from), **{k: earlier[k] for k in ("command", "date", "machine")}}
        chosen = {"weights": earlier["mle"]["weights"]} if "weights" in earlier["mle"] else {}
        load_weights(Path(args.rl_from) / WEIGHTS_DIR / "mle.safetensors", model)
        print(f"multi30k MLE arm and RL start from {args.rl_from} ({earlier['command']})", flush=True)
    else:
        print(f"multi30k MLE: {args.model} ({model.num_parameters() / 1e6:.1f}M parameters), {args.minutes:g} min", flush=True)
        autocast = autocast_for(args.precision, torch.device("cpu"))  # the RL phase's, through RunConfig.precision
        losses = mle_train(model, task, mle, seed=args.seed, autocast=autocast, on_step=on_step, average=candidates)
        result = {"parameters": model.num_parameters(), "mle_steps": len(losses),
                  "mle_train_seconds": time.perf_counter() - clock["start"] - clock["outside"], "valid_curve": curve}
        chosen = {}
        if candidates is not None:
            name, scores, state = candidates.score(evaluate, ("valid", "test"))
            result["mle_candidates"], chosen = scores, {"weights": name}
            print(f"MLE {args.minutes:g} min candidates: {scores}; chosen on valid: {name}", flush=True)
            model.load_state_dict(state)
    # decoded again (greedy, so the chosen candidate's scores come back) for the outputs and the signature
    valid_mle, _, valid_hyps_mle = corpus_bleu(model, task, "valid", refs["valid"])
    test_mle, signature, test_hyps_mle = corpus_bleu(model, task, "test", refs["test"])
    result["signature"] = signature
    save_outputs(args.out, "mle", {"valid": valid_hyps_mle, "test": test_hyps_mle})
    export_weights(model, Path(args.out) / WEIGHTS_DIR / "mle.safetensors")
    result["outputs"] = f"{OUTPUTS_DIR}/: the greedy outputs of each arm, one sentence a line (not committed)"
    result["weights"] = f"{WEIGHTS_DIR}/: the MLE arm's and the RL arm's start weights (not committed)"
    result["mle"] = {"valid_bleu": valid_mle, "test_bleu": test_mle, "test_examples": test_hyps_mle[:5], **chosen}
    if earlier is not None:
        check_reloaded(earlier["mle"], valid_mle, test_mle, "mle.safetensors")
    print(f"MLE {args.minutes:g} min ({result['mle_steps']} steps): valid {valid_mle:.2f}, test {test_mle:.2f}  "
          f"[{signature}]", flush=True)
    if args.rl_minutes > 0:
        if earlier is not None:
            load_weights(Path(args.rl_from) / WEIGHTS_DIR / "mle_snapshot.safetensors", model)
            step = earlier["mle_snapshot"]["step"]
            snapshot_choice = {k: earlier["mle_snapshot"][k] for k in ("weights", "candidates") if k in earlier["mle_snapshot"]}
        else:
            step = int(snapshot.pop("_step"))
            model.load_state_dict(snapshot)
        valid_snap, _, valid_hyps_snap = corpus_bleu(model, task, "valid", refs["valid"])
        test_snap, _, test_hyps_snap = corpus_bleu(model, task, "test", refs["test"])
        if earlier is not None:
            check_reloaded(earlier["mle_snapshot"], valid_snap, test_snap, "mle_snapshot.safetensors")
        save_outputs(args.out, "mle_snapshot", {"valid": valid_hyps_snap, "test": test_hyps_snap})
        export_weights(model, Path(args.out) / WEIGHTS_DIR / "mle_snapshot.safetensors")
        result["mle_snapshot"] = {"step": step, "minutes": snapshot_at / 60, "valid_bleu": valid_snap,
                                  "test_bleu": test_snap, **snapshot_choice,
                                  "length_ratio": {"valid": length_ratio(valid_hyps_snap, refs["valid"]),
                                                   "test": length_ratio(test_hyps_snap, refs["test"])}}
        print(f"MLE snapshot at {snapshot_at / 60:g} min (step {step}): valid {valid_snap:.2f}, test {test_snap:.2f}", flush=True)
        ppo = PPOConfig(algo=args.rl_algo, learning_rate=args.rl_lr, num_envs=args.rl_envs, temperature=args.rl_temperature,
                        mle_coef=args.rl_mle_coef, length_groups=args.rl_length_groups, share_encoder=args.rl_share_encoder,
                        relinearise_bleu=args.rl_bleu == "moving", hold_greedy_length=args.rl_hold_greedy,
                        hold_greedy_ratio=args.rl_hold_ratio,
                        weight_averages=tuple(args.rl_ema))
        reward = ({"reward": "mixed", "reward_weights": {"instant": 1.0, "length": args.rl_length_weight}}
                  if args.rl_length_weight else {})
        if args.rl_bleu != "sentence":  # linearised where the RL arm starts, on the split that chooses weights
            from ir_env.rewards.bleu import mean_bleu_point

            point = mean_bleu_point(bleu_statistics(valid_hyps_snap, refs["valid"]))
            result["mle_snapshot"]["bleu_point"] = point.tolist()
            reward["task_kwargs"] = {"bleu_point": point.tolist()}
        hold_rows = range(min(args.rl_hold_length, len(task.examples("train"))))
        hold_target = greedy_length(model, task, hold_rows) if args.rl_hold_length else 0
        summary = rl_from(model, model, task.name, args, args.rl_minutes, ppo, eval_examples=256,
                          precision=args.precision, **reward)
        rl_choice = {}
        if summary["averages"]:  # the RL arm's weights are chosen on valid as the MLE arms' are (outside the budget)
            name, scores, state = choose_weights(model, {"last weights": state_of(model), **summary["averages"]},
                                                 evaluate, ("valid", "test"))
            rl_choice = {"weights": name, "candidates": scores}
            print(f"RL candidates: {scores}; chosen on valid: {name}", flush=True)
            model.load_state_dict(state)
        valid_rl, _, valid_hyps_rl = corpus_bleu(model, task, "valid", refs["valid"])
        test_rl, _, hyps = corpus_bleu(model, task, "test", refs["test"])
        held = {}
        if args.rl_hold_length:  # the scores without the bias stay in the record; the arm is decoded with it
            t0 = time.perf_counter()
            bias, tokens = hold_length(model, task, hold_target, hold_rows)
            held = {"length_hold": {
                "sources": len(hold_rows), "target_tokens": hold_target, "eos_bias": bias, "tokens": tokens,
                "seconds": time.perf_counter() - t0,
                "without": {"valid_bleu": valid_rl, "test_bleu": test_rl,
                            "length_ratio": {"valid": length_ratio(valid_hyps_rl, refs["valid"]),
                                             "test": length_ratio(hyps, refs["test"])}}}}
            print(f"RL arm without the length hold: valid {valid_rl:.2f}, test {test_rl:.2f}; EOS bias {bias:+.4f} "
                  f"gives {tokens} tokens on {len(hold_rows)} training sources (start: {hold_target})", flush=True)
            if bias:  # a bias of 0 decodes exactly as above
                valid_rl, _, valid_hyps_rl = corpus_bleu(model, task, "valid", refs["valid"], eos_bias=bias)
                test_rl, _, hyps = corpus_bleu(model, task, "test", refs["test"], eos_bias=bias)
        save_outputs(args.out, "mle_rl", {"valid": valid_hyps_rl, "test": hyps})
        gain = {"valid": paired_bleu(valid_hyps_mle, valid_hyps_rl, refs["valid"], seed=args.seed),
                "test": paired_bleu(test_hyps_mle, hyps, refs["test"], seed=args.seed)}
        result["mle_rl"] = {"valid_bleu": valid_rl, "test_bleu": test_rl, "rl_updates": summary["updates"],
                            "rl_tokens": summary["tokens"], "rl_seconds": summary["wall_seconds"],
                            "test_examples": hyps[:5], "gain_over_mle": gain, "rl_curve": summary["curve"], **held,
                            **rl_choice}
        print(f"MLE {snapshot_at / 60:g} min + RL {args.rl_minutes:g} min ({summary['tokens']} tokens): "
              f"valid {valid_rl:.2f}, test {test_rl:.2f}", flush=True)
    return result


def sample_outputs(model, task, split: str, samples: int, seed: int) -> tuple[list[list[int]], np.ndarray, list[bool]]:
    """``samples`` temperature-1 continuations of every prompt of ``split``: (outputs, example ids, ended by EOS)."""
    import torch

    from ir_env import EOS

    examples = task.examples(split)
    ids = np.repeat(np.arange(len(examples)), samples)
    mask = torch.as_tensor(task.action_mask())
    generator = torch.Generator().manual_seed(seed)
    outputs, ended = [], []
    model.eval()
    for start in range(0, len(ids), 256):
        rows = ids[start:start + 256]
        tokens = model.sample(torch.as_tensor(examples.source[rows]), task.max_generation_len, action_mask=mask,
                              generator=generator).numpy()
        for row in tokens.tolist():
            stop = row.index(EOS) if EOS in row else len(row)
            outputs.append(row[:stop])
            ended.append(stop < len(row))
    return outputs, ids, ended


def sentiment_report(model, reference, task, samples: int, seed: int) -> dict[str, Any]:
    """Positive rates under every scorer, perplexity under ``reference`` and generation stats on test samples."""
    from agents.fluency import generation_stats, perplexity

    outputs, ids, ended = sample_outputs(model, task, "test", samples, seed)
    row: dict[str, Any] = {}
    for scorer in (task.scorer, *task.judge_names):
        score = task.score_outputs(outputs, ids, "test", scorer=scorer)
        row[scorer] = {"mean": float(score.mean()), "positive_rate": float(np.mean(score >= POSITIVE_AT[scorer]))}
    sources = task.examples("test").source[ids]
    row["perplexity"] = perplexity(reference, sources, outputs, ends_with_eos=ended, action_mask=task.action_mask())
    row.update(generation_stats(outputs))
    row["examples"] = [task.vocab.detokenize(o) for o in outputs[: 4 * samples : samples]]
    return row


def run_sst2(args: argparse.Namespace) -> dict[str, Any]:
    """The sst2 part: a maximum-likelihood reference model, RL from it on the scorer's instant reward."""
    import torch

    from agents.model import ModelConfig, PolicyModel
    from agents.ppo import PPOConfig
    from agents.supervised import mle_train
    from ir_env.tasks.real import Sst2Task

    torch.manual_seed(args.seed)
    task_kwargs = {"scorer": args.sst2_reward}
    if args.classifier is not None:
        task_kwargs["classifier"] = str(Path(args.classifier).resolve())
    task = Sst2Task(**task_kwargs)
    if not task.judge_names:
        raise SystemExit("sst2 needs a held-out judge: pass --classifier FOLDER (instant-reward train-classifier) "
                         "or set IR_SST2_CLASSIFIER")
    config = ModelConfig.preset(args.model, len(task.vocab), task.max_source_len, task.max_generation_len)
    reference = PolicyModel(config)
    mle = mle_recipe(args, args.sst2_mle_minutes, label_smoothing=0.0)
    print(f"sst2 reference model: MLE {args.sst2_mle_minutes:g} min", flush=True)
    steps = len(mle_train(reference, task, mle, seed=args.seed))
    reference.eval()
    result: dict[str, Any] = {"reward": args.sst2_reward, "judges": list(task.judge_names), "mle_steps": steps,
                              "reference": sentiment_report(reference, reference, task, args.samples, args.seed)}
    if task.scorer == "classifier":
        meta = task.classifier().meta
        result["classifier"] = {"dev_accuracy": meta["dev_accuracy"], "weights_sha256": meta["weights_sha256"]}
    print(f"reference model: {_summary(result['reference'])}", flush=True)
    ppo = PPOConfig(algo=args.sst2_algo, learning_rate=args.sst2_rl_lr, kl_coef=0.1, kl_target=args.sst2_kl_target)
    policy = PolicyModel(config)
    summary = rl_from(reference, policy, task.name, args, args.sst2_rl_minutes, ppo, eval_examples=128,
                      task_kwargs=task_kwargs)
    result["rl"] = sentiment_report(policy.eval(), reference, task, args.samples, args.seed)
    result["rl"].update(updates=summary["updates"], tokens=summary["tokens"], seconds=summary["wall_seconds"])
    print(f"after RL: {_summary(result['rl'])}", flush=True)
    return result


def run_squad(args: argparse.Namespace) -> dict[str, Any]:
    """The squad part: MLE answer generation, greedy test F1 and exact match (SQuAD v1.1 definitions)."""
    import torch

    from agents.model import ModelConfig, PolicyModel
    from agents.supervised import mle_train
    from ir_env.rewards.f1 import normalize_answer, squad_f1
    from ir_env.tasks.real import SquadTask

    torch.manual_seed(args.seed)
    task = SquadTask()
    config = ModelConfig.preset(args.squad_model, len(task.vocab), task.max_source_len, task.max_generation_len,
                                dropout=args.dropout)
    model = PolicyModel(config)
    mle = mle_recipe(args, args.squad_minutes, label_smoothing=0.1)
    print(f"squad MLE: {args.squad_model} ({model.num_parameters() / 1e6:.1f}M parameters), {args.squad_minutes:g} min", flush=True)
    steps = len(mle_train(model, task, mle, seed=args.seed))
    model.eval()
    examples = task.examples("test")
    mask = torch.as_tensor(task.action_mask())
    f1, em, outputs = [], [], []
    with torch.no_grad():
        for start in range(0, len(examples), 200):
            tokens = model.sample(torch.as_tensor(examples.source[start:start + 200]), task.max_generation_len,
                                  action_mask=mask, greedy=True).numpy()
            for i, row in enumerate(tokens, start):
                hyp = task.vocab.detokenize(row)
                ref = task.vocab.detokenize(examples.reference[i, : examples.reference_len[i]])
                f1.append(squad_f1(hyp, ref))
                em.append(float(normalize_answer(hyp) == normalize_answer(ref)))
                outputs.append(f"{hyp}  (reference: {ref})")
    result = {"parameters": model.num_parameters(), "mle_steps": steps, "test_f1": 100 * float(np.mean(f1)),
              "test_em": 100 * float(np.mean(em)), "test_examples": len(examples), "examples": outputs[:5]}
    print(f"squad test: F1 {result['test_f1']:.2f}, EM {result['test_em']:.2f}", flush=True)
    return result


def _summary(row: dict[str, Any]) -> str:
    rates = ", ".join(f"{k} positive {v['positive_rate']:.3f}" for k, v in row.items() if isinstance(v, dict))
    return f"{rates}; perplexity {row['perplexity']:.1f}; distinct-2 {row['distinct2']:.3f}"


#: An output counts as positive at this score: VADER's compound >= 0.05 (Hutto & Gilbert's threshold);
#: the classifier's 2 P(positive) - 1 > 0, i.e. P(positive) > 0.5.
POSITIVE_AT = {"vader": 0.05, "classifier": 1e-12}
PARTS = {"multi30k": run_multi30k, "sst2": run_sst2, "squad": run_squad}


if __name__ == "__main__":
    main()
