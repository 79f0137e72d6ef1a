"""What the host's processors can do, and the training precision that follows from it.

bfloat16 matmuls only pay off where the hardware computes them natively: x86 CPUs with
AVX512-BF16 or AMX-BF16, or a GPU of compute capability 8.0 or newer. Elsewhere (e.g.
AVX2/FMA-only CPUs) TensorFlow emulates them and a bfloat16 training step is slower than
a float32 one, so ``ModelConfig.train_precision="auto"`` resolves here to
"mixed_bfloat16" only on such hardware and to "float32" everywhere else. The CPU is read
from ``/proc/cpuinfo`` (Linux); where that file is missing no BF16 flag is assumed.
"""

import dataclasses
import functools
import os
from typing import Dict, FrozenSet, Optional, Tuple

CPUINFO = "/proc/cpuinfo"
# Instruction-set flags that decide (or explain) training speed; the bench records them.
REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# Ampere (8.0) and newer GPUs have bfloat16 tensor cores.
BF16_GPU_COMPUTE_CAPABILITY = (8, 0)
AUTO = "auto"


@dataclasses.dataclass(frozen=True)
class CpuInfo:
  """The processor of this host as ``/proc/cpuinfo`` describes it.

  Attributes:
    model_name: the "model name" line of the first processor ("" when unknown).
    cores: logical processors listed (``os.cpu_count()`` when the text lists none).
    flags: the instruction-set flags of the first processor.
  """
  model_name: str
  cores: int
  flags: FrozenSet[str]

  @property
  def has_bf16(self) -> bool:
    """True when the CPU computes bfloat16 dot products natively."""
    return any(f in self.flags for f in BF16_CPU_FLAGS)

  def reported_flags(self) -> Dict[str, bool]:
    """Presence of each of :data:`REPORTED_FLAGS`, by name."""
    return {f: f in self.flags for f in REPORTED_FLAGS}


def parse_cpuinfo(text: str) -> CpuInfo:
  """Parses the text of ``/proc/cpuinfo``.

  Args:
    text: the file's content (one ``key : value`` block per logical processor).

  Returns:
    The model name and flags of the first processor and the number of processors.
  """
  model_name, flags, cores = "", None, 0
  for line in text.splitlines():
    key, sep, value = line.partition(":")
    if not sep:
      continue
    key, value = key.strip(), value.strip()
    if key == "processor":
      cores += 1
    elif key == "model name" and not model_name:
      model_name = value
    elif key == "flags" and flags is None:
      flags = frozenset(value.split())
  return CpuInfo(model_name, cores or (os.cpu_count() or 1), flags or frozenset())


@functools.lru_cache(maxsize=1)
def host_cpu() -> CpuInfo:
  """This host's :class:`CpuInfo` (read once per process)."""
  try:
    with open(CPUINFO) as f:
      return parse_cpuinfo(f.read())
  except OSError:
    return CpuInfo("", os.cpu_count() or 1, frozenset())


def _gpu_compute_capabilities() -> Tuple[Tuple[int, int], ...]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  caps = []
  for gpu in tf.config.list_physical_devices("GPU"):
    cap = tf.config.experimental.get_device_details(gpu).get("compute_capability")
    if cap:
      caps.append(tuple(cap))
  return tuple(caps)


@functools.lru_cache(maxsize=1)
def _host_prefers_bf16() -> bool:
  gpus = _gpu_compute_capabilities()
  if gpus:   # TensorFlow places the model on the first GPU
    return gpus[0] >= BF16_GPU_COMPUTE_CAPABILITY
  return host_cpu().has_bf16


def resolve_train_precision(train_precision: str, cpu: Optional[CpuInfo] = None) -> str:
  """The precision a training step runs in.

  Args:
    train_precision: "auto", "float32" or "mixed_bfloat16"; only "auto" is resolved.
    cpu: the processor to decide for (a CPU-only host); this host's devices when omitted.

  Returns:
    "mixed_bfloat16" for "auto" on hardware with native bfloat16, otherwise "float32";
    an explicit precision unchanged.
  """
  if train_precision != AUTO:
    return train_precision
  prefers_bf16 = cpu.has_bf16 if cpu is not None else _host_prefers_bf16()
  return "mixed_bfloat16" if prefers_bf16 else "float32"
