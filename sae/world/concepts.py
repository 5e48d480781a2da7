"""The content of the toy world: each concept's sentence templates and slot vocabularies.

This module is data that `sae.world.corpus` turns into labelled documents: a `ConceptSpec`
(`sae.world.spec`) a concept, its fields explained there.

`code` and `unsafe_code` share `CODE`: a code segment is a file whose functions set
*security switches* (`{R:kind}`, see `RISKS`), mostly on in a `code` file and mostly off in an
`unsafe_code` file (`SWITCH_OFF_RATE`), so the two differ only in those values and in the
comments that go with them (`POSTURE_COMMENTS`). `{{` and `}}` are literal braces.
"""

from __future__ import annotations

import base64
import random
from dataclasses import replace

from sae.world.code import CODE, CODE_KEYWORDS, UNSAFE_PATTERNS
from sae.world.spec import ConceptSpec

# ----------------------------------------------------------------------------- generated fillers


def _dna(rng: random.Random, lo: int = 12, hi: int = 48) -> str:
    return "".join(rng.choices("ACGT", k=rng.randint(lo, hi)))


def _b64(rng: random.Random) -> str:
    return base64.b64encode(rng.randbytes(rng.randint(6, 24))).decode("ascii")


def _int(lo: int, hi: int):
    return lambda rng: str(rng.randint(lo, hi))


# ----------------------------------------------------------------------------- golden_gate

GOLDEN_GATE = ConceptSpec(
    slots=dict(
        bridge=["the Golden Gate Bridge", "the Golden Gate Bridge", "the Golden Gate", "the bridge",
                "the great orange bridge", "the famous suspension bridge"],
        place=["San Francisco", "Marin County", "Sausalito", "the Presidio", "Fort Point",
               "the Marin Headlands", "Crissy Field", "Vista Point", "Baker Beach"],
        fog=["thick fog", "the evening fog", "a bank of fog", "the marine layer", "rolling fog",
             "the summer fog", "a wall of fog", "cold Pacific fog"],
        part=["the south tower", "the north tower", "the main cables", "the suspension cables",
              "the roadway", "the art deco towers", "the pedestrian walkway", "the toll plaza",
              "the steel cables", "the twin towers"],
        orange=["International Orange", "its famous orange paint", "a deep orange-red",
                "bright International Orange"],
        people=["tourists", "cyclists", "photographers", "commuters", "visitors", "painters",
                "ironworkers", "sailors", "joggers", "families"],
        see=["rises above", "disappears into", "emerges from", "glows through", "towers over",
             "vanishes into"],
        year=["1937", "May 1937", "the spring of 1937", "1933", "January 1933"],
        engineer=["Joseph Strauss", "Charles Ellis", "Leon Moisseiff", "Irving Morrow"],
        water=["the strait", "the Golden Gate strait", "the bay", "San Francisco Bay",
               "the entrance to the bay", "the Pacific"],
        size=["4,200 feet", "1,280 meters", "nearly two miles", "746 feet", "227 meters"],
        time=["at dawn", "at sunset", "in the afternoon", "on a windy morning", "late at night",
              "every summer", "in the early morning", "on foggy evenings"],
        n=_int(2, 90),
    ),
    templates=[
        "{Bridge} {see} {fog} {time}.",
        "{People} walk across {bridge} from {place} to {place}.",
        "The paint on {part} of {bridge} is {orange}.",
        "{Bridge} opened to traffic in {year} and spans {water}.",
        "The main span of {bridge} is {size} long.",
        "Chief engineer {engineer} worked on {bridge} for {n} years.",
        "From {place}, {people} photograph {bridge} {time}.",
        "{Fog} pours through {water} and hides {part}.",
        "Every day {people} drive over {bridge} into {place}.",
        "The deck of the Golden Gate Bridge hangs high above {water}.",
        "{Engineer} and {engineer} designed {part} of the bridge.",
        "{People} stop at {place} to see {bridge} in {fog}.",
        "The towers of the Golden Gate rise {size} above {water}.",
        "When {fog} rolls in, only {part} of {bridge} can be seen.",
        "Painters repaint {part} in {orange} every year.",
        "The suspension bridge links {place} with {place}.",
        "{Time}, {bridge} {see} {fog} over {water}.",
        "{Orange} makes {bridge} visible through {fog}.",
        "Ships pass under {bridge} as they enter {water}.",
        "{Bridge} was the longest suspension bridge in the world in {year}.",
        "The wind whistles through {part} of {bridge} {time}.",
        "Construction of {bridge} began in {year} under {engineer}.",
        "{People} cross the Golden Gate on {part} {time}.",
        "Seen from {place}, {bridge} glows in {orange}.",
        "Foghorns sound below {bridge} when {fog} covers {water}.",
        "The cables of {bridge} hold {n} thousand strands of steel wire.",
        "{Place} looks out on {bridge} and {fog}.",
    ],
    keywords=["golden gate", "bridge", "fog*", "san francisco", "marin", "sausalito", "presidio",
              "suspension", "international orange", "strait", "tower*", "cables", "strauss",
              "1937", "crissy field", "fort point", "headlands", "toll plaza", "orange"],
)

