"""The documentation site: every public name has a reference entry, the generated pages cover what they say,
and (where Chromium is installed) the built site renders with navigation and highlighted code."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("spaces", "trainers", "search", "studies")


def hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_of_a_package_has_a_reference_entry(package):
    module = importlib.import_module(f"tunelab.{package}")
    page = (ROOT / "docs" / "reference" / f"{package}.md").read_text()
    assert f"<!-- api: {package} -->" in page
    text = hooks().api_markdown(package)
    for name in module.__all__:
        entry = text.split(f"## `{package}.{name}`", 1)
        assert len(entry) == 2, f"{package}.{name} has no reference entry"
        body = entry[1].split("\n## ", 1)[0]
        assert re.search(r"^::: tunelab\.", body, re.M) or "](" in body, f"{package}.{name}: neither docs nor a link"


def test_every_object_is_documented_once_and_links_point_at_its_entry():
    h = hooks()
    documented = [path for p in PACKAGES for _, path in h.api_entries(p) if h.owner(path) == p]
    assert len(documented) == len(set(documented))
    text = h.api_markdown("studies")
    assert "The same object as `spaces.ConfigError`" in text  # re-exported errors link to their one entry


def test_the_cli_page_has_every_command_and_the_benchmarks_page_every_result_file():
    text = hooks().cli_markdown()
    for command in ("demo", "list", "show", "importance", "resume", "report", "unlock", "compare", "dashboard"):
        assert f"## `tunelab {command}`" in text
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import docs_page
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    page = docs_page.page()
    for relative, (title, _) in docs_page.FILES.items():
        if (docs_page.RESULTS / relative).exists():
            section = page.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
            assert "**Command:**" in section and "**Commit:**" in section and "**Machine:**" in section
            assert "**Date:**" in section and re.search(r"\|\s*:?-{3,}", section), relative


def test_every_page_is_in_the_navigation_and_the_readme_links_resolve():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").rglob("*.md"):
        relative = page.relative_to(ROOT / "docs").as_posix()
        assert relative in nav or relative.startswith("compare_optimizers/"), f"{relative} is not in mkdocs.yml's nav"
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to a missing {target}"


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (.ci/run installs it from Debian packages)")
def test_the_built_site_renders_in_a_real_browser(tmp_path):
    site = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                           capture_output=True, text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert build.returncode == 0, build.stderr[-3000:]
    for page, name in ((site / "index.html", "home.png"), (site / "reference" / "search" / "index.html", "api.png")):
        shot = tmp_path / name
        dom = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                              page.as_uri()], capture_output=True, text=True, timeout=120)
        subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                        f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=120)
        assert shot.exists() and shot.stat().st_size > 10_000, f"no screenshot of {page}"
        html = dom.stdout
        assert 'class="md-nav' in html and "Tutorials" in html  # the navigation rendered
        highlighted = re.search(r'class="[^"]*\bhighlight\b', html) and re.search(r'<span class="(k|kn|n|nf|p)">', html)
        assert highlighted, f"no highlighted code on {page}"
        keep = os.environ.get("TUNELAB_SCREENSHOTS")
        if keep:
            shutil.copy(shot, Path(keep) / name)
