"""Tests for leanrec.data.io: readers for CSV/TSV/JSONL/Parquet and their validation.

Every validation rule has a test that checks the exact file, line and field of the
issue, because pointing at the right place is the point of the module.
"""

from __future__ import annotations

import json
import math
import pickle
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from leanrec.data.io import (
    DataValidationError,
    EventColumns,
    ItemColumns,
    ValidationIssue,
    ValidationReport,
    detect_format,
    load_dataset,
    read_events,
    read_items,
)
from leanrec.data.schema import Dataset, Items


def write(path, text: str):
    path.write_text(text, encoding="utf-8", newline="")
    return path


def write_jsonl(path, records):
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def iso(s: str) -> float:
    return datetime.fromisoformat(s).replace(tzinfo=timezone.utc).timestamp()


def simple_items(tmp_path, ids=(1, 2, 3)) -> Items:
    p = write(tmp_path / "catalogue.csv", "item_id,text\n" + "".join(f"{i},item {i}\n" for i in ids))
    items, _ = read_items(p)
    return items


def issues_of(call, *args, **kwargs) -> list[ValidationIssue]:
    """Run a reader in strict mode and return the issues of the error it must raise."""
    with pytest.raises(DataValidationError) as info:
        call(*args, **kwargs)
    return info.value.issues


def where(issue: ValidationIssue):
    return issue.file, issue.line, issue.field


# --------------------------------------------------------------------------- happy paths

ITEM_COLS = ItemColumns(
    item_id="movie_id",
    text_fields=("title", ("description", "overview")),
    categorical_fields=(("genres", "genre_list"),),
    numeric_fields=("year",),
)
EVENT_COLS = EventColumns(user_id="uid", item_id="mid", timestamp="when", value="rating", kind="action")


def test_csv_happy_path_with_mapping(tmp_path):
    items_p = write(
        tmp_path / "items.csv",
        "movie_id,title,overview,genre_list,year\n"
        '10,Heat,"A heist, in LA",Crime| Drama ,1995\n'
        "2,Up,,Animation,2009\n"
        "7,,Only an overview,,\n",
    )
    events_p = write(
        tmp_path / "events.csv",
        "uid,mid,when,rating,action\n"
        "u1,10,1700000000,4.5,view\n"
        "u1,2,2023-01-01T00:00:00Z,,purchase\n"
        "u2,007,2023-01-01T02:00:00+02:00,3,\n"
        "u2,10,2023-06-01 12:30:00,1e0,view\n",
    )
    ds, report = load_dataset(items_p, events_p, ITEM_COLS, EVENT_COLS, name="tiny")
    assert isinstance(ds, Dataset) and ds.name == "tiny"
    assert report.ok and report.n_rows_read == 7 and report.n_rows_kept == 7

    f = ds.items.frame
    assert f["item_id"].tolist() == [2, 7, 10]  # numeric id order
    assert f["item_id"].dtype == np.int64
    assert f["text"].tolist() == ["Up", "Only an overview", "Heat. A heist, in LA"]
    assert f["genres"].tolist() == [["Animation"], [], ["Crime", "Drama"]]
    assert f["year"].iloc[0] == 2009.0 and math.isnan(f["year"].iloc[1])
    assert ds.items.text_fields == ("title", "description")
    assert ds.items.categorical_fields == ("genres",)
    assert ds.items.numeric_fields == ("year",)

    e = ds.events.frame
    assert e["item_id"].dtype == np.int64
    assert e["item_id"].tolist() == [10, 2, 7, 10]
    assert e["timestamp"].tolist() == [
        1700000000.0,
        iso("2023-01-01T00:00:00"),
        iso("2023-01-01T00:00:00"),  # +02:00 converted to UTC
        iso("2023-06-01T12:30:00"),  # naive means UTC
    ]
    assert e["value"].iloc[0] == 4.5 and math.isnan(e["value"].iloc[1])
    assert e["kind"].tolist() == ["view", "purchase", "", "view"]
    assert e["user_id"].tolist() == ["u1", "u1", "u2", "u2"]


