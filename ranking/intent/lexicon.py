"""The words requests are written from: mood families, situations, phrasing templates.

Colloquial mood words and situations (activity, weather, time of day) each map to the
Jamendo tags that satisfy them; the phrasing templates are split into training and
held-out phrasings (evaluation requests use only held-out ones); and the instrument
words and Jamendo's mood/theme tag names mark instruments and moods among free
(uncategorised) tags.
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

# Production and structure remarks that carry no intent: descriptive requests are full of
# them, so the model has to learn to read past them. Training and held-out phrasings use
# separate sets.
TRAIN_FILLERS: Tuple[str, ...] = (
    "a warm, clean mix", "lots of reverb on everything", "a simple repeating melody",
    "a long intro", "quiet verses and a bigger chorus", "a live recording feel",
    "a steady beat all the way through", "the vocals sit back in the mix",
    "it builds towards the end", "nothing too busy",
)
HELDOUT_FILLERS: Tuple[str, ...] = (
    "a polished studio sound", "wide stereo and some echo", "a hook that keeps coming back",
    "the second half opens up", "a bit raw around the edges", "sparse arrangement",
)

# Phrasing templates. Slots: {mood} (colloquial word), {moodtag} (a mood/theme tag named
# as it is), {style} {style2} {instrument} {situation} {neg} {filler}.
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
    "{moodtag} {style}",
    "something {moodtag}",
    "{moodtag} music with {instrument}",
    "a {style} track with {instrument}, {filler}, and overall it feels {moodtag}",
    "{filler}. {instrument} carries the melody, {style} at heart, quite {moodtag}",
    "i'm after {style}: {filler}, some {instrument}, good for {situation}",
    "music for a {moodtag} mood, {filler}",
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
    "{moodtag} vibes please",
    "a {style} song with {filler}; {instrument} up front, and it sounds {moodtag}",
    "the track opens with {instrument}, {filler}, a {style} feel, very {moodtag}",
)

# MTG-Jamendo's mood/theme tags: they mark moods among free (uncategorised) tags.
MOOD_THEME_TAGS = (
    "action", "adventure", "advertising", "ambiental", "background", "ballad", "calm",
    "children", "christmas", "commercial", "cool", "corporate", "dark", "deep",
    "documentary", "drama", "dramatic", "dream", "emotional", "energetic", "epic", "fast",
    "film", "fun", "funny", "game", "groovy", "happy", "heavy", "holiday", "hopeful",
    "horror", "inspiring", "love", "meditative", "melancholic", "mellow", "melodic",
    "motivational", "movie", "nature", "party", "positive", "powerful", "relaxing", "retro",
    "romantic", "sad", "sexy", "slow", "soft", "soundscape", "space", "sport", "summer",
    "trailer", "travel", "upbeat", "uplifting")

# HetRec's free tags have no category; these words mark instruments among them.
INSTRUMENT_WORDS = ("piano", "guitar", "violin", "cello", "saxophone", "trumpet",
                    "flute", "drums", "synthesizer", "accordion", "harp", "organ")
