"""Word lists and templates of the built-in concept datasets (`cortexlens.data.concepts` explains them).

Facts here were chosen to be unambiguous: cities whose capital status is disputed, split or recently
changed (Amsterdam, Bern, Pretoria, La Paz, Colombo, Jakarta, Astana) and former national capitals
(Rio de Janeiro, Karachi, Lagos, Kyoto, Saint Petersburg) are left out of both capital lists.
"""

from __future__ import annotations


def _words(text: str) -> tuple[str, ...]:
    """Whitespace-separated items; `_` joins the words of a name (New_York)."""
    return tuple(w.replace("_", " ") for w in text.split())


# National capitals (2024).
CAPITALS = _words(
    "Paris Ottawa Canberra London Berlin Madrid Rome Lisbon Vienna Athens Dublin Oslo Stockholm Helsinki "
    "Copenhagen Warsaw Prague Budapest Brussels Bucharest Belgrade Zagreb Reykjavik Vilnius Riga Tallinn "
    "Moscow Kyiv Ankara Bratislava Cairo Nairobi Accra Dakar Rabat Tunis Algiers Kampala Abuja Addis_Ababa "
    "Lima Bogota Caracas Quito Montevideo Havana Brasilia Mexico_City Buenos_Aires Wellington Tokyo Beijing "
    "Seoul Bangkok Hanoi Manila New_Delhi Islamabad Kathmandu Dhaka Tehran Baghdad Riyadh Doha Amman Beirut"
)
# Large cities that are not the capital of their country (many are well known, some mistaken for one).
NON_CAPITALS = _words(
    "New_York Sydney Toronto Istanbul Mumbai Los_Angeles Chicago Houston San_Francisco Seattle Boston Miami "
    "Philadelphia Melbourne Brisbane Vancouver Montreal Calgary Shanghai Osaka Yokohama Busan Guangzhou "
    "Shenzhen Barcelona Milan Naples Munich Hamburg Frankfurt Cologne Lyon Marseille Manchester Glasgow "
    "Rotterdam Zurich Geneva Porto Seville Valencia Krakow Gothenburg Casablanca Alexandria Johannesburg "
    "Durban Bangalore Hyderabad Dubai Sao_Paulo Auckland Dallas Atlanta Detroit Denver Guadalajara Monterrey "
    "Medellin Marrakesh Izmir Mombasa Chennai"
)

# Bare plurals: "tigers" reads like a city name in every template (no article marks the class).
ANIMALS = _words(
    "tigers lions elephants giraffes zebras wolves foxes bears rabbits horses cows sheep goats pigs dogs cats "
    "mice squirrels deer camels kangaroos koalas penguins owls eagles parrots pigeons ducks geese swans crows "
    "sparrows dolphins whales sharks octopuses crabs lobsters frogs snakes lizards turtles crocodiles bees "
    "ants butterflies spiders beetles bats monkeys gorillas chimpanzees hippos rhinos leopards cheetahs "
    "hyenas otters beavers badgers hedgehogs raccoons seals walruses flamingos ostriches donkeys llamas moose "
    "snails hamsters peacocks pelicans jellyfish")

# Every template reads naturally with a city and with a bare plural animal.
ENTITY_TEMPLATES = (
    "I read a long article about {x}.",
    "We talked about {x} for an hour.",
    "She has always been fascinated by {x}.",
    "My brother wrote a school report on {x}.",
    "There is a new documentary about {x}.",
    "The book has a whole chapter on {x}.",
    "Everyone in the class wanted to learn more about {x}.",
    "He showed us some old photos of {x}.",
    "My grandmother tells great stories about {x}.",
    "The museum had an exhibit about {x}.",
    "I dreamed about {x} last night.",
    "We watched a film about {x} yesterday.",
    "The magazine printed a special issue on {x}.",
    "Nobody at the party knew much about {x}.",
    "I listened to a podcast about {x}.",
    "The guide told us a lot about {x}.",
)

# Neutral about the city's status: no government, embassy or parliament.
CITY_TEMPLATES = (
    "We flew to {c} last spring.",
    "My cousin moved to {c} two years ago.",
    "The conference was held in {c} this year.",
    "She grew up in {c}.",
    "Our train arrived in {c} late at night.",
    "He spent a week in {c} with friends.",
    "They opened a new office in {c}.",
    "I have never been to {c}.",
    "The festival in {c} was crowded.",
    "We met some old friends in {c}.",
    "My sister is studying in {c}.",
    "The weather in {c} was mild in October.",
    "I bought this jacket in {c}.",
    "Our flight to {c} was delayed.",
    "They got married in {c}.",
    "He took a lot of pictures in {c}.",
)