def test_tsv_happy_path(tmp_path):
    items_p = write(
        tmp_path / "items.tsv",
        "movie_id\ttitle\toverview\tgenre_list\tyear\n"
        "a1\tHeat, the movie\t\tCrime|Drama\t1995\n"
        "b2\tUp\tBalloons\t\t\n",
    )
    events_p = write(
        tmp_path / "events.tsv",
        "uid\tmid\twhen\trating\taction\n"
        "1\ta1\t1700000000.5\t5\tview\n"
        "2\tb2\t2024-02-29\t\t\n",
    )
    ds, report = load_dataset(items_p, events_p, ITEM_COLS, EVENT_COLS)
    assert report.ok
    f = ds.items.frame
    assert f["item_id"].tolist() == ["a1", "b2"]
    assert f["text"].tolist() == ["Heat, the movie", "Up. Balloons"]
    assert f["genres"].tolist() == [["Crime", "Drama"], []]
    e = ds.events.frame
    assert e["user_id"].tolist() == [1, 2]
    assert e["item_id"].tolist() == ["a1", "b2"]
    assert e["timestamp"].tolist() == [1700000000.5, iso("2024-02-29T00:00:00")]


def test_jsonl_happy_path(tmp_path):
    items_p = write_jsonl(
        tmp_path / "items.jsonl",
        [
            {"movie_id": 3, "title": "Alien", "overview": "In space", "genre_list": ["Horror", " SciFi "], "year": 1979},
            "",  # blank lines are skipped
            {"movie_id": 1, "title": "Amelie", "genre_list": "Comedy|Romance", "year": None, "extra": True},
        ],
    )
    events_p = write_jsonl(
        tmp_path / "events.jsonl",
        [
            {"uid": "u9", "mid": 3, "when": 1600000000, "rating": 4, "action": "view"},
            {"uid": "u9", "mid": "1", "when": "2021-05-05T05:05:05.250+00:00", "rating": None},
        ],
    )
    ds, report = load_dataset(items_p, events_p, ITEM_COLS, EVENT_COLS)
    assert report.ok and report.n_rows_read == 4
    f = ds.items.frame
    assert f["item_id"].tolist() == [1, 3]
    assert f["text"].tolist() == ["Amelie", "Alien. In space"]
    assert f["genres"].tolist() == [["Comedy", "Romance"], ["Horror", "SciFi"]]
    assert math.isnan(f["year"].iloc[0]) and f["year"].iloc[1] == 1979.0
    e = ds.events.frame
    assert e["item_id"].tolist() == [3, 1]
    assert e["timestamp"].tolist() == [1600000000.0, iso("2021-05-05T05:05:05.250")]
    assert e["value"].iloc[0] == 4.0 and math.isnan(e["value"].iloc[1])
    assert e["kind"].tolist() == ["view", ""]


def test_parquet_happy_path(tmp_path):
    items_p = tmp_path / "items.parquet"
    pd.DataFrame(
        {
            "movie_id": ["m2", "m1"],
            "title": ["Two", "One"],
            "overview": [None, "First"],
            "genre_list": [["a", "b"], []],
            "year": [2001.0, None],
        }
    ).to_parquet(items_p)
    events_p = tmp_path / "events.parquet"
    pd.DataFrame(
        {
            "uid": [5, 6, 7],
            "mid": ["m1", "m2", "m1"],
            "when": pd.to_datetime(["2020-01-01T00:00:00", "2020-01-02T00:00:00", "2020-01-03T00:00:00"]),
            "rating": [1.0, None, 3.0],
            "action": ["click", None, "buy"],
        }
    ).to_parquet(events_p)
    ds, report = load_dataset(items_p, events_p, ITEM_COLS, EVENT_COLS)
    assert report.ok and report.n_rows_kept == 5
    f = ds.items.frame
    assert f["item_id"].tolist() == ["m1", "m2"]
    assert f["text"].tolist() == ["One. First", "Two"]
    assert f["genres"].tolist() == [[], ["a", "b"]]
    e = ds.events.frame
    assert e["timestamp"].tolist() == [iso(f"2020-01-0{d}T00:00:00") for d in (1, 2, 3)]
    assert math.isnan(e["value"].iloc[1])
    assert e["kind"].tolist() == ["click", "", "buy"]


