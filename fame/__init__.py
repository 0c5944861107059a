"""FAME: multilevel-embedding deepfake model attribution, and its face front end.

The model library imports nothing of Kafka or Redis; the streaming service lives in `consumer`.
Layers, bottom up: model and metrics; video (fetch, decode); faces (detect, track, align);
data and benchmark; train and evaluate; CLI.
"""

__version__ = "0.1.0"
