"""PolicyModel: shapes, KV-cache parity with the teacher-forced pass, causality, padding, masking,
gradients and determinism (tiny preset, CPU float32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from agents.model import (
    DecodeState,
    ModelConfig,
    PolicyModel,
    allowed_actions,
    apply_action_mask,
    sample_categorical,
)
from ir_env.tokenizer import BOS, EOS, NUM_SPECIAL, PAD

V, S, T = 50, 12, 10
ATOL = 1e-5


def make_model(seed: int = 0, **overrides) -> PolicyModel:
    torch.manual_seed(seed)
    return PolicyModel(ModelConfig.preset("tiny", V, S, T, **overrides)).eval()


def random_sources(lengths: list[int], seed: int = 1, width: int = S) -> torch.Tensor:
    """(B, width) word ids, row b real for its first lengths[b] positions and PAD after."""
    g = torch.Generator().manual_seed(seed)
    source = torch.randint(NUM_SPECIAL, V, (len(lengths), width), generator=g)
    for b, n in enumerate(lengths):
        source[b, n:] = PAD
    return source


def random_target_in(batch: int, length: int = T, seed: int = 2) -> torch.Tensor:
    """(B, length) decoder inputs: BOS, then word ids."""
    g = torch.Generator().manual_seed(seed)
    target_in = torch.randint(NUM_SPECIAL, V, (batch, length), generator=g)
    target_in[:, 0] = BOS
    return target_in


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and OpenMP threads that wait on a core another
    process is busy on make every op ~100x slower; one thread keeps this module fast on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def model() -> PolicyModel:
    return make_model()


# ---- shapes and sizes ---------------------------------------------------------------------------------


def test_forward_evaluate_and_step_shapes(model):
    source, target_in = random_sources([12, 5, 1]), random_target_in(3)
    logits, values = model(source, target_in)
    assert logits.shape == (3, T, V) and values.shape == (3, T)
    logprobs, entropy, values2 = model.evaluate_actions(source, target_in)
    assert logprobs.shape == entropy.shape == values2.shape == (3, T)
    memory, pad = model.encode(source)
    assert memory.shape == (3, S, model.config.d_model) and pad.shape == (3, S)
    assert pad[1, 5:].all() and not pad[1, :5].any()
    state = model.start(source)
    assert isinstance(state, DecodeState)
    step_logits, step_values = model.step(state, torch.full((3,), BOS))
    assert step_logits.shape == (3, V) and step_values.shape == (3,)
    assert torch.isfinite(logits).all() and torch.isfinite(values).all()


@pytest.mark.parametrize(
    "name, low, high",
    [("tiny", 0.1e6, 0.5e6), ("small", 5e6, 8e6), ("base", 10e6, 14e6), ("large", 22e6, 28e6)],
)
def test_preset_parameter_counts(name, low, high):
    n = PolicyModel(ModelConfig.preset(name, vocab_size=1000, max_source_len=20, max_target_len=23)).num_parameters()
    assert low <= n <= high, f"{name}: {n:,} parameters, expected {low:,.0f}..{high:,.0f}"


def test_tied_table_counts_once_and_state_dict_has_no_aliases():
    tied, untied = make_model(), make_model(tie_embeddings=False)
    d = tied.config.d_model
    assert untied.num_parameters() - tied.num_parameters() == 2 * V * d
    pointers = [t.data_ptr() for t in tied.state_dict().values()]
    assert len(pointers) == len(set(pointers)), "tied weights appear twice in state_dict (safetensors refuses)"


@pytest.mark.parametrize(
    "overrides, match",
    [({"d_model": 60, "n_heads": 8}, "not divisible"), ({"dropout": 1.0}, "dropout"),
     ({"n_decoder_layers": 0}, "positive int"), ({"vocab_size": 4}, "special"), ({"d_model": 64.0}, "positive int")],
)
def test_config_rejects_bad_values(overrides, match):
    fields = {"vocab_size": V, "max_source_len": S, "max_target_len": T, **overrides}
    with pytest.raises(ValueError, match=match):
        ModelConfig(**fields)


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="small"):
        ModelConfig.preset("huge", V, S, T)


def test_bad_inputs_raise_clear_errors(model):
    with pytest.raises(ValueError, match="int64"):
        model(random_sources([3]).int(), random_target_in(1))
    with pytest.raises(ValueError, match="length"):
        model(random_sources([3]), random_target_in(1, length=T + 1))
    state = model.start(random_sources([3, 4]))
    for _ in range(T):
        model.step(state, torch.full((2,), BOS))
    with pytest.raises(ValueError, match="reset_rows"):
        model.step(state, torch.full((2,), BOS))
    with pytest.raises(ValueError, match="new_source"):
        model.reset_rows(state, [0], random_sources([3, 4]))


# ---- KV cache ------------------------------------------------------------------------------------------


def test_step_matches_forward_for_rows_of_different_source_lengths(model):
    source, target_in = random_sources([12, 7, 3, 1]), random_target_in(4)
    logits, values = model(source, target_in)
    state = model.start(source)
    for t in range(T):
        step_logits, step_values = model.step(state, target_in[:, t])
        torch.testing.assert_close(step_logits, logits[:, t], atol=ATOL, rtol=0)
        torch.testing.assert_close(step_values, values[:, t], atol=ATOL, rtol=0)


def test_step_matches_forward_after_per_row_resets(model):
    """Rows restart at different times (autoreset), so they sit at different positions; every episode's
    step-by-step outputs must equal a teacher-forced pass over that episode alone."""
    B = 4
    resets = {3: [1, 3], 6: [1], 7: [0, 2]}  # step -> rows restarted before it
    sources = random_sources([12, 7, 3, 5], seed=10)
    episodes = [[(sources[b], random_target_in(1, seed=100 + b)[0], [])] for b in range(B)]
    state = model.start(sources)
    position = [0] * B
    for t in range(12):
        if t in resets:
            rows = resets[t]
            new = random_sources([1 + 2 * t % S] * len(rows), seed=t)
            model.reset_rows(state, rows, new)
            for i, b in enumerate(rows):
                episodes[b].append((new[i], random_target_in(1, seed=1000 + t * B + b)[0], []))
                position[b] = 0
        prev = torch.stack([episodes[b][-1][1][position[b]] for b in range(B)])
        step_logits, step_values = model.step(state, prev)
        for b in range(B):
            episodes[b][-1][2].append((step_logits[b], step_values[b]))
            position[b] += 1
    assert state.lengths.tolist() == position
    checked = 0
    for b in range(B):
        for source, target_in, outputs in episodes[b]:
            logits, values = model(source[None], target_in[None, : len(outputs)])
            for t, (step_logits, step_value) in enumerate(outputs):
                torch.testing.assert_close(step_logits, logits[0, t], atol=ATOL, rtol=0)
                torch.testing.assert_close(step_value, values[0, t], atol=ATOL, rtol=0)
                checked += 1
    assert checked == 12 * B


def test_reset_rows_accepts_a_bool_mask_and_leaves_other_rows_alone(model):
    sources, target_in = random_sources([12, 7, 3]), random_target_in(3)
    logits, _ = model(sources, target_in)
    state = model.start(sources)
    model.step(state, target_in[:, 0])
    model.reset_rows(state, np.array([False, True, False]), sources[1:2])
    assert state.lengths.tolist() == [1, 0, 1] and state.positions.tolist() == [1, 0, 1]
    step_logits, _ = model.step(state, torch.stack([target_in[0, 1], target_in[1, 0], target_in[2, 1]]))
    torch.testing.assert_close(step_logits[[0, 2]], logits[[0, 2], 1], atol=ATOL, rtol=0)
    torch.testing.assert_close(step_logits[1], logits[1, 0], atol=ATOL, rtol=0)


def test_bf16_autocast_keeps_float32_heads_and_cache_parity(model):
    """CPU autocast stands in for CUDA's: the caches take bf16, the heads stay float32."""
    source, target_in = random_sources([12, 5, 2]), random_target_in(3)
    ref_logits, _ = model(source, target_in)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, values = model(source, target_in)
        state = model.start(source)
        assert state.cache_k.dtype == torch.bfloat16
        model.reset_rows(state, [1], source[1:2])
        steps = [model.step(state, target_in[:, t]) for t in range(T)]
    assert logits.dtype == values.dtype == torch.float32
    assert (logits - ref_logits).abs().max() < 0.05, "bf16 trunk drifts far from float32"
    step_logits = torch.stack([s[0] for s in steps], dim=1)
    assert step_logits.dtype == torch.float32
    assert (step_logits - logits).abs().max() < 0.05


