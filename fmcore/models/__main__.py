"""``python -m fmcore.models``: parameter counts of the paper's U-Nets (and optionally of a params file).

Usage::

    python -m fmcore.models [--params params/smoke.yaml] [--json]

Models are built on the meta device, so even the 500M-parameter ImageNet128 U-Net costs no memory.
"""

from __future__ import annotations

import argparse
import json
import sys

import pandas as pd

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


def main(argv: list[str] | None = None) -> int:
    """Print the parameter table; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m fmcore.models", description=__doc__.splitlines()[0])
    parser.add_argument("--params", help="also count the models of this params file (e.g. params/smoke.yaml)")
    parser.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    args = parser.parse_args(argv)
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
    except ValueError as err:
        print(f"error: {args.params}: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(table.to_dict(orient="records"), indent=1))
    else:
        print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
