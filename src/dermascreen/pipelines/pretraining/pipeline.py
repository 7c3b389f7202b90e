"""One namespaced modular pipeline per method (``pretraining.<method>``), the supervised CNN reference
(``pretraining.cnn``) and the final report.

SemMAE and AutoMAE take ``pretraining.mae.encoder`` as their source of pretrained features, so
they run after the MAE. Only ``pretraining_report`` reads ``test_set``.
"""

from kedro.pipeline import Pipeline, node, pipeline

from dermascreen.pipelines.pretraining import nodes
from dermascreen.pretraining.methods import GUIDED, METHODS

DATA = ["train_set", "val_set", "normalization"]
SHARED_PARAMETERS = {"shared": "pretraining.shared", "finetune": "pretraining.finetune"}


def _method_pipeline(method: str) -> Pipeline:
    if method in GUIDED:
        pretrain = node(nodes.pretrain_guided_encoder,
                        [*DATA, "source_encoder", "params:method", "params:shared", "params:options"],
                        ["encoder", "history", "reconstructions"], name="pretrain")
    else:
        pretrain = node(nodes.pretrain_encoder, [*DATA, "params:method", "params:shared", "params:options"],
                        ["encoder", "history", "reconstructions"], name="pretrain")
    finetune = node(nodes.finetune_encoder, ["encoder", *DATA, "params:method", "params:shared", "params:finetune"],
                    ["finetuned", "validation"], name="finetune")
    probe = node(nodes.probe_encoder, ["encoder", *DATA, "params:shared"], "probe", name="probe")
    inputs = {name: name for name in DATA}
    if method in GUIDED:
        inputs["source_encoder"] = "pretraining.mae.encoder"
    return pipeline([pretrain, finetune, probe], namespace=f"pretraining.{method}", inputs=inputs,
                    parameters=SHARED_PARAMETERS)


def _scratch_pipeline() -> Pipeline:
    """The ViT without pretraining, and the probes of the encoder every method starts from."""
    finetune = node(nodes.finetune_from_scratch, [*DATA, "params:shared", "params:finetune"],
                    ["finetuned", "validation"], name="finetune")
    probe = node(nodes.probe_initial_encoder, [*DATA, "params:shared"], "probe", name="probe")
    return pipeline([finetune, probe], namespace="pretraining.vit", inputs=set(DATA), parameters=SHARED_PARAMETERS)


def _reference_pipeline() -> Pipeline:
    """The supervised CNN reference, trained by the same engine on the same seeds."""
    train = node(nodes.train_supervised_reference, [*DATA, "params:shared", "params:finetune"],
                 ["finetuned", "validation"], name="train")
    return pipeline([train], namespace="pretraining.cnn", inputs=set(DATA), parameters=SHARED_PARAMETERS)


def create_pipeline(**kwargs) -> Pipeline:
    finetuned = ("vit", *METHODS, "cnn")
    report = node(nodes.pretraining_report,
                  {"test_set": "test_set", "normalization": "normalization", "data_provenance": "data_provenance",
                   "profile": "params:profile", "shared": "params:pretraining.shared",
                   "finetune": "params:pretraining.finetune",
                   **{f"finetuned_{m}": f"pretraining.{m}.finetuned" for m in finetuned},
                   **{f"probe_{m}": f"pretraining.{m}.probe" for m in ("vit", *METHODS)},
                   **{f"encoder_{m}": f"pretraining.{m}.encoder" for m in METHODS}},
                  ["pretraining_report", "pretraining_metrics", "pretraining_test_metrics"],
                  name="pretraining_report")
    return Pipeline([_scratch_pipeline(), *(_method_pipeline(m) for m in METHODS), _reference_pipeline(), report])