# Evaluative adjectives that fit every noun below as a predicate.
POSITIVE = _words(
    "wonderful excellent great good lovely delightful brilliant superb fantastic terrific marvelous splendid "
    "outstanding magnificent amazing fabulous perfect pleasant enjoyable nice charming impressive remarkable "
    "memorable spectacular exceptional beautiful stunning glorious incredible awesome admirable satisfying "
    "refreshing inspiring exciting fun sublime phenomenal extraordinary gorgeous flawless uplifting "
    "heartwarming breathtaking dazzling rewarding")
NEGATIVE = _words(
    "terrible awful horrible dreadful bad poor boring dull disappointing unpleasant miserable mediocre tedious "
    "annoying frustrating depressing painful lousy pathetic dismal awkward unbearable tiresome bland "
    "forgettable gloomy irritating appalling atrocious shoddy dreary underwhelming exhausting stressful ugly "
    "disastrous hopeless nasty dire grim rotten disgusting abysmal embarrassing infuriating uninspiring "
    "joyless wretched horrendous lifeless pointless")
SENTIMENT_NOUNS = _words(
    "movie meal trip concert book party hotel show lecture game holiday dinner performance wedding play "
    "weekend class festival album restaurant")
SENTIMENT_TEMPLATES = (
    "The {noun} was {adj}.",
    "I thought the {noun} was {adj}.",
    "Everyone agreed that the {noun} was {adj}.",
    "To be honest, the {noun} was {adj}.",
    "My friends said the {noun} was {adj}.",
    "In my opinion, the {noun} was {adj}.",
)

# (group, relation, its converse): "A <relation> B" holds exactly when "B <converse> A" does.
RELATIONS = (
    ("taller/shorter", "is taller than", "is shorter than"),
    ("older/younger", "is older than", "is younger than"),
    ("heavier/lighter", "is heavier than", "is lighter than"),
    ("faster/slower", "is faster than", "is slower than"),
    ("richer/poorer", "is richer than", "is poorer than"),
    ("stronger/weaker", "is stronger than", "is weaker than"),
    ("louder/quieter", "is louder than", "is quieter than"),
    ("bigger/smaller", "is bigger than", "is smaller than"),
    ("arrived before/after", "arrived before", "arrived after"),
    ("left before/after", "left before", "left after"),
    ("finished before/after", "finished before", "finished after"),
    ("woke up before/after", "woke up before", "woke up after"),
    ("got home before/after", "got home before", "got home after"),
)
# First names that are not also common English words.
NAMES = _words(
    "Anna Ben Maria Omar Lucy Sam Elena Kenji Priya Tom Nadia Leo Ivan Hugo Mei Daniel Amara Jonas Clara "
    "David Emma Felix Hannah Isaac Julia Karim Laura Marco Nina Oscar Paula Rosa Simon Tara Victor Yusuf "
    "Zoe Aisha Carlos Diego")

# Scenes for negation scope: every verb is used with and without an object ("the chef that cooked")
# and fits every object of its scene, so either verb can head either clause.
SCENES = (  # (subject nouns, "base/past" verbs, objects)
    ("chef waiter guest host", "cook/cooked eat/ate serve/served order/ordered",
     "soup stew pasta fish rice curry"),
    ("singer pianist drummer guitarist violinist",
     "play/played practice/practiced rehearse/rehearsed record/recorded perform/performed",
     "song piece tune ballad anthem melody"),
    ("player team captain athlete", "win/won lose/lost play/played watch/watched",
     "match game final tournament series"),
    ("cleaner janitor housekeeper tenant", "clean/cleaned sweep/swept scrub/scrubbed mop/mopped wash/washed",
     "floor stairs porch hallway deck"),
    ("painter artist illustrator", "paint/painted draw/drew sketch/sketched",
     "portrait bridge harbor castle garden river lighthouse"),
    ("driver courier chauffeur", "drive/drove park/parked wash/washed", "van truck bus taxi car jeep"),
    ("writer journalist reporter author editor", "write/wrote edit/edited type/typed revise/revised",
     "article letter report story column speech"),
    ("fox hawk owl cat eagle dog", "hunt/hunted chase/chased follow/followed watch/watched stalk/stalked",
     "rabbit mouse squirrel lizard hare"),
    ("wolf lion tiger", "hunt/hunted chase/chased follow/followed watch/watched stalk/stalked",
     "deer goat zebra antelope buffalo"),
)
NEGATION_ENDINGS = ("", " yesterday", " last week", " this morning")

NUMBER_TEMPLATES = (
    "The numbers are {a} and {b}.",
    "I wrote down {a} and then {b}.",
    "The two scores were {a} and {b}.",
    "She picked {a}, and he picked {b}.",
)
