# Per cohort: one row per slide (counts, fractions, densities per type, tissue area, failures)
# as CSV and Parquet, and the type-composition plot, by `histobatch aggregate`.


rule aggregate:
    input:
        summaries=expand(f"{OUT}/{{slide}}/summary.json", slide=sorted(SLIDES)),
    output:
        table=f"{OUT}/cohort.csv",
        parquet=f"{OUT}/cohort.parquet",
        plot=f"{OUT}/cohort.png",
    log:
        f"{OUT}/logs/aggregate.log",
    params:
        out=lambda wildcards, output: Path(output.table).parent,
    conda:
        "../envs/histobatch.yaml"
    threads: 1
    resources:
        mem_mb=config["resources"]["aggregate"]["mem_mb"],
        runtime=config["resources"]["aggregate"]["runtime"],
    shell:
        "histobatch aggregate {params.out:q} > {log:q} 2>&1"
