"""A real ``redis-server`` on a free loopback port, for tests of :meth:`aioagents.RateLimiter.redis`."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

__all__ = ["redis_server"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server(*, port: int | None = None, workdir: str | None = None, timeout: float = 15.0) -> Iterator[str]:
    """Run Debian's (or any PATH) ``redis-server`` on 127.0.0.1 without persistence; yield its ``redis://`` URL.

    Raises ``FileNotFoundError`` when no ``redis-server`` is on the PATH and ``RuntimeError`` when it does not start
    within ``timeout`` seconds. The server is stopped when the block ends.
    """
    exe = shutil.which("redis-server")
    if exe is None:
        raise FileNotFoundError("redis-server is not installed (Debian: apt-get install redis-server)")
    port = port or _free_port()
    with contextlib.ExitStack() as stack:
        directory = workdir or stack.enter_context(tempfile.TemporaryDirectory(prefix="aioagents-redis-"))
        args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server did not start on port {port}") from None
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
