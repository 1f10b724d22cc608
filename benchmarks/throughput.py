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
import functools
import importlib.metadata
import json
import os
import shlex
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from benchmarks.env_drivers import (
    COPY_PROB,
    ActionStream,
    Driver,
    batched_driver,
    naive_potential,
    reward_path_driver,
    scalar_driver,
    sync_driver,
)
from benchmarks.long_targets import LongTargetTask
from benchmarks.machine import machine_description
from ir_env import (
    REWARD_MODES,
    make_task,
)
from ir_env.tasks import BUILTIN_TASKS
from ir_env.tasks.base import Task

DEFAULT_OUT = Path("benchmarks/results/throughput.md")
CHUNK_SECONDS = 0.25  # actions are simulated in chunks of about this much env time
CONTENDED = 0.5  # mean other runnable processes above which a pass counts as slowed by others (marked †)


@dataclass(frozen=True)
class Settings:
    """What to measure and for how long."""

    seconds: float = 2.0
    """Minimum timed seconds of one pass of a cell."""
    repeats: int = 3
    """Passes per cell; the best one is reported."""
    warmup_seconds: float = 0.25
    """Untimed steps before the passes (capped at ``seconds``)."""
    tasks: tuple[str, ...] = tuple(BUILTIN_TASKS)
    """Built-in tasks of the ``scalar`` and ``compare`` sections."""
    rewards: tuple[str, ...] = REWARD_MODES
    """Reward shapings of the ``scalar`` section."""
    num_envs: tuple[int, ...] = (1, 64, 1024)
    """Batched env sizes in ``compare``; the largest one is the one the targets name."""
    sync_num_envs: tuple[int, ...] = (64, 1024)
    """SyncVectorEnv sizes in ``compare``."""
    sync_min_calls: int = 50
    """Minimum batch steps in one pass of a SyncVectorEnv cell (it is slow at large N)."""
    lengths: tuple[int, ...] = (16, 64, 256)
    """Output lengths L of the ``length`` section."""
    sweep_num_envs: int = 1024
    """N of the batched env in the ``length`` section."""
    sweep_metrics: tuple[str, ...] = ("bleu", "f1", "rouge_l")
    """Metrics swept over every length."""
    vader_length: int | None = 16
    """The one length VADER is measured at (it calls VADER once per row and token), or None."""
    retry_contended: bool = True
    """One more pass for a cell whose best pass ran while other processes were runnable."""
    fresh_processes: int = 5
    """Fresh processes the ``headline`` section measures the target cell in."""
    quick: bool = False
    """Marks the report as a quick run."""


QUICK = Settings(
    seconds=0.3, warmup_seconds=0.05, sync_min_calls=5, retry_contended=False, fresh_processes=2, quick=True
)


# -- timing --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One measurement: an env kind (scalar, naive, sync, batched, rewards) on a task, shaping and size."""

    env: str
    task: str
    reward: str = "instant"
    num_envs: int = 1

    @property
    def seed(self) -> int:
        # Its own seed per cell: VADER memoises prefixes per process, so cells must not replay each other.
        return zlib.crc32(repr(self).encode()) % 2**20


@dataclass(frozen=True)
class Measurement:
    """The best pass of a cell."""

    steps_per_second: float
    passes: int
    timed_seconds: float
    token_steps: int
    others_running: float  # mean runnable processes besides this one during the best pass (0 on a quiet machine)

    @property
    def ns_per_token(self) -> float:
        return 1e9 / self.steps_per_second

    @property
    def contended(self) -> bool:
        return self.others_running >= CONTENDED


@functools.cache
def task_named(name: str) -> Task:
    """A built-in task, or ``long:<metric>:<L>`` for a LongTargetTask."""
    if name.startswith("long:"):
        _, metric, length = name.split(":")
        return LongTargetTask(int(length), metric)
    return make_task(name)


def driver_for(cell: Cell) -> Driver:
    task = task_named(cell.task)
    if cell.env == "scalar":
        return scalar_driver(task, cell.reward)
    if cell.env == "naive":
        return scalar_driver(task, cell.reward, potential=naive_potential(task))
    if cell.env == "sync":
        return sync_driver(task, cell.num_envs, cell.reward)
    if cell.env == "batched":
        return batched_driver(task, cell.num_envs, cell.reward)
    if cell.env == "batched_no_text":
        return batched_driver(task, cell.num_envs, cell.reward, info_text=False)
    if cell.env == "batched_no_copy":
        return batched_driver(task, cell.num_envs, cell.reward, copy=False)
    if cell.env == "rewards":
        return reward_path_driver(task, cell.num_envs, cell.reward)
    raise ValueError(
        f"unknown env kind {cell.env!r}; expected scalar, naive, sync, batched, batched_no_text, batched_no_copy "
        "or rewards"
    )


