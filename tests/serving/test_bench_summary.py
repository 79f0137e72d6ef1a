"""The serving benchmark judges gRPC p99 against its budget (1.3 x in-process + 1 ms)."""

from bench import serving_report


def _row(transport, n, c, p99):
  return {"transport": transport, "candidates": n, "concurrency": c, "p99_ms": p99}


def test_budget_is_1_3_times_in_process_plus_1_ms():
  rows = [_row("in_process", 500, 1, 10.0), _row("grpc", 500, 1, 13.9),
          _row("in_process", 100, 1, 10.0), _row("grpc", 100, 1, 14.1),
          _row("in_process", 500, 4, 20.0), _row("grpc", 500, 4, 20.0)]
  s = serving_report.summarize(rows)
  by = {(r["candidates"], r["concurrency"]): r for r in s["ratios"]}
  assert by[(500, 1)]["budget_ms"] == 14.0 and by[(500, 1)]["met"]
  assert not by[(100, 1)]["met"]
  assert not s["meets_ratio_target_c1"] and not s["meets_ratio_target_all"]
  assert s["grpc_p99_ms_500_c1"] == 13.9 and s["meets_p99_target_500_c1"]
  s = serving_report.summarize(rows[:2] + rows[4:])
  assert s["meets_ratio_target_c1"] and s["meets_ratio_target_all"]