# ---- causality and padding -----------------------------------------------------------------------------


@pytest.mark.parametrize("changed", [1, 4, T - 1])
def test_a_later_target_token_does_not_change_earlier_outputs(model, changed):
    source, target_in = random_sources([8, 5]), random_target_in(2)
    altered = target_in.clone()
    altered[:, changed] = (altered[:, changed] + 1 - NUM_SPECIAL) % (V - NUM_SPECIAL) + NUM_SPECIAL
    (logits, values), (logits2, values2) = model(source, target_in), model(source, altered)
    torch.testing.assert_close(logits[:, :changed], logits2[:, :changed], atol=0, rtol=0)
    torch.testing.assert_close(values[:, :changed], values2[:, :changed], atol=0, rtol=0)
    assert not torch.allclose(logits[:, changed:], logits2[:, changed:]), "the changed token must matter later"


def test_padding_of_the_source_does_not_change_outputs(model):
    """The same real tokens give the same outputs whatever the number of trailing PADs, and whatever the
    other rows of the batch are. (A PAD's id cannot change without it ceasing to be PAD: PAD-ness is the id.)"""
    source, target_in = random_sources([4, 12]), random_target_in(2)
    short = source[:1, :6]  # row 0: 4 real tokens, 2 PADs
    logits, values = model(source, target_in)
    alone_logits, alone_values = model(short, target_in[:1])
    torch.testing.assert_close(logits[0], alone_logits[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(values[0], alone_values[0], atol=ATOL, rtol=0)
    unpadded_logits, _ = model(source[:1, :4], target_in[:1])
    torch.testing.assert_close(logits[0], unpadded_logits[0], atol=ATOL, rtol=0)
    changed = source.clone()
    changed[0, 2] = (changed[0, 2] + 1 - NUM_SPECIAL) % (V - NUM_SPECIAL) + NUM_SPECIAL  # a real token matters
    assert not torch.allclose(model(changed, target_in)[0][0], logits[0])


def test_an_all_pad_source_gives_finite_outputs(model):
    source = torch.full((2, S), PAD)
    # Recent torch returns 0 for a fully masked SDPA row, older releases and some kernels NaN: the mask
    # itself must leave every row something to attend to.
    memory_mask = model.start(source).memory_mask
    assert memory_mask.any(-1).all()
    logits, values = model(source, random_target_in(2))
    assert torch.isfinite(logits).all() and torch.isfinite(values).all()
    assert model.sample(source, T).shape[0] == 2


# ---- action masks, log-probs, entropy, sampling --------------------------------------------------------


def test_masked_actions_get_probability_zero():
    logits = torch.randn(3, 4, V) * 5
    mask = torch.ones(V, dtype=torch.bool)
    mask[[PAD, BOS, 7, 20]] = False
    probs = F.softmax(apply_action_mask(logits, mask), dim=-1)
    assert (probs[..., ~mask] == 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 4))
    everything_masked = F.softmax(apply_action_mask(logits, torch.zeros(V, dtype=torch.bool)), dim=-1)
    assert torch.isfinite(everything_masked).all(), "a fully masked row must not give NaN"


@pytest.mark.parametrize("bad_mask, match", [(torch.ones(V, dtype=torch.int8), "bool"),
                                             (torch.ones(V + 1, dtype=torch.bool), "shape")])
def test_apply_action_mask_rejects_bad_masks(bad_mask, match):
    with pytest.raises(ValueError, match=match):
        apply_action_mask(torch.zeros(2, V), bad_mask)


@pytest.mark.parametrize("mask_kind", ["none", "shared", "per_position"])
def test_evaluate_actions_matches_a_manual_log_softmax_and_entropy(model, mask_kind):
    source, actions = random_sources([9, 4, 12]), random_target_in(3)[:, 1:]
    g = torch.Generator().manual_seed(3)
    if mask_kind == "none":
        mask = None
    elif mask_kind == "shared":
        mask = torch.rand(V, generator=g) > 0.3
    else:
        mask = torch.rand(3, T - 1, V, generator=g) > 0.3
    if mask is not None:  # the taken actions are allowed, as they are in a rollout
        mask = mask.expand(3, T - 1, V).clone()
        mask.scatter_(-1, actions.unsqueeze(-1), True)
    logprobs, entropy, values = model.evaluate_actions(source, actions, mask)

    target_in = torch.cat([torch.full((3, 1), BOS), actions[:, :-1]], dim=1)
    logits, ref_values = model(source, target_in)
    allowed = torch.ones_like(logits, dtype=torch.bool) if mask is None else mask
    logp = F.log_softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
    torch.testing.assert_close(logprobs, logp.gather(-1, actions.unsqueeze(-1)).squeeze(-1), atol=ATOL, rtol=0)
    p = logp.exp()
    manual_entropy = -torch.where(allowed, p * logp, torch.zeros_like(p)).sum(-1)
    torch.testing.assert_close(entropy, manual_entropy, atol=ATOL, rtol=0)
    torch.testing.assert_close(values, ref_values, atol=0, rtol=0)
    if mask is not None:
        assert (entropy < np.log(V) - 0.05).all(), "masking must shrink the entropy below uniform over V"


def test_allowed_actions_lists_the_mask_and_declines_masks_with_nothing_to_restrict():
    mask = torch.zeros(V, dtype=torch.bool)
    mask[[EOS, 9, 5, 40]] = True
    ids, position = allowed_actions(mask, V)
    assert ids.tolist() == [EOS, 5, 9, 40]
    assert position[ids].tolist() == [0, 1, 2, 3]
    assert (position[~mask] == -1).all()
    assert allowed_actions(None, V) is None
    assert allowed_actions(torch.ones(V, dtype=torch.bool), V) is None, "all allowed: the full softmax is as cheap"
    assert allowed_actions(torch.zeros(V, dtype=torch.bool), V) is None, "none allowed: apply_action_mask's uniform"
    assert allowed_actions(mask.expand(2, V), V) is None, "a per-row mask has no one subset"
    with pytest.raises(ValueError, match="bool"):
        allowed_actions(mask.to(torch.int8), V)
    with pytest.raises(ValueError, match=r"\(50,\)"):
        allowed_actions(torch.ones(V + 1, dtype=torch.bool), V)


def test_allowed_actions_reuses_its_answer_for_the_same_mask_until_the_mask_changes():
    """A learner passes one mask tensor to every minibatch; nonzero() would wait for the GPU each time."""
    mask = torch.zeros(V, dtype=torch.bool)
    mask[[EOS, 5, 9]] = True
    first = allowed_actions(mask, V)
    assert allowed_actions(mask, V) is first, "same tensor, unchanged: the last answer"
    mask[40] = True  # an in-place write bumps the tensor's version
    ids, position = allowed_actions(mask, V)
    assert ids.tolist() == [EOS, 5, 9, 40] and position[40] == 3
    other = mask.clone()
    assert allowed_actions(other, V) is not allowed_actions(mask, V), "another tensor is computed afresh"
    assert allowed_actions(other, V)[0].tolist() == [EOS, 5, 9, 40]


def test_a_vector_mask_gives_the_full_masked_softmax_its_gradients_and_lowest_logprob_for_forbidden_actions():
    """evaluate_actions with a (V,) mask computes the allowed actions' logits only; the numbers and the
    gradients must be those of masking all V logits (a per-position mask takes that full path)."""
    source, actions = random_sources([9, 4, 12]), random_target_in(3)[:, 1:]
    mask = torch.rand(V, generator=torch.Generator().manual_seed(4)) > 0.4
    mask[actions.flatten()] = True
    actions[1, 2] = int((~mask).nonzero()[0, 0])  # one forbidden action
    mask[actions[1, 2]] = False
    outputs, grads = [], []
    for m in (mask, mask.expand(3, T - 1, V)):  # restricted path, full path
        model = make_model()
        logprobs, entropy, values = model.evaluate_actions(source, actions, m, temperature=0.7)
        outputs.append((logprobs, entropy, values))
        ok = logprobs > torch.finfo(logprobs.dtype).min
        (logprobs[ok].sum() + entropy.sum() + values.sum()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    (lp, ent, val), (full_lp, full_ent, full_val) = outputs
    torch.testing.assert_close(lp, full_lp, atol=ATOL, rtol=0)
    assert lp[1, 2] == torch.finfo(lp.dtype).min, "a forbidden action gets the masked softmax's lowest value"
    torch.testing.assert_close(ent, full_ent, atol=ATOL, rtol=0)
    torch.testing.assert_close(val, full_val, atol=0, rtol=0)
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], atol=1e-5, rtol=1e-4, msg=name)


