"""The documentation that is generated must match what generates it."""

from pathlib import Path

from raydm import schema_doc
from raydm.config import ExperimentConfig

DOC = Path(__file__).resolve().parent.parent / "docs" / "search-space.md"


def test_search_space_reference_matches_the_schema():
    assert DOC.read_text() == schema_doc.render(), (
        "docs/search-space.md is stale: python -m raydm.schema_doc > docs/search-space.md"
    )


def test_every_section_key_is_documented():
    text = DOC.read_text()
    for section in ("data", "model", "train", "search", "resources"):
        model = ExperimentConfig.model_fields[section].annotation
        for name in model.model_fields:
            if name not in ("searcher", "scheduler"):
                assert f"`{section}.{name}`" in text, f"{section}.{name}"
