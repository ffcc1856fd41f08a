"""Documents are tested against the code: the README's commands and code run, docs/cli.md has every option
``--help`` prints, every relative link leads to a file, and the README stays short."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
#: the README's install commands (the first sets up and runs the demo, the second the tests): CI runs them
INSTALLS = ("pip install", "apt-get install")


def _blocks(path: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", open(path).read(), flags=re.S | re.M)


@pytest.mark.unit
def test_the_readme_is_at_most_250_lines():
    assert sum(1 for _ in open(README)) <= 250


@pytest.mark.integration
def test_every_code_block_of_the_readme_runs(tmp_path):
    """Each bash line (the two install commands aside) and each Python block, in order, in one fresh folder."""
    ran = 0
    for lang, code in _blocks(README):
        if lang == "bash":
            for line in code.strip().splitlines():
                if line.startswith(INSTALLS):
                    continue
                done = subprocess.run(["bash", "-c", f"set -e; {line}"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
                assert done.returncode == 0, (line, done.stdout[-2000:], done.stderr[-2000:])
                ran += 1
        elif lang == "python":
            done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, (code, done.stdout[-2000:], done.stderr[-3000:])
            ran += 1
    assert ran >= 5
    installs = [line for lang, code in _blocks(README) if lang == "bash" for line in code.splitlines() if line.startswith(INSTALLS)]
    assert len(installs) == 2 and installs[1].endswith("python3 -m pytest -q"), installs


def _options(parser: argparse.ArgumentParser, prefix: str = "metaextract") -> dict[str, list[str]]:
    """{command: its option strings}, subcommands included."""
    out = {prefix: [s for a in parser._actions for s in a.option_strings]}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.update(_options(sub, f"{prefix} {name}"))
    return out


@pytest.mark.integration
def test_docs_cli_has_every_option_help_prints():
    from metaextract_dask.cli import build_parser

    text = open(os.path.join(ROOT, "docs", "cli.md")).read()
    commands = _options(build_parser())
    missing = [f"{command} {option}" for command, options in commands.items() for option in options if option not in text]
    missing += [f"the section of {command}" for command in commands if command != "metaextract" and f"## `{command}`" not in text]
    assert not missing, f"not in docs/cli.md: {missing}"


@pytest.mark.unit
def test_every_relative_link_of_the_readme_and_docs_leads_to_a_file():
    broken = []
    docs = [README] + [os.path.join(ROOT, "docs", n) for n in os.listdir(os.path.join(ROOT, "docs")) if n.endswith(".md")]
    for path in docs:
        for target in re.findall(r"\]\(([^)#\s]+)", open(path).read()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not os.path.exists(os.path.join(os.path.dirname(path), target)):
                broken.append(f"{os.path.relpath(path, ROOT)} -> {target}")
    assert not broken, broken


def _keys(tree: dict, prefix: str):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _keys(value, f"{prefix}.{key}")
        else:
            yield f"{prefix}.{key}"


@pytest.mark.integration
def test_every_setting_is_documented_with_its_default():
    """Each key of metaextract.yaml is in docs/configuration.md (a streaming field by its Python name; alerts in docs/alerts.md)."""
    import yaml

    tree = yaml.safe_load(open(os.path.join(ROOT, "metaextract_dask", "core", "metaextract.yaml")))["metaextract"]
    conf = open(os.path.join(ROOT, "docs", "configuration.md")).read()
    alerts = open(os.path.join(ROOT, "docs", "alerts.md")).read()
    missing = []
    for key in _keys(tree, "metaextract"):
        short = key.rsplit(".", 1)[1]
        if not (key in conf or key in alerts or key.startswith("metaextract.streaming.") and f"`{short.replace('-', '_')}`" in conf
                or key.startswith("metaextract.alerts.") and f"`{short}`" in alerts):
            missing.append(key)
    assert not missing, f"settings not in docs/configuration.md: {missing}"


@pytest.mark.unit
def test_the_cli_offers_what_the_registries_hold(monkeypatch):
    """``--to``, ``--load-balancing`` and ``--format`` list the registries' entries, not a copy of them."""
    from metaextract_dask.catalog import FORMATS
    from metaextract_dask.catalog.exports import EXPORTS
    from metaextract_dask.cli import build_parser
    from metaextract_dask.core.settings import LoadBalancingStrategy

    monkeypatch.setitem(EXPORTS, "toy", ("a toy export", lambda catalog, out, progress: (out, [])))
    choices = {}
    for command, parser in (("export", build_parser()), ("scan", build_parser())):
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
        choices.update({(command, s): a.choices for a in sub._actions for s in a.option_strings if a.choices})
    assert list(choices[("export", "--to")]) == list(EXPORTS) and "toy" in choices[("export", "--to")]
    assert list(choices[("scan", "--load-balancing")]) == [s.value for s in LoadBalancingStrategy]
    assert list(choices[("scan", "--format")]) == list(FORMATS)
