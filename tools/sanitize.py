"""Build the C extension with AddressSanitizer and UndefinedBehaviorSanitizer; run tests on it.

    python tools/sanitize.py build [--out DIR]
    python tools/sanitize.py run [--out DIR] [-- pytest arguments...]
    python tools/sanitize.py exec [--out DIR] -- COMMAND [ARGUMENTS...]

(DIR: build/sanitize by default.)

``build`` compiles every C source of the extension (the list in pyproject.toml)
with ``-fsanitize=address,undefined`` into ``OUT/pkg/unixipc/_native<suffix>``,
beside links to every other entry of ``src/unixipc``: a sanitized copy of the
package that the normal build (``.venv``, ``src/unixipc/_native*.so``) never
sees. It rebuilds only when a C source is newer than the library.

``run`` runs pytest on that copy (first on ``PYTHONPATH``), in a fresh report
directory ``OUT/reports``, with:

- the ASan runtime preloaded (``LD_PRELOAD``: it must come first in a process that
  was not linked with it, as Python is not), in every child process too;
- ``PYTHONMALLOC=malloc``, so that ASan sees every Python object's memory;
- ``ASAN_OPTIONS``/``UBSAN_OPTIONS`` with ``log_path=OUT/reports/asan`` (``ubsan``):
  each process writes its reports to a file of its own, ``asan.<pid>``, instead
  of to a stderr that a test captures (or that a dead child takes with it);
- ``UNIXIPC_SANITIZER_REPORTS=OUT/reports``, which tests/conftest.py reads: a test
  during which a report appears fails with the report, and so does the session.

Its exit status is pytest's, or 1 if a report was written even though every test
passed. Reports are printed at the end.

``exec`` does the same for any command (a stress script, a fuzzer): for example
``python tools/sanitize.py exec -- python benchmarks/ring_stress.py --seconds 60``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: read the sources from the directory instead
    tomllib = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "unixipc"
FLAGS = [
    "-fsanitize=address,undefined",
    "-fno-omit-frame-pointer",
    "-O1",
    "-g",
    "-fPIC",
    "-shared",
    "-std=gnu11",
    "-Wall",
    "-Wextra",
    "-Werror",
]
ASAN_OPTIONS = [
    "detect_leaks=0",  # CPython keeps much of its memory until exit, by design
    "allocator_may_return_null=1",  # huge requests: MemoryError, as without ASan
    "handle_segv=1",
    "detect_stack_use_after_return=0",
]


def extension() -> dict[str, list[str]]:
    """The extension's sources, headers and libraries, as pyproject.toml lists them."""
    if tomllib is None:
        native = ROOT / "src" / "native"
        return {
            "sources": [str(path.relative_to(ROOT)) for path in sorted(native.glob("*.c"))],
            "depends": [str(path.relative_to(ROOT)) for path in sorted(native.glob("*.h"))],
            "libraries": ["rt", "pthread"],
        }
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (module,) = config["tool"]["setuptools"]["ext-modules"]
    return dict(module)


def build(out: Path) -> Path:
    """Compile the sanitized extension (if a source changed) and link the package around it."""
    spec = extension()
    sources = [ROOT / source for source in spec["sources"]]
    headers = [ROOT / header for header in spec.get("depends", [])]
    package = out / "pkg" / "unixipc"
    package.mkdir(parents=True, exist_ok=True)
    library = package / f"_native{sysconfig.get_config_var('EXT_SUFFIX')}"
    newest = max(path.stat().st_mtime for path in sources + headers)
    if not library.exists() or library.stat().st_mtime < newest:
        gcc = shutil.which("gcc") or shutil.which("cc")
        if gcc is None:
            raise SystemExit("sanitize: gcc (or cc) is needed")
        command = [
            gcc,
            *FLAGS,
            f"-I{sysconfig.get_paths()['include']}",
            "-o",
            str(library),
            *map(str, sources),
            *(f"-l{name}" for name in spec.get("libraries", [])),
        ]
        print("sanitize: building", library, flush=True)
        subprocess.run(command, check=True)
    # Everything else of the package: links, refreshed each time (files come and go).
    for entry in package.iterdir():
        if entry.is_symlink():
            entry.unlink()
    for entry in PACKAGE.iterdir():
        if entry.name.startswith("_native") and entry.suffix == ".so":
            continue
        if entry.name == "__pycache__":
            continue
        (package / entry.name).symlink_to(entry)
    return package.parent


def runtime(name: str) -> str:
    """The path of a sanitizer runtime library (libasan.so), from the compiler."""
    gcc = shutil.which("gcc") or shutil.which("cc") or "gcc"
    found = subprocess.run(
        [gcc, f"-print-file-name={name}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not os.path.isabs(found):
        raise SystemExit(f"sanitize: the compiler has no {name}")
    return found


def environment(path: Path, reports: Path) -> dict[str, str]:
    """The environment of a sanitized run: see the module's docstring."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(path), *filter(None, [env.get("PYTHONPATH")])])
    env["LD_PRELOAD"] = runtime("libasan.so")
    env["PYTHONMALLOC"] = "malloc"
    env["ASAN_OPTIONS"] = ":".join([*ASAN_OPTIONS, f"log_path={reports}/asan"])
    env["UBSAN_OPTIONS"] = f"print_stacktrace=1:log_path={reports}/ubsan"
    env["UNIXIPC_SANITIZER_REPORTS"] = str(reports)
    return env


def run(out: Path, command: list[str]) -> int:
    """Run `command` on the sanitized build; its status, or 1 if it left reports."""
    path = build(out)
    reports = out / "reports"
    shutil.rmtree(reports, ignore_errors=True)
    reports.mkdir(parents=True)
    env = environment(path, reports)
    check = "import unixipc._native as n; print(n.__file__)"
    loaded = subprocess.run(
        [sys.executable, "-c", check], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    if not loaded.startswith(str(path)):
        raise SystemExit(f"sanitize: the sanitized build was not the one loaded ({loaded})")
    status = subprocess.run(command, env=env).returncode
    found = sorted(reports.iterdir())
    for report in found:
        print(f"==== {report.name}\n{report.read_text(errors='replace')}", file=sys.stderr)
    if found:
        print(f"sanitize: {len(found)} report(s) in {reports}", file=sys.stderr)
        return status or 1
    return status


def main() -> int:
    argv = sys.argv[1:]  # before "--": ours; after it: pytest's, or the command to run
    pytest_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("build", "run", "exec"))
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "sanitize")
    args = parser.parse_args(argv)
    if args.command == "build":
        print(build(args.out))
        return 0
    if args.command == "exec":
        if not pytest_args:
            parser.error("exec needs a command after --")
        return run(args.out, pytest_args)
    return run(args.out, [sys.executable, "-m", "pytest", *pytest_args])


if __name__ == "__main__":
    sys.exit(main())
