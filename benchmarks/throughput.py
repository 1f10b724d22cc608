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
ran while another process was runnable; such cells are marked † in the report).

Sections (``--sections``; each returns tables and target checks, so more can be added):

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
import os
import shlex
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from benchmarks.long_targets import METRICS, POLARITY_TOKENS, LongTargetTask
from benchmarks.machine import machine_description
from ir_env import (
    EOS,
    REWARD_MODES,
    BatchedInstantRewardEnv,
    InstantRewardEnv,
    make_task,
)
from ir_env.episodes import ExampleSampler
from ir_env.rewards.base import PotentialFn
from ir_env.tasks import TASKS
from ir_env.tasks.base import Task

DEFAULT_OUT = Path("benchmarks/results/throughput.md")
COPY_PROB = 0.5  # the policy copies the reference token with this probability
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
    tasks: tuple[str, ...] = tuple(TASKS)
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
    quick: bool = False
    """Marks the report as a quick run."""


QUICK = Settings(seconds=0.3, warmup_seconds=0.05, sync_min_calls=5, quick=True)


# -- the policy ----------------------------------------------------------------------------------------
class ActionStream:
    """The copy-or-random policy's actions for N rows, simulated ahead of an env reset with ``seed``.

    It mirrors the env's episode bookkeeping (one ``ExampleSampler`` RNG per row, seeded ``seed + i`` as
    the env seeds row i; an episode ends at EOS or at the length cap), so the actions it returns are those
    the policy would take on the env's own episodes, while the policy's cost stays out of the timing.

    Args:
        task: the task the env runs.
        num_rows: N.
        seed: the seed the env is reset with.
        split: the env's split.
        copy_prob: probability of copying the reference token.
    """

    def __init__(self, task: Task, num_rows: int, seed: int, split: str = "train", copy_prob: float = COPY_PROB):
        examples = task.examples(split)
        self.reference, self.reference_len = examples.reference, examples.reference_len
        self.max_len = task.max_generation_len
        mask = task.action_mask().copy()
        mask[EOS] = False
        self.tokens = np.flatnonzero(mask)  # the random half never ends an episode
        self.seed, self.num_rows, self.copy_prob = seed, num_rows, copy_prob
        self.sampler = ExampleSampler(len(examples), [seeding.np_random(seed + i)[0] for i in range(num_rows)])
        self.rng = np.random.default_rng([seed, 1])
        self.example = self.sampler.draw(np.arange(num_rows))  # (N,)
        self.length = np.zeros(num_rows, dtype=np.int64)  # (N,)
        self.first_stop = self.rng.integers(1, self.max_len + 1, size=num_rows)  # staggers the first episodes
        self.fresh = np.ones(num_rows, dtype=bool)
        self.episodes = 0

    def next(self, calls: int) -> np.ndarray:
        """(calls, N) int64 actions of the next ``calls`` steps."""
        n, width = self.num_rows, self.reference.shape[1]
        copy = self.rng.random((calls, n)) < self.copy_prob
        random_tokens = self.tokens[self.rng.integers(len(self.tokens), size=(calls, n))]
        out = np.empty((calls, n), dtype=np.int64)
        for t in range(calls):
            pos, e = self.length, self.example
            target = np.where(pos < self.reference_len[e], self.reference[e, np.minimum(pos, width - 1)], EOS)
            action = np.where(copy[t], target, random_tokens[t])
            action[self.fresh & (pos == self.first_stop)] = EOS
            out[t] = action
            self.length = pos + (action != EOS)
            ended = np.flatnonzero((action == EOS) | (self.length >= self.max_len))
            if len(ended):
                self.example[ended] = self.sampler.draw(ended)
                self.length[ended] = 0
                self.fresh[ended] = False
                self.episodes += len(ended)
        return out

    def check(self, example_ids: np.ndarray, lengths: np.ndarray) -> None:
        """Raise if the env's episodes left the simulated ones (the timing would no longer be of this policy)."""
        if not (np.array_equal(example_ids, self.example) and np.array_equal(lengths, self.length)):
            raise RuntimeError(
                "the env's episodes differ from the ActionStream's simulation; was it reset with its seed?"
            )


