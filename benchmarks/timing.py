"""How ``benchmarks.throughput`` times one cell: settings, cells, passes that take turns, fresh processes.

A cell is one env kind on one task, shaping and size; ``EnvBench`` measures cells (the passes of a
section's cells round-robin) and keeps the best pass of each. See the docstring of
``benchmarks/throughput.py`` for the method.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks.env_drivers import (
    ActionStream,
    Driver,
    batched_driver,
    naive_potential,
    reward_path_driver,
    scalar_driver,
    sync_driver,
)
from benchmarks.long_targets import LongTargetTask
from ir_env import REWARD_MODES, make_task
from ir_env.tasks import BUILTIN_TASKS
from ir_env.tasks.base import Task

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
    cache_check_examples: int = 8
    """Examples per split of the ``length`` section's cache check: the reward path at the longest L again, on
    so few references that their lookup tables stay in cache."""
    retry_contended: bool = True
    """One more pass for a cell whose best pass ran while other processes were runnable."""
    fresh_processes: int = 5
    """Fresh processes the ``headline`` section measures the target cell in."""
    quick: bool = False
    """Marks the report as a quick run."""


QUICK = Settings(
    seconds=0.3, warmup_seconds=0.05, sync_min_calls=5, retry_contended=False, fresh_processes=2, quick=True
)


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
    """A built-in task, or ``long:<metric>:<L>[:<examples per split>]`` for a LongTargetTask."""
    if name.startswith("long:"):
        _, metric, length, *examples = name.split(":")
        return LongTargetTask(int(length), metric, **({"num_examples": int(examples[0])} if examples else {}))
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


def measure_in_fresh_process(cell: Cell, settings: Settings) -> Measurement:
    """``cell`` measured by ``benchmarks.one_cell`` in a new Python process with the same settings."""
    args = [sys.executable, "-m", "benchmarks.one_cell", json.dumps(asdict(cell)), json.dumps(asdict(settings))]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {cell} in a fresh process failed:\n{done.stderr[-2000:]}")
    return Measurement(**json.loads(done.stdout.strip().splitlines()[-1]))
