"""The embedded broker: a finite input ends when read; a live feed only at its end of input;
records are kept only until committed; the CLI's output sink keeps nothing."""

from __future__ import annotations

import io
import os
import threading
import time

import pytest

from consumer.backends.local import LineSink, LocalBroker, LocalSource
from consumer.cli import _feed, _lines
from consumer.messages import Partition


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


def test_a_line_longer_than_the_cap_is_cut_and_its_rest_skipped() -> None:
    """A feed without newlines must not grow memory: the cut line fails as an event (and is
    dead-lettered), the lines after it come through whole."""
    read_end, write_end = os.pipe()
    os.write(write_end, b"short\n" + b"x" * 50 + b"\nafter\n" + b"y" * 9 + b"z" * 3 + b"\nend")
    os.write(write_end, b"\n" + b"w" * 30)
    os.close(write_end)
    lines = list(_lines(read_end, chunk_bytes=4, max_bytes=10))
    os.close(read_end)
    assert lines == [b"short", b"x" * 10, b"after", b"y" * 9 + b"z", b"end", b"w" * 10]


def test_a_live_feed_stops_reading_while_its_backlog_is_full() -> None:
    """Backpressure: unfinished events wait in the pipe (blocking the writer), not in memory."""
    broker = LocalBroker()
    broker.expect_more()
    source = _source(broker)
    read_end, write_end = os.pipe()
    os.write(write_end, b"".join(b"e%d\n" % i for i in range(5)))
    os.close(write_end)
    feeder = threading.Thread(target=_feed, args=(read_end, broker, "events", 2), daemon=True)
    feeder.start()
    time.sleep(0.5)
    assert [m.value for m in broker.messages("events")] == [b"e0", b"e1"]
    assert feeder.is_alive() and not broker.input_ended
    assert [m.offset for m in source.poll(0, 10)] == [0, 1]
    source.commit({Partition("events", 0): 2})  # both finished: room for two more
    deadline = time.monotonic() + 5
    while len(broker.messages("events")) < 2 or broker.messages("events")[-1].offset < 3:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert [m.value for m in broker.messages("events")] == [b"e2", b"e3"]
    source.commit({Partition("events", 0): 4})
    feeder.join(timeout=5)
    assert broker.input_ended and [m.value for m in broker.messages("events")] == [b"e4"]
    os.close(read_end)


def test_records_every_group_committed_past_are_dropped_and_offsets_stay_absolute() -> None:
    """A live feed runs as long as uploads come: the broker must not keep every event it read."""
    broker = LocalBroker()
    partition = Partition("events", 0)
    for value in (b"a", b"b", b"c"):
        broker.append("events", None, value)
    source = _source(broker)
    assert [m.offset for m in source.poll(0, 10)] == [0, 1, 2]
    source.commit({partition: 2})
    assert [(m.offset, m.value) for m in broker.messages("events")] == [(2, b"c")]
    assert broker.append("events", None, b"d").offset == 3
    restarted = _source(broker)  # resumes after the committed offset, over the dropped records
    assert [m.value for m in restarted.poll(0, 10)] == [b"c", b"d"]
    assert broker.read(partition, 0, 10) == broker.messages("events")  # from the first kept
    other = LocalSource(broker, "events", "other")
    other.subscribe(lambda _: None, lambda _: None, lambda _: None)
    other.commit({partition: 3})  # the first group is still at 2: "c" stays
    assert [m.value for m in broker.messages("events")] == [b"c", b"d"]
    restarted.commit({partition: 4})
    assert [m.value for m in broker.messages("events")] == [b"d"]
    assert restarted.lag() == {partition: 0}


def test_the_line_sink_writes_each_value_as_a_flushed_line_and_keeps_nothing() -> None:
    stream = io.StringIO()
    sink = LineSink(stream)
    assert sink.produce("verdicts", b"k", b'{"a": 1}').result() is None
    assert sink.produce("dlq", None, b"\xff").result() is None
    assert stream.getvalue() == '{"a": 1}\n\ufffd\n'
    stream.close()
    with pytest.raises(ValueError):  # the error reaches the publisher through the future
        sink.produce("verdicts", None, b"{}").result()
