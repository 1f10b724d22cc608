"""Synthetic translation: an English-like SVO source into a made-up verb-final language.

The target language is built, word for word, from syllables, with the phenomena that make real
translation more than word substitution: verb-final order (SOV), adjectives after their noun, two
grammatical genders with article and adjective agreement, plural noun forms, and subject-verb number
agreement. The lexicon is fixed (drawn from ``LEXICON_SEED``), so every seed shares one vocabulary; the
seed only chooses the sentences.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ir_env.tasks.base import Examples, Task, check_split
from ir_env.tasks.generation import (
    Pair,
    UniformStream,
    build_splits,
    check_sizes,
    draw_unique,
)
from ir_env.tokenizer import EOS, Vocabulary

if TYPE_CHECKING:
    from ir_env.rewards.base import PrefixMetric

# ---------------------------------------------------------------------------------------------------
# The lexicon. English lemmas are chosen with regular plurals / third-person forms and no form shared
# between two words (checked when the lexicon is built).

NOUNS: tuple[str, ...] = tuple(
    """dog cat bird horse cow goat pig duck rabbit fox bear lion tiger snake frog monkey donkey turtle owl
    eagle farmer teacher doctor student baker king queen soldier sailor pilot driver painter singer writer
    dancer friend neighbor stranger girl boy lady uncle aunt cousin brother sister mother father baby nurse
    judge guard chef clerk poet artist hunter table chair door window house garden river mountain forest city
    village road bridge tower castle church school market shop street lake ocean island field hill valley
    cave letter picture map key box bag bottle plate spoon lamp candle clock bell ball toy coat hat shoe
    ring stone flower tree apple orange bread cake cheese egg coin gift ship boat car train wagon wheel rope
    sword shield drum flag cloud star storm engine robot pencil basket blanket carpet mirror pillow bucket
    ladder hammer button ticket wallet jacket""".split()
)
ADJECTIVES: tuple[str, ...] = tuple(
    """big small old young red blue green yellow black white brown tall short long happy sad angry quiet
    loud fast slow strong weak rich poor brave clever kind cruel gentle proud tired hungry sleepy lazy busy
    famous strange beautiful ugly clean dirty warm cold hot wet dry heavy bright dark empty full soft hard
    sweet bitter wild calm dangerous friendly lonely foolish wise ancient modern tiny huge round sharp
    smooth noisy shy curious grey golden silver wooden broken secret""".split()
)
TRANSITIVE_VERBS: tuple[str, ...] = tuple(
    """see like love hate find carry watch follow help visit paint read write buy sell build open close push
    pull catch throw hold take bring call chase feed wash draw fix break drop hide meet greet teach protect
    kick touch want need remember forget eat drink""".split()
)
INTRANSITIVE_VERBS: tuple[str, ...] = tuple(
    """sleep run walk wait laugh cry sing dance swim jump smile shout fall sit stand arrive work rest travel
    whisper""".split()
)
ADVERBS: tuple[str, ...] = tuple(
    """quickly slowly quietly loudly happily sadly often never always sometimes now here there again
    carefully gently suddenly rarely usually early late soon together alone eagerly calmly""".split()
)
PREPOSITIONS: tuple[str, ...] = tuple(
    "in on under near behind beside with without from into over across through above below around".split()
)
SINGULAR, PLURAL = 0, 1
MASCULINE, FEMININE = 0, 1
#: Determiners with the numbers they combine with.
DETERMINERS: tuple[tuple[str, tuple[int, ...]], ...] = tuple(
    [(w, (SINGULAR, PLURAL)) for w in "the my your his her our their no".split()]
    + [(w, (SINGULAR,)) for w in "a this that every one each another".split()]
    + [(w, (PLURAL,)) for w in "these those some many few two three four several".split()]
)
PERIOD = "."

#: Target agreement endings of determiners and adjectives, indexed by ``2 * gender + number``.
AGREEMENT_ENDINGS: tuple[str, ...] = ("o", "os", "a", "as")  # masc. sg, masc. pl, fem. sg, fem. pl
NOUN_ENDINGS: tuple[str, ...] = ("", "n")  # singular, plural
VERB_ENDINGS: tuple[str, ...] = ("t", "nt")  # singular subject, plural subject
#: Word classes: (syllable pattern of target stems, C = consonant, V = vowel; target endings).
WORD_CLASSES: dict[str, tuple[str, tuple[str, ...]]] = {
    "noun": ("CVCV", NOUN_ENDINGS),
    "adjective": ("CVCVC", AGREEMENT_ENDINGS),
    "transitive": ("CVCV", VERB_ENDINGS),
    "intransitive": ("CVCV", VERB_ENDINGS),
    "adverb": ("CVCVCV", ("",)),
    "preposition": ("CV", ("",)),
    "determiner": ("VC", AGREEMENT_ENDINGS),
}
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
#: The lexicon does not depend on the task seed: every seed shares one vocabulary.
LEXICON_SEED = 1999


def english_s_form(word: str) -> str:
    """The plural of a regular noun, or the third-person singular of a regular verb."""
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2] not in _VOWELS:
        return word[:-1] + "ies"
    return word + "s"


@dataclass(frozen=True)
class Lemma:
    """One (source lemma, target lemma) pair of the lexicon, with all its word forms.

    Attributes:
        source: forms by number (a noun's own, a verb's subject's); one form for the other classes.
        target: forms by number for nouns and verbs; by ``2 * gender + number`` for adjectives and
            determiners (``""`` where a determiner does not take that number); one form otherwise.
        gender: MASCULINE or FEMININE for nouns (target grammatical gender), else MASCULINE.
    """

    source: tuple[str, ...]
    target: tuple[str, ...]
    gender: int = MASCULINE


def _source_forms() -> dict[str, list[tuple[str, ...]]]:
    """The source forms of every lemma, by word class."""
    return {
        "noun": [(n, english_s_form(n)) for n in NOUNS],
        "adjective": [(a,) for a in ADJECTIVES],
        "transitive": [(english_s_form(v), v) for v in TRANSITIVE_VERBS],
        "intransitive": [(english_s_form(v), v) for v in INTRANSITIVE_VERBS],
        "adverb": [(a,) for a in ADVERBS],
        "preposition": [(p,) for p in PREPOSITIONS],
        "determiner": [(d,) for d, _ in DETERMINERS],
    }


@functools.cache
def build_lexicon() -> dict[str, tuple[Lemma, ...]]:
    """The fixed lexicon by word class: target stems drawn from ``LEXICON_SEED``, each redrawn until all
    its forms are new (no two target forms, and no target and source form, coincide)."""
    rng = np.random.default_rng(LEXICON_SEED)
    sources = _source_forms()
    taken = [w for forms in sources.values() for form in forms for w in form] + ["an", PERIOD]
    if len(set(taken)) != len(taken):
        raise AssertionError(f"source word forms {sorted({w for w in taken if taken.count(w) > 1})} repeat")
    taken_set = set(taken)
    allowed_numbers = [numbers for _, numbers in DETERMINERS]
    lexicon: dict[str, tuple[Lemma, ...]] = {}
    for word_class, (pattern, endings) in WORD_CLASSES.items():
        lemmas = []
        for i, source in enumerate(sources[word_class]):
            used = [True] * len(endings)
            if word_class == "determiner":
                used = [k % 2 in allowed_numbers[i] for k in range(len(endings))]
            while True:
                stem = "".join(rng.choice(list(_CONSONANTS if c == "C" else _VOWELS)) for c in pattern)
                target = tuple(stem + e if u else "" for e, u in zip(endings, used))
                if taken_set.isdisjoint(w for w in target if w):
                    break
            taken_set.update(w for w in target if w)
            lemmas.append(Lemma(source, target))
        lexicon[word_class] = tuple(lemmas)
    genders = rng.integers(2, size=len(NOUNS))
    lexicon["noun"] = tuple(Lemma(lemma.source, lemma.target, int(g)) for lemma, g in zip(lexicon["noun"], genders))
    return lexicon


# ---------------------------------------------------------------------------------------------------
# The task.

MAX_SOURCE_LEN = 20
GENERATION_MARGIN = 4  # max_generation_len = longest reference + this margin
P_TRANSITIVE = 0.6
P_SUBJECT_PP = 0.25  # a prepositional phrase inside the subject ("the dog in the garden")
P_VERB_PP = 0.4
P_ADVERB = 0.4
P_ADJECTIVES = (0.4, 0.4, 0.2)  # probability of 0, 1, 2 adjectives in a subject or object
P_PP_ADJECTIVE = 0.3  # probability of one adjective inside a prepositional phrase


class TranslationTask(Task):
    """Translate English-like sentences into a synthetic verb-final language (metric: BLEU).

    Example (seed 0, training pair 7)::

        three lazy girls hide every small cow .  ->  azas vedon zegakas oda kuzo vigega vizunt .

    that is "three.F.PL girl.PL lazy.F.PL every.F.SG cow small.F.SG hide.PL": subject, object,
    prepositional phrases and adverb come first and the verb last; adjectives follow their noun and agree
    with its gender and number, as the article does; the verb agrees with the subject's number; plural
    nouns have their own form.

    Sizes: a lexicon of 354 lemma pairs (143 nouns, 79 adjectives, 66 verbs, 26 adverbs, 16 prepositions,
    24 determiners) and a joint vocabulary of 1,409 tokens; 20,000 / 1,000 / 1,000 distinct sentence
    pairs by default; sources of 4 to 19 tokens (``max_source_len`` 20); ``max_generation_len`` = longest
    reference + 4 (23 by default).

    Args:
        seed: chooses the sentences (the lexicon is the same for every seed).
        num_train, num_valid, num_test: split sizes.
    """

    name = "translation"
    metric_name = "bleu"

    def __init__(self, seed: int = 0, num_train: int = 20_000, num_valid: int = 1_000, num_test: int = 1_000):
        self.seed, sizes = check_sizes(seed, num_train, num_valid, num_test)
        self.lexicon = build_lexicon()
        lemmas = [lemma for group in self.lexicon.values() for lemma in group]
        self.source_words = [PERIOD, "an"] + [w for lemma in lemmas for w in lemma.source]
        self.target_words = [w for lemma in lemmas for w in lemma.target if w]
        self.vocab = Vocabulary(self.source_words + self.target_words)
        self._index_lexicon()
        stream = UniformStream(np.random.default_rng(self.seed))
        pairs = draw_unique(lambda _: self._sample(stream), sum(sizes.values()))
        self.max_source_len = MAX_SOURCE_LEN
        self.max_generation_len = max(len(r) for _, r in pairs) + GENERATION_MARGIN
        self._splits = build_splits(pairs, sizes, self.max_source_len, self.max_generation_len)

    def examples(self, split: str) -> Examples:
        return self._splits[check_split(split)]

    def metric(self, examples: Examples, num_rows: int) -> PrefixMetric:
        from ir_env.rewards.bleu import IncrementalBLEU

        return IncrementalBLEU(examples, num_rows)

    def action_mask(self) -> np.ndarray:
        """Target-language words (and the period) plus EOS."""
        mask = self.vocab.mask(self.target_words + [PERIOD])
        mask[EOS] = True
        return mask

    # -- generation ---------------------------------------------------------------------------------

    def _index_lexicon(self) -> None:
        """Id tables of the lexicon, so that sampling never looks up strings."""
        index = self.vocab.index
        ids = {
            word_class: [([index[w] for w in m.source], [index.get(w, -1) for w in m.target]) for m in lemmas]
            for word_class, lemmas in self.lexicon.items()
        }
        self._noun, self._adjective = ids["noun"], ids["adjective"]
        self._gender = [lemma.gender for lemma in self.lexicon["noun"]]
        self._verb = (ids["intransitive"], ids["transitive"])
        self._adverb, self._preposition = ids["adverb"], ids["preposition"]
        # Every (determiner, number) it allows, so one draw picks both.
        determiners = zip(ids["determiner"], DETERMINERS)
        self._det_number = [(src[0], tgt, number) for (src, tgt), (_, numbers) in determiners for number in numbers]
        self._period, self._a, self._an = index[PERIOD], index["a"], index["an"]
        self._vowel_initial = frozenset(index[w] for w in ADJECTIVES + NOUNS if w[0] in _VOWELS)

    def _noun_phrase(self, draw: UniformStream, max_adjectives: int) -> tuple[list[int], list[int], int]:
        """(source ids, target ids, number) of ``det adj* noun`` -> ``det' noun' adj'*``."""
        uniform = draw.uniform
        det_src, det_tgt, number = self._det_number[int(uniform() * len(self._det_number))]
        noun = int(uniform() * len(self._noun))
        agreement = 2 * self._gender[noun] + number
        u = uniform()
        if max_adjectives == 2:
            count = 0 if u < P_ADJECTIVES[0] else 1 if u < P_ADJECTIVES[0] + P_ADJECTIVES[1] else 2
        else:
            count = int(u < P_PP_ADJECTIVE)
        n = len(self._adjective)
        adjectives = [int(uniform() * n)] if count else []
        if count == 2:  # a second, different adjective
            second = int(uniform() * (n - 1))
            adjectives.append(second + (second >= adjectives[0]))
        noun_src, noun_tgt = self._noun[noun]
        src = [self._adjective[a][0][0] for a in adjectives] + [noun_src[number]]
        if det_src == self._a and src[0] in self._vowel_initial:
            det_src = self._an
        tgt = [det_tgt[agreement], noun_tgt[number]] + [self._adjective[a][1][agreement] for a in adjectives]
        return [det_src] + src, tgt, number

    def _prep_phrase(self, draw: UniformStream) -> tuple[list[int], list[int]]:
        (prep_src,), (prep_tgt,) = draw.choice(self._preposition)
        src, tgt, _ = self._noun_phrase(draw, max_adjectives=1)
        return [prep_src] + src, [prep_tgt] + tgt

    def _sample(self, draw: UniformStream) -> Pair:
        """One sentence pair: SUBJ [PP] VERB [OBJ] [PP] [ADV] . -> SUBJ [PP] [OBJ] [PP] [ADV] VERB ."""
        src, tgt, number = self._noun_phrase(draw, max_adjectives=2)
        if draw.chance(P_SUBJECT_PP):
            pp_src, pp_tgt = self._prep_phrase(draw)
            src += pp_src
            tgt += pp_tgt
        transitive = int(draw.chance(P_TRANSITIVE))
        verb_src, verb_tgt = draw.choice(self._verb[transitive])
        src.append(verb_src[number])
        if transitive:
            obj_src, obj_tgt, _ = self._noun_phrase(draw, max_adjectives=2)
            src += obj_src
            tgt += obj_tgt
        if draw.chance(P_VERB_PP):
            pp_src, pp_tgt = self._prep_phrase(draw)
            src += pp_src
            tgt += pp_tgt
        if draw.chance(P_ADVERB):
            (adv_src,), (adv_tgt,) = draw.choice(self._adverb)
            src.append(adv_src)
            tgt.append(adv_tgt)
        src.append(self._period)
        tgt += [verb_tgt[number], self._period]
        return src, tgt
