"""`dvc plots show` pages that render without internet (issue 7): plots_template/offline.html.

A throwaway DVC repo (`dvc init --no-scm`) with the same kinds of plots as the phase3 stage (a
linear plot, a multi-column plot, the confusion template) is rendered with the real `dvc` CLI;
Debian's chromium, with every host name unresolvable, then checks that Vega draws each plot.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from configobj import ConfigObj
from dvc_render.vega import VegaRenderer

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "plots_template" / "offline.html"
DVC = Path(sys.executable).with_name("dvc")
CHROMIUM = Path("/usr/bin/chromium")

PLOT_FILES = {
    "roc.csv": "fpr,tpr\n0,0\n0.1,0.6\n0.4,0.9\n1,1\n",
    "threshold_sweep.csv": "threshold,recall,precision,specificity\n0.1,0.95,0.3,0.4\n0.5,0.7,0.6,0.8\n0.9,0.2,0.9,0.99\n",
    "confusion.csv": "actual,predicted\n0,0\n0,0\n0,1\n1,1\n1,0\n1,1\n",
}
DVC_YAML = """\
plots:
  - roc.csv: {x: fpr, y: tpr, title: ROC}
  - threshold_sweep.csv: {x: threshold, y: [recall, precision, specificity]}
  - confusion.csv: {template: confusion, x: actual, y: predicted}
"""
PLOT_DIV_IDS = {"roc_csv", "threshold_sweep_csv", "confusion_csv"}  # dvc_render's ids of the files


def run_dvc(repo: Path, *args: str | os.PathLike) -> str:
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        # No user or machine DVC config (a global plots.html_template) and no writes outside tmp.
        "DVC_GLOBAL_CONFIG_DIR": str(repo.parent / "dvc_global"),
        "DVC_SYSTEM_CONFIG_DIR": str(repo.parent / "dvc_system"),
        "DVC_SITE_CACHE_DIR": str(repo.parent / "dvc_site_cache"),
    }
    result = subprocess.run([DVC, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"dvc {' '.join(map(str, args))} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


def show(repo: Path, out: str, *args: str | os.PathLike) -> Path:
    run_dvc(repo, "plots", "show", "-o", out, *args)
    return repo / out / "index.html"


@pytest.fixture(scope="module")
def plots_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("plots") / "repo"
    repo.mkdir()
    run_dvc(repo, "init", "--no-scm", "-q")
    for name, text in PLOT_FILES.items():
        (repo / name).write_text(text)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    return repo


@pytest.fixture(scope="module")
def offline_page(plots_repo: Path) -> Path:
    return show(plots_repo, "offline", "--html-template", TEMPLATE)


class _Elements(HTMLParser):
    """Script sources and inline code, and for each plot div, the Vega marks drawn inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.script_srcs: list[str] = []
        self.inline_code = ""
        self.marks: dict[str, list[dict]] = {}
        self._divs: list[str | None] = []  # id (or None) of every open div
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self._in_script = True
            if attributes.get("src"):
                self.script_srcs.append(attributes["src"])
        elif tag == "div":
            self._divs.append(attributes.get("id"))
        elif tag in ("canvas", "svg") and "marks" in (attributes.get("class") or "").split():
            plot = next((i for i in self._divs if i in PLOT_DIV_IDS), None)
            self.marks.setdefault(plot, []).append(attributes)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False
        elif tag == "div" and self._divs:
            self._divs.pop()

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline_code += data


def parse(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser


def rendered_dom(page: Path, profile: Path) -> str:
    """Chromium's DOM of ``page`` after its scripts ran, with no host name resolvable."""
    result = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND",
            "--dump-dom", "--virtual-time-budget=5000", page.as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, f"chromium failed on {page}:\n{result.stderr[-3000:]}"
    return result.stdout


needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} absent (Debian's chromium)")


def test_template_inlines_the_versions_dvcs_default_page_loads() -> None:
    cdn_specs = re.findall(r"cdn\.jsdelivr\.net/npm/(vega(?:-lite|-embed)?@[\d.]+)", VegaRenderer.SCRIPTS)
    template = TEMPLATE.read_text(encoding="utf-8")
    inlined_specs = re.findall(r"<script>/\* (\S+) \*/", template)
    assert sorted(cdn_specs) == sorted(inlined_specs) == ["vega-embed@6.18.2", "vega-lite@5.2.0", "vega@5.20.2"]
    assert inlined_specs[-1].startswith("vega-embed@")  # its bundle reads the globals of the other two
    # DVC fills {scripts} with the CDN tags, so the template must leave it out.
    assert "{plot_divs}" in template and "{refresh_tag}" in template and "{scripts}" not in template
    assert TEMPLATE.stat().st_size < 2_000_000


def test_offline_page_loads_no_remote_script_and_carries_vega(offline_page: Path) -> None:
    html = offline_page.read_text(encoding="utf-8")
    page = parse(html)
    assert page.script_srcs == []
    assert "cdn.jsdelivr.net" not in html
    # The UMD bundles define their globals in dependency order: vega, vega-lite, then vega-embed.
    globals_defined = [page.inline_code.find(f"self).{name}=") for name in ("vega", "vegaLite", "vegaEmbed")]
    assert -1 not in globals_defined and globals_defined == sorted(globals_defined)
    for div_id in PLOT_DIV_IDS:
        assert f"vegaEmbed('#{div_id}', spec);" in page.inline_code


def test_project_default_template_resolves_from_dvc_dir(plots_repo: Path) -> None:
    # DVC resolves a relative plots.html_template from .dvc/: mirror the project's layout.
    configured = ConfigObj(str(ROOT / ".dvc" / "config"))["plots"]["html_template"]
    template_copy = (plots_repo / ".dvc" / configured).resolve()
    assert template_copy.relative_to(plots_repo) == TEMPLATE.relative_to(ROOT)
    template_copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(TEMPLATE, template_copy)
    run_dvc(plots_repo, "config", "plots.html_template", configured)
    try:
        html = show(plots_repo, "configured").read_text(encoding="utf-8")
    finally:
        run_dvc(plots_repo, "config", "--unset", "plots.html_template")
    assert parse(html).script_srcs == []
    assert "/* vega-embed@6.18.2 */" in html


@pytest.mark.browser
@needs_chromium
def test_offline_page_draws_every_plot_without_network(offline_page: Path, tmp_path: Path) -> None:
    marks = parse(rendered_dom(offline_page, tmp_path / "chromium")).marks
    assert set(marks) == PLOT_DIV_IDS, f"plots drawn: {sorted(marks, key=str)}"
    for div_id, elements in marks.items():
        assert len(elements) == 1 and int(elements[0].get("width") or 0) > 0, (div_id, elements)


@pytest.mark.browser
@needs_chromium
def test_dvc_default_page_stays_blank_without_network(plots_repo: Path, tmp_path: Path) -> None:
    # The failure this template fixes, so the test above is known to detect blank plots.
    default_page = show(plots_repo, "default")
    assert "cdn.jsdelivr.net" in default_page.read_text(encoding="utf-8")
    assert parse(rendered_dom(default_page, tmp_path / "chromium")).marks == {}