def test_sampling_under_a_vector_mask_matches_the_full_masked_logits(model):
    mask = torch.zeros(V, dtype=torch.bool)
    mask[[EOS, *range(10, 30)]] = True
    source = random_sources([12, 6, 3, 9])
    greedy = model.sample(source, T, action_mask=mask, greedy=True)
    full = model.sample(source, T, action_mask=mask.expand(4, V), greedy=True)  # per-row mask: full-V path
    assert torch.equal(greedy, full)
    first_logits, _ = model.step(model.start(source), torch.full((4,), BOS))
    assert greedy[:, 0].tolist() == apply_action_mask(first_logits, mask).argmax(-1).tolist()


def test_sample_never_emits_masked_tokens(model):
    mask = torch.zeros(V, dtype=torch.bool)
    allowed = [EOS, 5, 6, 30, 31, 44]
    mask[allowed] = True
    source = random_sources([12, 6, 3, 9] * 16)
    g = torch.Generator().manual_seed(0)
    tokens = model.sample(source, T, action_mask=mask, generator=g)
    emitted = set(tokens.unique().tolist()) - {PAD}
    assert emitted <= set(allowed)
    assert len(emitted) >= 3, "an untrained tiny model spreads its samples over the allowed tokens"
    unmasked = model.sample(source, T, generator=torch.Generator().manual_seed(0))
    assert set(unmasked.unique().tolist()) - set(allowed), "without a mask other tokens appear"


