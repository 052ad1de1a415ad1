"""Entry point Airflow's BeamRunPythonPipelineOperator runs: ``python tailguard_beam_main.py --input=... ...``.

The operator appends every option as ``--key=value`` after the file name, so the ``run`` sub-command of
``tailguard`` cannot be given on its command line; this file supplies it. A ``--config`` on Cloud Storage is
copied to a local file first (the config loader reads local files). Exit codes are tailguard's: 0 published,
1 failed (nothing published), 2 bad arguments.
"""

from __future__ import annotations

import os
import sys
import tempfile


def localize_config(argv: list[str], directory: str) -> list[str]:
    """Replace a remote ``--config`` URI (gs://, s3://, ...) by a local copy of the file."""
    out = []
    for arg in argv:
        if arg.startswith("--config=") and "://" in arg:
            from apache_beam.io.filesystems import FileSystems

            uri = arg.split("=", 1)[1]
            local = os.path.join(directory, "curate.yaml")
            with FileSystems.open(uri) as remote, open(local, "wb") as f:
                f.write(remote.read())
            arg = f"--config={local}"
        out.append(arg)
    return out


def main(argv: list[str]) -> int:
    from tailguard.pipelines.cli import main as tailguard

    with tempfile.TemporaryDirectory(prefix="tailguard-config-") as directory:
        return tailguard(["run", *localize_config(argv, directory)])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