def test_parquet_numeric_string_and_tz_timestamps(tmp_path):
    items = simple_items(tmp_path)
    p = tmp_path / "events.parquet"
    pd.DataFrame(
        {
            "user_id": ["a", "b"],
            "item_id": [1, 2],
            "timestamp": pd.to_datetime(["2020-01-01T02:00:00+02:00", "2020-01-01T00:00:00+00:00"], utc=True),
        }
    ).to_parquet(p)
    events, _ = read_events(p, items)
    assert events.frame["timestamp"].tolist() == [iso("2020-01-01T00:00:00")] * 2
    p2 = tmp_path / "events2.parquet"
    pd.DataFrame({"user_id": ["a"], "item_id": ["3"], "timestamp": ["2020-01-01T00:00:00Z"]}).to_parquet(p2)
    events, _ = read_events(p2, items)
    assert events.frame["item_id"].tolist() == [3]
    assert events.frame["timestamp"].tolist() == [iso("2020-01-01T00:00:00")]


def test_format_override_and_detection(tmp_path):
    p = write(tmp_path / "items.txt", "item_id\ttext\n1\thello\n")
    items, _ = read_items(p, format="tsv")
    assert items.texts == ["hello"]
    with pytest.raises(ValueError, match="items.txt"):
        read_items(p)
    with pytest.raises(ValueError, match="unknown format"):
        read_items(p, format="xml")
    assert detect_format("x.NDJSON") == "jsonl"
    assert detect_format("x.csv") == "csv"
    assert detect_format("x.tsv") == "tsv"
    assert detect_format("x.parquet") == "parquet"


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_items(missing)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_events(missing, simple_items(tmp_path))


def test_csv_with_bom_and_crlf(tmp_path):
    p = tmp_path / "items.csv"
    p.write_bytes("\ufeffitem_id,text\r\n1,a\r\n2,\r\n".encode("utf-8"))
    (issue,) = issues_of(read_items, p)
    assert where(issue) == (str(p), 3, "text")


# --------------------------------------------------------------------------- issue format


def test_issue_str_format():
    assert str(ValidationIssue("items.csv", 14, "text", "empty text")) == "items.csv:14: field 'text': empty text"
    assert str(ValidationIssue("x.parquet", 3, "text", "empty text", unit="row")) == "x.parquet: row 3: field 'text': empty text"
    assert str(ValidationIssue("x.jsonl", 2, None, "malformed JSON")) == "x.jsonl:2: malformed JSON"
    assert str(ValidationIssue("x.csv", None, "a", "m")) == "x.csv: field 'a': m"


def test_error_message_lists_count_and_first_twenty():
    issues = [ValidationIssue("f.csv", i, "text", "empty text") for i in range(2, 27)]
    err = DataValidationError(issues)
    assert isinstance(err, ValueError)
    msg = str(err)
    assert msg.startswith("25 data problems found:")
    assert "f.csv:21: field 'text'" in msg and "f.csv:22:" not in msg
    assert "... and 5 more" in msg
    again = pickle.loads(pickle.dumps(err))
    assert again.issues == issues


def test_report_properties():
    r = ValidationReport([], 3, 3, ("a.csv",))
    assert r.ok and r.n_rows_dropped == 0 and "read 3 rows" in r.summary()


# --------------------------------------------------------------------------- rules: columns and parsing


def test_missing_required_column_csv_is_line_one(tmp_path):
    p = write(tmp_path / "items.csv", "item_id,title\n1,a\n")
    issues = issues_of(read_items, p, ItemColumns(text_fields=("title", "overview"), numeric_fields=("year",)))
    assert [where(i) for i in issues] == [(str(p), 1, "overview"), (str(p), 1, "year")]
    # Nothing is usable without the column, so non-strict mode raises too.
    with pytest.raises(DataValidationError):
        read_items(p, ItemColumns(text_fields=("overview",)), strict=False)


def test_missing_required_column_events_csv(tmp_path):
    p = write(tmp_path / "events.csv", "user_id,item_id\n1,1\n")
    (issue,) = issues_of(read_events, p, simple_items(tmp_path))
    assert where(issue) == (str(p), 1, "timestamp")


