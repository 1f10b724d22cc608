"""Matching tasks: outputs scored by overlap with a reference drawn from the source.

Two flavours on one machinery (``MatchingTask``): extractive question answering over a generated
context (``QATask``, token F1) and compression of a sentence padded with filler words
(``SummaryTask``, ROUGE-L). Every output word is lowercase alphanumeric or a pure punctuation token, so
per-token SQuAD normalisation equals the normalisation of the joined string.
"""

from __future__ import annotations

from abc import abstractmethod
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

VOWELS = "aeiou"  # "a" becomes "an" before these

# Entities and attributes, shared by both flavours. The lists are disjoint (checked by a test).
NAMES: tuple[str, ...] = tuple(
    """alice bob carol dave erin frank grace heidi ivan judy karl laura mike nina oscar peggy quinn rupert
    sybil trent ursula victor wendy xavier yolanda zoe adam bella chris diana ethan fiona george hannah isaac
    julia kevin lucy martin olivia""".split()
)
CITIES: tuple[str, ...] = tuple(
    """paris london berlin madrid rome vienna prague lisbon dublin oslo stockholm helsinki warsaw budapest
    athens cairo tokyo seoul beijing delhi sydney toronto chicago boston denver lima bogota nairobi lagos
    manila""".split()
)
JOBS: tuple[str, ...] = tuple(
    """doctor nurse teacher lawyer engineer pilot farmer baker chef painter writer singer dancer plumber
    carpenter dentist architect journalist librarian mechanic pharmacist scientist gardener tailor
    firefighter""".split()
)
COLOURS: tuple[str, ...] = tuple("red blue green yellow black white orange purple brown grey silver pink".split())
PETS: tuple[str, ...] = tuple("cat dog parrot rabbit hamster turtle goldfish pony ferret lizard canary goat".split())
PET_NAMES: tuple[str, ...] = tuple(
    "rex luna max daisy milo coco oreo biscuit pepper shadow ziggy pickles nugget waffles".split()
)
FOODS: tuple[tuple[str, ...], ...] = tuple(
    tuple(f.split())
    for f in (
        "pizza", "pasta", "sushi", "rice", "soup", "cheese", "chocolate", "apples", "bananas", "tea", "coffee",
        "noodles", "curry", "tacos", "pancakes", "apple pie", "fried rice", "green tea", "ice cream",
        "tomato soup", "lemon cake",
    )
)
AGES: tuple[str, ...] = tuple(str(n) for n in range(18, 80))


class MatchingTask(Task):
    """Shared machinery of the matching flavours: knobs, vocabulary, drawing and splitting.

    A subclass lists its words (``_words``), its marker tokens (``MARKERS``: in the source only, never
    emitted) and draws one example as words (``_sample``).

    Args:
        seed: chooses the examples (the vocabulary is the same for every seed).
        num_train, num_valid, num_test: split sizes.
    """

    MARKERS: tuple[str, ...] = ()
    #: S, the width of the source.
    MAX_SOURCE_LEN: int

    def __init__(self, seed: int = 0, num_train: int = 10_000, num_valid: int = 500, num_test: int = 500):
        self.seed, sizes = check_sizes(seed, num_train, num_valid, num_test)
        self.vocab = Vocabulary(list(self.MARKERS) + sorted(set(self._words())))
        index = self.vocab.index
        stream = UniformStream(np.random.default_rng(self.seed))

        def sample(_: int) -> Pair:
            source, reference = self._sample(stream)
            return [index[w] for w in source], [index[w] for w in reference]

        pairs = draw_unique(sample, sum(sizes.values()), key=self._key)
        self.max_source_len = self.MAX_SOURCE_LEN
        self.max_generation_len = self._generation_len(max(len(r) for _, r in pairs))
        self._splits = build_splits(pairs, sizes, self.max_source_len, self.max_generation_len)

    def examples(self, split: str) -> Examples:
        return self._splits[check_split(split)]

    def action_mask(self) -> np.ndarray:
        """Every word but the specials and the markers (a policy may copy any word), plus EOS."""
        mask = np.zeros(len(self.vocab), dtype=bool)
        mask[NUM_SPECIAL + len(self.MARKERS) :] = True
        mask[EOS] = True
        return mask

    @staticmethod
    def _key(pair: Pair) -> tuple:
        """What must differ between two examples (default: the source, which fixes the reference)."""
        return tuple(pair[0])

    @abstractmethod
    def _words(self) -> list[str]:
        """Every word the grammar can produce, markers excluded (order and repeats do not matter)."""

    @abstractmethod
    def _sample(self, draw: UniformStream) -> tuple[list[str], list[str]]:
        """One example as (source words, reference words)."""

    @abstractmethod
    def _generation_len(self, longest_reference: int) -> int:
        """T, the output cap, given the longest reference drawn."""


