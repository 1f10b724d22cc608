"""Throughput of the environments in token steps per second, against baselines run in the same script.

    python -m benchmarks.throughput [--quick] [--out benchmarks/results/throughput.md] [--seconds S]

One token of one episode is one step: a batched env of N rows makes N token steps per call. Every step
returns everything the env returns by default (observations, rewards, flags, infos with the action mask
and, at episode ends, the output and reference text).

What every cell runs: a copy-or-random policy (each token is the reference token at that position with
probability 1/2, else a uniform token of the task's action mask without EOS; past the end of the
reference, "copy" means EOS), so scores and episode lengths look like those of a learning policy. Its
actions are simulated ahead of the env by ``ActionStream``, which draws each new episode's example
exactly as the env does; timing covers only the env's ``step`` (and, for the scalar env, ``reset``). The
first episode of each row ends at a random length, so that a batch's episodes end at staggered steps as
they do in steady state. A cell warms up, then takes the best of up to three passes of at least S seconds
each (fewer passes when one pass of the minimum size already ran past 3 S, one more when the best pass
ran while another process was runnable; such cells are marked † in the report). The passes of a
section's cells take turns, so that a slow spell of the (shared) machine costs each cell one pass.

Sections (``--sections``; each returns tables and target checks, so more can be added):

- ``headline``: the 2M target's cell (translation/instant, batched, largest N) measured again in several
  fresh processes one after another (``benchmarks/one_cell.py``), with their median: on a shared machine
  one process can run a quarter faster or slower than the next, so one process is one draw.
- ``scalar``: ``InstantRewardEnv`` for every task and reward shaping.
- ``compare``: the scalar env against ``SyncVectorEnv`` of scalar envs, the batched env at several N,
  and the naive baseline that recomputes the metric from scratch on the whole prefix text at every step,
  as RL4LMs does (the scalar env with ``potential=`` a function calling the metric's reference package).
- ``length``: per-token cost against the output length on ``LongTargetTask`` (references of exactly L
  random words), batched and naive.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from benchmarks.env_drivers import COPY_PROB
from benchmarks.long_targets import DEFAULT_NUM_EXAMPLES
from benchmarks.machine import machine_description, write_results
from benchmarks.timing import (
    CONTENDED,
    QUICK,
    Cell,
    EnvBench,
    Measurement,
    Settings,
    measure_in_fresh_process,
    task_named,
)
from ir_env.tasks import BUILTIN_TASKS

DEFAULT_OUT = Path("benchmarks/results/throughput.md")


# -- report --------------------------------------------------------------------------------------------
@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.header) + " |", "|" + "|".join("---" for _ in self.header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in self.rows])


@dataclass
class Check:
    """A target and its measured value."""

    target: str
    measured: str
    met: bool

    def markdown(self) -> str:
        return f"- [{'x' if self.met else ' '}] {self.target}: measured {self.measured}"


@dataclass
class Section:
    title: str
    notes: str
    tables: list[Table]
    checks: list[Check] = field(default_factory=list)

    def markdown(self) -> str:
        return "\n\n".join([f"## {self.title}", self.notes] + [t.markdown() for t in self.tables])


def rate(value: float, m: Measurement | None = None) -> str:
    """``value`` with thousands separators, marked † when ``m`` ran while other processes were runnable."""
    return f"{value:,.0f}" + ("†" if m is not None and m.contended else "")


def ratio(value: float) -> str:
    return f"{value:,.2f}x" if value < 10 else f"{value:,.0f}x"


def headline_section(bench: EnvBench) -> Section:
    """The 2M target's cell in several fresh processes one after another, and their median."""
    s = bench.settings
    n, k = max(s.num_envs), s.fresh_processes
    cell = Cell("batched", "translation", num_envs=n)
    runs = []
    for i in range(k):
        runs.append(measure_in_fresh_process(cell, s))
        bench.log(f"  fresh process {i + 1}/{k}: {runs[-1].steps_per_second:,.0f} token steps/s")
    median = float(np.median([m.steps_per_second for m in runs]))
    rows = [[str(i + 1), rate(m.steps_per_second, m)] for i, m in enumerate(runs)] + [["median", rate(median)]]
    target = f"at least 2,000,000 token steps/s on translation/instant at N={n}, median of {k} fresh processes"
    notes = (
        f"The cell of the 2M target (`BatchedInstantRewardEnv`, translation, instant shaping, N={n}, everything "
        f"a step returns by default) measured {k} times, each time in a new Python process "
        f"(`benchmarks/one_cell.py`, best of its passes as in every cell), one after another: on this shared "
        f"machine one process can run a quarter faster or slower than the next, more than the passes within "
        f"one process differ, so the target is checked on the median."
    )
    table = Table(["process", "token steps/s"], rows)
    check = Check(target, rate(median), median >= 2e6)
    return Section("Headline: the 2M target's cell in fresh processes", notes, [table], [check])


