"""The built-in corpus: English sentences from a seeded template grammar, each with ground-truth labels.

Grammar (one sentence = one document):

    sentence  := [time ","] clause [conj clause2] "."            (statement)
               | [wh] aux subject ["not"] vp [because clause2] "?"  (question)
    clause    := subject [relative] verb-group (object | complement) [adverb] [place] [time]
    subject   := det [adj] noun | name | name "and" name | pronoun
    relative  := "that" verb-group [object | complement]    (same tense, agrees with its head noun)
    clause2   := a fresh clause of the same topic and tense: never negated, no time phrase
    conj      := ", and" | ", but" | ", so" | "because" | "while" (not future)

Verb groups follow the tense and subject: `chases` / `chase` / `chased` / `will chase`, do-support for
negation and questions (`does not chase`, `did the dog chase`), the copula `am/is/are/was/were/will be`
with an adjective or a place as complement. Articles follow the next word (`a dog`, `an old dog`).

Labels (all strings, decided by the grammar's own choices, never parsed back from the text):
    tense        past | present | future          (of every verb in the sentence)
    number       singular | plural                 (of the main-clause subject)
    person       first | third                     (I/we are first person)
    subject      noun | name | pronoun             ("Anna and Ben" is a plural name subject)
    negation     yes | no                          (the main clause; other clauses are never negated)
    type         statement | question
    wh           none | why | where | when         (none for statements and yes/no questions)
    topic        animals | food | sports | science | weather | travel | music | school
    verb         transitive | intransitive | copula   (of the main clause)
    conjunction  none | and | but | so | because | while
    relative     yes | no                          (a relative clause on the subject)
    place, time  yes | no                          (a place / time phrase anywhere in the sentence)
    length       short (<= 10 words) | medium (11-18) | long (>= 19); punctuation is not a word
    subject_lemma  the main-clause subject's lexical item, whatever its number (`dog`, `she`, `Anna`)
    verb_lemma     the main-clause verb's lexical item (`chase`, `look at`, `be`)

Sentences hold 5 to 30 words; duplicates are redrawn. Each document's draws depend only on the
`random.Random(seed)` state left by the previous one, so `generate_corpus(n, s)[:m] == generate_corpus(m, s)`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from functools import cache

MIN_WORDS, MAX_WORDS = 5, 30


@dataclass(frozen=True)
class Document:
    doc_id: int
    text: str
    labels: dict[str, str]


@dataclass(frozen=True)
class Topic:
    agents: str  # "sing/plural ..." nouns that can be subjects
    pronouns: str  # subject pronouns that fit the agents
    people: bool  # whether personal names can be subjects
    adjectives: str  # attributive on subjects and copula complements
    transitive: dict[str, str]  # "base 3sg past" -> objects ("sing/plural" count nouns, bare mass nouns)
    intransitive: str  # "base 3sg past|..."
    places: str  # "phrase|phrase"


TOPICS: dict[str, Topic] = {
    "animals": Topic(
        "dog/dogs cat/cats horse/horses mouse/mice fox/foxes rabbit/rabbits owl/owls wolf/wolves "
        "goose/geese bear/bears duck/ducks puppy/puppies", "it they", False,
        "hungry tired small young old clever wild lazy brown sleepy",
        {"chase chases chased": "rabbit/rabbits ball/balls mouse/mice bird/birds stick/sticks",
         "eat eats ate": "apple/apples carrot/carrots grass meat seed/seeds",
         "carry carries carried": "stick/sticks bone/bones leaf/leaves",
         "find finds found": "bone/bones nest/nests food water",
         "watch watches watched": "farmer/farmers bird/birds owl/owls"},
        "sleep sleeps slept|run runs ran|hide hides hid|swim swims swam|jump jumps jumped|"
        "play plays played|rest rests rested|wait waits waited",
        "in the barn|near the river|on the farm|in the forest|under the bridge|in the garden|behind the house"),
    "food": Topic(
        "chef/chefs baker/bakers cook/cooks child/children guest/guests waiter/waiters family/families",
        "I he she we they", True, "hungry busy happy careful young tired friendly",
        {"cook cooks cooked": "soup rice egg/eggs meal/meals dinner pasta",
         "bake bakes baked": "bread cake/cakes pie/pies cookie/cookies",
         "eat eats ate": "apple/apples sandwich/sandwiches soup salad/salads orange/oranges",
         "buy buys bought": "cheese bread vegetable/vegetables onion/onions",
         "taste tastes tasted": "sauce soup dish/dishes",
         "serve serves served": "lunch dinner dessert/desserts meal/meals"},
        "cook cooks cooked|eat eats ate|wait waits waited|smile smiles smiled|sit sits sat",
        "in the kitchen|at the restaurant|in the bakery|at the market|at the table|in the cafe"),
    "sports": Topic(
        "player/players coach/coaches runner/runners team/teams athlete/athletes swimmer/swimmers "
        "referee/referees fan/fans", "I he she we they", True,
        "fast strong tired ready nervous proud young excited",
        {"win wins won": "game/games match/matches race/races trophy/trophies",
         "kick kicks kicked": "ball/balls",
         "throw throws threw": "ball/balls",
         "watch watches watched": "game/games match/matches race/races",
         "train trains trained": "team/teams player/players",
         "lose loses lost": "game/games match/matches"},
        "run runs ran|swim swims swam|train trains trained|win wins won|cheer cheers cheered|"
        "practice practices practiced",
        "at the stadium|on the field|in the gym|at the pool|on the track|in the park"),
    "science": Topic(
        "scientist/scientists student/students researcher/researchers doctor/doctors "
        "engineer/engineers chemist/chemists", "I he she we they", True,
        "curious careful busy brilliant patient tired excited",
        {"study studies studied": "cell/cells star/stars plant/plants data rock/rocks",
         "test tests tested": "theory/theories sample/samples idea/ideas machine/machines",
         "measure measures measured": "sample/samples signal/signals",
         "build builds built": "robot/robots machine/machines telescope/telescopes",
         "discover discovers discovered": "planet/planets element/elements molecule/molecules",
         "publish publishes published": "paper/papers result/results"},
        "work works worked|think thinks thought|write writes wrote|read reads read|learn learns learned",
        "in the lab|at the university|in the library|at the observatory|in the hospital"),
    "weather": Topic(
        "storm/storms wind/winds cloud/clouds wave/waves flood/floods", "it they", False,
        "cold strong dark heavy wild gentle warm",
        {"destroy destroys destroyed": "fence/fences bridge/bridges tree/trees",
         "cover covers covered": "town/towns hill/hills road/roads",
         "shake shakes shook": "house/houses window/windows tree/trees",
         "flood floods flooded": "street/streets field/fields village/villages"},
        "blow blows blew|pass passes passed|grow grows grew|return returns returned|move moves moved|"
        "fade fades faded",
        "over the hills|along the coast|across the valley|near the sea|in the north|over the city"),
    "travel": Topic(
        "traveler/travelers tourist/tourists pilot/pilots driver/drivers passenger/passengers guide/guides",
        "I he she we they", True, "tired excited lost happy late busy careful",
        {"visit visits visited": "museum/museums castle/castles city/cities island/islands temple/temples",
         "drive drives drove": "car/cars bus/buses truck/trucks",
         "fly flies flew": "plane/planes",
         "catch catches caught": "train/trains bus/buses flight/flights ferry/ferries",
         "book books booked": "hotel/hotels ticket/tickets room/rooms trip/trips",
         "pack packs packed": "bag/bags suitcase/suitcases"},
        "travel travels traveled|arrive arrives arrived|leave leaves left|wait waits waited|fly flies flew|"
        "walk walks walked",
        "at the airport|at the station|in the hotel|on the train|near the harbor|in the mountains"),
    "music": Topic(
        "musician/musicians singer/singers drummer/drummers pianist/pianists band/bands choir/choirs "
        "composer/composers", "I he she we they", True,
        "talented nervous famous young happy proud quiet",
        {"play plays played": "song/songs piano/pianos guitar/guitars drum/drums tune/tunes",
         "sing sings sang": "song/songs anthem/anthems",
         "write writes wrote": "song/songs melody/melodies album/albums",
         "record records recorded": "album/albums song/songs",
         "hear hears heard": "music song/songs concert/concerts",
         "perform performs performed": "song/songs concert/concerts"},
        "sing sings sang|dance dances danced|practice practices practiced|perform performs performed|"
        "listen listens listened",
        "at the concert hall|in the studio|on the stage|at the festival|in the club"),
    "school": Topic(
        "teacher/teachers student/students pupil/pupils class/classes principal/principals",
        "I he she we they", True, "quiet curious bored clever busy tired",
        {"read reads read": "book/books story/stories poem/poems",
         "write writes wrote": "essay/essays letter/letters story/stories",
         "solve solves solved": "problem/problems puzzle/puzzles",
         "learn learns learned": "lesson/lessons word/words",
         "teach teaches taught": "lesson/lessons class/classes",
         "draw draws drew": "map/maps picture/pictures"},
        "study studies studied|read reads read|listen listens listened|laugh laughs laughed|sit sits sat",
        "in the classroom|in the library|at school|in the hall|on the playground"),
}

NAMES = "Anna Ben Maria Omar Lucy Sam Elena Kenji Priya Tom Nadia Leo Sofia Ivan Grace Hugo Mei Daniel Amara Jonas"
SING_DETS = "the the the a this that my our their"  # repeats weight "the"
PLURAL_DETS = "the the the these those some many my our their two three _"  # _ = bare plural
MASS_DETS = "the some _"
TIME = {  # tense-specific phrases plus phrases that fit any tense
    "past": "yesterday|last week|last night|last summer|two days ago|this morning|last year",
    "present": "every day|every morning|on weekends|most evenings|twice a week|each year",
    "future": "tomorrow|next week|next year|soon|later tonight|next summer|in two days",
    "any": "in the morning|at night|in the evening|in winter|after lunch|during the holidays|at noon",
}
ADVERBS = "quickly slowly quietly happily carefully loudly alone again"
CONJUNCTIONS = ("and", "but", "so", "because", "while")
FUNCTION_WORDS = "an not do does did will be am is are was were why where when that and , . ?"
AN_EXCEPTIONS = {"one", "university", "unicorn", "uniform", "useful", "user", "european"}


@dataclass
class _Sentence:
    """Words and labels accumulated while one sentence is drawn."""

    topic: str
    tense: str
    words: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    place: bool = False
    time: bool = False


def _pick(rng: random.Random, options: str, sep: str | None = None) -> str:
    return rng.choice(options.split(sep))


def _article(word: str) -> str:
    vowel = word[0].lower() in "aeiou" and word.lower() not in AN_EXCEPTIONS
    return "an" if vowel or word.lower() in {"hour", "honest"} else "a"


def _noun_phrase(rng: random.Random, noun: str, plural: bool, adjective: str | None) -> list[str]:
    """Determiner, optional adjective and noun; `noun` is `sing/plural` or a bare mass noun."""
    forms = noun.split("/")
    if len(forms) == 1:
        det, head = _pick(rng, MASS_DETS), forms[0]
    else:
        det, head = _pick(rng, PLURAL_DETS if plural else SING_DETS), forms[plural]
    body = ([adjective] if adjective else []) + [head]
    if det == "a":
        det = _article(body[0])
    return body if det == "_" else [det, *body]


def _subject(rng: random.Random, topic: Topic, plural: bool) -> tuple[list[str], str, str, str]:
    """(words, agreement, kind, lemma); agreement is `1sg`, `3sg` or `pl` and decides every verb form;
    lemma is the subject's lexical item whatever its number (`dog` for "the dogs", the first name)."""
    kinds = ["noun"] * 5 + ["pronoun"] * 3 + (["name"] * 2 if topic.people else [])
    kind = rng.choice(kinds)
    if kind == "name":
        first = _pick(rng, NAMES)
        if not plural:
            return [first], "3sg", kind, first
        second = rng.choice([n for n in NAMES.split() if n != first])
        return [first, "and", second], "pl", kind, first
    if kind == "pronoun":
        number_fits = [p for p in topic.pronouns.split() if (p in ("we", "they")) == plural]
        pronoun = rng.choice(number_fits)
        return [pronoun], {"I": "1sg", "we": "pl", "they": "pl"}.get(pronoun, "3sg"), kind, pronoun
    adjective = _pick(rng, topic.adjectives) if rng.random() < 0.3 else None
    noun = _pick(rng, topic.agents)
    return _noun_phrase(rng, noun, plural, adjective), ("pl" if plural else "3sg"), kind, noun.split("/")[0]


