"""Packaging: the build system is declared, the extras the README names exist."""

from __future__ import annotations

import configparser
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def extras() -> dict:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    section = config["options.extras_require"]
    return {name: section[name].split() for name in section}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
def test_pyproject_declares_the_setuptools_build_system():
    import tomllib

    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    assert build["build-backend"] == "setuptools.build_meta"
    names = [re.split(r"[<>=!~ ]", r)[0] for r in build["requires"]]
    assert names == ["setuptools", "wheel"]
    assert (ROOT / "setup.py").exists() and (ROOT / "setup.cfg").exists()  # metadata stays in setup.cfg


def test_the_notebook_extra_brings_what_the_notebook_imports():
    notebook = extras()["notebook"]
    assert {"ipykernel", "matplotlib"} <= set(notebook)
    source = (ROOT / "examples" / "data_publication.ipynb").read_text()
    assert "%matplotlib inline" in source  # why matplotlib must be there


def test_the_readme_names_every_extra_it_asks_for():
    readme = (ROOT / "README.md").read_text()
    known = set(extras())
    for extra in re.findall(r'\.\[([a-z,]+)\]"', readme):
        assert set(extra.split(",")) <= known, extra
    notebook_paragraph = next(p for p in readme.split("\n\n") if "examples/data_publication.ipynb" in p)
    assert 'pip install -e ".[notebook]"' in notebook_paragraph
