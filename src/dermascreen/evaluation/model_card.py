"""The model card: what a screening user must know before using the final model, from phase3's evidence.

Rendered with the report's document model (``report.render_markdown``); ``CARD_SECTIONS`` lists the
titles, in order, that every card has.
"""

from __future__ import annotations

from dermascreen.evaluation.report import Section, Table, _interval, _spread, ensemble_text, origin_text

CARD_SECTIONS = ("Intended use", "Not intended for", "Data and provenance", "Operating point",
                 "Per-subtype recall and false positive rate", "Calibration", "Seeds",
                 "Known limitations", "How to reproduce")
CARD_TITLE = "Model card: DermaMNIST malignant-vs-benign screening model"


def card_sections(evidence: dict) -> list[Section]:
    """Sections from the phase3 evidence (see ``pipelines.phase3.nodes.build_model_card``)."""
    model, provenance, settings = evidence["model"], evidence["provenance"], evidence["settings"]
    point, intervals, calibrated = evidence["calibration"], evidence["intervals"], evidence["calibrated"]
    official = bool(provenance.get("official"))
    confidence = f"{100 * settings['confidence']:.0f}%"
    operating = [[key, _interval(intervals[key])] for key in ("recall", "specificity", "precision", "roc_auc")]
    subtypes = [[name, "recall" if e["kind"] == "recall" else "false positive rate", str(e["n"]), _interval(e)]
                for name, e in evidence["subtypes"].items()]
    calibrator = calibrated["calibrator"]
    limitations = [
        "- Input is 28x28 pixels (MedMNIST's DermaMNIST): fine structure a dermatologist uses is lost.",
        "- DermaMNIST (from HAM10000) is split by image, not by patient or lesion: HAM10000 holds several "
        "images of some lesions, so test images may have near-duplicates in training and the test figures "
        "may be optimistic for new patients.",
        "- HAM10000 comes from Austrian and Australian practices and shows mostly light skin; performance on "
        "darker skin types is unmeasured.",
        "- Dermatoscopic images only; phone photographs are outside the training distribution.",
        "- Class weights and the threshold were chosen on the validation split of the same dataset; "
        "prevalence in another population changes precision.",
    ]
    if not official:
        limitations.insert(1, "- The data file is a NON-OFFICIAL copy of DermaMNIST (md5 "
                              f"`{provenance.get('md5')}`, official `{provenance.get('official_md5')}`): "
                              "figures are close to, not equal to, figures on the official file.")
    return [
        ("Intended use", [
            "Research and teaching: ranking dermatoscopic lesion images (HAM10000-like, 28x28) by "
            "the probability that the lesion is malignant (melanoma, basal cell carcinoma, actinic "
            "keratosis/intraepithelial carcinoma), at an operating point chosen for high recall."]),
        ("Not intended for", [
            "Diagnosis or any clinical decision, screening of real patients, non-dermatoscopic "
            "photographs, lesion types outside the seven DermaMNIST classes. Not a medical device."]),
        ("Data and provenance", [
            f"DermaMNIST {provenance.get('size')}x{provenance.get('size')} from `{provenance.get('path')}`, "
            f"{'the official MedMNIST file' if official else 'a NON-OFFICIAL copy'} (md5 `{provenance.get('md5')}`), "
            f"obtained from {provenance.get('source')}. Train for fitting, validation for every choice "
            f"(model, epoch, calibration, threshold), test ({evidence['n_test']} images, "
            f"{evidence['n_malignant']} malignant) read once in phase3."]),
        ("Operating point", [
            f"Model: {ensemble_text(model)}. {origin_text(model.get('config') or {})} "
            f"Threshold **{point['threshold']:.4f}** on the calibrated "
            f"probability: {point['reason']} (policy `{point['policy']}`, validation only). Test results "
            f"with {confidence} stratified bootstrap intervals ({settings['n_bootstrap']} resamples):",
            Table(["metric", f"estimate [{confidence} CI]"], operating)]),
        ("Per-subtype recall and false positive rate", [
            "Share of each subtype's test lesions flagged malignant: the recall of a malignant subtype, "
            "the false positive rate of a benign one.",
            Table(["subtype", "measure", "n", f"estimate [{confidence} CI]"], subtypes)]),
        ("Calibration", [
            f"Method `{calibrator['method']}`"
            + (f" (T = {calibrator['temperature']:.4f})" if calibrator["method"] == "temperature" else "")
            + f", fitted on validation. ECE on test: {calibrated['test_uncalibrated']['ece']:.4f} before, "
            f"{calibrated['test_calibrated']['ece']:.4f} after. `dermascreen-predict` prints the calibrated "
            "probability; at 28x28 and this prevalence it is a ranking aid, not a risk to quote to a patient."]),
        ("Seeds", [
            f"The final model is {ensemble_text(model)}. The intervals above cover test-set sampling of "
            "that ensemble. The seed models all start from the same phase1 model, so their spread, each "
            "alone at its own validation threshold (mean ± sample std over seeds, test), measures the "
            "randomness of phase2's fine-tuning, not that of training from scratch (a smaller spread):",
            Table(["metric", "seed models: mean ± std"],
                  [[key, _spread(evidence["seeds"]["spread"][key])] for key in ("recall", "specificity", "roc_auc")]),
            f"Per seed with intervals: the report's \"Seeds (test)\". Bootstrap seed {settings['seed']}."]),
        ("Known limitations", ["\n".join(limitations)]),
        ("How to reproduce", [
            f"`make all` (profile `{evidence['profile']}`: `dvc repro`, i.e. `kedro run --pipelines "
            f"data_engineering,phase1,phase2,phase3 --env {evidence['profile']}`). Reruns give identical "
            f"phase3 numbers. The exported model: `data/06_models/phase3/final.pt`; the full report: "
            "`data/08_reporting/final_report.md`."]),
    ]
