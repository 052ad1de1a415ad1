"""tailguard pipelines: the config, the curation pipeline wired from it, and the command line."""
