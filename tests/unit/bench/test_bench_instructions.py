"""The instruction gate (bench/instructions.py, bench/corpus.py): its corpus is the same bytes every time
and folds without a rejection, and its check fails exactly when a row is over +15 % of its baseline."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from bench.corpus import ENRICHED_TOPIC, RAW_TOPIC, corpus, default_calendar, fold, payload, read_records
from bench.instructions import PARTS, Line, compare, failed, report, table, totals
from bench.workload_rows import ROWS, select
from core.compiled import hot_path


def test_the_corpus_is_the_same_bytes_every_time() -> None:
    for row in select("iso-16,epoch-s-4"):
        a, b = corpus(row, raw_events=300), corpus(row, raw_events=300)
        assert a.raw_logs == b.raw_logs and a.enriched_logs == b.enriched_logs
        assert len(a.raw_logs) == row.partitions and a.events == 600


@pytest.mark.parametrize("row", ROWS, ids=[r.key for r in ROWS])
def test_the_counted_work_reads_and_folds_every_event(row: object) -> None:
    c = corpus(row, raw_events=400)  # type: ignore[arg-type]
    raw_parts, enriched_parts = read_records(c)
    assert sum(map(len, raw_parts)) == sum(map(len, enriched_parts)) == 400
    delta = fold(default_calendar(), raw_parts, enriched_parts)
    # Every event valid and kept (the gate counts the path real events take), late ones on the day before.
    assert delta.processed == {RAW_TOPIC: 400, ENRICHED_TOPIC: 400}
    assert not delta.rejections and not delta.dropped_late
    assert sorted(delta.users) == ["2025-10-06", "2025-10-07"]
    # The counted write: every partition's offsets and both days' users, none left out as already seen.
    written = orjson.loads(payload(delta, raw_parts, enriched_parts))
    assert len(written["off"]) == 2 * row.partitions  # type: ignore[attr-defined]
    sent_users = sum(len(members) for _, _, members, _, _ in written["usersadd"])
    assert sent_users == sum(len(users) for users in delta.users.values()) > 0


def test_totals_are_read_from_the_dump() -> None:
    assert totals("events: Ir\nsummary: 136667848\n\nfn=x\n0 5\ntotals: 136667848\n") == 136_667_848
    assert totals("events: Ir\ntotals: 42\n") == 42
    with pytest.raises(ValueError):
        totals("events: Ir\n")


def test_a_row_fails_only_past_the_tolerance() -> None:
    lines = compare({"a": {"fold": 100.0, "record path": 10.0}}, {"a": {"fold": 115.0, "record path": 11.6}})
    assert [ln.over() for ln in lines] == [False, True]
    assert failed(lines) == [lines[1]]
    assert "| a | record path | 10 | 12 | 1.1600 | OVER +15% |" in table(lines)
    assert "| a | fold | 100 | 115 | 1.1500 | ok |" in table(lines)
    cheaper = compare({"a": {"fold": 100.0}}, {"a": {"fold": 60.0}})
    assert not failed(cheaper)


def test_a_row_without_a_baseline_fails_the_check() -> None:
    lines = compare({}, {"new": {"fold": 5.0}})
    assert lines == [Line("new", "fold", None, 5.0)] and failed(lines) == lines
    assert "no baseline: run --update" in table(lines)


def test_the_check_exits_one_and_the_measure_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"rows": {"a": {"fold": 100.0}}}))
    assert report({"a": {"fold": 114.0}}, gate=True, path=baseline) == 0
    assert "every row within +15%" in capsys.readouterr().out
    assert report({"a": {"fold": 120.0}}, gate=True, path=baseline) == 1
    assert "--update" in capsys.readouterr().out
    assert report({"a": {"fold": 120.0}}, gate=False, path=baseline) == 0


def test_the_committed_baseline_covers_every_row() -> None:
    stored = json.loads((Path(__file__).resolve().parents[3] / "bench" / "instructions_baseline.json").read_text())
    assert set(stored["rows"]) == {r.key for r in ROWS}
    assert all(set(parts) == set(PARTS) for parts in stored["rows"].values())


def test_a_baseline_counted_on_the_other_hot_path_fails_the_check_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    here = hot_path()
    other = "python" if here == "compiled" else "compiled"
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"environment": {"hot_path": other}, "rows": {"a": {"fold": 100.0}}}))
    # Within the tolerance, and still refused: the figures were counted on other code.
    assert report({"a": {"fold": 100.0}}, gate=True, path=baseline) == 1
    assert f"counted on the {other} hot path and this run is on the {here} one" in capsys.readouterr().out
    baseline.write_text(json.dumps({"environment": {"hot_path": here}, "rows": {"a": {"fold": 100.0}}}))
    assert report({"a": {"fold": 100.0}}, gate=True, path=baseline) == 0


def test_the_committed_baseline_was_counted_on_the_compiled_hot_path() -> None:
    stored = json.loads((Path(__file__).resolve().parents[3] / "bench" / "instructions_baseline.json").read_text())
    assert stored["environment"]["hot_path"] == "compiled"
