"""Transports: Kafka for production, an in-process broker for the embedded default and tests.

Both implement `Source` and `Sink` from `consumer.backends.base`; one contract test suite runs
against both (tests/consumer/test_backend_contract.py).
"""
