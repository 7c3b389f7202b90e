"""One namespaced modular pipeline per method (``pretraining.<method>``) plus the final report.

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
    inputs = {name: name for name in DATA}
    if method in GUIDED:
        inputs["source_encoder"] = "pretraining.mae.encoder"
    return pipeline([pretrain, finetune], namespace=f"pretraining.{method}", inputs=inputs,
                    parameters=SHARED_PARAMETERS)


def _scratch_pipeline() -> Pipeline:
    finetune = node(nodes.finetune_from_scratch, [*DATA, "params:shared", "params:finetune"],
                    ["finetuned", "validation"], name="finetune")
    return pipeline([finetune], namespace="pretraining.vit", inputs=set(DATA), parameters=SHARED_PARAMETERS)


def create_pipeline(**kwargs) -> Pipeline:
    methods = ("vit", *METHODS)
    report = node(nodes.pretraining_report,
                  {"test_set": "test_set", "normalization": "normalization", "data_provenance": "data_provenance",
                   "profile": "params:profile", "shared": "params:pretraining.shared",
                   "finetune": "params:pretraining.finetune",
                   **{method: f"pretraining.{method}.finetuned" for method in methods}},
                  ["pretraining_report", "pretraining_metrics", "pretraining_test_metrics"],
                  name="pretraining_report")
    return Pipeline([_scratch_pipeline(), *(_method_pipeline(m) for m in METHODS), report])
