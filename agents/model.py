"""Encoder-decoder Transformer policy with a value head on one shared trunk.

The decoder's final hidden state at position t feeds both heads: the logits of the token at output
position t, and the value V(s_t) of the state "source + first t generated tokens". Decoder input
position 0 is BOS, so position t reads the t tokens generated before it.

Two ways to run the same weights:
- ``forward`` / ``evaluate_actions``: one teacher-forced pass over whole sequences (the PPO update).
- ``start`` / ``step`` / ``reset_rows``: a KV cache for token-by-token rollout in a batched env whose
  rows autoreset at different times, so every row keeps its own decoder position.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from agents.actions import allowed_actions, apply_action_mask, sample_categorical
from ir_env.tokenizer import BOS, EOS, NUM_SPECIAL, PAD

INIT_STD = 0.02
# Values start near 0 (returns of a fresh policy are small) without the critic's first updates fighting a
# random offset of the size the other layers get.
VALUE_HEAD_INIT_STD = 1e-3

#: name -> architecture; d_ff is 4 * d_model throughout, as in Vaswani et al. (2017).
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"d_model": 64, "n_heads": 2, "n_encoder_layers": 1, "n_decoder_layers": 1, "d_ff": 256},  # CPU tests
    "small": {"d_model": 256, "n_heads": 4, "n_encoder_layers": 3, "n_decoder_layers": 3, "d_ff": 1024},
    # base and large use a 2x MLP: at these widths attention already holds most of the ~12M / ~26M weights.
    "base": {"d_model": 384, "n_heads": 6, "n_encoder_layers": 4, "n_decoder_layers": 4, "d_ff": 768},
    "large": {"d_model": 512, "n_heads": 8, "n_encoder_layers": 5, "n_decoder_layers": 5, "d_ff": 1024},
}

RowsLike = torch.Tensor | np.ndarray | Sequence[int]


@dataclass
class ModelConfig:
    """Architecture of a ``PolicyModel``; ``ModelConfig.preset`` gives the named sizes of ``PRESETS``."""

    vocab_size: int
    """V: the id space shared by sources and actions (the env's ``Discrete(V)``), specials included."""
    max_source_len: int
    """S: the longest source the positional table covers (the length of the env's ``source``)."""
    max_target_len: int
    """T: the most decoder positions, so the longest output (the length of the env's ``generated``)."""
    d_model: int = 256
    """C: width of the residual stream; a step costs about C**2 per layer and token."""
    n_heads: int = 4
    """Attention heads per layer; must divide d_model (head width C / n_heads)."""
    n_encoder_layers: int = 3
    """Encoder blocks over the source, run once per episode (cheap next to the decoder in a rollout)."""
    n_decoder_layers: int = 3
    """Decoder blocks, run once per generated token; the rollout's cost grows with these."""
    d_ff: int = 1024
    """Hidden width of each block's MLP."""
    dropout: float = 0.0
    """Dropout on attention weights and residual branches. 0 for RL: dropout makes the rollout policy and
    the policy being updated differ, which biases the PPO ratio. Useful in supervised warm starts."""
    tie_embeddings: bool = True
    """One token table for the source, the target and the output projection (V*C parameters, not 3*V*C):
    the env's sources and outputs share one vocabulary, so one table is natural."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_source_len", "max_target_len", "d_model", "n_heads",
                     "n_encoder_layers", "n_decoder_layers", "d_ff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r} ({type(value).__name__})")
            setattr(self, name, int(value))
        if self.vocab_size <= NUM_SPECIAL:
            raise ValueError(f"ModelConfig.vocab_size={self.vocab_size} holds only the {NUM_SPECIAL} special tokens; "
                             "pass the task vocabulary's len(), which counts the specials and the words")
        if self.d_model % self.n_heads:
            divisors = [h for h in range(1, 17) if self.d_model % h == 0]
            raise ValueError(f"ModelConfig.d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                             f"pick n_heads from {divisors} or change d_model")
        if not isinstance(self.dropout, numbers.Real) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be a float in [0, 1), got {self.dropout!r}")

    @classmethod
    def preset(cls, name: str, vocab_size: int, max_source_len: int, max_target_len: int, **overrides) -> ModelConfig:
        """A named architecture from ``PRESETS`` sized for a task; ``overrides`` replace any field."""
        if name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; expected one of {sorted(PRESETS)}")
        fields = {**PRESETS[name], **overrides}
        return cls(vocab_size=vocab_size, max_source_len=max_source_len, max_target_len=max_target_len, **fields)


COMPACT_AT = 2 / 3
"""A batched decode drops its finished rows from the decode state (``select_rows``) once the rows still
running are at most this share of the rows it holds: the steps after that cost only what runs, for one copy
of the caches (copies shrink geometrically, so all of them together cost about three times the first)."""



def make_adam(params, **kwargs) -> torch.optim.Adam:
    """``torch.optim.Adam`` with the fused kernel where this torch has one for the parameters' device
    (CUDA; CPU since torch 2.4): one pass over each tensor instead of a dozen, ~5x faster on CPU for the
    ``small`` policy. Falls back to the default implementation elsewhere. ``kwargs`` go to Adam."""
    params = list(params)
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):  # no fused kernel for this device in this torch
        return torch.optim.Adam(params, **kwargs)


def _describe(x: object) -> str:
    """A bad argument in an error message: shape and dtype of a tensor, else its type."""
    return f"a tensor {tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__


def _row_indices(rows: RowsLike, batch: int) -> np.ndarray:
    """Row indices or a (batch,) bool mask -> int64 indices; ValueError for a bad shape or range."""
    rows = np.asarray(rows.cpu() if isinstance(rows, torch.Tensor) else rows)
    if rows.dtype == bool:
        if rows.shape != (batch,):
            raise ValueError(f"a bool rows mask must have shape ({batch},), got {rows.shape}")
        rows = np.flatnonzero(rows)
    rows = rows.astype(np.int64).reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= batch):
        raise ValueError(f"rows {rows.tolist()} out of range for a batch of {batch}")
    return rows


def _attention_mask(source_pad_mask: torch.Tensor) -> torch.Tensor:
    """(B, S) True-at-PAD -> (B, 1, 1, S) True where a query may attend to a source position."""
    attend = ~source_pad_mask
    # An all-PAD source would leave a softmax over nothing (NaN); such a row attends to its PADs instead.
    attend = attend | ~attend.any(dim=-1, keepdim=True)
    return attend[:, None, None, :]


class Attention(nn.Module):
    """Multi-head attention whose keys and values are projected separately from its queries, so one
    class serves self-attention, cross-attention and attention over a KV cache."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.query = nn.Linear(config.d_model, config.d_model)
        self.key_value = nn.Linear(config.d_model, 2 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        return x.view(B, L, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, H, L, D)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.key_value(x).chunk(2, dim=-1)  # (B, L, C) each
        return self.split_heads(k), self.split_heads(v)  # (B, H, L, D) each

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        B, L, C = x.shape
        q = self.split_heads(self.query(x))  # (B, H, L, D)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, H, L, D)
        y = y.transpose(1, 2).contiguous().view(B, L, C)  # (B, L, C)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(config.d_model, config.d_ff)
        self.proj = nn.Linear(config.d_ff, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class EncoderBlock(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = Attention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, *self.attn.keys_values(h), mask=mask)
        return x + self.mlp(self.ln_2(x))


class DecoderBlock(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.self_attn = Attention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.cross_attn = Attention(config)
        self.ln_3 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor], memory_mask: torch.Tensor,
                cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``cache`` None: a teacher-forced pass with a causal mask. Otherwise ``(k_cache, v_cache, index,
        cache_mask)``: x is one new position per row, whose keys and values are written at ``index``."""
        h = self.ln_1(x)
        k, v = self.self_attn.keys_values(h)  # (B, H, L, D)
        if cache is None:
            x = x + self.self_attn(h, k, v, is_causal=True)
        else:
            k_cache, v_cache, index, cache_mask = cache  # (B, H, n, D), (B, H, n, D), (B, H, 1, D), (B, 1, 1, n)
            k_cache.scatter_(2, index, k)
            v_cache.scatter_(2, index, v)
            x = x + self.self_attn(h, k_cache, v_cache, mask=cache_mask)
        x = x + self.cross_attn(self.ln_2(x), *memory_kv, mask=memory_mask)
        return x + self.mlp(self.ln_3(x))


@dataclass
class DecodeState:
    """What ``PolicyModel.step`` carries between calls. Call ``start``, ``step`` and ``reset_rows`` under
    the same autocast context: the caches keep the dtype they were made in."""

    memory_k: torch.Tensor
    """(L, B, H, S, D) cross-attention keys of the encoded sources, one slice per decoder layer."""
    memory_v: torch.Tensor
    """(L, B, H, S, D) cross-attention values."""
    memory_mask: torch.Tensor
    """(B, 1, 1, S) True where the decoder may attend to a source position (not PAD)."""
    cache_k: torch.Tensor
    """(L, B, H, T, D) self-attention keys of the positions decoded so far."""
    cache_v: torch.Tensor
    """(L, B, H, T, D) self-attention values."""
    positions: torch.Tensor
    """(B,) int64 on the model's device: each row's next decoder position (= tokens it has read)."""
    lengths: np.ndarray
    """(B,) the same on the host, for bounds checks and cache slicing without a device sync."""
    head: tuple[torch.Tensor, torch.Tensor] | None = None
    """(output_ids, their output rows from ``PolicyModel.head_rows``), read at the first ``step`` that
    restricts the logits and reused by the later ones: a state belongs to one set of weights (its caches
    already do), and re-gathering the (K, C) rows cost about as much as the logits themselves per step."""


class PolicyModel(nn.Module):
    """Pre-LayerNorm encoder-decoder Transformer with a policy head (logits over V) and a value head
    (a scalar), both reading the final decoder hidden state. See the module docstring for conventions."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        C, V = config.d_model, config.vocab_size
        # Tied: one table, and no aliases in state_dict (safetensors refuses tensors that share memory).
        self.token_embedding = nn.Embedding(V, C)  # the source's table; also target's and output's if tied
        self.target_embedding = None if config.tie_embeddings else nn.Embedding(V, C)
        self.policy_head = None if config.tie_embeddings else nn.Linear(C, V, bias=False)
        self.source_position = nn.Embedding(config.max_source_len, C)
        self.target_position = nn.Embedding(config.max_target_len, C)
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = nn.ModuleList(EncoderBlock(config) for _ in range(config.n_encoder_layers))
        self.ln_encoder = nn.LayerNorm(C)
        self.decoder = nn.ModuleList(DecoderBlock(config) for _ in range(config.n_decoder_layers))
        self.ln_decoder = nn.LayerNorm(C)
        self.value_head = nn.Linear(C, 1)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            std = VALUE_HEAD_INIT_STD if module is self.value_head else INIT_STD
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)

    def num_parameters(self) -> int:
        """Trainable parameters; a tied table counts once."""
        return sum(p.numel() for p in self.parameters())

    # ---- teacher-forced passes -----------------------------------------------------------------------

    def _check_tokens(self, name: str, ids: torch.Tensor, max_len: int) -> None:
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.dtype != torch.int64:
            raise ValueError(f"{name} must be an int64 tensor of shape (B, L), got {_describe(ids)}; "
                             "wrap env observations with torch.as_tensor(obs[...])")
        if not 1 <= ids.shape[1] <= max_len:
            raise ValueError(f"{name} has length {ids.shape[1]}; the model covers 1..{max_len} positions "
                             "(raise ModelConfig.max_source_len / max_target_len to the env's caps)")

    def encode(self, source: torch.Tensor, embedded: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) source ids -> memory (B, S, C) and source_pad_mask (B, S), True where the source is PAD.
        ``embedded``: the (B, S, C) token embeddings of ``source``, when the caller has looked them up."""
        self._check_tokens("source", source, self.config.max_source_len)
        pad = source == PAD  # (B, S)
        mask = _attention_mask(pad)  # (B, 1, 1, S)
        pos = torch.arange(source.shape[1], device=source.device)
        if embedded is None:
            embedded = self.token_embedding(source)
        x = self.dropout(embedded + self.source_position(pos))  # (B, S, C)
        for block in self.encoder:
            x = block(x, mask)
        return self.ln_encoder(x), pad

    def _embed_target(self, tokens: torch.Tensor, positions: torch.Tensor,
                      embedded: torch.Tensor | None = None) -> torch.Tensor:
        if embedded is None:
            embedded = (self.token_embedding if self.target_embedding is None else self.target_embedding)(tokens)
        return self.dropout(embedded + self.target_position(positions))  # (B, L, C)

    @staticmethod
    def _padded_ids(output_ids: torch.Tensor) -> torch.Tensor:
        """``output_ids`` (K,) rounded up to a multiple of 64 entries by repeating the last one (K',)."""
        k = output_ids.numel()
        return output_ids if k % 64 == 0 else torch.cat([output_ids, output_ids[-1:].expand(64 - k % 64)])

    def head_rows(self, output_ids: torch.Tensor) -> torch.Tensor:
        """The output-projection rows of ``output_ids`` (K,), as (K', C) with K' = K rounded up to a multiple
        of 64 by repeating the last id (``_outputs`` slices the extra logits off, so nothing else sees
        them). On one CPU core a (256, 256) x (256, K) product takes 19 ms at K = 7,815 (Multi30k's German
        side) and 12 ms at K = 7,872: odd row lengths of the result cost the BLAS dearly."""
        out = self.token_embedding.weight if self.policy_head is None else self.policy_head.weight
        return out.index_select(0, self._padded_ids(output_ids))  # (K', C); out[ids] takes 5x longer on CPU

    def _shared_lookups(self, source: torch.Tensor | None, target_in: torch.Tensor, output_ids: torch.Tensor | None):
        """Where source, target and output share one table and gradients are on: the source and target
        embeddings and the head rows from one lookup, (B, S, C), (B, T, C), (K', C) or None. Its backward
        fills one (V, C) gradient instead of three, and adds none: with Multi30k's 13k words that saves
        ~5 ms of a ~150 ms minibatch of the small model on one CPU core. Otherwise (None, None, None).
        ``source`` None: the sources are already encoded; no source embeddings (None)."""
        if not (torch.is_grad_enabled() and self.target_embedding is None and self.policy_head is None):
            return None, None, None
        parts = [target_in.reshape(-1)] if source is None else [target_in.reshape(-1), source.reshape(-1)]
        if output_ids is not None:
            parts.insert(1, self._padded_ids(output_ids))
        rows = self.token_embedding(torch.cat(parts)).split([p.numel() for p in parts])
        target_emb = rows[0].view(*target_in.shape, -1)
        source_emb = None if source is None else rows[-1].view(*source.shape, -1)
        return source_emb, target_emb, (rows[1] if output_ids is not None else None)

    def _outputs(self, x: torch.Tensor, output_ids: torch.Tensor | None = None,
                 rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Final decoder hidden (B, L, C) -> logits (B, L, V), or (B, L, K) of ``output_ids`` only; values (B, L).
        ``rows``: ``head_rows(output_ids)`` when the caller already has them."""
        h = self.ln_decoder(x)
        if output_ids is None:
            out = self.token_embedding.weight if self.policy_head is None else self.policy_head.weight
        else:
            out = self.head_rows(output_ids) if rows is None else rows
        # The heads run outside autocast, in the weights' float32: PPO's ratio exp(logp - logp_old) and the
        # value regression need more precision than bf16's 8-bit mantissa.
        with torch.autocast(h.device.type, enabled=False):
            h = h.to(out.dtype)
            logits = F.linear(h, out)
            if output_ids is not None:
                logits = logits[..., : output_ids.numel()]
            return logits, self.value_head(h).squeeze(-1)

    def forward(self, source: torch.Tensor, target_in: torch.Tensor,
                output_ids: torch.Tensor | None = None,
                encoded: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One teacher-forced pass.

        Args:
            source: (B, S) int64 source ids, PAD-filled.
            target_in: (B, T) int64 decoder input: BOS, then the generated tokens shifted right; PAD beyond.
            output_ids: None, or (K,) int64 action ids (``allowed_actions``): logits of those only.
            encoded: None, or ``encode(source)`` already computed, (B, S', C) memory and (B, S') pad mask
                (S' may be fewer columns than S where the cut ones are PAD in every row): the encoder is
                not run again (``ppo_update`` encodes each distinct source of a minibatch once).

        Returns:
            logits (B, T, V) (or (B, T, K)) of the token at each output position, and values (B, T):
            V(s_t) of the state whose first t tokens are generated.
        """
        self._check_tokens("source", source, self.config.max_source_len)
        self._check_tokens("target_in", target_in, self.config.max_target_len)
        if source.shape[0] != target_in.shape[0]:
            raise ValueError(f"source has {source.shape[0]} rows but target_in has {target_in.shape[0]}")
        if encoded is not None and encoded[0].shape[0] != source.shape[0]:
            raise ValueError(f"encoded has {encoded[0].shape[0]} rows but source has {source.shape[0]}")
        source_emb, target_emb, rows = self._shared_lookups(None if encoded is not None else source, target_in, output_ids)
        memory, pad = encoded if encoded is not None else self.encode(source, source_emb)  # (B, S, C), (B, S)
        memory_mask = _attention_mask(pad)
        positions = torch.arange(target_in.shape[1], device=target_in.device)
        x = self._embed_target(target_in, positions, target_emb)  # (B, T, C)
        for block in self.decoder:
            x = block(x, block.cross_attn.keys_values(memory), memory_mask)
        return self._outputs(x, output_ids, rows)

    def evaluate_actions(self, source: torch.Tensor, actions: torch.Tensor, action_mask: torch.Tensor | None = None,
                         temperature: float = 1.0, entropy_grad: bool = True,
                         encoded: tuple[torch.Tensor, torch.Tensor] | None = None,
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probabilities, entropies and values of a whole sequence of actions in one pass.

        Args:
            source: (B, S) int64 source ids.
            actions: (B, T) int64 tokens taken at output positions 0..T-1 (anything, e.g. PAD, after the end).
            action_mask: None, or bool (V,) or (B, T, V), True where an action is allowed.
            temperature: softmax temperature; must be the one the actions were sampled at, or PPO's
                probability ratio compares two different distributions.
            entropy_grad: False computes the entropy outside autograd (a statistic only, e.g. with no
                entropy bonus): its (B, T, V) terms are then neither kept for nor walked by backward.
            encoded: None, or the sources' ``encode`` output (``forward``'s ``encoded``).

        Returns:
            logprobs (B, T) of ``actions``, entropy (B, T) of the masked, tempered policy, values (B, T).

        A (V,) mask is applied by computing the logits of the allowed actions only (``allowed_actions``):
        the same numbers as masking all V, at less cost. An action the mask forbids gets the log-probability
        the masked softmax gives it, the dtype's lowest value.
        """
        self._check_tokens("actions", actions, self.config.max_target_len)
        bos = actions.new_full((actions.shape[0], 1), BOS)
        target_in = torch.cat([bos, actions[:, :-1]], dim=1)  # (B, T)
        subset = allowed_actions(action_mask, self.config.vocab_size, actions.device)
        if subset is None:
            logits, values = self(source, target_in, encoded=encoded)  # (B, T, V), (B, T)
            index = actions
        else:
            ids, position = subset
            logits, values = self(source, target_in, output_ids=ids, encoded=encoded)  # (B, T, K), (B, T)
            index = position[actions]  # (B, T): -1 where forbidden
        if temperature != 1.0:
            logits = logits / temperature
        logp = F.log_softmax(logits if subset is not None else apply_action_mask(logits, action_mask), dim=-1)
        logprobs = logp.gather(-1, index.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
        if subset is not None:
            logprobs = torch.where(index >= 0, logprobs, torch.finfo(logprobs.dtype).min)
        with contextlib.nullcontext() if entropy_grad else torch.no_grad():
            entropy = -(logp.exp() * logp).sum(-1)  # (B, T)
        return logprobs, entropy, values

    # ---- token-by-token rollout with a KV cache ------------------------------------------------------

    @torch.no_grad()
    def start(self, source: torch.Tensor) -> DecodeState:
        """Encode (B, S) sources once and make empty self-attention caches of ``max_target_len`` positions."""
        memory, pad = self.encode(source)
        kv = [block.cross_attn.keys_values(memory) for block in self.decoder]
        memory_k = torch.stack([k for k, _ in kv])  # (L, B, H, S, D)
        memory_v = torch.stack([v for _, v in kv])
        L, B, H, _, D = memory_k.shape
        # Zeros, not empty: masked cache slots get weight 0, and 0 * garbage could be NaN.
        cache_shape = (L, B, H, self.config.max_target_len, D)
        return DecodeState(
            memory_k=memory_k, memory_v=memory_v, memory_mask=_attention_mask(pad),
            cache_k=memory_k.new_zeros(cache_shape), cache_v=memory_k.new_zeros(cache_shape),
            positions=torch.zeros(B, dtype=torch.int64, device=source.device), lengths=np.zeros(B, dtype=np.int64))

    @torch.no_grad()
    def step(self, state: DecodeState, prev_tokens: torch.Tensor,
             output_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Read one more decoder input per row (BOS first, then the token the row last emitted).

        Returns logits (B, V) of each row's next token (or (B, K) of ``output_ids`` only, see
        ``allowed_actions``) and values (B,) of each row's current state; the prefix is not re-encoded.
        Rows may sit at different positions (see ``reset_rows``). No gradients: this is for rollouts; the
        update re-evaluates whole sequences with ``forward``.
        """
        B, T = state.lengths.shape[0], self.config.max_target_len
        if not isinstance(prev_tokens, torch.Tensor) or prev_tokens.shape != (B,) or prev_tokens.dtype != torch.int64:
            raise ValueError(f"prev_tokens must be an int64 tensor of shape ({B},), got {_describe(prev_tokens)}")
        full = np.flatnonzero(state.lengths >= T)
        if full.size:
            raise ValueError(f"rows {full.tolist()} already read max_target_len={T} positions; "
                             "restart them with reset_rows before stepping again")
        n = int(state.lengths.max()) + 1  # attend over the longest row's prefix only
        pos = state.positions  # (B,)
        _, _, H, _, D = state.cache_k.shape
        index = pos.view(B, 1, 1, 1).expand(B, H, 1, D)
        cache_mask = (torch.arange(n, device=pos.device) <= pos[:, None]).view(B, 1, 1, n)  # per-row length
        x = self._embed_target(prev_tokens[:, None], pos[:, None])  # (B, 1, C)
        for i, block in enumerate(self.decoder):
            cache = (state.cache_k[i, :, :, :n], state.cache_v[i, :, :, :n], index, cache_mask)
            x = block(x, (state.memory_k[i], state.memory_v[i]), state.memory_mask, cache=cache)
        state.positions += 1
        state.lengths += 1
        rows = None
        if output_ids is not None:
            if state.head is None or state.head[0] is not output_ids:
                state.head = (output_ids, self.head_rows(output_ids))
            rows = state.head[1]
        logits, values = self._outputs(x, output_ids, rows)  # (B, 1, V or K), (B, 1)
        return logits[:, 0], values[:, 0]

    @torch.no_grad()
    def select_rows(self, state: DecodeState, rows: RowsLike) -> DecodeState:
        """A state of ``rows`` only, in that order (their caches copied): a batched decode drops the rows
        that have finished, so later steps compute nothing for them. ``rows``: indices, or a (B,) bool mask."""
        rows = _row_indices(rows, state.memory_mask.shape[0])
        idx = torch.as_tensor(rows, device=state.positions.device)
        return DecodeState(
            memory_k=state.memory_k.index_select(1, idx), memory_v=state.memory_v.index_select(1, idx),
            memory_mask=state.memory_mask.index_select(0, idx), cache_k=state.cache_k.index_select(1, idx),
            cache_v=state.cache_v.index_select(1, idx), positions=state.positions.index_select(0, idx),
            lengths=state.lengths[rows], head=state.head)

    @torch.no_grad()
    def reset_rows(self, state: DecodeState, rows: RowsLike, new_source: torch.Tensor) -> None:
        """Restart some rows at position 0 with new sources (for an env's autoreset); others are untouched.

        Args:
            state: from ``start``.
            rows: row indices, or a (B,) bool mask (e.g. ``terminated | truncated``).
            new_source: (len(rows), S) int64 sources of the restarted rows, in the order of ``rows``.
        """
        S = state.memory_mask.shape[-1]
        rows = _row_indices(rows, state.memory_mask.shape[0])
        if not isinstance(new_source, torch.Tensor) or tuple(new_source.shape) != (rows.size, S):
            raise ValueError(f"new_source must have shape ({rows.size}, {S}) (one source per restarted row), "
                             f"got {_describe(new_source)}; pass source[rows]")
        if rows.size == 0:
            return
        memory, pad = self.encode(new_source)  # (R, S, C)
        idx = torch.as_tensor(rows, device=state.positions.device)
        for i, block in enumerate(self.decoder):
            k, v = block.cross_attn.keys_values(memory)  # (R, H, S, D)
            state.memory_k[i, idx] = k.to(state.memory_k.dtype)
            state.memory_v[i, idx] = v.to(state.memory_v.dtype)
        state.memory_mask[idx] = _attention_mask(pad)
        state.positions[idx] = 0  # stale cache entries past position 0 are masked until overwritten
        state.lengths[rows] = 0

    @torch.no_grad()
    def sample(self, source: torch.Tensor, max_len: int, action_mask: torch.Tensor | None = None,
               greedy: bool = False, temperature: float = 1.0,
               generator: torch.Generator | None = None, eos_bias: float = 0.0) -> torch.Tensor:
        """Generate from (B, S) sources: tokens (B, L), PAD after each row's EOS, L <= max_len the steps
        taken (sampling stops once every row has emitted EOS). ``action_mask``: None, or bool (V,) or (B, V).
        ``eos_bias`` is added to EOS's logit at every step (after the temperature): below 0 the outputs grow
        longer, above 0 shorter (``benchmarks.length_hold`` calibrates it)."""
        if not 1 <= max_len <= self.config.max_target_len:
            raise ValueError(f"max_len={max_len} must be in 1..max_target_len={self.config.max_target_len}")
        if not greedy and not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}; use greedy=True for argmax decoding")
        if not (isinstance(eos_bias, numbers.Real) and np.isfinite(eos_bias)):
            raise ValueError(f"eos_bias must be a finite number, got {eos_bias!r} ({type(eos_bias).__name__})")
        subset = allowed_actions(action_mask, self.config.vocab_size, source.device)
        ids = None if subset is None else subset[0]
        eos_column = EOS if subset is None else int(subset[1][EOS])  # -1: EOS forbidden, nothing to bias
        state = self.start(source)
        B = source.shape[0]
        row_mask = None  # a (B, V) mask follows its rows as finished ones are dropped
        if action_mask is not None and subset is None and torch.as_tensor(action_mask).dim() == 2:
            row_mask = torch.as_tensor(action_mask, device=source.device)
        prev = torch.full((B,), BOS, dtype=torch.int64, device=source.device)
        done = torch.zeros(B, dtype=torch.bool, device=source.device)
        held = torch.arange(B, device=source.device)  # the rows the decode state holds
        tokens = []
        for _ in range(max_len):
            logits, _ = self.step(state, prev, ids)  # (R, V), or (R, K) over the allowed actions
            logits = logits.float() / (1.0 if greedy else temperature)
            if subset is None:
                logits = apply_action_mask(logits, action_mask if row_mask is None else row_mask[held])
            if eos_bias and eos_column >= 0:
                logits[:, eos_column] += eos_bias
            if greedy:
                choice = logits.argmax(-1)
            else:
                choice = sample_categorical(F.softmax(logits, dim=-1), generator)
            if ids is not None:
                choice = ids[choice]  # back to action ids
            token = torch.full((B,), PAD, dtype=torch.int64, device=source.device)
            token[held] = choice
            token = token.masked_fill(done, PAD)  # (B,)
            tokens.append(token)
            done |= token == EOS
            if bool(done.all()):
                break
            prev = token[held]
            live = ~done[held]
            if int(live.sum()) <= COMPACT_AT * held.numel():  # drop finished rows from the decode state
                state = self.select_rows(state, live)
                held, prev = held[live], prev[live]
        return torch.stack(tokens, dim=1)  # (B, L)