# -- envs under test -----------------------------------------------------------------------------------
@dataclass
class Driver:
    """One env under test: how to reset it, run a chunk of actions, and read its episode state."""

    num_rows: int
    reset: Callable[[int], object]
    run: Callable[[object], None]
    state: Callable[[], tuple[np.ndarray, np.ndarray]]
    prepare: Callable[[np.ndarray], object] = lambda chunk: chunk  # untimed conversion of a chunk


def scalar_driver(task: Task, reward: str = "instant", potential: PotentialFn | None = None) -> Driver:
    """``InstantRewardEnv``, reset by the caller at every episode end as a user loop does."""
    env = InstantRewardEnv(task=task, reward=reward, potential=potential)

    def run(actions: list[int]) -> None:
        step, reset = env.step, env.reset
        for a in actions:
            if step(a)[2]:
                reset()

    def state() -> tuple[np.ndarray, np.ndarray]:
        return env.episodes.example_ids, env.episodes.length

    return Driver(1, lambda seed: env.reset(seed=seed), run, state, lambda chunk: chunk[:, 0].tolist())


def _step_each(env: BatchedInstantRewardEnv | SyncVectorEnv) -> Callable[[np.ndarray], None]:
    def run(actions: np.ndarray) -> None:  # (calls, N)
        step = env.step
        for a in actions:
            step(a)

    return run


def batched_driver(task: Task, num_envs: int, reward: str = "instant") -> Driver:
    """``BatchedInstantRewardEnv`` (what ``gym.make_vec(id, num_envs=N)`` returns)."""
    env = BatchedInstantRewardEnv(num_envs=num_envs, task=task, reward=reward)

    def state() -> tuple[np.ndarray, np.ndarray]:
        return env.episodes.example_ids, env.episodes.length

    return Driver(num_envs, lambda seed: env.reset(seed=seed), _step_each(env), state)


def sync_driver(task: Task, num_envs: int, reward: str = "instant") -> Driver:
    """``gymnasium.vector.SyncVectorEnv`` of scalar envs with same-step autoreset."""
    fns = [functools.partial(InstantRewardEnv, task=task, reward=reward) for _ in range(num_envs)]
    env = SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)

    def state() -> tuple[np.ndarray, np.ndarray]:
        eps = [e.episodes for e in env.envs]
        return np.array([ep.example_ids[0] for ep in eps]), np.array([ep.length[0] for ep in eps])

    return Driver(num_envs, lambda seed: env.reset(seed=seed), _step_each(env), state)


def naive_potential(task: Task) -> PotentialFn:
    """Phi recomputed from scratch on the whole prefix text by the metric's reference package, as RL4LMs does.

    The function takes (source ids, prefix ids, reference ids) as ``potential=`` expects; the reference's
    text is remembered per reference (a peer keeps reference strings), the prefix's is rebuilt every step.
    """
    vocab, name = task.vocab, task.metric_name
    references: dict[bytes, str] = {}

    def words(ids: np.ndarray) -> str:  # BLEU's text: the tokens joined by spaces (tokenize="none")
        return " ".join([vocab.tokens[i] for i in ids.tolist()])

    def reference_text(ids: np.ndarray, text: Callable[[np.ndarray], str]) -> str:
        key = ids.tobytes()
        if key not in references:
            references[key] = text(ids)
        return references[key]

    if name == "bleu":
        from sacrebleu.metrics import BLEU

        bleu = BLEU(tokenize="none", effective_order=True)  # what sacrebleu.sentence_bleu builds every call
        return lambda s, p, r: bleu.sentence_score(words(p), [reference_text(r, words)]).score / 100
    if name == "f1":
        from ir_env.rewards.f1 import squad_f1

        return lambda s, p, r: squad_f1(vocab.detokenize(p), reference_text(r, vocab.detokenize))
    if name == "rouge_l":
        from rouge_score.rouge_scorer import RougeScorer

        scorer = RougeScorer(["rougeL"], use_stemmer=False)
        return lambda s, p, r: scorer.score(reference_text(r, vocab.detokenize), vocab.detokenize(p))["rougeL"].fmeasure
    if name == "vader":
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        analyzer = SentimentIntensityAnalyzer()
        sign = {vocab.id(POLARITY_TOKENS[0]): 1.0, vocab.id(POLARITY_TOKENS[1]): -1.0}  # the source's first token
        return lambda s, p, r: sign[int(s[0])] * analyzer.polarity_scores(vocab.detokenize(p))["compound"]
    raise ValueError(f"no naive baseline for metric {name!r}; expected one of {list(METRICS)}")