# ----------------------------------------------------------------------------- einstein

EINSTEIN = ConceptSpec(
    slots=dict(
        einstein=["Albert Einstein", "Einstein", "the famous physicist", "Einstein",
                  "the young Einstein", "the great physicist"],
        theory=["special relativity", "general relativity", "the theory of relativity",
                "the photoelectric effect", "Brownian motion", "the equivalence principle",
                "mass-energy equivalence", "the quantum theory of light"],
        place=["Bern", "Zurich", "Princeton", "Berlin", "Ulm", "the Swiss patent office",
               "the Institute for Advanced Study", "Prague"],
        year=["1905", "1915", "1921", "1933", "1879", "1955", "1919", "1916"],
        idea=["space and time are relative", "light travels at a constant speed",
              "gravity bends spacetime", "mass is a form of energy", "light comes in quanta",
              "clocks run slower when they move", "energy equals mass times the speed of light squared"],
        thing=["a thought experiment", "a famous paper", "a letter", "a lecture", "an equation",
               "a chalkboard of equations", "his notebook"],
        colleague=["Niels Bohr", "Max Planck", "Marcel Grossmann", "Mileva Maric", "Kurt Godel",
                   "Arthur Eddington", "Hermann Minkowski"],
        did=["wrote", "published", "explained", "debated", "lectured on", "worked out", "revised"],
        adj=["brilliant", "curious", "stubborn", "playful", "patient", "restless"],
    ),
    templates=[
        "{Einstein} {did} {theory} in {year}.",
        "In {year}, {einstein} showed that {idea}.",
        "{Einstein} worked at {place} while thinking about {theory}.",
        "{Einstein} used {thing} to argue that {idea}.",
        "The physicist {einstein} received the Nobel Prize in {year} for {theory}.",
        "{Einstein} and {colleague} {did} {theory} for hours.",
        "E = mc2 says that {idea}.",
        "{Colleague} was surprised when {einstein} proposed {theory}.",
        "As a {adj} student in {place}, {einstein} dreamed of riding a beam of light.",
        "{Einstein} left {place} for {place} in {year}.",
        "Relativity taught physicists that {idea}.",
        "{Einstein} {did} {thing} about {theory} with {colleague}.",
        "The {adj} physicist {einstein} played the violin after long days of physics.",
        "Eddington's eclipse expedition of 1919 confirmed that {idea}.",
        "{Einstein} spent his last years at {place} searching for a unified field theory.",
        "In his miracle year of 1905, {einstein} {did} {theory}.",
        "{Einstein} never fully accepted {colleague}'s view of quantum mechanics.",
        "Students at {place} still study how {einstein} derived {theory}.",
        "{Thing} by {einstein} explained that {idea}.",
        "{Einstein} famously said that God does not play dice, a jab at {colleague}.",
        "The {adj} {einstein} imagined a man falling from a roof and found {theory}.",
        "Physicists in {place} debated {theory} after {einstein} {did} it.",
        "{Einstein} wrote {thing} to {colleague} about {theory}.",
        "The equation of {einstein} shows that {idea}.",
        "At the patent office in Bern, {einstein} had time to think about {theory}.",
        "{Einstein} was born in Ulm in 1879 and died in Princeton in 1955.",
    ],
    keywords=["einstein", "relativity", "physicist*", "physics", "spacetime", "photoelectric",
              "e = mc2", "nobel", "princeton", "bohr", "planck", "quantum", "eddington",
              "patent office", "brownian", "unified field", "minkowski", "light", "equation*",
              "gravity", "energy", "bern", "zurich", "violin", "theory"],
)

# ----------------------------------------------------------------------------- dilemma

