# The report: Markdown tables and the README, rendered from the summary. The last entry,
# `render`, re-renders the whole report from committed results without any training job.


rule paper_budget:
    input:
        bench=PAPER_BENCH,
        citations=CITATIONS,
        configs=PAPER_CONFIGS,
        unmeasured=PAPER_UNMEASURED,
    output:
        PAPER_BUDGET,
    log:
        "results/timing/logs/paper_budget.log",
    params:
        pythonpath=PYTHONPATH,
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/replication.yaml"
    shell:
        "PYTHONPATH={params.pythonpath:q} python -m replication paper-budget "
        "--bench {input.bench:q} --citations {input.citations:q} "
        "--unmeasured {input.unmeasured:q} --out {output:q} > {log:q} 2>&1"


rule tables:
    input:
        summary=SUMMARY,
        entropy=ENTROPY,
        citations=CITATIONS,
        paper_configs=PAPER_CONFIGS,
        paper_budget=PAPER_BUDGET,
    output:
        toy=report(f"{REPORT}/toy.md", caption="captions/toy.rst", category="Tables"),
        mnist=report(f"{REPORT}/mnist.md", caption="captions/mnist.rst", category="Tables"),
        status=report(f"{REPORT}/status.md", caption="captions/status.rst", category="Tables"),
    log:
        f"{RESULTS}/logs/tables.log",
    params:
        pythonpath=PYTHONPATH,
        out_dir=folder_of("toy"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/replication.yaml"
    shell:
        "PYTHONPATH={params.pythonpath:q} python -m replication tables "
        "--summary {input.summary:q} --entropy {input.entropy:q} "
        "--citations {input.citations:q} --paper-budget {input.paper_budget:q} "
        "--out-dir {params.out_dir:q} > {log:q} 2>&1"


rule claims:
    input:
        summary=SUMMARY,
    output:
        report(CLAIMS, caption="captions/claims.rst", category="Tables"),
    log:
        f"{RESULTS}/logs/claims.log",
    params:
        pythonpath=PYTHONPATH,
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/replication.yaml"
    shell:
        "PYTHONPATH={params.pythonpath:q} python -m replication claims "
        "--summary {input.summary:q} --out {output:q} > {log:q} 2>&1"


# The toy benchmark is optional: read when it exists (TOY_BENCH_FOUND), made on demand.
rule benchmarks:
    input:
        summary=SUMMARY,
    output:
        report(BENCHMARKS, caption="captions/benchmarks.rst", category="Tables"),
    log:
        f"{RESULTS}/logs/benchmarks.log",
    params:
        pythonpath=PYTHONPATH,
        bench=[f"--bench={path}" for path in TOY_BENCH_FOUND],
        bench_contents=contents_digest(*TOY_BENCH_FOUND),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/replication.yaml"
    shell:
        "PYTHONPATH={params.pythonpath:q} python -m replication benchmarks "
        "--summary {input.summary:q} {params.bench:q} --out {output:q} > {log:q} 2>&1"


# Run on demand on an idle machine (`snakemake results/timing/toy/bench.json --cores 1`);
# `rule all` does not ask for it. Each config's own batch size, one thread (bench's default).
rule bench_toy:
    input:
        TOY_BENCH_CONFIGS,
    output:
        json=TOY_BENCH,
        md="results/timing/toy/bench.md",
    log:
        "results/timing/logs/bench_toy.log",
    params:
        pythonpath=PYTHONPATH,
        out_dir=folder_of("json"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../envs/replication.yaml"
    shell:
        "PYTHONPATH={params.pythonpath:q} python -m replication bench {input:q} "
        "--batch-size 0 --out {params.out_dir:q} > {log:q} 2>&1"


rule readme:
    input:
        summary=SUMMARY,
        tables=[*TABLES, CLAIMS, BENCHMARKS, CHECKS_MD],
        figures=FIGURES,
    output:
        report(README, caption="captions/readme.rst", category="Report"),
    log:
        f"{RESULTS}/logs/readme.log",
    params:
        pythonpath=PYTHONPATH,
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/replication.yaml"
    shell:
        "PYTHONPATH={params.pythonpath:q} python -m replication readme "
        "--summary {input.summary:q} --table {input.tables:q} --figure {input.figures:q} "
        "--out {output:q} > {log:q} 2>&1"


# Neither input nor output: snakemake always runs it and never consults the training jobs,
# so a clone without weights re-renders the committed report (tables, figures, README) as is.
rule render:
    log:
        f"{RESULTS}/logs/render.log",
    params:
        pythonpath=PYTHONPATH,
        summary=SUMMARY,
        entropy=ENTROPY,
        citations=CITATIONS,
        truth=TOY_TRUTH,
        checks=CHECKS,
        paper_budget=PAPER_BUDGET,
        bench=[f"--bench={path}" for path in TOY_BENCH_FOUND],
        out_dir=REPORT,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/replication.yaml"
    shell:
        "PYTHONPATH={params.pythonpath:q} python -m replication render "
        "--summary {params.summary:q} --entropy {params.entropy:q} "
        "--citations {params.citations:q} --truth {params.truth:q} --checks {params.checks:q} "
        "--paper-budget {params.paper_budget:q} {params.bench:q} --out-dir {params.out_dir:q} "
        "> {log:q} 2>&1"
