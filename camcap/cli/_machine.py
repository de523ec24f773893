"""`camcap models`, `camcap pull` and `camcap doctor`: what this machine has, and getting it ready.

`models` lists the known model specs and what is on disk, `pull` fetches (or builds) one ahead of
time so later runs work offline, and `doctor` reports the torch build, GPUs, driver and caches and
what to fix.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from camcap.cli._settings import model_options, settings_from_args


def models_command(args: argparse.Namespace) -> int:
    from camcap.models.store import human_size, list_models

    statuses = list_models(model_options(settings_from_args(args)))
    if args.json:
        print(json.dumps([dataclasses.asdict(status) for status in statuses], indent=2))
        return 0
    rows = [("SPEC", "ON DISK", "SIZE", "TO GET IT", "DESCRIPTION")]
    for s in statuses:
        state = {"random": "built", "demo": "shipped"}.get(s.source, "downloaded") if s.available else "no"
        size = human_size(s.size_on_disk_bytes) if s.available else "-"
        approx = f"{s.approx_size_gb:g} GB" if s.approx_size_gb else "a few MB"
        get = f"built here, {approx}" if s.source == "random" else f"download {approx}" if s.approx_size_gb else "-"
        get = "ships with camcap" if s.source == "demo" else get
        rows.append((s.spec, state, size, get, s.description))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[4])
    print("\nAny Hugging Face image-text-to-text model works too: --model hf:<repo-id-or-folder>.")
    return 0


def pull_command(args: argparse.Namespace) -> int:
    from camcap.models import hub, registry
    from camcap.models.store import model_status

    # allow_download is not consulted: `pull` is the explicit request to download.
    options = dataclasses.replace(model_options(settings_from_args(args)), allow_download=True)
    spec = args.spec.strip()
    name, _, revision = spec.partition("@")
    if name == registry.DEFAULT_SPEC:
        from camcap.models import moondream

        # The snapshots setup() loads (the weights and the tokenizer repo its remote code reads).
        folders = moondream.snapshot_folders(options, revision or None)
        print(f"{spec} is ready at {folders[0]}")
        return 0
    if spec.startswith("hf:") and len(spec) > 3 and not os.path.isdir(spec[3:]):
        repo, _, revision = spec[3:].partition("@")
        folder = hub.resolve_snapshot(
            repo, revision=revision or None, cache_dir=registry.hub_cache_dir(options), spec=spec
        )
        print(f"{spec} is ready at {folder}")
        return 0
    if spec.startswith("random:"):
        from camcap.models import random_checkpoints

        # The folder the registry builds into and loads from (see create_captioner).
        root = registry.random_checkpoint_dir(options)
        arch = spec[len("random:") :]
        if arch in random_checkpoints.RANDOM_ARCHITECTURES and not random_checkpoints.is_random_checkpoint(root / arch):
            print(f"camcap: building {spec} in {root}...", file=sys.stderr)
        print(f"{spec} is ready at {random_checkpoints.ensure_checkpoint(arch, root)}")
        return 0
    # An hf: folder, a demo or openai:; anything else raises the unknown-spec error.
    status = model_status(spec, options)
    if status.source == "remote":
        print(f"{spec} runs on {status.path}, nothing to download")
        return 0
    where = "ships with camcap" if status.source == "demo" else "is a local folder"
    print(f"{spec} {where}, nothing to download: {status.path}")
    return 0


def doctor_command(args: argparse.Namespace) -> int:
    from camcap.doctor import collect_report, render_report

    report = collect_report(settings_from_args(args))
    print(json.dumps(report.to_dict(), indent=2) if args.json else render_report(report))
    return 0