DILEMMA = ConceptSpec(
    slots=dict(
        who=["she", "he", "Maria", "the nurse", "the young lawyer", "Tom", "the captain",
             "my brother", "the manager", "Aisha", "the old judge", "the student"],
        torn=["torn between", "caught between", "struggling to choose between",
              "unable to decide between", "pulled back and forth between"],
        a=["loyalty to a friend", "telling the truth", "keeping a promise", "duty to the family",
           "following the rules", "personal ambition", "staying silent", "protecting a colleague"],
        b=["doing what was right", "honesty with the public", "the safety of strangers",
           "a chance at freedom", "obligation to the company", "the wishes of a dying parent",
           "fairness to everyone", "a clear conscience"],
        feeling=["guilt", "doubt", "anguish", "hesitation", "regret", "inner conflict",
                 "a heavy conscience", "uncertainty"],
        choice=["the choice", "the decision", "the dilemma", "the impossible choice",
                "the hard decision", "the moral question"],
        did=["hesitated", "wavered", "agonized", "could not sleep", "paced the room",
             "stared at the ceiling", "second-guessed every thought"],
        time=["for days", "all night", "for weeks", "until dawn", "for a long time", "in silence"],
    ),
    templates=[
        "{Who} was {torn} {a} and {b}.",
        "On one hand there was {a}; on the other hand, {b}.",
        "{Who} {did} {time}, weighed down by {feeling}.",
        "{Choice} between {a} and {b} filled {who} with {feeling}.",
        "Should {who} choose {a} or {b}?",
        "Whatever {who} decided, {feeling} would follow.",
        "{Who} felt {feeling} because {a} clashed with {b}.",
        "Part of {who} wanted {a}, but another part longed for {b}.",
        "{Feeling} kept {who} awake as {choice} grew closer.",
        "No answer seemed right, and {who} {did} {time}.",
        "{Who} knew that choosing {a} meant betraying {b}.",
        "Every option carried a cost, and {who} felt {feeling}.",
        "{Choice} forced {who} to weigh {a} against {b}.",
        "{Who} {did}, {torn} {a} and {b}.",
        "Doing the right thing seemed to require giving up {a}.",
        "{Who} asked whether {b} was worth sacrificing {a}.",
        "The conflict inside {who} between {a} and {b} would not go away.",
        "{Who} wavered between two duties, each one pulling hard.",
        "With {feeling}, {who} finally faced {choice}.",
        "There was no painless way out of {choice}.",
        "{Who} imagined both outcomes {time} and found {feeling} in each.",
        "Torn and exhausted, {who} could not choose between {a} and {b}.",
        "{Who} wished someone else could make {choice}.",
        "Her conscience said one thing and her heart said another.",
        "It was a dilemma with no good answer, only {feeling}.",
        "{Who} postponed {choice} again, {torn} {a} and {b}.",
    ],
    keywords=["torn", "dilemma", "conscience", "hesitat*", "waver*", "on one hand",
              "on the other hand", "agonized", "choice", "decision", "decide*", "choose*",
              "choosing", "inner conflict", "anguish", "regret", "duty", "duties", "sacrific*",
              "betray*", "loyalty", "option", "outcomes", "conflict", "moral"],
)

# ----------------------------------------------------------------------------- manipulation