# -- timing --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One measurement: an env kind (scalar, naive, sync, batched) on a task, shaping and size."""

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
    raise ValueError(f"unknown env kind {cell.env!r}; expected scalar, naive, sync or batched")


def _timed_chunk(driver: Driver, stream: ActionStream, calls: int) -> tuple[float, int]:
    """Seconds of ``calls`` steps (actions simulated before the clock starts), and the others then running."""
    chunk = driver.prepare(stream.next(calls))
    start = time.perf_counter()
    driver.run(chunk)
    return time.perf_counter() - start, _others_running()


def _others_running() -> int:
    """Runnable processes besides this one, from /proc/loadavg ("0.31 0.52 0.60 2/86 1234"); 0 if unknown."""
    try:
        return max(int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]) - 1, 0)
    except (OSError, IndexError, ValueError):
        return 0


def measure(driver: Driver, stream: ActionStream, settings: Settings, min_calls: int = 1) -> Measurement:
    """Warm up, then the best of up to ``settings.repeats`` passes of >= ``settings.seconds`` and >= ``min_calls``.

    Fewer passes when the first ones already took ``repeats * seconds``; one more when the best pass ran
    while other processes were runnable (a shared machine), in the hope of a quiet one.
    """
    driver.reset(stream.seed)
    calls, warm, k = 0, 0.0, 1
    while warm < min(settings.warmup_seconds, settings.seconds):
        warm += _timed_chunk(driver, stream, k)[0]
        calls, k = calls + k, 2 * k
    calls_per_second = calls / warm
    passes: list[tuple[float, float]] = []  # (token steps/s, mean others running)
    total, token_steps = 0.0, 0
    while _another_pass(passes, total, settings):
        done, elapsed, others = 0, 0.0, []
        while elapsed < settings.seconds or done < min_calls:
            need = max(min_calls - done, int(np.ceil((settings.seconds - elapsed) * calls_per_second)), 1)
            k = min(need, max(1, int(CHUNK_SECONDS * calls_per_second)))
            wall, running = _timed_chunk(driver, stream, k)
            done, elapsed = done + k, elapsed + wall
            others.append(running)
        calls_per_second = done / elapsed
        passes.append((done * driver.num_rows / elapsed, float(np.mean(others))))
        total += elapsed
        token_steps += done * driver.num_rows
        stream.check(*driver.state())
    best, others_running = max(passes)
    return Measurement(best, len(passes), total, token_steps, others_running)


def _another_pass(passes: list[tuple[float, float]], total: float, settings: Settings) -> bool:
    """Whether ``measure`` runs one more pass after ``passes`` ((token steps/s, others running)) of ``total`` s."""
    if len(passes) < settings.repeats:
        return not passes or total < settings.repeats * settings.seconds
    extra_time = total < (settings.repeats + 1) * settings.seconds
    return len(passes) == settings.repeats and max(passes)[1] >= CONTENDED and extra_time


class EnvBench:
    """Measures cells once each (sections share them) and keeps the results for the target checks."""

    def __init__(
        self, settings: Settings, log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)
    ):
        self.settings = settings
        self.results: dict[Cell, Measurement] = {}
        self.log = log

    def __call__(self, cell: Cell) -> Measurement:
        if cell not in self.results:
            min_calls = self.settings.sync_min_calls if cell.env == "sync" else 1
            driver = driver_for(cell)
            stream = ActionStream(task_named(cell.task), driver.num_rows, cell.seed)
            m = self.results[cell] = measure(driver, stream, self.settings, min_calls)
            self.log(
                f"  {cell.env:8s} {cell.task:18s} {cell.reward:8s} N={cell.num_envs:<5d} "
                f"{m.steps_per_second:>14,.0f} token steps/s  ({m.passes} passes, {m.token_steps:,} steps, "
                f"{m.timed_seconds:.1f} s, others running {m.others_running:.1f})"
            )
        return self.results[cell]


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


