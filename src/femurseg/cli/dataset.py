"""``femurseg dataset import totalseg|nnunet`` and ``dataset split``: labelled data in, split."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from femurseg.cli import app, run_guarded

dataset_app = typer.Typer(
    help="Import labelled datasets into the femurseg layout and split them.",
    no_args_is_help=True,
)
dataset_import_app = typer.Typer(
    help="Import another layout (TotalSegmentator, nnU-Net raw) into DIR.", no_args_is_help=True
)
dataset_app.add_typer(dataset_import_app, name="import")
app.add_typer(dataset_app, name="dataset")

_SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the train/val/test split.")]
_FractionsOpt = Annotated[
    str, typer.Option("--fractions", help="Train,val,test fractions summing to 1.")
]
_OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Replace an existing dataset in the output folder.")
]


def _fractions(text: str) -> tuple[float, ...]:
    from femurseg.errors import InputError

    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError as err:
        raise InputError(
            f"--fractions {text!r}; expected three numbers, e.g. 0.85,0.08,0.07"
        ) from err


def _run_import(
    source: str,
    src: Path,
    out: Path,
    seed: int,
    fractions: str,
    overwrite: bool,
    **options: Any,
) -> None:
    """Import ``src`` (``source``: totalseg or nnunet) into ``out`` and report what was done."""

    def _run() -> None:
        from femurseg.datasets import ImportResult, import_nnunet, import_totalseg

        importer: Callable[..., ImportResult]
        importer = {"totalseg": import_totalseg, "nnunet": import_nnunet}[source]
        result = importer(
            src, out, seed=seed, fractions=_fractions(fractions), overwrite=overwrite, **options
        )
        s = result.split
        typer.echo(
            f"imported {len(result.imported)} cases into {result.layout.root} "
            f"({len(s.train)} train, {len(s.val)} val, {len(s.test)} test; seed {s.seed})"
        )
        for case, reason in result.skipped.items():
            typer.echo(f"skipped {case}: {reason}", err=True)
        for case, notes in result.notes.items():
            for note in notes:
                typer.echo(f"note {case}: {note}", err=True)

    run_guarded(_run)


@dataset_import_app.command("totalseg")
def dataset_import_totalseg(
    src: Annotated[Path, typer.Argument(metavar="SRC", help="Folder of TotalSegmentator cases.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output dataset folder.")],
    seed: _SeedOpt = 0,
    fractions: _FractionsOpt = "0.85,0.08,0.07",
    overwrite: _OverwriteOpt = False,
) -> None:
    """Import <case>/ct.nii.gz + segmentations/femur_left|right.nii.gz cases."""
    _run_import("totalseg", src, out, seed, fractions, overwrite)


@dataset_import_app.command("nnunet")
def dataset_import_nnunet(
    src: Annotated[Path, typer.Argument(metavar="SRC", help="nnU-Net raw DatasetXXX folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output dataset folder.")],
    label_map: Annotated[
        str | None,
        typer.Option(
            "--label-map",
            help="Source values (or names) of the femurs, e.g. 'left=1,right=2'; "
            "default: from dataset.json label names. Other labels become background.",
        ),
    ] = None,
    seed: _SeedOpt = 0,
    fractions: _FractionsOpt = "0.85,0.08,0.07",
    overwrite: _OverwriteOpt = False,
) -> None:
    """Import imagesTr/<case>_0000 + labelsTr/<case> with dataset.json."""
    _run_import("nnunet", src, out, seed, fractions, overwrite, label_map=label_map)


@dataset_app.command("split")
def dataset_split(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="femurseg dataset folder.")],
    seed: _SeedOpt = 0,
    fractions: _FractionsOpt = "0.85,0.08,0.07",
) -> None:
    """Draw a new seeded train/val/test split and save it in DIR/dataset.json."""

    def _run() -> None:
        from femurseg.datasets import resplit_dataset

        s = resplit_dataset(folder, seed=seed, fractions=_fractions(fractions))
        typer.echo(
            f"split {folder}: {len(s.train)} train, {len(s.val)} val, {len(s.test)} test "
            f"(seed {s.seed})"
        )

    run_guarded(_run)


@dataset_app.command("merge")
def dataset_merge(
    sources: Annotated[
        list[Path], typer.Argument(metavar="SRC...", help="Dataset folders to merge.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the merged dataset.json.")],
    test_into_train: Annotated[
        bool,
        typer.Option(
            "--test-into-train",
            help="Train on each source's test cases too (no held-out subjects).",
        ),
    ] = False,
    overwrite: _OverwriteOpt = False,
) -> None:
    """Merge dataset folders into one (a dataset.json pointing into them; nothing copied)."""

    def _run() -> None:
        from femurseg.datasets import merge_datasets

        s = merge_datasets(sources, out, test_into_train=test_into_train, overwrite=overwrite)
        typer.echo(
            f"merged into {out}: {len(s['train'])} train, {len(s['val'])} val, "
            f"{len(s['test'])} test"
        )

    run_guarded(_run)
