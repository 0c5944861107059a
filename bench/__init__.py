"""Benchmarks of FAME Stream (not tests): model, front end, end to end, Redis state size.

`python -m bench.run` runs the suite on whatever device is present (CPU here, CUDA when there is
one), prints the ratios the performance issue asks for and writes the raw numbers to
``bench/results/<device>-<date>.json``. docs/benchmarks.md records the results.
"""