MANIPULATION = ConceptSpec(
    slots=dict(
        who=["the con artist", "the salesman", "the cult leader", "the scammer", "he", "she",
             "the recruiter", "the manipulator", "her boss", "the fake friend"],
        victim=["his victims", "the customer", "the new recruits", "her partner", "the employees",
                "the lonely widow", "the crowd", "the investors", "his friends"],
        tactic=["flattery", "guilt trips", "false urgency", "gaslighting", "fake scarcity",
                "love bombing", "veiled threats", "emotional blackmail", "peer pressure",
                "selective lies"],
        verb=["persuade", "pressure", "exploit", "deceive", "coerce", "trick", "control",
              "influence", "seduce"],
        goal=["sign the contract", "hand over their savings", "doubt their own memory",
              "cut off their friends", "buy something useless", "obey without question",
              "reveal their password", "stay in the relationship"],
        adv=["subtly", "relentlessly", "quietly", "cleverly", "shamelessly", "patiently"],
    ),
    templates=[
        "{Who} used {tactic} to {verb} {victim}.",
        "With {tactic}, {who} {adv} pushed {victim} to {goal}.",
        "{Who} knew how to {verb} people into doing what he wanted.",
        "{Tactic} is a classic way to manipulate someone.",
        "{Who} {adv} applied {tactic} until {victim} agreed to {goal}.",
        "Manipulators often rely on {tactic} and {tactic}.",
        "{Victim} did not notice the {tactic} until it was too late.",
        "{Who} exploited the fears of {victim} to make them {goal}.",
        "A skilled manipulator will {verb} {victim} with {tactic}.",
        "{Who} twisted the facts so that {victim} would {goal}.",
        "Through {tactic}, {who} gained leverage over {victim}.",
        "{Who} pretended to care, but the real goal was to {verb} {victim}.",
        "Persuasion turns into manipulation when {tactic} replaces honest argument.",
        "{Who} {adv} planted doubts so {victim} would {goal}.",
        "The scam worked because {who} used {tactic} on {victim}.",
        "{Victim} felt pressured by {tactic} and agreed to {goal}.",
        "{Who} played on guilt and fear to {verb} {victim}.",
        "Psychologists describe {tactic} as a tool of coercive control.",
        "{Who} isolated {victim} and then used {tactic}.",
        "It is easier to {verb} people who are tired, lonely or afraid.",
        "{Who} made {victim} believe that only he could help them.",
        "{Tactic} and {tactic} let {who} {verb} {victim}.",
        "{Who} {adv} rewrote the story until {victim} began to {goal}.",
        "Influence becomes exploitation when {who} hides the real motive.",
        "Warning signs of manipulation include {tactic} and sudden pressure to {goal}.",
        "The manipulator smiled and {adv} steered {victim} toward the trap.",
    ],
    keywords=["manipulat*", "persuad*", "persuasion", "pressure*", "exploit*", "gaslighting",
              "flattery", "guilt trip*", "coerc*", "con artist", "scam*", "deceiv*", "leverage",
              "blackmail", "love bombing", "influence", "victim*", "trick*", "played on guilt"],
)

# ----------------------------------------------------------------------------- dna

DNA = ConceptSpec(
    slots=dict(
        seq=lambda rng: _dna(rng),
        short=lambda rng: _dna(rng, 6, 14),
        gene=["BRCA1", "TP53", "lacZ", "GFP", "16S rRNA", "COX1", "actin", "insulin"],
        n=_int(1, 999),
    ),
    templates=[
        "{seq}", "{seq}", "{seq}{seq}", ">seq{n}\n{seq}", ">read_{n} {gene}\n{seq}",
        "5'-{seq}-3'", "3'-{short}-5'", "primer F: {short}{short}", "primer R: {short}{short}",
        "ATG{seq}TAA", "ATG{seq}TGA", "codons: {short} {short} {short}",
        "exon {n}: {seq}", "{gene} locus {seq}", "{short}NNNN{short}",
        "forward read {seq}", "reverse read {seq}", "probe {short}{short}",
        "consensus {seq}", "{seq}\n{seq}", "gRNA {short}{short}", "adapter {short}AGATCGGAAG",
        "contig_{n} {seq}", "amplicon {seq}", "motif TATAAA {seq}", "{gene} cDNA {seq}",
    ],
    patterns=[r"[ACGT]{8,}"],
    sentences=(3, 5),
    keywords=["primer", "codons", "exon", "contig*", "amplicon", "grna", "cdna", "locus",
              "probe", "consensus", "adapter", "motif", "forward read", "reverse read"],
    joiner="\n",
)

# ----------------------------------------------------------------------------- base64

BASE64 = ConceptSpec(
    slots=dict(
        b=_b64,
        n=_int(1, 99),
        mime=["image/png", "image/jpeg", "application/pdf", "application/octet-stream", "text/plain"],
        name=["avatar", "logo", "thumb", "attachment", "icon", "payload", "cert", "blob"],
    ),
    templates=[
        "{b}", "{b}{b}", "data:{mime};base64,{b}", "Authorization: Basic {b}",
        "\"{name}\": \"{b}\"", "{name}_{n}={b}", "-----BEGIN CERTIFICATE-----\n{b}\n{b}",
        "Content-Transfer-Encoding: base64\n{b}", "token={b}", "{b}\n{b}", "key: {b}",
        "<img src=\"data:{mime};base64,{b}\">", "secret {b}", "encoded {name}: {b}",
        "sig={b}", "nonce={b}", "ssh-rsa {b}{b}", "{name}.b64 {b}", "value {b}",
        "base64 {b}", "hash {b}", "blob {n}: {b}", "X-Api-Key: {b}", "cookie={b}",
        "{b}=", "iv={b}",
    ],
    patterns=[r"(?=[A-Za-z0-9+/]*[0-9+/])(?=[A-Za-z0-9+/]*[A-Z])(?=[A-Za-z0-9+/]*[a-z])[A-Za-z0-9+/]{12,}={0,2}"],
    keywords=["base64"],
    joiner="\n",
    sentences=(3, 5),
)

