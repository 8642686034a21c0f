# Stage 4: reports/<experiment>/ (Table 1 and Figures 4-7) built from the MLflow records of
# every evaluation; the outputs are also the figures of `snakemake --report report.html`.
FIGURES = [
    "fig4_paths_2d",
    "fig5_quality_during_training",
    "fig6_trajectories",
    "fig7_solver_sweep",
]


# The report reads MLflow and writes reports/: it runs where Snakemake runs, not as a
# cluster job (one short CPU step at the end of a campaign).
localrules:
    report,


rule report:
    input:
        metrics=expand(
            rules.evaluate.output.metrics,
            zip,
            dataset=[dataset for dataset, _, _, _ in RUNS],
            run=[run for _, _, _, run in RUNS],
        ),
    output:
        table=report(
            f"{REPORTS}/table1.csv", caption="../report/table1.rst", category="Table 1"
        ),
        table_md=f"{REPORTS}/table1.md",
        table_tex=f"{REPORTS}/table1.tex",
        readme=f"{REPORTS}/README.md",
        figures=report(
            expand(f"{REPORTS}/{{fig}}.png", fig=FIGURES),
            caption="../report/figures.rst",
            category="Figures",
        ),
        figures_pdf=expand(f"{REPORTS}/{{fig}}.pdf", fig=FIGURES),
    params:
        experiment=lambda wc: as_json({k: v for k, v in PARAMS.items() if k != "resources"}),
    log:
        f"{LOGS}/report.log",
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "{PY:q} -m fmcore.report --params {PARAMS_FILE:q} > {log:q} 2>&1"