def test_greedy_sample_follows_the_mask(model):
    source = random_sources([12, 6])
    first = model.sample(source, 1, greedy=True)[:, 0]
    mask = torch.ones(2, V, dtype=torch.bool)
    mask[torch.arange(2), first] = False
    masked_first = model.sample(source, 1, greedy=True, action_mask=mask)[:, 0]
    assert (masked_first != first).all()


def test_sample_stops_rows_at_eos(model):
    # A mask that allows only EOS and one word, with a bias towards EOS, ends every row early.
    with torch.no_grad():
        model.token_embedding.weight[EOS] *= 20
    mask = torch.zeros(V, dtype=torch.bool)
    mask[[EOS, 5]] = True
    tokens = model.sample(random_sources([12, 6, 3] * 10), T, action_mask=mask,
                          generator=torch.Generator().manual_seed(1))
    assert tokens.shape[1] <= T
    ended = [row for row in tokens.tolist() if EOS in row]
    assert all(row == [5] * tokens.shape[1] for row in tokens.tolist() if EOS not in row)
    assert len(ended) >= 15  # EOS has most of the mass at the first step
    for row in ended:
        end = row.index(EOS)
        assert all(tok == PAD for tok in row[end + 1:]), row
        assert all(tok == 5 for tok in row[:end]), row
    # With only EOS allowed every row ends at the first step, and sampling stops there.
    only_eos = torch.zeros(V, dtype=torch.bool)
    only_eos[EOS] = True
    tokens = model.sample(random_sources([12, 6, 3] * 10), T, action_mask=only_eos)
    assert tokens.tolist() == [[EOS]] * 30


