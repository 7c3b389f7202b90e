from kedro.pipeline import Pipeline, node

from dermascreen.pipelines.data_engineering import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        node(nodes.validate_raw_data, ["dermamnist_raw", "params:data_engineering"],
             ["validated_raw", "data_provenance"], name="validate_raw_data"),
        node(nodes.split_dataset, "validated_raw", ["train_set", "val_set", "test_set"],
             name="split_dataset"),
        node(nodes.compute_normalization, "train_set", "normalization", name="compute_normalization"),
        node(nodes.compute_class_weights, ["train_set", "params:data_engineering"], "class_weights",
             name="compute_class_weights"),
        node(nodes.describe_classes, "validated_raw", "class_statistics", name="describe_classes"),
        node(nodes.plot_class_counts, "class_statistics", "data_report_class_counts",
             name="plot_class_counts"),
        node(nodes.plot_samples, ["train_set", "params:data_engineering"], "data_report_samples",
             name="plot_samples"),
        node(nodes.render_data_report,
             ["class_statistics", "data_provenance", "normalization", "class_weights", "params:profile"],
             "data_report", name="render_data_report"),
    ])
