"""An agent-style loop over an interpreter sandbox: execute, read the events, react, move files.

A real agent would ask an LLM for each next cell; here a tiny scripted "policy" plays that part, so the example
runs anywhere. It shows what an agent needs from the client:

1. run a cell and render its events as text for the prompt (stdout, stderr, displays, the plain traceback);
2. react to an error (the first attempt has a typo, the policy fixes it from the traceback);
3. upload a CSV, plot it in the sandbox (the figure arrives as a PNG display event) and save it there;
4. download the saved image, streamed into a local file.

Run it against the embedded sandbox (default), the fake of the original CodeGeeX4 server, or a real one::

    python examples/interpreter_agent_loop.py                      # aioagents.local.LocalSandbox
    python examples/interpreter_agent_loop.py --server fake        # aioagents.testing FakeInterpreterServer
    python examples/interpreter_agent_loop.py --server http://127.0.0.1:8080 --out /tmp/plots
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from aioagents.interpreter import ExecutionResult, Interpreter

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CSV = "month,sales\n" + "".join(f"{m},{s}\n" for m, s in [(1, 12), (2, 19), (3, 7), (4, 25), (5, 31), (6, 22)])

FIRST_TRY = """
import csv
with open('sales.csv') as f:
    rows = list(csv.DictReader(f))
total = sum(int(r['sales']) for r in row)   # a typo the "agent" will fix from the traceback
"""

FIXED = """
import csv
with open('sales.csv') as f:
    rows = list(csv.DictReader(f))
total = sum(int(r['sales']) for r in rows)
print(f'{len(rows)} months, total sales {total}')
total
"""

PLOT = """
import matplotlib.pyplot as plt   # the kernel's inline backend turns each shown figure into a PNG event
months = [int(r['month']) for r in rows]
sales = [int(r['sales']) for r in rows]
fig, ax = plt.subplots(figsize=(6, 3))
ax.bar(months, sales, color='tab:blue')
ax.set_xlabel('month'); ax.set_ylabel('sales'); ax.set_title('Sales by month')
with open('sales.png', 'wb') as f:
    fig.savefig(f, format='png')
plt.show()
"""


def policy(step: int, last: ExecutionResult | None) -> str | None:
    """The stand-in for the LLM: the next cell to run, given the last observation (None: done)."""
    if step == 0:
        return FIRST_TRY
    if step == 1:
        assert last is not None
        # An agent reads the error event, not a string match on stdout.
        if last.error is not None and last.error.ename == "NameError":
            return FIXED
        return None
    if step == 2:
        return PLOT
    return None


@contextlib.asynccontextmanager
async def sandbox_url(server: str) -> AsyncIterator[str]:
    if server == "local":
        from aioagents.local import LocalSandbox

        async with LocalSandbox() as sb:
            yield sb.url
    elif server == "fake":
        from aioagents.testing._interpreter import FakeInterpreterServer

        async with FakeInterpreterServer() as fake:
            yield fake.url
    else:
        yield server


async def main(server: str, out: Path) -> int:
    async with sandbox_url(server) as url, Interpreter(url, timeout=60) as it:
        uploaded = await it.upload("sales.csv", CSV.encode())
        print(f"uploaded {uploaded.path} ({uploaded.size} bytes)\n")

        last: ExecutionResult | None = None
        step = 0
        while (code := policy(step, last)) is not None:
            print(f"--- cell {step + 1} ---{code}")
            last = await it.execute(code)
            # What goes back into the prompt: plain text, images as short placeholders, tracebacks without ANSI.
            print(f"--- observation ---\n{last.to_text()}")
            for mime, data in last.images:
                print(f"(the figure came back as {mime}, {len(data)} bytes)")
            step += 1

        saved = await it.download_to("sales.png", out)
        is_png = saved.read_bytes()[:8] == PNG_MAGIC
        print(f"downloaded {saved} ({saved.stat().st_size} bytes, PNG: {is_png})")
        return 0 if last is not None and last.ok and last.images and is_png else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="local", help="'local' (default), 'fake', or a sandbox base URL")
    parser.add_argument("--out", type=Path, default=None, help="where to put the downloaded image")
    args = parser.parse_args()
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="agent-loop-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    raise SystemExit(asyncio.run(main(args.server, out_dir)))
