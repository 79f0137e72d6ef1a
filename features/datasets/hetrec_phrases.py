"""A real-language development set: HetRec users' free-text tags as music requests.

Owns the phrase set the text-intent model is developed against, its mapping to the
MTG-Jamendo tag vocabulary and its split. Last.fm users tagged artists with their own
words ("rainy day", "makes me wanna dance", "drum n bass", "melancholy"); those words are
real, human-written descriptions of music, unlike the synthesized requests. Each phrase
here was mapped by hand to the Jamendo tags a track should carry to answer it, as
clauses: every clause must hold, any tag within a clause satisfies it (the same intent
form as ``ranking.intent.intents.Request``). Only phrases that at least two HetRec users
wrote are used (:func:`load`), so a phrase is shared language, not one person's note.

The set is held out by phrase: :func:`split_of` puts each phrase in ``tune`` (used to
choose serving settings such as the lexical weight and the request length) or ``dev``
(only reported), by a stable hash of the phrase. Relevance is judged against
MTG-Jamendo test-split tracks only; the model never trains on them.

Mapping rules: a mood or situation phrase maps to the mood/theme tags that answer it
(``rainy day`` -> melancholic, sad, calm, relaxing, soft, emotional); a genre phrase to
its Jamendo genre (``drum n bass`` -> drumnbass), with the nearest parent genre when
Jamendo has no exact one; a compound phrase to one clause per part (``piano rock`` ->
rock family AND piano); artist names, opinions ("seen live", "love it") and places were
left out, and so were tags no split-0 track carries (e.g. mellow, horror, ska). Tags are
canonical keys (``ranking.intent.catalog.tag_key`` of Jamendo tags).
"""

import csv
import os
import zlib
from typing import Dict, List, Tuple

import pandas as pd

from features.datasets import registry

Clauses = Tuple[Tuple[str, ...], ...]

_ROCK = ("rock", "poprock", "alternativerock", "hardrock", "classicrock", "indie")
_SOFT = ("soft", "calm", "relaxing")
_CHILL = ("chillout", "relaxing", "calm", "downtempo", "lounge")
_SAD = ("sad", "melancholic", "emotional")
_HAPPY = ("happy", "fun", "positive", "uplifting")
_DANCE = ("dance", "party", "club", "disco", "groovy")
_BLUES = ("blues", "bluesrock")