# ---- gradients and determinism -------------------------------------------------------------------------


@pytest.mark.parametrize("tie_embeddings", [True, False])
def test_gradients_reach_every_parameter(tie_embeddings):
    model = make_model(tie_embeddings=tie_embeddings).train()
    source, actions = random_sources([12, 7, 2]), random_target_in(3, length=T)
    logprobs, entropy, values = model.evaluate_actions(source, actions)
    (logprobs.sum() + values.square().sum() + 0.01 * entropy.sum()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, f"{name}: zero or bad gradient"


def test_same_seed_same_weights_and_samples():
    a, b, c = make_model(seed=7), make_model(seed=7), make_model(seed=8)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    assert not torch.equal(a.token_embedding.weight, c.token_embedding.weight)
    source = random_sources([12, 5, 8, 2])
    s1 = a.sample(source, T, generator=torch.Generator().manual_seed(3))
    s2 = b.sample(source, T, generator=torch.Generator().manual_seed(3))
    s3 = a.sample(source, T, generator=torch.Generator().manual_seed(4))
    assert torch.equal(s1, s2)
    assert not torch.equal(s1, s3)


def test_value_head_starts_near_zero(model):
    _, values = model(random_sources([12, 3]), random_target_in(2))
    assert values.abs().max() < 0.1


def test_sample_categorical_draws_each_action_at_its_probability_and_never_a_zero_one():
    probs = torch.tensor([0.1, 0.0, 0.25, 0.0, 0.65])
    draws = sample_categorical(probs.expand(200_000, 5), torch.Generator().manual_seed(0))
    assert draws.shape == (200_000,)
    freq = torch.bincount(draws, minlength=5).double() / len(draws)
    assert freq[1] == 0 and freq[3] == 0
    # binomial standard error at n = 200k is <= 0.0011: 5 of them is a wide margin, far below any real bias
    assert torch.allclose(freq, probs.double(), atol=0.0055)


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=40).filter(lambda p: sum(p) > 1e-6),
       st.integers(0, 2**31 - 1))
