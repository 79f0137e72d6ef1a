"""`pytest_test`: one Bazel py_test per pytest module, run through tests/pytest_main.py."""

def pytest_test(name, src = None, size = "small", deps = [], data = [], args = [], **kwargs):
    src = src or (name + ".py")
    native.py_test(
        name = name,
        srcs = [src, "//tests:pytest_main.py"],
        main = "//tests:pytest_main.py",
        size = size,
        args = ["$(location %s)" % src] + args,
        # The package's own conftest.py (shared fixtures of that test package), if any.
        data = data + ["//tests:conftest.py", "//tests:fixtures"] + native.glob(["conftest.py"]),
        deps = deps,
        python_version = "PY3",
        **kwargs
    )

# Every Melody library: test modules import across packages (the e2e tests use all).
MELODY_LIBS = [
    "//:keras_guard",
    "//bench",
    "//features",
    "//melody_cli",
    "//melody_testing",
    "//online",
    "//pipeline",
    "//ranking",
    "//serving",
    "//simulation",
]

def pytest_tests(srcs, deps = MELODY_LIBS, size = "small", sizes = {}, **kwargs):
    """One pytest_test per file in srcs; `sizes` overrides the size of named files."""
    for src in srcs:
        name = src[:-3]
        pytest_test(name = name, src = src, size = sizes.get(src, size), deps = deps, **kwargs)
