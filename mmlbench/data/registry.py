"""Known datasets: where their files come from, their checksums and their expected counts."""

from __future__ import annotations

from dataclasses import dataclass

from mmlbench.errors import unknown_name

# The LightGCN splits, pinned to the commit the published numbers were computed on.
LIGHTGCN_COMMIT = "b067ec05f16a24e0e1efe63cd82385f0c469af20"
LIGHTGCN_BASE = f"https://raw.githubusercontent.com/kuandeng/LightGCN/{LIGHTGCN_COMMIT}/Data"
LIGHTGCN_CITATION = (
    "He et al., LightGCN: Simplifying and Powering Graph Convolution Network for "
    "Recommendation, SIGIR 2020 (splits from Wang et al., NGCF, SIGIR 2019)"
)


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its name in the raw folder, canonical URL, size and sha256."""

    name: str
    url: str
    size: int
    sha256: str


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its files and the counts its preprocessing must reproduce."""

    name: str
    files: tuple[RemoteFile, ...]
    users: int
    items: int
    train: int
    test: int
    citation: str
    format: str = "lightgcn"

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def _lightgcn(name: str, sizes: dict[str, tuple[int, str]], counts: tuple[int, int, int, int]) -> DatasetSpec:
    files = tuple(
        RemoteFile(file, f"{LIGHTGCN_BASE}/{name}/{file}", size, sha)
        for file, (size, sha) in sizes.items()
    )
    users, items, train, test = counts
    return DatasetSpec(name, files, users, items, train, test, LIGHTGCN_CITATION)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _lightgcn(
            "gowalla",
            {
                "train.txt": (4_633_414, "7244696fdeb23911319cf7b689f2e15a3c4c92549c873a5677b44e3f13cc3e62"),
                "test.txt": (1_372_559, "099a2a73924e4b754dc6efd730d764f492321b53c38eb93298850c83acf57be3"),
            },
            (29_858, 40_981, 810_128, 217_242),
        ),
        _lightgcn(
            "yelp2018",
            {
                "train.txt": (6_904_880, "1e9568725a9e833d0ac3bae01c94cd95367f73b3bb6104fd26b5f65ea5054093"),
                "test.txt": (1_986_152, "9cd9b37926cd1447a06625ffa7914527573fb097c10cb0bbdb1d1b8ded3742fe"),
            },
            (31_668, 38_048, 1_237_259, 324_147),
        ),
        _lightgcn(
            "amazon-book",
            {
                "train.txt": (14_125_691, "529066026085919381acd4ce19f69e9eafa4af3fef1a10119ea5551cc2ef8530"),
                "test.txt": (3_848_611, "6250754994dd953b91b48dccdd77a73f318e0634b4757c2abfcc9d33a54ab0f5"),
            },
            (52_643, 91_599, 2_380_730, 603_378),
        ),
    )
}


@dataclass(frozen=True)
class SliceSpec:
    """A registered slice of a registered dataset: a seeded share of its users with all their
    rows and a validation split, small enough for a study on 2 CPU cores (`preprocess
    --sample-users`). `train` and `preprocess` build it by name, as they build a dataset."""

    name: str
    source: str
    sample_users: float
    valid_fraction: float
    seed: int

    def describe(self) -> str:
        return (
            f"{self.sample_users:.0%} of {self.source}'s users (seed {self.seed}), "
            f"{self.valid_fraction:.0%} of each user's train rows as validation"
        )


SLICES: dict[str, SliceSpec] = {
    spec.name: spec
    for spec in (
        SliceSpec("gowalla-u10", "gowalla", sample_users=0.1, valid_fraction=0.1, seed=1),
        SliceSpec("gowalla-v10", "gowalla", sample_users=1.0, valid_fraction=0.1, seed=1),  # all users: `tune --preset fair-gowalla`
        SliceSpec("yelp2018-u10", "yelp2018", sample_users=0.1, valid_fraction=0.1, seed=1),
    )
}


def registered_names() -> list[str]:
    """Every name `train` can fetch: the datasets and their slices."""
    return sorted(DATASETS.keys() | SLICES.keys())


def get_dataset(name: str) -> DatasetSpec:
    """The registered dataset called `name`, or an error naming the closest match."""
    try:
        return DATASETS[name]
    except KeyError:
        raise unknown_name("dataset", name, DATASETS) from None
