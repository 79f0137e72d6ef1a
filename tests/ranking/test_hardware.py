"""Tests of ranking.hardware: cpuinfo parsing and the "auto" training precision."""

import pytest

from ranking import hardware
from ranking.layers import sequence_encoder

# Two logical processors of an AVX2/FMA-only CPU, trimmed to the lines that matter.
AVX2_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx fma avx2 bmi2

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx fma avx2 bmi2
"""

BF16_CPUINFO = """processor\t: 0
model name\t: INTEL(R) XEON(R) PLATINUM 8581C
flags\t\t: avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile
"""


def test_parse_cpuinfo_reads_model_cores_and_flags():
  cpu = hardware.parse_cpuinfo(AVX2_CPUINFO)
  assert cpu.model_name == "AMD EPYC 7B13"
  assert cpu.cores == 2
  assert cpu.reported_flags() == {"avx2": True, "fma": True, "avx512f": False,
                                  "avx512_bf16": False, "amx_bf16": False}
  assert not cpu.has_bf16
  bf16 = hardware.parse_cpuinfo(BF16_CPUINFO)
  assert bf16.has_bf16 and bf16.cores == 1
  assert bf16.reported_flags()["avx512f"]


def test_parse_cpuinfo_of_empty_text_assumes_no_bf16():
  cpu = hardware.parse_cpuinfo("")
  assert cpu.model_name == "" and cpu.flags == frozenset() and cpu.cores >= 1
  assert not cpu.has_bf16


@pytest.mark.parametrize("flags,expected", [
    ("avx2 fma", "float32"),
    ("avx2 fma avx512f", "float32"),
    ("avx2 fma avx512f avx512_bf16", "mixed_bfloat16"),
    ("avx2 fma amx_bf16", "mixed_bfloat16"),
])
def test_auto_precision_follows_the_cpu_flags(flags, expected):
  cpu = hardware.parse_cpuinfo(f"processor : 0\nflags : {flags}\n")
  assert hardware.resolve_train_precision("auto", cpu) == expected


def test_explicit_precision_wins_over_the_hardware():
  bf16 = hardware.parse_cpuinfo(BF16_CPUINFO)
  avx2 = hardware.parse_cpuinfo(AVX2_CPUINFO)
  assert hardware.resolve_train_precision("float32", bf16) == "float32"
  assert hardware.resolve_train_precision("mixed_bfloat16", avx2) == "mixed_bfloat16"


def test_host_cpu_reads_this_machine():
  cpu = hardware.host_cpu()
  assert cpu.cores >= 1
  assert hardware.resolve_train_precision("auto") in ("float32", "mixed_bfloat16")


@pytest.mark.parametrize("prefers_bf16", [False, True])
def test_transformer_block_resolves_auto_and_keeps_it_in_its_config(monkeypatch,
                                                                    prefers_bf16):
  monkeypatch.setattr(hardware, "_host_prefers_bf16", lambda: prefers_bf16)
  block = sequence_encoder.TransformerBlock(dim=8, num_heads=2, ff_dim=16,
                                            train_precision="auto")
  assert block.trains_in_bfloat16 is prefers_bf16
  assert block.get_config()["train_precision"] == "auto"
  fixed = sequence_encoder.TransformerBlock(dim=8, num_heads=2, ff_dim=16,
                                            train_precision="float32")
  assert not fixed.trains_in_bfloat16
