"""Tests of the ``host`` block every benchmark result records (bench/common.py): the CPU
model, cores, instruction-set flags and TensorFlow version, and its line in the docs."""

import json

from bench import common
from ranking import hardware

AVX2_CPUINFO = """processor : 0
model name : AMD EPYC 7B13
flags : fpu avx fma avx2

processor : 1
model name : AMD EPYC 7B13
flags : fpu avx fma avx2
"""


def test_host_info_names_cpu_flags_and_tensorflow():
  host = common.host_info(hardware.parse_cpuinfo(AVX2_CPUINFO))
  assert host["cpu_model"] == "AMD EPYC 7B13"
  assert host["cores"] == 2
  assert host["flags"] == {"avx2": True, "fma": True, "avx512f": False,
                           "avx512_bf16": False, "amx_bf16": False}
  assert host["train_precision_auto"] == "float32"
  assert host["tensorflow"][0].isdigit()
  json.dumps(host)   # a results file must be able to hold it


def test_host_line_lists_present_and_missing_flags():
  host = common.host_info(hardware.parse_cpuinfo(AVX2_CPUINFO))
  line = common.host_line(host)
  assert line.startswith("CPU: AMD EPYC 7B13, 2 cores; flags avx2, fma "
                         "(no avx512f, avx512_bf16, amx_bf16); TensorFlow ")
  assert common.host_line({}) == "CPU: not recorded."


def test_write_results_adds_this_hosts_block(tmp_path, monkeypatch):
  monkeypatch.setattr(common, "RESULTS_DIR", str(tmp_path))
  path = common.write_results("toy", {"value": 1})
  written = json.loads(open(path).read())
  assert written["value"] == 1
  assert written["host"] == common.host_info()
  kept = {"cpu_model": "measured elsewhere"}
  path = common.write_results("toy", {"value": 2, "host": kept})
  assert json.loads(open(path).read())["host"] == kept
