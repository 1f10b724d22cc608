"""Every committed Multi30k quality run in one table, with the means over seeds of each recipe.

    python -m benchmarks.multi30k_runs                    # rewrites benchmarks/results/multi30k_runs.md
    python -m benchmarks.multi30k_runs --check            # exit 1 if that file is out of date

Reads the ``multi30k`` section of every ``quality*.json`` in ``benchmarks/results/`` (what
``benchmarks.quality`` wrote, plus the notes added on commit) and renders:

- one row per run: the recipe (the arguments that differ between runs), the seed, the MLE steps, the three
  arms' valid and test2016 BLEU, and RL against MLE alone with its paired-bootstrap 95% interval where the
  run recorded one;
- for each recipe run on more than one MLE seed, the mean of RL - MLE on each split and the seeds it covers:
  the RL runs on one MLE run (other RL seeds, reruns with ``--rl-from``) are averaged first, so each MLE run
  counts once; and where one RL objective was run both before and after a change that only reorganises its
  computation (``--rl-share-encoder``: the encoder once per source, the same gradients up to rounding), the
  mean over all those MLE runs;
- the selection check: the MLE arm's valid score is the best of several weight candidates chosen on valid,
  which favours MLE on valid. For each run with averaging at the full budget, how much the chosen
  candidate's valid - test gap exceeds the mean gap of all candidates, and the mean of that over the runs.

The numbers are read, never typed: the table cannot drift from the results files, and ``--check`` (run by
the tests) fails when a results file was added or changed without rendering the table again.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import mean
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
TABLE = RESULTS / "multi30k_runs.md"
FULL_BUDGET_MINUTES = 60.0
"""The issue's budget; the summaries below the table use runs at this budget only."""
MLE_TARGET = 35.0
"""The issue's floor for MLE alone on test2016 (BLEU)."""

REWARD_NAMES = {None: "sentence BLEU", "sentence": "sentence BLEU", "linear": "fixed linear point",
                "moving": "moving point"}


@dataclass(frozen=True)
class Run:
    """One Multi30k quality run as its results file recorded it."""

    name: str  # the results file's stem
    seed: int
    minutes: float
    recipe: str  # the arguments that tell recipes apart, in words
    family: str  # the recipe without its RL seed: what the means over MLE seeds group by
    objective: str  # the family without computation-only settings (the encoder once per source)
    averaged: bool  # the MLE weights are chosen among moving averages (--ema)
    commit: str  # the code's commit where the file records it, else ""
    cpu: str  # the machine's processor, as the file records it (its MLE steps in the budget depend on it)
    mle_steps: int
    mle: tuple[float, float]  # (valid, test2016) BLEU of the MLE arm
    start: tuple[float, float]  # the RL arm's starting snapshot
    rl: tuple[float, float]  # MLE + RL
    intervals: tuple[tuple[float, float] | None, tuple[float, float] | None]  # 95% interval of RL - MLE per split
    selection_excess: float | None  # chosen candidate's valid - test gap minus the candidates' mean gap
    lengths: tuple[float, float, float, float] | None  # greedy output/reference length: start valid, test; RL valid, test
    mle_lengths: tuple[float, float] | None  # the same for the MLE arm: valid, test
    mle_key: tuple[str, str]  # (command, date) of the run that trained the MLE arm: this one, or --rl-from's
    reused: bool = False  # the MLE arm and RL start are an earlier run's (--rl-from): only RL ran here
    mle_of: str = ""  # that earlier run's results file, where it is committed

    @property
    def gain(self) -> tuple[float, float]:
        """RL - MLE on (valid, test2016)."""
        return self.rl[0] - self.mle[0], self.rl[1] - self.mle[1]


