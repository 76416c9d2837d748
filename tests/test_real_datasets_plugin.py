"""Real datasets through pytest: data root and download options, skips, fingerprints in the
cache key and scorecard, the standard/paper profiles and ``--visprobe-list``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

from pytest_visprobe.datasets import list_datasets
from pytest_visprobe.runner.options import DATA_ROOT_OPTION, DATASET_OPTION, DOWNLOAD_OPTION, ENCODER_OPTION, LIST_OPTION
from pytest_visprobe.profiles import get_profile
from real_formats import pin_md5s, write_cifar

LABEL_TEST = "suites/test_semantics.py::test_label_probe"
ROLES = {"label", "attributes", "fewshot", "clustering", "similarity", "transformations",
         "robustness", "localization", "retrieval"}


def test_absent_dataset_skips_with_the_option_that_fixes_it(suite, tmp_path):
    empty = tmp_path / "no-data"
    suite.pytester.makeini(f"[pytest]\nvisprobe_data_root = {empty}\n")  # the ini key mirrors the option
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", f"{DATASET_OPTION}=cifar10", "suites/test_semantics.py", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines([f"SKIPPED*CIFAR-10 is not on disk*{empty}*--visprobe-download*"])


def test_a_real_dataset_from_the_data_root_runs_and_a_changed_one_is_recomputed(suite, tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_cifar(root, per_batch=12, n_test=20)
    pin_md5s(monkeypatch, "cifar10", root)
    args = (f"{ENCODER_OPTION}=pooled.py", f"{DATASET_OPTION}=cifar10", f"{DATA_ROOT_OPTION}={root}", LABEL_TEST)
    suite.run(*args).assert_outcomes(passed=1)
    first = suite.scorecard()
    (info,) = [d for d in first["datasets"] if d["name"] == "cifar10"]
    assert info["splits"] == {"train": 60, "test": 20}
    result = suite.run(*args)
    result.stdout.fnmatch_lines(["feature sets: 0 computed, 2 from cache*"])

    write_cifar(root, per_batch=12, n_test=20, seed=1)  # same files, same sizes, new content
    pin_md5s(monkeypatch, "cifar10", root)
    result = suite.run(*args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["feature sets: 2 computed, 0 from cache*"])
    (changed,) = [d for d in suite.scorecard()["datasets"] if d["name"] == "cifar10"]
    assert changed["fingerprint"] != info["fingerprint"]


def test_download_option_lets_torchvision_fetch_the_files(suite, tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    source, root = tmp_path / "mirror", tmp_path / "data"
    write_cifar(source)
    pin_md5s(monkeypatch, "cifar10", source)
    fetched = []

    def fake_download(self):  # what torchvision's download leaves behind, without a network
        if not (root / "cifar-10-batches-py").exists():
            fetched.append(self.root)
            shutil.copytree(source / "cifar-10-batches-py", root / "cifar-10-batches-py")

    monkeypatch.setattr(tvd.CIFAR10, "download", fake_download)
    args = (f"{ENCODER_OPTION}=pooled.py", f"{DATASET_OPTION}=cifar10", f"{DATA_ROOT_OPTION}={root}", LABEL_TEST)
    suite.run(*args).assert_outcomes(skipped=1)
    assert fetched == []
    suite.run(*args, DOWNLOAD_OPTION).assert_outcomes(passed=1)
    assert fetched == [str(root)]


def test_standard_profile_without_data_skips_every_real_dataset(suite, tmp_path):
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", "--visprobe-profile=standard",
                       f"{DATA_ROOT_OPTION}={tmp_path / 'none'}", "suites/test_semantics.py", "-rs")
    n_label, n_attr = len(get_profile("standard").datasets["label"]), len(get_profile("standard").datasets["attributes"])
    result.assert_outcomes(skipped=n_label + n_attr)
    result.stdout.fnmatch_lines(["*CUB-200-2011 is not on disk*", "*VAW is not on disk*"])


@pytest.mark.parametrize("name", ["quick", "standard", "paper"])
def test_profiles_declare_every_role_with_registered_datasets(name):
    profile = get_profile(name)
    assert set(profile.datasets) == ROLES
    registered = {e.name for e in list_datasets()}
    for role, specs in profile.datasets.items():
        assert specs, role
        for spec in specs:
            assert spec in registered, (role, spec)
    for dataset, options in profile.dataset_options.items():
        entry = next(e for e in list_datasets() if e.name == dataset)
        assert set(options) <= set(entry.options), dataset


def test_paper_profile_uses_the_studies_datasets():
    paper = get_profile("paper")
    study = {"cifar10", "cifar100", "mnist", "fashion_mnist", "svhn", "cub"}
    for role in ("fewshot", "clustering"):
        assert set(paper.datasets[role]) == study
    assert tuple(paper.datasets["similarity"]) == ("imagenet_val",)  # RSA on ImageNet-val, as the study
    assert set(paper.datasets["label"]) == study | {"vaw"}  # VAW's object names (Li et al.)
    assert paper.datasets["attributes"] == ("vaw",)
    assert paper.dataset_options["cub"]["image_size"] == 256  # resize 256 bicubic, centre-crop 256


def test_list_prints_everything_and_exits_without_torch(tmp_path):
    write_cifar(tmp_path / "data")
    code = textwrap.dedent(f"""
        import sys, pytest
        rc = pytest.main(["{LIST_OPTION}", "{DATA_ROOT_OPTION}={tmp_path / 'data'}"])
        print("RC", int(rc), "TORCH_IMPORTED" if "torch" in sys.modules else "TORCH_NOT_IMPORTED")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path, timeout=120).stdout
    assert "RC 0 TORCH_NOT_IMPORTED" in out
    assert f"datasets (data root: {tmp_path / 'data'}" in out
    assert "cifar10 [label; splits train, test] -- present" in out
    assert "cifar100 [label; splits train, test] -- absent" in out
    assert "shapes [attributes, boxes, captions, label, masks; splits train, test] -- embedded" in out
    assert "label_probe" in out and "top1 (higher is better; chance: the largest class's share of the test split" in out
    assert "geometry:" in out and "rotate" in out
    for profile in ("quick", "standard", "paper"):
        assert f"{profile} -- " in out
    assert "no tests ran" not in out and "collected" not in out


def test_a_baseline_measured_on_other_data_fails_instead_of_comparing(suite):
    from pytest_visprobe.runner.options import BASELINE_OPTION

    args = (f"{ENCODER_OPTION}=pooled.py", f"{DATASET_OPTION}=digits", LABEL_TEST)
    suite.run(*args, "--visprobe-report=accepted", limit=120).assert_outcomes(passed=1)
    baseline = f"{BASELINE_OPTION}=accepted/scorecard.json"
    suite.run(*args, baseline, limit=120).assert_outcomes(passed=1)  # same data: compared, fine
    result = suite.run(*args, baseline, limit=100)  # other samples: no silent comparison
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*was measured on other data for dataset 'digits'*--visprobe-limit*"])
    (record,) = [r for r in suite.scorecard()["records"] if r["metric"] == "top1"]
    assert record["baseline"] is None and record["passed"] is False
