"""Datasets for training and evaluation: layout adapters, the face-track cache, clip sampling.

`adapters` reads the benchmarks' real layouts into labelled videos; `preprocess` turns them into
the cache (`cache`: one .npz of aligned crops per face track plus ``index.jsonl``); `clips`
samples fixed-length windows from cached tracks.
"""
