"""Languages of the SandboxFusion contract and the toolchains found on this machine.

A language is *available* when every program it needs is on the sandbox's PATH and, when runs drop to an
unprivileged uid, reachable by that uid (a toolchain under a ``0700`` home directory is found but not usable; the
answer then says so). Anything else gets the contract's ``Failed`` result with a clear message, never a 500.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import sysconfig
from collections.abc import Mapping

import attrs

__all__ = ["LANGUAGES", "Environment", "LanguageSpec", "Resolved", "Unavailable", "resolve"]

# The contract's Language enum (29 values), in its order.
LANGUAGES: tuple[str, ...] = (
    "python", "cpp", "nodejs", "go", "go_test", "java", "php", "csharp", "bash", "typescript", "sql", "rust",
    "cuda", "lua", "R", "perl", "D_ut", "ruby", "scala", "julia", "pytest", "junit", "kotlin_script", "jest",
    "verilog", "python_gpu", "lean", "swift", "racket",
)  # fmt: skip


@attrs.frozen(kw_only=True)
class LanguageSpec:
    """How to build and run one language. ``{src}`` is the source file, ``{out}`` the build output."""

    filename: str
    run: tuple[str, ...]
    compile: tuple[str, ...] = ()
    unsupported: str = ""


_PY = "{python}"

_SPECS: dict[str, LanguageSpec] = {
    "python": LanguageSpec(filename="main_{id}.py", run=(_PY, "{src}")),
    "pytest": LanguageSpec(filename="test_{id}.py", run=(_PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "{src}")),
    "bash": LanguageSpec(filename="main_{id}.sh", run=("bash", "{src}")),
    "nodejs": LanguageSpec(filename="main_{id}.js", run=("node", "{src}")),
    "typescript": LanguageSpec(filename="main_{id}.ts", run=("tsx", "{src}")),
    "cpp": LanguageSpec(
        filename="main_{id}.cpp",
        compile=("g++", "-std=c++17", "-O2", "-o", "{out}", "{src}", "-lpthread"),
        run=("{out}",),
    ),
    "cuda": LanguageSpec(filename="main_{id}.cu", compile=("nvcc", "-o", "{out}", "{src}"), run=("{out}",)),
    "go": LanguageSpec(filename="main_{id}.go", compile=("go", "build", "-o", "{out}", "{src}"), run=("{out}",)),
    "go_test": LanguageSpec(filename="main_{id}_test.go", run=("go", "test", "-v", "{src}")),
    "java": LanguageSpec(
        filename="Main.java", compile=("javac", "-encoding", "UTF-8", "{src}"), run=("java", "-cp", ".", "Main")
    ),
    "rust": LanguageSpec(filename="main_{id}.rs", compile=("rustc", "-O", "-o", "{out}", "{src}"), run=("{out}",)),
    "php": LanguageSpec(filename="main_{id}.php", run=("php", "{src}")),
    "ruby": LanguageSpec(filename="main_{id}.rb", run=("ruby", "{src}")),
    "lua": LanguageSpec(filename="main_{id}.lua", run=("lua", "{src}")),
    "R": LanguageSpec(filename="main_{id}.R", run=("Rscript", "{src}")),
    "perl": LanguageSpec(filename="main_{id}.pl", run=("perl", "{src}")),
    "julia": LanguageSpec(filename="main_{id}.jl", run=("julia", "{src}")),
    "racket": LanguageSpec(filename="main_{id}.rkt", run=("racket", "{src}")),
    "scala": LanguageSpec(filename="main_{id}.scala", run=("scala", "{src}")),
    "kotlin_script": LanguageSpec(filename="main_{id}.kts", run=("kotlinc", "-script", "{src}")),
    "csharp": LanguageSpec(
        filename="main_{id}.cs", compile=("mcs", "-out:{out}.exe", "{src}"), run=("mono", "{out}.exe")
    ),
    "swift": LanguageSpec(filename="main_{id}.swift", compile=("swiftc", "-o", "{out}", "{src}"), run=("{out}",)),
    "D_ut": LanguageSpec(filename="main_{id}.d", compile=("dmd", "-unittest", "-of={out}", "{src}"), run=("{out}",)),
    "verilog": LanguageSpec(filename="main_{id}.v", compile=("iverilog", "-o", "{out}", "{src}"), run=("vvp", "{out}")),
    "lean": LanguageSpec(filename="main_{id}.lean", run=("lean", "{src}")),
    "jest": LanguageSpec(filename="main_{id}.test.js", run=("jest", "--rootDir", ".", "{src}")),
    "junit": LanguageSpec(filename="Main.java", run=("java",), unsupported="junit test runs"),
    "python_gpu": LanguageSpec(filename="main_{id}.py", run=(_PY, "{src}"), unsupported="GPU runs"),
    "sql": LanguageSpec(filename="main_{id}.sql", run=("sqlite3",), unsupported="sql (it has no runner)"),
}


@attrs.frozen(kw_only=True)
class Resolved:
    """A language whose toolchain was found: argv templates with absolute program paths."""

    language: str
    filename: str
    run: tuple[str, ...]
    compile: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class Unavailable:
    """A language this machine cannot run, and why (for the ``Failed`` answer)."""

    language: str
    program: str
    reason: str


@attrs.frozen(kw_only=True)
class Environment:
    """Who sandboxed code runs as and which interpreter and PATH it sees."""

    drop_privileges: bool
    python: str
    path: str
    pythonpath: str
    toolchain_env: Mapping[str, str] = attrs.field(factory=dict)


def _reachable_by_others(path: str) -> bool:
    """Can a uid that is neither owner nor group member execute ``path`` (every directory searchable)?"""
    real = os.path.realpath(path)
    current = real
    while True:
        try:
            if not os.stat(current).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
        if current in ("/", ""):
            return True
        current = os.path.dirname(current)


def make_environment(*, drop_privileges: bool, server_env: Mapping[str, str]) -> Environment:
    """Choose the sandbox's interpreter and PATH for this server."""
    std = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    entries = [p for p in server_env.get("PATH", "").split(os.pathsep) if p] + std
    seen: list[str] = []
    for entry in entries:
        if entry in seen or not os.path.isdir(entry):
            continue
        if drop_privileges and not _reachable_by_others(entry):
            continue
        seen.append(entry)
    server_python = os.path.realpath(sys.executable)
    python = server_python
    pythonpath = ""
    if drop_privileges and not _reachable_by_others(server_python):
        # The server's interpreter is unreachable for the sandbox uid (e.g. under /root). Use another one of the
        # same version and lend it the server's site-packages when those are reachable.
        version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        # Every PATH entry, not just the first hit: a virtualenv's bin/ (first on PATH when it is activated) holds
        # symlinks to the very interpreter that is unreachable.
        for candidate in [shutil.which(name, path=entry) for name in (version, "python3") for entry in seen]:
            if candidate and _reachable_by_others(candidate):
                python = os.path.realpath(candidate)
                break
        if python != server_python and os.path.basename(python) == version:
            paths = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
            pythonpath = os.pathsep.join(sorted(p for p in paths if p and _reachable_by_others(p)))
    # Where toolchain managers keep their toolchains; without it rustup's proxy finds "no default toolchain"
    # because the sandbox's HOME is the run directory.
    toolchain_env: dict[str, str] = {}
    home = os.path.expanduser("~")
    for name, default in (("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo"), ("JAVA_HOME", ""), ("GOROOT", "")):
        value = server_env.get(name) or (os.path.join(home, default) if default else "")
        if value and os.path.isdir(value) and (not drop_privileges or _reachable_by_others(value)):
            toolchain_env[name] = value
    return Environment(
        toolchain_env=toolchain_env,
        drop_privileges=drop_privileges,
        python=python,
        path=os.pathsep.join(seen),
        pythonpath=pythonpath,
    )