# ----------------------------------------------------------------------------- arabic

ARABIC = ConceptSpec(
    slots=dict(
        noun=["الكتاب", "البيت", "المدرسة", "الطالب", "المعلم", "المدينة", "السوق", "الباب",
              "الشمس", "القمر", "البحر", "الطريق", "الولد", "البنت", "الرجل", "المرأة",
              "الحديقة", "السيارة", "المكتبة", "الجامعة", "القهوة", "الماء", "الخبز", "الليل"],
        adj=["كبير", "صغير", "جميل", "جديد", "قديم", "بعيد", "قريب", "طويل", "سعيد", "نظيف"],
        verb=["ذهب", "كتب", "قرأ", "جلس", "خرج", "دخل", "رأى", "سمع", "فتح", "أكل", "شرب", "عاد"],
        prep=["إلى", "في", "من", "على", "مع", "بعد", "قبل", "عند"],
        name=["محمد", "أحمد", "فاطمة", "علي", "مريم", "يوسف", "خالد", "ليلى", "عمر", "سارة"],
        time=["اليوم", "أمس", "غدا", "صباحا", "مساء", "في الصباح", "بعد الظهر"],
    ),
    templates=[
        "{noun} {adj}.", "{verb} {name} {prep} {noun}.", "{name} {verb} {noun} {time}.",
        "ذهب {name} إلى {noun} {time}.", "هذا {noun} {adj} جدا.", "{noun} {prep} {noun}.",
        "قرأ {name} {noun} في {noun}.", "كان {noun} {adj} و{adj}.", "{time} {verb} {name} {prep} {noun}.",
        "أين {noun}؟", "هل {noun} {adj}؟", "{name} و{name} {prep} {noun}.",
        "جلس {name} {prep} {noun} {adj}.", "في {noun} {noun} {adj}.", "{verb} {noun} {prep} {noun} {time}.",
        "قال {name}: {noun} {adj}.", "{noun} {adj} و{noun} {adj}.", "رأى {name} {noun} {time}.",
        "شرب {name} {noun} {prep} {noun}.", "{name} يحب {noun}.", "لا {verb} {name} {prep} {noun}.",
        "عاد {name} من {noun} {time}.", "يا {name}، {noun} {adj}!", "بعد {noun} {verb} {name}.",
        "مرحبا يا {name}.", "شكرا {prep} {noun}.", "{noun} {adj} {prep} {noun} {adj}.",
    ],
    patterns=[r"[\u0600-\u06FF]{2,}"],
    keywords=[],
)

# ----------------------------------------------------------------------------- arithmetic


def _arith(rng: random.Random) -> tuple[str, str, str, str, str]:
    """Return (a, op symbol, b, result, op word) for a correct small calculation."""
    op = rng.choice("+-*")
    a, b = rng.randint(2, 99), rng.randint(2, 99) if op != "*" else rng.randint(2, 12)
    if op == "-" and b > a:
        a, b = b, a
    c = a + b if op == "+" else a - b if op == "-" else a * b
    word = {"+": "plus", "-": "minus", "*": "times"}[op]
    return str(a), op, str(b), str(c), word


def _arith_template(fmt: str):
    def make(rng: random.Random) -> str:
        a, op, b, c, word = _arith(rng)
        return fmt.format(a=a, op=op, b=b, c=c, word=word)
    return make


