# Per slide: tissue, tiles, model, stitching -> nuclei table, OME-Zarr masks, statistics
# (summary.json) and overview picture, all written by `histobatch segment` into OUT/<slide>/.


rule segment:
    input:
        slide=slide_path,
    output:
        summary=f"{OUT}/{{slide}}/summary.json",
        table=f"{OUT}/{{slide}}/nuclei.parquet",
        overview=f"{OUT}/{{slide}}/overview.png",
    log:
        f"{OUT}/logs/segment/{{slide}}.log",
    params:
        out=lambda wildcards, output: Path(output.summary).parent.parent,
        options=segment_options,
    conda:
        "../envs/histobatch.yaml"
    threads: config["threads"]
    resources:
        mem_mb=config["resources"]["segment"]["mem_mb"],
        runtime=config["resources"]["segment"]["runtime"],
        gpu=config["resources"]["segment"]["gpu"],
    shell:
        "histobatch segment {input.slide:q} -o {params.out:q} --slide-id {wildcards.slide:q} "
        "{params.options} --threads {threads} --no-cohort --no-progress > {log:q} 2>&1"
