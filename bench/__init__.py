"""trioapi's benchmark harness: ``python bench/run.py`` (see docs/benchmarks.md)."""