def test_missing_mapped_value_column_csv(tmp_path):
    p = write(tmp_path / "events.csv", "user_id,item_id,timestamp\n1,1,5\n")
    (issue,) = issues_of(read_events, p, simple_items(tmp_path), EventColumns(value="rating"))
    assert where(issue) == (str(p), 1, "rating")


def test_missing_required_column_parquet(tmp_path):
    p = tmp_path / "items.parquet"
    pd.DataFrame({"item_id": [1]}).to_parquet(p)
    (issue,) = issues_of(read_items, p)
    assert (issue.file, issue.line, issue.field, issue.unit) == (str(p), None, "text", "row")


def test_missing_key_jsonl_names_the_record_line(tmp_path):
    p = write_jsonl(
        tmp_path / "items.jsonl",
        [{"item_id": 1, "text": "a"}, {"text": "b"}, {"item_id": 3, "text": "c"}],
    )
    (issue,) = issues_of(read_items, p)
    assert where(issue) == (str(p), 2, "item_id")
    assert "missing" in issue.message

    items = simple_items(tmp_path)
    e = write_jsonl(
        tmp_path / "events.jsonl",
        [{"user_id": 1, "item_id": 1, "timestamp": 1}, {"user_id": 1, "item_id": 1}],
    )
    (issue,) = issues_of(read_events, e, items)
    assert where(issue) == (str(e), 2, "timestamp")


def test_malformed_json_line(tmp_path):
    p = write_jsonl(
        tmp_path / "items.jsonl",
        [{"item_id": 1, "text": "a"}, '{"item_id": 2, "text": "b"', "[1, 2]", {"item_id": 4, "text": "d"}],
    )
    issues = issues_of(read_items, p)
    assert [where(i) for i in issues] == [(str(p), 2, None), (str(p), 3, None)]
    assert "malformed JSON" in issues[0].message
    assert "expected a JSON object" in issues[1].message
    items, report = read_items(p, strict=False)
    assert items.ids.tolist() == [1, 4]
    assert report.n_rows_read == 4 and report.n_rows_kept == 2


def test_csv_wrong_number_of_fields(tmp_path):
    p = write(tmp_path / "items.csv", "item_id,text\n1,a\n2,b,extra\n3\n")
    issues = issues_of(read_items, p)
    assert [where(i) for i in issues] == [(str(p), 3, None), (str(p), 4, None)]


# --------------------------------------------------------------------------- rules: ids


def test_duplicate_item_ids_report_later_rows_and_first_line(tmp_path):
    p = write(tmp_path / "items.csv", "item_id,text\n5,a\n6,b\n5,c\n5,d\n")
    issues = issues_of(read_items, p)
    assert [where(i) for i in issues] == [(str(p), 4, "item_id"), (str(p), 5, "item_id")]
    assert all("first on line 2" in i.message for i in issues)
    items, report = read_items(p, strict=False)
    assert items.texts == ["a", "b"]  # the first occurrence is kept


def test_duplicate_ids_that_load_as_the_same_integer(tmp_path):
    p = write(tmp_path / "items.csv", "item_id,text\n7,a\n007,b\n")
    (issue,) = issues_of(read_items, p)
    assert where(issue) == (str(p), 3, "item_id")
    assert "first on line 2" in issue.message


def test_duplicate_ids_parquet_say_row(tmp_path):
    p = tmp_path / "items.parquet"
    pd.DataFrame({"item_id": ["x", "y", "x"], "text": ["a", "b", "c"]}).to_parquet(p)
    (issue,) = issues_of(read_items, p)
    assert (issue.line, issue.field, issue.unit) == (3, "item_id", "row")
    assert "first on row 1" in issue.message
    assert str(issue).startswith(f"{p}: row 3: field 'item_id'")


def test_empty_or_missing_item_id(tmp_path):
    p = write(tmp_path / "items.csv", "item_id,text\n,a\n   ,b\n3,c\n")
    issues = issues_of(read_items, p)
    assert [where(i) for i in issues] == [(str(p), 2, "item_id"), (str(p), 3, "item_id")]
    assert issues[0].message == "empty item id"
    j = write_jsonl(tmp_path / "items.jsonl", [{"item_id": None, "text": "a"}, {"item_id": 2, "text": "b"}])
    (issue,) = issues_of(read_items, j)
    assert where(issue) == (str(j), 1, "item_id")


