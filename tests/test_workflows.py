"""The GitHub workflows: actionlint (with shellcheck over their `run:` scripts), shellcheck over
scripts/*.sh, every script, make target and prep command they run exists, and the properties the
release and deploy workflows promise (provenance, the identity's handling, the lock pull request)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from pipeline.cli.app import app
from tests.fixtures_run import PROJECT

WORKFLOWS = sorted((PROJECT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent
SCRIPT = re.compile(r"(?<![\w/.$-])((?:\./)?(?:scripts|\.ci)/[\w./-]+)")
MAKE = re.compile(r"(?<![\w-])make\s+([\w-]+)")
PREP = re.compile(r"(?:\.venv/bin/prep|\"\$prep\"|(?<![\w/$\"-])prep)\s+([a-z][\w-]*)")


def tool(name: str) -> str:
    found = BIN / name if (BIN / name).exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: make install puts it in .venv (pyproject.toml, test extra)")
    return str(found)


def steps(workflow: Path) -> list[dict[str, Any]]:
    jobs = yaml.safe_load(workflow.read_text())["jobs"]
    return [step for job in jobs.values() for step in job["steps"]]


def run_blocks(workflow: Path) -> list[str]:
    return [step["run"] for step in steps(workflow) if "run" in step]


def test_every_workflow_passes_actionlint_and_shellcheck() -> None:
    assert {w.name for w in WORKFLOWS} >= {"release.yml", "deploy.yml", "locks.yml"}
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")  # actionlint finds shellcheck
    linted = subprocess.run(
        [tool("actionlint"), "-shellcheck", tool("shellcheck"), *map(str, WORKFLOWS)],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert linted.returncode == 0, linted.stdout + linted.stderr
    scripts = sorted(str(p) for p in (PROJECT / "scripts").glob("*.sh")) + [str(PROJECT / ".ci" / "run")]
    checked = subprocess.run([tool("shellcheck"), *scripts], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout


def test_every_script_target_and_command_a_workflow_runs_exists() -> None:
    targets = set(re.findall(r"^([\w-]+):", (PROJECT / "Makefile").read_text(), re.MULTILINE))
    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    missing = []
    for workflow in WORKFLOWS:
        for block in run_blocks(workflow):
            for script in SCRIPT.findall(block):
                path = PROJECT / script
                if not (path.is_file() and os.access(path, os.X_OK)):
                    missing.append(f"{workflow.name}: {script} (missing or not executable)")
            missing += [f"{workflow.name}: make {t}" for t in MAKE.findall(block) if t not in targets]
            missing += [f"{workflow.name}: prep {c}" for c in PREP.findall(block) if c not in commands]
    for script in (PROJECT / "scripts").glob("*.sh"):
        text = script.read_text()
        for used in re.findall(r"\$project/(scripts/[\w./-]+)", text):
            if not (PROJECT / used).is_file():
                missing.append(f"{script.name}: {used}")
        missing += [f"{script.name}: prep {c}" for c in PREP.findall(text) if c not in commands]
    assert missing == []


def test_the_release_workflow_attests_every_bundle() -> None:
    workflow = yaml.safe_load((PROJECT / ".github" / "workflows" / "release.yml").read_text())
    assert workflow["permissions"]["id-token"] == "write"
    assert workflow["permissions"]["attestations"] == "write"
    names = [s.get("uses", s.get("run", "")) for s in workflow["jobs"]["release"]["steps"]]
    attest = next(i for i, n in enumerate(names) if n.startswith("actions/attest-build-provenance@"))
    assert (
        names.index("scripts/release.sh dist")
        < attest
        < next(i for i, n in enumerate(names) if "gh release upload" in n)
    )
    step = workflow["jobs"]["release"]["steps"][attest]
    assert step["with"]["subject-path"] == "dist/*.tar.gz"
    # Its own token's release raises no event for deploy.yml: it starts the deploy itself.
    assert workflow["permissions"]["actions"] == "write"
    assert any("gh workflow run deploy.yml" in n and "-f tag=" in n for n in names)


def test_the_deploy_workflow_guards_the_identity_and_runs_the_deploy_script() -> None:
    path = PROJECT / ".github" / "workflows" / "deploy.yml"
    workflow = yaml.safe_load(path.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert triggers["release"]["types"] == ["published"]
    assert {"tag", "targets", "network"} <= set(triggers["workflow_dispatch"]["inputs"])
    job_steps = workflow["jobs"]["deploy"]["steps"]
    text = path.read_text()
    # The secret reaches the runner only through a step's env, never a command line or another step.
    assert text.count("secrets.PREP_DEPLOY_PEM") == 1
    write = next(s for s in job_steps if "secrets.PREP_DEPLOY_PEM" in str(s.get("env", {})))
    assert (
        "umask 077" in write["run"]
        and "chmod 600" in write["run"]
        and 'echo "$DEPLOY_PEM' not in write["run"]
    )
    deploy = next(s for s in job_steps if "scripts/deploy.sh" in s.get("run", ""))
    assert deploy["env"]["PREP_PEM"].endswith("/deploy-identity.pem") and "PREP_ATTEST_REPO" in deploy["env"]
    assert "set -x" not in text
    last = job_steps[-1]
    assert (
        last["if"] == "always()" and last["run"].startswith("rm -f") and "deploy-identity.pem" in last["run"]
    )
    download = next(s for s in job_steps if "gh release download" in s.get("run", ""))
    assert "SHA256SUMS" in download["run"] and "*.tar.gz" in download["run"]


def test_the_locks_workflow_proposes_the_locks_in_a_pull_request() -> None:
    path = PROJECT / ".github" / "workflows" / "locks.yml"
    workflow = yaml.safe_load(path.read_text())
    assert "schedule" in workflow[True] and "workflow_dispatch" in workflow[True]
    job_steps = workflow["jobs"]["locks"]["steps"]
    lock = next(s for s in job_steps if "prep lock --all" in s.get("run", ""))
    assert "--markdown" in lock["run"]
    pull = next(s for s in job_steps if s.get("uses", "").startswith("peter-evans/create-pull-request@"))
    assert pull["with"]["add-paths"] == "recipes/*.lock.json" and "locks.md" in pull["with"]["body-path"]
