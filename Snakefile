"""The replication pipeline: train every method of a profile on each of its datasets and
seeds, collect the metrics, and render the report (tables, figures, README).

    snakemake --cores all                                        # default profile
    snakemake --cores 2 --configfile config/profiles/smoke.yaml  # smoke test (CI)
    snakemake render --cores 1                                   # re-render report/ only

Profiles are config files (config/profiles/*.yaml, schema in config/schema/); the rules live in
rules/*.smk, one file per stage; every rule runs one `python -m replication` command.
"""

import sys

from snakemake.utils import min_version, validate

from replication import profiles
from replication.typed import ConfigError

min_version("9.0")


configfile: "config/profiles/default.yaml"


# Each --configfile as written (the merge would fill a missing key from the default profile),
# the merged config, then the experiment config of every run with its overrides: bad input
# fails here, naming the key, and not inside the jobs.
try:
    profiles.check(workflow.overwrite_configfiles, config)
except ConfigError as error:
    print(f"error: {error}", file=sys.stderr)  # the message alone, no Python traceback
    sys.exit(2)  # bad input, as for `python -m replication`
except ImportError as error:  # snakemake's own environment lacks torch (jobs use --use-conda)
    print(f"warning: run configs not checked before the jobs ({error})", file=sys.stderr)
validate(config, "config/schema/profile.schema.yaml")


include: "rules/common.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/figures.smk"
include: "rules/report.smk"
include: "rules/checks.smk"


# The weights of every run: they are not committed, so on a fresh clone this target retrains
# every run (and re-derives everything from the runs), never an mtime-dependent part of them.
MODELS = run_files("toy", "model.pt") + run_files("mnist", "model.pt")


rule all:
    default_target: True
    input:
        MODELS,
        SUMMARY,
        TABLES,
        CLAIMS,
        BENCHMARKS,
        FIGURES,
        README,
        CHECKS_MD,
        CHECKS_PASSED,