def _be(tense: str, agreement: str) -> str:
    if tense == "past":
        return "were" if agreement == "pl" else "was"
    return {"1sg": "am", "3sg": "is", "pl": "are"}[agreement]


def _verb_group(forms: list[str], tense: str, agreement: str, negated: bool,
                question: bool) -> tuple[str, list[str]]:
    """(head, after): a statement reads subject-head-after, a question head-subject-after.

    `forms` is `[base, 3sg, past]` or `["be"]` for the copula. The head is the word that inverts:
    the copula, `will`, do-support (`does`, `did`) or, in a positive statement, the verb itself.
    """
    not_ = ["not"] if negated else []
    if forms == ["be"]:
        if tense == "future":
            return "will", [*not_, "be"]
        return _be(tense, agreement), not_
    base, third, past = forms
    if negated or question or tense == "future":
        aux = {"past": "did", "future": "will"}.get(tense) or ("does" if agreement == "3sg" else "do")
        return aux, [*not_, base]
    return (past if tense == "past" else third if agreement == "3sg" else base), []


def _predicate(rng: random.Random, s: _Sentence, kind: str) -> tuple[list[str], list[str]]:
    """(verb forms, words after the verb group): an object, a complement or nothing."""
    topic = TOPICS[s.topic]
    if kind == "copula":
        if rng.random() < 0.3 and not s.place:
            s.place = True
            return ["be"], _pick(rng, topic.places, "|").split()
        return ["be"], [_pick(rng, topic.adjectives)]
    if kind == "transitive":
        verb = rng.choice(list(topic.transitive))
        obj = _noun_phrase(rng, _pick(rng, topic.transitive[verb]), rng.random() < 0.4, None)
        return verb.split(), obj
    return _pick(rng, topic.intransitive, "|").split(), []


