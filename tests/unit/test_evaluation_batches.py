"""How the Evaluate Lambda cuts the test split into InvokeEndpoint requests: by rows and by bytes."""

from __future__ import annotations

from stepml.evaluation import MAX_BATCH_BYTES, request_batches


def _body_bytes(batch) -> int:
    return len("\n".join(batch).encode("utf-8"))


def test_batches_keep_every_row_in_order_within_the_row_cap():
    rows = [f"{n},a" for n in range(25)]
    batches = list(request_batches(rows, 10, "endpoint e"))
    assert [(start, len(batch)) for start, batch in batches] == [(0, 10), (10, 10), (20, 5)]
    assert [row for _, batch in batches for row in batch] == rows


def test_a_request_body_never_exceeds_the_byte_cap():
    row = "é" * 999  # 1,998 bytes in UTF-8: counted in bytes, not characters
    rows = [row] * 1200
    batches = list(request_batches(rows, 10_000, "endpoint e"))
    assert all(_body_bytes(batch) <= MAX_BATCH_BYTES for _, batch in batches)
    assert _body_bytes(batches[0][1]) + len(row.encode()) + 1 > MAX_BATCH_BYTES, "each batch is as full as allowed"
    assert sum(len(batch) for _, batch in batches) == 1200


def test_a_row_longer_than_the_cap_goes_alone():
    rows = ["1", "x" * (MAX_BATCH_BYTES + 1), "2"]
    assert [list(batch) for _, batch in request_batches(rows, 100, "endpoint e")] == [["1"], [rows[1]], ["2"]]
