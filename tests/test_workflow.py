"""Snakemake DAG: job lists and resources (dry runs), params errors, profiles, quoting."""

from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from pathlib import Path

import pytest
import yaml
from workflow_util import ROOT, dry_run_jobs, load_yaml, placeholder_raw_inputs, snakemake, write_yaml

from fmcore.config import SCHEMA_PATH, ParamsError, load_params, resolve_job
from fmcore.models.configs import PAPER_CONFIGS
from fmcore.plan.auto import resolve_auto
from fmcore.plan.profile import model_key, sample_shape

PAPER = ROOT / "params" / "paper.yaml"
SMOKE = ROOT / "params" / "smoke.yaml"


def test_schema_for_snakemake_is_fmcores_schema():
    assert (ROOT / "workflow" / "schemas" / "params.schema.yaml").resolve() == SCHEMA_PATH.resolve()


def test_default_dry_run_lists_the_smoke_grid():
    """`snakemake` with no arguments: default profile, params/smoke.yaml, 34 jobs."""
    out = snakemake("-n", "-F")
    assert out.returncode == 0, out.stderr + out.stdout
    assert "Using workflow specific profile profiles/default" in out.stderr + out.stdout
    jobs = dry_run_jobs(out.stdout + out.stderr)
    counts = Counter(j["rule"] for j in jobs)
    assert counts == {"prepare": 2, "reference": 2, "train": 14, "evaluate": 14, "report": 1, "all": 1}
    trained = {(j["wildcards"]["dataset"], j["wildcards"]["run"]) for j in jobs if j["rule"] == "train"}
    params = load_params(SMOKE)
    assert trained == {(j["dataset"], j["method"]) for j in params["jobs"].values()}
    train = next(j for j in jobs if j["rule"] == "train")
    assert train["resources"]["launch"] == "" and train["resources"]["mpi"] == ""
    assert train["resources"]["slurm_extra"] == "--ntasks-per-node=1"  # no GPUs, no warning signal
    assert train["log"].startswith("logs/smoke/train/")


def test_a_fresh_clone_runs_the_whole_smoke_grid(tmp_path):
    """No tracked file may be a workflow output: Snakemake skips a job whose outputs exist,
    so a committed report made README's first command do nothing on a fresh clone."""
    import shutil
    import subprocess

    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    for name in filter(None, listed.stdout.split("\0")):
        src, dst = ROOT / name, tmp_path / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(src.readlink())
        elif src.is_file():
            shutil.copy2(src, dst)
    out = snakemake("-n", "-s", str(tmp_path / "Snakefile"), cwd=tmp_path)  # no -F
    assert out.returncode == 0, out.stderr + out.stdout
    counts = Counter(j["rule"] for j in dry_run_jobs(out.stdout + out.stderr))
    assert counts == {"prepare": 2, "reference": 2, "train": 14, "evaluate": 14, "report": 1, "all": 1}


def test_paper_grid_dry_run_has_the_papers_jobs_and_resources(tmp_path):
    """`-n --configfile params/paper.yaml` (raw inputs as empty placeholders)."""
    params = load_params(PAPER)
    placeholder_raw_inputs(params, tmp_path)
    out = snakemake("-n", "-d", str(tmp_path), "--configfile", str(PAPER))
    assert out.returncode == 0, out.stderr + out.stdout
    jobs = dry_run_jobs(out.stdout + out.stderr)
    counts = Counter(j["rule"] for j in jobs)
    assert counts == {"prepare": 4, "reference": 4, "train": 16, "evaluate": 16, "report": 1, "all": 1}
    table1 = {"fm_ot", "fm_vp", "ddpm", "score_ve", "scoreflow"}
    expected = {(d, m) for d in ("cifar10", "imagenet32", "imagenet64") for m in table1}
    expected.add(("imagenet128", "fm_ot"))
    by_job = {(j["wildcards"]["dataset"], j["wildcards"]["run"]): j for j in jobs if j["rule"] == "train"}
    assert set(by_job) == expected
    layout = {"cifar10": (1, 2), "imagenet32": (1, 4), "imagenet64": (2, 8), "imagenet128": (4, 8)}  # nodes x GPUs
    for (dataset, _), job in by_job.items():
        res, want = job["resources"], params["resources"][dataset]
        nodes, per_node = layout[dataset]
        assert int(res["nodes"]) == nodes and int(res["tasks"]) == nodes * per_node
        assert res["slurm_extra"] == f"--ntasks-per-node={per_node} --gpus-per-node={per_node} --signal=USR1@900"
        assert int(res["mem_mb"]) == want["mem_mb"] and int(res["runtime"]) == want["runtime"]
        assert res["slurm_partition"] == want["partition"] == "gpu"
        assert res["cpus_per_task"] == "8" and res["launch"].startswith("srun") and res["mpi"] == ""
    for job in jobs:
        if job["rule"] in ("evaluate", "reference"):
            assert job["resources"]["slurm_extra"] == "--ntasks-per-node=1 --gpus-per-node=1", job
            assert job["resources"]["launch"] == "", job
        if job["rule"] == "prepare":
            assert job["resources"]["slurm_extra"] == "--ntasks-per-node=1", job
            assert job["resources"]["slurm_partition"] == "", job


