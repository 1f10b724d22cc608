"""Corpus BLEU of a model's greedy output as ``benchmarks.quality`` scores Multi30k (sacrebleu, 13a,
case-insensitive), per-sentence BLEU statistics that sum to it, and the paired bootstrap of two systems'
difference with their output/reference length ratios."""

from __future__ import annotations

import numpy as np


def multi30k_references() -> dict[str, list[str]]:
    """The raw German references of Multi30k valid and test2016, in the splits' order (from ``$IR_DATA_DIR``)."""
    from ir_env.tasks.data import read_multi30k
    from ir_env.tasks.real import MULTI30K_FILES

    return {split: [de for _, de in read_multi30k(None, MULTI30K_FILES[split])] for split in ("valid", "test")}


def greedy_decode(model, task, sources: np.ndarray, batch_size: int = 200, eos_bias: float = 0.0):
    """``model``'s greedy outputs for the (N, S) word ids ``sources`` of ``task``, one (B, L) token array per batch
    of ``batch_size`` rows (``PolicyModel.sample``, with ``eos_bias`` added to EOS's logit)."""
    import torch

    device = next(model.parameters()).device
    mask = torch.as_tensor(task.action_mask(), device=device)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(sources), batch_size):
            source = torch.as_tensor(sources[start:start + batch_size], device=device)
            yield model.sample(source, task.max_generation_len, action_mask=mask, greedy=True,
                               eos_bias=eos_bias).cpu().numpy()


def corpus_bleu(model, task, split: str, references: list[str], batch_size: int = 200,
                eos_bias: float = 0.0) -> tuple[float, str, list[str]]:
    """Greedy corpus BLEU of ``model`` on ``split``: (score, sacrebleu signature, hypotheses). ``eos_bias`` is
    added to EOS's logit (``PolicyModel.sample``; ``benchmarks.length_hold`` chooses it)."""
    import sacrebleu

    hyps = [" ".join(task.vocab.decode(row))
            for out in greedy_decode(model, task, task.examples(split).source, batch_size, eos_bias) for row in out]
    bleu = sacrebleu.BLEU(lowercase=True, force=True)  # force: outputs are 13a tokens; re-tokenising them is a no-op
    score = bleu.corpus_score(hyps, [references])
    return score.score, str(bleu.get_signature()), hyps


def bleu_statistics(hyps: list[str], references: list[str]) -> np.ndarray:
    """(n, 10) sacrebleu BLEU sufficient statistics of each sentence (as ``corpus_bleu`` scores them): output
    and reference length, then matches and totals of the 1- to 4-grams. Summed over sentences and passed to
    ``bleu_of_statistics`` they give the corpus BLEU."""
    import sacrebleu

    if len(hyps) != len(references):
        raise ValueError(f"{len(hyps)} outputs for {len(references)} references")
    bleu = sacrebleu.BLEU(lowercase=True, force=True, effective_order=True)  # per sentence: no warning; stats unchanged
    scores = (bleu.sentence_score(h, [r]) for h, r in zip(hyps, references))
    return np.array([[s.sys_len, s.ref_len, *s.counts, *s.totals] for s in scores], dtype=np.int64)


def bleu_of_statistics(stats: np.ndarray) -> float:
    """Corpus BLEU (sacrebleu's formula, exp smoothing, no effective order) of summed ``bleu_statistics``."""
    import sacrebleu

    sys_len, ref_len, *counts = (int(round(x)) for x in stats)  # sacrebleu formats the lengths as integers
    return sacrebleu.BLEU.compute_bleu(counts[:4], counts[4:], sys_len, ref_len, smooth_method="exp").score


def length_ratio(hyps: list[str], references: list[str]) -> float:
    """Corpus output/reference length ratio in sacrebleu's 13a tokens (BLEU's brevity penalty is
    exp(1 - 1/ratio) below 1)."""
    return _length_ratio_of(bleu_statistics(hyps, references))


def _length_ratio_of(stats: np.ndarray) -> float:
    """Summed output length over summed reference length of ``bleu_statistics`` rows."""
    return float(stats[:, 0].sum() / max(stats[:, 1].sum(), 1))


def paired_bleu(hyps_a: list[str], hyps_b: list[str], references: list[str], resamples: int = 1000,
                seed: int = 0) -> dict[str, float]:
    """Paired bootstrap of corpus BLEU(B) - BLEU(A) over the sentences of one split (``stats.paired_bootstrap``),
    with each system's output/reference length ratio (``length_ratio_a``, ``length_ratio_b``: BLEU's brevity
    penalty is exp(1 - 1/ratio) below 1)."""
    from benchmarks.stats import paired_bootstrap

    a, b = bleu_statistics(hyps_a, references), bleu_statistics(hyps_b, references)
    result = paired_bootstrap(a, b, bleu_of_statistics, resamples=resamples, seed=seed)
    return {**result, "length_ratio_a": _length_ratio_of(a), "length_ratio_b": _length_ratio_of(b)}
