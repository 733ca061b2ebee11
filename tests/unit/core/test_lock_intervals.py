import overlord.tasks  # noqa: F401  (registers the task types whose hooks are exercised)
from overlord.core.lock_intervals import condense, declared_lock_intervals
from overlord.isotime import Interval, parse_instant_ms


def _spec(intervals, gran="day"):
    return {"type": "index_parallel", "spec": {"dataSchema": {"granularitySpec": {
        "segmentGranularity": gran, "intervals": intervals}}}}  # fmt: skip


def iv(text: str) -> Interval:
    return Interval.parse(text)


def test_index_intervals_are_bucketed_and_condensed():
    got = declared_lock_intervals(_spec(["2015-09-12T05:00Z/2015-09-12T07:00Z", "2015-09-12/2015-09-14"]))
    assert got == [iv("2015-09-12/2015-09-14")]
    assert declared_lock_intervals(_spec(["2015-09-12T05:00Z/2015-09-12T07:00Z"], "hour")) == [
        iv("2015-09-12T05:00Z/2015-09-12T07:00Z")
    ]
    assert declared_lock_intervals(_spec(["2015-09-12T05:30Z/2015-09-12T06:10Z"], "hour")) == [
        iv("2015-09-12T05:00Z/2015-09-12T07:00Z")
    ]


def test_other_shapes():
    kill = {"type": "kill", "dataSource": "wiki", "interval": "2020-01-01/2020-02-01"}
    assert declared_lock_intervals(kill) == [iv("2020-01-01/2020-02-01")]
    compact = {
        "type": "compact",
        "dataSource": "wiki",
        "ioConfig": {"inputSpec": {"type": "interval", "interval": "2020-01-01/2020-01-02"}},
    }
    assert declared_lock_intervals(compact) == [iv("2020-01-01/2020-01-02")]
    assert declared_lock_intervals(_spec([])) == []
    assert declared_lock_intervals({"type": "noop", "interval": "2020-01-01/2020-01-02"}) == [
        iv("2020-01-01/2020-01-02")
    ]
    assert declared_lock_intervals(_spec(["garbage"])) == []


def test_condense():
    a = Interval(0, 10)
    assert condense([Interval(10, 20), a, Interval(5, 8), Interval(30, 40)]) == [Interval(0, 20), Interval(30, 40)]
    assert parse_instant_ms("1970-01-01") == 0