def test_paper_params_copy_the_paper_setup():
    params = load_params(PAPER)
    for dataset, model in params["models"].items():
        assert model == PAPER_CONFIGS[dataset], dataset
    table3 = {  # docs/paper.md (Table 3): iterations, effective batch, lr, precision
        "cifar10": (391000, 256, 5e-4, "fp32"),
        "imagenet32": (250000, 1024, 1e-4, "fp32"),
        "imagenet64": (157000, 2048, 1e-4, "fp16"),
        "imagenet128": (500000, 1536, 1e-4, "fp16"),
    }
    for dataset, (steps, batch, lr, precision) in table3.items():
        t = params["train"][dataset]
        assert (t["steps"], t["batch_size"], t["lr"], t["precision"]) == (steps, batch, lr, precision)
    assert params["train"]["imagenet64"]["lr_schedule"]["kind"] == "constant"
    assert params["train"]["cifar10"]["lr_schedule"]["warmup_steps"] == 45000


def _bad_params(tmp_path: Path, edit) -> Path:
    params = load_yaml(SMOKE)
    edit(params)
    return write_yaml(tmp_path / "bad.yaml", params)


BAD = {
    "unknown_method": (
        lambda p: p["jobs"]["digits-ddpm"].update(method="ddpm2"),
        "jobs.digits-ddpm.method='ddpm2': not defined under 'methods'",
    ),
    "unknown_dataset": (
        lambda p: p["jobs"].update({"mnist-fm_ot": {"dataset": "mnist", "method": "fm_ot"}}),
        "jobs.mnist-fm_ot.dataset='mnist': not defined under 'datasets'",
    ),
    "wrong_type": (lambda p: p["train"]["digits"].update(lr="fast"), "train.digits.lr: 'fast'"),
    "parent_dir_dataset": (
        lambda p: p["datasets"].update({"../x": {"source": "toy2d"}}),
        "'../x' does not match",
    ),
    "parent_dir_data_dir": (lambda p: p.update(data_dir="../elsewhere"), "data_dir: '../elsewhere'"),
    "shell_in_partition": (
        lambda p: p["resources"]["digits"].update(partition="gpu; touch pwned"),
        "resources.digits.partition",
    ),
    "shell_in_experiment": (lambda p: p.update(experiment="smoke$(id)"), "experiment: 'smoke$(id)'"),
    "unknown_launcher": (
        lambda p: p["resources"]["digits"].update(launcher="mpirun -x"),
        "resources.digits.launcher",
    ),
    "unknown_resource": (
        lambda p: p["resources"]["digits"].update(slurm_extra="--wrap='rm -rf /'"),
        "resources.digits",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_params_give_one_line_errors_naming_file_key_value(tmp_path, case):
    edit, expected = BAD[case]
    path = _bad_params(tmp_path, edit)
    with pytest.raises(ParamsError) as err:
        load_params(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and expected in message, message


def test_snakemake_reports_bad_params_before_building_the_dag(tmp_path):
    path = _bad_params(tmp_path, BAD["unknown_method"][0])
    out = snakemake("-n", "--configfile", str(path))
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert f"invalid parameters: {path}: jobs.digits-ddpm.method='ddpm2': not defined under 'methods'" in text
    assert "Building DAG" not in text


def test_config_overrides_and_several_params_files_are_refused():
    out = snakemake("-n", "--config", "experiment=other")
    assert out.returncode != 0 and "no --config overrides" in out.stdout + out.stderr
    out = snakemake("-n", "--configfile", str(SMOKE), str(PAPER))
    assert out.returncode != 0 and "exactly one params file" in out.stdout + out.stderr


def test_configfile_replaces_the_default_params_instead_of_merging(tmp_path):
    params = load_yaml(SMOKE)
    params["experiment"] = "mini"
    params["jobs"] = {"checkerboard-fm_ot": {"dataset": "checkerboard", "method": "fm_ot"}}
    path = write_yaml(tmp_path / "mini.yaml", params)
    out = snakemake("-n", "-F", "--configfile", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    counts = Counter(j["rule"] for j in dry_run_jobs(out.stdout + out.stderr))
    assert counts["train"] == 1 and counts["prepare"] == 1, counts


def test_slurm_profile_resolves_by_name_and_submits_through_the_plugin():
    # the literal `snakemake --profile slurm`: Snakemake looks the name up in the working
    # directory, where `slurm` links to profiles/slurm/
    assert (ROOT / "slurm").resolve() == (ROOT / "profiles" / "slurm").resolve()
    out = snakemake("-n", "-F", "--profile", "slurm")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Using profiles slurm and workflow specific profile profiles/default" in out.stdout + out.stderr
    out = snakemake("-n", "-F", "--workflow-profile", "slurm")  # the alternative: replaces profiles/default
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"Using workflow specific profile (profiles/)?slurm ", out.stdout + out.stderr)
    profile = load_yaml(ROOT / "profiles" / "slurm" / "config.yaml")
    assert profile["executor"] == "slurm" and profile["retries"] >= 1 and profile["keep-going"] is True
    assert profile["slurm-logdir"] == "logs/slurm" and profile["slurm-keep-successful-logs"]


def _shell_commands() -> list[str]:
    commands = []
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text(encoding="utf-8")
        for block in re.findall(r"shell:\n((?:\s+\".*\"\n)+)", text):
            commands.append("".join(re.findall(r"\"(.*)\"", block)))
    return commands


def test_every_shell_placeholder_is_quoted():
    commands = _shell_commands()
    assert len(commands) == 7  # prepare, reference, train, evaluate_shard, evaluate, report, canary_dataset
    for cmd in commands:
        assert "python" not in cmd and cmd.count(" -m fmcore.") == 1, cmd
        for field in re.findall(r"\{([^{}]+)\}", cmd):
            # run_args: `--method M [--seed K]`, built with shlex.quote (workflow/rules/common.smk)
            assert field.endswith(":q") or field in ("resources.launch", "params.run_args"), (field, cmd)


@pytest.mark.slow
def test_params_path_with_shell_metacharacters_never_reaches_a_shell_unquoted(tmp_path):
    """A real job whose params path holds `;`, `$(...)` and a space: it runs, nothing is injected."""
    params = load_yaml(SMOKE)
    params["datasets"]["checkerboard"].update(n_train=500, n_test=100)
    weird = tmp_path / "p a;touch INJECTED;$(touch INJECTED2)"
    path = write_yaml(weird / "params.yaml", params)
    work = tmp_path / "work"
    work.mkdir()
    out = snakemake("data/prepared/checkerboard", "-c1", "-d", str(work), "--configfile", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert (work / "data/prepared/checkerboard/manifest.json").is_file()
    assert shlex.quote(str(path)) in out.stdout + out.stderr
    assert not list(tmp_path.rglob("INJECTED*")) and not list(ROOT.glob("INJECTED*"))
    assert not list(work.glob("INJECTED*"))


def test_sharded_evaluation_adds_one_gpu_job_per_shard_and_a_merge(tmp_path):
    """`evaluate.cifar10.shards: 4` in the paper grid: 4 `evaluate_shard` GPU jobs per CIFAR-10
    job, each with its `--shard s/4`, and the usual `evaluate` job (the merge) after them."""
    params = load_yaml(PAPER)
    params["evaluate"]["cifar10"]["shards"] = 4
    path = write_yaml(tmp_path / "paper_sharded.yaml", params)
    placeholder_raw_inputs(params, tmp_path)
    out = snakemake("-n", "-p", "-d", str(tmp_path), "--configfile", str(path))
    assert out.returncode == 0, out.stderr + out.stdout
    jobs = dry_run_jobs(out.stdout + out.stderr)
    shards = [j for j in jobs if j["rule"] == "evaluate_shard"]
    assert len(shards) == 5 * 4  # five CIFAR-10 methods x 4 shards
    assert {(j["wildcards"]["shard"], j["wildcards"]["shards"]) for j in shards} == {(str(s), "4") for s in range(4)}
    assert {j["wildcards"]["dataset"] for j in shards} == {"cifar10"}
    for job in shards:
        assert job["resources"]["slurm_extra"] == "--ntasks-per-node=1 --gpus-per-node=1", job
    for s in range(4):
        assert f"--shard {s}/4" in out.stdout
    assert Counter(j["rule"] for j in jobs)["evaluate"] == 16


def test_seeds_multiply_training_and_evaluation_jobs(tmp_path):
    """`seeds: [0, 1, 2]`: three train and evaluate jobs per grid entry, the seed in run dirs, logs and
    commands; a job with `seeds: [5]` keeps the run directory of a grid without seeds."""
    params = load_yaml(SMOKE)
    params["seeds"] = [0, 1, 2]
    params["jobs"]["digits-fm_ot"]["seeds"] = [5]
    path = write_yaml(tmp_path / "seeded.yaml", params)
    out = snakemake("-n", "-p", "-F", "-d", str(tmp_path), "--configfile", str(path))
    assert out.returncode == 0, out.stderr + out.stdout
    jobs = dry_run_jobs(out.stdout + out.stderr)
    counts = Counter(j["rule"] for j in jobs)
    assert counts["train"] == counts["evaluate"] == 13 * 3 + 1 and counts["reference"] == 2
    runs = {(j["wildcards"]["dataset"], j["wildcards"]["run"]) for j in jobs if j["rule"] == "train"}
    assert ("digits", "ddpm/seed2") in runs and ("digits", "fm_ot") in runs
    assert ("digits", "fm_ot/seed5") not in runs
    assert "--dataset digits --method ddpm --seed 2 --attempt-log-dir logs/smoke/train/digits/ddpm/seed2.attempts" \
        in out.stdout
    assert "results/smoke/digits/ddpm/seed2/checkpoint.pt" in out.stdout
    assert "--dataset digits --method fm_ot --attempt-log-dir logs/smoke/train/digits/fm_ot.attempts" in out.stdout


def test_canary_target_is_one_short_single_gpu_job_per_dataset(tmp_path):
    """`snakemake canary` (workflow/rules/canary.smk): not part of `all`; one job per dataset."""
    out = snakemake("-n", "-p", "canary", "-d", str(tmp_path), "--configfile", str(PAPER))
    assert out.returncode == 0, out.stderr + out.stdout
    jobs = [j for j in dry_run_jobs(out.stdout + out.stderr) if j["rule"] == "canary_dataset"]
    datasets = sorted(j["wildcards"]["dataset"] for j in jobs)
    assert datasets == ["cifar10", "imagenet128", "imagenet32", "imagenet64"]
    for job in jobs:
        res = job["resources"]
        assert res["nodes"] == "1" and res["tasks"] == "1" and int(res["runtime"]) <= 30, job
        assert res["slurm_extra"] == "--ntasks-per-node=1 --gpus-per-node=1", job
    assert f"-m fmcore.canary --params {PAPER} --jobs cifar10 --synthetic" in out.stdout
    placeholder_raw_inputs(load_yaml(PAPER), tmp_path)
    default = snakemake("-n", "-d", str(tmp_path), "--configfile", str(PAPER))
    assert default.returncode == 0 and "rule train" in default.stdout + default.stderr
    assert "rule canary" not in default.stdout + default.stderr


def test_missing_inception_file_fails_at_planning(tmp_path, monkeypatch):
    """The Inception file is an input of `reference`: missing, the dry run on the login node says so."""
    monkeypatch.delenv("FMREPRO_INCEPTION_WEIGHTS", raising=False)
    params = load_params(PAPER)
    placeholder_raw_inputs(params, tmp_path)
    (tmp_path / "data/raw/inception-2015-12-05.pt").unlink()
    out = snakemake("-n", "-d", str(tmp_path), "--configfile", str(PAPER))
    assert out.returncode != 0
    assert "Missing input files for rule reference" in out.stdout + out.stderr
    assert "data/raw/inception-2015-12-05.pt" in out.stdout + out.stderr


def test_cluster_doc_site_resources_and_example_profile_plan(tmp_path):
    """docs/cluster.md's `resources:` block for 4-GPU nodes / 24 h is valid params, and the shipped
    profiles/site-example plans the paper grid with it (sbatch flags as the doc says)."""
    text = (ROOT / "docs" / "cluster.md").read_text(encoding="utf-8")
    block = text.split("<!-- site-resources:", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    params = load_yaml(PAPER)
    params["resources"] = yaml.safe_load(block)["resources"]
    path = write_yaml(tmp_path / "site.yaml", params)
    loaded = load_params(path)
    assert all(r["runtime"] <= 1440 and r["gpus_per_node"] <= 4 for r in loaded["resources"].values())
    placeholder_raw_inputs(params, tmp_path)
    out = snakemake("-n", "--profile", str(ROOT / "profiles" / "site-example"), "-d", str(tmp_path),
                    "--configfile", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    trains = {j["wildcards"]["dataset"]: j["resources"] for j in dry_run_jobs(out.stdout + out.stderr)
              if j["rule"] == "train"}
    assert trains["imagenet128"]["nodes"] == "8" and trains["imagenet128"]["tasks"] == "32"
    assert trains["imagenet64"]["slurm_extra"] == "--ntasks-per-node=4 --gpus-per-node=4 --signal=USR1@900"
    assert all(r["runtime"] == "1440" and r["slurm_account"] == "my_group_account" for r in trains.values())


def test_runtime_auto_and_shards_auto_come_from_the_planner(tmp_path, monkeypatch):
    """`runtime: auto` + `shards: auto` in the paper grid: every SLURM time limit and shard count
    of the dry run is the planner's (fmcore.plan.auto), the same numbers `python -m fmcore.plan` uses."""
    params = load_yaml(PAPER)
    models = {model_key(m): {"dataset": d, "params": 10**7, "shape": list(sample_shape(m)), "batch": 64,
                             "precision": "bf16", "train_s": 0.03, "forward_s": 0.003, "divergence_s": 0.009}
              for d, m in params["models"].items()}
    (tmp_path / "gpu.json").write_text(json.dumps({"device": "made-up", "models": models}))
    params["plan"] = {"profile": "gpu.json", "safety_factor": 1.5}
    params["resources"]["cifar10"].update(runtime="auto", max_runtime=1440)
    del params["resources"]["cifar10"]["evaluate"]["runtime"]
    params["evaluate"]["cifar10"]["shards"] = "auto"
    path = write_yaml(tmp_path / "paper_auto.yaml", params)
    placeholder_raw_inputs(params, tmp_path)
    out = snakemake("-n", "-p", "-d", str(tmp_path), "--configfile", str(path))
    assert out.returncode == 0, out.stderr + out.stdout
    jobs = dry_run_jobs(out.stdout + out.stderr)
    monkeypatch.chdir(tmp_path)  # plan.profile is relative to the working directory, as for Snakemake's -d
    want = resolve_auto(load_params(path), source=str(path))
    for job in jobs:
        wc = job["wildcards"]
        if wc.get("dataset") != "cifar10" or job["rule"] not in ("train", "evaluate", "evaluate_shard"):
            continue
        res = resolve_job(want, "cifar10", wc["run"])["resources"]
        limit = res["runtime"] if job["rule"] == "train" else res["evaluate"]["runtime"]
        assert job["resources"]["runtime"] == str(limit) and isinstance(limit, int), job
    shards = {resolve_job(want, "cifar10", m)["evaluate"]["shards"] for m in ("fm_ot", "ddpm")}
    assert shards and all(s > 1 for s in shards)  # this device needs more than one 24 h job
    n_shard_jobs = sum(resolve_job(want, "cifar10", j["method"])["evaluate"]["shards"]
                       for j in want["jobs"].values() if j["dataset"] == "cifar10")
    assert Counter(j["rule"] for j in jobs)["evaluate_shard"] == n_shard_jobs
    prepare = next(j for j in jobs if j["rule"] == "prepare" and j["wildcards"]["dataset"] == "cifar10")
    assert prepare["resources"]["runtime"] == str(params["resources"]["cifar10"]["prepare"]["runtime"])
