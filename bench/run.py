"""``python -m bench.run NAME|all``: runs the named benchmarks (``bench/<name>.py:main``)."""

import importlib
import sys

BENCHMARKS = ("data", "ranking", "serving", "intent", "simulation", "pipeline", "nearline")


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  names = BENCHMARKS if not argv or argv[0] == "all" else argv
  for name in names:
    if name not in BENCHMARKS:
      print(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
      return 2
  for name in names:
    print(f"== bench {name}")
    importlib.import_module(f"bench.{name}").main()
  return 0


if __name__ == "__main__":
  sys.exit(main())
