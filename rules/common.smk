# Small helpers shared by the rules: the runs of the profile, their folders and files. Keep
# this file short; logic belongs in the `replication` package.

import hashlib
import os
import re
import shutil
from pathlib import Path

# Jobs run `python -m replication`: the interpreter of the active environment (the venv
# snakemake runs in, or the rule's conda environment with --use-conda). PYTHONPATH points at
# the workflow, so the package need not be installed there; relative to the working
# directory, so that moving the checkout changes no params.
PYTHONPATH = os.path.relpath(workflow.basedir)
TOY2D_CODE = f"{workflow.basedir}/replication/datasets/toy2d.py"
ENTROPY_CODE = [TOY2D_CODE, f"{workflow.basedir}/replication/checks/entropy.py"]

RESULTS, REPORT, FAMILIES = config["results"], config["report"], config["families"]
RUN = f"{RESULTS}/{{dataset}}/{{method}}/seed{{seed}}"  # one folder per run
SUMMARY = f"{RESULTS}/summary.csv"
ENTROPY = f"{RESULTS}/toy_entropy.json"
CITATIONS = "config/citations.yaml"
# The paper configs' measured cost (python -m replication bench --batch-size 0, committed) and
# the projected paper budgets the MNIST table shows (rules/report.smk, rule paper_budget).
PAPER_BENCH = sorted(str(path) for path in Path("results/timing").glob("*/bench.json")
                     if path.parent.name != "toy")  # fmt: skip
PAPER_CONFIGS = sorted(str(path) for path in Path("config/experiments/mnist").glob("*-paper.yaml"))
PAPER_UNMEASURED = "config/unmeasured.yaml"  # why a paper config has no benchmark
PAPER_BUDGET = "results/timing/paper_budget.json"
# The toy configs' cost, one thread (bench_toy in rules/report.smk): made on demand only, not
# for the default target, since a benchmark wants an idle machine; benchmarks.md shows it when
# the file exists.
TOY_BENCH = "results/timing/toy/bench.json"
TOY_BENCH_CONFIGS = [entry["config"] for entry in FAMILIES["toy"]["methods"]]  # the profile's
# benchmarks.md reads it as a param with a contents digest, not as an input: as an input, a
# touched toy config would make the default target re-run the benchmark.
TOY_BENCH_FOUND = [TOY_BENCH] if Path(TOY_BENCH).is_file() else []


def _check_profile():
    """Fail early, naming the problem, on what the schema cannot express."""
    for family, spec in FAMILIES.items():
        names = [entry["method"] for entry in spec["methods"]]
        if len(set(names)) < len(names):
            raise ValueError(f"profile {config['profile']}: a method is listed twice in {family}")
        for entry in spec["methods"]:
            if not Path(entry["config"]).is_file():
                raise ValueError(
                    f"profile {config['profile']}: {family}/{entry['method']} names the "
                    f"experiment config {entry['config']}, which does not exist"
                )


_check_profile()
RUNS = {
    family: [
        {"dataset": dataset, "method": entry["method"], "seed": seed}
        for dataset in spec["datasets"]
        for entry in spec["methods"]
        for seed in spec["seeds"]
    ]
    for family, spec in FAMILIES.items()
}
if not any(RUNS.values()):
    raise ValueError(f"profile {config['profile']} runs nothing: no family has methods and datasets")


def run_files(family, name):
    """The file ``name`` of every run of ``family``, in the profile's order."""
    return [f"{RUN.format(**run)}/{name}" for run in RUNS[family]]


def choices(values):
    """A wildcard constraint matching exactly ``values`` (nothing when empty)."""
    return "|".join(re.escape(str(v)) for v in values) or "(?!x)x"


TOY_TRUTH = [f"{RESULTS}/truth/{dataset}.npz" for dataset in FAMILIES["toy"]["datasets"]]
TABLES = [f"{REPORT}/{name}.md" for name in ("toy", "mnist", "status")]
CLAIMS = f"{REPORT}/claims.md"  # the papers' claims tested on the runs (rules/report.smk)
BENCHMARKS = f"{REPORT}/benchmarks.md"  # cost and time to target per method (rules/report.smk)
FIGURES = [f"{REPORT}/figures/{name}.png" for family, name in
           (("toy", "toy_densities"), ("mnist", "mnist_samples")) if RUNS[family]]  # fmt: skip
FIGURES.append(f"{REPORT}/figures/convergence.png")  # every family: validation NLL vs seconds
README = f"{REPORT}/README.md"
CHECKS = f"{RESULTS}/checks.json"  # the analytic checks (rules/checks.smk)
CHECKS_MD = f"{REPORT}/checks.md"
CHECKS_PASSED = f"{RESULTS}/checks.passed"


def family_of(wildcards):
    return FAMILIES["mnist" if wildcards.dataset == "mnist" else "toy"]


def method_entry(wildcards):
    (entry,) = [e for e in family_of(wildcards)["methods"] if e["method"] == wildcards.method]
    return entry


def train_overrides(wildcards):
    """The run's --set options: the family's, the method's, then data, seed and device (the
    rule adds the job's threads)."""
    family = family_of(wildcards)
    assignments = [
        *family["overrides"],
        *method_entry(wildcards).get("overrides", []),
        f"data.name={wildcards.dataset}",
        f"seed={wildcards.seed}",
        f"device={family['device']}",
    ]
    return [f"--set={assignment}" for assignment in assignments]


def gpus_per_job(wildcards):
    """1 when the run's family trains on CUDA: device cuda[:N], or auto where nvidia-smi is
    installed; 0 otherwise (toy families run on the CPU in every shipped profile)."""
    device = family_of(wildcards)["device"]
    if device == "auto":
        return int(shutil.which("nvidia-smi") is not None)
    return int(device.startswith("cuda"))


def contents_digest(*paths):
    """sha256 of the files' contents, for a rule's params. Committed outputs made from committed
    files (no training) take their source files as params, not inputs: a changed file re-runs
    them (params trigger) while the arbitrary file times of a fresh clone do not."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def folder_of(key):
    """A params function: the folder of the job's output ``key``."""
    return lambda wildcards, output: os.path.dirname(output[key])


def after_training(wildcards, input, output):
    """A params function: a toy training job's --density/--checks options (none for MNIST,
    whose rule has no such outputs)."""
    if "density" not in output.keys():
        return []
    grid = config["checks"]["grid_points"]
    return [f"--density={output.density}", f"--checks={output.checks}",
            f"--entropy={input.entropy}", f"--grid={grid}"]  # fmt: skip
