"""One namespaced modular pipeline per method and pretraining seed (``pretraining.<run>``, see
``run_name``), the ViT without pretraining (``pretraining.vit``), the supervised CNN reference
(``pretraining.cnn``) and the final report.

SemMAE and AutoMAE take the MAE encoder of the same pretraining seed as their source of pretrained
features, so they run after it. Only ``pretraining_report`` reads ``test_set``.
"""

from kedro.pipeline import Pipeline, node, pipeline

from dermascreen.pipelines import active_config
from dermascreen.pipelines.pretraining import nodes
from dermascreen.pipelines.runs import bound, check_seeds, seed_run
from dermascreen.pretraining.methods import GUIDED, METHODS

DATA = ["train_set", "val_set", "normalization"]
SHARED_PARAMETERS = {"shared": "pretraining.shared", "finetune": "pretraining.finetune"}


def run_name(method: str, seed: int, seeds: list[int]) -> str:
    """The namespace of ``method`` pretrained with ``seed``: the first pretraining seed's is the method's
    own (``pretraining.<method>``, the encoder phase1/phase2's ``weights: <method>`` load), each further
    seed's ``<method>_seed<k>``. With one seed the names are those of a single-seed run."""
    return method if seed == seeds[0] else seed_run(method, seed)


def _method_pipeline(method: str, seed: int, seeds: list[int]) -> Pipeline:
    run = run_name(method, seed, seeds)
    inputs = {name: name for name in DATA}
    if method in GUIDED:
        pretrain = node(bound(nodes.pretrain_guided_encoder, run=run, seed=seed),
                        [*DATA, "source_encoder", "params:method", "params:shared", "params:options"],
                        ["encoder", "history", "reconstructions"], name="pretrain")
        inputs["source_encoder"] = f"pretraining.{run_name('mae', seed, seeds)}.encoder"
    else:
        pretrain = node(bound(nodes.pretrain_encoder, run=run, seed=seed),
                        [*DATA, "params:method", "params:shared", "params:options"],
                        ["encoder", "history", "reconstructions"], name="pretrain")
    finetune = node(bound(nodes.finetune_encoder, run=run),
                    ["encoder", *DATA, "params:method", "params:shared", "params:finetune"],
                    ["finetuned", "validation"], name="finetune")
    probe = node(bound(nodes.probe_encoder, seed=seed), ["encoder", *DATA, "params:shared"], "probe", name="probe")
    # every seed's namespace reads its method's parameters
    parameters = {**SHARED_PARAMETERS, "method": f"pretraining.{method}.method",
                  "options": f"pretraining.{method}.options"}
    return pipeline([pretrain, finetune, probe], namespace=f"pretraining.{run}", inputs=inputs,
                    parameters=parameters)


def _scratch_pipeline() -> Pipeline:
    """The ViT without pretraining (fine-tuning seeds only: it has no pretraining seed)."""
    finetune = node(nodes.finetune_from_scratch, [*DATA, "params:shared", "params:finetune"],
                    ["finetuned", "validation"], name="finetune")
    return pipeline([finetune], namespace="pretraining.vit", inputs=set(DATA), parameters=SHARED_PARAMETERS)


def _initial_probe_pipeline(seed: int, seeds: list[int]) -> Pipeline:
    """The probes of the encoder every method of pretraining seed ``seed`` starts from (epoch 0)."""
    probe = node(bound(nodes.probe_initial_encoder, seed=seed), [*DATA, "params:shared"], "probe", name="probe")
    return pipeline([probe], namespace=f"pretraining.{run_name('vit', seed, seeds)}", inputs=set(DATA),
                    parameters={"shared": "pretraining.shared"})


def _reference_pipeline() -> Pipeline:
    """The supervised CNN reference, trained by the same engine on the same seeds."""
    train = node(nodes.train_supervised_reference, [*DATA, "params:shared", "params:finetune"],
                 ["finetuned", "validation"], name="train")
    return pipeline([train], namespace="pretraining.cnn", inputs=set(DATA), parameters=SHARED_PARAMETERS)


def create_pipeline(**kwargs) -> Pipeline:
    """Every method once per ``pretraining.shared.pretrain_seeds`` of the active profile."""
    params = kwargs.get("parameters") or active_config.parameters()
    seeds = check_seeds(params["pretraining"]["shared"]["pretrain_seeds"], "pretraining.shared.pretrain_seeds")
    # {method: {pretraining seed: run}}; vit: the untrained encoders the probes read
    members = {method: {seed: run_name(method, seed, seeds) for seed in seeds} for method in ("vit", *METHODS)}
    runs = [run for method in METHODS for run in members[method].values()]
    report = node(bound(nodes.pretraining_report, members=members),
                  {"test_set": "test_set", "normalization": "normalization", "data_provenance": "data_provenance",
                   "profile": "params:profile", "shared": "params:pretraining.shared",
                   "finetune": "params:pretraining.finetune",
                   **{f"finetuned_{run}": f"pretraining.{run}.finetuned" for run in ("vit", *runs, "cnn")},
                   **{f"probe_{run}": f"pretraining.{run}.probe" for run in (*members["vit"].values(), *runs)},
                   **{f"encoder_{run}": f"pretraining.{run}.encoder" for run in runs}},
                  ["pretraining_report", "pretraining_metrics", "pretraining_test_metrics"],
                  name="pretraining_report")
    return Pipeline([_scratch_pipeline(), *(_initial_probe_pipeline(seed, seeds) for seed in seeds),
                     *(_method_pipeline(method, seed, seeds) for method in METHODS for seed in seeds),
                     _reference_pipeline(), report])
