"""MkDocs hooks: the pages that are generated, not written.

Four markers in a page's Markdown are replaced while the site builds:

- `<!-- readme -->`: the README, its links made relative to the site (the home page);
- `<!-- api: PACKAGE -->`: one mkdocstrings entry per public name of `tunelab.PACKAGE` (its
  `__all__`), so every public name has a reference entry and a new one cannot be forgotten;
- `<!-- cli -->`: the help of `tunelab` and of each of its commands, from the argparse parser;
- `<!-- benchmarks -->`: the benchmark tables, written by `benchmarks/docs_page.py` from
  `benchmarks/results/`.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _defined_at(package: str, name: str, obj: Any) -> str:
    """The dotted path where a public name is defined, for mkdocstrings."""
    if inspect.ismodule(obj):
        return obj.__name__
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return f"{obj.__module__}.{obj.__qualname__}"
    init = ROOT / package.rsplit(".", 1)[1] / "__init__.py"
    for node in ast.walk(ast.parse(init.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and any(a.name == name for a in node.names):
            return f"{node.module}.{name}"
    return f"{package}.{name}"


@functools.cache
def api_entries(package: str) -> list[tuple[str, str]]:
    """`(public name, defining path)` for every name of `tunelab.<package>.__all__`.

    Args:
        package: One of `studies`, `search`, `spaces`, `trainers`.

    Returns:
        The pairs in alphabetical order of the public name.
    """
    module = importlib.import_module(f"tunelab.{package}")
    return [(name, _defined_at(module.__name__, name, getattr(module, name))) for name in sorted(module.__all__)]


PACKAGES = ("spaces", "trainers", "search", "studies")  # a name two packages export is documented in the first


def owner(path: str) -> str:
    """The package whose reference page documents the object at `path` (the first of `PACKAGES` exporting it)."""
    return next(p for p in PACKAGES if any(q == path for _, q in api_entries(p)))


def api_markdown(package: str) -> str:
    """The reference entries of one package, as mkdocstrings blocks under a heading each."""
    module = importlib.import_module(f"tunelab.{package}")
    out = [inspect.getdoc(module) or "", ""]
    for name, path in api_entries(package):
        home = owner(path)
        if home != package:  # re-exported: one entry per object, so cross-references stay unique
            out += [f"## `{package}.{name}`", "", f"The same object as `{home}.{path.rsplit('.', 1)[1]}`: see "
                    f"[tunelab.{home}]({home}.md#{path}).", ""]
            continue
        options = "    options:\n      show_root_heading: false\n"
        if inspect.ismodule(getattr(module, name)):
            options += "      members: false\n"
        out += [f"## `{package}.{name}`", "", f"*Defined in `{path.rsplit('.', 1)[0]}`.*", "",
                f"::: {path}", options]
    return "\n".join(out)


def cli_markdown() -> str:
    """The help of `tunelab` and of each command, from `tunelab.studies.cli.build_parser`."""
    import argparse

    from tunelab.studies.cli import build_parser

    parser = build_parser()
    parser.formatter_class = argparse.HelpFormatter
    out = ["```text", parser.format_help().rstrip(), "```", ""]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += [f"## `tunelab {name}`", "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(out)


def readme_markdown() -> str:
    """The README with its links into `docs/` made relative to the site's root."""
    text = (ROOT / "README.md").read_text()
    text = text.replace("](docs/", "](").replace("](CHANGELOG.md)", "](changelog.md)")
    return text


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replace the markers of a page by the generated text (MkDocs' page hook)."""
    if "<!-- readme -->" in markdown:
        markdown = markdown.replace("<!-- readme -->", readme_markdown())
    markdown = re.sub(r"<!-- api: (\w+) -->", lambda m: api_markdown(m.group(1)), markdown)
    if "<!-- cli -->" in markdown:
        markdown = markdown.replace("<!-- cli -->", cli_markdown())
    if "<!-- benchmarks -->" in markdown:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        try:
            from docs_page import page as benchmarks_page
        finally:
            sys.path.remove(str(ROOT / "benchmarks"))
        markdown = markdown.replace("<!-- benchmarks -->", benchmarks_page())
    return markdown