def resolve(env: Environment) -> dict[str, Resolved | Unavailable]:
    """Resolve every contract language against this machine."""
    out: dict[str, Resolved | Unavailable] = {}
    for language in LANGUAGES:
        spec = _SPECS[language]
        if spec.unsupported:
            out[language] = Unavailable(
                language=language,
                program=spec.run[0],
                reason=f"the local sandbox does not support {spec.unsupported}",
            )
            continue
        programs: dict[str, str] = {}
        missing: Unavailable | None = None
        for template in (spec.compile[:1], spec.run[:1]):
            if not template or template[0] in ("{out}", _PY):
                continue
            name = template[0]
            found = shutil.which(name, path=env.path)
            if found is None:
                hidden = shutil.which(name)
                if hidden is not None and env.drop_privileges:
                    reason = (
                        f"{name} was found at {hidden}, but the sandbox user cannot reach it "
                        "(a parent directory is not searchable by other users)"
                    )
                else:
                    reason = f"{name}: command not found (install the {language} toolchain to run {language})"
                missing = Unavailable(language=language, program=name, reason=reason)
                break
            programs[name] = found

        if missing is not None:
            out[language] = missing
            continue

        def sub(argv: tuple[str, ...], programs: dict[str, str] = programs) -> tuple[str, ...]:
            return tuple(env.python if a == _PY else programs.get(a, a) for a in argv)

        out[language] = Resolved(
            language=language, filename=spec.filename, run=sub(spec.run), compile=sub(spec.compile)
        )
    return out