def test_empty_user_id(tmp_path):
    items = simple_items(tmp_path)
    p = write(tmp_path / "events.csv", "user_id,item_id,timestamp\nu1,1,1\n ,2,2\n")
    (issue,) = issues_of(read_events, p, items)
    assert where(issue) == (str(p), 3, "user_id")
    assert issue.message == "empty user id"


def test_unknown_item_ids(tmp_path):
    items = simple_items(tmp_path)
    p = write(tmp_path / "events.csv", "user_id,item_id,timestamp\nu1,1,1\nu1,99,2\nu2,abc,3\nu2,03,4\n")
    issues = issues_of(read_events, p, items)
    assert [where(i) for i in issues] == [(str(p), 3, "item_id"), (str(p), 4, "item_id")]
    assert "unknown item id '99'" in issues[0].message
    events, report = read_events(p, items, strict=False)
    assert events.frame["item_id"].tolist() == [1, 3]
    assert report.n_rows_kept == 2


def test_large_integer_ids_stay_exact_next_to_unknown_ids(tmp_path):
    big = 123456789012345678
    items = simple_items(tmp_path, ids=(big, 1))
    p = write(tmp_path / "events.csv", f"user_id,item_id,timestamp\nu,{big},1\nu,nope,2\nu,{big + 1},3\n")
    events, report = read_events(p, items, strict=False)
    assert events.frame["item_id"].tolist() == [big]
    assert [i.line for i in report.issues] == [3, 4]


# --------------------------------------------------------------------------- rules: text


def test_empty_and_whitespace_text(tmp_path):
    p = write(tmp_path / "items.csv", 'item_id,text\n1,ok\n2,\n3,"   "\n')
    issues = issues_of(read_items, p)
    assert [where(i) for i in issues] == [(str(p), 3, "text"), (str(p), 4, "text")]
    assert [i.message for i in issues] == ["empty text", "whitespace-only text"]


def test_non_string_text_in_jsonl(tmp_path):
    p = write_jsonl(
        tmp_path / "items.jsonl",
        [{"item_id": 1, "text": 42}, {"item_id": 2, "text": ["a", "b"]}, {"item_id": 3, "text": "fine"}, {"item_id": 4, "text": None}],
    )
    issues = issues_of(read_items, p)
    assert [where(i) for i in issues] == [(str(p), 1, "text"), (str(p), 2, "text"), (str(p), 4, "text")]
    assert "must be a string" in issues[0].message and "must be a string" in issues[1].message


def test_several_text_fields_bad_only_when_all_empty(tmp_path):
    p = write(tmp_path / "items.csv", "item_id,title,overview\n1,,has overview\n2,  ,\n3,title,\n")
    cols = ItemColumns(text_fields=("title", "overview"))
    (issue,) = issues_of(read_items, p, cols)
    assert where(issue) == (str(p), 3, "title, overview")
    items, _ = read_items(p, cols, strict=False)
    assert items.texts == ["has overview", "title"]


def test_parquet_empty_text_reports_row(tmp_path):
    p = tmp_path / "items.parquet"
    pd.DataFrame({"item_id": [1, 2, 3], "text": ["a", "", None]}).to_parquet(p)
    issues = issues_of(read_items, p)
    assert [(i.line, i.field, i.unit) for i in issues] == [(2, "text", "row"), (3, "text", "row")]
    assert str(issues[0]) == f"{p}: row 2: field 'text': empty text"


# --------------------------------------------------------------------------- rules: timestamps, values, numbers


def test_bad_timestamps_csv(tmp_path):
    items = simple_items(tmp_path)
    p = write(
        tmp_path / "events.csv",
        "user_id,item_id,timestamp\nu,1,1\nu,1,yesterday\nu,1,\nu,1,nan\nu,1,inf\nu,1,2023-13-01\n",
    )
    issues = issues_of(read_events, p, items)
    assert [where(i) for i in issues] == [(str(p), n, "timestamp") for n in (3, 4, 5, 6, 7)]
    assert "unparsable" in issues[0].message
    assert "empty" in issues[1].message
    assert "NaN" in issues[2].message


