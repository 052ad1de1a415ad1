"""Runner plumbing shared by ``tailguard run``, ``tailguard report`` and the Dataflow flex template.

Runner names, pipeline options (Dataflow defaults and staging of tailguard itself), the in-process local runner,
the long-job stream setting of portable runners, and ``run_and_wait``: submit, report progress while the job
runs, cancel a job that stops making progress, and fail with a message naming the likely cause.

Progress is observed the same way on every runner: each top-level stage's output (on remote runners also the
steps one level below, so that the shuffles inside a stage count too) feeds a counting DoFn; in each worker
process one thread writes that process's counts to a small JSON file every few seconds, and the driver sums
the files. Beam's own job API
cannot do this portably: Flink's job server answers GetJobMetrics only once the job has ended, and its message
stream carries errors, not counts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, TextIO

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from tailguard.transforms.settings import ConfigError

LOCAL_RUNNERS = {None, "DirectRunner", "direct", "FnApiRunner"}
# Runners that submit through Beam's portable job API (a job server); the progress watchdog can cancel them.
PORTABLE_RUNNERS = {"PortableRunner", "FlinkRunner", "SparkRunner"}
# Worker defaults for Dataflow, used only where the user gave no value.
DATAFLOW_DEFAULTS = {"machine_type": "n2-standard-4", "autoscaling_algorithm": "THROUGHPUT_BASED",
                     "max_num_workers": 50}

# Beam 2.77's PortableRunner (FlinkRunner and SparkRunner build on it) opens the driver's job-state and message
# streams with timeout=job_server_timeout (default 300 s): a job running longer makes the driver fail with
# DEADLINE_EXCEEDED while the job goes on, so the run would never be published. Those two streams get this
# timeout instead; preparing and staging keep job_server_timeout, so an unreachable job service fails fast.
# Jobs that stop making progress are caught by the stall bound below, not by this one.
JOB_STREAM_TIMEOUT_S = 7 * 24 * 3600

# A job on a portable runner whose workers report no progress for this long is cancelled (--stall_timeout).
DEFAULT_STALL_TIMEOUT_S = 600
# How often workers write their counts and the driver prints a progress line (--progress_every).
DEFAULT_PROGRESS_EVERY_S = 5.0
# Workers of remote runs write their counts under <output>/_progress/<run>-<random>/, removed when the job ends.
PROGRESS_FOLDER = "_progress"
# Outputs this deep in the graph are counted on remote runners: 1 = the stages, 2 = the steps inside them.
PROGRESS_DEPTH = 2


class RunnerOptions(PipelineOptions):
    """tailguard's own pipeline options: they pass through ``run``, ``report`` and the flex template like Beam's."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--stall_timeout", type=float, default=DEFAULT_STALL_TIMEOUT_S,
                            help="cancel a job on a portable runner (Flink, a job server) whose workers report no "
                                 "progress for this many seconds, naming the likely cause; 0 waits for ever")
        parser.add_argument("--progress_every", type=float, default=DEFAULT_PROGRESS_EVERY_S,
                            help="seconds between progress lines on stderr (documents read, per-stage counts, "
                                 "rate, elapsed); 0 counts nothing, which also turns the stall bound off")


class JobFailed(RuntimeError):
    """The job ended in a state other than DONE, or was cancelled for making no progress."""


def is_local(runner_name: Optional[str]) -> bool:
    return runner_name in LOCAL_RUNNERS


# ------------------------------------------------------------------------------------------------ options


def pipeline_options(beam_args: list[str]):
    """Beam options from the pass-through arguments, plus tailguard's Dataflow defaults and staging."""
    from apache_beam.options.pipeline_options import SetupOptions, StandardOptions, WorkerOptions

    options = PipelineOptions(beam_args)
    runner = options.view_as(StandardOptions).runner
    ours = options.view_as(RunnerOptions)
    if ours.stall_timeout is None or ours.stall_timeout < 0:
        raise ConfigError("--stall_timeout", f"must be >= 0 seconds (0: never), got {ours.stall_timeout}")
    if ours.progress_every is None or ours.progress_every < 0:
        raise ConfigError("--progress_every", f"must be >= 0 seconds (0: no progress, no stall bound), "
                                              f"got {ours.progress_every}")
    if runner in PORTABLE_RUNNERS:
        check_job_service(options, runner)
    if runner == "DataflowRunner":
        setup = options.view_as(SetupOptions)
        if not (setup.setup_file or setup.requirements_file or setup.sdk_location != "default"
                or setup.extra_packages or options.get_all_options().get("sdk_container_image")):
            # Workers need this package: from a source checkout setup.py is staged (Beam builds an sdist and
            # workers install it with its pinned deps); from an installed wheel there is no setup.py, so the
            # installed distribution is packed back into a wheel and staged as an extra package.
            source_setup = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py")
            if os.path.exists(source_setup):
                setup.setup_file = source_setup
            else:
                setup.extra_packages = [installed_wheel(tempfile.mkdtemp(prefix="tailguard-stage-"))]
        worker = options.view_as(WorkerOptions)
        for name, value in DATAFLOW_DEFAULTS.items():
            if not getattr(worker, name):
                setattr(worker, name, value)
    return options, runner


