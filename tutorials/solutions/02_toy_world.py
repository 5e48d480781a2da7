"""Answers to chapter 2's exercises (run from anywhere; `SAE_FAST=1` uses the chapter's fast settings)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tutorials/: common, exercises

import torch  # noqa: E402

from common import FAST  # noqa: E402
import exercises.ch02  # noqa: E402
from sae.world import corpus as C  # noqa: E402
from sae.tokenizer import Tokenizer  # noqa: E402


def token_labels(byte_labels, token_lengths):
    """Each token's concept: the label of its last byte."""
    ends = torch.cumsum(token_lengths, dim=0)  # one past each token's last byte
    return byte_labels[ends - 1]


assert exercises.ch02.TOKEN_LABELS.check(token_labels)

tok = Tokenizer.train(C.toy_text(300_000 if FAST else 5_000_000, seed=0), vocab_size=1024 if FAST else 2048)

# A concept in the format of sae/world/concepts.py. The keywords avoid the other concepts' vocabulary
# ("light", "gravity" and "energy" are Einstein's, "skies" and "degrees" the weather's, "probe"
# DNA's, "orange" the Golden Gate's), and the templates avoid it too.
ASTRONOMY = dict(
    slots=dict(
        body=["the Moon", "Mars", "Jupiter", "Saturn", "Venus", "Mercury", "Neptune", "Uranus", "Pluto",
              "the comet", "the asteroid", "Halley's Comet", "the dwarf planet", "the red planet"],
        star=["Sirius", "Betelgeuse", "Vega", "Polaris", "Rigel", "Alpha Centauri", "Proxima Centauri",
              "the red giant", "a young star", "the North Star", "Aldebaran"],
        galaxy=["the Milky Way", "the Andromeda Galaxy", "the Whirlpool Galaxy", "a spiral galaxy",
                "an elliptical galaxy", "the Large Magellanic Cloud", "a distant galaxy"],
        telescope=["the Hubble Space Telescope", "the James Webb Space Telescope", "a backyard telescope",
                   "the radio telescope", "the observatory's telescope", "a small refractor", "binoculars"],
        astronomer=["the astronomer", "Galileo", "Edwin Hubble", "Carl Sagan", "Johannes Kepler",
                    "the stargazers", "an amateur astronomer", "Caroline Herschel", "Tycho Brahe"],
        constellation=["Orion", "Cassiopeia", "the Big Dipper", "Scorpius", "Ursa Major", "Cygnus",
                       "Lyra", "Taurus", "the Southern Cross"],
        nebula=["the Orion Nebula", "the Crab Nebula", "the Eagle Nebula", "a planetary nebula",
                "a dark nebula", "the Horsehead Nebula"],
        event=["a total solar eclipse", "a lunar eclipse", "a meteor shower", "the transit of Venus",
               "a supernova", "the Perseid meteor shower", "a conjunction of planets", "a comet flyby"],
        dist=["4.2 parsecs", "thousands of parsecs", "two million parsecs", "93 million miles",
              "384,000 kilometres", "five astronomical units"],
        time=["tonight", "before dawn", "after midnight", "in August", "on a moonless night",
              "at dusk", "next spring", "every clear night"],
        see=["spotted", "photographed", "observed", "tracked", "mapped", "studied", "discovered"],
        n=lambda rng: str(rng.randint(2, 90)),
    ),
    templates=[
        "{Astronomer} {see} {body} through {telescope} {time}.",
        "{Body} orbits the Sun once every {n} years.",
        "{Star} is the brightest star in {constellation}.",
        "{Telescope} {see} {nebula} in {galaxy}.",
        "{Event} will be visible from the southern hemisphere {time}.",
        "{Galaxy} contains hundreds of billions of stars.",
        "Through {telescope}, the rings of Saturn look like a thin ellipse.",
        "{Astronomer} counted {n} craters on {body}.",
        "{Star} lies about {dist} from Earth.",
        "Look for {constellation} low in the night sky {time}.",
        "{Body} has {n} known moons.",
        "{Nebula} is a nursery where new stars are born.",
        "{Astronomer} calculated the orbit of {body}.",
        "During {event}, {astronomer} watched from the observatory.",
        "{Star} will one day collapse into a white dwarf.",
        "Through {telescope}, {body} looked like a tiny disk.",
        "{Galaxy} and {galaxy} will collide in a few billion years.",
        "{Astronomer} {see} a new comet near {constellation}.",
        "The astronauts photographed {body} from orbit.",
        "{Event} darkened the night sky {time}.",
        "Stargazers gathered at the observatory to watch {event}.",
        "{Telescope} captured an image of {nebula}.",
        "The orbit of {body} takes it {dist} from the Sun.",
        "{Star} and {star} form a binary system in {constellation}.",
        "Meteors streaked across the night sky {time}.",
        "{Astronomer} measured the redshift of {galaxy}.",
        "A new exoplanet was found orbiting {star}.",
        "The planets {body} and {body} line up {time}.",
    ],
    keywords=["astronom*", "telescope*", "galax*", "planet*", "orbit*", "comet*", "nebula*", "constellation*",
              "observatory", "eclipse", "meteor*", "stargazer*", "star", "stars", "moon*", "asteroid*",
              "supernova", "parsecs", "crater*", "exoplanet", "redshift", "milky way", "hubble", "galileo",
              "kepler", "orion", "jupiter", "saturn", "mars", "venus", "neptune", "uranus", "pluto", "sirius",
              "betelgeuse", "polaris", "andromeda", "cassiopeia", "big dipper", "binary system", "astronauts",
              "white dwarf", "red giant", "night sky", "sun"],
)

assert exercises.ch02.check_concept(ASTRONOMY, tok)
assert "astronomy" not in C.CONCEPTS, "the check must leave the toy world as it found it"
