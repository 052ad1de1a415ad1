"""Beam's Flink job server: installed from Maven Central into a cache outside the clone, checked before a run.

    python -m tailguard.pipelines.flink install   # what `make flink-job-server` runs; re-used when present
    python -m tailguard.pipelines.flink path      # the launcher jar to pass as --flink_job_server_jar

Beam publishes the job server as one shaded jar (``beam-runners-flink-<flink>-job-server``), but the Maven
Central this project reaches serves that jar for no Beam release, and the Flink runner module itself only at
Beam 2.62.0 (``beam-runners-flink-1.19``; at 2.70.0 its ``beam-runners-java-job-service`` dependency is missing,
and 2.77.0 is not served). So the job server is assembled from the modules the shaded jar is built from: Maven
resolves ``beam-runners-flink-1.19:2.62.0`` with its dependencies (checksums enforced), every jar is checked
against the SHA-1 Maven Central publishes beside it, copied into the cache with a SHA256SUMS file, and a launcher
jar whose manifest names ``FlinkJobServerDriver`` and that class path makes ``java -jar`` start it -- which is how
Beam's Python ``FlinkRunner`` starts the jar given in ``--flink_job_server_jar``.

The Python SDK is Beam 2.77 and this job server Beam 2.62: the job API and the Fn API between them are stable,
and the test suite checks that the full pipeline's output on it is byte-identical to the local runner's.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

from tailguard.transforms.settings import ConfigError

FLINK_VERSION = "1.19"
# The newest Beam release whose Flink runner resolves with all its dependencies from Maven Central (see above).
JOB_SERVER_BEAM_VERSION = "2.62.0"
RUNNER_ARTIFACT = f"org.apache.beam:beam-runners-flink-{FLINK_VERSION}:{JOB_SERVER_BEAM_VERSION}"
# The shaded job-server jar binds slf4j to java.util.logging; without a binding the job server logs nothing.
LOG_BINDING = "org.slf4j:slf4j-jdk14:1.7.30"
MAIN_CLASS = "org.apache.beam.runners.flink.FlinkJobServerDriver"
CACHE_ENV = "TAILGUARD_CACHE"
SUMS = "SHA256SUMS"


def cache_root() -> Path:
    base = os.environ.get(CACHE_ENV) or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "tailguard")
    return Path(base).expanduser()


def install_dir() -> Path:
    return cache_root() / f"beam-flink-{FLINK_VERSION}-job-server-{JOB_SERVER_BEAM_VERSION}"


def jar_path() -> Path:
    """The launcher jar ``--flink_job_server_jar`` takes."""
    return install_dir() / f"beam-runners-flink-{FLINK_VERSION}-job-server-{JOB_SERVER_BEAM_VERSION}.jar"


def _sha(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pom(directory: Path) -> Path:
    deps = "".join(
        f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>"
        for g, a, v in (coordinate.split(":") for coordinate in (RUNNER_ARTIFACT, LOG_BINDING)))
    pom = directory / "pom.xml"
    pom.write_text('<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
                   "<groupId>tailguard</groupId><artifactId>flink-job-server</artifactId><version>0</version>"
                   f"<dependencies>{deps}</dependencies></project>\n")
    return pom


def _manifest(class_path: list[str]) -> bytes:
    """A jar manifest; lines longer than 72 bytes continue on lines starting with one space (jar spec)."""
    lines = ["Manifest-Version: 1.0", f"Main-Class: {MAIN_CLASS}", "Class-Path: " + " ".join(class_path),
             "Created-By: tailguard"]
    out = []
    for line in lines:
        data = line.encode()
        out.append(data[:72])
        for i in range(72, len(data), 71):
            out.append(b" " + data[i:i + 71])
    return b"\r\n".join(out) + b"\r\n\r\n"


def verify(directory: Optional[Path] = None) -> list[str]:
    """Problems with an installed job server ([] when whole): missing files, checksum mismatches."""
    directory = directory or install_dir()
    sums, launcher = directory / SUMS, jar_path() if directory == install_dir() else None
    if not sums.exists():
        return [f"{sums} is missing"]
    problems = []
    for line in sums.read_text().splitlines():
        expected, name = line.split("  ", 1)
        path = directory / name
        if not path.exists():
            problems.append(f"{path} is missing")
        elif _sha(path, "sha256") != expected:
            problems.append(f"{path} does not match its SHA-256 in {SUMS}")
    if launcher is not None and not launcher.exists():
        problems.append(f"{launcher} is missing")
    return problems


def install(force: bool = False, out=sys.stderr) -> Path:
    """Fetch (or re-use) the job server; returns the launcher jar. Raises RuntimeError saying what to fix."""
    target = install_dir()
    if not force and target.exists() and not verify(target):
        print(f"flink job server: {jar_path()} (cached, checksums verified)", file=out)
        return jar_path()
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven (`mvn`) is needed to fetch Beam's Flink job server: apt-get install maven")
    with tempfile.TemporaryDirectory(prefix="tailguard-mvn-") as work:
        pom = _pom(Path(work))
        classpath_file = Path(work) / "classpath.txt"
        # --strict-checksums: a jar whose download does not match the checksum Central publishes fails here.
        command = [mvn, "-B", "-q", "--strict-checksums", "-f", str(pom), "dependency:build-classpath",
                   f"-Dmdep.outputFile={classpath_file}"]
        print(f"flink job server: resolving {RUNNER_ARTIFACT} from Maven Central ...", file=out)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"Maven could not fetch {RUNNER_ARTIFACT}:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
        jars = [Path(p) for p in classpath_file.read_text().strip().split(os.pathsep) if p]
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "lib").mkdir(parents=True)
    sums, class_path = [], []
    for jar in jars:
        published = jar.with_name(jar.name + ".sha1")
        if not published.exists():
            raise RuntimeError(f"{published} is missing: Maven did not record the checksum Central publishes")
        expected = published.read_text().split()[0].strip().lower()
        if _sha(jar, "sha1") != expected:
            raise RuntimeError(f"{jar} does not match its published SHA-1 {expected}: delete it and re-run")
        copy = staging / "lib" / jar.name
        shutil.copyfile(jar, copy)
        sums.append(f"{_sha(copy, 'sha256')}  lib/{jar.name}")
        class_path.append(f"lib/{jar.name}")
    launcher = staging / jar_path().name
    with zipfile.ZipFile(launcher, "w") as z:
        z.writestr("META-INF/MANIFEST.MF", _manifest(class_path))
    sums.append(f"{_sha(launcher, 'sha256')}  {launcher.name}")
    (staging / SUMS).write_text("\n".join(sums) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    problems = verify(target)
    if problems:
        raise RuntimeError("; ".join(problems))
    print(f"flink job server: {jar_path()} ({len(jars)} jars, checksums verified)", file=out)
    return jar_path()


# --------------------------------------------------------------------------------- checks before a run


def check_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ConfigError("--runner", "FlinkRunner starts Beam's Flink job server with `java`, which is not on "
                                      "PATH: install a JDK 11 or 17 (apt-get install openjdk-17-jre-headless)")
    return java


def check_job_server_jar(path: str) -> None:
    """The jar exists and is a jar that names the job server's main class (or is Beam's shaded jar)."""
    if not os.path.isfile(path):
        raise ConfigError("--flink_job_server_jar", f"{path} does not exist: run `make flink-job-server` "
                                                    "(python -m tailguard.pipelines.flink install)")
    try:
        with zipfile.ZipFile(path) as z:
            manifest = z.read("META-INF/MANIFEST.MF").decode("utf-8", "replace").replace("\r\n ", "").replace(
                "\n ", "")
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise ConfigError("--flink_job_server_jar", f"{path} is not a usable jar ({e}): re-install it with "
                                                    "python -m tailguard.pipelines.flink install --force") from e
    if MAIN_CLASS not in manifest:
        raise ConfigError("--flink_job_server_jar", f"{path} does not start {MAIN_CLASS}: pass Beam's Flink job "
                                                    "server jar")
    if Path(path).resolve() == jar_path().resolve():
        problems = verify()
        if problems:
            raise ConfigError("--flink_job_server_jar", f"the installed job server is damaged ({problems[0]}): "
                                                        "python -m tailguard.pipelines.flink install --force")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tailguard.pipelines.flink")
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="fetch Beam's Flink job server into the cache (re-used when present)")
    inst.add_argument("--force", action="store_true", help="fetch again even if the cached copy verifies")
    sub.add_parser("path", help="print the launcher jar's path")
    args = parser.parse_args(argv)
    if args.command == "path":
        print(jar_path())
        return 0
    try:
        install(force=args.force)
    except RuntimeError as e:
        print(f"flink job server: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
