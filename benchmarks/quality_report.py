"""The Markdown results file of ``benchmarks.quality``: one section per part (multi30k, sst2, squad), rendered from
the ``quality.json`` the benchmark writes (and from committed results files with notes added)."""

from __future__ import annotations

from typing import Any

import numpy as np

TIME_COLUMNS = ("hold_seconds", "rollout_seconds", "env_seconds", "update_seconds")  # agents.trainer's metrics, per update


def report(results: dict[str, Any]) -> str:
    """The Markdown results file, one section per part present."""
    lines = ["# Quality on real data", ""]
    if "multi30k" in results:
        lines += _multi30k_section(results["multi30k"])
    if "sst2" in results:
        lines += _sst2_section(results["sst2"])
    if "squad" in results:
        lines += _squad_section(results["squad"])
    return "\n".join(lines) + "\n"


def _header(r: dict[str, Any]) -> list[str]:
    lines = [f"Command: `{r['command'].strip()}`  ", f"Date: {r['date']}  ", f"Machine: {r['machine']}  ",
             f"Run time: {r['wall_seconds']:.0f} s wall  "]
    return lines + [f"Note: {r['notes']}  "] if r.get("notes") else lines


def _multi30k_section(r: dict[str, Any]) -> list[str]:
    a = r["args"]
    reused = r.get("mle_from")
    lines = ["## Multi30k en->de (test2016)", "", *_header(r),
             *([f"- MLE arm and RL start reused from `{reused['run']}`, the run of `{reused['command'].strip()}` "
                f"({reused['date']}, {reused['machine']}); only the RL arm ran here  "] if reused else []),
             f"BLEU: sacrebleu corpus BLEU, greedy decoding, `{r['signature']}` (case-insensitive: the task lower-cases)",
             "",
             f"Model: `{a['model']}` ({r['parameters'] / 1e6:.1f}M parameters), from scratch, seed {a['seed']}. "
             f"MLE: batch {a['batch_size']} sentences (length buckets), Adam (0.9, 0.98), peak lr {a['lr']:g}, "
             f"warm-up {a['warmup']} steps then inverse-sqrt decay, dropout {a.get('dropout', 0.1)}, "
             "label smoothing 0.1; "
             + ("matrix products of both arms' training in bf16 (torch.autocast on the CPU; weights, Adam, heads and "
                "losses float32; decoding float32); " if a.get("precision") == "bf16" else "")
             + "budget "
             f"{a['minutes']:g} min of optimiser steps per arm (evaluations excluded). "
             + _ema_sentence(a)
             + "Protocol: the docstring of `benchmarks/quality.py`.", "",
             "| arm | training | valid BLEU | test2016 BLEU |", "|---|---|---|---|",
             f"| MLE{_weights_label(r['mle'])} | {a['minutes']:g} min, {r['mle_steps']} steps "
             f"| {r['mle']['valid_bleu']:.2f} | {r['mle']['test_bleu']:.2f} |"]
    for name, scores in r.get("mle_candidates", {}).items():
        if name != r["mle"].get("weights"):
            lines.append(f"| MLE, {name} (not chosen) | the same run | {scores['valid_bleu']:.2f} | "
                         f"{scores['test_bleu']:.2f} |")
    if "mle_rl" in r:
        s, rl = r["mle_snapshot"], r["mle_rl"]
        lines += [
            f"| MLE snapshot (the RL arm's start{_weights_label(s, ': ')}) | {s['minutes']:g} min, {s['step']} steps "
            f"| {s['valid_bleu']:.2f} | {s['test_bleu']:.2f} |",
            f"| MLE + RL ({a['rl_algo']}, instant {_bleu_label(a)}, lr {a['rl_lr']:g}, T={a['rl_temperature']:g}, {a['rl_envs']} envs"
            + (f", + {a['rl_mle_coef']:g} x MLE loss" if a.get("rl_mle_coef") else "")
            + (f", + {a['rl_length_weight']:g} x length penalty" if a.get("rl_length_weight") else "")
            + (f", greedy length held on {a['rl_hold_greedy']:,} sources" if a.get("rl_hold_greedy") else "")
            + _weights_label(rl) + ") "
            f"| {s['minutes']:g} + {a['rl_minutes']:g} min, {rl['rl_updates']} updates, {rl['rl_tokens']:,} tokens "
            + ("(decoded with the length hold below) " if "length_hold" in rl else "")
            + f"| {rl['valid_bleu']:.2f} | {rl['test_bleu']:.2f} |"]
        for name, scores in rl.get("candidates", {}).items():
            if name != rl["weights"]:
                lines.append(f"| MLE + RL, {name} of the RL phase (not chosen) | the same run | {scores['valid_bleu']:.2f} "
                             f"| {scores['test_bleu']:.2f} |")
        if "length_hold" in rl:
            without = rl["length_hold"]["without"]
            lines.append(f"| MLE + RL without the length hold | the same weights | {without['valid_bleu']:.2f} "
                         f"| {without['test_bleu']:.2f} |")
    if "gain_over_mle" in r.get("mle_rl", {}):
        g = r["mle_rl"]["gain_over_mle"]
        t = g["test"]
        lines += ["", f"MLE + RL against MLE, paired bootstrap ({t['resamples']:,} resamples of the sentences of each "
                  f"split, seed {t['seed']}; the interval is the {t['confidence']:.0%} percentile interval of the "
                  "resampled differences, *p* the share of resamples in which MLE + RL is not better):"]
        lines += [f"- {split}: {d['delta']:+.2f} BLEU, [{d['low']:+.2f}, {d['high']:+.2f}], p = {d['p_not_better']:.3f}; "
                  f"output/reference length ratio {d['length_ratio_a']:.3f} (MLE), {d['length_ratio_b']:.3f} (MLE + RL)"
                  for split, d in g.items()]
    if "length_ratio" in r.get("mle_snapshot", {}):
        lr = r["mle_snapshot"]["length_ratio"]
        lines += [f"- the RL arm's start (the MLE snapshot): output/reference length ratio {lr['valid']:.3f} (valid), "
                  f"{lr['test']:.3f} (test2016)"]
    if "bleu_point" in r.get("mle_snapshot", {}):
        point = ", ".join(f"{x:.2f}" for x in r["mle_snapshot"]["bleu_point"])
        lines += [f"- the RL reward's BLEU: `LinearBLEU` at the snapshot's mean per-sentence valid statistics "
                  f"(output and reference length, 1- to 4-gram matches, 1- to 4-gram totals): {point}"
                  + ("; re-linearised after each update at its rollout's statistics" if a.get("rl_bleu") == "moving" else "")]
    curve = r.get("mle_rl", {}).get("rl_curve", [])  # per RL update; runs before 8a7a648 have no timing columns
    if curve:
        tenth = max(1, len(curve) // 10)
        first, last = (np.mean([c["length_ratio"] for c in part]) for part in (curve[:tenth], curve[-tenth:]))
        lines += [f"- the RL phase's sampled outputs (temperature {a['rl_temperature']:g}, train split): output/reference "
                  f"length ratio {first:.3f} over its first {tenth} updates, {last:.3f} over its last {tenth}"]
    if curve and "update_seconds" in curve[0]:
        lines += [_rl_time_line(curve)]
    held = [c for c in curve if "greedy_length_ratio" in c]
    if held:
        lines += [f"- the greedy length hold (`PPOConfig.hold_greedy_length`, {a['rl_hold_greedy']:,} training sources, "
                  f"{len(held)} decodes): their greedy output/reference length ratio {held[0]['greedy_length_ratio']:.3f} "
                  f"at the start, {held[-1]['greedy_length_ratio']:.3f} at the last decode; the length part's target "
                  f"{min(c['length_target'] for c in held):.3f} to {max(c['length_target'] for c in held):.3f} of the "
                  f"references' length, {held[-1]['length_target']:.3f} at the end"]
    if "length_hold" in r.get("mle_rl", {}):
        h = r["mle_rl"]["length_hold"]
        lr = h["without"]["length_ratio"]
        lines += [f"- the length hold (`benchmarks.length_hold`): EOS logit bias {h['eos_bias']:+.4f}, which gives "
                  f"{h['tokens']:,} tokens of greedy output on the first {h['sources']:,} training sources against "
                  f"{h['target_tokens']:,} from the RL arm's start (found in {h['seconds']:.0f} s, outside the budget "
                  f"like the evaluations); without it the output/reference length ratio was {lr['valid']:.3f} (valid), "
                  f"{lr['test']:.3f} (test2016)"]
    if "candidates" in r.get("mle_snapshot", {}):
        s = r["mle_snapshot"]
        lines += ["", f"Candidates for the RL arm's start at {s['minutes']:g} min (valid BLEU): "
                  + ", ".join(f"{name} {c['valid_bleu']:.2f}" for name, c in s["candidates"].items())
                  + f"; chosen: {s['weights']}."]
    lines += ["", "Valid BLEU during the MLE run (the raw weights of that moment):", "", "| training minutes | step | loss | valid BLEU |", "|---|---|---|---|"]
    lines += [f"| {c['minutes']:.1f} | {c['step']} | {c['loss']:.3f} | {c['valid_bleu']:.2f} |" for c in r["valid_curve"]]
    lines += ["", "First test2016 outputs (MLE):", ""] + [f"- {h}" for h in r["mle"]["test_examples"]] + [""]
    if r.get("outputs"):
        lines += [f"All greedy outputs: {r['outputs']}, beside the run's quality.json.", ""]
    return lines


def _rl_time_line(curve: list[dict[str, Any]]) -> str:
    """Where the RL phase's wall time went, per update (agents.trainer's timing columns)."""
    mean = {k: float(np.mean([c[k] for c in curve])) for k in TIME_COLUMNS}
    total = mean["hold_seconds"] + mean["rollout_seconds"] + mean["update_seconds"]
    share = lambda k: mean[k] / total if total > 0 else float("nan")  # noqa: E731
    return (f"- the RL phase's time, mean per update over {len(curve)} updates: {total:.2f} s, of which sampling the "
            f"rollout {mean['rollout_seconds']:.2f} s ({share('rollout_seconds'):.0%}; the env's steps "
            f"{mean['env_seconds']:.2f} s of it), the greedy length hold's decodes {mean['hold_seconds']:.2f} s "
            f"({share('hold_seconds'):.0%}), rewards, advantages and the update {mean['update_seconds']:.2f} s "
            f"({share('update_seconds'):.0%})")


def _bleu_label(a: dict[str, Any]) -> str:
    return {"linear": "linearised corpus BLEU", "moving": "corpus BLEU linearised at each rollout"}.get(a.get("rl_bleu"), "BLEU")


def _ema_sentence(a: dict[str, Any]) -> str:
    if not a.get("ema"):  # [], or 0.0 in results written when --ema took one decay
        return ""
    decays = ", ".join(f"{d:g}" for d in sorted(set(a["ema"])))
    return ("Weight averaging: exponential moving averages of the weights (decays " + decays + "; the running form "
            "of checkpoint averaging) are updated every step inside the timed budget; each MLE arm (the MLE arm at "
            "the end, the RL arm's start at its snapshot) is scored with whichever of the last weights and the "
            "averages has the best valid BLEU at that moment; test2016 never chooses. Every candidate is shown. ")


def _weights_label(row: dict[str, Any], sep: str = ", ") -> str:
    return f"{sep}{row['weights']}, chosen on valid" if "weights" in row else ""


def _sst2_section(r: dict[str, Any]) -> list[str]:
    a = r["args"]
    scorers = [r["reward"], *r["judges"]]
    lines = ["## SST-2: steer continuations positive", "", *_header(r), "",
             f"Model: `{a['model']}`; reference model: MLE on the training continuations, {a['sst2_mle_minutes']:g} min "
             f"({r['mle_steps']} steps). RL: {a['sst2_algo']}, lr {a['sst2_rl_lr']:g}, instant reward of the "
             f"**{r['reward']}** scorer, adaptive KL penalty to the reference (target {a['sst2_kl_target']:g} nats per "
             f"sequence), {a['sst2_rl_minutes']:g} min. Held-out judge: **{', '.join(r['judges'])}**. "
             f"{a['samples']} samples (temperature 1) per test prompt; positive: VADER compound >= 0.05, classifier "
             "P(positive) > 0.5. Perplexity: of the samples under the reference model."]
    if "classifier" in r:
        c = r["classifier"]
        lines += ["", f"Classifier: SST-2 dev accuracy {c.get('dev_accuracy', float('nan')):.4f}."]
    lines += ["", "| model | " + " | ".join(f"positive rate ({s}{' = reward' if s == r['reward'] else ', judge'})" for s in scorers)
              + " | perplexity | length | repetition | distinct-2 |",
              "|---|" + "---|" * (len(scorers) + 4)]
    for name, key in (("reference (MLE)", "reference"), ("RL", "rl")):
        row = r[key]
        rates = " | ".join(f"{row[s]['positive_rate']:.3f}" for s in scorers)
        lines.append(f"| {name} | {rates} | {row['perplexity']:.1f} | {row['length']:.1f} | {row['repetition']:.3f} | {row['distinct2']:.3f} |")
    ref, rl = r["reference"], r["rl"]
    judge = r["judges"][0]
    lines += ["", f"Judge ({judge}) positive rate change: {rl[judge]['positive_rate'] - ref[judge]['positive_rate']:+.3f} "
              f"(target >= +0.15); perplexity change: {rl['perplexity'] / ref['perplexity'] - 1:+.1%} (target <= +10%). "
              f"RL ran {rl['updates']} updates, {rl['tokens']:,} tokens in {rl['seconds']:.0f} s.", "",
              "Samples (reference, then RL):", ""]
    lines += [f"- {t}" for t in ref["examples"]] + [f"- **RL**: {t}" for t in rl["examples"]] + [""]
    return lines


def _squad_section(r: dict[str, Any]) -> list[str]:
    a = r["args"]
    return ["## SQuAD v1.1: answer generation", "", *_header(r), "",
            f"Model: `{a['squad_model']}` ({r['parameters'] / 1e6:.1f}M parameters) from scratch, MLE for "
            f"{a['squad_minutes']:g} min ({r['mle_steps']} steps; the multi30k recipe) on `matching:squad`'s train "
            "split (8,213 questions of the SQuAD dev set, split by article: only the dev set is in the data "
            "folder). Greedy answers on its test split, scored by the SQuAD v1.1 definitions (token F1, exact "
            "match after `normalize_answer`) against the first human answer as the task stores it (a word outside "
            "the vocabulary is UNK there and never matches, so these are lower bounds of the official scores, "
            "which also take the best of all answers).", "",
            "| test questions | F1 | EM |", "|---|---|---|",
            f"| {r['test_examples']:,} | {r['test_f1']:.2f} | {r['test_em']:.2f} |", "",
            "First test answers:", ""] + [f"- {e}" for e in r["examples"]] + [""]
