"""kedro-viz: catalog layers and dataset previews (no browser), and `kedro viz build` makes a static
site that a real browser renders as the pipeline graphs.

Layers and previews go through kedro-viz's own models (the ones its API serialises) on the
project's real catalog, with files written by the project's datasets under pytest's temp dir.

The site is served on 127.0.0.1 by Python's http.server and loaded in Debian's headless chromium
once per registered experiment pipeline (`?pid=<name>`); the DOM chromium dumps after the page's
JavaScript ran must draw that pipeline's nodes, with the phase1/phase2 grids collapsed into their
namespace. Expected names come from Kedro itself (a separate process that only loads the project).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from kedro.framework.startup import bootstrap_project
from kedro.io import DataCatalog
from kedro_viz.data_access.repositories.catalog import CatalogRepository
from kedro_viz.models.flowchart.node_metadata import DataNodeMetadata
from kedro_viz.models.flowchart.nodes import GraphNode
from kedro_viz.services.layers import sort_layers
from matplotlib.image import imread

from project_helpers import PROJECT_ROOT, load_config, project_catalog, synthetic_raw
from dermascreen.pipeline_registry import EXPERIMENT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
KEDRO = Path(sys.executable).with_name("kedro")
WINDOW = (1600, 1000)  # width, height of the headless window and of its screenshots

needs_browser = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium; .ci/run does it)")
# The catalog's kedro-viz layers (metadata.kedro-viz.layer), in the order of the data flow.
LAYERS = ["raw", "intermediate", "model_input", "models", "model_output", "reporting"]


def test_every_catalog_entry_has_a_layer_and_kedro_viz_can_order_them():
    """kedro-viz draws layers only if every path through the pipelines keeps one order of them
    (else it logs "circular dependency" and draws none): checked with its own sort on every
    registered pipeline's dataset graph (datasets outside the catalog have no layer)."""
    config = load_config("base", "catalog")
    for name, entry in config.items():
        layer = entry.get("metadata", {}).get("kedro-viz", {}).get("layer")
        assert layer in LAYERS, f"{name}: kedro-viz layer {layer!r}"
    catalog = DataCatalog.from_config(config)
    bootstrap_project(PROJECT_ROOT)
    from dermascreen.pipeline_registry import register_pipelines

    def layer(name: str) -> str | None:
        dataset = None if name.startswith("params:") or name == "parameters" else catalog.get(name)
        return ((getattr(dataset, "metadata", None) or {}).get("kedro-viz") or {}).get("layer")

    for pipeline_name, pipeline in register_pipelines().items():
        graph, children = {}, {}
        for task in pipeline.nodes:
            children[task.name] = set(task.outputs)
            graph[task.name] = SimpleNamespace(layer=None)
            for dataset in task.inputs + task.outputs:
                graph.setdefault(dataset, SimpleNamespace(layer=layer(dataset)))
                children.setdefault(dataset, set())
            for dataset in task.inputs:
                children[dataset].add(task.name)
        drawn = sort_layers(graph, children)
        used = {node.layer for node in graph.values()} - {None}
        assert drawn and set(drawn) == used, f"{pipeline_name}: kedro-viz cannot order the layers {sorted(used)}"
        if pipeline_name == "__default__":
            assert drawn == LAYERS


def _viz_metadata(catalog, name: str) -> DataNodeMetadata:
    """What kedro-viz's API answers for dataset ``name`` (its node's side panel)."""
    repository = CatalogRepository()
    repository.set_catalog(catalog)
    node = GraphNode.create_data_node(dataset_id=name, dataset_name=name, layer=repository.get_layer_for_dataset(name),
                                      tags=set(), dataset=catalog.get(name), modular_pipelines=set())
    assert node.layer is not None, f"{name}: no layer"
    return DataNodeMetadata(data_node=node)