def recipe_of(args: dict[str, Any], rl_seed: bool = True, computation: bool = True) -> str:
    """The arguments that differ between the committed runs, in words (budget and seed are columns).

    ``rl_seed=False`` leaves out a separate RL seed: runs that differ only in it are one recipe's RL spread.
    ``computation=False`` leaves out the encoder once per source, which changes how the update is computed
    and not what it computes (the same gradients up to float rounding; see ``PPOConfig.share_encoder``).
    """
    parts = ["EMA" if args.get("ema") else "last weights", f"{args.get('rl_algo', 'rloo').upper()} lr {args['rl_lr']:g}"]
    if args.get("rl_length_groups"):
        parts.append(f"{args['rl_length_groups']} length groups")
    if computation and args.get("rl_share_encoder"):  # absent from runs before ef0c489: they encoded every row
        parts.append("encoder once per source")
    parts.append(REWARD_NAMES[args.get("rl_bleu")])
    if args.get("rl_length_weight"):
        parts.append(f"length x{args['rl_length_weight']:g}")
    if args.get("rl_hold_length"):
        parts.append(f"length hold on {args['rl_hold_length']} sources")
    if args.get("rl_hold_greedy"):
        parts.append(f"greedy length held on {args['rl_hold_greedy']} sources"
                     + (f" at {args['rl_hold_ratio']:g} of the references'" if args.get("rl_hold_ratio") else ""))
    if args.get("rl_ema"):
        parts.append("RL EMA " + "/".join(f"{d:g}" for d in sorted(args["rl_ema"])))
    if args.get("rl_mle_coef"):
        parts.append(f"MLE term x{args['rl_mle_coef']:g}")
    if args.get("rl_minutes", 10.0) != 10.0:
        parts.append(f"RL {args['rl_minutes']:g} min")
    if args.get("rl_temperature", 0.5) != 0.5:
        parts.append(f"rollouts at T {args['rl_temperature']:g}")
    if args.get("rl_envs", 256) != 256:
        parts.append(f"{args['rl_envs']} episodes per update")
    if rl_seed and args.get("rl_seed") is not None and args["rl_seed"] != args["seed"]:
        parts.append(f"RL seed {args['rl_seed']}")
    if args.get("dropout", 0.1) != 0.1:
        parts.append(f"dropout {args['dropout']:g}")
    if args.get("precision", "fp32") != "fp32":  # absent from runs before --precision: they ran fp32
        parts.append(f"{args['precision']} training")
    return ", ".join(parts)


def cpu_of(machine: str) -> str:
    """The processor in a results file's machine line, shortened: "Intel(R) Xeon(R) Processor @ 2.80GHz, 2 cores,
    ..." -> "Intel Xeon @ 2.80GHz"."""
    return machine.split(",")[0].replace("(R)", "").replace(" Processor", "").strip()


def _selection_excess(section: dict[str, Any]) -> float | None:
    candidates = section.get("mle_candidates", {})
    if len(candidates) < 2 or not all("test_bleu" in c for c in candidates.values()):
        return None
    gaps = {name: c["valid_bleu"] - c["test_bleu"] for name, c in candidates.items()}
    return gaps[section["mle"]["weights"]] - mean(gaps.values())


def _interval(gain: dict[str, Any] | None, split: str) -> tuple[float, float] | None:
    return (gain[split]["low"], gain[split]["high"]) if gain else None


def _lengths(start: dict[str, Any], gain: dict[str, Any] | None) -> tuple[float, float, float, float] | None:
    if not gain or "length_ratio" not in start:
        return None
    return (start["length_ratio"]["valid"], start["length_ratio"]["test"],
            gain["valid"]["length_ratio_b"], gain["test"]["length_ratio_b"])


def load_run(path: Path) -> Run | None:
    """The run in one results file, or None if the file has no Multi30k section with an RL arm."""
    section = json.loads(path.read_text(encoding="utf-8")).get("multi30k")
    if not section or "mle_rl" not in section:
        return None
    args, mle, start, rl = section["args"], section["mle"], section["mle_snapshot"], section["mle_rl"]
    machine = section.get("machine", "")
    gain = rl.get("gain_over_mle")
    averaged = bool(args.get("ema"))  # [] or 0.0 (older files) when off
    return Run(
        name=path.stem, seed=int(args["seed"]), minutes=float(args["minutes"]), recipe=recipe_of(args),
        family=recipe_of(args, rl_seed=False), objective=recipe_of(args, rl_seed=False, computation=False),
        averaged=averaged,
        commit=machine.split("code: commit ")[1].split()[0].rstrip(";,") if "code: commit " in machine else "",
        cpu=cpu_of(machine), mle_steps=int(section["mle_steps"]),
        mle=(mle["valid_bleu"], mle["test_bleu"]), start=(start["valid_bleu"], start["test_bleu"]),
        rl=(rl["valid_bleu"], rl["test_bleu"]),
        intervals=(_interval(gain, "valid"), _interval(gain, "test")),
        selection_excess=_selection_excess(section) if averaged else None,
        lengths=_lengths(start, gain),
        mle_lengths=(gain["valid"]["length_ratio_a"], gain["test"]["length_ratio_a"]) if gain else None,
        mle_key=_mle_key(section, path.stem), reused="mle_from" in section)