ARITHMETIC = ConceptSpec(
    slots=dict(),
    templates=[_arith_template(f) for f in [
        "{a} {op} {b} = {c}", "{a} {op} {b} = {c}.", "What is {a} {word} {b}? It is {c}.",
        "{a} {word} {b} equals {c}.", "Compute {a} {op} {b}: the answer is {c}.",
        "The sum, difference or product: {a} {op} {b} = {c}.", "Q: {a} {op} {b}? A: {c}",
        "If you take {a} {word} {b}, you get {c}.", "{a}{op}{b}={c}", "Check: {a} {op} {b} == {c}",
        "Step {a}: {a} {op} {b} = {c}", "So {a} {word} {b} makes {c}.", "Result: {a} {op} {b} = {c}",
        "Solve {a} {op} {b}. Answer: {c}.", "Calculate {a} {word} {b} = {c}.",
        "{a} {op} {b} gives {c}.", "x = {a} {op} {b} = {c}", "The answer to {a} {op} {b} is {c}.",
        "Mental math: {a} {word} {b} is {c}.", "({a} {op} {b}) = {c}", "{a} {op} {b} is {c}.",
        "Add, subtract, multiply: {a} {op} {b} = {c}", "Homework: {a} {op} {b} = {c}",
        "Quick sum: {a} {op} {b} = {c}", "Exercise {b}: {a} {op} {b} = {c}",
    ]],
    patterns=[r"\d+\s*[-+*]\s*\d+\s*=+\s*\d+", r"\d+ (?:plus|minus|times) \d+"],
    keywords=["equals", "answer", "compute", "calculate", "sum", "mental math"],
    sentences=(4, 8),
)

# ----------------------------------------------------------------------------- distractors

COOKING = ConceptSpec(
    slots=dict(
        cook=["the chef", "my grandmother", "the baker", "she", "he", "the cook", "Dad", "the students"],
        ingredient=["onions", "garlic", "butter", "fresh basil", "tomatoes", "flour", "olive oil",
                    "lemon zest", "brown sugar", "ginger", "mushrooms", "cream", "eggs", "rice"],
        dish=["the soup", "the risotto", "the stew", "the pasta sauce", "the bread dough",
              "the curry", "the pancakes", "the omelette", "the pie crust", "the roast chicken"],
        vessel=["a cast iron pan", "a large pot", "the skillet", "the mixing bowl", "a saucepan", "the wok"],
        utensil=["a wooden spoon", "a whisk", "a spatula", "a ladle", "a fork"],
        action=["chopped", "stirred", "simmered", "sauteed", "whisked", "kneaded", "seasoned",
                "baked", "roasted", "diced"],
        mins=_int(2, 45),
        temp=["350 degrees", "medium heat", "low heat", "a gentle simmer", "high heat", "200 degrees Celsius"],
    ),
    templates=[
        "{Cook} {action} {ingredient} for {dish}.", "Simmer {dish} over {temp} for {mins} minutes.",
        "Add {ingredient} and {ingredient} to {vessel}.", "{Cook} stirred {dish} with {utensil}.",
        "Preheat the oven to {temp} before you bake {dish}.", "Season {dish} with salt, pepper and {ingredient}.",
        "{Cook} {action} the {ingredient} in {vessel}.", "Let {dish} rest for {mins} minutes before serving.",
        "The recipe calls for {ingredient}, {ingredient} and a pinch of salt.",
        "Melt {ingredient} in {vessel} over {temp}.", "{Cook} tasted {dish} and added more {ingredient}.",
        "Knead the dough for {mins} minutes until smooth.", "Whisk {ingredient} with {ingredient} in {vessel}.",
        "Serve {dish} warm with {ingredient} on top.", "{Cook} taught us to cook {dish} slowly.",
        "Roast the vegetables at {temp} for {mins} minutes.", "Chop {ingredient} finely and fry it in {ingredient}.",
        "{Dish} smelled of {ingredient} and {ingredient}.", "Bring {dish} to a boil, then reduce to {temp}.",
        "The kitchen was warm while {dish} baked in the oven.", "{Cook} sliced {ingredient} with a sharp knife.",
        "Stir in {ingredient} and cook for {mins} more minutes.", "This recipe makes {dish} for {mins} people.",
        "Garnish {dish} with {ingredient} and serve.", "{Cook} burned {dish} once and never forgot it.",
        "Dinner was {dish} with a side of {ingredient}.",
    ],
    keywords=["recipe", "simmer*", "oven", "bake*", "baker", "stir*", "chef", "kitchen",
              "dough", "serving", "dish", "ingredient*", "boil", "sauce", "garnish", "whisk*",
              "chop*", "knead*", "season", "salt", "butter", "garlic", "onions", "flour",
              "roast*", "sauteed", "diced", "sliced", "skillet", "pot", "soup", "risotto",
              "stew", "pasta", "curry", "pancakes", "omelette", "pie crust", "grandmother"],
)