def _listening(address: str, timeout: float = 5.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def check_job_service(options, runner: str) -> None:
    """Before any pipeline exists: the job server is reachable, or the one FlinkRunner would start can start.

    FlinkRunner without ``--job_endpoint`` starts Beam's Flink job server with ``java -jar``; without
    ``--flink_job_server_jar`` Beam would download a jar at run time, so the one ``make flink-job-server``
    installed is used instead, and a missing one is an error saying how to install it.
    """
    from apache_beam.options.pipeline_options import FlinkRunnerOptions, JobServerOptions, PortableOptions

    from tailguard.pipelines import flink

    endpoint = options.view_as(PortableOptions).job_endpoint
    if endpoint and endpoint != "embed":
        if not _listening(endpoint):
            raise ConfigError("--job_endpoint", f"nothing answers at {endpoint}: start the job server there "
                                                "(deploy/README.md, \"Flink\") or correct the address")
        return
    if runner != "FlinkRunner":
        if runner == "PortableRunner":
            raise ConfigError("--job_endpoint", "PortableRunner needs the address of a running job server")
        return
    flink.check_java()
    flink_options = options.view_as(FlinkRunnerOptions)
    if not flink_options.flink_job_server_jar:
        if flink.verify():
            raise ConfigError("--flink_job_server_jar", f"Beam's Flink job server is not installed at "
                                                        f"{flink.jar_path()}: run `make flink-job-server`, or pass "
                                                        "--flink_job_server_jar or --job_endpoint")
        flink_options.flink_job_server_jar = str(flink.jar_path())
    flink.check_job_server_jar(flink_options.flink_job_server_jar)
    port = options.view_as(JobServerOptions).job_port
    if port and _listening(f"localhost:{port}", timeout=1.0):
        raise ConfigError("--job_port", f"port {port} is already in use: pass another --job_port, or 0 (the "
                                        "default) for a free one")


def installed_wheel(directory: str) -> str:
    """Pack the installed tailguard distribution back into a wheel in ``directory``; returns its path.

    Its files, metadata and dependency list are the installed ones (RECORD lists them), so a Dataflow worker's
    ``pip install`` of it installs the same tailguard with the same pinned dependencies.
    """
    import base64
    import hashlib
    import zipfile
    from importlib import metadata

    dist = metadata.distribution("tailguard")
    name, version = dist.metadata["Name"], dist.version
    dist_info = f"{name}-{version}.dist-info"
    path = os.path.join(directory, f"{name}-{version}-py3-none-any.whl")
    record_rows = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for file in dist.files or []:
            posix = file.as_posix()
            top = posix.split("/", 1)[0]
            # Only the package and its metadata: not scripts in bin/, byte code, or the installer's RECORD.
            if top not in ("tailguard", dist_info) or posix.endswith((".pyc", "/RECORD", "/INSTALLER",
                                                                      "/direct_url.json", "/REQUESTED")):
                continue
            data = file.locate().read_bytes()
            if posix == f"{dist_info}/WHEEL":
                continue
            wheel.writestr(posix, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record_rows.append(f"{posix},sha256={digest},{len(data)}")
        wheel_meta = "Wheel-Version: 1.0\nGenerator: tailguard\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        wheel.writestr(f"{dist_info}/WHEEL", wheel_meta)
        digest = base64.urlsafe_b64encode(hashlib.sha256(wheel_meta.encode()).digest()).rstrip(b"=").decode()
        record_rows.append(f"{dist_info}/WHEEL,sha256={digest},{len(wheel_meta)}")
        record_rows.append(f"{dist_info}/RECORD,,")
        wheel.writestr(f"{dist_info}/RECORD", "\n".join(record_rows) + "\n")
    return path


def local_runner(options):
    """What Beam's DirectRunner falls back to for batch pipelines, minus the Prism download attempt."""
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return fn_runner.FnApiRunner(provision_info=provision)


def make_pipeline(options, runner_name: Optional[str]) -> beam.Pipeline:
    return beam.Pipeline(runner=local_runner(options) if is_local(runner_name) else None, options=options)


@contextlib.contextmanager
def long_job_streams(timeout_s: int = JOB_STREAM_TIMEOUT_S):
    """While active, ``JobServiceHandle.run`` opens the job-state and message streams with ``timeout_s``."""
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    original = JobServiceHandle.run

    def run(self, preparation_id):
        saved = self.timeout
        self.timeout = max(saved or 0, timeout_s)
        try:
            return original(self, preparation_id)
        finally:
            self.timeout = saved

    JobServiceHandle.run = run
    try:
        yield
    finally:
        JobServiceHandle.run = original


# ------------------------------------------------------------------------------------------- worker side


class _ProcessCounts:
    """Counts of every progress DoFn in one worker process, per job, each job's written to one file by one thread."""

    lock = threading.Lock()
    counts: dict[str, dict[str, int]] = {}  # progress directory (one per job) -> label -> elements
    writers: dict[str, threading.Thread] = {}
    name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    @classmethod
    def start(cls, directory: str, every_s: float) -> None:
        with cls.lock:
            cls.counts.setdefault(directory, {})
            if directory in cls.writers and cls.writers[directory].is_alive():
                return
            thread = threading.Thread(target=cls._write_loop, args=(directory, every_s), daemon=True,
                                      name="tailguard-progress")
            cls.writers[directory] = thread
            thread.start()

    @classmethod
    def add(cls, directory: str, label: str, n: int) -> None:
        with cls.lock:
            job = cls.counts.setdefault(directory, {})
            job[label] = job.get(label, 0) + n

    @classmethod
    def _write_loop(cls, directory: str, every_s: float) -> None:
        path, last = f"{directory.rstrip('/')}/{cls.name}.json", None
        while True:
            with cls.lock:
                current = dict(cls.counts.get(directory, {}))
            try:
                if last is not None and not FileSystems.exists(path):
                    break  # the driver removed the directory: that job has ended
                if current != last:
                    # Written beside and renamed over: the driver never reads a half-written file.
                    with FileSystems.create(path + ".tmp") as out:
                        out.write(json.dumps({"counts": current, "at": time.time()}).encode())
                    FileSystems.rename([path + ".tmp"], [path])
                    last = current
            except Exception:  # progress is best effort; the job's own result decides the run
                pass
            time.sleep(every_s)
        with cls.lock:
            cls.counts.pop(directory, None)
            cls.writers.pop(directory, None)


class _CountFn(beam.DoFn):
    """Passes nothing on: counts the elements of one PCollection for the progress files."""

    def __init__(self, directory: str, label: str, every_s: float):
        self._directory, self._label, self._every_s = directory, label, every_s

    def setup(self):
        _ProcessCounts.start(self._directory, self._every_s)

    def start_bundle(self):
        self._n, self._due = 0, time.monotonic() + 1.0

    def process(self, element):
        # A batch runner may process a whole partition as one bundle: counts are handed over every second too.
        self._n += 1
        if self._n >= 1000 or time.monotonic() >= self._due:
            self._flush()
            self._due = time.monotonic() + 1.0

    def finish_bundle(self):
        self._flush()

    def _flush(self):
        if self._n:
            _ProcessCounts.add(self._directory, self._label, self._n)
            self._n = 0


_REPLACED = (beam.Reshuffle, beam.CombineGlobally, beam.CombinePerKey, beam.CombineValues)


def watch_progress(pipeline: beam.Pipeline, directory: str, every_s: float = DEFAULT_PROGRESS_EVERY_S,
                   depth: int = PROGRESS_DEPTH) -> list[str]:
    """Count the outputs of the graph's transforms down to ``depth``; returns the top-level labels in order."""
    from apache_beam.pipeline import PipelineVisitor

    seen: dict[int, tuple[str, beam.PCollection]] = {}
    stages: list[str] = []
    opaque: list[str] = []

    class Outputs(PipelineVisitor):
        def enter_composite_transform(self, node):
            self.visit_transform(node)

        def visit_transform(self, node):
            label = node.full_label
            if not label or label.count("/") >= depth or label.startswith(tuple(opaque)):
                return
            if isinstance(node.transform, _REPLACED):
                # Portable runners substitute their own reshuffle and pack or lift combines before running: the
                # collections inside (and a combine's own output) may not survive, so nothing is attached there.
                opaque.append(label + "/")
                if not isinstance(node.transform, beam.Reshuffle):
                    return
            if "/" not in label and label not in stages:
                stages.append(label)
            for pcoll in node.outputs.values():
                if isinstance(pcoll, beam.pvalue.PCollection) and id(pcoll) not in seen:
                    seen[id(pcoll)] = (label, pcoll)

    pipeline.visit(Outputs())
    for i, (label, pcoll) in enumerate(seen.values()):
        _ = pcoll | f"Progress/{i}" >> beam.ParDo(_CountFn(directory, label, every_s))
    return [s for s in stages if any(label.split("/")[0] == s for label, _ in seen.values())]


# ------------------------------------------------------------------------------------------- driver side


def read_progress(directory: str) -> tuple[dict[str, int], int]:
    """Counts summed over every worker process's file, and how many worker processes wrote one."""
    totals: dict[str, int] = {}
    try:
        matches = FileSystems.match([f"{directory.rstrip('/')}/*.json"])[0].metadata_list
    except Exception:
        return totals, 0
    for meta in matches:
        try:
            with FileSystems.open(meta.path) as f:
                counts = json.loads(f.read().decode())["counts"]
        except Exception:  # being rewritten right now: the next poll reads it
            continue
        for label, n in counts.items():
            totals[label] = totals.get(label, 0) + int(n)
    return totals, len(matches)


@dataclass
class Progress:
    """What the driver knows of a running job; ``line()`` is what it prints."""

    stages: list[str]
    started: float = field(default_factory=time.monotonic)
    counts: dict[str, int] = field(default_factory=dict)
    changed: float = field(default_factory=time.monotonic)
    workers: int = 0

    def update(self, seen: tuple[dict[str, int], int]) -> None:
        # Counts only grow: a file unreadable at this instant must not look like a step backwards.
        counts = {label: max(n, self.counts.get(label, 0)) for label, n in seen[0].items()}
        counts.update({label: n for label, n in self.counts.items() if label not in counts})
        if counts != self.counts or seen[1] > self.workers:
            self.counts, self.changed = counts, time.monotonic()
        self.workers = max(self.workers, seen[1])

    def stage_total(self, stage: str) -> int:
        return sum(n for label, n in self.counts.items() if label == stage)

    def line(self, state: Optional[str] = None) -> str:
        elapsed = time.monotonic() - self.started
        read = self.stage_total(self.stages[0]) if self.stages else 0
        rate = read / elapsed if elapsed > 0 else 0.0
        stages = " ".join(f"{s}={self.stage_total(s):,}" for s in self.stages[1:] if self.stage_total(s))
        head = f"[{_clock(elapsed)}]" + (f" {state}" if state else "")
        return f"{head} {read:,} read ({rate:,.0f}/s) {stages}".rstrip()


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def progress_dir_for(output_root: str, name: str, runner_name: Optional[str]) -> str:
    """Where workers write progress: a local temp dir for in-process runners, else beside the output."""
    if is_local(runner_name):
        return tempfile.mkdtemp(prefix="tailguard-progress-")
    return f"{output_root.rstrip('/')}/{PROGRESS_FOLDER}/{name}-{uuid.uuid4().hex[:8]}"


def _remove(directory: str) -> None:
    try:
        if os.path.isdir(directory):
            shutil.rmtree(directory, ignore_errors=True)
            parent = os.path.dirname(directory.rstrip("/"))
            if os.path.basename(parent) == PROGRESS_FOLDER:
                with contextlib.suppress(OSError):  # the shared folder goes once no run uses it
                    os.rmdir(parent)
        elif FileSystems.exists(directory):
            FileSystems.delete([directory])
    except Exception:  # leftover progress files never fail a run that has ended
        pass


def stall_message(progress: Progress, bound_s: float, runner_name: Optional[str]) -> str:
    if not progress.workers:
        return (f"no SDK worker started within {bound_s:.0f} s of the job starting on {runner_name}: "
                "the workers most likely cannot start. Check --environment_type/--environment_config (an EXTERNAL "
                "worker pool must be listening at that address, and its python must import apache_beam and "
                "tailguard), and the job server's log; raise --stall_timeout if workers need longer to start")
    counts = ", ".join(f"{k}={v:,}" for k, v in sorted(progress.counts.items())[:12])
    return (f"no stage's document count moved for {bound_s:.0f} s on {runner_name} (last counts: {counts}): a worker "
            "is stuck or died without the runner failing the job; see the job server's and workers' logs, or raise "
            "--stall_timeout if one step legitimately runs longer without output")


def run_and_wait(pipeline: beam.Pipeline, runner_name: Optional[str], *, progress_dir: str,
                 out: TextIO = sys.stderr, on_submitted: Optional[Callable[[Any], None]] = None):
    """Run ``pipeline``, printing progress to ``out``; returns the result of a job that ended DONE.

    On a portable runner (Flink, Spark, a job server) a job whose workers report nothing for ``--stall_timeout``
    seconds (0: never) is cancelled. Any other end than DONE raises ``JobFailed`` naming the state and the likely cause.
    """
    ours = pipeline.options.view_as(RunnerOptions)
    stall_timeout_s, progress_every_s = ours.stall_timeout, ours.progress_every
    # Locally the counts only feed the progress lines: the stages suffice. The stall bound of a portable run
    # also needs the steps inside each stage, so that a long shuffle inside one still counts as progress.
    depth = 1 if is_local(runner_name) else PROGRESS_DEPTH
    stages = watch_progress(pipeline, progress_dir, progress_every_s, depth) if progress_every_s else []
    if not progress_every_s:
        stall_timeout_s, progress_every_s = 0, 3600.0
    progress = Progress(stages)
    done = threading.Event()
    try:
        if is_local(runner_name):
            # The in-process runner returns only when the job has ended: a thread prints meanwhile.
            printer = threading.Thread(target=_print_until, daemon=True,
                                       args=(done, progress, progress_dir, progress_every_s, out))
            printer.start()
            try:
                result = pipeline.run()
            finally:
                done.set()
                printer.join(timeout=progress_every_s + 5)
        else:
            result = _run_remote(pipeline, runner_name, progress, progress_dir, stall_timeout_s, progress_every_s,
                                 out, on_submitted)
    finally:
        _remove(progress_dir)
    state = str(getattr(result, "state", "DONE"))
    if "DONE" not in state.upper():
        raise JobFailed(f"pipeline ended in state {state}")
    return result


def _print_until(done: threading.Event, progress: Progress, directory: str, every_s: float, out: TextIO):
    while not done.wait(every_s):
        progress.update(read_progress(directory))
        print(progress.line(), file=out, flush=True)


def job_id(result) -> Optional[str]:
    """The runner's id of a submitted job (Dataflow's job_id(), a portable job server's job id), if any."""
    found = getattr(result, "job_id", None) or getattr(result, "_job_id", None)
    return found() if callable(found) else found


def job_reference(result) -> str:
    """An id or link to follow the job with, as the runner knows it."""
    job_id_ = job_id(result)
    job = getattr(result, "_job", None)
    project, region = getattr(job, "projectId", None), getattr(job, "location", None)
    if job_id_ and project and region:
        return f"{job_id_}  https://console.cloud.google.com/dataflow/jobs/{region}/{job_id_}?project={project}"
    return str(job_id_ or "unknown")


def _run_remote(pipeline, runner_name, progress, progress_dir, stall_timeout_s, every_s, out, on_submitted):
    with long_job_streams():
        result = pipeline.run()
    progress.started = progress.changed = time.monotonic()
    print(f"job submitted to {runner_name}: {job_reference(result)}", file=out, flush=True)
    if on_submitted is not None:
        on_submitted(result)
    outcome: dict[str, BaseException] = {}

    def wait():
        try:
            result.wait_until_finish()
        except BaseException as e:  # re-raised in the driver's thread below
            outcome["error"] = e

    # Portable runners only: Dataflow fails jobs whose workers cannot start by itself, and its worker start-up
    # (VMs booting, dependencies installing) may legitimately take many minutes with nothing to count.
    watchdog = bool(stall_timeout_s) and runner_name in PORTABLE_RUNNERS
    waiter = threading.Thread(target=wait, daemon=True, name="tailguard-wait")
    waiter.start()
    next_line = time.monotonic() + every_s
    while waiter.is_alive():
        waiter.join(timeout=min(1.0, every_s))
        progress.update(read_progress(progress_dir))
        now = time.monotonic()
        if watchdog and now - progress.changed > stall_timeout_s and waiter.is_alive():
            message = stall_message(progress, stall_timeout_s, runner_name)
            print(f"tailguard: cancelling the job: {message}", file=out, flush=True)
            with contextlib.suppress(Exception):
                result.cancel()
            waiter.join(timeout=60)
            raise JobFailed(message)
        if now >= next_line and waiter.is_alive():
            state = _safe_state(result)
            print(progress.line(state), file=out, flush=True)
            next_line = now + every_s
    if "error" in outcome:
        raise JobFailed(str(outcome["error"]).strip() or type(outcome["error"]).__name__) from outcome["error"]
    return result


def _safe_state(result) -> Optional[str]:
    try:
        return str(result.state)
    except Exception:
        return None

