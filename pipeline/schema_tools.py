"""Curates the TFDV schema that the pipeline imports after its first run.

SchemaGen infers a schema from the first data it sees, so its string domains list only
the values that happened to occur (e.g. no "unknown" activity in simulated data). The
curated schema takes the inferred one and makes the contract explicit from
``features.feature_spec``: every categorical domain lists all allowed values, labels,
weights and class labels get value ranges, every feature is required, and the features
watched for drift between spans and for skew against serving requests carry their
thresholds (``drift_comparator``, ``skew_comparator``). ``melody
pipeline schema`` writes it to ``pipeline/schema/schema.pbtxt``, which is checked in.
"""

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from features import feature_spec
# The empty segment is a listener whose segment the source does not record (30Music,
# KKBox members without a members.csv row); it is allowed, not an anomaly.
UNRECORDED_SEGMENT = ""
CATEGORICAL_DOMAINS = {
    "user_segment": feature_spec.SEGMENTS + (UNRECORDED_SEGMENT,),
    "context_activity": feature_spec.ACTIVITIES,
    "context_surface": feature_spec.SURFACES,
    "source": feature_spec.SOURCES,
}
# Drift between consecutive spans (``pipeline.drift_gate``): the largest L-infinity
# distance of a categorical feature's value shares, and the largest Jensen-Shannon
# divergence of a numeric feature's histogram, a new span may show against the one
# before it. Day-to-day changes of the simulated world (weekday vs weekend activity mix)
# stay well below these; a broken logger or a changed surface mapping does not.
LINF_DRIFT = {"user_segment": 0.25, "context_activity": 0.3, "context_surface": 0.3}
JS_DRIFT = {"cand_duration_s": 0.15, "cand_popularity": 0.15}
# Skew between logged serving requests and the training span (``pipeline.skew_gate``),
# on the same features and measures: requests come from the same listeners on the same
# surfaces, so their mix matches training's up to the spread of a day, and a serving
# path that fills a feature differently (a default segment, a stale catalogue) does not.
LINF_SKEW = {"user_segment": 0.25, "context_activity": 0.3, "context_surface": 0.3}
JS_SKEW = {"cand_duration_s": 0.15, "cand_popularity": 0.15}
UNIT_INTERVAL = ("interest_completion", "interest_skip", "interest_like", "subscription",
                 feature_spec.SAMPLE_Q)


def curate(inferred: schema_pb2.Schema) -> schema_pb2.Schema:
  """Returns a copy of ``inferred`` with domains and ranges from the feature spec."""
  schema = schema_pb2.Schema()
  schema.CopyFrom(inferred)
  names = {f.name for f in schema.feature}
  missing = sorted(set(feature_spec.RAW_BY_NAME) - names)
  if missing:
    raise ValueError(f"inferred schema lacks features {missing}")
  del schema.string_domain[:]
  for name, values in CATEGORICAL_DOMAINS.items():
    schema.string_domain.add(name=name, value=sorted(values))
  for feature in schema.feature:
    feature.presence.min_fraction = 1.0
    if feature_spec.RAW_BY_NAME[feature.name].length == 1:
      # A scalar: no dims, so it parses as FixedLenFeature([]) exactly like
      # feature_spec.raw_feature_spec() (SchemaGen infers [1]).
      feature.shape.ClearField("dim")
    if feature.name in CATEGORICAL_DOMAINS:
      feature.domain = feature.name
    elif feature.HasField("domain"):
      feature.ClearField("domain")
    label = feature.name[:-len("_weight")] if feature.name.endswith("_weight") else feature.name
    if feature.name in UNIT_INTERVAL or (label in feature_spec.LABEL_KEYS and
                                         label != feature.name):
      feature.float_domain.min = 0.0
      feature.float_domain.max = 1.0
    elif feature.name == "exposure":
      feature.float_domain.min = 0.0
    elif feature.name in feature_spec.CLASS_LABELS:
      feature.int_domain.min = feature_spec.UNKNOWN_CLASS
      feature.int_domain.max = len(feature_spec.CLASS_LABELS[feature.name]) - 1
    if feature.name in LINF_DRIFT:
      feature.drift_comparator.infinity_norm.threshold = LINF_DRIFT[feature.name]
    elif feature.name in JS_DRIFT:
      feature.drift_comparator.jensen_shannon_divergence.threshold = JS_DRIFT[feature.name]
    if feature.name in LINF_SKEW:
      feature.skew_comparator.infinity_norm.threshold = LINF_SKEW[feature.name]
    elif feature.name in JS_SKEW:
      feature.skew_comparator.jensen_shannon_divergence.threshold = JS_SKEW[feature.name]
  return schema


def read(path: str) -> schema_pb2.Schema:
  with open(path) as f:
    return text_format.Parse(f.read(), schema_pb2.Schema())


def write(schema: schema_pb2.Schema, path: str) -> None:
  with open(path, "w") as f:
    f.write(text_format.MessageToString(schema))