def _verb_kind(rng: random.Random) -> str:
    return rng.choices(["transitive", "intransitive", "copula"], weights=[5, 3, 2])[0]


def _adjuncts(rng: random.Random, s: _Sentence, kind: str, allow_time: bool, p_place: float) -> list[str]:
    """Optional manner adverb, place and time phrase, in that order."""
    words: list[str] = []
    if kind != "copula" and rng.random() < 0.2:
        words.append(_pick(rng, ADVERBS))
    if not s.place and rng.random() < p_place:
        s.place = True
        words += _pick(rng, TOPICS[s.topic].places, "|").split()
    if allow_time and not s.time and rng.random() < 0.35:
        s.time = True
        words += _pick(rng, TIME[s.tense] + "|" + TIME["any"], "|").split()
    return words


def _plain_clause(rng: random.Random, s: _Sentence, agreement: str, p_place: float) -> list[str]:
    """Verb group onwards of a positive statement clause: relative clauses and second clauses."""
    kind = _verb_kind(rng)
    forms, rest = _predicate(rng, s, kind)
    head, after = _verb_group(forms, s.tense, agreement, False, False)
    return [head, *after, *rest, *_adjuncts(rng, s, kind, False, p_place)]


def _main_clause(rng: random.Random, s: _Sentence, question: bool) -> list[str]:
    plural, negated = rng.random() < 0.5, rng.random() < 0.4
    subject, agreement, subject_kind, subject_lemma = _subject(rng, TOPICS[s.topic], plural)
    relative = subject_kind == "noun" and rng.random() < 0.25
    if relative:
        subject = [*subject, "that", *_plain_clause(rng, s, agreement, 0.15)]
    wh = rng.choice(["none", "none", "why", "where", "when"]) if question else "none"
    # "Where is the dog hungry?" is not English: where-questions take a lexical verb.
    kind = rng.choice(["transitive", "intransitive"]) if wh == "where" else _verb_kind(rng)
    s.place |= wh == "where"
    s.time |= wh == "when"
    forms, rest = _predicate(rng, s, kind)
    head, after = _verb_group(forms, s.tense, agreement, negated, question)
    s.labels.update(
        number="plural" if plural else "singular",
        person="first" if subject[0] in ("I", "we") else "third",
        subject=subject_kind, negation="yes" if negated else "no",
        type="question" if question else "statement", wh=wh, verb=kind,
        relative="yes" if relative else "no", subject_lemma=subject_lemma, verb_lemma=forms[0])
    if question:
        words = [*([wh] if wh != "none" else []), head, *subject, *after, *rest]
    else:
        words = [*subject, head, *after, *rest]
    return words + _adjuncts(rng, s, kind, True, 0.35)


