"""Benchmarks, not tests: each module prints figures measured in one run (`python -m bench.<name> --help`)."""
