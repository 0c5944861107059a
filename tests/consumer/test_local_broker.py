"""The embedded broker: a finite input ends when read; a live feed only at its end of input."""

from __future__ import annotations

import os

from consumer.backends.local import LocalBroker, LocalSource
from consumer.cli import _feed, _lines


def _source(broker: LocalBroker) -> LocalSource:
    source = LocalSource(broker, "events", "group")
    source.subscribe(lambda _: None, lambda _: None, lambda _: None)
    return source


def test_a_finite_input_is_exhausted_once_read() -> None:
    broker = LocalBroker()
    broker.append("events", None, b"a")
    source = _source(broker)
    assert not source.exhausted()
    assert [m.value for m in source.poll(0, 10)] == [b"a"]
    assert source.exhausted()


def test_a_live_feed_is_not_exhausted_before_its_end_of_input() -> None:
    broker = LocalBroker()
    broker.expect_more()
    source = _source(broker)
    assert source.poll(0, 10) == [] and not source.exhausted()
    broker.append("events", None, b"late")
    assert [m.value for m in source.poll(0, 10)] == [b"late"]
    assert not source.exhausted()
    broker.end_of_input()
    assert source.exhausted()


def test_standard_input_lines_become_records_then_end_the_input() -> None:
    """Read from the descriptor in chunks (a line may span two reads; the last may lack its
    newline)."""
    broker = LocalBroker()
    broker.expect_more()
    read_end, write_end = os.pipe()
    os.write(write_end, b'{"a": 1}\r\n\n  \nnot \xff json\n{"b"')
    os.write(write_end, b": 2}")
    os.close(write_end)
    _feed(read_end, broker, "events")
    os.close(read_end)
    assert [m.value for m in broker.messages("events")] == [
        b'{"a": 1}',
        b"not \xff json",
        b'{"b": 2}',
    ]
    assert broker.input_ended


def test_lines_split_across_reads_are_joined() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"first line\nsecond")
    os.write(write_end, b" line\nthird")
    os.close(write_end)
    assert list(_lines(read_end, chunk_bytes=4)) == [b"first line", b"second line", b"third"]
    os.close(read_end)