def _draw(rng: random.Random) -> _Sentence:
    """One sentence of any length; `_accept` decides whether it is kept."""
    s = _Sentence(topic=rng.choice(list(TOPICS)), tense=rng.choice(["past", "present", "future"]))
    question = rng.random() < 0.3
    words = _main_clause(rng, s, question)
    conj = "none"
    if rng.random() < (0.15 if question else 0.35):
        # Questions take only "because": "did the dog bark, and the cat slept?" is not English.
        # "while" with a future main clause needs a present-tense subordinate clause, so it is left out.
        conj = "because" if question else rng.choice([c for c in CONJUNCTIONS if c != "while" or s.tense != "future"])
        second, agreement, _, _ = _subject(rng, TOPICS[s.topic], rng.random() < 0.5)
        words += [*([","] if conj in ("and", "but", "so") else []), conj, *second,
                  *_plain_clause(rng, s, agreement, 0.2)]
    if not question and not s.time and rng.random() < 0.15:
        s.time = True  # a fronted time phrase: "Yesterday, the dog ..."
        words = [*_pick(rng, TIME[s.tense] + "|" + TIME["any"], "|").split(), ",", *words]
    s.words = [*words, "?" if question else "."]
    n_words = sum(w.isalpha() for w in s.words)
    s.labels.update(tense=s.tense, topic=s.topic, conjunction=conj, place="yes" if s.place else "no",
                    time="yes" if s.time else "no",
                    length="short" if n_words <= 10 else "medium" if n_words <= 18 else "long")
    return s


