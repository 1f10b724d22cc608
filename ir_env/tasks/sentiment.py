"""Sentiment-steered continuation: continue a film-review prompt with the requested polarity (metric: VADER).

The source is a polarity token (``<positive>`` or ``<negative>``) and a short review prompt; the score
is the signed VADER compound of the continuation. References (a corpus of fluent continuations from a
template grammar whose sentiment words are all VADER-rated with the right sign) are there for supervised
warm starts and for inspection; the metric does not read them.
"""

from __future__ import annotations

import functools
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
from ir_env.tokenizer import EOS, NUM_SPECIAL, Vocabulary

if TYPE_CHECKING:
    from ir_env.rewards.base import PrefixMetric

POSITIVE, NEGATIVE = 1, -1
POLARITY_TOKENS: dict[int, str] = {POSITIVE: "<positive>", NEGATIVE: "<negative>"}

# Prompts: every frame around every subject. No prompt word is VADER-rated, so the polarity of a
# prompt + continuation is the continuation's.
PROMPT_SUBJECTS: tuple[str, ...] = (
    "the film", "the movie", "this film", "this movie", "the show", "this show", "the series", "the documentary",
)
PROMPT_FRAMES: tuple[str, ...] = ("{} was", "{} is", "i watched {} and it was", "i think {} was", "in my view , {} was")
PROMPTS: tuple[str, ...] = tuple(frame.format(subject) for frame in PROMPT_FRAMES for subject in PROMPT_SUBJECTS)
MAX_SOURCE_LEN = 8  # polarity token + the longest prompt (7 words)
MAX_GENERATION_LEN = 16

# Continuation grammar. Upper-case tokens are slots; the polarity picks the filler lists of the
# sentiment slots (ADJ, NOUN, VERB, SUP, CLOSING); INT, ASPECT and MASS are neutral.
TEMPLATES: tuple[tuple[str, ...], ...] = tuple(
    t.split()
    for t in (
        "INT ADJ .",
        "ADJ and ADJ .",
        "INT ADJ and the ASPECT was ADJ .",
        "ADJ , the ASPECT was INT ADJ and i VERB it .",
        "a ADJ NOUN , i VERB it !",
        "a NOUN from start to finish .",
        "ADJ . i VERB every minute of it .",
        "INT ADJ . the ASPECT was ADJ and the ASPECT was ADJ .",
        "one of the SUP i have ever seen .",
        "ADJ , with INT ADJ MASS and ADJ MASS .",
        "INT ADJ ! CLOSING .",
        "a ADJ NOUN and the ASPECT was INT ADJ .",
    )
)
INTENSIFIERS: tuple[str, ...] = tuple(
    "really very quite absolutely so incredibly extremely utterly totally thoroughly remarkably".split()
)
ASPECTS: tuple[str, ...] = tuple(
    "acting plot story music ending script dialogue cinematography pacing direction soundtrack cast editing "
    "lighting writing screenplay".split()
)
#: Aspects that read well without an article ("with superb acting").
MASS_ASPECTS: tuple[str, ...] = tuple(
    "acting music dialogue cinematography pacing direction editing lighting writing".split()
)
#: Hand-picked sentiment fillers for fluency; a test checks each against the VADER lexicon's sign.
SENTIMENT_WORDS: dict[int, dict[str, tuple[str, ...]]] = {
    POSITIVE: {
        "ADJ": tuple(
            "wonderful great brilliant excellent amazing beautiful delightful fantastic superb lovely charming "
            "enjoyable perfect impressive outstanding clever gorgeous magnificent funny terrific splendid".split()
        ),
        "NOUN": tuple("masterpiece joy delight triumph pleasure treasure".split()),
        "VERB": tuple("loved enjoyed liked adored admired cherished appreciated".split()),
        "SUP": ("best", "greatest"),
    },
    NEGATIVE: {
        "ADJ": tuple(
            "awful terrible boring dull horrible dreadful weak stupid painful ugly disappointing bad poor "
            "pathetic annoying lame messy dumb useless worthless ridiculous".split()
        ),
        "NOUN": tuple("disaster mess failure waste disappointment bore".split()),
        "VERB": tuple("hated disliked despised regretted resented loathed".split()),
        "SUP": ("worst", "weakest", "dullest"),
    },
}
#: Whole closing clauses; the negative ones carry their polarity through VADER's negation rule.
CLOSINGS: dict[int, tuple[str, ...]] = {
    POSITIVE: ("i would recommend it to everyone", "i would happily watch it again"),
    NEGATIVE: ("i would not recommend it to anyone", "i would never watch it again"),
}
#: Words a fluent policy needs beyond the grammar's.
FUNCTION_WORDS: tuple[str, ...] = tuple(
    """a an the this that these those it its i me my we our you your he she they them his her their and but
    or so because if when while then than as of in on at to for with from by about after before during
    was is are were be been being have has had do did not no never very really quite too also just more
    most all some every one two first last again ever there here what who which how story film movie show
    scene scenes actors actor characters time minute minutes hour hours end start finish watch watched seen
    would could should will can""".split()
)
PUNCTUATION: tuple[str, ...] = (".", ",", "!")
VOWELS = "aeiou"  # "a" becomes "an" before these

