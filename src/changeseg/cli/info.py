"""`changeseg info`: presets, backbones and packaged models with their sizes and costs."""

from __future__ import annotations

import json
from collections.abc import Sequence

import click

from changeseg.cli.main import run_command

SIZE = 512  # GMACs are reported at 512×512, as in the paper


@click.command("info", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def command(as_json: bool) -> None:
    """List model presets, backbones and packaged models (parameters, GMACs at 512×512)."""
    from changeseg import __version__
    from changeseg.hardware import cpu_supports_bf16
    from changeseg.io.checkpoints import packaged_models

    report = {
        "version": __version__,
        "cpu_bf16": cpu_supports_bf16(),
        "presets": preset_rows(),
        "backbones": backbone_rows(),
        "packaged_models": sorted(packaged_models()),
        "model_settings": model_settings(),
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    print_tables(report)


def preset_rows() -> list[dict]:
    """Each preset's architecture, parameter count and GMACs per pair at 512×512."""
    from changeseg.models.model import count_macs, count_parameters
    from changeseg.models.presets import PRESETS, build_preset

    rows = []
    for name, preset in PRESETS.items():
        model = build_preset(name)
        shape = (1, 3, SIZE, SIZE)
        rows.append({"name": name, "backbone": preset.config["backbone"],
                     "branches": preset.config["branches"], "head": preset.config["head"],
                     "fpn_channels": preset.config["fpn_channels"],
                     "params_m": round(count_parameters(model) / 1e6, 2),
                     "gmacs_512": round(count_macs(model, shape, shape) / 1e9, 1),
                     "description": preset.description})
    return rows


def model_settings() -> dict[str, dict]:
    """Each packaged model's threshold, scales, domain calibrations (`detect --domain NAME`) and
    number of networks (above 1 for an output ensemble, `changeseg.models.ensemble`)."""
    from types import SimpleNamespace

    from changeseg.inference.domains import model_domains
    from changeseg.inference.multiscale import model_scales
    from changeseg.io.checkpoints import packaged_models, read_config

    settings = {}
    for name, folder in sorted(packaged_models().items()):
        model = SimpleNamespace(config=read_config(folder))  # what the backend helpers read
        settings[name] = {"threshold": model.config.threshold, "scales": list(model_scales(model)),
                          "domains": sorted(model_domains(model)),
                          "networks": int(model.config.model.get("ensemble", 1))}
    return settings


def backbone_rows() -> list[dict]:
    """Each backbone's level channels, parameters, GMACs per image and offline weights."""
    from changeseg.models.backbones import BACKBONES, Backbone, find_local_weights
    from changeseg.models.model import count_macs, count_parameters

    rows = []
    for name in BACKBONES:
        backbone = Backbone(name)
        rows.append({"name": name, "channels": backbone.out_channels,
                     "params_m": round(count_parameters(backbone) / 1e6, 2),
                     "gmacs_512": round(count_macs(backbone, (1, 3, SIZE, SIZE)) / 1e9, 1),
                     "imagenet_offline": find_local_weights(name) is not None})
    return rows


def print_tables(report: dict) -> None:
    """Render the report as rich tables on stdout."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(f"changeseg {report['version']}  (CPU bf16: "
                  f"{'yes' if report['cpu_bf16'] else 'no'})")
    presets = Table(title=f"Presets (GMACs per pair at {SIZE}×{SIZE})")
    for column in ("name", "backbone", "branches", "head", "F", "params (M)", "GMACs"):
        presets.add_column(column)
    for row in report["presets"]:
        presets.add_row(row["name"], row["backbone"], row["branches"], row["head"],
                        str(row["fpn_channels"]), f"{row['params_m']:.2f}", f"{row['gmacs_512']:.1f}")
    console.print(presets)
    backbones = Table(title=f"Backbones (GMACs per image at {SIZE}×{SIZE})")
    for column in ("name", "level channels", "params (M)", "GMACs", "ImageNet offline"):
        backbones.add_column(column)
    for row in report["backbones"]:
        backbones.add_row(row["name"], str(row["channels"]), f"{row['params_m']:.2f}",
                          f"{row['gmacs_512']:.1f}", "yes" if row["imagenet_offline"] else "no")
    console.print(backbones)
    models = report["packaged_models"]
    console.print("Packaged trained models: " + (", ".join(models) if models else
                                                  "none yet (presets are untrained)"))
    for name, setting in report["model_settings"].items():
        domains = ", ".join(setting["domains"]) or "none"
        networks = (f"an ensemble of {setting['networks']} networks, "
                    if setting["networks"] > 1 else "")
        console.print(f"  {name}: {networks}threshold {setting['threshold']:g}, "
                      f"domain calibrations (--domain): {domains}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run `changeseg info`; returns the exit code."""
    return run_command(command, argv, "changeseg info")
