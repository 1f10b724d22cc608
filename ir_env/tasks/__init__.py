"""Task registry: names to task constructors, with a per-process cache so that many envs share one task.

Built-in tasks generate their data from a seed; the tasks in DATA_TASKS read real data sets from a data
folder (see ``ir_env.tasks.data``). Names are ``family`` or ``family:variant``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ir_env.tasks.base import SPLITS, Examples, Task


def _translation(**kw: Any) -> Task:
    from ir_env.tasks.translation import TranslationTask

    return TranslationTask(**kw)


def _sentiment(**kw: Any) -> Task:
    from ir_env.tasks.sentiment import SentimentTask

    return SentimentTask(**kw)


def _qa(**kw: Any) -> Task:
    from ir_env.tasks.matching import QATask

    return QATask(**kw)


def _summary(**kw: Any) -> Task:
    from ir_env.tasks.matching import SummaryTask

    return SummaryTask(**kw)


def _multi30k(**kw: Any) -> Task:
    from ir_env.tasks.real import Multi30kTask

    return Multi30kTask(**kw)


def _sst2(**kw: Any) -> Task:
    from ir_env.tasks.real import Sst2Task

    return Sst2Task(**kw)


def _squad(**kw: Any) -> Task:
    from ir_env.tasks.real import SquadTask

    return SquadTask(**kw)


def _mrpc(**kw: Any) -> Task:
    from ir_env.tasks.real import MrpcTask

    return MrpcTask(**kw)


#: name -> (constructor, one-line description)
TASKS: dict[str, tuple[Callable[..., Task], str]] = {
    "translation": (_translation, "synthetic language pair (verb-final, noun-adjective order, agreement); BLEU"),
    "sentiment": (_sentiment, "continue a review prompt with the requested polarity; VADER compound"),
    "matching:qa": (_qa, "answer a question by a span of a generated context; SQuAD token F1"),
    "matching:summary": (_summary, "strip filler words from a sentence down to its core; ROUGE-L F1"),
    "translation:multi30k": (_multi30k, "real data: Multi30k image captions, English to German; BLEU"),
    "sentiment:sst2": (_sst2, "real data: continue SST-2 review openings positively; VADER compound or an SST-2 CNN (scorer=)"),
    "matching:squad": (_squad, "real data: SQuAD v1.1 questions on Wikipedia paragraphs; SQuAD token F1"),
    "matching:mrpc": (_mrpc, "real data: paraphrase MRPC news sentences; BLEU (judges: chrF, embedding similarity)"),
}
#: The tasks that read files from a data folder (``data_dir=`` or $IR_DATA_DIR) instead of generating data.
DATA_TASKS: frozenset[str] = frozenset({"translation:multi30k", "sentiment:sst2", "matching:squad", "matching:mrpc"})
#: The tasks that generate their own data from a seed (no files needed).
BUILTIN_TASKS: tuple[str, ...] = tuple(name for name in TASKS if name not in DATA_TASKS)
ALIASES: dict[str, str] = {"matching": "matching:qa"}


def task_names() -> list[str]:
    """Every task name that ``make_task`` accepts (aliases included)."""
    return sorted(TASKS) + sorted(ALIASES)


def make_task(name: str | Task, **kwargs: Any) -> Task:
    """The task called ``name``, built with ``kwargs`` (cached: the same arguments give the same object).

    A Task instance is returned as it is (then ``kwargs`` must be empty).
    """
    if isinstance(name, Task):
        if kwargs:
            raise ValueError(f"task keyword arguments {sorted(kwargs)} cannot apply to an already built task")
        return name
    if not isinstance(name, str):
        raise TypeError(f"task must be a task name or a Task, got {type(name).__name__}")
    canonical = ALIASES.get(name, name)
    if canonical not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {task_names()}")
    return _cached_task(canonical, tuple(sorted((k, _hashable(v)) for k, v in kwargs.items())))


def _hashable(value: Any) -> Any:
    """A list or array keyword (e.g. ``bleu_point``) as a tuple, so that it can key the cache."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    return tuple(_hashable(v) for v in value) if isinstance(value, (list, tuple)) else value


@functools.lru_cache(maxsize=32)
def _cached_task(name: str, kwargs: tuple[tuple[str, Any], ...]) -> Task:
    constructor, _ = TASKS[name]
    return constructor(**dict(kwargs))


__all__ = ["ALIASES", "BUILTIN_TASKS", "DATA_TASKS", "SPLITS", "TASKS", "Examples", "Task", "make_task", "task_names"]
