"""Dataset folders: the femurseg layout with its seeded split, and importers into it.

::

    prepare_dataset_dir(root, overwrite=False) -> DatasetLayout
    write_case(layout, case_id, image: Volume, labels) -> (image path, label path)
    split_cases(case_ids, seed=0, fractions=(0.85, 0.08, 0.07)) -> Split
    write_dataset_json(layout, split, name=..., ...) -> Path
    resplit_dataset(root, seed=0, fractions=...) -> Split        # `femurseg dataset split`
    import_totalseg(src, out, ...) / import_nnunet(src, out, label_map=None, ...) -> ImportResult
    merge_datasets(sources, out, test_into_train=False) -> split  # `femurseg dataset merge`
"""

from femurseg.datasets.importers import ImportResult, import_nnunet, import_totalseg
from femurseg.datasets.layout import (
    DEFAULT_FRACTIONS,
    DatasetLayout,
    Split,
    prepare_dataset_dir,
    read_dataset_json,
    resplit_dataset,
    split_cases,
    write_case,
    write_dataset_json,
)
from femurseg.datasets.merge import merge_datasets

__all__ = [
    "DEFAULT_FRACTIONS",
    "DatasetLayout",
    "ImportResult",
    "Split",
    "import_nnunet",
    "import_totalseg",
    "merge_datasets",
    "prepare_dataset_dir",
    "read_dataset_json",
    "resplit_dataset",
    "split_cases",
    "write_case",
    "write_dataset_json",
]