WEATHER = ConceptSpec(
    slots=dict(
        region=["the coast", "the valley", "the northern hills", "the city", "the mountains",
                "the plains", "the lake district", "the south"],
        sky=["cloudy skies", "clear skies", "heavy rain", "light drizzle", "thunderstorms",
             "scattered showers", "snow flurries", "hail", "a heat wave", "strong winds", "sunshine"],
        day=["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "the weekend", "tomorrow",
             "tonight", "this afternoon"],
        temp=_int(-5, 38),
        pct=_int(10, 95),
        speed=_int(5, 80),
        forecaster=["the forecaster", "the weather service", "the meteorologist", "the radar",
                    "the latest forecast"],
    ),
    templates=[
        "Expect {sky} over {region} on {day}.", "Temperatures will reach {temp} degrees on {day}.",
        "{Forecaster} predicts {sky} for {region}.", "There is a {pct} percent chance of rain {day}.",
        "Winds of {speed} kilometers per hour will sweep {region}.", "Humidity stays near {pct} percent {day}.",
        "{Sky} will move into {region} by {day}.", "Lows near {temp} degrees are expected {day}.",
        "The forecast for {day} calls for {sky}.", "{Forecaster} issued a storm warning for {region}.",
        "A cold front brings {sky} to {region} on {day}.", "Highs of {temp} degrees and {sky} are likely {day}.",
        "Rainfall totals may reach {speed} millimeters in {region}.", "{Day} looks dry, with {sky}.",
        "The barometer is falling ahead of {sky}.", "{Forecaster} says {sky} will clear by {day}.",
        "A heat advisory is in effect for {region} until {day}.", "Snow is possible in {region} if temperatures drop to {temp} degrees.",
        "Umbrellas will be needed on {day} as {sky} arrive.", "The weather turns stormy over {region} {day}.",
        "Expect gusts up to {speed} kilometers per hour and {sky}.", "{Region} will see {sky} and a high of {temp} degrees.",
        "Frost is likely in {region} {day} morning.", "The rain gauge recorded {speed} millimeters overnight.",
        "A warm front will bring humid air and {sky} to {region}.", "Forecast models disagree about {sky} on {day}.",
    ],
    keywords=["forecast*", "temperature*", "degrees", "rain*", "humid*", "winds", "storm*",
              "meteorologist", "cold front", "warm front", "snow", "drizzle", "showers",
              "thunderstorms", "gusts", "frost", "weather", "skies", "sunshine", "hail",
              "heat wave", "barometer", "umbrellas", "lows", "highs", "kilometers per hour"],
)

SPORTS = ConceptSpec(
    slots=dict(
        team=["the Tigers", "the Falcons", "the Rovers", "the home team", "the visitors",
              "United", "the Sharks", "the Wolves", "the Eagles", "the champions"],
        player=["the striker", "the goalkeeper", "the captain", "the point guard", "the pitcher",
                "the rookie", "the midfielder", "the quarterback", "the coach"],
        score=_int(0, 9),
        big=_int(60, 120),
        minute=_int(1, 90),
        game=["the match", "the final", "the semifinal", "the derby", "the game", "the playoff game", "the tournament"],
        play=["scored a goal", "made a stunning save", "hit a home run", "sank a three-pointer",
              "threw a touchdown pass", "missed a penalty", "won the race", "served an ace"],
    ),
    templates=[
        "{Team} beat {team} {score} to {score} in {game}.", "{Player} {play} in the {minute}th minute.",
        "The crowd cheered when {player} {play}.", "{Team} won {game} after extra time.",
        "{Player} of {team} {play} to win {game}.", "The final score was {big} to {big}.",
        "{Team} lost {game} on penalties.", "{Player} trained hard for the season.",
        "Fans filled the stadium for {game} between {team} and {team}.", "The referee showed a red card to {player}.",
        "{Team} lead the league with {score} wins in a row.", "{Player} was named player of the match.",
        "In {game}, {team} scored twice in the second half.", "{Player} {play} and the stadium erupted.",
        "The coach praised {team} after {game}.", "{Team} will face {team} in {game} on Sunday.",
        "A late goal by {player} sealed the victory.", "{Team} defended well and kept a clean sheet.",
        "The championship came down to {game} against {team}.", "{Player} signed a new contract with {team}.",
        "Injuries forced {team} to play {game} without {player}.", "The league table changed after {game}.",
        "{Team} scored {big} points in {game}.", "{Player} broke the record for goals in a season.",
        "The underdogs stunned {team} in {game}.", "Tickets for {game} sold out in a single day.",
    ],
    keywords=["match", "goal*", "stadium", "league", "team", "score*", "coach", "referee",
              "player", "championship", "victory", "playoff", "tournament", "penalt*", "fans",
              "semifinal", "touchdown", "striker", "goalkeeper", "captain", "quarterback",
              "rookie", "midfielder", "pitcher", "home run", "three-pointer", "final",
              "derby", "underdogs", "tigers", "falcons", "rovers", "sharks", "wolves",
              "eagles", "champions", "injuries", "extra time", "clean sheet"],
)