def scalar_section(bench: EnvBench) -> Section:
    """``InstantRewardEnv`` token steps per second for every task and shaping."""
    s = bench.settings
    bench.measure([Cell("scalar", task, reward) for task in s.tasks for reward in s.rewards])
    rows = []
    for task in s.tasks:
        cells = [rate(m.steps_per_second, m) for m in (bench(Cell("scalar", task, reward)) for reward in s.rewards)]
        rows.append([task, task_named(task).metric_name] + cells)
    notes = (
        "`InstantRewardEnv(task, reward=...)` stepped one token at a time and reset by the loop at each "
        "episode end (the reset is timed too). Token steps per second, higher is better."
    )
    return Section(
        "Scalar env: token steps per second per task and shaping", notes, [Table(["task", "metric", *s.rewards], rows)]
    )


def comparison_section(bench: EnvBench) -> Section:
    """The scalar env against the naive baseline, SyncVectorEnv and the batched env (instant shaping)."""
    s = bench.settings
    kinds = [("scalar", "InstantRewardEnv", 1), ("naive", "naive: metric from scratch per step", 1)]
    kinds += [("sync", "SyncVectorEnv of InstantRewardEnv", n) for n in s.sync_num_envs]
    kinds += [("batched", "BatchedInstantRewardEnv", n) for n in s.num_envs]
    kinds += [("batched_no_text", "BatchedInstantRewardEnv, info_text=False", max(s.num_envs))]
    bench.measure([Cell(env, task, num_envs=n) for task in s.tasks for env, _, n in kinds])
    rows, checks = [], []
    for task in s.tasks:
        base = bench(Cell("scalar", task)).steps_per_second
        for env, label, n in kinds:
            m = bench(Cell(env, task, num_envs=n))
            rows.append([task, label, str(n), rate(m.steps_per_second, m), ratio(m.steps_per_second / base)])
    big, task = max(s.num_envs), "translation"
    if task in s.tasks:
        batched = bench(Cell("batched", task, num_envs=big)).steps_per_second
        target = f"at least 2,000,000 token steps/s on translation/instant at N={big}, in this process"
        checks.append(Check(target, rate(batched), batched >= 2e6))
        if big in s.sync_num_envs:
            sync = bench(Cell("sync", task, num_envs=big)).steps_per_second
            target = f"batched env at least 50x SyncVectorEnv at N={big} on translation/instant"
            checks.append(Check(target, ratio(batched / sync), batched >= 50 * sync))
    notes = (
        "Instant shaping. *naive* is the scalar env with `potential=` a plain function (source, prefix, "
        "reference ids) -> float that rebuilds the prefix text and calls the metric's reference package on "
        "it at every step, as RL4LMs computes per-token rewards (sacrebleu `BLEU(tokenize='none')` "
        "sentence score / 100, `squad_f1`, rouge-score's `RougeScorer(['rougeL'])`, vaderSentiment's "
        "compound x the wanted polarity); its rewards equal the instant env's (tests/test_benchmarks.py). "
        "SyncVectorEnv (of `InstantRewardEnv` built directly, no `gym.make` wrappers) uses "
        "`autoreset_mode=SAME_STEP`, as the batched env does; a pass of it runs at least "
        f"{s.sync_min_calls} batch steps, and at N=1024 one pass is all the budget allows. The batched env is "
        "the class `gym.make_vec(id, num_envs=N)` returns; its *info_text=False* row leaves out the decoded `text` "
        "and `reference` strings of finished episodes (what the trainer does: it needs ids, not strings), to show "
        "what decoding text costs; the targets are checked on the default, text included. *x scalar*: speed "
        "over the scalar env's, same task."
    )
    return Section(
        "Env comparison: token steps per second",
        notes,
        [Table(["task", "env", "N", "token steps/s", "x scalar"], rows)],
        checks,
    )