def _mle_key(section: dict[str, Any], name: str) -> tuple[str, str]:
    """(command, date) of the run that trained the section's MLE arm; the file's name where it has none."""
    source = section.get("mle_from", section)
    return (source["command"].strip(), source.get("date", "")) if "command" in source else ("", name)


def load_runs(results: Path = RESULTS) -> list[Run]:
    """Every run in ``results/quality*.json``, ordered by budget, recipe and seed."""
    runs = [run for path in sorted(results.glob("quality*.json")) if (run := load_run(path))]
    trained = {r.mle_key: r.name for r in runs if not r.reused}
    runs = [replace(r, mle_of=trained.get(r.mle_key, "an uncommitted run")) if r.reused else r for r in runs]
    return sorted(runs, key=lambda r: (-r.minutes, r.recipe, r.seed, r.name))


def _signed(x: float, decimals: int = 2) -> str:
    return f"{x:+.{decimals}f}".replace("-", "\u2212")


def _gain_cell(gain: float, interval: tuple[float, float] | None) -> str:
    return _signed(gain) + (f" [{_signed(interval[0])}, {_signed(interval[1])}]" if interval else "")


def _mle_of(run: Run) -> str:
    if not run.reused:
        return ""
    return f", MLE of [{run.mle_of}]({run.mle_of}.md)" if run.mle_of.startswith("quality") else f", MLE of {run.mle_of}"


def _mean_row(label: str, by_mle: dict[tuple[str, str], list[Run]]) -> str:
    """One row of the means over MLE runs: each MLE run's RL runs averaged first, then the mean over MLE runs."""
    groups = sorted(by_mle.values(), key=lambda group: group[0].seed)
    seeds = [group[0].seed for group in groups]
    gains = [tuple(mean(r.gain[split] for r in group) for split in (0, 1)) for group in groups]
    counts = ["" if len(group) == 1 else f" ({len(group)})" for group in groups]
    per_seed = [" / ".join(_signed(g[split]) + n for g, n in zip(gains, counts)) for split in (0, 1)]
    return (f"| {label} | {', '.join(map(str, seeds))} | {per_seed[0]} | **{_signed(mean(g[0] for g in gains))}** "
            f"| {per_seed[1]} | **{_signed(mean(g[1] for g in gains))}** |")


