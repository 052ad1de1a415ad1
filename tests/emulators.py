"""Local stand-ins for the services tailguard runs against at scale, for the tests.

* ``GcsEmulator``: `gcp-storage-emulator` in its own process on 127.0.0.1, disk-backed so that a restart keeps
  the objects (a restart is what a flaky GCS front end looks like to a client).
* ``FaultyProxy``: an HTTP proxy in front of it that answers ``503`` to chosen requests -- the transient errors
  the GCS client must retry.
* ``BeamService``: Beam's portable job service / external SDK worker pool in their own processes.
* ``FlinkJobServer``: Beam's Flink job server (installed by ``make flink-job-server``) with an embedded Flink
  cluster (``--flink-master [local]``), its job API on 127.0.0.1.
* ``gcs_env``: the environment a process needs to talk to the emulator without real credentials.

Every server listens on 127.0.0.1 only, on a free port, and is stopped by its owner. Beam's job service and
worker pool bind ``[::]`` themselves; ``python -m tests.emulators loopback MODULE ...`` runs them with gRPC
bound to the loopback interface instead.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 60.0, process: Optional[subprocess.Popen] = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {LOOPBACK}:{port} after {timeout:.0f} s")


def stop_process(process: Optional[subprocess.Popen], grace: float = 10.0) -> None:
    """Stop a server we started (and its children: it leads its own process group)."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def write_dummy_adc(path: Path) -> Path:
    """Application-default credentials that never need refreshing.

    Without any credentials google-auth probes the GCE metadata server and stalls ~23 s per process; a plain
    authorized-user file makes it call oauth2.googleapis.com to refresh. An access token with a far expiry
    satisfies both: the emulator ignores the token, and nothing leaves the machine.
    """
    path.write_text(json.dumps({
        "type": "authorized_user",
        "client_id": "tailguard-test",
        "client_secret": "tailguard-test",
        "refresh_token": "tailguard-test",
        "token": "tailguard-test-token",
        "expiry": "2099-01-01T00:00:00Z",
        "quota_project_id": "tailguard-test",
    }))
    return path


def gcs_env(endpoint: str, adc: Path) -> dict[str, str]:
    """Variables that point Beam's gs:// filesystem (and every worker process it starts) at an emulator."""
    return {
        "STORAGE_EMULATOR_HOST": endpoint,
        "GOOGLE_APPLICATION_CREDENTIALS": str(adc),
        "GOOGLE_CLOUD_PROJECT": "tailguard-test",
        "NO_GCE_CHECK": "True",
    }


class GcsEmulator:
    """gcp-storage-emulator on 127.0.0.1 in a child process; objects live in ``data_dir`` across restarts."""

    def __init__(self, data_dir: Path, bucket: str, port: Optional[int] = None):
        self.data_dir = Path(data_dir)
        self.bucket = bucket
        self.port = port or free_port()
        self.process: Optional[subprocess.Popen] = None
        self.log = self.data_dir.parent / f"gcs-emulator-{self.port}.log"

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> "GcsEmulator":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gcp_storage_emulator", "--data-dir", str(self.data_dir), "start",
                 "--host", LOOPBACK, "--port", str(self.port), "--default-bucket", self.bucket, "--quiet"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.port, process=self.process)
        return self

    def stop(self) -> None:
        """Take the server down at an instant when its on-disk index is whole.

        gcp-storage-emulator rewrites its `.meta` index in place on every change, so a server stopped in the
        middle of that write cannot start again (its index is an empty or cut JSON file) -- a fault of the
        emulator's persistence, which real Cloud Storage does not have. Freeze it, check the index parses
        (thaw briefly and retry if a write was under way), then kill it while frozen. To clients this is
        still an abrupt outage: in-flight requests fail and must be retried.
        """
        process = self.process
        self.process = None
        if process is None or process.poll() is not None:
            return
        try:
            for _ in range(500):
                os.killpg(process.pid, signal.SIGSTOP)
                if self._index_is_whole():
                    break
                os.killpg(process.pid, signal.SIGCONT)
                time.sleep(0.005)
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()

    def _index_is_whole(self) -> bool:
        for index in self.data_dir.rglob(".meta"):
            try:
                json.loads(index.read_bytes().decode("utf-8"))
            except (OSError, ValueError):
                return False
        return True

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def object_names(self) -> list[str]:
        """Names of the stored objects, read from the emulator's own files (no client needed)."""
        bucket_dir = self.data_dir / ".cloudstorage" / self.bucket
        if not bucket_dir.is_dir():
            return []
        return sorted(p.relative_to(bucket_dir).as_posix() for p in bucket_dir.rglob("*") if p.is_file())