def length_section(bench: EnvBench) -> Section:
    """Per-token cost against the output length L on LongTargetTask, batched and naive."""
    s = bench.settings
    n, lo, hi = s.sweep_num_envs, min(s.lengths), max(s.lengths)
    plan = [(metric, length) for metric in s.sweep_metrics for length in s.lengths]
    if s.vader_length is not None:
        plan.append(("vader", s.vader_length))
    def cells(metric: str, length: int) -> tuple[Cell, ...]:  # batched, batched copy=False, reward path, naive
        task = f"long:{metric}:{length}"
        batched = [Cell(env, task, num_envs=n) for env in ("batched", "batched_no_copy", "rewards")]
        return (*batched, Cell("naive", task))

    def cache_cell(metric: str) -> Cell:  # the longest L on few references: the same work, tables in cache
        return Cell("rewards", f"long:{metric}:{hi}:{s.cache_check_examples}", num_envs=n)

    bench.measure([c for m, L in plan for c in cells(m, L)] + [cache_cell(m) for m in s.sweep_metrics])
    rows, growth, checks, views, cache = [], [], [], [], []
    for metric, length in plan:
        ms = list(map(bench, cells(metric, length)))
        b, v = ms[0].ns_per_token, ms[-1].ns_per_token
        rows.append([metric, str(length), *(rate(m.ns_per_token, m) for m in ms), ratio(v / b)])
    for metric in s.sweep_metrics:
        cost = {L: [m.ns_per_token for m in map(bench, cells(metric, L))] for L in (lo, hi)}
        b, b_view, r, v = (cost[hi][i] / cost[lo][i] for i in range(4))
        growth.append([metric, ratio(b), ratio(b_view), ratio(r), ratio(v)])
        few = bench(cache_cell(metric)).ns_per_token
        cache.append([metric, rate(cost[lo][2]), rate(cost[hi][2]), rate(few), ratio(few / cost[lo][2])])
        checks.append(Check(f"batched per-token cost ratio L={hi} / L={lo} at most 1.5 ({metric})", ratio(b), b <= 1.5))
        target = f"the same with copy=False, the trainer's setting ({metric})"
        views.append(Check(target, ratio(b_view), b_view <= 1.5))
    checks += views
    notes = (
        f"`LongTargetTask`: references of exactly L uniform words from a vocabulary of about 1,000, the "
        f"output cap is L, the metric is the env's own class; the copy-or-random policy writes L tokens per "
        f"episode. Batched env at N={n}; naive as in the comparison (scalar env). *reward path*: the batched "
        f"env's `EpisodeBatch.step` (bookkeeping, metric, shaping) and resets alone, without the observation "
        f"and infos a step returns: the observation holds the (N, L) prefix, fresh every step, so copying it "
        f"costs O(L) per token step whatever the metric does. *copy=False*: the batched env built with "
        f"`copy=False` (gymnasium's `SyncVectorEnv(copy=...)` option), whose observations are read-only views "
        f"of its buffers, changed in place by the next step: everything else a step returns, without that "
        f"copy (our trainer runs it so). Nanoseconds per token step, "
        f"lower is better. VADER calls the VADER package once per row and token by design (no incremental "
        f"form), so it is measured at L={s.vader_length} only, as a cost reference against the other metrics. "
        f"*Cache check* (last table): the reward path at L={hi} again, on {s.cache_check_examples} examples per "
        f"split instead of {DEFAULT_NUM_EXAMPLES}: the same operations per token, but the examples' lookup tables "
        f"(reference n-grams, words) now stay in the cores' caches. Where this brings the cost back to that at "
        f"L={lo}, the growth above is memory traffic (tables of {DEFAULT_NUM_EXAMPLES} references read at random), "
        f"not work per token."
    )
    tables = [
        Table(
            ["metric", "L", f"batched N={n}: ns/token", "copy=False", "reward path", "naive: ns/token",
             "naive / batched"],
            rows,
        ),
        Table(
            ["metric", f"batched cost(L={hi}) / cost(L={lo})", "copy=False", "reward path",
             f"naive cost(L={hi}) / cost(L={lo})"],
            growth,
        ),
        Table(
            ["metric", f"reward path L={lo}", f"L={hi}", f"L={hi}, {s.cache_check_examples} examples",
             f"cost(L={hi}, {s.cache_check_examples} examples) / cost(L={lo})"],
            cache,
        ),
    ]
    return Section("Length sweep: per-token cost against the output length", notes, tables, checks)


#: name -> section; each is measured with a shared EnvBench.
SECTIONS: dict[str, Callable[[EnvBench], Section]] = {
    "headline": headline_section,
    "scalar": scalar_section,
    "compare": comparison_section,
    "length": length_section,
}