def render(runs: list[Run]) -> str:
    """The Markdown table file."""
    lines = ["# Multi30k en->de: every committed quality run", "",
             "Rendered by `python -m benchmarks.multi30k_runs` from the `multi30k` sections of "
             "`benchmarks/results/quality*.json`; each run's command, machine and notes are in its own file. "
             "BLEU: sacrebleu corpus BLEU of greedy output, case-insensitive. MLE: the run's MLE arm at the full "
             "budget; start: the RL arm's MLE snapshot (budget minus the RL minutes); RL: that snapshot after RL. "
             "RL - MLE is the issue's measure (the target is +1); the interval is the run's paired bootstrap "
             "over sentences (95%), where the run recorded one. Length: the greedy outputs' length over the "
             "references' (corpus BLEU's brevity penalty applies below 1), from the RL arm's start to its end. CPU: the "
             "2-core machine the run had; the budget is time, so a faster one gives MLE more steps. \"MLE of X\": "
             "the run reused X's MLE arm and RL start (`--rl-from`) and ran only its RL arm, so the two runs' RL "
             "recipes are compared on one MLE run; the summaries below count each MLE run once.", "",
             "| run | budget, min | recipe | seed | CPU | MLE steps | MLE valid / test | start valid / test | RL valid / test "
             "| RL - MLE valid | RL - MLE test | length valid | length test |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(
            f"| [{r.name}]({r.name}.md){_mle_of(r)} | {r.minutes:g} | {r.recipe} | {r.seed} | {r.cpu} | {r.mle_steps:,} "
            f"| {r.mle[0]:.2f} / {r.mle[1]:.2f} | {r.start[0]:.2f} / {r.start[1]:.2f} | {r.rl[0]:.2f} / {r.rl[1]:.2f} "
            f"| {_gain_cell(r.gain[0], r.intervals[0])} | {_gain_cell(r.gain[1], r.intervals[1])} "
            + (f"| {r.lengths[0]:.3f} → {r.lengths[2]:.3f} | {r.lengths[1]:.3f} → {r.lengths[3]:.3f} |" if r.lengths else "| | |"))
    lines += ["", f"## Recipes run on more than one MLE seed at {FULL_BUDGET_MINUTES:g} minutes", "",
              "The recipe without its RL seed. RL runs on one MLE run (other RL seeds, RL reruns) are averaged "
              "first, so each MLE run counts once; (n): the mean of n RL runs on that MLE run. \"With and without "
              "the encoder once per source\": one RL objective over the MLE runs from before and after that change, "
              "which computes the same update (up to float rounding) in less time.", "",
              "| recipe | seeds | RL - MLE valid, per seed | mean | RL - MLE test2016, per seed | mean |",
              "|---|---|---|---|---|---|"]
    by_recipe: dict[str, dict[tuple[str, str], list[Run]]] = defaultdict(lambda: defaultdict(list))
    by_objective: dict[str, dict[tuple[str, str], list[Run]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r.minutes == FULL_BUDGET_MINUTES:
            by_recipe[r.family][r.mle_key].append(r)
            by_objective[r.objective][r.mle_key].append(r)
    lines += [_mean_row(recipe, by_mle) for recipe, by_mle in by_recipe.items() if len(by_mle) > 1]
    for objective, by_mle in by_objective.items():
        if len(by_mle) > 1 and len({r.family for group in by_mle.values() for r in group}) > 1:
            lines.append(_mean_row(f"{objective}; with and without the encoder once per source", by_mle))
    shared: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for r in runs:
        shared[r.mle_key].append(r)
    shared = {key: sorted(group, key=lambda r: r.reused) for key, group in shared.items() if len(group) > 1}
    if shared:
        lines += ["", "## RL recipes on one MLE run", "",
                  "Runs that share an MLE arm and RL start (`--rl-from`): their RL - MLE differ by the RL phase alone.",
                  "", "| MLE run | run | recipe | RL valid / test | RL - MLE valid | RL - MLE test |", "|---|---|---|---|---|---|"]
        for group in shared.values():
            lines += [f"| {group[0].name} | {r.name} | {r.recipe} | {r.rl[0]:.2f} / {r.rl[1]:.2f} "
                      f"| {_gain_cell(r.gain[0], r.intervals[0])} | {_gain_cell(r.gain[1], r.intervals[1])} |" for r in group]
    averaged = [r for r in runs if r.minutes == FULL_BUDGET_MINUTES and r.averaged and not r.reused]
    if averaged:
        tests = [r.mle[1] for r in averaged]
        lines += ["", f"## MLE alone at {FULL_BUDGET_MINUTES:g} minutes, with averaging", "",
                  f"Over the {len(averaged)} runs: test2016 {min(tests):.2f} to {max(tests):.2f}, mean "
                  f"**{mean(tests):.2f}**; at or above {MLE_TARGET:g} on {sum(t >= MLE_TARGET for t in tests)} of "
                  f"{len(averaged)}. Valid {min(r.mle[0] for r in averaged):.2f} to "
                  f"{max(r.mle[0] for r in averaged):.2f}, mean {mean(r.mle[0] for r in averaged):.2f}."]
        measured = [r.mle_lengths for r in averaged if r.mle_lengths]
        if measured:
            lines += ["", f"The greedy outputs' length over the references' in the {len(measured)} of them that record "
                      f"it: valid {min(v for v, _ in measured):.3f} to {max(v for v, _ in measured):.3f}, test2016 "
                      f"{min(t for _, t in measured):.3f} to {max(t for _, t in measured):.3f}. Below 1 the brevity "
                      "penalty applies, so a policy that shortens its outputs loses BLEU on valid sooner than on test."]
    checked = [r for r in runs if r.minutes == FULL_BUDGET_MINUTES and r.selection_excess is not None and not r.reused]
    lines += ["", "## Selection check", "",
              "The MLE arm is whichever weight candidate (last weights, each average) scores best on valid, which "
              "favours MLE on valid. Per run with averaging at the full budget: the chosen candidate's valid - test "
              "gap minus the mean gap of all the run's candidates (what choosing on valid added to the gap).", "",
              "| run | excess |", "|---|---|"]
    lines += [f"| {r.name} | {_signed(r.selection_excess)} |" for r in checked]
    if checked:
        lines += ["", f"Mean over the {len(checked)} runs: **{_signed(mean(r.selection_excess for r in checked), 3)}** BLEU."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of quality*.json (default: the committed one)")
    parser.add_argument("--check", action="store_true", help="exit 1 if multi30k_runs.md there is out of date")
    args = parser.parse_args(argv)
    table, text = args.results / TABLE.name, render(load_runs(args.results))
    if args.check:
        if not table.exists() or table.read_text(encoding="utf-8") != text:
            print(f"{table} is out of date: run python -m benchmarks.multi30k_runs", file=sys.stderr)
            return 1
        return 0
    table.write_text(text, encoding="utf-8")
    print(f"wrote {table} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