PHRASES: Dict[str, Clauses] = {
    # moods, feelings and situations in the listeners' words
    "rainy day": (("melancholic", "sad", "calm", "relaxing", "soft", "emotional"),),
    "makes me cry": (_SAD + ("dramatic",),),
    "cry": (_SAD,),
    "makes me happy": (_HAPPY,),
    "makes me smile": (_HAPPY + ("funny",),),
    "feel good": (_HAPPY,),
    "just makes you feel good": (_HAPPY,),
    "makes me wanna dance": (_DANCE,),
    "move your body": (_DANCE + ("energetic",),),
    "let's dance": (_DANCE,),
    "dance party": (("dance", "party", "club"),),
    "party time": (("party", "fun", "dance"),),
    "driving music": (("travel", "energetic", "upbeat", "rock"),),
    "road trip": (("travel", "adventure"),),
    "wake up": (("uplifting", "energetic", "positive", "hopeful", "inspiring"),),
    "breakup music": (_SAD + ("love",),),
    "love songs": (("love", "romantic", "ballad"),),
    "love song": (("love", "romantic", "ballad"),),
    "sexy songs": (("sexy", "romantic"),),
    "summer song": (("summer", "happy", "fun"),),
    "beach music": (("summer", "reggae", "latin", "happy"),),
    "video game music": (("game",),),
    "movie soundtrack": (("film", "movie", "soundtrack"),),
    "cinematic": (("film", "movie", "soundtrack", "epic", "dramatic", "trailer"),),
    "chill": (_CHILL,),
    "chill out": (_CHILL,),
    "chill music": (_CHILL,),
    "relax": (("relaxing", "calm", "meditative", "soft"),),
    "relaxing music": (("relaxing", "calm", "meditative", "soft"),),
    "soothing": (("calm", "relaxing", "soft", "meditative"),),
    "sleep": (("relaxing", "calm", "meditative", "soft", "slow"),),
    "meditation": (("meditative", "relaxing", "newage"),),
    "melancholy": (("melancholic", "sad"),),
    "nostalgia": (("retro", "melancholic", "60s", "70s", "80s"),),
    "nostalgic": (("retro", "melancholic", "60s", "70s", "80s"),),
    "oldies": (("60s", "70s", "retro", "rocknroll"),),
    "dreamy": (("dream", "atmospheric"),),
    "upbeat": (("upbeat", "energetic", "happy"),),
    "aggressive": (("heavy", "powerful", "metal", "hardrock"),),
    "angry": (("heavy", "powerful", "metal", "hardrock", "punkrock"),),
    "inspirational": (("inspiring", "motivational", "uplifting"),),
    "halloween": (("dark",),),
    "comedy": (("funny", "fun"),),
    "children": (("children",),),
    "christmas": (("christmas", "holiday"),),
    "winter": (("christmas", "holiday", "calm"),),
    "quiet": (_SOFT,),
    "loud": (("powerful", "heavy", "energetic"),),
    "power ballad": (("ballad",), ("powerful", "rock", "hardrock")),
    "rock ballad": (_ROCK, ("ballad",)),
    "mellow rock": (_ROCK, _SOFT),
    "soft rock": (_ROCK, _SOFT),
    # instruments and voices
    "female vocalists": (("voice",),),
    "male vocalists": (("voice",),),
    "acoustic guitar": (("acousticguitar",),),
    "classical guitar": (("classicalguitar",),),
    "guitar virtuoso": (("guitar", "electricguitar", "acousticguitar", "classicalguitar"),),
    "guitar solo": (("guitar", "electricguitar"),),
    "violin": (("violin",),),
    "cello": (("cello",),),
    "saxophone": (("saxophone",),),
    "trumpet": (("trumpet",),),
    "flute": (("flute",),),
    "strings": (("strings", "violin", "cello", "viola", "orchestra"),),
    "piano rock": (_ROCK, ("piano",)),
    "acoustic rock": (_ROCK, ("acousticguitar",)),
    "harmonica blues": (_BLUES, ("harmonica",)),
    "vocal jazz": (("jazz",), ("voice",)),
    "jazz vocal": (("jazz",), ("voice",)),
    "big band": (("jazz", "swing"), ("brass", "trumpet", "saxophone", "trombone")),
    # genres, often spelled differently from Jamendo's names
    "smooth jazz": (("jazz", "acidjazz", "lounge"),),
    "cool jazz": (("jazz",),),
    "contemporary jazz": (("jazz", "jazzfusion"),),
    "jazz fusion": (("jazzfusion", "fusion"),),
    "acid jazz": (("acidjazz",),),
    "dark ambient": (("darkambient",),),
    "easy listening": (("easylistening",),),
    "new age": (("newage",),),
    "trip hop": (("triphop",),),
    "drum and bass": (("drumnbass",),),
    "drum n bass": (("drumnbass",),),
    "deep house": (("deephouse",),),
    "house music": (("house", "deephouse"),),
    "progressive house": (("house", "deephouse"),),
    "tech house": (("house", "techno"),),
    "minimal techno": (("techno", "minimal"),),
    "dance music": (("dance", "club", "eurodance"),),
    "90s dance": (("eurodance", "dance"),),
    "italo disco": (("disco",),),
    "world music": (("world", "ethno", "worldfusion"),),
    "world fusion": (("worldfusion", "world"),),
    "bossa nova": (("bossanova",),),
    "heavy metal": (("metal",),),
    "hard rock": (("hardrock",),),
    "classic rock": (("classicrock",),),
    "punk rock": (("punkrock",),),
    "ska punk": (("punkrock",),),
    "pop rock": (("poprock",),),
    "rock pop": (("poprock",),),
    "indie rock": (("indie", "alternativerock"),),
    "indie pop": (("indie",), ("pop", "popfolk", "instrumentalpop", "synthpop")),
    "indie folk": (("folk", "popfolk", "singersongwriter"),),
    "alternative rock": (("alternativerock", "alternative"),),
    "progressive rock": (("progressive",), ("rock", "progressive")),
    "psychedelic rock": (("psychedelic",),),
    "space rock": (_ROCK + ("psychedelic", "progressive"), ("space", "psychedelic")),
    "stoner rock": (("hardrock", "psychedelic", "rock"),),
    "noise rock": (_ROCK, ("experimental", "industrial")),
    "experimental rock": (_ROCK, ("experimental",)),
    "instrumental rock": (("instrumentalrock",),),
    "blues rock": (("bluesrock",),),
    "delta blues": (_BLUES,),
    "chicago blues": (_BLUES,),
    "electric blues": (_BLUES,),
    "folk rock": (("folk", "popfolk"), _ROCK),
    "country rock": (("country",), _ROCK),
    "modern country": (("country",),),
    "classic country": (("country",),),
    "synth pop": (("synthpop", "electropop"),),
    "electro pop": (("electropop", "synthpop"),),
    "dream pop": (("pop", "synthpop", "indie"), ("dream", "atmospheric")),
    "shoegaze": (("indie", "alternativerock", "postrock"), ("atmospheric", "dream")),
    "post rock": (("postrock",),),
    "new wave": (("newwave",),),
    "gothic rock": (("darkwave",),),
    "industrial metal": (("industrial",), ("metal",)),
    "symphonic metal": (("metal",), ("symphonic", "orchestral")),
    "hip hop": (("hiphop",),),
    "gangsta rap": (("rap", "hiphop"),),
    "underground hip-hop": (("hiphop", "rap"),),
    "instrumental hip-hop": (("hiphop", "rap"),),
    "rhythm and blues": (("rnb", "soul"),),
    "r and b": (("rnb",),),
    "roots reggae": (("reggae",),),
    "latin pop": (("latin",), ("pop", "popfolk", "instrumentalpop")),
    "latin rock": (("latin",), _ROCK),
    "chanson francaise": (("chanson",),),
    "french pop": (("chanson", "pop"),),
    "contemporary classical": (("classical", "contemporary"),),
    "rock n roll": (("rocknroll",),),
    "rock and roll": (("rocknroll",),),
    "80s pop": (("80s",), ("pop", "synthpop", "newwave")),
    "90s rock": (("90s",), _ROCK),
}

