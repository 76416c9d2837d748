"""The localization suite end to end through pytester, with a tiny CNN and a tiny ViT (random init)."""

from __future__ import annotations

from pytest_visprobe.runner.options import ENCODER_OPTION

TINY_VIT = """
    import timm
    import torch

    def create_encoder():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            # random init: nothing is downloaded; 64 px input, patch 16 -> a 4x4 token grid
            model = timm.create_model("test_vit", pretrained=False, num_classes=0, img_size=64)
        model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, 64, 64)}
        return model
"""

NO_MAP = """
    from torch import nn

    def create_encoder():
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(8))
"""

LOCALIZATION = {"segmentation_probe": {"mIoU"}, "detection_probe": {"mAP", "AP50"},
                "instance_segmentation_probe": {"mask_mAP"}, "region_label_probe": {"top1"},
                "region_attribute_probe": {"mAP"}}


def test_localization_suite_with_a_cnn_and_a_vit(suite):
    suite.encoder("vit.py", TINY_VIT)
    result = suite.run(f"{ENCODER_OPTION}=conv.py", f"{ENCODER_OPTION}=vit.py", "suites/test_localization.py",
                       "-v", limit=40)
    result.assert_outcomes(passed=10)
    card = suite.scorecard()
    found = {}
    for record in card["records"]:
        found.setdefault((record["encoder"], record["probe"]), set()).add(record["metric"])
        assert record["dataset"] == "shapes" and 0.0 <= record["value"] <= 1.0
    assert found == {(enc, probe): metrics for enc in ("conv", "vit") for probe, metrics in LOCALIZATION.items()}
    seg = next(r for r in card["records"] if r["encoder"] == "vit" and r["probe"] == "segmentation_probe")
    assert seg["details"]["feature_map_size"] == [4, 4]
    assert set(seg["details"]["per_class_iou"]) == {"background", "circle", "square", "triangle", "star", "cross"}
    plot = suite.pytester.path / "visprobe-report" / "localization-shapes.png"
    assert plot.read_bytes().startswith(b"\x89PNG")
    # one forward pass per encoder x split for the whole suite: the maps are cached and shared
    result.stdout.fnmatch_lines(["feature sets: 4 computed, 0 from cache*"])


def test_encoder_without_feature_map_skips_with_what_to_implement(suite):
    suite.encoder("nomap.py", NO_MAP)
    result = suite.run(f"{ENCODER_OPTION}=nomap.py", "suites/test_localization.py", "-rs", limit=20)
    result.assert_outcomes(skipped=5)
    result.stdout.fnmatch_lines(["*SKIPPED*'nomap' has no feature_map(), which the dense (localization) probes need; implement*"])


def test_localization_plot_draws_only_encoders_probed_on_that_dataset():
    from pytest_visprobe.report.plots.localization import encoders_probed

    values = {("cnn", "shapes", "segmentation_probe", "mIoU"): 0.5,
              ("vit", "shapes", "region_label_probe", "top1"): 0.7,
              ("cnn~random-init", "shapes", "label_probe", "top1"): 0.2,  # a semantic control record
              ("vit", "coco", "detection_probe", "mAP"): 0.1}
    assert encoders_probed(values, "shapes") == ["cnn", "vit"]
    assert encoders_probed(values, "coco") == ["vit"]


def _coco_files(root, n_images=12):
    """A small COCO-format set: one square (class 'box') and one bar (class 'bar') per image."""
    import json

    import numpy as np
    from PIL import Image

    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(n_images):
        pixels = np.full((48, 48, 3), 40, np.uint8)
        x, y = (int(v) for v in rng.integers(4, 20, 2))
        pixels[y:y + 12, x:x + 12] = (220, 30, 30)
        pixels[36:42, 4:40] = (30, 30, 220)
        Image.fromarray(pixels).save(root / "images" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": 48, "height": 48})
        annotations += [
            {"id": 2 * i + 1, "image_id": i, "category_id": 1, "iscrowd": 0, "area": 144,
             "bbox": [x, y, 12, 12], "segmentation": [[x, y, x + 12, y, x + 12, y + 12, x, y + 12]]},
            {"id": 2 * i + 2, "image_id": i, "category_id": 2, "iscrowd": 0, "area": 216,
             "bbox": [4, 36, 36, 6], "segmentation": [[4, 36, 40, 36, 40, 42, 4, 42]]},
        ]
    (root / "ann.json").write_text(json.dumps({"images": images, "annotations": annotations, "categories": [
        {"id": 1, "name": "box"}, {"id": 2, "name": "bar"}]}))
    return f"coco:{root / 'images'}:{root / 'ann.json'}"


def test_a_coco_file_reaches_the_localization_suite_from_the_command_line(suite):
    from pytest_visprobe.runner.options import DATASET_OPTION

    spec = _coco_files(suite.pytester.path)
    result = suite.run(f"{ENCODER_OPTION}=conv.py", f"{DATASET_OPTION}=localization={spec}",
                       "suites/test_localization.py", "-k", "semantic_segmentation")
    result.assert_outcomes(passed=1)
    (record,) = suite.scorecard()["records"]
    assert record["probe"] == "segmentation_probe" and record["dataset"] == spec  # named by its spec
    assert record["details"]["per_class_iou"] and 0.0 <= record["value"] <= 1.0


def test_unknown_role_or_missing_coco_file_is_a_usage_error(suite):
    from pytest_visprobe.runner.options import DATASET_OPTION

    result = suite.run(f"{ENCODER_OPTION}=conv.py", f"{DATASET_OPTION}=localisation=shapes", "suites/")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*unknown probe role 'localisation'. Did you mean 'localization'?*"])
    result = suite.run(f"{ENCODER_OPTION}=conv.py", f"{DATASET_OPTION}=coco:nowhere:ann.json", "suites/")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*coco:nowhere:ann.json: images folder not found*"])


def test_a_baseline_with_maps_of_another_dtype_is_not_compared_and_the_run_records_its_maps(suite):
    """float16 maps may move dense-probe numbers: the dense probes record the map dtype in their
    settings (only when it is not the default, so default baselines stay comparable), and the
    provenance says how maps were cached."""
    import json

    from pytest_visprobe.runner.options import BASELINE_OPTION, BLESS_OPTION

    seg = ["suites/test_localization.py::test_semantic_segmentation"]
    suite.run(f"{ENCODER_OPTION}=conv.py", f"{BASELINE_OPTION}=accepted.json", BLESS_OPTION, *seg,
              limit=24).assert_outcomes(passed=1)
    accepted = json.loads((suite.pytester.path / "accepted.json").read_text())
    assert accepted["provenance"]["map_dtype"] == "float32"
    assert "feature_maps" not in accepted["probes"]["segmentation_probe"]["settings"]
    result = suite.run(f"{ENCODER_OPTION}=conv.py", f"{BASELINE_OPTION}=accepted.json", "--visprobe-map-dtype=float16",
                       *seg, limit=24)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*not comparable with this run: segmentation_probe.feature_maps: (unset) → float16.*"])
    card = suite.scorecard()
    assert card["provenance"]["map_dtype"] == "float16"
    assert card["probes"]["segmentation_probe"]["settings"]["feature_maps"] == "float16"
