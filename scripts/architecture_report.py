"""Prints the shape of the tree: the largest modules and classes, import cycles between
modules, and imports against the layer order.

It reads the sources as text (``ast``), imports nothing from Melody and changes nothing.
The layer order is the one ``.importlinter`` enforces; this report is for people
reviewing a change (``make arch-report``), the linter is what fails ``make test``.

Usage: ``python scripts/architecture_report.py [--top N] [--json]``
"""

import argparse
import ast
import configparser
import json
import os
import sys
from typing import Dict, List, Set, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _layers() -> Tuple[str, ...]:
  """The layer order of ``.importlinter``'s layers contract, bottom layer first."""
  config = configparser.ConfigParser()
  config.read(os.path.join(ROOT, ".importlinter"))
  listed = config["importlinter:contract:layers"]["layers"].split()
  return tuple(name.strip("()") for name in reversed(listed))


LAYERS = _layers()


def _modules() -> Dict[str, str]:
  """Dotted module name -> path, for every ``.py`` under the layered packages."""
  found = {}
  for package in LAYERS:
    for dirpath, _, files in os.walk(os.path.join(ROOT, package)):
      for name in files:
        if not name.endswith(".py"):
          continue
        path = os.path.join(dirpath, name)
        rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        found[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
  return found


def _imports(module: str, path: str, known: Set[str]) -> Set[str]:
  """Melody modules that ``module`` imports (top level or inside functions)."""
  tree = ast.parse(open(path, encoding="utf-8").read(), path)
  package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
  out = set()
  for node in ast.walk(tree):
    names = []
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")
        parts = parts[:len(parts) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
      names = [base] + [f"{base}.{a.name}" for a in node.names]
    for name in names:
      while name and name not in known:
        name = name.rpartition(".")[0]
      if name and name != module:
        out.add(name)
  return out


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
  """Strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on, result = {}, {}, [], set(), []
  counter = [0]

  def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in graph.get(v, ()):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        result.append(sorted(component))

  sys.setrecursionlimit(10000)
  for v in sorted(graph):
    if v not in index:
      visit(v)
  return result


def _classes(path: str) -> List[Tuple[str, int]]:
  tree = ast.parse(open(path, encoding="utf-8").read(), path)
  return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
          if isinstance(node, ast.ClassDef)]


def report(top: int) -> Dict[str, object]:
  modules = _modules()
  known = set(modules)
  graph = {m: _imports(m, p, known) for m, p in modules.items()}
  # Package-level cycles: an import from a package's module into itself does not count.
  back = []
  for m, targets in graph.items():
    layer = LAYERS.index(m.split(".")[0])
    for t in targets:
      if LAYERS.index(t.split(".")[0]) > layer:
        back.append(f"{m} -> {t}")
  lines = {m: sum(1 for _ in open(p, encoding="utf-8")) for m, p in modules.items()}
  classes = [(f"{m}.{name}", n) for m, p in modules.items() for name, n in _classes(p)]
  return {
      "modules": len(modules),
      "largest_modules": sorted(lines.items(), key=lambda kv: -kv[1])[:top],
      "modules_over_450": sum(1 for n in lines.values() if n > 450),
      "largest_classes": sorted(classes, key=lambda kv: -kv[1])[:top],
      "classes_over_300": sum(1 for _, n in classes if n > 300),
      "module_cycles": _cycles(graph),
      "back_arrows": sorted(back),
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--top", type=int, default=10, help="rows in the largest-N lists")
  parser.add_argument("--json", action="store_true", help="print JSON instead of text")
  args = parser.parse_args(argv)
  result = report(args.top)
  if args.json:
    print(json.dumps(result, indent=2))
    return 0
  print(f"{result['modules']} modules; {result['modules_over_450']} over 450 lines; "
        f"{result['classes_over_300']} classes over 300 lines")
  print("largest modules:")
  for name, n in result["largest_modules"]:
    print(f"  {n:5d}  {name}")
  print("largest classes:")
  for name, n in result["largest_classes"]:
    print(f"  {n:5d}  {name}")
  print(f"import cycles between modules: {len(result['module_cycles'])}")
  for cycle in result["module_cycles"]:
    print("  " + " <-> ".join(cycle))
  print(f"imports against the layer order ({' < '.join(LAYERS)}): "
        f"{len(result['back_arrows'])}")
  for arrow in result["back_arrows"]:
    print("  " + arrow)
  return 0


if __name__ == "__main__":
  sys.exit(main())