class FaultyProxy:
    """HTTP proxy to ``upstream_port`` that answers 503 to every request ``fail(n, method, path)`` picks.

    ``n`` counts requests from 1. A failed request never reaches the emulator, so retrying it is safe --
    exactly the transient error GCS documents (retry with backoff).
    """

    def __init__(self, upstream_port: int, fail: Callable[[int, str, str], bool]):
        self.upstream_port = upstream_port
        self.fail = fail
        self.requests = 0
        self.failed = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy._lock:
                    proxy.requests += 1
                    n = proxy.requests
                    inject = proxy.fail(n, self.command, self.path)
                    proxy.failed += int(inject)
                if inject:
                    payload = json.dumps({"error": {"code": 503, "message": "injected transient error"}}).encode()
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(LOOPBACK, proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                headers["Host"] = f"{LOOPBACK}:{proxy.upstream_port}"
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

        self.server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def __enter__(self) -> "FaultyProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class BeamService:
    """A Beam portability service (job service or worker pool) in its own process, gRPC on the loopback only."""

    def __init__(self, module: str, port_flag: str, extra: Sequence[str] = (), env: Optional[dict] = None,
                 log: Optional[Path] = None):
        self.port = free_port()
        self.module = module
        self.argv = [sys.executable, "-m", "tests.emulators", "loopback", module, port_flag, str(self.port),
                     *extra]
        # The worker pool starts SDK harnesses as `python -c ...`: the first python on PATH must be this one.
        self.env = dict(os.environ if env is None else env)
        self.env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + self.env.get("PATH", "")
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), self.env.get("PYTHONPATH")]))
        self.log = log
        self.process: Optional[subprocess.Popen] = None

    @property
    def address(self) -> str:
        return f"localhost:{self.port}"

    def __enter__(self) -> "BeamService":
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            if self.log:
                out.close()
        wait_for_port(self.port, timeout=120, process=self.process)
        return self

    def __exit__(self, *exc) -> None:
        stop_process(self.process)


class FlinkJobServer:
    """Beam's Flink job server in its own JVM, running jobs on an embedded Flink cluster; job API on loopback."""

    def __init__(self, jar: Path, workdir: Path, log: Path):
        self.jar, self.workdir, self.log = jar, workdir, log
        self.port = free_port()
        self.process: Optional[subprocess.Popen] = None

    @property
    def address(self) -> str:
        return f"localhost:{self.port}"

    def __enter__(self) -> "FlinkJobServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = ["java", f"-Djava.io.tmpdir={self.workdir}", "-jar", str(self.jar), "--flink-master", "[local]",
                "--job-host", LOOPBACK, "--job-port", str(self.port), "--artifact-port", "0",
                "--expansion-port", "0", "--artifacts-dir", str(self.workdir / "artifacts")]
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(argv, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        wait_for_port(self.port, timeout=120, process=self.process)
        return self

    def __exit__(self, *exc) -> None:
        stop_process(self.process)


def _run_with_grpc_on_loopback(module: str, argv: list[str]) -> None:
    """Run ``python -m module argv...`` with every gRPC server it opens bound to 127.0.0.1 instead of [::]."""
    import runpy

    import grpc._server

    original = grpc._server._Server.add_insecure_port

    def add_insecure_port(self, address: str) -> int:
        host, _, port = address.rpartition(":")
        if host in ("[::]", "0.0.0.0", "", "localhost"):
            address = f"{LOOPBACK}:{port}"
        return original(self, address)

    grpc._server._Server.add_insecure_port = add_insecure_port
    sys.argv = [module, *argv]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "loopback":
        _run_with_grpc_on_loopback(sys.argv[2], sys.argv[3:])
    else:
        sys.exit("usage: python -m tests.emulators loopback MODULE [ARGS...]")
