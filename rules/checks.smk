# Analytic checks: cases whose answers are known in closed form (replication.checks). Each
# check job writes a list of records (each toy training job too: its run's checks.json, see
# rules/train.smk); `checks_collect` merges them into checks.json and renders checks.md;
# `checks_verify` then fails the pipeline if any check failed, after the report already
# shows which.

TOY_CONFIGS = {entry["method"]: entry["config"] for entry in FAMILIES["toy"]["methods"]}
DETERMINISM_CONFIG = "config/experiments/toy/realnvp.yaml"
CHECK_FILES = [
    f"{RESULTS}/checks/closed_form.json",
    f"{RESULTS}/checks/determinism.json",
    *[f"{RESULTS}/checks/gaussian/{method}.json" for method in TOY_CONFIGS],
    *run_files("toy", "checks.json"),
] + ([ENTROPY] if FAMILIES["toy"]["datasets"] else [])


# The checks that need no trained run start early (after the MNIST jobs, priority 10): left to
# the end, the longest of them ran alone while the other core idled.
rule checks_closed_form:
    priority: 5
    output:
        f"{RESULTS}/checks/closed_form.json",
    log:
        f"{RESULTS}/logs/checks/closed_form.log",
    params:
        pythonpath=PYTHONPATH,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/replication.yaml"
    shell:
        "PYTHONPATH={params.pythonpath:q} python -m replication checks closed-form "
        "--out {output:q} > {log:q} 2>&1"


rule checks_gaussian:
    priority: 5
    output:
        f"{RESULTS}/checks/gaussian/{{method}}.json",
    log:
        f"{RESULTS}/logs/checks/gaussian/{{method}}.log",
    params:
        pythonpath=PYTHONPATH,
        config=lambda wildcards: TOY_CONFIGS[wildcards.method],
        contents=lambda wildcards: contents_digest(TOY_CONFIGS[wildcards.method]),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    wildcard_constraints:
        method=choices(TOY_CONFIGS),
    conda:
        "../envs/replication.yaml"
    shell:
        "PYTHONPATH={params.pythonpath:q} python -m replication checks gaussian "
        "--config {params.config:q} --out {output:q} > {log:q} 2>&1"


rule checks_determinism:
    priority: 5
    output:
        f"{RESULTS}/checks/determinism.json",
    log:
        f"{RESULTS}/logs/checks/determinism.log",
    params:
        pythonpath=PYTHONPATH,
        config=DETERMINISM_CONFIG,
        contents=contents_digest(DETERMINISM_CONFIG),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/replication.yaml"
    shell:
        "PYTHONPATH={params.pythonpath:q} python -m replication checks determinism "
        "--config {params.config:q} --out {output:q} > {log:q} 2>&1"


rule checks_collect:
    input:
        CHECK_FILES,
    output:
        checks=CHECKS,
        table=report(CHECKS_MD, caption="captions/checks.rst", category="Tables"),
    log:
        f"{RESULTS}/logs/checks/collect.log",
    params:
        pythonpath=PYTHONPATH,
        profile=config["profile"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/replication.yaml"
    shell:
        "PYTHONPATH={params.pythonpath:q} python -m replication checks collect {input:q} "
        "--profile {params.profile:q} --out {output.checks:q} --report {output.table:q} "
        "> {log:q} 2>&1"


rule checks_verify:
    input:
        CHECKS,
    output:
        CHECKS_PASSED,
    log:
        f"{RESULTS}/logs/checks/verify.log",
    params:
        pythonpath=PYTHONPATH,
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/replication.yaml"
    shell:
        "PYTHONPATH={params.pythonpath:q} python -m replication checks verify {input:q} "
        "> {output:q} 2> {log:q} || (cat {output:q} >&2; exit 1)"
