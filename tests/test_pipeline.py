"""The Snakemake pipeline, checked without running any job: lint, dry runs of every profile
(and of the SLURM profile), schema validation, profile merging, and the conda environment.

Snakemake runs in a subprocess (its Python API changes between versions) on a temporary copy
of the workflow, so nothing is written into the repository. The smoke profile's DAG runs end
to end in CI (.ci/run), not here.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from snakemake.utils import update_config

ROOT = Path(__file__).parent.parent
PROFILES = {path.stem: path for path in sorted((ROOT / "config" / "profiles").glob("*.yaml"))}
SCHEMA = ROOT / "config" / "schema" / "profile.schema.yaml"


@pytest.fixture(scope="module")
def workflow(tmp_path_factory) -> Path:
    """A copy of the workflow's files (not the results) in a temporary folder."""
    copy_root = tmp_path_factory.mktemp("workflow")
    shutil.copy(ROOT / "Snakefile", copy_root)
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in ("rules", "config", "envs", "profiles", "replication"):
        shutil.copytree(ROOT / folder, copy_root / folder, ignore=ignore)
    return copy_root


def snakemake(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run snakemake (``env``: variables to set on top of ours); its messages (which go to
    stdout when captured) end up in ``stdout``."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        check=False,
    )


def job_counts(output: str) -> dict[str, int]:
    """The dry run's "Job stats" table as {rule: count}."""
    table = output[output.index("Job stats:") :].split("\n\n")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def expected_trainings(profile: dict, family: str) -> int:
    spec = profile["families"][family]
    return len(spec["methods"]) * len(spec["datasets"]) * len(spec["seeds"])


def test_lint_passes(workflow):
    result = snakemake(workflow, "--lint")
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_dry_run_of_every_profile(workflow, name):
    """Every job of the profile is in the DAG, and its toy training jobs write their density
    grids and checks (one dry run per profile serves both: each costs seconds)."""
    result = snakemake(workflow, "-n", "-p", "--configfile", f"config/profiles/{name}.yaml")
    assert result.returncode == 0, result.stdout
    toy_training_jobs_write_their_density_grid_and_checks(result.stdout, load(PROFILES[name]))
    profile, counts = load(PROFILES[name]), job_counts(result.stdout)
    toy, mnist = expected_trainings(profile, "toy"), expected_trainings(profile, "mnist")
    assert counts.get("train_toy", 0) == toy  # each also writes its density.npz, checks.json
    assert "density" not in counts and "checks_run" not in counts  # no job of their own
    assert counts.get("train_mnist", 0) == mnist  # each also writes its samples.png
    assert counts["summarize"] == counts["tables"] == counts["readme"] == 1
    assert counts["claims"] == counts["convergence_figure"] == counts["benchmarks"] == 1
    assert "bench_toy" not in counts  # the toy benchmark is made on demand only
    assert counts.get("toy_figure", 0) == int(toy > 0)
    assert counts.get("mnist_figure", 0) == int(mnist > 0)
    assert not (workflow / profile["results"]).exists()  # a dry run writes nothing


def test_dry_run_of_the_slurm_profile(workflow):
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="the `test` extra installs it")
    result = snakemake(
        workflow, "-n", "--profile", "profiles/slurm", "--configfile", "config/profiles/paper.yaml"
    )
    assert result.returncode == 0, result.stdout
    assert job_counts(result.stdout)["train_mnist"] == expected_trainings(
        load(PROFILES["paper"]), "mnist"
    )
    # sbatch's --cpus-per-task is the job's threads: the paper profile's 4, not a cap of 1.
    assert load(PROFILES["paper"])["families"]["mnist"]["threads"] == 4
    assert "--set=threads=4" in result.stdout and "threads: 4" in result.stdout


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_on_a_gpu_machine_only_mnist_training_asks_for_a_gpu(workflow, tmp_path, name):
    """With nvidia-smi present, MNIST jobs (device auto) claim one GPU each and toy jobs (device
    cpu, latency-bound) ask for none, so they never queue behind the GPU jobs."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\nprintf '0\\n1\\n'\n")
    (fake / "nvidia-smi").chmod(0o755)
    path = f"{fake}{os.pathsep}{os.environ['PATH']}"
    result = snakemake(
        workflow, "-n", "-p", "--configfile", f"config/profiles/{name}.yaml", env={"PATH": path}
    )
    assert result.returncode == 0, result.stdout
    commands = [line for line in result.stdout.splitlines() if "replication train" in line]
    toy = [line for line in commands if "/mnist/" not in line]
    mnist = [line for line in commands if "/mnist/" in line]
    assert toy and mnist
    assert all("--gpus=0" in line and "--set=device=cpu" in line for line in toy)
    assert all("--gpus=1" in line and "--set=device=auto" in line for line in mnist)


def toy_training_jobs_write_their_density_grid_and_checks(stdout: str, profile: dict) -> None:
    """The density grid and the per-run checks come from the training job (one torch start-up
    per toy run instead of three), on the profile's checks grid; MNIST jobs have neither."""
    commands = [line for line in stdout.splitlines() if "replication train" in line]
    toy = [line for line in commands if "/mnist/" not in line]
    mnist = [line for line in commands if "/mnist/" in line]
    assert len(toy) == expected_trainings(profile, "toy") and toy
    grid = profile["checks"]["grid_points"]
    for line in toy:
        run = re.search(r"--out (\S+)", line)[1]
        assert f"--density={run}/density.npz --checks={run}/checks.json" in line
        assert f"--entropy={profile['results']}/toy_entropy.json --grid={grid} " in line
    assert not any("--density" in line or "--checks" in line for line in mnist)
    assert not any(" density --run" in line or "checks run" in line for line in stdout.splitlines())