def _render(words: list[str]) -> str:
    text = re.sub(r" ([,.?])", r"\1", " ".join(words))
    return text[0].upper() + text[1:]


# Bumped whenever the generator's texts or labels change: part of the dataset fingerprint, so a store
# extracted by an older generator is extracted again rather than read with stale labels.
CORPUS_VERSION = 2


def generate_corpus(n_docs: int, seed: int) -> list[Document]:
    """`n_docs` distinct sentences; deterministic in (n_docs, seed) and a prefix of any longer corpus."""
    rng = random.Random(seed)
    seen: set[str] = set()
    docs: list[Document] = []
    while len(docs) < n_docs:
        s = _draw(rng)
        text = _render(s.words)
        if MIN_WORDS <= sum(w.isalpha() for w in s.words) <= MAX_WORDS and text not in seen:
            seen.add(text)
            docs.append(Document(len(docs), text, dict(sorted(s.labels.items()))))
    return docs


@cache
def _vocabulary() -> tuple[str, ...]:
    tables = [NAMES, SING_DETS, PLURAL_DETS, MASS_DETS, ADVERBS, FUNCTION_WORDS, " ".join(CONJUNCTIONS),
              *TIME.values()]
    for topic in TOPICS.values():
        tables += [topic.agents, topic.pronouns, topic.adjectives, topic.intransitive, topic.places,
                   *topic.transitive, *topic.transitive.values()]
    words = {w.lower() for table in tables for w in re.split(r"[\s/|]+", table)}
    return tuple(sorted(words - {"", "_"}))


def corpus_vocabulary() -> list[str]:
    """Every token the grammar can emit, lowercased and sorted: words and the marks `,` `.` `?`."""
    return list(_vocabulary())
