"""Test session set-up."""

import pytest
import torch

from ir_env.tokenizer import EOS

# Two pytest-xdist workers share two cores: intra-op threads would oversubscribe them and slow every
# torch op by orders of magnitude. One thread per worker.
torch.set_num_threads(1)


@pytest.fixture
def stop_by_source_length(monkeypatch):
    """A function that makes a PolicyModel's ``step`` end each row (a large EOS logit) once it has read
    half its source's length, so rows of one batch finish at different steps; the rule reads the decode
    state, so it follows rows that a batched decode drops. It returns a list counting ``select_rows`` calls."""

    def make_stopping(model) -> list[int]:
        step, select = model.step, model.select_rows
        calls: list[int] = []

        def stopping_step(state, prev_tokens, output_ids=None):
            logits, values = step(state, prev_tokens, output_ids)
            source_len = state.memory_mask[:, 0, 0, :].sum(-1)  # (R,)
            col = EOS if output_ids is None else int((output_ids == EOS).nonzero())
            logits[:, col] += 100.0 * (state.positions >= source_len // 2)
            return logits, values

        def counting_select(state, rows):
            calls.append(1)
            return select(state, rows)

        monkeypatch.setattr(model, "step", stopping_step)
        monkeypatch.setattr(model, "select_rows", counting_select)
        return calls

    return make_stopping
