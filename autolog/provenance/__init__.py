"""Provenance: what autolog records around a run besides the training call itself.

- `capture.py`: turning the parts on and off, and the run hooks that record them;
- `system_metrics.py`: CPU, memory, disk, network and GPU samples;
- `arguments.py`: the parsed command-line arguments as `args.*` params;
- `source.py`: script, git state, command line, library versions;
- `environment.py`: the installed packages the run's frameworks depend on.
"""
