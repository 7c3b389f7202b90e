from kedro.pipeline import Pipeline, node

from dermascreen.pipelines.phase3 import nodes

P = "params:phase3"


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        node(nodes.predict_malignant, ["phase2_best_model", "val_set", P], "phase3_val_scores",
             name="score_final_on_val"),
        node(nodes.alternatives, ["phase2_alternatives", "phase1_best_model"], "phase3_alternatives",
             name="collect_alternatives"),
        node(nodes.predict_alternatives, ["phase3_alternatives", "val_set", P], "phase3_alternative_val_scores",
             name="score_alternatives_on_val"),
        node(nodes.calibrate_threshold, ["val_set", "phase3_val_scores", "phase2_best_model", P],
             "phase3_threshold", name="calibrate_threshold"),
        node(nodes.calibrate_alternatives, ["val_set", "phase3_alternative_val_scores", "phase3_alternatives", P],
             "phase3_alternative_thresholds", name="calibrate_alternative_thresholds"),
        node(nodes.threshold_sweep, ["val_set", "phase3_val_scores", P], "phase3_threshold_sweep",
             name="threshold_sweep"),
        node(nodes.predict_malignant, ["phase2_best_model", "test_set", P], "phase3_test_scores",
             name="score_final_on_test"),
        node(nodes.predict_alternatives, ["phase3_alternatives", "test_set", P], "phase3_alternative_test_scores",
             name="score_alternatives_on_test"),
        node(nodes.evaluate_on_test, ["test_set", "phase3_test_scores", "phase3_threshold", P],
             "phase3_intervals", name="evaluate_on_test"),
        node(nodes.compare_with_alternatives,
             ["test_set", "phase3_test_scores", "phase3_threshold", "phase3_alternative_test_scores",
              "phase3_alternative_thresholds", P],
             "phase3_mcnemar", name="compare_with_alternatives"),
        node(nodes.calibration_summary, ["test_set", "phase3_test_scores", P], "phase3_calibration",
             name="calibration_summary"),
        node(nodes.curve_data, ["test_set", "phase3_test_scores", "phase3_threshold"],
             ["phase3_roc", "phase3_pr", "phase3_confusion"], name="curve_data"),
        node(nodes.prediction_table,
             ["test_set", "phase3_test_scores", "phase3_alternative_test_scores", "phase3_threshold"],
             "phase3_test_predictions", name="prediction_table"),
        node(nodes.make_figures,
             ["phase3_threshold_sweep", "phase3_roc", "phase3_pr", "test_set", "phase3_intervals",
              "phase3_threshold", "phase3_calibration"],
             "phase3_figures", name="make_figures"),
        node(nodes.figure_files, "phase3_figures", [f"phase3_figure_{name}" for name in nodes.FIGURES],
             name="figure_files"),
        node(nodes.flat_metrics, ["phase3_threshold", "phase3_intervals", "phase3_mcnemar", "phase3_calibration"],
             "phase3_metrics", name="flat_metrics"),
        node(nodes.build_report,
             ["data_provenance", "phase2_best_model", "phase3_threshold",
              "phase3_intervals", "phase3_mcnemar", "phase3_calibration", "test_set", "phase3_figures", P,
              "params:profile"],
             ["final_report_md", "final_report_html"], name="build_report"),
    ])
