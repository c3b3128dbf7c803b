# Training: one job per run (method x dataset x seed). Each writes metrics.json and model.pt
# (MNIST runs also their samples.png) into its run folder; a resumable checkpoint.pt lives there too but is not a declared output,
# so an interrupted job resumes instead of starting over. Toy and MNIST training are two rules
# of one template, so that a cluster profile can give them different resources. A toy job
# also writes, after training and in the same process, the figure's log-density grid
# (density.npz) and the run's analytic checks (checks.json; `python -m replication density`
# and `checks run` compute the same from a finished run): as jobs of their own, each paid
# seconds of start-up for torch and the model.


rule train_toy:
    input:
        config=lambda wildcards: method_entry(wildcards)["config"],
        entropy=ENTROPY,
    output:
        metrics=f"{RUN}/metrics.json",
        weights=f"{RUN}/model.pt",
        density=f"{RUN}/density.npz",
        checks=f"{RUN}/checks.json",
    log:
        f"{RESULTS}/logs/train/{{dataset}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{RUN}/benchmark.tsv"
    params:
        pythonpath=PYTHONPATH,
        out=folder_of("metrics"),
        overrides=train_overrides,
        after=after_training,
    threads: lambda wildcards: family_of(wildcards)["threads"]
    resources:
        gpu=gpus_per_job,
        mem_mb=lambda wildcards: family_of(wildcards)["resources"]["mem_mb"],
        runtime=lambda wildcards: family_of(wildcards)["resources"]["runtime"],
    wildcard_constraints:
        dataset=choices(FAMILIES["toy"]["datasets"]),
        method=choices(entry["method"] for entry in FAMILIES["toy"]["methods"]),
        seed=r"\d+",
    conda:
        "../envs/replication.yaml"
    shell:
        "PYTHONPATH={params.pythonpath:q} python -m replication train --config {input.config:q} "
        "--out {params.out:q} {params.overrides:q} --set=threads={threads} --gpus={resources.gpu} "
        "--no-progress {params.after:q} "
        "> {log:q} 2>&1"


# MNIST jobs are the longest (10-15 minutes on a CPU, against 1-3 for a toy run): starting them
# first keeps every core busy to the end instead of leaving one long job running alone.
use rule train_toy as train_mnist with:
    priority: 10
    input:
        config=lambda wildcards: method_entry(wildcards)["config"],
    output:
        metrics=f"{RUN}/metrics.json",
        weights=f"{RUN}/model.pt",
        samples=f"{RUN}/samples.png",
    wildcard_constraints:
        dataset="mnist",
        method=choices(entry["method"] for entry in FAMILIES["mnist"]["methods"]),
        seed=r"\d+",