def test_render_target_does_not_depend_on_training(workflow):
    result = snakemake(workflow, "-n", "render")
    assert result.returncode == 0, result.stdout
    assert job_counts(result.stdout) == {"render": 1, "total": 1}


@pytest.mark.parametrize(
    ("profile_text", "message"),
    [
        ("families: {toy: {device: gpu}}\n", "'gpu' does not match"),
        ("device: cpu\n", "Additional properties are not allowed ('device' was unexpected)"),
        ("seed: 3\n", "Additional properties are not allowed ('seed' was unexpected)"),
        ("families: {toy: {budget: huge}}\n", "'huge' is not one of ['paper', 'reduced']"),
    ],
)
def test_schema_rejects_a_bad_profile_with_a_clear_message(workflow, profile_text, message):
    (workflow / "bad.yaml").write_text(profile_text)
    result = snakemake(workflow, "-n", "--configfile", "bad.yaml")
    assert result.returncode == 2
    assert "bad.yaml is invalid:" in result.stdout
    assert message in result.stdout
    assert "'results' is a required property" in result.stdout  # checked before the merge
    assert "Traceback" not in result.stdout


def test_a_missing_experiment_config_is_named(workflow):
    profile = load(PROFILES["smoke"])
    profile["families"]["toy"]["methods"][0]["config"] = "config/experiments/toy/nope.yaml"
    (workflow / "missing.yaml").write_text(yaml.safe_dump(profile))
    result = snakemake(workflow, "-n", "--configfile", "missing.yaml")
    assert result.returncode == 2
    assert "families.toy.methods[0]" in result.stdout
    assert "config file not found: config/experiments/toy/nope.yaml" in result.stdout


def test_an_override_with_an_unknown_key_fails_the_dag_naming_it(workflow):
    profile = load(PROFILES["smoke"])
    profile["families"]["mnist"]["overrides"].append("train.iters=5")
    (workflow / "unknown.yaml").write_text(yaml.safe_dump(profile))
    result = snakemake(workflow, "-n", "--configfile", "unknown.yaml")
    assert result.returncode == 2
    assert "families.mnist.methods[0]" in result.stdout
    assert "unknown key 'train.iters'" in result.stdout


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_each_profile_states_every_key_so_merging_changes_nothing(name):
    """--configfile merges a profile into the default one (mappings key by key, lists
    replaced): a profile that sets every key the schema requires inherits nothing."""
    schema, profile = load(SCHEMA), load(PROFILES[name])
    jsonschema.Draft202012Validator(schema).validate(profile)
    merged = copy.deepcopy(load(PROFILES["default"]))
    update_config(merged, profile)
    assert merged == profile


def test_profiles_report_to_their_own_places():
    places = {name: (load(p)["results"], load(p)["report"]) for name, p in PROFILES.items()}
    assert places["default"] == ("results/default", "report")
    assert places["smoke"] == ("results/smoke", "results/smoke/report")
    assert places["paper"] == ("results/paper", "report/paper")
    assert all(spec["seeds"] == [0, 1, 2] for spec in load(PROFILES["paper"])["families"].values())
    assert load(PROFILES["default"])["families"]["toy"]["seeds"] == [0, 1, 2]


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_a_paper_budget_is_not_shrunk_by_overrides(name):
    """Only paper-budget runs get a pass/fail verdict: their configs must run unchanged."""
    for family, spec in load(PROFILES[name])["families"].items():
        if spec["budget"] == "paper":
            assert spec["overrides"] == [], family
            assert all(not entry.get("overrides") for entry in spec["methods"]), family


def test_conda_environment_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    environment = load(ROOT / "envs" / "replication.yaml")
    conda = [d for d in environment["dependencies"] if isinstance(d, str)]
    (pip,) = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict)]
    assert f"python{project['requires-python']}" in conda
    normalize = lambda spec: spec.replace(" ", "")
    assert sorted(map(normalize, pip)) == sorted(map(normalize, project["dependencies"]))


def test_profiles_are_checked_as_written_without_torch():
    """snakemake's own environment may lack torch (jobs with --use-conda): the Snakefile still
    checks each profile file against the schema, then warns that run configs wait for the jobs."""
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "from replication import profiles\n"
        "profiles.check_schema(profiles.read('config/profiles/smoke.yaml'), 'smoke')\n"
        "try:\n"
        "    profiles.check_runs(profiles.read('config/profiles/smoke.yaml'), 'smoke')\n"
        "except ImportError:\n"
        "    print('runs need torch')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "runs need torch\n"
