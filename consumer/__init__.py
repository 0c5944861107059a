"""The FAME Stream service: Kafka (or embedded) source -> face front end -> FAME -> verdict sink.

Nothing imports this package; it imports `fame` and `schemas`.
"""
