"""Calibrate a trained model's change probabilities on its validation pairs and fold it into the weights.

    .venv/bin/python tools/calibrate_model.py pcb deeppcb:../shared/data/deeppcb --names model-val \\
        --out runs/calibrated/pcb
    .venv/bin/python tools/calibrate_model.py aerial oscd:../shared/data/oscd \\
        airchange:../shared/data/airchange folder:../shared/data/levir_samples \\
        folder:../shared/data/dsifn_samples --names model-val --out runs/calibrated/aerial
    .venv/bin/python tools/calibrate_model.py default folder:runs/eval/synval \\
        deeppcb:../shared/data/deeppcb --names - --names model-val \\
        --data-option 1:label_dir=label_typed --out runs/calibrated/default

MODEL is a checkpoint folder or a packaged model name. The model runs in float32 on every
validation pair (whole images; images larger than --tile-size are tiled like the predictor
does, blending raw logits); a seeded uniform sample of at most --max-pixels labelled pixels
keeps their logits. A temperature and a no-change bias are fitted on them and the rule of
`changeseg.evaluation.calibration.calibrate` puts the best-F1 threshold inside
--threshold-range. The calibration is folded into the classifier conv, checked against the
calibrated logits, and a new checkpoint folder is written to --out with the new threshold,
`metadata.calibration` and a `calibration.json` report (reliability tables). Only validation
pairs should be given: the numbers are in-sample for the fit.

--names and --data-option work as in `changeseg evaluate`. One --names applies to every
DATA_SPEC; several apply in order, one per DATA_SPEC ("-" = all of that set's pairs).
`--data-option N:KEY=VALUE` applies to the N-th DATA_SPEC only (1-based).

With `--domain NAME` the pairs are one domain's (e.g. fixed-camera frames) and nothing is
folded: a temperature and a no-change bias fitted on them go on top of the model's own
calibration, recorded as `metadata.domains.NAME` (`changeseg.evaluation.calibration.fit_domain`;
applied by `changeseg detect --domain NAME`); the weights and the threshold stay as they are.

    .venv/bin/python tools/calibrate_model.py default sbi2015:../shared/data/surveillance/sbi2015 \\
        --data-option "scenes=[CaVignal, HallAndMonitor]" --data-option pairs_per_scene=16 \\
        --data-option both_foreground=differs --domain fixed-camera \\
        --out runs/calibrated/default-fixed-camera
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from changeseg.data.datasets import open_dataset
from changeseg.data.pairs import PairDataset, PairSubset
from changeseg.evaluation.calibration import (
    DEFAULT_MARGIN,
    DEFAULT_MAX_PIXELS,
    PixelSampler,
    apply_to_logits,
    balanced_sample,
    calibrate,
    fit_domain,
    fold_into_model,
)
from changeseg.inference.multiscale import views_of, with_views
from changeseg.inference.predictor import ChangeDetector
from changeseg.inference.tiling import DEFAULT_TILE_SIZE, TilingOptions, predict_proba_auto
from changeseg.io.images import to_float, write_json

# the same `--names` / `--data-option` handling as `changeseg evaluate`
from changeseg.evaluation.selection import parse_options, read_names  # isort: skip


class LogitBackend:
    """A tiling backend whose "probabilities" are the network's raw float32 logits (K×H×W)."""

    def __init__(self, detector: ChangeDetector) -> None:
        self.detector = detector
        self.class_names = detector.class_names
        self.config = detector.config  # its metadata.scales: the scales the model runs at

    def prepare(self, image: Any, name: str) -> np.ndarray:
        """Read an image and adapt its channels, as the predictor does."""
        return self.detector.prepare(image, name)

    def _tensor(self, image: np.ndarray) -> torch.Tensor:
        array = to_float(image)
        channels = array.shape[2]
        mean = np.asarray(self.detector.config.mean[:channels], np.float32)
        std = np.asarray(self.detector.config.std[:channels], np.float32)
        batch = ((array - mean) / std).transpose(2, 0, 1)[None]
        return torch.from_numpy(np.ascontiguousarray(batch)).to(self.detector.device)

    def predict_proba(self, reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
        """Raw logits (K×H×W float32) of one prepared pair, fp32."""
        with torch.inference_mode():
            logits = self.detector.model(self._tensor(reference), self._tensor(comparison))
        return logits[0].float().cpu().numpy()


def split_options(values: list[str], count: int) -> list[dict[str, Any]]:
    """`KEY=VALUE` (every spec) and `N:KEY=VALUE` (the N-th spec) → one option dict per spec."""
    shared: list[str] = []
    own: list[list[str]] = [[] for _ in range(count)]
    for value in values:
        head, sep, rest = value.partition(":")
        if sep and head.isdigit() and "=" not in head:
            index = int(head)
            if not 1 <= index <= count:
                raise SystemExit(f"--data-option {value!r}: there are {count} DATA_SPECs")
            own[index - 1].append(rest)
        else:
            shared.append(value)
    return [parse_options([*shared, *own[i]], "--data-option") for i in range(count)]


def name_selectors(names: list[str], count: int) -> list[str]:
    """One --names value per DATA_SPEC: none → "-" (all pairs), one → for every spec, else one each."""
    if not names:
        return ["-"] * count
    if len(names) == 1:
        return names * count
    if len(names) != count:
        raise SystemExit(f"give --names once or once per DATA_SPEC ({count}), not {len(names)} times")
    return list(names)


def open_sets(detector: ChangeDetector, specs: list[str], selectors: list[str],
              options: list[dict[str, Any]]) -> list[PairDataset]:
    """Open each DATA_SPEC with its options and keep the pairs its --names selector picks."""
    sets = []
    for spec, selector, option in zip(specs, selectors, options):
        dataset = open_dataset(spec, **option)
        if selector != "-":
            dataset = PairSubset(dataset, read_names(selector, detector.config.metadata, spec))
        sets.append(dataset)
    return sets


def stage(detector: ChangeDetector, out: Path, report: dict[str, Any]) -> Path:
    """Write the model and its `calibration.json` report to OUT.partial (replacing one left behind)."""
    staging = out.with_name(out.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    detector.save_pretrained(staging)
    write_json(staging / "calibration.json", report)
    return staging


def move_into_place(staging: Path, out: Path) -> None:
    """Replace `out` with the checked `staging` folder."""
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)


def record_domain(detector: ChangeDetector, args: argparse.Namespace, logits: np.ndarray,
                  targets: np.ndarray, options: list[dict[str, Any]], selectors: list[str],
                  seen: int, pairs: int, inference_s: float) -> None:
    """Fit `args.domain`'s calibration on these pixels, record it in the model's metadata and write
    the model (weights untouched) to `args.out`."""
    calibration, report = fit_domain(logits, targets, float(detector.config.threshold))
    before, after = report["before"], report["after"]
    print(f"domain {args.domain}: T {calibration.temperature:.4f}, no-change bias "
          f"{calibration.no_change_bias:+.4f}; ECE {before['ece']:.4f} -> {after['ece']:.4f}, best-F1 "
          f"threshold {before['best_f1_threshold']:.2f} -> {after['best_f1_threshold']:.2f} (F1 "
          f"{after['f1']:.4f}); F1 at the model's {report['threshold']:g}: "
          f"{before['f1_at_threshold']:.4f} -> {after['f1_at_threshold']:.4f}")
    entry = {
        **calibration.to_dict(),
        **{f"{k}_{when}": report[when][k] for when in ("before", "after")
           for k in ("ece", "nll", "best_f1_threshold", "f1", "f1_at_threshold")},
        "rule": "T and no-change bias by binary NLL on this domain's validation pixels, on top of the "
                "model's own calibration; the decision threshold stays the model's",
        "pixels": int(len(targets)), "pixels_seen": seen, "pairs": pairs,
        "data": [{"spec": spec, "options": option, "names": selector}
                 for spec, option, selector in zip(args.data, options, selectors)],
        "max_pairs": args.max_pairs, "seed": args.seed, "source_model": str(args.model),
        "inference_s": round(inference_s, 1), "precision": "fp32", "tile_size": args.tile_size,
    }
    domains = dict(detector.config.metadata.get("domains") or {})
    domains[args.domain] = entry
    detector.config.metadata["domains"] = domains
    staging = stage(detector, args.out, {"domain": args.domain, "calibration": entry, "report": report})
    reloaded = ChangeDetector.from_pretrained(staging, precision="fp32")
    if reloaded.config.metadata.get("domains", {}).get(args.domain) != json_round_trip(entry):
        raise SystemExit(f"the written model's metadata.domains.{args.domain} differs; left in {staging}")
    move_into_place(staging, args.out)


def json_round_trip(value: Any) -> Any:
    """`value` as it reads back from a JSON file (tuples become lists, and so on)."""
    return json.loads(json.dumps(value))


def main() -> None:
    """Collect validation logits, fit and fold the calibration, write the calibrated model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("model", help="a checkpoint folder or a packaged model name")
    parser.add_argument("data", nargs="+", metavar="DATA_SPEC", help="validation pairs as FORMAT:PATH")
    parser.add_argument("--names", action="append", default=[], metavar="FILE|model-val[:MODEL]|-",
                        help="which pairs (as in changeseg evaluate); once, or once per DATA_SPEC")
    parser.add_argument("--data-option", action="append", default=[], metavar="[N:]KEY=VALUE",
                        help="a reader option for every DATA_SPEC, or with N: for the N-th only")
    parser.add_argument("--out", required=True, type=Path, help="folder for the calibrated checkpoint")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="at most this many sampled pixels (default %(default)s)")
    parser.add_argument("--max-pairs", type=int, default=None,
                        help="a seeded subset of at most this many pairs over all DATA_SPECs")
    parser.add_argument("--seed", type=int, default=0, help="pixel and pair sampling seed")
    parser.add_argument("--threshold-range", type=float, nargs=2, default=(0.3, 0.7), metavar=("LOW", "HIGH"),
                        help="where the best-F1 threshold must end up (default 0.3 0.7)")
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                        help="a threshold moved into the range lands this far inside (default %(default)s)")
    parser.add_argument("--keep-threshold", action="store_true",
                        help="keep the model's decisions: map its threshold through the calibration "
                             "(for a threshold chosen on another protocol, e.g. pcb's box F-score) "
                             "instead of taking the best pixel-F1 threshold")
    parser.add_argument("--decision-threshold", type=float, default=None, metavar="T",
                        help="with --keep-threshold: the threshold on the uncalibrated scale to keep (e.g. "
                             "the best of tools/sweep_box_threshold.py) instead of the model's own")
    parser.add_argument("--temperature-only", action="store_true",
                        help="fit only T by NLL (the bias then only moves the threshold into range)")
    parser.add_argument("--tile-size", type=int, default=DEFAULT_TILE_SIZE,
                        help="tile images larger than this, as the predictor does (0 = never)")
    parser.add_argument("--balance-sources", action="store_true",
                        help="weigh every DATA_SPEC alike (the same number of sampled pixels from each) "
                             "instead of by pixel count, so the largest set does not set the threshold")
    parser.add_argument("--domain", default=None, metavar="NAME",
                        help="record a calibration for this domain on top of the model's own instead "
                             "of folding one in (the pairs must all come from that domain)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--scales", default=None, help="predict each pair resized by these factors, logits "
                        "averaged, as the model will run (`changeseg detect --scales`; default: the model's "
                        "own, metadata.scales, else 1)")
    args = parser.parse_args()
    if args.domain is not None and (args.keep_threshold or args.temperature_only or args.balance_sources
                                    or args.scales is not None):
        raise SystemExit("--domain fits T and a bias on one domain's pairs at the model's own scales; it "
                         "takes no --keep-threshold, --temperature-only, --balance-sources or --scales")
    if args.decision_threshold is not None and not (args.keep_threshold and 0 < args.decision_threshold < 1):
        raise SystemExit("--decision-threshold takes a threshold between 0 and 1, with --keep-threshold")
    started = time.perf_counter()
    if args.out.exists() and any(args.out.iterdir()) and not (args.out / "config.json").is_file():
        raise SystemExit(f"--out {args.out} exists and is not a checkpoint folder; not replacing it")

    detector = ChangeDetector.from_pretrained(args.model, device=args.device, precision="fp32")
    if not detector.trained:
        raise SystemExit(f"{args.model}: an untrained model; calibrate a trained checkpoint")
    if args.decision_threshold is not None:
        detector.config.threshold = args.decision_threshold
    print(f"model {args.model}: {len(detector.class_names)} classes, threshold {detector.config.threshold}")
    options = split_options(args.data_option, len(args.data))
    selectors = name_selectors(args.names, len(args.data))
    sets = open_sets(detector, args.data, selectors, options)
    jobs = [(s, i) for s, dataset in enumerate(sets) for i in range(len(dataset))]
    if args.max_pairs is not None and args.max_pairs < len(jobs):
        chosen = np.sort(np.random.default_rng(args.seed).choice(len(jobs), args.max_pairs, replace=False))
        jobs = [jobs[i] for i in chosen]
    for s, spec in enumerate(args.data):
        print(f"  {spec}: {sum(1 for j in jobs if j[0] == s)} of {len(sets[s])} pairs {options[s] or ''}")
    if not jobs:
        raise SystemExit("no validation pairs selected")

    backend = with_views(LogitBackend(detector), False, args.scales)
    tiling = TilingOptions(args.tile_size)
    sources = len(args.data) if args.balance_sources else 1
    samplers = [PixelSampler(args.max_pixels // sources, seed=args.seed + s) for s in range(sources)]
    check_pair: tuple[np.ndarray, np.ndarray] | None = None
    inferred = time.perf_counter()
    for done, (s, i) in enumerate(jobs, 1):
        sample = sets[s][i]
        reference = backend.prepare(sample["reference"], "reference")
        comparison = backend.prepare(sample["comparison"], "comparison")
        probabilities = predict_proba_auto(backend, reference, comparison, tiling)
        samplers[s if args.balance_sources else 0].add(probabilities, sample["mask"])
        if check_pair is None:
            check_pair = (reference[:256, :256], comparison[:256, :256])
        if done % 10 == 0 or done == len(jobs):
            print(f"  {done}/{len(jobs)} pairs, {time.perf_counter() - inferred:.0f} s", flush=True)
    inference_s = time.perf_counter() - inferred
    seen, pairs = sum(s.seen for s in samplers), sum(s.pairs for s in samplers)
    if args.balance_sources:
        logits, targets = balanced_sample(samplers, args.max_pixels // sources, seed=args.seed)
    else:
        logits, targets = samplers[0].logits, samplers[0].targets
    print(f"collected {len(targets):,} of {seen:,} labelled pixels ({targets.mean():.2%} change) "
          f"from {pairs} pairs in {inference_s:.0f} s"
          + (f", {args.max_pixels // sources:,} per source" if args.balance_sources else ""))

    if args.domain is not None:
        record_domain(detector, args, logits, targets, options, selectors, seen, pairs, inference_s)
        print(f"wrote {args.out}: weights and threshold unchanged, metadata.domains.{args.domain} added; "
              f"{time.perf_counter() - started:.0f} s in all")
        return
    calibration, report = calibrate(logits, targets, tuple(args.threshold_range),
                                    fit_bias=not args.temperature_only, margin=args.margin,
                                    keep_threshold=detector.config.threshold if args.keep_threshold else None)
    before, fit, after = report["before"], report["fit"], report["after"]
    print(f"before: ECE {before['ece']:.4f}, NLL {before['nll']:.4f}, best-F1 threshold "
          f"{before['best_f1_threshold']:.2f} (F1 {before['f1']:.4f})")
    print(f"NLL fit: T {fit['temperature']:.4f}, no-change bias {fit['no_change_bias']:+.4f}: "
          f"ECE {fit['ece']:.4f}, NLL {fit['nll']:.4f}, best-F1 threshold {fit['best_f1_threshold']:.2f} "
          f"(F1 {fit['f1']:.4f})")
    print(f"after ({'bias shifted into range' if report['shifted'] else 'fit kept'}): "
          f"T {calibration.temperature:.4f}, no-change bias {calibration.no_change_bias:+.4f}: "
          f"ECE {after['ece']:.4f}, NLL {after['nll']:.4f}, best-F1 threshold "
          f"{after['best_f1_threshold']:.2f} (F1 {after['f1']:.4f}); "
          f"decision threshold {report['threshold']:.4g}"
          + (f" (the model's {detector.config.threshold} mapped)" if args.keep_threshold else ""))

    assert check_pair is not None
    raw = backend.predict_proba(*check_pair)
    original_state = copy.deepcopy(detector.model.state_dict())
    fold_into_model(detector.model, calibration)
    folded = backend.predict_proba(*check_pair)
    expected_logits = apply_to_logits(raw, calibration, dim=0)
    error = float(np.abs(folded - expected_logits).max())
    scale = max(1.0, float(np.abs(expected_logits).max()))
    if error > 1e-5 * scale:
        detector.model.load_state_dict(original_state)
        raise SystemExit(f"folding changed the logits by {error:.2e} (scale {scale:.1f}); nothing written")
    print(f"folded into the classifier conv: max |folded - calibrated logits| {error:.2e}")

    scales = list(views_of(backend).scales)
    stale = sorted(detector.config.metadata.pop("domains", None) or {})
    if stale:  # each was fitted on top of the calibration this one replaces
        print(f"domain calibrations dropped (fit them again with --domain): {', '.join(stale)}")
    previous_threshold = detector.config.threshold
    detector.config.threshold = report["threshold"]
    previous = detector.config.metadata.get("calibration")
    detector.config.metadata["calibration"] = {
        **calibration.to_dict(),
        "ece_before": before["ece"], "ece_after": after["ece"],
        "best_f1_threshold_before": before["best_f1_threshold"],
        "best_f1_threshold_after": after["best_f1_threshold"],
        "f1_before": before["f1"], "f1_after": after["f1"],
        "nll_before": before["nll"], "nll_after": after["nll"],
        "fit": {k: fit[k] for k in ("temperature", "no_change_bias", "ece", "best_f1_threshold", "f1")},
        "bias_shifted_into_range": report["shifted"], "threshold_range": list(args.threshold_range),
        "margin": report["margin"],
        "rule": ("T and no-change bias by binary NLL" if not args.temperature_only else "T by binary NLL")
        + "; decision threshold: "
        + (f"the model's own ({previous_threshold}) mapped through the calibration"
           if args.keep_threshold else "the best pixel-F1 threshold on 0.05..0.95")
        + "; if it is outside the range, the bias moves it to the nearer end of the range, "
        f"{report['margin']} inside",
        "previous_threshold": previous_threshold,
        "pixels": int(len(targets)), "pixels_seen": seen, "pairs": pairs,
        "scales": scales,
        "weighting": "each data source alike" if args.balance_sources else "by pixel count",
        "data": [{"spec": spec, "options": option, "names": selector}
                 for spec, option, selector in zip(args.data, options, selectors)],
        "max_pairs": args.max_pairs, "seed": args.seed, "source_model": str(args.model),
        "inference_s": round(inference_s, 1), "precision": "fp32", "tile_size": args.tile_size,
        **({"previous": previous} if previous else {}),
    }
    # the probabilities were fitted at these scales, so the model must run at them: record them
    # (a model's own scales are what detect, evaluate and serve use without --scales)
    if scales == [1.0]:
        detector.config.metadata.pop("scales", None)
    else:
        detector.config.metadata["scales"] = scales
    # stage the folder, check the written model, then move it into place
    staging = stage(detector, args.out, {"calibration": detector.config.metadata["calibration"],
                                         "report": report})
    reloaded = ChangeDetector.from_pretrained(staging, precision="fp32")
    # through the same views as the fit (the scales it now records), so like is compared with like
    reloaded_logits = with_views(LogitBackend(reloaded), False, None).predict_proba(*check_pair)
    probs = torch.softmax(torch.from_numpy(reloaded_logits), 0).numpy()
    expected = torch.softmax(torch.from_numpy(apply_to_logits(raw, calibration, dim=0)), 0).numpy()
    reload_error = float(np.abs(probs - expected).max())
    if reload_error > 1e-5:
        raise SystemExit(f"the written model's probabilities differ by {reload_error:.2e} from the "
                         f"calibrated ones; left in {staging}")
    move_into_place(staging, args.out)
    print(f"wrote {args.out}: threshold {detector.config.threshold:.4g}"
          + (f", runs at scales {scales}" if scales != [1.0] else "")
          + f", reloaded probabilities within {reload_error:.1e}; "
          f"{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
