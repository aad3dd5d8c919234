#!/usr/bin/env python3
"""Loss curves of dsv3_train runs, from the metrics.jsonl of each run folder, drawn into one PNG.

    python validation/plot_loss.py outputs/runs/20250101-120000 [more runs or metrics.jsonl files] -o loss.png

Training loss per logged step as a line, validation loss as markers, and the unigram entropy of the training
data (the loss of the best model that ignores context) as a dashed line, per run.
"""
import argparse
import json
import math
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt


def read_run(path):
    """The records of one run: its 'run' header, training steps and validations."""
    path = pathlib.Path(path)
    metrics = path / "metrics.jsonl" if path.is_dir() else path
    if not metrics.is_file():
        sys.exit(f"plot_loss.py: no metrics file at {metrics}")
    run, train, validation = {}, [], []
    with metrics.open() as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                sys.exit(f"plot_loss.py: {metrics}:{number}: not JSON: {error}")
            kind = record.get("kind")
            if kind == "run":
                run = record
            elif kind == "train":
                train.append(record)
            elif kind == "validation":
                validation.append(record)
    return metrics, run, train, validation


def finite(value):
    return value is not None and math.isfinite(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders (holding metrics.jsonl) or metrics.jsonl files")
    parser.add_argument("-o", "--output", default="loss.png", help="PNG to write (default: loss.png)")
    parser.add_argument("--log-y", action="store_true", help="logarithmic loss axis")
    args = parser.parse_args()

    figure, axes = plt.subplots(figsize=(9, 5.5))
    for path in args.runs:
        metrics, run, train, validation = read_run(path)
        label = f"{run['description']} ({metrics.parent.name})" if run.get("description") else metrics.parent.name
        steps = [r["step"] for r in train if finite(r["loss"])]
        losses = [r["loss"] for r in train if finite(r["loss"])]
        (line,) = axes.plot(steps, losses, label=f"{label}: training")
        if validation:
            axes.plot([r["step"] for r in validation], [r["loss"] for r in validation], "o", color=line.get_color(),
                      label=f"{label}: validation")
        entropy = run.get("unigram_entropy")
        if finite(entropy):
            axes.axhline(entropy, linestyle="--", color=line.get_color(), alpha=0.6,
                         label=f"{label}: unigram entropy {entropy:.2f}")
        if losses:
            print(f"{metrics}: {len(steps)} logged steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}"
                  + (f", validation {validation[-1]['loss']:.4f}" if validation else ""))
    axes.set_xlabel("step")
    axes.set_ylabel("cross-entropy (nats per token)")
    if args.log_y:
        axes.set_yscale("log")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
