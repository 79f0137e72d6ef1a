"""The single source of truth for Melody's features.

Names, dtypes, fixed sequence lengths, vocabulary sizes and label keys of the raw
training examples (``tf.train.Example``, built by ``features.raw_features``) and of the
transformed features (suffix ``_xf``, produced by ``features.preprocessing``) live here
and nowhere else. Every other module imports them from this file.

One example is one impression: a listener (user features), the context, the listener's
long-term history (the last ``HISTORY_LEN`` plays, most recent first, padded), the
short-term session (plays of the last ``SESSION_WINDOW_S`` seconds, at most
``SESSION_LEN``, most recent first, padded), one candidate track, the labels and one
weight per label. A label a source does not have is present with value 0 and weight 0;
a class label (``CLASS_LABELS``) a source does not have is ``UNKNOWN_CLASS``.
"""

import dataclasses
from typing import Dict, Tuple

# --------------------------------------------------------------------------- lengths
HISTORY_LEN = 50          # long-term history: last 50 plays
SESSION_LEN = 10          # short-term session: at most 10 events ...
SESSION_WINDOW_S = 1800   # ... of the last 30 minutes
# The subscription label of an impression: the listener converts to paid within this
# many seconds after it (conversion events themselves are rare: a few per thousand
# listeners a day). Paid listeners are not at risk: their label weighs 0.
SUBSCRIPTION_WINDOW_S = 7 * 86400
MAX_TAGS = 8              # candidate track tags, padded with PAD_TOKEN
PAD_TOKEN = b""           # padding value for string sequences (masked by length)

# ----------------------------------------------------------------- categorical values
SEGMENTS: Tuple[str, ...] = ("new", "free", "free_veteran", "trial", "paid")
ACTIVITIES: Tuple[str, ...] = ("unknown", "commute", "workout", "focus", "explore")
SURFACES: Tuple[str, ...] = (
    "unknown", "home", "search", "discover", "radio", "library", "playlist", "promo")
SOURCES: Tuple[str, ...] = ("sim", "kkbox", "30music", "hetrec", "jamendo", "own")
# How much of a play was heard, as the Music Streaming Sessions Dataset logs it
# (skip_1, skip_2, skip_3, not_skipped): stopped in the first seconds, stopped early,
# most of the track played, played to the end.
SKIP_PROFILES: Tuple[str, ...] = ("very_brief", "brief", "most", "full")

# ------------------------------------------------------------ vocabularies (TFT side)
# top_k of each TFT vocabulary and its OOV buckets. Transformed ids: 0 = padding or
# missing, 1..top_k = vocabulary entries, top_k+1..top_k+oov = OOV buckets. Embedding
# tables have vocab_size(name) = 1 + top_k + oov rows, so the model never depends on the
# data's vocabulary.
VOCABS: Dict[str, Tuple[int, int]] = {
    "user": (50_000, 50),
    "track": (60_000, 100),
    "artist": (20_000, 50),
    "tag": (2_000, 10),
}


def vocab_size(vocab: str) -> int:
  """Rows of the embedding table for a vocabulary (padding + top_k + OOV buckets)."""
  if vocab not in VOCABS:
    raise ValueError(f"unknown vocabulary {vocab!r}; known: {sorted(VOCABS)}")
  top_k, oov = VOCABS[vocab]
  return 1 + top_k + oov


# Bucket boundaries (seconds) for time gaps and durations: log-spaced, shared by the
# preprocessing_fn and the simulator so both sides agree.
GAP_BOUNDARIES_S: Tuple[float, ...] = (
    30, 120, 600, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400)
DURATION_BOUNDARIES_S: Tuple[float, ...] = (60, 120, 180, 240, 300, 420, 600)
NUM_GAP_BUCKETS = len(GAP_BOUNDARIES_S) + 1
NUM_DURATION_BUCKETS = len(DURATION_BOUNDARIES_S) + 1
NUM_HOURS = 24


# ------------------------------------------------------------------ raw example spec
@dataclasses.dataclass(frozen=True)
class Feature:
  """One raw feature of a training example.

  Attributes:
    name: key in the ``tf.train.Example``.
    dtype: "string", "int64" or "float32".
    length: 1 for scalars, else the fixed (padded) sequence length.
    vocab: the TFT vocabulary the values go through, if any.
    default: the value of padding positions and of a missing scalar.
  """
  name: str
  dtype: str
  length: int = 1
  vocab: str = ""
  default: object = None