@settings(max_examples=200, deadline=None)
def test_sample_categorical_only_draws_actions_of_positive_probability(weights, seed):
    probs = torch.tensor(weights).expand(64, len(weights))  # unnormalised rows
    draws = sample_categorical(probs, torch.Generator().manual_seed(seed))
    assert (probs[0, draws] > 0).all()


def test_sample_categorical_never_passes_the_last_action_even_when_the_draw_rounds_up(monkeypatch):
    # torch.rand never returns 1, but u = rand * total can round up to total; the draw must stay in range
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.ones(shape, dtype=kw.get("dtype")))
    probs = torch.tensor([[0.3, 0.7, 0.0], [0.0, 0.0, 1.0]])
    assert sample_categorical(probs).tolist() == [1, 2]


# ---- the cost-saving paths give the plain paths' numbers -----------------------------------------------


@pytest.mark.parametrize("allowed", [64, 65, 127])
def test_restricted_logits_are_the_full_logits_of_the_allowed_actions_at_any_count(allowed):
    """The head pads the allowed ids to a multiple of 64 rows and slices the extra logits off: whatever
    the count, the result has exactly K columns, equal to the full logits at those ids."""
    vocab = 200
    torch.manual_seed(0)
    model = PolicyModel(ModelConfig.preset("tiny", vocab, S, T)).eval()
    ids = torch.randperm(vocab - NUM_SPECIAL, generator=torch.Generator().manual_seed(3))[:allowed].sort().values
    ids += NUM_SPECIAL
    source, target_in = random_sources([12, 5]), random_target_in(2)
    full, full_values = model(source, target_in)
    part, values = model(source, target_in, output_ids=ids)
    assert part.shape == (2, T, allowed)
    torch.testing.assert_close(part, full[..., ids], atol=ATOL, rtol=0)
    torch.testing.assert_close(values, full_values, atol=0, rtol=0)