def test_bad_timestamps_jsonl(tmp_path):
    items = simple_items(tmp_path)
    p = write_jsonl(
        tmp_path / "events.jsonl",
        [
            '{"user_id": 1, "item_id": 1, "timestamp": NaN}',
            {"user_id": 1, "item_id": 1, "timestamp": None},
            {"user_id": 1, "item_id": 1, "timestamp": True},
            {"user_id": 1, "item_id": 1, "timestamp": [1]},
            {"user_id": 1, "item_id": 1, "timestamp": 5},
        ],
    )
    issues = issues_of(read_events, p, items)
    assert [where(i) for i in issues] == [(str(p), n, "timestamp") for n in (1, 2, 3, 4)]


def test_bad_values(tmp_path):
    items = simple_items(tmp_path)
    p = write(
        tmp_path / "events.csv",
        "user_id,item_id,timestamp,rating\nu,1,1,4\nu,1,2,abc\nu,1,3,NaN\nu,1,4,inf\nu,1,5,\nu,1,6, 2.5 \n",
    )
    cols = EventColumns(value="rating")
    issues = issues_of(read_events, p, items, cols)
    assert [where(i) for i in issues] == [(str(p), n, "rating") for n in (3, 4, 5)]
    events, report = read_events(p, items, cols, strict=False)
    values = events.frame["value"].tolist()
    assert values[0] == 4.0 and math.isnan(values[1]) and values[2] == 2.5  # empty means NaN
    assert len(report.issues) == 3


def test_bad_values_jsonl(tmp_path):
    items = simple_items(tmp_path)
    p = write_jsonl(
        tmp_path / "events.jsonl",
        [
            '{"user_id": 1, "item_id": 1, "timestamp": 1, "value": NaN}',
            {"user_id": 1, "item_id": 1, "timestamp": 1, "value": True},
            {"user_id": 1, "item_id": 1, "timestamp": 1, "value": "x"},
            {"user_id": 1, "item_id": 1, "timestamp": 1},
        ],
    )
    issues = issues_of(read_events, p, items, EventColumns(value="value"))
    assert [where(i) for i in issues] == [(str(p), n, "value") for n in (1, 2, 3)]


def test_non_numeric_numeric_item_field(tmp_path):
    p = write(tmp_path / "items.csv", "item_id,text,price\n1,a,1.5\n2,b,cheap\n3,c,\n4,d,-inf\n")
    cols = ItemColumns(numeric_fields=("price",))
    issues = issues_of(read_items, p, cols)
    assert [where(i) for i in issues] == [(str(p), 3, "price"), (str(p), 5, "price")]
    assert "not a number: 'cheap'" in issues[0].message


def test_bad_categorical_value_jsonl(tmp_path):
    p = write_jsonl(
        tmp_path / "items.jsonl",
        [{"item_id": 1, "text": "a", "tags": {"x": 1}}, {"item_id": 2, "text": "b", "tags": ["ok", 3.5]}],
    )
    issues = issues_of(read_items, p, ItemColumns(categorical_fields=("tags",)))
    assert [where(i) for i in issues] == [(str(p), 1, "tags"), (str(p), 2, "tags")]


# --------------------------------------------------------------------------- strict vs lenient


BAD_ITEMS = "item_id,text,price\n1,a,1\n,b,2\n3,,3\n4,d,x\n5,e,5\n1,dup,6\n"


def test_strict_raises_with_all_issues(tmp_path):
    p = write(tmp_path / "items.csv", BAD_ITEMS)
    with pytest.raises(DataValidationError) as info:
        read_items(p, ItemColumns(numeric_fields=("price",)))
    err = info.value
    assert [where(i) for i in err.issues] == [
        (str(p), 3, "item_id"),
        (str(p), 4, "text"),
        (str(p), 5, "price"),
        (str(p), 7, "item_id"),
    ]
    assert str(err).startswith("4 data problems found:")
    assert err.report is not None and err.report.n_rows_read == 6


def test_lenient_keeps_good_rows_and_reports_bad(tmp_path):
    p = write(tmp_path / "items.csv", BAD_ITEMS)
    items, report = read_items(p, ItemColumns(numeric_fields=("price",)), strict=False)
    assert items.ids.tolist() == [1, 5]
    assert items.frame["price"].tolist() == [1.0, 5.0]
    assert not report.ok
    assert (report.n_rows_read, report.n_rows_kept, report.n_rows_dropped) == (6, 2, 4)
    assert [i.line for i in report.issues] == [3, 4, 5, 7]