SPLITS = ("tune", "dev")


def split_of(phrase: str) -> str:
  """``tune`` or ``dev``: a stable half of the phrases by a hash of the phrase."""
  return SPLITS[zlib.crc32(phrase.encode("utf-8")) % 2]


def phrase_users(data_dir: str) -> Dict[str, int]:
  """How many HetRec users wrote each tag (lower case) on any artist."""
  folder = registry.source_dir("hetrec", data_dir)
  tags = pd.read_csv(os.path.join(folder, "tags.dat"), sep="\t", encoding="latin-1",
                     quoting=csv.QUOTE_NONE)
  uta = pd.read_csv(os.path.join(folder, "user_taggedartists.dat"), sep="\t")
  users = uta.groupby("tagID")["userID"].nunique()
  value = tags.set_index("tagID")["tagValue"].astype(str).str.strip().str.lower()
  out: Dict[str, int] = {}
  for tag_id, n in users.items():
    if tag_id in value.index:
      out[value[tag_id]] = max(out.get(value[tag_id], 0), int(n))
  return out


def load(data_dir: str, min_users: int = 2) -> pd.DataFrame:
  """The phrases of :data:`PHRASES` that at least ``min_users`` HetRec users wrote.

  Args:
    data_dir: the shared data root or its ``hetrec2011_lastfm_2k/`` folder.
    min_users: the fewest distinct users who must have written a phrase.

  Returns:
    One row per phrase: ``phrase``, ``clauses`` (tuples of Jamendo tag keys), ``users``
    and ``split`` (``tune``/``dev``), in :data:`PHRASES` order.
  """
  users = phrase_users(data_dir)
  rows: List[Dict[str, object]] = []
  for phrase, clauses in PHRASES.items():
    n = users.get(phrase, 0)
    if n >= min_users:
      rows.append({"phrase": phrase, "clauses": clauses, "users": n,
                   "split": split_of(phrase)})
  return pd.DataFrame(rows, columns=["phrase", "clauses", "users", "split"])