class CellRun:
    """One cell's env, action stream and passes, so that the passes of many cells can take turns.

    Passes of the cells of a section run round-robin: when the machine slows down for a while (it is
    shared, and much of the slowdown comes from outside and is invisible here), every cell loses a pass
    to it rather than one cell losing all of them.
    """

    def __init__(self, cell: Cell, settings: Settings):
        self.cell, self.settings = cell, settings
        self.min_calls = settings.sync_min_calls if cell.env == "sync" else 1
        self.driver = driver_for(cell)
        self.stream = ActionStream(task_named(cell.task), self.driver.num_rows, cell.seed)
        self.driver.reset(self.stream.seed)
        self.calls_per_second = 0.0  # unknown until the warm-up
        self.passes: list[tuple[float, float]] = []  # (token steps/s, mean others running)
        self.total, self.token_steps = 0.0, 0

    def _chunk(self, calls: int) -> tuple[float, int]:
        """Seconds of ``calls`` steps (actions simulated before the clock starts), and the others then running."""
        chunk = self.driver.prepare(self.stream.next(calls))
        start = time.perf_counter()
        self.driver.run(chunk)
        return time.perf_counter() - start, _others_running()

    def warm_up(self) -> None:
        """Untimed steps in growing chunks, which also estimate the speed."""
        calls, warm, k = 0, 0.0, 1
        while warm < min(self.settings.warmup_seconds, self.settings.seconds):
            warm += self._chunk(k)[0]
            calls, k = calls + k, 2 * k
        self.calls_per_second = calls / warm

    def run_pass(self) -> None:
        """One timed pass of at least ``settings.seconds`` and ``min_calls`` steps."""
        if not self.calls_per_second:
            self.warm_up()
        seconds, done, elapsed, others = self.settings.seconds, 0, 0.0, []
        while elapsed < seconds or done < self.min_calls:
            need = max(self.min_calls - done, int(np.ceil((seconds - elapsed) * self.calls_per_second)), 1)
            k = min(need, max(1, int(CHUNK_SECONDS * self.calls_per_second)))
            wall, running = self._chunk(k)
            done, elapsed = done + k, elapsed + wall
            others.append(running)
        self.calls_per_second = done / elapsed
        self.passes.append((done * self.driver.num_rows / elapsed, float(np.mean(others))))
        self.total += elapsed
        self.token_steps += done * self.driver.num_rows
        self.stream.check(*self.driver.state())

    def wants_pass(self) -> bool:
        """Up to ``repeats`` passes (fewer when they already took ``repeats * seconds``), and one more when
        the best pass ran while other processes were runnable, in the hope of a quieter one."""
        s, passes = self.settings, self.passes
        if len(passes) < s.repeats:
            return not passes or self.total < s.repeats * s.seconds
        extra_time = self.total < (s.repeats + 1) * s.seconds
        return s.retry_contended and len(passes) == s.repeats and max(passes)[1] >= CONTENDED and extra_time

    def result(self) -> Measurement:
        best, others_running = max(self.passes)
        return Measurement(best, len(self.passes), self.total, self.token_steps, others_running)


def _others_running() -> int:
    """Runnable processes besides this one, from /proc/loadavg ("0.31 0.52 0.60 2/86 1234"); 0 if unknown."""
    try:
        return max(int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]) - 1, 0)
    except (OSError, IndexError, ValueError):
        return 0


class EnvBench:
    """Measures cells once each (sections share them) and keeps the results for the target checks.

    A section first hands all its cells to ``measure``, whose passes take turns; reading a cell
    (``bench(cell)``) measures it alone only if it was not measured before.
    """

    def __init__(
        self, settings: Settings, log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)
    ):
        self.settings = settings
        self.results: dict[Cell, Measurement] = {}
        self.log = log

    def measure(self, cells: Sequence[Cell]) -> None:
        """Measure every new cell of ``cells``, their passes round-robin."""
        runs = [CellRun(cell, self.settings) for cell in dict.fromkeys(cells) if cell not in self.results]
        while runs:
            for run in runs:
                run.run_pass()
            for run in [r for r in runs if not r.wants_pass()]:
                self._record(run)
            runs = [r for r in runs if r.cell not in self.results]

    def __call__(self, cell: Cell) -> Measurement:
        self.measure([cell])
        return self.results[cell]

    def _record(self, run: CellRun) -> None:
        cell, m = run.cell, run.result()
        self.results[cell] = m
        run.driver = None  # type: ignore[assignment]  # free the env (SyncVectorEnv of 1024 envs)
        self.log(
            f"  {cell.env:8s} {cell.task:18s} {cell.reward:8s} N={cell.num_envs:<5d} "
            f"{m.steps_per_second:>14,.0f} token steps/s  ({m.passes} passes, {m.token_steps:,} steps, "
            f"{m.timed_seconds:.1f} s, others running {m.others_running:.1f})"
        )


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


def measure_in_fresh_process(cell: Cell, settings: Settings) -> Measurement:
    """``cell`` measured by ``benchmarks.one_cell`` in a new Python process with the same settings."""
    args = [sys.executable, "-m", "benchmarks.one_cell", json.dumps(asdict(cell)), json.dumps(asdict(settings))]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {cell} in a fresh process failed:\n{done.stderr[-2000:]}")
    return Measurement(**json.loads(done.stdout.strip().splitlines()[-1]))


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

    bench.measure([c for m, L in plan for c in cells(m, L)])
    rows, growth, checks, views = [], [], [], []
    for metric, length in plan:
        ms = list(map(bench, cells(metric, length)))
        b, v = ms[0].ns_per_token, ms[-1].ns_per_token
        rows.append([metric, str(length), *(rate(m.ns_per_token, m) for m in ms), ratio(v / b)])
    for metric in s.sweep_metrics:
        cost = {L: [m.ns_per_token for m in map(bench, cells(metric, L))] for L in (lo, hi)}
        b, b_view, r, v = (cost[hi][i] / cost[lo][i] for i in range(4))
        growth.append([metric, ratio(b), ratio(b_view), ratio(r), ratio(v)])
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
        f"form), so it is measured at L={s.vader_length} only, as a cost reference against the other metrics."
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    bench.log(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