def _f(name, dtype, length=1, vocab="", default=None):
  if default is None:
    default = {"string": PAD_TOKEN, "int64": 0, "float32": 0.0}[dtype]
  return Feature(name, dtype, length, vocab, default)


USER_FEATURES = (
    _f("user_id", "string", vocab="user"),
    _f("user_segment", "string"),
    _f("user_tenure_days", "float32"),
)
CONTEXT_FEATURES = (
    _f("context_activity", "string"),
    _f("context_surface", "string"),
    _f("context_hour", "int64"),
    _f("context_weekday", "int64"),
)
HISTORY_FEATURES = (
    _f("hist_track_ids", "string", HISTORY_LEN, vocab="track"),
    _f("hist_artist_ids", "string", HISTORY_LEN, vocab="artist"),
    _f("hist_completion", "float32", HISTORY_LEN),
    _f("hist_skip", "float32", HISTORY_LEN),
    _f("hist_gap_s", "float32", HISTORY_LEN),   # seconds between that play and the impression
    _f("hist_len", "int64"),
)
SESSION_FEATURES = (
    _f("sess_track_ids", "string", SESSION_LEN, vocab="track"),
    _f("sess_artist_ids", "string", SESSION_LEN, vocab="artist"),
    _f("sess_completion", "float32", SESSION_LEN),
    _f("sess_skip", "float32", SESSION_LEN),
    _f("sess_gap_s", "float32", SESSION_LEN),
    _f("sess_len", "int64"),
)
CANDIDATE_FEATURES = (
    _f("cand_track_id", "string", vocab="track"),
    _f("cand_artist_id", "string", vocab="artist"),
    _f("cand_tags", "string", MAX_TAGS, vocab="tag"),
    _f("cand_num_tags", "int64"),
    _f("cand_duration_s", "float32"),
    _f("cand_popularity", "float32"),  # log1p of plays/listens in the source, 0 unknown
    _f("cand_is_promo", "int64"),
)
META_FEATURES = (
    _f("source", "string"),
    _f("impression_ts", "int64"),  # epoch seconds; ImportExampleGen spans are by date
)

# ------------------------------------------------------------------------- labels
# Label kinds: what a label's values are, which decides its link and loss
# (ranking.tasks) and its metrics (ranking.tasks, pipeline.eval_config).
BINARY = "binary"         # 0/1: a binary classification
BOUNDED = "bounded"       # a fraction in 0..1: a bounded regression
NONNEG = "nonneg"         # a value >= 0: a regression
# Task heads' label keys and their kinds. Each label key K has a weight feature
# K + "_weight".
LABEL_KINDS: Dict[str, str] = {
    "interest_completion": BOUNDED,  # fraction of the track played
    "interest_skip": BINARY,
    "interest_like": BINARY,   # explicit like, or a repeat-listen proxy; see docs/data.md
    "subscription": BINARY,    # converted to paid within SUBSCRIPTION_WINDOW_S
    "exposure": NONNEG,        # promo exposure value delivered by this impression
}
LABEL_KEYS: Tuple[str, ...] = tuple(LABEL_KINDS)
BINARY_LABELS: Tuple[str, ...] = tuple(k for k, kind in LABEL_KINDS.items() if kind == BINARY)
TASKS: Dict[str, Tuple[str, ...]] = {
    "interest": ("interest_completion", "interest_skip", "interest_like"),
    "subscription": ("subscription",),
    "exposure": ("exposure",),
}


def weight_key(label: str) -> str:
  """Name of the per-example weight feature of a label."""
  if label not in LABEL_KEYS:
    raise ValueError(f"unknown label {label!r}; known: {LABEL_KEYS}")
  return label + "_weight"


# Class labels: an int64 class id (index into the label's class names) per example, or
# UNKNOWN_CLASS where the source does not have the label; the unknown value is the mask,
# so a class label has no weight feature. They are not in LABEL_KEYS: no task tower
# predicts them unless the model config asks for the head (ModelConfig.skip_profile_head).
UNKNOWN_CLASS = -1
SKIP_PROFILE = "skip_profile"   # the play's skip profile, a class of SKIP_PROFILES
CLASS_LABELS: Dict[str, Tuple[str, ...]] = {SKIP_PROFILE: SKIP_PROFILES}

