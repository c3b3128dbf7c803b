# Figures of the report, drawn from the runs' small figure files (never from weights).


rule toy_figure:
    input:
        summary=SUMMARY,
        densities=run_files("toy", "density.npz"),
        truth=TOY_TRUTH,
    output:
        report(
            f"{REPORT}/figures/toy_densities.png",
            caption="captions/toy_densities.rst",
            category="Figures",
        ),
    log:
        f"{RESULTS}/logs/toy_figure.log",
    params:
        pythonpath=PYTHONPATH,
        kind="toy",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/replication.yaml"
    shell:
        "PYTHONPATH={params.pythonpath:q} python -m replication figures --kind {params.kind} "
        "--summary {input.summary:q} --truth {input.truth:q} --out {output:q} > {log:q} 2>&1"


rule mnist_figure:
    input:
        summary=SUMMARY,
        samples=run_files("mnist", "samples.png"),
    output:
        report(
            f"{REPORT}/figures/mnist_samples.png",
            caption="captions/mnist_samples.rst",
            category="Figures",
        ),
    log:
        f"{RESULTS}/logs/mnist_figure.log",
    params:
        pythonpath=PYTHONPATH,
        kind="mnist",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/replication.yaml"
    shell:
        "PYTHONPATH={params.pythonpath:q} python -m replication figures --kind {params.kind} "
        "--summary {input.summary:q} --out {output:q} > {log:q} 2>&1"


# Validation NLL against training seconds, from the runs' metrics files only (no weights).
rule convergence_figure:
    input:
        summary=SUMMARY,
        metrics=run_files("toy", "metrics.json") + run_files("mnist", "metrics.json"),
        entropy=ENTROPY,
    output:
        report(
            f"{REPORT}/figures/convergence.png",
            caption="captions/convergence.rst",
            category="Figures",
        ),
    log:
        f"{RESULTS}/logs/convergence_figure.log",
    params:
        pythonpath=PYTHONPATH,
        kind="convergence",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/replication.yaml"
    shell:
        "PYTHONPATH={params.pythonpath:q} python -m replication figures --kind {params.kind} "
        "--summary {input.summary:q} --entropy {input.entropy:q} --out {output:q} > {log:q} 2>&1"