def test_multiline_quoted_field_keeps_line_numbers(tmp_path):
    p = write(
        tmp_path / "items.csv",
        'item_id,text\n1,"first line\nsecond line\nthird line"\n2,ok\n3,\n4,"a\r\nb"\n5,  \n',
    )
    issues = issues_of(read_items, p)
    assert [where(i) for i in issues] == [(str(p), 6, "text"), (str(p), 9, "text")]
    items, _ = read_items(p, strict=False)
    assert items.texts[0] == "first line\nsecond line\nthird line"


def test_load_dataset_collects_issues_of_both_files(tmp_path):
    items_p = write(tmp_path / "items.csv", "item_id,text\n1,a\n2,\n")
    events_p = write(tmp_path / "events.csv", "user_id,item_id,timestamp\nu,1,1\nu,2,2\nu,1,bad\n")
    with pytest.raises(DataValidationError) as info:
        load_dataset(items_p, events_p)
    assert [where(i) for i in info.value.issues] == [
        (str(items_p), 3, "text"),
        (str(events_p), 3, "item_id"),  # item 2 was rejected, so it is unknown
        (str(events_p), 4, "timestamp"),
    ]
    ds, report = load_dataset(items_p, events_p, strict=False)
    assert ds.n_items == 1 and len(ds.events) == 1
    assert report.n_rows_read == 5 and report.n_rows_kept == 2
    assert [r.files for r in report.parts] == [(str(items_p),), (str(events_p),)]


def test_empty_catalogue_and_log(tmp_path):
    items_p = write(tmp_path / "items.csv", "item_id,text\n")
    events_p = write(tmp_path / "events.csv", "user_id,item_id,timestamp\n")
    ds, report = load_dataset(items_p, events_p)
    assert ds.n_items == 0 and len(ds.events) == 0 and report.ok
    with pytest.raises(DataValidationError, match="empty file"):
        read_items(write(tmp_path / "blank.csv", ""))


def test_column_spec_checks():
    with pytest.raises(ValueError, match="joined text"):
        ItemColumns(text_fields=("title", "text"))
    with pytest.raises(ValueError, match="used twice"):
        ItemColumns(text_fields=("a",), numeric_fields=("a",))
    cols = ItemColumns(text_fields={"description": "overview"})
    assert cols.text_pairs == (("description", "overview"),)
    assert ItemColumns(text_fields="title").text_pairs == (("title", "title"),)


def test_invalid_utf8_names_the_line(tmp_path):
    p = tmp_path / "items.csv"
    p.write_bytes(b"item_id,text\n1,ok\n2,\xff\xfe\n")
    (issue,) = issues_of(read_items, p)
    assert (issue.file, issue.line) == (str(p), 3)
    j = tmp_path / "items.jsonl"
    j.write_bytes(b'{"item_id": 1, "text": "a"}\n{"item_id": 2, "text": "\xff"}\n')
    (issue,) = issues_of(read_items, j)
    assert (issue.file, issue.line) == (str(j), 2)


def test_parquet_files_is_the_file_or_the_sorted_visible_parquet_files_under_a_folder(tmp_path):
    """The one rule the encode job and the bulk load share for what an input folder holds."""
    from leanrec.data.formats import parquet_files

    frame = pd.DataFrame({"item_id": [1], "title": ["a"]})
    (tmp_path / "b" / "deep").mkdir(parents=True)
    for name in ("b/deep/z.parquet", "b/a.parquet", "c.parquet", ".hidden.parquet"):
        frame.to_parquet(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an input")
    assert parquet_files(tmp_path) == [tmp_path / "b/a.parquet", tmp_path / "b/deep/z.parquet", tmp_path / "c.parquet"]
    assert parquet_files(tmp_path / "c.parquet") == [tmp_path / "c.parquet"]
    with pytest.raises(FileNotFoundError, match=r"events file or folder .*missing does not exist"):
        parquet_files(tmp_path / "missing", "events")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty holds no \*\.parquet files"):
        parquet_files(tmp_path / "empty")
