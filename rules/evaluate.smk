# From runs to numbers: the toy densities' truth and entropies, and the summary table of every
# run of the profile (each toy run's log-density grid comes from its training job).


rule truth:
    output:
        f"{RESULTS}/truth/{{dataset}}.npz",
    log:
        f"{RESULTS}/logs/truth/{{dataset}}.log",
    params:
        pythonpath=PYTHONPATH,
        dataset="{dataset}",
        code=contents_digest(TOY2D_CODE),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    wildcard_constraints:
        dataset=choices(FAMILIES["toy"]["datasets"]),
    conda:
        "../envs/replication.yaml"
    shell:
        "PYTHONPATH={params.pythonpath:q} python -m replication density "
        "--dataset {params.dataset:q} --out {output:q} > {log:q} 2>&1"


rule entropy:
    output:
        ENTROPY,
    log:
        f"{RESULTS}/logs/entropy.log",
    params:
        pythonpath=PYTHONPATH,
        datasets=FAMILIES["toy"]["datasets"],
        code=contents_digest(*ENTROPY_CODE),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/replication.yaml"
    shell:
        "PYTHONPATH={params.pythonpath:q} python -m replication entropy {params.datasets:q} "
        "--out {output:q} > {log:q} 2>&1"


rule summarize:
    input:
        metrics=run_files("toy", "metrics.json") + run_files("mnist", "metrics.json"),
        entropy=ENTROPY,  # time to target: validation NLL <= entropy + 0.03 nats
    output:
        SUMMARY,
    log:
        f"{RESULTS}/logs/summarize.log",
    params:
        pythonpath=PYTHONPATH,
        profile=config["profile"],
        budgets=[f"--budget={family}={spec['budget']}" for family, spec in FAMILIES.items()],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/replication.yaml"
    shell:
        "PYTHONPATH={params.pythonpath:q} python -m replication summarize "
        "--profile {params.profile:q} {params.budgets:q} --entropy {input.entropy:q} "
        "--out {output:q} {input.metrics:q} "
        "> {log:q} 2>&1"
