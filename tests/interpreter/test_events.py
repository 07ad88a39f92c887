"""Pure functions of the interpreter client, as spec tables: event parsing, merging, rendering, paths, headers."""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import pytest

from aioagents.interpreter import (
    DisplayData,
    Error,
    ExecutionResult,
    File,
    SandboxPathError,
    Stream,
    UnknownEvent,
    merge_streams,
    normalize_sandbox_path,
    parse_content_disposition,
    parse_event,
    render_events,
    strip_ansi,
)

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4//8/AAX+Av4N70a4AAAAAElFTkSuQmCC")


@pytest.mark.parametrize(
    ("raw", "plain"),
    [
        ("\x1b[31mZeroDivisionError\x1b[39m: division by zero", "ZeroDivisionError: division by zero"),
        ("\x1b[0;31m---\x1b[0m", "---"),
        ("\x1b[38;5;241;43m361234\x1b[39;49m", "361234"),
        ("\x1b]8;;file:///x.py\x07x.py\x1b]8;;\x07", "x.py"),
        ("no colour", "no colour"),
    ],
)
def test_strip_ansi(raw: str, plain: str) -> None:
    assert strip_ansi(raw) == plain


def test_error_traceback_is_plain_text_joined_by_newlines() -> None:
    frames = [
        "\x1b[31m---\x1b[39m",
        "\x1b[36mCell\x1b[39m In[2], line 1\n----> 1 1/0\n",
        "\x1b[31mZeroDivisionError\x1b[39m: x",
    ]
    event = parse_event({"type": "error", "data": {"ename": "ZeroDivisionError", "evalue": "x", "traceback": frames}})
    assert isinstance(event, Error)
    assert event.traceback == "---\nCell In[2], line 1\n----> 1 1/0\n\nZeroDivisionError: x"
    assert event.traceback_frames == tuple(frames)
    assert str(event) == "ZeroDivisionError: x"


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-11-20T23:52:56.118673Z", datetime(2026, 11, 20, 23, 52, 56, 118673, tzinfo=timezone.utc)),
        ("2026-11-20T23:52:56.118673123Z", datetime(2026, 11, 20, 23, 52, 56, 118673, tzinfo=timezone.utc)),
        ("2026-11-20T23:52:56Z", datetime(2026, 11, 20, 23, 52, 56, tzinfo=timezone.utc)),
        ("2006-01-02T15:04:05Z07:00", None),
        ("", None),
    ],
)
def test_event_timestamps(stamp: str, expected: datetime | None) -> None:
    event = parse_event({"type": "stream", "timestamp": stamp, "data": {"stream": "stdout", "text": ""}})
    assert event.timestamp == expected


def test_display_helpers_decode_every_variant() -> None:
    wrapped = base64.b64encode(PNG).decode()
    display = DisplayData(
        variants={
            "text/plain": "<Figure>",
            "image/png": wrapped[:20] + "\n" + wrapped[20:],  # whitespace inside base64 is tolerated
            "image/jpeg": "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8jpeg").decode(),
            "image/svg+xml": "<svg/>",
            "text/html": "<b>x</b>",
            "application/json": {"a": [1, 2]},
        }
    )
    assert display.png == PNG
    assert display.jpeg == b"\xff\xd8jpeg"
    assert display.image == ("image/png", PNG)
    assert (display.text, display.svg, display.html, display.json) == ("<Figure>", "<svg/>", "<b>x</b>", {"a": [1, 2]})
    assert DisplayData(variants={"image/png": "***"}).png is None


def test_merge_streams_joins_only_adjacent_chunks_of_one_stream() -> None:
    d = DisplayData(variants={"text/plain": "1"})
    events = [
        Stream(name="stdout", text="a"),
        Stream(name="stdout", text="b"),
        Stream(name="stderr", text="c"),
        Stream(name="stdout", text="d"),
        d,
        Stream(name="stdout", text="e"),
    ]
    assert merge_streams(events) == [
        Stream(name="stdout", text="ab"),
        Stream(name="stderr", text="c"),
        Stream(name="stdout", text="d"),
        d,
        Stream(name="stdout", text="e"),
    ]


def test_render_for_a_prompt() -> None:
    events = [
        Stream(name="stdout", text="loading\n"),
        Stream(name="stderr", text="warn 1\nwarn 2\n"),
        DisplayData(variants={"text/plain": "<Figure>", "image/png": base64.b64encode(PNG).decode()}),
        DisplayData(variants={"text/plain": "42"}),
        File(path="/mnt/data/out.csv", size=10),
        Error(ename="ValueError", evalue="bad", traceback="Traceback...\nValueError: bad"),
        UnknownEvent(type="progress", raw={}),
    ]
    text = render_events(events, timed_out=True)
    assert text == (
        "loading\n[stderr] warn 1\n[stderr] warn 2\n"
        f"[image/png image, {len(PNG)} bytes] <Figure>\n42\n"
        "[file written: /mnt/data/out.csv (10 bytes)]\n"
        "Traceback...\nValueError: bad\n[progress event]\n"
        "[execution timed out; the code may still be running]\n"
    )
    result = ExecutionResult(status="timeout", events=events)
    assert result.to_text() == text
    assert result.images == (("image/png", PNG),)
    assert result.error == events[5]


def test_render_keeps_head_and_tail_when_too_long() -> None:
    text = render_events([Stream(name="stdout", text="x" * 5000 + "END")], max_chars=300)
    assert text.startswith("x" * 100)
    assert text.rstrip().endswith("END")
    assert "characters omitted" in text
    assert len(text) < 400


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("a.txt", "/mnt/data/a.txt"),
        ("./a.txt", "/mnt/data/a.txt"),
        ("sub/dir/", "/mnt/data/sub/dir"),
        ("/mnt/data/x/y.png", "/mnt/data/x/y.png"),
        ("/mnt/data", "/mnt/data"),
        ("100%.txt", "/mnt/data/100%.txt"),
        ("dots...txt", "/mnt/data/dots...txt"),
    ],
)
def test_path_normalisation(given: str, expected: str) -> None:
    assert normalize_sandbox_path(given) == expected


@pytest.mark.parametrize(
    "bad",
    ["", "  ", "../x", "a/../b", "/mnt/data/../data2/x", "/mnt/database/x", "/etc/passwd", "%2e%2e/x", "%2E%2E",
     "%252e%252e/x", "%2e/x", "a%2fb", "a%5cb", "a\\b", "a\x00b"],
)  # fmt: skip
def test_path_rejections(bad: str) -> None:
    with pytest.raises(SandboxPathError):
        normalize_sandbox_path(bad)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("attachment; filename*=UTF-8''my+file+%C3%A9.txt", "my file é.txt"),
        ("attachment; filename*=UTF-8''a%2Bb.txt", "a+b.txt"),
        ("attachment; filename*=utf-8'en'%E2%82%AC%20rates", "€ rates"),
        ('attachment; filename="plain name.txt"', "plain name.txt"),
        ("attachment; filename=\"fallback.txt\"; filename*=UTF-8''real.txt", "real.txt"),
        ('attachment; filename="semi;colon.txt"', "semi;colon.txt"),
        ("attachment", None),
        (None, None),
    ],
)
def test_content_disposition(header: str | None, name: str | None) -> None:
    assert parse_content_disposition(header) == name
