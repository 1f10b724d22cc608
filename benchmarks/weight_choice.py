"""Choosing an arm's weights among candidates (the last weights, moving averages of them) by a score on
valid data: the multi30k part of ``benchmarks.quality`` chooses the MLE arm, the RL arm's start and, with
``--rl-ema``, the RL arm this way."""

from __future__ import annotations

from typing import Any


class WeightCandidates:
    """The last weights of a model and exponential moving averages of them at several decays, updated as one
    (``mle_train`` calls ``update`` after each step), and chosen between by a score on valid data."""

    def __init__(self, model, decays: list[float]):
        from agents.supervised import WeightAverage

        self.model = model
        self.averages = {f"EMA {d:g}": WeightAverage(model, d) for d in sorted(set(decays))}

    def update(self) -> None:
        for average in self.averages.values():
            average.update()

    def score(self, evaluate, splits: tuple[str, ...]) -> tuple[str, dict[str, dict[str, float]], dict[str, Any]]:
        """Score every candidate with ``evaluate(split) -> BLEU`` on ``splits`` (the first one chooses):
        (chosen name, {name: {split_bleu: score}}, chosen weights as a state dict). The model gets its last
        weights back."""
        states = {"last weights": state_of(self.model)}
        for name, average in self.averages.items():
            average.copy_to()
            states[name] = state_of(self.model)
        self.model.load_state_dict(states["last weights"])
        return choose_weights(self.model, states, evaluate, splits)


def state_of(model) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def choose_weights(model, states: dict[str, dict[str, Any]], evaluate,
                   splits: tuple[str, ...]) -> tuple[str, dict[str, dict[str, float]], dict[str, Any]]:
    """Score each of ``states`` (name -> state dict, in order) in ``model`` with ``evaluate(split) -> BLEU`` on
    ``splits``; the first split chooses (ties: the earlier name). Returns (chosen name, {name: {split_bleu:
    score}}, chosen state); the model gets back the weights it had."""
    before = state_of(model)
    scores: dict[str, dict[str, float]] = {}
    chosen = ""
    for name, state in states.items():
        model.load_state_dict(state)
        scores[name] = {f"{split}_bleu": evaluate(split) for split in splits}
        key = f"{splits[0]}_bleu"
        if not chosen or scores[name][key] > scores[chosen][key]:
            chosen = name
    model.load_state_dict(before)
    return chosen, scores, states[chosen]