# The VADER words of the vocabulary: lowercase alphabetic entries of 4-12 letters with |valence| >= 1.5,
# keeping the root of each family (no entry of 4+ letters is a proper prefix of the word), leaving out
# internet acronyms and offensive words; then the NUM_VADER_WORDS strongest of each sign, ties by spelling.
NUM_VADER_WORDS = 300  # per sign
MIN_VALENCE = 1.5
_OFFENSIVE_PARTS = (
    "fuck fuk shit cunt bitch bastard dick piss fag whore slut nigg retard damn crap douche asshole jackass "
    "dumbass twat wank cock prick moron idiot goddam sex porn orgasm horny rape rapist raping kill suicid "
    "murder bullshit heroin cocaine nazi terror molest pervert slave turd puke screw bloody hell smartass "
    "scumbag racis fascis".split()
)
_EXCLUDED = frozenset(
    "aayf alol ambw foaf gratz hagd hagn hhoj iluaaf kmuf lmao lmbao lmfao lmso lolz lulz lylab lylas lylb "
    "muah mwah rofl rotfl rotgl sete sfete sgtm swak tgif tyvm woot xlnt xoxo xqzt yeees ywia hugz atab bsod "
    "cwot fcol fubar mofo nitl prblm snafu effin pita tard nagana corpse tumor imbecile lunatic maniac "
    "obscene shylock".split()
)