def with_article(words: list[str]) -> list[str]:
    """``["a"] + words``, or ``["an"] + words`` before a vowel."""
    return ["an" if words[0][0] in VOWELS else "a"] + words


# ---------------------------------------------------------------------------------------------------
# Question answering.

SEPARATOR = "<sep>"
QA_MAX_SOURCE_LEN = 64  # 6 facts of <= 7 words + the separator + a question of <= 10 words: <= 53
QA_MAX_GENERATION_LEN = 8
MIN_PEOPLE, MAX_PEOPLE = 2, 4
MIN_FACTS, MAX_FACTS = 3, 6
P_RELATION = 0.25
ATTRIBUTES = ("city", "job", "car", "pet", "age", "food")
RELATIONS: dict[str, tuple[str, ...]] = {
    "work": ("works", "with"),
    "marriage": ("is", "married", "to"),
    "friendship": ("is", "friends", "with"),
}
QA_WORDS: tuple[str, ...] = tuple(
    """lives in works as a an drives car has called is years old likes with married to friends . ? who what
    where how does do live drive pet have the name of colour like work""".split()
)


class QATask(MatchingTask):
    """Answer a question with a span of a generated context (metric: SQuAD v1.1 token F1).

    Example::

        alice lives in paris . bob drives a red car . alice works with bob . <sep> what does bob drive ?
        ->  a red car

    Contexts hold 3-6 facts about 2-4 people (city, job, car, pet, age, food; "works with", "is married
    to", "is friends with"). Attribute values are distinct within a context and each person has at most
    one fact of each kind, so every question, forward ("where does alice live ?") or reverse ("who lives
    in paris ?"), has exactly one answer, a 1-4 word span of the context.

    Sizes: a vocabulary of 259 tokens; 10,000 / 500 / 500 examples with distinct sources by default;
    sources of at most 53 tokens (``max_source_len`` 64), answers of 1-3 tokens (``max_generation_len`` 8).
    """

    name = "matching:qa"
    metric_name = "f1"
    MARKERS = (SEPARATOR,)
    MAX_SOURCE_LEN = QA_MAX_SOURCE_LEN

    def metric(self, examples: Examples, num_rows: int) -> PrefixMetric:
        from ir_env.rewards.f1 import TokenF1

        return TokenF1(examples, num_rows, self.vocab)

    def _generation_len(self, longest_reference: int) -> int:
        return QA_MAX_GENERATION_LEN

    def _words(self) -> list[str]:
        words = list(QA_WORDS + NAMES + CITIES + JOBS + COLOURS + PETS + PET_NAMES + AGES)
        return words + [w for food in FOODS for w in food]

    def _sample(self, draw: UniformStream) -> tuple[list[str], list[str]]:
        people = draw.sample(NAMES, MIN_PEOPLE + draw.index(MAX_PEOPLE - MIN_PEOPLE + 1))
        num_facts = MIN_FACTS + draw.index(MAX_FACTS - MIN_FACTS + 1)
        unstated = [(person, kind) for person in people for kind in ATTRIBUTES]
        used: dict[str, set] = {kind: set() for kind in ATTRIBUTES + tuple(RELATIONS)}
        facts: list[Fact] = []
        while len(facts) < num_facts:
            if draw.chance(P_RELATION):
                kind = draw.choice(RELATION_KINDS)
                p, q = draw.sample(people, 2)
                if p in used[kind] or q in used[kind]:
                    continue  # each person is in at most one fact of each relation: "who ..." stays unique
                used[kind].update((p, q))
                facts.append((kind, p, (q,)))
            else:
                person, kind = unstated.pop(draw.index(len(unstated)))
                value = draw.choice(VALUES[kind])
                while not used[kind].isdisjoint(value):  # values are distinct within a context
                    value = draw.choice(VALUES[kind])
                used[kind].update(value)
                facts.append((kind, person, value))
        context = [w for fact in facts for w in fact_sentence(fact)]
        question, answer = draw.choice(fact_questions(draw.choice(facts)))
        return context + [SEPARATOR] + question, answer


#: A fact: (kind, person, value words); a pet's value is (species, name), a relation's the other person.
Fact = tuple[str, str, tuple[str, ...]]
RELATION_KINDS: tuple[str, ...] = tuple(RELATIONS)
VALUES: dict[str, tuple[tuple[str, ...], ...]] = {
    "city": tuple((c,) for c in CITIES),
    "job": tuple((j,) for j in JOBS),
    "car": tuple((c,) for c in COLOURS),
    "pet": tuple((pet, name) for pet in PETS for name in PET_NAMES),
    "age": tuple((a,) for a in AGES),
    "food": FOODS,
}


