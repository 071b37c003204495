"""histobatch workflow: segment every slide (one job each), then the cohort table and plot.

    snakemake --cores 4                                     # this machine
    snakemake --profile pipelines/profiles/slurm            # a SLURM cluster
    snakemake --cores 4 --config slides='scans/*.svs' out=results/cohort1

Settings: pipelines/config/config.yaml (validated against pipelines/schemas/).
"""

import os

from snakemake.utils import min_version, validate

min_version("8.0")
# pipelines/envs/histobatch.yaml installs this checkout when run with --use-conda.
os.environ.setdefault("HISTOBATCH_SOURCE", workflow.basedir)


configfile: workflow.source_path("pipelines/config/config.yaml")


validate(config, "pipelines/schemas/config.schema.yaml")


include: "pipelines/rules/common.smk"
include: "pipelines/rules/segment.smk"
include: "pipelines/rules/cohort.smk"


localrules:
    all,
    aggregate,


rule all:
    input:
        cohort_outputs(),
    default_target: True
