"""Where one arm of a Multi30k quality run beats another: corpus BLEU's change split into its parts.

    python -m benchmarks.compare_outputs RUN_OUT --data-dir ../shared/data              # MLE + RL against MLE
    python -m benchmarks.compare_outputs RUN_OUT --data-dir ../shared/data --a mle_snapshot --b mle_rl

Reads the greedy outputs ``benchmarks.quality`` writes to ``RUN_OUT/multi30k_outputs/<arm>.<split>.txt`` (arms
``mle``, ``mle_snapshot``, ``mle_rl``) and the raw references, and prints for each split (valid, test2016):

- corpus BLEU of arm A and arm B (as ``benchmarks.quality`` scores them) and the change of log BLEU, split
  exactly into its parts: log BLEU = log BP + (1/4) sum_n (log matches_n - log totals_n), so the change is the
  brevity penalty's part plus, for each n-gram order, what more (or fewer) matches and what more (or fewer)
  output n-grams contributed;
- how many sentences' outputs differ between the arms, how many of those gained or lost BLEU (the corpus
  formula on the one sentence), and how many got fewer or more words;
- how many outputs of each arm end with a full stop (an arm that shortens its outputs while still ending them
  with one drops words inside the sentence rather than stopping sooner);
- the BLEU change within thirds of the split by reference length.

A question it answers: does RL gain on one split and not on the other through the brevity penalty, through
the precisions, or in sentences of some length?
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from benchmarks.corpus_bleu import (
    bleu_of_statistics,
    bleu_statistics,
    multi30k_references,
)

ARMS = ("mle", "mle_snapshot", "mle_rl")
SPLITS = {"valid": "valid", "test": "test2016"}
OUTPUTS_DIR = "multi30k_outputs"


def save_outputs(out: str | Path, arm: str, outputs: dict[str, list[str]]) -> None:
    """Write an arm's greedy outputs to ``<out>/multi30k_outputs/<arm>.<split>.txt``, one sentence a line, in
    the split's order (``benchmarks.quality`` calls this; ``read_outputs`` reads them back)."""
    folder = Path(out) / OUTPUTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for split, hyps in outputs.items():
        (folder / f"{arm}.{split}.txt").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")


def read_outputs(run_out: Path, arm: str, split: str, size: int) -> list[str]:
    """An arm's outputs on a split, one per line; a missing file or a wrong line count is an error naming it."""
    path = run_out / OUTPUTS_DIR / f"{arm}.{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no outputs of arm {arm!r} on {split} (written by benchmarks.quality "
                                f"from commit 4641b32 on)")
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines[-1] != "" or len(lines) - 1 != size:
        raise ValueError(f"{path}: expected {size} lines, one output per sentence of {split}, got {len(lines) - 1}")
    return lines[:-1]


def log_bleu_parts(stats: np.ndarray) -> dict[str, float]:
    """log BLEU's parts of summed ``bleu_statistics`` rows (every order matched at least once): the brevity
    penalty's log and, per order n, log matches_n / 4 and -log totals_n / 4. They sum to log(BLEU / 100)."""
    for n in range(4):
        if stats[2 + n] == 0:
            raise ValueError(f"no {n + 1}-gram match in the whole split: corpus BLEU is then smoothed, and its log "
                             "does not split into these parts")
    sys_len, ref_len = float(stats[0]), float(stats[1])
    parts = {"brevity penalty": min(0.0, 1.0 - ref_len / sys_len)}
    for n in range(4):
        parts[f"{n + 1}-gram matches"] = np.log(stats[2 + n]) / 4
        parts[f"{n + 1}-gram totals"] = -np.log(stats[6 + n]) / 4
    return parts


def compare(a: list[str], b: list[str], references: list[str]) -> dict:
    """Arm B against arm A on one split's references: the numbers the report prints."""
    sa, sb = bleu_statistics(a, references), bleu_statistics(b, references)
    ta, tb = sa.sum(axis=0), sb.sum(axis=0)
    pa, pb = log_bleu_parts(ta), log_bleu_parts(tb)
    bleu_a, bleu_b = bleu_of_statistics(ta), bleu_of_statistics(tb)
    changed = np.array([x != y for x, y in zip(a, b)])
    sentence_a = np.array([bleu_of_statistics(row) for row in sa[changed]])
    sentence_b = np.array([bleu_of_statistics(row) for row in sb[changed]])
    thirds = np.array_split(np.argsort(sa[:, 1], kind="stable"), 3)  # by reference length
    return {
        "bleu": (bleu_a, bleu_b),
        "length": (ta[0] / ta[1], tb[0] / tb[1]),
        "parts": {k: pb[k] - pa[k] for k in pa},
        "log_change": float(np.log(bleu_b / bleu_a)),
        "sentences": len(a),
        "changed": int(changed.sum()),
        "better": int((sentence_b > sentence_a).sum()),
        "worse": int((sentence_b < sentence_a).sum()),
        "shorter": int((sb[:, 0] < sa[:, 0]).sum()),
        "longer": int((sb[:, 0] > sa[:, 0]).sum()),
        "full_stop": (sum(h.rstrip().endswith(".") for h in a), sum(h.rstrip().endswith(".") for h in b)),
        "by_length": [
            (int(sa[i, 1].min()), int(sa[i, 1].max()), bleu_of_statistics(sa[i].sum(axis=0)),
             bleu_of_statistics(sb[i].sum(axis=0)))
            for i in thirds
        ],
    }


def report(run_out: Path, arm_a: str, arm_b: str, references: dict[str, list[str]]) -> str:
    lines = [f"# {arm_b} against {arm_a}: {run_out}", ""]
    for split, name in SPLITS.items():
        refs = references[split]
        c = compare(read_outputs(run_out, arm_a, split, len(refs)), read_outputs(run_out, arm_b, split, len(refs)), refs)
        (ba, bb), (la, lb) = c["bleu"], c["length"]
        lines += [f"## {name}", "",
                  f"BLEU {ba:.2f} -> {bb:.2f} ({bb - ba:+.2f}); output/reference length {la:.3f} -> {lb:.3f}; "
                  f"{c['changed']} of {c['sentences']} outputs differ: {c['better']} gain BLEU on their own, "
                  f"{c['worse']} lose it; {c['shorter']} got fewer words, {c['longer']} more. Outputs ending with a "
                  f"full stop: {c['full_stop'][0]} -> {c['full_stop'][1]}", "",
                  f"Change of log BLEU, {c['log_change']:+.4f}, by part (they sum to it):", "",
                  "| part | change of log BLEU |", "|---|---|"]
        lines += [f"| {k} | {v:+.4f} |" for k, v in c["parts"].items()]
        lines += ["", "By reference length (thirds of the split):", "",
                  "| reference words | BLEU A | BLEU B | change |", "|---|---|---|---|"]
        lines += [f"| {lo}-{hi} | {x:.2f} | {y:.2f} | {y - x:+.2f} |" for lo, hi, x, y in c["by_length"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_out", type=Path, help="the --out folder of a benchmarks.quality run")
    parser.add_argument("--data-dir", default=None, help="data folder holding multi30k/ (default: $IR_DATA_DIR)")
    parser.add_argument("--a", default="mle", choices=ARMS, help="the arm compared against (default mle)")
    parser.add_argument("--b", default="mle_rl", choices=ARMS, help="the arm compared (default mle_rl)")
    args = parser.parse_args(argv)
    if args.data_dir is not None:
        os.environ["IR_DATA_DIR"] = str(Path(args.data_dir).resolve())
    text = report(args.run_out, args.a, args.b, multi30k_references())
    print(text)
    return text


if __name__ == "__main__":
    main()
