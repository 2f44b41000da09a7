from __future__ import annotations

import pytest

from airflow_provider_hpcai.advisor.swf import parse_swf, read_swf, swf_arrays
from airflow_provider_hpcai.exceptions import InvalidJobSpecError

TEXT = """; Version: 2.2
; MaxProcs: 100
; Partition:  1  pbatch
; Partition:  2  pdebug
; a free comment without key
1 0 10 3600 8 -1 -1 8 7200 -1 1 3 1 -1 -1 -1 -1 -1
2 60 -1 120 4 -1 -1 -1 -1 -1 0 4 1 12 -1 1 -1 -1
this line is garbage
3 120 0 30 2 -1 -1 2 600 -1 1 3
4 180 0 abc 2 -1 -1 2 600 -1 1 3 1 -1 -1 -1 -1 -1

5 240 0 30 2 -1 -1 2 600 -1 5 3 1 -1 -1 -1 -1 -1
"""


def test_header_records_and_unknowns():
    trace = parse_swf(TEXT.splitlines())
    assert trace.header["MaxProcs"] == "100"
    assert trace.header["Partition"] == ["1  pbatch", "2  pdebug"]
    assert trace.max_processors == 100
    assert [r.job_id for r in trace.records] == [1, 2, 5]
    first, second, fifth = trace.records
    assert first.run_time == 3600 and first.requested_time == 7200 and first.state == "COMPLETED"
    assert second.wait_time is None and second.requested_processors is None
    assert second.processors == 4  # falls back to allocated processors
    assert second.executable == 12 and second.state == "FAILED"
    assert fifth.state == "CANCELLED"


def test_malformed_lines_are_skipped_and_counted():
    trace = parse_swf(TEXT.splitlines())
    assert trace.skipped == 3
    assert trace.skipped_lines == [8, 9, 10]


def test_arrays_keep_minus_one_for_unknown():
    cols = swf_arrays(parse_swf(TEXT.splitlines()))
    assert list(cols["run_time"]) == [3600.0, 120.0, 30.0]
    assert cols["requested_time"][1] == -1.0


def test_missing_file_says_what_to_pass(tmp_path):
    with pytest.raises(InvalidJobSpecError, match="does not exist"):
        read_swf(tmp_path / "nope.swf")


def test_read_file(swf_file):
    trace = read_swf(swf_file)
    assert len(trace.records) == 1200 and trace.skipped == 0


def test_read_gzip_by_magic_bytes_and_suffix(tmp_path):
    import gzip

    packed = gzip.compress(TEXT.encode())
    for name in ("trace.swf.gz", "trace.swf"):  # the magic bytes decide, not the name
        path = tmp_path / name
        path.write_bytes(packed)
        trace = read_swf(path)
        assert [r.job_id for r in trace.records] == [1, 2, 5] and trace.skipped == 3
        assert trace.max_processors == 100
    plain = tmp_path / "plain.swf.gz"  # a .gz name on plain text is still read
    plain.write_text(TEXT)
    assert len(read_swf(plain).records) == 3


def test_truncated_gzip_says_so(tmp_path):
    import gzip

    path = tmp_path / "cut.swf.gz"
    path.write_bytes(gzip.compress(TEXT.encode() * 50)[:-30])
    with pytest.raises(InvalidJobSpecError, match="gzip"):
        read_swf(path)


def test_cli_evaluates_a_gzip_trace(swf_file, tmp_path, capsys):
    import gzip
    import json

    from airflow_provider_hpcai.advisor.cli import main

    packed = tmp_path / "synthetic.swf.gz"
    packed.write_bytes(gzip.compress(swf_file.read_bytes()))
    assert main(["advisor", "evaluate", "--swf", str(packed), "--json", "--no-schedule"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["jobs"] == 1200 and out["trace"] == "synthetic.swf.gz"