def scalar_section(bench: EnvBench) -> Section:
    """``InstantRewardEnv`` token steps per second for every task and shaping."""
    s = bench.settings
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
    rows, checks = [], []
    for task in s.tasks:
        base = bench(Cell("scalar", task)).steps_per_second
        for env, label, n in kinds:
            m = bench(Cell(env, task, num_envs=n))
            rows.append([task, label, str(n), rate(m.steps_per_second, m), ratio(m.steps_per_second / base)])
    big, task = max(s.num_envs), "translation"
    if task in s.tasks:
        batched = bench(Cell("batched", task, num_envs=big)).steps_per_second
        target = f"at least 2,000,000 token steps/s on translation/instant at N={big}"
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
        "the class `gym.make_vec(id, num_envs=N)` returns. *x scalar*: speed over the scalar env's, same task."
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
    rows, growth, checks = [], [], []
    for metric, length in plan:
        task = f"long:{metric}:{length}"
        batched, naive = bench(Cell("batched", task, num_envs=n)), bench(Cell("naive", task))
        b, v = batched.ns_per_token, naive.ns_per_token
        rows.append([metric, str(length), rate(b, batched), rate(v, naive), ratio(v / b)])
    for metric in s.sweep_metrics:
        cost = {
            L: (bench(Cell("batched", f"long:{metric}:{L}", num_envs=n)), bench(Cell("naive", f"long:{metric}:{L}")))
            for L in (lo, hi)
        }
        b, v = (cost[hi][i].ns_per_token / cost[lo][i].ns_per_token for i in (0, 1))
        growth.append([metric, ratio(b), ratio(v)])
        checks.append(Check(f"batched per-token cost ratio L={hi} / L={lo} at most 1.5 ({metric})", ratio(b), b <= 1.5))
    notes = (
        f"`LongTargetTask`: references of exactly L uniform words from a vocabulary of about 1,000, the "
        f"output cap is L, the metric is the env's own class; the copy-or-random policy writes L tokens per "
        f"episode. Batched env at N={n}; naive as in the comparison (scalar env). Nanoseconds per token step, "
        f"lower is better. VADER calls the VADER package once per row and token by design (no incremental "
        f"form), so it is measured at L={s.vader_length} only, as a cost reference against the other metrics."
    )
    tables = [
        Table(["metric", "L", f"batched N={n}: ns/token", "naive: ns/token", "naive / batched"], rows),
        Table(["metric", f"batched cost(L={hi}) / cost(L={lo})", f"naive cost(L={hi}) / cost(L={lo})"], growth),
    ]
    return Section("Length sweep: per-token cost against the output length", notes, tables, checks)


#: name -> section; each is measured with a shared EnvBench.
SECTIONS: dict[str, Callable[[EnvBench], Section]] = {
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
            f"Machine: {machine_description()}; {package_versions()}  \nRun time: {elapsed:.0f} s; {load}"
        ),
        (
            "One token of one episode is one step. Each cell runs a copy-or-random policy (reference token with "
            f"probability {COPY_PROB}, else a random allowed token) whose actions are simulated before timing; "
            f"best of up to {settings.repeats} passes of at least {settings.seconds:g} s after a warm-up. Steps "
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
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else Settings()
    overrides = {
        "seconds": args.seconds,
        "tasks": tuple(args.tasks.split(",")) if args.tasks else None,
        "num_envs": args.num_envs,
        "sync_num_envs": args.sync_num_envs,
        "lengths": args.lengths,
        "sweep_num_envs": args.sweep_num_envs,
    }
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(args.sections.split(",")) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; expected names from {list(SECTIONS)}")
    unknown = sorted(set(settings.tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown tasks {unknown}; expected names from {list(TASKS)}")
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
