"""``leanrec encoder export|distill|finetune``: build the text encoders the other commands name.

Thin like the rest of the CLI: parse, call :mod:`leanrec.encoders`, print with rich. An
encoder is named with ``--encoder`` here as everywhere (``cost profile``, ``batch encode``);
``--model`` always names a recommender.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from . import common
from .common import console

app = common.Group(help="Build saved encoders: ONNX fp32/int8 or static exports, layer-pruned distillations, "
                        "fine-tunes on the interactions.")

ENCODER_HELP = "Model name or local sentence-transformers folder."


@app.command("export")
def export(
    out: Path | None = common.out_option(None, "Folder to write the saved encoder to. Required."),
    encoder: str = typer.Option("minilm", "--encoder", help=ENCODER_HELP),
    backend: str = typer.Option("onnx", help="onnx or static."),
    precision: str = typer.Option("int8", help="fp32 or int8 (onnx)."),
    layers: int | None = typer.Option(None, help="Keep only the first N transformer layers."),
    old_out: Path | None = typer.Argument(None, hidden=True),
    old_model: str | None = typer.Option(None, "--model", hidden=True),
) -> None:
    """Export a saved encoder folder that serving loads without torch."""
    out = common.require(common.legacy_value(out, old_out, old="encoder export OUT",
                                             new="encoder export --out OUT", option="--out"), "--out")
    encoder = common.legacy_value(None, old_model, old="encoder export --model M",
                                  new="encoder export --encoder M", option="--encoder") or encoder
    if backend == "onnx":
        from ..encoders.onnx_export import export_onnx

        with console.status("exporting and checking against torch"):
            path = export_onnx(encoder, out, precision=precision, layers=layers)
    elif backend == "static":
        from ..encoders.static import distill_static

        with console.status("distilling a static embedding model"):
            path = distill_static(encoder, out, layers=layers)
    else:
        raise typer.BadParameter(f"backend must be onnx or static, got {backend!r}")
    console.print(f"saved encoder: {path}")
    config = Path(path) / "leanrec_encoder.json"
    if config.exists():
        console.print_json(config.read_text())


@app.command("distill")
def distill(
    layers: int = typer.Option(3, help="Keep the first N transformer layers of MiniLM."),
    budget: float = typer.Option(900, help="Training time budget in seconds (CPU)."),
    seed: int = common.seed_option(42, "Random seed."),
) -> None:
    """Prune MiniLM to N layers and distil it to copy the full model (cached as minilm-LN-distilled)."""
    from ..encoders.layer_distill import default_corpus, distill_layers
    from ..encoders.resolve import distilled_path

    path = distilled_path(layers)
    if (path / "config.json").is_file():
        console.print(f"already built: {path} (delete it to rebuild)")
        return
    with console.status("building the corpus (ML-100K non-cold texts + generated products)"):
        corpus = default_corpus(seed=seed)
    with common.progress() as bar:
        task = bar.add_task(f"distilling {layers} layers", total=budget)
        out = distill_layers("minilm", path, texts=corpus, layers=layers, time_budget_s=budget, seed=seed,
                             progress=lambda r: bar.update(task, completed=min(r["seconds"], budget),
                                                           description=f"epoch {r['epoch']}: holdout cosine "
                                                                       f"{r['holdout_cosine']:.4f}"))
    record = json.loads((out / "leanrec_distill.json").read_text())
    console.print(f"saved {out}: best holdout cosine to the full model {record['best_holdout_cosine']:.4f} "
                  f"after {record['train_s']:.0f} s; use it as --encoder minilm-L{layers}-distilled")


def _finetune_dataset(dataset: str, synthetic: bool):
    if synthetic:  # hidden: a small generated data set, for tests and smoke runs
        from ..data.synth import make_dataset

        return make_dataset(n_users=80, n_items=50, events_per_user=(5, 10), seed=0)
    return common.load_dataset(dataset)


@app.command("finetune")
def finetune(
    out: Path = common.out_option(..., "Folder to write the fine-tuned sentence-transformers model to "
                                       "(use it as an encoder name: --encoder DIR)."),
    dataset: str = common.dataset_option("Data set whose interactions give the item pairs."),
    encoder: str = typer.Option("minilm", "--encoder", help="Sentence model to start from (name or local folder)."),
    time_budget: float = typer.Option(1200.0, help="Training time budget in seconds, validations included."),
    max_epochs: int = typer.Option(6, help="At most this many epochs."),
    pairs_per_epoch: int = typer.Option(2048, help="Item pairs drawn per epoch from the mined pool."),
    batch_size: int = typer.Option(64, help="Pairs per batch (in-batch negatives)."),
    lr: float = typer.Option(5e-4, help="Peak learning rate (AdamW, linear warm-up then decay)."),
    window: int = typer.Option(3, help="Pair items at most this many events apart in a user's history."),
    patience: int = typer.Option(2, help="Stop after this many epochs without a better validation NDCG@10."),
    layers: int | None = typer.Option(None, help="Keep only the first N transformer layers (cheaper model)."),
    seed: int = common.seed_option(42, "Random seed (same seed and threads, same weights)."),
    threads: int = common.threads_option(1, "Torch CPU threads."),
    precision: str = typer.Option("fp32", help="fp32, or bf16 (autocast for the forward pass)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
    onnx_int8: bool = typer.Option(True, "--onnx-int8/--no-onnx-int8",
                                   help="Export to ONNX int8 afterwards and compare its validation NDCG@10."),
    synthetic: bool = typer.Option(False, "--synthetic", hidden=True),
) -> None:
    """Fine-tune the sentence model on items consumed close together; keep the epoch with the best validation NDCG@10.

    Validation: each user's last event (NDCG@10 of the content recommender), after every epoch. A checkpoint after every epoch lets --resume go on.
    """
    from ..cost.finetune_check import compare_onnx_int8
    from ..encoders.backends import TRAINING_PRECISIONS as PRECISIONS
    from ..eval.finetune import finetune_encoder

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if precision not in PRECISIONS:
        raise typer.BadParameter(f"choose one of {', '.join(PRECISIONS)}", param_hint="--precision")
    ds = _finetune_dataset(dataset, synthetic)
    with common.progress() as bar:
        task = bar.add_task("validating the frozen model", total=None)

        def on(event: dict) -> None:
            kind = event["event"]
            if kind == "epoch_start":
                bar.update(task, description=f"epoch {event['epoch']}/{event['max_epochs']}",
                           total=event["steps"], completed=event["step"])
            elif kind == "step":
                bar.update(task, completed=event["step"],
                           description=f"epoch {event['epoch']}/{max_epochs} · loss {event['loss']:.3f}")
            elif kind == "validate":
                bar.update(task, description=f"validating epoch {event['epoch']}")
            elif kind == "epoch":
                loss = "-" if event["train_loss"] is None else f"{event['train_loss']:.4f}"
                part = " (partial: time budget)" if event.get("partial") else ""
                bar.console.print(f"epoch {event['epoch']}: loss {loss} · valid NDCG@10 "
                                  f"{event['valid_ndcg10']:.4f} · {event['seconds']:.0f} s{part}")

        try:
            folder = finetune_encoder(ds, out, model=encoder, time_budget_s=time_budget, max_epochs=max_epochs,
                                      pairs_per_epoch=pairs_per_epoch, batch_size=batch_size, lr=lr, window=window,
                                      patience=patience, layers=layers, seed=seed, threads=threads,
                                      precision=precision, resume=resume, progress=on)
        except (ValueError, FileExistsError) as exc:
            raise typer.BadParameter(str(exc)) from None
    record = json.loads((folder / "leanrec_finetune.json").read_text())
    console.print(f"saved {folder}: best epoch {record['best_epoch']} · valid NDCG@10 "
                  f"{record['best_valid_ndcg10']:.4f} (frozen {record['frozen_valid_ndcg10']:.4f}) · stopped: "
                  f"{record['stopped']} · {record['train_s']:.0f} s wall, {record['cpu_s']:.0f} s CPU")
    if record.get("checkpoint_kept"):
        console.print("the time budget ended training: --resume with a larger --time-budget goes on")
    if onnx_int8:
        with console.status("exporting to ONNX int8 and comparing on the validation"):
            cmp = compare_onnx_int8(folder, ds, threads=threads)
        lo, hi = cmp["ratio_ci95"]
        console.print(f"validation NDCG@10: torch fp32 {cmp['torch_ndcg10']:.4f} · ONNX int8 "
                      f"{cmp['onnx_int8_ndcg10']:.4f} (ratio {cmp['ratio']:.3f}, 95% CI {lo:.3f}-{hi:.3f}; "
                      f"top-10 overlap {cmp['top10_overlap']:.3f}; cosine min {cmp['cosine_min']:.4f}, mean "
                      f"{cmp['cosine_mean']:.4f})")
        console.print(f"ONNX int8 ({cmp['int8_scheme']}) export in {cmp['onnx_folder']}", soft_wrap=True)
