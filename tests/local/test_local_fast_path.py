"""The Python fast path (a fork of a warm interpreter) behaves exactly like ``python main.py``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from aioagents.local import LocalSandbox

PROGRAMS = {
    "module globals": (
        '"""doc"""\nprint(__doc__, __name__, __spec__, __cached__, type(__loader__).__name__, __file__[-3:])'
    ),
    "no docstring": "print(__doc__)",
    "pickle a __main__ class": "import pickle\nclass A: pass\nprint(len(pickle.dumps(A())) > 0)",
    "traceback": "def f():\n    1/0\nf()",
    "syntax error": "x = (",
    "warning": 'import warnings\nwarnings.warn("w")',
    "inspect source": "import inspect\nprint(inspect.getsource(lambda: 0).strip())",
    "__main__ module": "import __main__\nprint(__main__.__file__ == __file__)",
    "multiprocessing": (
        "import multiprocessing as mp\ndef sq(x): return x*x\n"
        "if __name__ == '__main__':\n    with mp.Pool(2) as p: print(p.map(sq, [1, 2, 3]))"
    ),
    "exit codes": "import sys\nsys.exit(7)",
    "exit message": "raise SystemExit('bye')",
    "non-daemon thread": (
        "import threading, time\n"
        "threading.Thread(target=lambda: (time.sleep(0.2), print('thread'))).start()\nprint('main')"
    ),
    "atexit": "import atexit\natexit.register(print, 'at exit')",
    "stdin": "import sys\nprint(sys.stdin.read().upper())",
    "argv and path": "import os, sys\nprint(sys.argv, sys.path[0] == os.getcwd())",
    "unflushed output at exit": "import sys\nsys.stdout.write('no newline')",
    "keyboard interrupt handler": "import signal\nprint(signal.getsignal(signal.SIGINT) is signal.default_int_handler)",
    "broken pipe disposition": "import signal\nprint(signal.getsignal(signal.SIGPIPE))",
    # The program travels inline when small and is read from its file when not: both must be the file's bytes.
    "coding cookie": "# -*- coding: latin-1 -*-\nprint(ascii('caf\u00e9'))",
    "byte order mark": "\ufeffprint('bom')",
    "lone surrogate": "print(ascii('a\ud800b'))",
    "environment": "import os\nprint(sorted(os.environ), os.environ['HOME'] == os.getcwd() == os.environ['TMPDIR'])",
    "a large program": "x = 1\n" * 20_000 + "print(x)\n1/0",
    # Near the inline limit in characters, far over it in escaped bytes: must still run (from the file if need be).
    "many non-ASCII characters": "s = '" + "\u00e9\U0001f600" * 6_000 + "'\nprint(len(s))",
    "escaped to 48 KB but inline": "s = '" + "\U0001f600" * 4_000 + "'\nprint(len(s))",
    # The factory starts without PYTHONPATH and applies it afterwards: the module search path must still match.
    "module search path": "import os, sys\nprint([p.replace(os.getcwd(), 'RUN') for p in sys.path])",
    "environment variable PYTHONPATH": "import os\nprint(os.environ.get('PYTHONPATH'))",
}


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[bool, LocalSandbox]]:
    with (
        LocalSandbox(python_fast_path=True).in_thread() as fast,
        LocalSandbox(python_fast_path=False).in_thread() as sub,
    ):
        yield {True: fast, False: sub}


def _run(sb: LocalSandbox, code: str) -> tuple[Any, ...]:
    body = requests.post(
        f"{sb.url}/run_code", json={"code": code, "language": "python", "stdin": "in"}, timeout=60
    ).json()
    rr = body["run_result"]
    # The run directory and file name are random; everything else must match to the byte.
    stderr = re.sub(r"/\S+/run-\w+/main_\w+\.py", "MAIN", rr["stderr"])
    stdout = re.sub(r"main_\w+\.py", "MAIN", rr["stdout"])
    return body["status"], rr["return_code"], stdout, stderr


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_fast_path_matches_a_plain_python_run(servers: dict[bool, LocalSandbox], name: str) -> None:
    assert _run(servers[True], PROGRAMS[name]) == _run(servers[False], PROGRAMS[name])