# The probability with which the candidate was drawn as a sampled negative (and, for
# the play it stands beside, the probability of drawing the played track), on examples
# built from a play-only log (``features.sampled_negatives``); 0 on every other example.
# Training-only, like the labels: the loss subtracts log q from the next-play logit.
SAMPLE_Q = "sample_q"

LABEL_FEATURES = tuple(_f(k, "float32") for k in LABEL_KEYS) + tuple(
    _f(weight_key(k), "float32") for k in LABEL_KEYS) + tuple(
        _f(k, "int64", default=UNKNOWN_CLASS) for k in CLASS_LABELS) + (
            _f(SAMPLE_Q, "float32"),)

RAW_FEATURES: Tuple[Feature, ...] = (
    USER_FEATURES + CONTEXT_FEATURES + HISTORY_FEATURES + SESSION_FEATURES
    + CANDIDATE_FEATURES + META_FEATURES + LABEL_FEATURES)
RAW_BY_NAME: Dict[str, Feature] = {f.name: f for f in RAW_FEATURES}
if len(RAW_BY_NAME) != len(RAW_FEATURES):
  raise AssertionError("duplicate feature names in RAW_FEATURES")


def raw_feature_spec() -> Dict[str, object]:
  """``tf.io.parse_example`` spec of the raw examples (all fixed length)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  dtypes = {"string": tf.string, "int64": tf.int64, "float32": tf.float32}
  return {
      f.name: tf.io.FixedLenFeature([f.length] if f.length > 1 else [], dtypes[f.dtype],
                                    default_value=None if f.length > 1 else f.default)
      for f in RAW_FEATURES
  }


# ----------------------------------------------------------- transformed features
XF_SUFFIX = "_xf"


def xf(name: str) -> str:
  """Name of the transformed feature derived from raw feature ``name``."""
  return name + XF_SUFFIX


# Transformed feature name -> (dtype, length, categorical cardinality or 0 for dense).
# features.preprocessing produces exactly these; ranking consumes exactly these.
TRANSFORMED_FEATURES: Dict[str, Tuple[str, int, int]] = {
    xf("user_id"): ("int64", 1, vocab_size("user")),
    xf("user_segment"): ("int64", 1, len(SEGMENTS)),
    xf("user_tenure_days"): ("float32", 1, 0),          # z-score of log1p(days)
    xf("context_activity"): ("int64", 1, len(ACTIVITIES)),
    xf("context_surface"): ("int64", 1, len(SURFACES)),
    xf("context_hour"): ("int64", 1, NUM_HOURS),
    xf("context_weekday"): ("int64", 1, 7),
    xf("hist_track_ids"): ("int64", HISTORY_LEN, vocab_size("track")),
    xf("hist_artist_ids"): ("int64", HISTORY_LEN, vocab_size("artist")),
    xf("hist_completion"): ("float32", HISTORY_LEN, 0),
    xf("hist_skip"): ("float32", HISTORY_LEN, 0),
    xf("hist_gap_s"): ("int64", HISTORY_LEN, NUM_GAP_BUCKETS),   # bucket ids
    xf("hist_len"): ("int64", 1, 0),
    xf("sess_track_ids"): ("int64", SESSION_LEN, vocab_size("track")),
    xf("sess_artist_ids"): ("int64", SESSION_LEN, vocab_size("artist")),
    xf("sess_completion"): ("float32", SESSION_LEN, 0),
    xf("sess_skip"): ("float32", SESSION_LEN, 0),
    xf("sess_gap_s"): ("int64", SESSION_LEN, NUM_GAP_BUCKETS),
    xf("sess_len"): ("int64", 1, 0),
    xf("cand_track_id"): ("int64", 1, vocab_size("track")),
    xf("cand_artist_id"): ("int64", 1, vocab_size("artist")),
    xf("cand_tags"): ("int64", MAX_TAGS, vocab_size("tag")),
    xf("cand_num_tags"): ("int64", 1, 0),
    xf("cand_duration_s"): ("int64", 1, NUM_DURATION_BUCKETS),
    xf("cand_popularity"): ("float32", 1, 0),            # z-score
    xf("cand_is_promo"): ("int64", 1, 2),
}
# Labels and weights pass through Transform unchanged (same names, scalars): float32,
# except the class labels, which stay int64 class ids.
PASSTHROUGH_KEYS: Tuple[str, ...] = tuple(f.name for f in LABEL_FEATURES)
