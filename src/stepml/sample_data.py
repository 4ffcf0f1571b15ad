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


def generate_churn_rows(rows: int, *, seed: int = 7, drift: bool = False) -> list[dict[str, object]]:
    """Rows of the churn dataset; about 1% of feature values are missing, as in real exports."""
    if rows < 1:
        raise SampleDataError(f"rows must be at least 1, got {rows}")
    rng = np.random.default_rng(seed + (1000 if drift else 0))
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
    out: list[dict[str, object]] = []
    for i in range(rows):
        out.append(
            {
                "customer_id": f"C{seed:02d}{i:07d}",
                "tenure_months": "" if missing[i, 0] else int(tenure[i]),
                "monthly_charges": "" if missing[i, 1] else float(monthly[i]),
                "total_charges": "" if missing[i, 2] else float(total[i]),
                "support_calls": int(calls[i]),
                "contract": CONTRACTS[contracts[i]],
                "payment_method": "" if missing[i, 3] else PAYMENT_METHODS[payments[i]],
                "internet_service": INTERNET_SERVICES[internet[i]],
                "churned": "yes" if churned[i] else "no",
            }
        )
    return out


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