def test_kedro_viz_previews_each_project_dataset(tmp_path):
    catalog = project_catalog(tmp_path)
    figure, axes = plt.subplots(figsize=(2, 2))
    axes.plot([0, 1], [0, 1])
    raw = tmp_path / Path(load_config("tiny", "catalog")["dermamnist_raw"]["filepath"])
    raw.parent.mkdir(parents=True)
    np.savez(raw, **synthetic_raw({"train": 14, "val": 7, "test": 7}))
    saved = {
        "data_provenance": {"file": "dermamnist_28.npz", "md5": "0" * 32},
        "phase3_roc": pd.DataFrame({"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 0.8, 1.0]}),
        "data_report": "# Data <report>\n",
        "final_report_html": "<html><body><h1>Report</h1></body></html>",
        "data_report_samples": figure,
        "train_set": {"images": np.zeros((3, 28, 28, 3), np.uint8), "labels": np.array([0, 1, 2])},
        "final_model": {"config": {"arch": "CNN_v1"}, "threshold": 0.25,
                        "state_dict": torch.nn.Linear(4, 2).state_dict()},
    }
    for name, data in saved.items():
        catalog.save(name, data)

    previews = {name: _viz_metadata(catalog, name) for name in [*saved, "dermamnist_raw"]}
    types = {name: meta.preview_type for name, meta in previews.items()}
    assert types == {"data_provenance": "JSONPreview", "phase3_roc": "TablePreview", "data_report": "HTMLPreview",
                     "final_report_html": "HTMLPreview", "data_report_samples": "ImagePreview",
                     "train_set": "TablePreview", "final_model": "JSONPreview", "dermamnist_raw": "TablePreview"}
    preview = {name: meta.preview for name, meta in previews.items()}
    assert json.loads(preview["data_provenance"]) == saved["data_provenance"]
    assert preview["phase3_roc"]["columns"] == ["fpr", "tpr"] and preview["phase3_roc"]["data"][1] == [0.5, 0.8]
    assert preview["data_report"] == "<pre># Data &lt;report&gt;\n</pre>"
    assert preview["final_report_html"] == saved["final_report_html"]
    assert base64.b64decode(preview["data_report_samples"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert preview["train_set"]["data"] == [["images", "(3, 28, 28, 3)", "uint8"], ["labels", "(3,)", "int64"]]
    assert json.loads(preview["final_model"]) == {"config": {"arch": "CNN_v1"}, "threshold": 0.25,
                                                  "state_dict": "2 tensors, 10 values"}
    assert ["train_images", "(14, 28, 28, 3)", "uint8"] in preview["dermamnist_raw"]["data"]
    assert {meta.data_node.layer for meta in previews.values()} == {"raw", "intermediate", "model_input",
                                                                  "models", "reporting"}

# What Kedro's registry holds, per pipeline, at the level kedro-viz draws by default (namespaces
# collapsed): tasks outside any namespace, top-level namespaces, and the free inputs/outputs.
EXPECTED_SCRIPT = """
import json, sys
from pathlib import Path
from kedro.framework.startup import bootstrap_project
bootstrap_project(Path.cwd())
from kedro.framework.project import pipelines
def drawn(pipe):
    return {
        "tasks": sorted(n.name for n in pipe.nodes if not n.namespace),
        "namespaces": sorted({n.namespace.split(".")[0] for n in pipe.nodes if n.namespace}),
        "datasets": sorted(d for d in pipe.inputs() | pipe.outputs()
                           if d != "parameters" and not d.startswith("params:")),
    }
Path(sys.argv[1]).write_text(json.dumps({name: drawn(pipe) for name, pipe in pipelines.items()}))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1"}


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """Runs ``cmd`` in its own process group and kills the whole group whatever happens
    (chromium's helpers and kedro-viz's build worker share their parent's group)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _project_view(root: Path) -> None:
    """A project root in ``root`` linking to this project's files.

    `kedro viz build` has no output option: it writes `build/` under the working directory, which
    must be a project root. Building in the real root would overwrite the user's `build/` and keep
    stale files there (the CLI exits 0 even when the build fails). The package is linked as
    `src/dermascreen` because Kedro requires the source dir to resolve inside the root.
    """
    (root / "src").mkdir(parents=True)
    (root / "logs").mkdir()  # conf/logging.yml's file handler writes there
    (root / "pyproject.toml").symlink_to(PROJECT_ROOT / "pyproject.toml")
    (root / "conf").symlink_to(PROJECT_ROOT / "conf", target_is_directory=True)
    (root / "src" / "dermascreen").symlink_to(PROJECT_ROOT / "src" / "dermascreen", target_is_directory=True)
    if (PROJECT_ROOT / ".viz").is_dir():  # dataset statistics of earlier runs, shown by kedro-viz
        (root / ".viz").symlink_to(PROJECT_ROOT / ".viz", target_is_directory=True)


@pytest.fixture(scope="module")
def project_view(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("viz_project")
    _project_view(root)
    return root


@pytest.fixture(scope="module")
def expected(project_view) -> dict[str, dict[str, list[str]]]:
    target = project_view / "expected.json"
    result = _run([sys.executable, "-c", EXPECTED_SCRIPT, str(target)], project_view, timeout=120)
    assert result.returncode == 0, f"loading the project's pipelines failed:\n{result.stderr[-3000:]}"
    return json.loads(target.read_text())


@pytest.fixture(scope="module")
def site(project_view) -> Path:
    result = _run([str(KEDRO), "viz", "build"], project_view, timeout=300)
    build = project_view / "build"
    if result.returncode != 0 or not (build / "api" / "main").is_file():
        pytest.fail(f"`kedro viz build` produced no site (rc {result.returncode}):\n"
                    f"{(result.stdout + result.stderr)[-3000:]}")
    return build


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@pytest.fixture(scope="module")
def site_url(site) -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _render(url: str, screenshot: Path, profile: Path) -> str:
    """The DOM of ``url`` after its scripts ran (virtual time), with a screenshot on the side."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
           "--virtual-time-budget=20000", f"--screenshot={screenshot}", "--dump-dom", url]
    profile.mkdir(exist_ok=True)
    result = _run(cmd, profile, timeout=90)
    assert result.returncode == 0, f"chromium failed on {url} (rc {result.returncode}):\n{result.stderr[-3000:]}"
    return result.stdout


def _render_graph(url: str, screenshot: Path, profile: Path, attempts: int = 3) -> str:
    """``_render`` again while the DOM has no graph node yet, at most ``attempts`` times: kedro-viz
    lays the graph out in a web worker, whose real time a loaded machine (the suite's other
    workers) can stretch past chromium's virtual-time budget, which the page's own timers use up."""
    for _ in range(attempts):
        dom = _render(url, screenshot, profile)
        if _drawn(dom):
            break
    return dom


class _DrawnNodes(HTMLParser):
    """The flowchart's nodes in a kedro-viz DOM: ``{(type, full name)}`` (type: task, data, ...)."""

    def __init__(self):
        super().__init__()
        self.nodes: set[tuple[str, str]] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "g" and "data-node-type" in attrs and "data-node-fullname" in attrs:
            self.nodes.add((attrs["data-node-type"], attrs["data-node-fullname"]))


def _drawn(dom: str) -> dict[str, set[str]]:
    parser = _DrawnNodes()
    parser.feed(dom)
    kinds: dict[str, set[str]] = {}
    for kind, name in parser.nodes:
        kinds.setdefault(kind, set()).add(name)
    return kinds


def _selected_pipeline(dom: str) -> str | None:
    match = re.search(r'data-test="kedro-pipeline-selector".*?class="dropdown__label"><span>([^<]*)</span>', dom)
    return match.group(1) if match else None


def _assert_real_screenshot(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pixels = imread(path)  # (H, W, 3 or 4) floats in [0, 1]
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0]), f"{path}: {pixels.shape} is not the window"
    colours = np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    # An unrendered (blank) page has a handful of colours; the app's UI has thousands. Whether the
    # graph is drawn is what the DOM assertions check: the picture is for people to look at.
    assert len(colours) > 100, f"{path} looks blank: {len(colours)} distinct colours"


@pytest.mark.browser
@needs_browser
def test_the_build_registers_every_experiment_pipeline(site, expected):
    main = json.loads((site / "api" / "main").read_text())
    assert {p["id"] for p in main["pipelines"]} == set(expected)
    assert set(EXPERIMENT) <= set(expected)
    for name in expected:
        assert (site / "api" / "pipelines" / name).is_file(), f"build has no api/pipelines/{name}"


@pytest.mark.browser
@needs_browser
@pytest.mark.parametrize("pipeline", EXPERIMENT)
def test_the_browser_draws_each_pipeline_graph(pipeline, site_url, expected, tmp_path):
    want = expected[pipeline]
    screenshot = tmp_path / f"{pipeline}.png"
    dom = _render_graph(f"{site_url}?pid={pipeline}", screenshot, tmp_path / "chromium-profile")
    drawn = _drawn(dom)

    assert _selected_pipeline(dom) == pipeline
    assert drawn.get("task", set()) == set(want["tasks"])
    # The phase1/phase2 grids (and the pretraining methods) are drawn as one collapsed node.
    assert drawn.get("modularPipeline", set()) == set(want["namespaces"])
    missing = set(want["datasets"]) - drawn.get("data", set())
    assert not missing, f"{pipeline}: datasets not drawn: {sorted(missing)[:10]}"
    _assert_real_screenshot(screenshot)
