"""``python -m fmcore.models``: parameter counts of the paper's U-Nets (and optionally of a params file).

Usage::

    python -m fmcore.models [--params params/smoke.yaml [--benchmark]] [--json]

``--benchmark`` adds the measured time of one training step (forward + backward + Adam, one
CPU thread) of each model of the params file at its ``train.<dataset>.batch_size``.

Models are built on the meta device, so even the 500M-parameter ImageNet128 U-Net costs no memory.
"""

from __future__ import annotations

import argparse
import json
import sys

import pandas as pd
import torch

from fmcore.models import PAPER_CONFIGS, count_parameters

__all__ = ["main", "parameter_table"]


def parameter_table(configs: dict[str, dict]) -> pd.DataFrame:
    """One row per named model config: architecture summary and parameter count.

    Args:
        configs: name -> model config (see ``fmcore.models.build_model``).

    Returns:
        DataFrame with columns name, arch, image_size, channels, res_blocks, channel_mult,
        attention, params, params_M.
    """
    rows = []
    for name, cfg in configs.items():
        n = count_parameters(cfg)
        unet = cfg["arch"] == "unet"
        rows.append(
            {
                "name": name,
                "arch": cfg["arch"],
                "image_size": cfg.get("image_size", "-"),
                "channels": cfg["model_channels"] if unet else cfg["hidden_dim"],
                "res_blocks": cfg["num_res_blocks"] if unet else cfg["num_layers"],
                "channel_mult": ",".join(map(str, cfg["channel_mult"])) if unet else "-",
                "attention": ",".join(map(str, cfg["attention_resolutions"])) if unet else "-",
                "params": n,
                "params_M": round(n / 1e6, 2),
            }
        )
    return pd.DataFrame(rows)


def _benchmark(params: dict) -> pd.DataFrame:
    """Step timings of every model in ``params`` at its training batch size, on one thread."""
    from fmcore.models.benchmark import time_train_step

    torch.set_num_threads(1)
    rows = []
    for dataset, cfg in params["models"].items():
        batch_size = params["train"].get(dataset, {}).get("batch_size", 128)
        timing = time_train_step(cfg, batch_size)
        rows.append(
            {
                "name": f"{params['experiment']}/{dataset}",
                "batch": batch_size,
                "step_ms": timing.wall_ms,
                "step_cpu_ms": timing.cpu_ms,
                "fwd_ms": timing.forward_wall_ms,
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    """Print the parameter table; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m fmcore.models", description=__doc__.splitlines()[0])
    parser.add_argument("--params", help="also count the models of this params file (e.g. params/smoke.yaml)")
    parser.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    parser.add_argument(
        "--benchmark", action="store_true", help="time a CPU training step of each model of --params"
    )
    args = parser.parse_args(argv)
    if args.benchmark and not args.params:
        parser.error("--benchmark needs --params")
    configs = {f"paper/{k}": v for k, v in PAPER_CONFIGS.items()}
    if args.params:
        from fmcore.config import ParamsError, load_params

        try:
            params = load_params(args.params)
        except (ParamsError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        configs.update({f"{params['experiment']}/{k}": v for k, v in params["models"].items()})
    try:
        table = parameter_table(configs)
        if args.benchmark:
            table = table.merge(_benchmark(params), on="name", how="left")
    except ValueError as err:
        print(f"error: {args.params}: {err}", file=sys.stderr)
        return 2
    if args.json:
        records = table.astype(object).where(table.notna(), None).to_dict(orient="records")
        print(json.dumps(records, indent=1))
    else:
        print(table.astype(object).where(table.notna(), "-").to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