def fact_sentence(fact: Fact) -> list[str]:
    """The context sentence that states ``fact``."""
    kind, p, value = fact
    if kind in RELATIONS:
        return [p, *RELATIONS[kind], value[0], "."]
    if kind == "city":
        return [p, "lives", "in", value[0], "."]
    if kind == "job":
        return [p, "works", "as", *with_article([value[0]]), "."]
    if kind == "car":
        return [p, "drives", *with_article([value[0], "car"]), "."]
    if kind == "pet":
        return [p, "has", *with_article([value[0]]), "called", value[1], "."]
    if kind == "age":
        return [p, "is", value[0], "years", "old", "."]
    return [p, "likes", *value, "."]


def fact_questions(fact: Fact) -> list[tuple[list[str], list[str]]]:
    """The (question, answer) pairs that ``fact`` answers: forward ones about the person, reverse ones
    about the value; each answer is a span of the fact's sentence."""
    kind, p, value = fact
    if kind == "work":
        return [(["who", "does", p, "work", "with", "?"], [value[0]]), (["who", "works", "with", value[0], "?"], [p])]
    if kind in RELATIONS:  # "is married to", "is friends with": symmetric, asked from both sides
        tail = list(RELATIONS[kind][1:]) + ["?"]
        return [(["who", "is", p, *tail], [value[0]]), (["who", "is", value[0], *tail], [p])]
    if kind == "city":
        return [(["where", "does", p, "live", "?"], [value[0]]), (["who", "lives", "in", value[0], "?"], [p])]
    if kind == "job":
        job = with_article([value[0]])
        return [(["what", "does", p, "do", "?"], job), (["who", "works", "as", *job, "?"], [p])]
    if kind == "car":
        car = with_article([value[0], "car"])
        return [
            (["what", "does", p, "drive", "?"], car),
            (["what", "colour", "is", "the", "car", "of", p, "?"], [value[0]]),
            (["who", "drives", *car, "?"], [p]),
        ]
    if kind == "pet":
        pet, pet_name = value
        return [
            (["what", "pet", "does", p, "have", "?"], with_article([pet])),
            (["what", "is", "the", "name", "of", "the", pet, "of", p, "?"], [pet_name]),
            (["who", "has", *with_article([pet]), "?"], [p]),
            (["who", "has", "a", "pet", "called", pet_name, "?"], [p]),
        ]
    if kind == "age":
        return [(["how", "old", "is", p, "?"], [value[0]]), (["who", "is", value[0], "years", "old", "?"], [p])]
    return [(["what", "does", p, "like", "?"], list(value)), (["who", "likes", *value, "?"], [p])]


# ---------------------------------------------------------------------------------------------------
# Summarisation (compression): drop the filler from a padded sentence.

SUMMARY_MAX_SOURCE_LEN = 24  # a core of <= 12 words and <= 3 fillers of <= 3 words
SUMMARY_GENERATION_MARGIN = 4  # max_generation_len = longest core + this margin
MIN_CORE_LEN, MAX_CORE_LEN = 5, 12
MIN_FILLERS, MAX_FILLERS = 1, 3
FILLERS: tuple[tuple[str, ...], ...] = tuple(
    tuple(f.split())
    for f in (
        "well ,", "basically", "you know", "actually", "i think", "sort of", "kind of", "like", "i mean", "um",
        "uh", "honestly", "literally", "to be honest", "so", "just", "really", "anyway", "you see", "of course",
    )
)
CORE_DETERMINERS: tuple[str, ...] = tuple("the his her their our my this that".split())
#: Nouns of each role with the adjectives that suit them.
PERSON_NOUNS: tuple[str, ...] = JOBS + tuple("neighbour cousin uncle aunt boss student child stranger".split())
PERSON_ADJECTIVES: tuple[str, ...] = tuple("old young tall quiet busy tired happy angry clever lazy famous".split())
THING_NOUNS: tuple[str, ...] = tuple(
    """car bike book letter parcel lamp chair table guitar piano ticket wallet umbrella laptop camera basket
    painting kettle bottle jacket""".split()
)
THING_ADJECTIVES: tuple[str, ...] = COLOURS + tuple("old new small big broken heavy".split())
PLACE_NOUNS: tuple[str, ...] = tuple("market station garden kitchen office library park harbour bakery school".split())
PLACE_ADJECTIVES: tuple[str, ...] = tuple("old new small big busy quiet empty".split())
TRANSITIVE_PAST: tuple[str, ...] = tuple(
    "sold bought painted fixed found lost carried cleaned opened borrowed delivered hid repaired dropped".split()
)
INTRANSITIVE_PAST: tuple[str, ...] = tuple("slept waited worked arrived stayed laughed sang danced rested".split())
PLACE_PREPOSITIONS: tuple[str, ...] = tuple("at in near behind outside".split())
TIMES: tuple[str, ...] = tuple("yesterday today recently tonight".split())
P_NAME_SUBJECT = 0.4
P_ADJECTIVE = 0.5
P_TRANSITIVE = 0.6
P_PLACE = 0.5  # for transitive verbs; intransitive ones always take a place
P_TIME = 0.3


