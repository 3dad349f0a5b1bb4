"""The protocol document is the project's own and stays in step with the code."""

from pathlib import Path

from benchmark.engine.callbacks import declared_metrics
from benchmark.report.leaderboard import render_metric_table

ROOT = Path(__file__).resolve().parents[1]


def _block(path: Path) -> str:
    return path.read_text().split("<!-- metrics:begin -->\n")[1].split("<!-- metrics:end -->")[0]


def test_the_protocols_score_table_is_rendered_from_the_declarations():
    assert _block(ROOT / "docs" / "protocol.md") == render_metric_table(declared_metrics()), \
        "docs/protocol.md's score table is stale: paste render_metric_table(declared_metrics())"


def test_every_declared_score_is_described_in_the_protocol():
    text = (ROOT / "docs" / "protocol.md").read_text().split("<!-- metrics:end -->")[1]
    missing = [m.key for m in declared_metrics() if f"`{m.key}`" not in text and m.label not in text]
    assert not missing, f"docs/protocol.md says nothing about {missing} outside its generated table"


def test_the_readme_points_at_the_protocol_and_nothing_outside_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert "docs/protocol.md" in readme and "../shared" not in readme
