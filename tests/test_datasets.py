import numpy as np
import pytest

from mslesion.data.prep import PrepConfig, prepare_dataset
from mslesion.train.datasets import Augmentation, load_slice_set, make_dataset, split_patients_of


@pytest.fixture
def dataset(muslim_cohort, tmp_path):
    out = tmp_path / "slices"
    prepare_dataset(muslim_cohort, out, PrepConfig(size=(32, 32), selection="brain", split="kfold", folds=3),
                    progress=False)  # fmt: skip
    return out


def epochs(ds, n):
    return [[(x.numpy(), y.numpy()) for x, y in ds] for _ in range(n)]


def test_slice_set_follows_the_split(dataset):
    train = split_patients_of(dataset, "train", fold=1)
    test = split_patients_of(dataset, "test", fold=1)
    assert not set(train) & set(test)
    s = load_slice_set(dataset, train)
    assert s.patients == train and len(s) == sum(len(np.load(dataset / p / "mask.npy", mmap_mode="r")) for p in train)
    assert s.has_lesion.any() and (~s.has_lesion).any()
    x, y = s.arrays()
    assert x.shape == (len(s), 32, 32, 1) and x.dtype == np.float32 and set(np.unique(y)) <= {0.0, 1.0}
    assert ((y.reshape(len(s), -1).sum(1) > 0) == s.has_lesion).all()
    with pytest.raises(ValueError, match="fold 5 does not exist"):
        split_patients_of(dataset, "train", fold=5)


def test_one_pass_covers_every_slice_once_in_seeded_order(dataset):
    s = load_slice_set(dataset, ["1", "2", "3"])
    all_x, _ = s.arrays()
    (first, second) = epochs(make_dataset(s, batch_size=5, seed=3), 2)
    xs = np.concatenate([x for x, _ in first])
    assert len(xs) == len(s)
    # same slices, new order each epoch, and the same orders again for the same seed
    key = lambda a: sorted(map(bytes, a.reshape(len(a), -1)))  # noqa: E731
    assert key(xs) == key(all_x)
    assert not np.array_equal(xs, np.concatenate([x for x, _ in second]))
    again = epochs(make_dataset(s, batch_size=5, seed=3), 1)[0]
    np.testing.assert_array_equal(xs, np.concatenate([x for x, _ in again]))


def test_balanced_sampling_evens_out_lesion_slices(dataset):
    s = load_slice_set(dataset, ["1", "2", "3"])
    assert s.has_lesion.mean() < 0.5
    ys = np.concatenate([y for epoch in epochs(make_dataset(s, 8, balance=True), 20) for _, y in epoch])
    frac = (ys.reshape(len(ys), -1).sum(1) > 0).mean()
    assert 0.4 < frac < 0.6


def test_augmentation_transforms_image_and_mask_together(dataset):
    s = load_slice_set(dataset, ["1"])
    keep = np.flatnonzero(s.has_lesion)
    s.index, s.has_lesion = s.index[keep], s.has_lesion[keep]
    # an image whose first channel *is* its mask makes "same transform" checkable
    s.images = [m.astype(np.float32) for m in s.masks]
    aug = Augmentation(flip=True, rotation_deg=20, shift=0.1, zoom=0.1)
    x, y = next(iter(make_dataset(s, 16, augment=aug, seed=1)))
    x, y = x.numpy(), y.numpy()
    original = s.arrays()[1]
    assert set(np.unique(y)) <= {0.0, 1.0}
    assert not np.array_equal(np.sort(y.reshape(len(y), -1).sum(1)), np.sort(original.reshape(len(y), -1).sum(1)))
    agree = ((x > 0.5) == (y > 0.5)).mean()
    assert agree > 0.99


@pytest.mark.parametrize("options", [
    {"shuffle": True}, {"balance": True}, {"shuffle": False}, {"drop_remainder": True}, {"min_last_batch": 4},
])  # fmt: skip
def test_graph_pipeline_gives_the_generator_pipelines_batches(dataset, options):
    s = load_slice_set(dataset, ["1", "2", "3"])
    assert len(s) % 7 and len(s) % 7 < 4  # a partial last batch, left out with min_last_batch=4
    gen = make_dataset(s, batch_size=7, seed=3, **options)
    graph = make_dataset(s, batch_size=7, seed=3, source="graph", **options)
    assert int(graph.cardinality()) == int(gen.cardinality())
    for a, b in zip(epochs(gen, 3), epochs(graph, 3)):
        assert len(a) == len(b) == int(gen.cardinality())
        for (xa, ya), (xb, yb) in zip(a, b):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    if options.get("drop_remainder"):
        assert graph.element_spec[0].shape[0] == 7  # static batch dimension, as a TPU compiles for


def test_graph_pipeline_augments_and_rejects_an_unknown_source(dataset):
    s = load_slice_set(dataset, ["1"])
    s.images = [m.astype(np.float32) for m in s.masks]
    x, y = next(iter(make_dataset(s, 16, augment=Augmentation(rotation_deg=20), seed=1, source="graph")))
    assert set(np.unique(y.numpy())) <= {0.0, 1.0} and ((x.numpy() > 0.5) == (y.numpy() > 0.5)).mean() > 0.99
    with pytest.raises(ValueError, match="'generator' or 'graph'"):
        make_dataset(s, 4, source="python")