class SummaryTask(MatchingTask):
    """Compress a sentence padded with filler words back to its core (metric: ROUGE-L F1).

    Example::

        well , the old baker actually sold his red bike you know at the market .
        ->  the old baker sold his red bike at the market .

    The core (5-12 words, from a small grammar of people, things, places and times) is a subsequence of
    the source; 1-3 fillers ("well ,", "basically", "you know", "i think", ...; no filler word occurs in a
    core) are inserted at distinct positions before the final period.

    Sizes: a vocabulary of 203 tokens; 10,000 / 500 / 500 examples with distinct cores by default (so no
    reference is shared between splits); ``max_source_len`` 24; ``max_generation_len`` = longest core + 4
    (16 by default).
    """

    name = "matching:summary"
    metric_name = "rouge_l"
    MAX_SOURCE_LEN = SUMMARY_MAX_SOURCE_LEN

    def metric(self, examples: Examples, num_rows: int) -> PrefixMetric:
        from ir_env.rewards.rouge import RougeL

        return RougeL(examples, num_rows, self.vocab)

    @staticmethod
    def _key(pair: Pair) -> tuple:
        return tuple(pair[1])  # distinct cores: no reference is seen in two splits

    def _generation_len(self, longest_reference: int) -> int:
        return longest_reference + SUMMARY_GENERATION_MARGIN

    def _words(self) -> list[str]:
        words = list(NAMES + CORE_DETERMINERS + PERSON_NOUNS + PERSON_ADJECTIVES + THING_NOUNS + THING_ADJECTIVES)
        words += list(PLACE_NOUNS + PLACE_ADJECTIVES + TRANSITIVE_PAST + INTRANSITIVE_PAST + PLACE_PREPOSITIONS)
        return words + list(TIMES) + ["."] + [w for filler in FILLERS for w in filler]

    def _sample(self, draw: UniformStream) -> tuple[list[str], list[str]]:
        """A core sentence and the source: the core with fillers at distinct phrase boundaries."""
        phrases = self._core(draw)
        while not MIN_CORE_LEN <= sum(len(phrase) for phrase in phrases) <= MAX_CORE_LEN:
            phrases = self._core(draw)
        num_fillers = min(len(phrases) - 1, MIN_FILLERS + draw.index(MAX_FILLERS - MIN_FILLERS + 1))
        padded = set(draw.sample(range(len(phrases) - 1), num_fillers))  # never before the period
        source: list[str] = []
        for i, phrase in enumerate(phrases):
            if i in padded:
                source.extend(draw.choice(FILLERS))
            source.extend(phrase)
        return source, [w for phrase in phrases for w in phrase]

    @staticmethod
    def _noun_phrase(draw: UniformStream, nouns: tuple[str, ...], adjectives: tuple[str, ...]) -> list[str]:
        adjective = [draw.choice(adjectives)] if draw.chance(P_ADJECTIVE) else []
        return [draw.choice(CORE_DETERMINERS)] + adjective + [draw.choice(nouns)]

    def _core(self, draw: UniformStream) -> list[list[str]]:
        """The phrases of SUBJ VERB [OBJ] [PLACE] [TIME] . (an intransitive verb always takes a place)."""
        if draw.chance(P_NAME_SUBJECT):
            phrases = [[draw.choice(NAMES)]]
        else:
            phrases = [self._noun_phrase(draw, PERSON_NOUNS, PERSON_ADJECTIVES)]
        transitive = draw.chance(P_TRANSITIVE)
        if transitive:
            phrases += [[draw.choice(TRANSITIVE_PAST)], self._noun_phrase(draw, THING_NOUNS, THING_ADJECTIVES)]
        else:
            phrases.append([draw.choice(INTRANSITIVE_PAST)])
        if not transitive or draw.chance(P_PLACE):
            place = self._noun_phrase(draw, PLACE_NOUNS, PLACE_ADJECTIVES)
            phrases.append([draw.choice(PLACE_PREPOSITIONS)] + place)
        if draw.chance(P_TIME):
            phrases.append([draw.choice(TIMES)])
        return phrases + [["."]]