def package_versions() -> str:
    """Versions of the reference packages the naive baseline calls."""
    return ", ".join(
        f"{pkg} {importlib.metadata.version(pkg)}" for pkg in ("sacrebleu", "rouge-score", "vaderSentiment")
    )


def report(sections: Sequence[Section], command: str, settings: Settings, elapsed: float, load: str) -> str:
    """The Markdown report: command, date, machine, targets, then each section."""
    checks = [c for section in sections for c in section.checks]
    head = [
        "# Throughput: token steps per second" + (" (quick run)" if settings.quick else ""),
        (
            f"Command: `{command}`  \nDate: {datetime.datetime.now().isoformat(timespec='minutes')}  \n"
            f"Machine: {machine_description()}  \nReference packages: {package_versions()}  \n"
            f"Run time: {elapsed:.0f} s; {load}"
        ),
        (
            "One token of one episode is one step. Each cell runs a copy-or-random policy (reference token with "
            f"probability {COPY_PROB}, else a random allowed token) whose actions are simulated before timing; "
            f"best of up to {settings.repeats} passes of at least {settings.seconds:g} s after a warm-up, the passes "
            "of a section's cells taking turns. Steps "
            "return everything the env returns by default (observations, rewards, flags, infos, action masks, "
            "final text). A † marks a cell whose best pass ran while another process was runnable on the "
            f"machine (on average at least {CONTENDED} of one): such cells can read 20-40% low. See the docstring "
            "of `benchmarks/throughput.py`."
        ),
    ]
    if checks:
        head.append("## Targets\n\n" + "\n".join(c.markdown() for c in checks))
    return "\n\n".join(head + [s.markdown() for s in sections]) + "\n"


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short passes (0.3 s) for a smoke run")
    parser.add_argument("--seconds", type=float, help="minimum seconds of one timed pass (default 2, quick 0.3)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the Markdown report (default {DEFAULT_OUT})")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, from {list(SECTIONS)}")
    parser.add_argument("--tasks", help="comma-separated built-in tasks (default all)")
    parser.add_argument("--num-envs", type=_ints, help="batched env sizes, e.g. 1,64,1024")
    parser.add_argument("--sync-num-envs", type=_ints, help="SyncVectorEnv sizes, e.g. 64,1024")
    parser.add_argument("--lengths", type=_ints, help="output lengths of the length sweep, e.g. 16,64,256")
    parser.add_argument("--sweep-num-envs", type=int, help="batched env size of the length sweep (default 1024)")
    parser.add_argument("--fresh-processes", type=int, help="processes of the headline section (default 5, quick 2)")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else Settings()
    overrides = {
        "seconds": args.seconds,
        "tasks": tuple(args.tasks.split(",")) if args.tasks else None,
        "num_envs": args.num_envs,
        "sync_num_envs": args.sync_num_envs,
        "lengths": args.lengths,
        "sweep_num_envs": args.sweep_num_envs,
        "fresh_processes": args.fresh_processes,
    }
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(args.sections.split(",")) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; expected names from {list(SECTIONS)}")
    unknown = sorted(set(settings.tasks) - set(BUILTIN_TASKS))
    if unknown:
        parser.error(f"unknown tasks {unknown}; expected names from {list(BUILTIN_TASKS)}")
    if settings.fresh_processes < 1:
        parser.error(f"--fresh-processes must be at least 1, got {settings.fresh_processes}")
    if settings.seconds <= 0:
        parser.error(f"--seconds must be positive, got {settings.seconds}")
    return args, settings


def main(argv: Sequence[str] | None = None) -> Path:
    """Run the sections, print the report and write it to ``--out``; returns the path written."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args, settings = parse_args(argv)
    start, load_start = time.perf_counter(), _load()
    bench = EnvBench(settings)
    sections = []
    for name in args.sections.split(","):
        bench.log(f"section {name}")
        sections.append(SECTIONS[name](bench))
    command = " ".join(["python -m benchmarks.throughput", *map(shlex.quote, argv)])
    others = [m.others_running for m in bench.results.values()] or [float("nan")]
    load = (
        f"1-minute load average {load_start:.1f} at the start, {_load():.1f} at the end; other runnable "
        f"processes sampled during the reported passes: mean {np.mean(others):.2f}, at most {max(others):.2f} "
        f"in one cell ({os.cpu_count()} cores)"
    )
    text = report(sections, command, settings, time.perf_counter() - start, load)
    print(text)
    write_results(text, args.out)
    bench.log(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
