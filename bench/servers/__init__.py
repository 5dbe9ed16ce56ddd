"""Echo / broadcast servers that the benchmark harness (``bench/run.py``) starts."""
