"""A deterministic, realistic sample dataset: customer churn (binary, numeric and categorical).

The same seed and row count always give the same bytes, so demos and tests are repeatable.
``drift=True`` shifts the population (longer tenure, higher charges, more month-to-month
contracts) the way a real customer base drifts, for monitoring demos. Nothing is downloaded.
The columns match ``examples/datasets/churn.json``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

COLUMNS = (
    "customer_id",
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "support_calls",
    "contract",
    "payment_method",
    "internet_service",
    "churned",
)
CONTRACTS = ("month-to-month", "one-year", "two-year")
PAYMENT_METHODS = ("electronic-check", "mailed-check", "bank-transfer", "credit-card")
INTERNET_SERVICES = ("dsl", "fiber", "none")


class SampleDataError(ValueError):
    """Bad arguments to the generator."""


def _churn_columns(rng: np.random.Generator, rows: int, drift: bool) -> dict[str, np.ndarray]:
    """The dataset's draws, column by column (the order of the draws fixes the bytes)."""
    contract_p = (0.65, 0.2, 0.15) if drift else (0.5, 0.28, 0.22)
    contracts = rng.choice(len(CONTRACTS), size=rows, p=contract_p)
    payments = rng.choice(len(PAYMENT_METHODS), size=rows, p=(0.35, 0.2, 0.22, 0.23))
    internet = rng.choice(len(INTERNET_SERVICES), size=rows, p=(0.34, 0.44, 0.22))
    tenure = np.clip(rng.gamma(2.0, 14.0 if drift else 11.0, size=rows), 0, 72).round().astype(int)
    base = np.array([45.0, 80.0, 22.0])[internet] + (8.0 if drift else 0.0)
    monthly = np.clip(base + rng.normal(0, 12, size=rows), 18, 120).round(2)
    total = (monthly * np.maximum(tenure, 1) * rng.uniform(0.92, 1.02, size=rows)).round(2)
    calls = rng.poisson(1.2 + (contracts == 0) * 0.8, size=rows)
    logit = (
        -1.6
        + 1.5 * (contracts == 0)
        - 0.9 * (contracts == 2)
        - 0.045 * tenure
        + 0.022 * (monthly - 60)
        + 0.35 * calls
        + 0.5 * (payments == 0)
        + 0.4 * (internet == 1)
    )
    churned = rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))
    missing = rng.uniform(size=(rows, 4)) < 0.01
    return {
        "contracts": contracts,
        "payments": payments,
        "internet": internet,
        "tenure": tenure,
        "monthly": monthly,
        "total": total,
        "calls": calls,
        "churned": churned,
        "missing": missing,
    }


def _churn_records(columns: dict[str, np.ndarray], seed: int, start: int) -> Iterator[tuple[object, ...]]:
    """The rows of ``_churn_columns`` as tuples in ``COLUMNS`` order, ids numbered from ``start``."""
    missing = columns["missing"]
    for i in range(len(columns["tenure"])):
        yield (
            f"C{seed:02d}{start + i:07d}",
            "" if missing[i, 0] else int(columns["tenure"][i]),
            "" if missing[i, 1] else float(columns["monthly"][i]),
            "" if missing[i, 2] else float(columns["total"][i]),
            int(columns["calls"][i]),
            CONTRACTS[columns["contracts"][i]],
            "" if missing[i, 3] else PAYMENT_METHODS[columns["payments"][i]],
            INTERNET_SERVICES[columns["internet"][i]],
            "yes" if columns["churned"][i] else "no",
        )


def generate_churn_rows(rows: int, *, seed: int = 7, drift: bool = False) -> list[dict[str, object]]:
    """Rows of the churn dataset; about 1% of feature values are missing, as in real exports."""
    if rows < 1:
        raise SampleDataError(f"rows must be at least 1, got {rows}")
    rng = np.random.default_rng(seed + (1000 if drift else 0))
    columns = _churn_columns(rng, rows, drift)
    return [dict(zip(COLUMNS, record, strict=True)) for record in _churn_records(columns, seed, 0)]


def extra_feature_names(count: int) -> list[str]:
    """The names of ``stream_churn_csv``'s ``extra_numeric`` columns."""
    return [f"x{i:03d}" for i in range(count)]


def stream_churn_csv(
    path: Path | str,
    rows: int,
    *,
    seed: int = 7,
    chunk_rows: int = 100_000,
    extra_numeric: int = 0,
) -> Path:
    """Write ``rows`` churn rows to ``path`` a chunk at a time, so memory stays flat at any size.

    Chunk ``k`` draws from its own generator (seeded by ``seed`` and ``k``), so the bytes are
    deterministic but not those of ``churn_csv``; customer ids stay unique across chunks.
    ``extra_numeric`` appends that many noise columns (``extra_feature_names``: standard
    normal, 3 decimals) for wide datasets.
    """
    if rows < 1:
        raise SampleDataError(f"rows must be at least 1, got {rows}")
    if rows > 10_000_000:
        raise SampleDataError(f"rows must be at most 10,000,000 (7-digit customer ids), got {rows}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*COLUMNS, *extra_feature_names(extra_numeric)])
        for chunk, start in enumerate(range(0, rows, chunk_rows)):
            count = min(chunk_rows, rows - start)
            rng = np.random.default_rng([seed, chunk])
            records = _churn_records(_churn_columns(rng, count, False), seed, start)
            if extra_numeric:
                noise = rng.normal(0, 1, size=(count, extra_numeric)).round(3).tolist()
                records = ((*record, *extra) for record, extra in zip(records, noise, strict=True))
            writer.writerows(records)
    return path


def churn_csv(rows: int, *, seed: int = 7, drift: bool = False) -> bytes:
    """The churn dataset as CSV bytes with a header row."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in generate_churn_rows(rows, seed=seed, drift=drift):
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    return buffer.getvalue().encode("utf-8")


def write_churn_csv(path: Path | str, rows: int, *, seed: int = 7, drift: bool = False) -> Path:
    """Write the churn dataset to ``path`` and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(churn_csv(rows, seed=seed, drift=drift))
    return path
