"""Profiles are files: the built-ins ship in the package, a user's file extends one and overrides
single settings, and every mistake names the file and the key."""

from __future__ import annotations

import pytest

from pytest_visprobe.errors import ConfigError
from pytest_visprobe.probes.spec import list_probes
from pytest_visprobe.profiles import BUILTIN_DIR, PROFILES, get_profile, settings_hash


@pytest.mark.parametrize("name", ["quick", "standard", "paper"])
def test_builtin_profiles_are_files_whose_every_probe_table_validates(name):
    profile = get_profile(name)
    assert profile.source == str(BUILTIN_DIR / f"{name}.toml")
    profile.validate_probes()
    for spec in list_probes():  # every probe has settings under every profile (its defaults if no table)
        assert isinstance(profile.settings_for(spec.name), spec.settings)
        assert spec.role in profile.datasets, (name, spec.role)


def test_a_user_profile_extends_a_builtin_and_overrides_single_keys(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('extends = "standard"\ndescription = "standard, 20 trials"\n'
                    '[probes.fewshot]\ntrials = 20\n[probes.rpgd]\nsteps = 10\n[datasets]\nlabel = ["digits"]\n')
    mine, standard = get_profile(str(path)), get_profile("standard")
    assert mine.name == "mine" and mine.source == f"{path} extends {BUILTIN_DIR / 'standard.toml'}"
    assert mine.settings_for("fewshot").trials == 20 and standard.settings_for("fewshot").trials == 10
    rpgd = mine.settings_for("rpgd")
    assert rpgd.steps == 10 and rpgd.n_images == 1000  # one key overridden, the table's others kept
    assert mine.datasets["label"] == ("digits",) and mine.datasets["fewshot"] == standard.datasets["fewshot"]
    assert mine.batch_size == standard.batch_size == 256


def test_a_profile_may_extend_another_file_relative_to_itself(tmp_path):
    (tmp_path / "base.toml").write_text('extends = "quick"\n[probes.fewshot]\ntrials = 3\n')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "top.toml").write_text('extends = "../base.toml"\n[probes.fewshot]\nddof = 0\n')
    top = get_profile(str(tmp_path / "sub" / "top.toml"))
    assert (top.settings_for("fewshot").trials, top.settings_for("fewshot").ddof) == (3, 0)


@pytest.mark.parametrize(("text", "match"), [
    ('extends = "quik"\n', r"unknown profile 'quik'. Did you mean 'quick'\?"),
    ('extends = "quick"\nbatch_size = 0\n', r"mine.toml: batch_size: Input should be greater than 0"),
    ('extends = "quick"\ndatasetz = {}\n', r"mine.toml: datasetz: Extra inputs are not permitted"),
    ('extends = "quick"\n[probes.fewshot]\ntrials = "ten"\n', r"profile 'mine' \(.*mine.toml extends .*quick.toml\): "
                                                             r"probes.fewshot.trials: Input should be a valid integer"),
    ('extends = "quick"\n[probes.fewshoot]\n', r"\[probes.fewshoot\]: unknown probe 'fewshoot'. Did you mean 'fewshot'"),
    ('extends = "mine.toml"\n', r"'extends' forms a cycle"),
    ("extends = [\n", r"is not valid TOML"),
])
def test_profile_mistakes_name_the_file_and_the_key(tmp_path, text, match):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        get_profile(str(path)).validate_probes()


def test_missing_profile_file_and_unknown_name_say_what_exists(tmp_path):
    with pytest.raises(ConfigError, match=r"profile file not found: .*nope.toml. Give a registered profile "
                                          r"\(paper, quick, standard\) or the path of a TOML file"):
        get_profile(str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match=r"unknown profile 'fast'.*Registered: paper, quick, standard"):
        get_profile("fast")
    assert PROFILES.names() == ["paper", "quick", "standard"]


def test_settings_hash_is_stable_and_tells_settings_apart():
    quick, paper = get_profile("quick"), get_profile("paper")
    assert settings_hash(quick.settings_for("label_probe")) == settings_hash(get_profile("quick").settings_for("label_probe"))
    assert settings_hash(quick.settings_for("label_probe")) != settings_hash(paper.settings_for("label_probe"))
    assert settings_hash(quick.settings_for("fewshot")) != settings_hash(paper.settings_for("fewshot"))


def test_quick_profile_is_the_one_the_main_job_used_before_profiles_were_files():
    """The numbers of the main job must not move: quick's effective settings are the old defaults."""
    quick = get_profile("quick")
    assert quick.datasets == {
        "label": ("shapes", "digits"), "attributes": ("shapes",), "fewshot": ("digits", "shapes"),
        "clustering": ("digits", "shapes"), "similarity": ("digits", "shapes"),
        "transformations": ("photos", "shapes"), "robustness": ("digits",), "localization": ("shapes",),
        "retrieval": ("shapes",)}  # added with the retrieval probe, which skips encoders without a text tower
    assert quick.dataset_options == {"shapes": {"n_train": 600, "n_test": 300, "image_size": 64},
                                     "digits": {"image_size": 32}}
    assert quick.batch_size == 64 and quick.probes == {}
