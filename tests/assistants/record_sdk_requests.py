"""Record what the official ``appbuilder-sdk`` sends, run against our fake, into ``sdk_requests.json``.

The SDK pins old packages, so it never enters the project's environment. Run this with the project's Python
and point ``--sdk-python`` at a throwaway virtualenv holding the SDK::

    python3 -m venv /tmp/abvenv && /tmp/abvenv/bin/pip install appbuilder-sdk
    .venv/bin/python tests/assistants/record_sdk_requests.py --sdk-python /tmp/abvenv/bin/python

``sdk_flow.py`` (run by the SDK's interpreter) walks every call of the contract; generated ids are replaced by
placeholders so the fixture is stable and our own client's bodies can be compared with it.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from aioagents.testing._appbuilder import FakeAppBuilderServer, RunScript, ToolCallScript

HERE = Path(__file__).parent
_WEATHER = ToolCallScript(name="get_cur_whether", arguments={"location": "北京", "unit": "摄氏度"})
# Headers that describe the HTTP client rather than the API.
_SKIP_HEADERS = {"host", "content-length", "user-agent", "accept", "accept-encoding", "connection"}
_ID_PATTERNS = [
    (re.compile(r"call-thread_[0-9a-f]{32}-run_[0-9a-f]{32}-step-\d+"), "<call>"),
    (re.compile(r"\b(asst|thread|run|msg|chatmsg)_[0-9a-f]{32}"), r"<\1>"),
    (re.compile(r"file-[0-9a-f]{32}"), "<file>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"boundary=[0-9a-zA-Z]+"), "boundary=<boundary>"),
]


def normalize(text: str) -> str:
    """Replace generated ids with stable placeholders."""
    for pattern, repl in _ID_PATTERNS:
        text = pattern.sub(repl, text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sdk-python", required=True, help="a Python that has appbuilder-sdk installed")
    args = parser.parse_args()
    srv = FakeAppBuilderServer()
    srv.script(
        RunScript(),
        RunScript(tool_calls=[_WEATHER]),
        RunScript(),
        RunScript(tool_calls=[_WEATHER]),
        RunScript(hang=True, hang_timeout=10),
    )
    with srv.in_thread(), tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [args.sdk_python, str(HERE / "sdk_flow.py"), srv.url, tmp],
            check=True,
            stdout=sys.stderr,
        )
    records: list[dict[str, Any]] = []
    for req in srv.requests:
        multipart = req.path == "/v2/storage/files"
        records.append(
            {
                "path": req.path,
                "query": dict(req.query),
                "headers": {k: normalize(v) for k, v in sorted(req.headers.items()) if k.lower() not in _SKIP_HEADERS},
                "body": normalize(req.body.decode()) if multipart else json.loads(normalize(req.body.decode())),
            }
        )
    out = HERE / "sdk_requests.json"
    out.write_text(json.dumps(records, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(records)} requests to {out}")


if __name__ == "__main__":
    main()
