"""The docs that are generated or quoted stay true: the configuration reference, the shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import check_config
from gateway.docs import configuration_reference

REPO = Path(__file__).resolve().parents[1]


def test_configuration_reference_is_up_to_date() -> None:
    committed = (REPO / "docs" / "configuration.md").read_text()
    assert committed == configuration_reference(), (
        "docs/configuration.md is stale: run `edge-gateway config docs -o docs/configuration.md`"
    )


@pytest.mark.parametrize("name", ["gateway.yaml", "demo.yaml"])
def test_shipped_configs_pass_check(name: str) -> None:
    assert check_config(REPO / "config" / name) == []


def test_readme_names_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "scripts/demo.sh" in quick and "scripts/test.sh" in quick
    assert "scripts/test.sh" in (REPO / ".ci" / "run").read_text()