@functools.cache
def vader_lexicon() -> dict[str, float]:
    """The VADER lexicon (word -> mean valence), loaded once."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return dict(SentimentIntensityAnalyzer().lexicon)


@functools.cache
def vader_vocabulary_words() -> tuple[str, ...]:
    """The NUM_VADER_WORDS strongest positive and negative VADER words that pass the filter, sorted."""
    lexicon = vader_lexicon()
    alphabetic = frozenset(w for w in lexicon if w.isalpha() and w.islower())
    candidates = [
        w
        for w in sorted(alphabetic)
        if 4 <= len(w) <= 12
        and abs(lexicon[w]) >= MIN_VALENCE
        and w not in _EXCLUDED
        and not any(part in w for part in _OFFENSIVE_PARTS)
        and not any(w[:i] in alphabetic for i in range(4, len(w)))
    ]
    chosen: list[str] = []
    for sign in (1, -1):
        same_sign = [w for w in candidates if lexicon[w] * sign > 0]
        chosen += sorted(same_sign, key=lambda w: (-abs(lexicon[w]), w))[:NUM_VADER_WORDS]
    return tuple(sorted(chosen))


class SentimentTask(Task):
    """Continue a film-review prompt with the requested sentiment (metric: signed VADER compound).

    Example::

        <negative> i watched this movie and it was  ->  a dull mess , i hated it !

    The polarity token (id 4 or 5) is the first source token; ``Examples.attribute`` is +1 or -1,
    alternating, so every split is balanced. The metric scores the output's VADER compound, signed by the
    attribute; the reference is one fluent continuation of that polarity (for supervised warm starts).

    Sizes: 40 prompts, 12 continuation templates; a vocabulary of 795 tokens, 649 of them VADER-rated
    words; 5,000 / 500 / 500 distinct (source, reference) pairs by default; ``max_source_len`` 8,
    ``max_generation_len`` 16.

    Args:
        seed: chooses the examples (the vocabulary is the same for every seed).
        num_train, num_valid, num_test: split sizes.
    """

    name = "sentiment"
    metric_name = "vader"

    def __init__(self, seed: int = 0, num_train: int = 5_000, num_valid: int = 500, num_test: int = 500):
        self.seed, sizes = check_sizes(seed, num_train, num_valid, num_test)
        grammar_words = {w for phrase in PROMPTS for w in phrase.split()}
        grammar_words.update(w for t in TEMPLATES for w in t if not w.isupper())
        grammar_words.update(INTENSIFIERS + ASPECTS + MASS_ASPECTS + FUNCTION_WORDS + PUNCTUATION)
        for polarity in (POSITIVE, NEGATIVE):
            grammar_words.update(w for fillers in SENTIMENT_WORDS[polarity].values() for w in fillers)
            grammar_words.update(w for closing in CLOSINGS[polarity] for w in closing.split())
        words = sorted(grammar_words.union(vader_vocabulary_words()))
        self.vocab = Vocabulary([POLARITY_TOKENS[POSITIVE], POLARITY_TOKENS[NEGATIVE]] + words)
        self.max_source_len = MAX_SOURCE_LEN
        self.max_generation_len = MAX_GENERATION_LEN
        self._prompts = [self.vocab.encode(p).tolist() for p in PROMPTS]
        stream = UniformStream(np.random.default_rng(self.seed))
        pairs = draw_unique(lambda i: self._sample(stream, self.polarity_of(i)), sum(sizes.values()))
        attributes = [self.polarity_of(i) for i in range(len(pairs))]
        self._splits = build_splits(pairs, sizes, self.max_source_len, self.max_generation_len, attributes)

    @staticmethod
    def polarity_of(index: int) -> int:
        """The requested polarity of the ``index``-th example drawn: alternating, starting positive."""
        return POSITIVE if index % 2 == 0 else NEGATIVE

    def examples(self, split: str) -> Examples:
        return self._splits[check_split(split)]

    def metric(self, examples: Examples, num_rows: int) -> PrefixMetric:
        from ir_env.rewards.sentiment import VaderCompound

        return VaderCompound(examples, num_rows, self.vocab)

    def action_mask(self) -> np.ndarray:
        """Every word but the specials and the polarity tokens, plus EOS."""
        mask = np.zeros(len(self.vocab), dtype=bool)
        mask[NUM_SPECIAL + len(POLARITY_TOKENS) :] = True
        mask[EOS] = True
        return mask

    def _sample(self, draw: UniformStream, polarity: int) -> Pair:
        """One (polarity token + prompt, continuation) pair; slots of one kind get distinct fillers."""
        source = [self.vocab.id(POLARITY_TOKENS[polarity])] + draw.choice(self._prompts)
        template = draw.choice(TEMPLATES)
        fillers = dict(SENTIMENT_WORDS[polarity], INT=INTENSIFIERS, ASPECT=ASPECTS, MASS=MASS_ASPECTS)
        fillers["CLOSING"] = CLOSINGS[polarity]
        slots = sorted({token for token in template if token.isupper()})  # sorted: no hash-order draws
        chosen = {slot: draw.sample(fillers[slot], template.count(slot)) for slot in slots}
        words: list[str] = []
        for token in template:
            words.extend(chosen[token].pop().split() if token.isupper() else [token])
        for i in range(len(words) - 1):
            if words[i] == "a" and words[i + 1][0] in VOWELS:
                words[i] = "an"
        return source, self.vocab.encode(words).tolist()