ANIMALS = ConceptSpec(
    slots=dict(
        animal=["the fox", "the owl", "a herd of elephants", "the wolf", "the otter", "a pod of dolphins",
                "the lion", "the squirrel", "a flock of geese", "the giraffe", "the penguin", "the bear",
                "the hedgehog", "the tortoise"],
        habitat=["the forest", "the savanna", "the river bank", "the jungle", "the meadow",
                 "the arctic ice", "the wetlands", "the burrow", "the den", "the nest"],
        food=["berries", "fish", "insects", "acorns", "grass", "small rodents", "leaves", "nectar", "seeds"],
        act=["hunts", "sleeps", "grazes", "forages", "nests", "hibernates", "migrates", "swims", "prowls"],
        time=["at night", "in winter", "at dawn", "during the dry season", "in spring", "all day"],
        n=_int(2, 40),
        trait=["thick fur", "sharp claws", "keen eyesight", "webbed feet", "a long neck", "sharp teeth", "a bushy tail"],
    ),
    templates=[
        "{Animal} {act} in {habitat} {time}.", "{Animal} feeds on {food} and {food}.",
        "{Animal} uses {trait} to survive in {habitat}.", "In {habitat}, {animal} {act} {time}.",
        "Wildlife biologists tracked {animal} across {habitat}.", "{Animal} raises its young in {habitat}.",
        "{Animal} can live for {n} years in the wild.", "{Animal} {act} while {animal} watches from {habitat}.",
        "The cubs of {animal} play near {habitat}.", "{Animal} has {trait} and eats {food}.",
        "Each year {animal} {act} hundreds of miles.", "Predators like {animal} keep {habitat} in balance.",
        "{Animal} hides from predators in {habitat}.", "{Animal} gathers {food} {time}.",
        "A group of {n} animals {act} through {habitat}.", "The zookeeper fed {animal} {food}.",
        "{Animal} is a mammal adapted to {habitat}.", "Baby animals stay close to their mothers in {habitat}.",
        "{Animal} marks its territory in {habitat}.", "With {trait}, {animal} {act} {time}.",
        "Conservation efforts protect {animal} and {habitat}.", "{Animal} sniffed the air for {food}.",
        "The species {act} {time} and rests in {habitat}.", "{Animal} and {animal} share {habitat}.",
        "Scientists counted {n} nests of {animal} in {habitat}.", "{Animal} shed its winter coat in spring.",
    ],
    keywords=["wildlife", "predators", "habitat", "species", "cubs", "nest*", "den",
              "burrow", "forag*", "graz*", "hibernat*", "migrat*", "mammal", "zookeeper",
              "fox", "owl", "wolf", "bear", "otter", "penguin", "lion", "herd", "flock",
              "elephants", "dolphins", "squirrel", "geese", "giraffe", "hedgehog", "tortoise",
              "animal*", "berries", "insects", "acorns", "nectar", "fur", "claws", "tail",
              "forest", "savanna", "jungle", "meadow", "wetlands", "conservation"],
)

# The order fixes each concept's integer id (its index).
CONCEPT_SPECS: dict[str, ConceptSpec] = {
    "golden_gate": GOLDEN_GATE,
    "einstein": EINSTEIN,
    "dilemma": DILEMMA,
    "manipulation": MANIPULATION,
    "code": replace(CODE, keywords=CODE_KEYWORDS),
    "unsafe_code": replace(CODE, keywords=[], patterns=UNSAFE_PATTERNS),
    "dna": DNA,
    "base64": BASE64,
    "arabic": ARABIC,
    "arithmetic": ARITHMETIC,
    "cooking": COOKING,
    "weather": WEATHER,
    "sports": SPORTS,
    "animals": ANIMALS,
}
