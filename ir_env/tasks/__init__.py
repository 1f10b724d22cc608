"""Task registry: names to task constructors, with a per-process cache so that many envs share one task.

Built-in tasks generate their data from a seed. Names are ``family`` or ``family:variant``.
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


#: name -> (constructor, one-line description)
TASKS: dict[str, tuple[Callable[..., Task], str]] = {
    "translation": (_translation, "synthetic language pair (verb-final, noun-adjective order, agreement); BLEU"),
    "sentiment": (_sentiment, "continue a review prompt with the requested polarity; VADER compound"),
    "matching:qa": (_qa, "answer a question by a span of a generated context; SQuAD token F1"),
    "matching:summary": (_summary, "strip filler words from a sentence down to its core; ROUGE-L F1"),
}
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
    return _cached_task(canonical, tuple(sorted(kwargs.items())))


@functools.lru_cache(maxsize=32)
def _cached_task(name: str, kwargs: tuple[tuple[str, Any], ...]) -> Task:
    constructor, _ = TASKS[name]
    return constructor(**dict(kwargs))


__all__ = ["SPLITS", "TASKS", "ALIASES", "Examples", "Task", "make_task", "task_names"]
