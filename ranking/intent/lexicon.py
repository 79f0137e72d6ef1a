"""The words requests are written from: mood families, situations, phrasing templates.

Colloquial mood words and situations (activity, weather, time of day) each map to the
Jamendo tags that satisfy them; the phrasing templates are split into training and
held-out phrasings (evaluation requests use only held-out ones); and the instrument
words mark instruments among free (uncategorised) tags.
"""

from typing import Dict, Tuple

# Colloquial mood families: the words people use -> the Jamendo tags that satisfy them.
MOODS: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    "chill": (("chill", "laid-back", "mellow", "low-key", "soothing", "relaxed",
               "easy-going", "unwinding"),
              ("relaxing", "calm", "chillout", "meditative", "soft", "downtempo",
               "easylistening", "lounge")),
    "upbeat": (("upbeat", "high-energy", "pumped up", "lively", "bouncy", "hype",
                "energizing", "peppy"),
               ("energetic", "upbeat", "fun", "party", "groovy", "dance", "powerful",
                "fast", "motivational")),
    "sad": (("sad", "melancholy", "heartbroken", "gloomy", "tearjerker", "blue",
             "wistful", "moody"),
            ("sad", "melancholic", "emotional", "dramatic")),
    "happy": (("feel-good", "cheerful", "joyful", "sunny", "happy", "bright", "carefree",
               "optimistic"),
              ("happy", "fun", "positive", "uplifting", "hopeful", "summer")),
    "romantic": (("romantic", "date-night", "tender", "sensual", "lovey-dovey", "intimate",
                  "swoony", "heartfelt"),
                 ("love", "romantic", "sexy", "ballad")),
    "epic": (("epic", "cinematic", "grand", "larger-than-life", "heroic", "sweeping",
              "blockbuster", "majestic"),
             ("epic", "dramatic", "powerful", "action", "trailer", "film", "adventure")),
    "dark": (("dark", "brooding", "ominous", "gritty", "sinister", "eerie", "shadowy",
              "haunting"),
             ("dark", "darkambient", "darkwave", "industrial", "heavy")),
    "focus": (("focus", "background", "unobtrusive", "concentration", "study-friendly",
               "distraction-free", "minimal", "quiet"),
              ("ambient", "background", "minimal", "calm", "atmospheric", "soundscape",
               "meditative")),
}

# Situations (activity, weather, time of day) -> the Jamendo tags that suit them.
SITUATIONS: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    "cleaning": (("cleaning the flat", "tidying up the kitchen", "doing the chores",
                  "a deep clean of the house"),
                 ("energetic", "upbeat", "fun", "happy", "groovy", "dance", "pop")),
    "workout": (("a workout", "the gym", "a morning run", "lifting weights",
                 "a spin class"),
                ("energetic", "sport", "motivational", "powerful", "fast", "upbeat",
                 "action")),
    "study": (("studying", "writing my thesis", "deep work at my desk",
               "reading in the library"),
              ("ambient", "background", "calm", "minimal", "classical", "soundscape",
               "atmospheric")),
    "sleep": (("falling asleep", "bedtime", "a nap", "winding down before sleep"),
              ("relaxing", "calm", "meditative", "soft", "slow", "ambient")),
    "party": (("a house party", "pre-drinks with friends", "a birthday party",
               "dancing all night"),
              ("party", "dance", "club", "house", "edm", "disco", "fun")),
    "cooking": (("cooking dinner", "a sunday brunch", "baking on a lazy afternoon",
                 "a dinner party"),
                ("happy", "lounge", "jazz", "bossanova", "easylistening", "acidjazz")),
    "roadtrip": (("a road trip", "a long drive", "cruising on the highway",
                  "driving to the coast"),
                 ("rock", "travel", "adventure", "upbeat", "energetic", "poprock")),
    "yoga": (("yoga", "meditation", "a stretching session", "breathing exercises"),
             ("meditative", "relaxing", "newage", "calm", "ambient", "nature")),
    "rain": (("a rainy day", "a rainy commute", "a grey drizzly afternoon",
              "rain against the window"),
             ("melancholic", "calm", "sad", "relaxing", "soft", "emotional")),
    "sunny": (("a sunny afternoon", "a beach day", "a summer barbecue",
               "a picnic in the park"),
              ("happy", "summer", "fun", "positive", "upbeat", "reggae")),
    "winter": (("a snowy evening", "the holidays", "a cold winter night",
                "sitting by the fireplace"),
               ("christmas", "holiday", "calm", "soft", "romantic", "melodic")),
    "latenight": (("late at night", "a 3am drive", "the small hours",
                   "after midnight"),
                  ("dark", "deep", "ambient", "chillout", "downtempo", "atmospheric")),
    "morning": (("the morning", "my first coffee", "waking up", "sunrise"),
                ("uplifting", "positive", "happy", "hopeful", "inspiring", "soft")),
}

# Phrasing templates. Slots: {mood} {style} {style2} {instrument} {situation} {neg}.
TRAIN_TEMPLATES: Tuple[str, ...] = (
    "{mood} {style}",
    "play me something {mood}",
    "{style} with {instrument}",
    "{mood} music for {situation}",
    "some {style} for {situation}",
    "i need {mood} {instrument} music",
    "{mood} {style} but not {neg}",
    "{style}, no {neg} please",
    "{style} and {style2}",
    "songs for {situation}",
    "{mood} tunes with lots of {instrument}",
    "give me {style} that is {mood}",
    "{instrument} for {situation}",
    "{mood} but not {neg}, for {situation}",
)
HELDOUT_TEMPLATES: Tuple[str, ...] = (
    "put on some {mood} {style}, i'm in the mood",
    "any {style} tracks that feel {mood}?",
    "{situation}: {mood} {instrument} please",
    "looking for {style} for {situation}, nothing {neg}",
    "something {mood} to listen to during {situation}",
    "mix of {style} and {style2}",
    "{instrument}-heavy {style}",
    "what's good for {situation}?",
)

# HetRec's free tags have no category; these words mark instruments among them.
INSTRUMENT_WORDS = ("piano", "guitar", "violin", "cello", "saxophone", "trumpet",
                    "flute", "drums", "synthesizer", "accordion", "harp", "organ")
