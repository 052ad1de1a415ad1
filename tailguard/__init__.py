"""tailguard: Apache Beam pipelines that curate LLM training sets resisting model collapse.

The code lives in two subpackages, ``tailguard.transforms`` (the record contract and one composite transform per
stage) and ``tailguard.pipelines`` (config, the curation and report pipelines, the command line). In the
repository they are the top-level folders ``transforms/`` and ``pipelines/``, mapped under this package by
``package_dir`` in setup.py, so nothing generic lands at the top of site-packages and Beam workers unpickle DoFns
by a module path no other distribution can shadow.
"""

__version__ = "0.2.0"
