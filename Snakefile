# fmrepro: Flow Matching (Lipman et al., 2023) end to end. Wiring only; the rules are in
# workflow/rules/, the parameters in params/<experiment>.yaml (docs/workflow.md).
#   .venv/bin/snakemake                                  # CPU default (params/smoke.yaml)
#   .venv/bin/snakemake --profile slurm --configfile params/paper.yaml  # SLURM (./slurm -> profiles/slurm)
from snakemake.utils import min_version

min_version("9.0")


configfile: "params/smoke.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/canary.smk"


rule all:
    default_target: True
    input:
        rules.report.output,