@pytest.mark.parametrize("restricted", [True, False])
def test_one_shared_lookup_gives_the_outputs_and_gradients_of_separate_lookups(monkeypatch, restricted):
    """With one table for source, target and output, the teacher-forced pass looks all three up in one
    call (one (V, C) gradient to fill instead of three); numbers and gradients must not change."""
    source, actions = random_sources([9, 4, 12]), random_target_in(3)[:, 1:]
    mask = torch.zeros(V, dtype=torch.bool)
    mask[[EOS, *range(8, 40)]] = True
    mask[actions.flatten()] = True
    runs = []
    for shared in (True, False):
        model = make_model().train()
        torch.manual_seed(5)  # the same dropout masks in both runs
        if not shared:
            monkeypatch.setattr(model, "_shared_lookups", lambda *args: (None, None, None))
        logprobs, entropy, values = model.evaluate_actions(source, actions, mask if restricted else None)
        (logprobs.sum() + entropy.sum() + values.square().sum()).backward()
        runs.append((logprobs, values, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (lp, val, grads), (lp_sep, val_sep, grads_sep) = runs
    torch.testing.assert_close(lp, lp_sep, atol=ATOL, rtol=0)
    torch.testing.assert_close(val, val_sep, atol=ATOL, rtol=0)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, grads_sep[name], atol=1e-6, rtol=1e-5, msg=name)


def test_step_gathers_the_head_rows_once_per_decode_state(model, monkeypatch):
    mask = torch.zeros(V, dtype=torch.bool)
    mask[[EOS, *range(10, 30)]] = True
    ids, _ = allowed_actions(mask, V)
    source, target_in = random_sources([12, 6, 3]), random_target_in(3)
    calls = []
    gather = model.head_rows
    monkeypatch.setattr(model, "head_rows", lambda output_ids: calls.append(output_ids) or gather(output_ids))
    state = model.start(source)
    steps = [model.step(state, target_in[:, t], ids)[0] for t in range(T)]
    assert len(calls) == 1, "the rows are read at the first restricted step and kept in the state"
    torch.testing.assert_close(torch.stack(steps, 1), model(source, target_in, output_ids=ids)[0], atol=ATOL, rtol=0)
    model.start(source)
    model.step(model.start(source), target_in[:, 0], ids)
    assert len(calls) == 2, "a new state reads them again (the weights may have changed)"


def test_select_rows_keeps_those_rows_decoding_exactly(model):
    source, target_in = random_sources([12, 6, 3, 9]), random_target_in(4)
    state = model.start(source)
    model.step(state, target_in[:, 0])
    kept = model.select_rows(state, torch.tensor([True, False, True, True]))
    full_logits, full_values = model.step(state, target_in[:, 1])
    logits, values = model.step(kept, target_in[[0, 2, 3], 1])
    torch.testing.assert_close(logits, full_logits[[0, 2, 3]], atol=ATOL, rtol=0)
    torch.testing.assert_close(values, full_values[[0, 2, 3]], atol=ATOL, rtol=0)
    assert kept.lengths.tolist() == [2, 2, 2] and kept.positions.tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="out of range"):
        model.select_rows(state, [0, 4])
    with pytest.raises(ValueError, match="shape"):
        model.select_rows(state, torch.tensor([True, False]))


@pytest.mark.parametrize("mask_kind", ["none", "vector", "rows"])
def test_sample_drops_finished_rows_and_decodes_the_same_tokens(model, monkeypatch, mask_kind, stop_by_source_length):
    """Greedy decoding with finished rows dropped from the decode state gives the tokens of decoding
    every row to the end (COMPACT_AT = 0 never drops a row)."""
    import agents.model as model_module

    source = random_sources([12, 6, 3, 9, 11, 2, 8, 12])
    mask = torch.zeros(V, dtype=torch.bool)
    mask[[EOS, *range(10, 40)]] = True
    action_mask = {"none": None, "vector": mask, "rows": mask.expand(8, V).clone()}[mask_kind]
    if mask_kind == "rows":
        action_mask[3, 10:20] = False  # each row its own mask, which must follow the row
    calls = stop_by_source_length(model)
    dropped = model.sample(source, T, action_mask=action_mask, greedy=True)
    assert calls, "rows finish at different steps: some are dropped"
    monkeypatch.setattr(model_module, "COMPACT_AT", 0.0)
    kept = model.sample(source, T, action_mask=action_mask, greedy=True)
    assert torch.equal(dropped, kept)
    ends = (dropped == EOS).float().argmax(1)
    assert len(set(ends.tolist())) > 2, "the test needs rows that end at different steps"
