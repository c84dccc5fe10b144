"""docs/architecture.md §9's metric table is generated from ordermesh.platform.metrics and cannot drift."""

from __future__ import annotations

from ordermesh.platform import metrics
from tools import metrics_doc


def test_the_committed_table_is_the_code() -> None:
    committed = metrics_doc.committed(metrics_doc.DOC.read_text())
    assert committed is not None, "the metrics table's markers are missing from docs/architecture.md"
    assert committed == metrics_doc.block(), "the metrics table differs from the code: run python -m tools.metrics_doc"


def test_every_family_has_a_row_with_its_labels_and_exporters() -> None:
    rows = metrics_doc.table().splitlines()[2:]
    assert len(rows) == len(metrics.FAMILIES)
    for family, row in zip(metrics.FAMILIES, rows, strict=True):
        assert row.startswith(f"| `{family.name}` | {family.kind} |")
        for label in family.labels:
            assert f"`{label.name}`" in row
        assert metrics_doc.exported_by(family) in row
