"""benchmarks/compare_outputs.py: the split of corpus BLEU's change into parts, against sacrebleu, and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.compare_outputs import compare, main, read_outputs
from ir_env.tasks.data import read_multi30k
from ir_env.tasks.real import MULTI30K_FILES
from tests.shipped import shipped

REFS = ["ein mann fährt fahrrad .", "zwei hunde spielen im schnee .", "eine frau liest ein buch im park .",
        "kinder spielen fußball .", "ein alter mann sitzt auf einer bank ."]
words = st.sampled_from("ein eine mann frau hunde spielen im schnee . park buch liest fährt kinder auf".split())
outputs = st.lists(st.lists(words, min_size=1, max_size=10).map(" ".join), min_size=5, max_size=5)


@settings(max_examples=40, deadline=None)
@given(a=outputs, b=outputs)
def test_the_parts_sum_to_the_change_of_log_bleu_and_the_scores_are_sacrebleus(a, b):
    a = [*REFS[:2], *a[2:]]  # every n-gram order matched somewhere, so that corpus log BLEU is finite
    b = [REFS[0], *b[1:4], REFS[4]]
    c = compare(a, b, REFS)
    for hyps, score in zip((a, b), c["bleu"]):
        assert score == pytest.approx(sacrebleu.BLEU(lowercase=True, force=True).corpus_score(hyps, [REFS]).score)
    assert c["log_change"] == pytest.approx(np.log(c["bleu"][1] / c["bleu"][0]))
    assert sum(c["parts"].values()) == pytest.approx(c["log_change"], abs=1e-9)
    assert c["changed"] == sum(x != y for x, y in zip(a, b)) and c["better"] + c["worse"] <= c["changed"]
    assert c["shorter"] + c["longer"] <= c["changed"]
    assert c["shorter"] == sum(len(y.split()) < len(x.split()) for x, y in zip(a, b))
    assert c["full_stop"] == tuple(sum(h.endswith(".") for h in hyps) for hyps in (a, b))
    assert [hi for _, hi, _, _ in c["by_length"]] == sorted(hi for _, hi, _, _ in c["by_length"])


def test_a_shorter_output_shows_in_the_brevity_penalty_only():
    b = [*REFS[:4], "ein alter mann sitzt"]  # the last output loses its last words: fewer n-grams, all matched
    c = compare(REFS, b, REFS)
    assert c["parts"]["brevity penalty"] < 0 and c["changed"] == 1 and c["worse"] == 1
    assert (c["shorter"], c["longer"], c["full_stop"]) == (1, 0, (5, 4))
    assert c["parts"]["1-gram matches"] < 0 < c["parts"]["1-gram totals"]
    assert c["parts"]["1-gram matches"] + c["parts"]["1-gram totals"] == pytest.approx(0.0)  # precision stays 1


def test_missing_or_short_outputs_are_refused_naming_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"mle_rl\.test\.txt: no outputs of arm 'mle_rl' on test"):
        read_outputs(tmp_path, "mle_rl", "test", 3)
    (tmp_path / "multi30k_outputs").mkdir()
    (tmp_path / "multi30k_outputs" / "mle.valid.txt").write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"mle\.valid\.txt: expected 3 lines, one output per sentence of valid, got 2"):
        read_outputs(tmp_path, "mle", "valid", 3)
    assert read_outputs(tmp_path, "mle", "valid", 2) == ["a", "b"]


def test_an_order_without_a_match_is_refused_rather_than_split_into_infinities():
    with pytest.raises(ValueError, match="no 4-gram match"):
        compare(REFS, [" ".join(r.split()[:3]) for r in REFS], REFS)  # 3-word outputs: no 4-gram at all


def test_the_command_reports_both_splits_of_a_run(tmp_path, monkeypatch):
    data = shipped("multi30k")
    monkeypatch.setenv("IR_DATA_DIR", str(data))
    folder = tmp_path / "multi30k_outputs"
    folder.mkdir()
    for split in ("valid", "test"):
        refs = [de.lower() for _, de in read_multi30k(None, MULTI30K_FILES[split])]
        (folder / f"mle.{split}.txt").write_text("".join(r + "\n" for r in refs), encoding="utf-8")
        cut = [" ".join(r.split()[:-1]) if i % 2 else r for i, r in enumerate(refs)]  # every other one shortened
        (folder / f"mle_rl.{split}.txt").write_text("".join(r + "\n" for r in cut), encoding="utf-8")
    text = main([str(tmp_path)])
    assert "## valid" in text and "## test2016" in text
    assert text.count("BLEU 100.00 -> ") == 2
    assert "| brevity penalty | -0.0" in text
    assert "507 of 1014 outputs differ" in text and "500 of 1000 outputs differ" in text
