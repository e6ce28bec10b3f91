"""A deterministic synthetic multiple-sclerosis cohort, written as NIfTI.

Each patient is a brain MRI study with three co-registered modalities (FLAIR,
T1, T2) and per-modality lesion masks, laid out like the public Muslim et al.
(2022) MS dataset::

    out_dir/Patient-<id>/<id>-Flair.nii.gz        <id>-LesionSeg-Flair.nii.gz
                         <id>-T1.nii.gz           <id>-LesionSeg-T1.nii.gz
                         <id>-T2.nii.gz           <id>-LesionSeg-T2.nii.gz
    out_dir/cohort.json

It is meant to look like brain MRI to a segmentation model, not like noise.
Everything is built in physical millimetres on the voxel grid:

* **Head**: an ellipsoid (semi-axes ~72 x 92 x 75 mm, +-8 % per patient, a little
  longer in front than behind) whose surface is perturbed by a smooth random
  radial field. Layers by depth below that surface: scalp (~5 mm), skull
  (~6 mm), subarachnoid CSF (~2.5 mm), cortical grey matter (~3.5 mm, wavy, with
  CSF-filled sulci lined by GM and an interhemispheric fissure), white matter.
* **Deep structures**: lateral ventricles (two curved chains of ellipsoids, the
  frontal horns larger than the occipital ends), thalami, lentiform and caudate
  nuclei (label :data:`DEEP_GM`).
* **Lesions**: 4 to 25 irregular blobs with heavy-tailed sizes (radius 1 to
  12 mm), painted in white matter only, ~60 % of centres drawn within 10 mm of
  a ventricle.
* **Images**: per-tissue relative intensities (:data:`CONTRASTS`, varied a few %
  per patient), smooth multiplicative texture, partial-volume Gaussian blur,
  a smooth bias field per modality, Rician noise, scaled to int16 with a
  per-patient, per-modality maximum between 400 and 1500.

Orientation. The affine is ``diag(-sx, -sy, sz)`` plus an origin that puts the
volume centre at world (0, 0, 0) (the head centre within a few mm of it), as
DICOM converters write LPS-stored data: ``nib.aff2axcodes`` gives
``('L', 'P', 'S')``. So increasing the first index goes toward the patient's
*left* (index 0 is the patient's right), increasing the second index goes
*posterior* (index 0 is the front of the head), the third goes superior. The
anatomy is built in world (RAS+) millimetres through that same affine, so it
is consistent with it by construction; frontal horns are at world +y.

Masks. ``Flair`` and ``T2`` masks hold every lesion. The ``T1`` mask holds
only the T1 "black holes": lesions of at least :data:`BLACK_HOLE_MIN_MM3` mm³,
each kept with probability 0.65, and at least the largest one when any lesion
is that big. A patient whose lesions are all small therefore has an **empty
T1 mask** (load it with ``allow_empty=True``). All lesions are hypointense on
T1; black holes are darker still.

Determinism. :func:`generate_patient` with the same seed returns identical
arrays; :func:`generate_cohort` seeds patient ``<id>`` with
``SeedSequence([seed, id])``, so a patient does not depend on how many others
are generated alongside it.

The package: :mod:`~mslesion.data.synthetic.anatomy` (labels, head), :mod:`~mslesion.data.synthetic.lesions`,
:mod:`~mslesion.data.synthetic.images` (rendering, :func:`generate_patient`) and
:mod:`~mslesion.data.synthetic.writer` (NIfTI files, :func:`generate_cohort`); their public names are here.
"""

from mslesion.data.synthetic.anatomy import (
    BACKGROUND,
    CSF,
    DEEP_GM,
    GM,
    LABEL_NAMES,
    LESION,
    SCALP,
    SKULL,
    VENTRICLE,
    WM,
)
from mslesion.data.synthetic.images import CONTRASTS, MODALITIES, T1_BLACK_HOLE, SyntheticPatient, generate_patient
from mslesion.data.synthetic.lesions import BLACK_HOLE_MIN_MM3
from mslesion.data.synthetic.writer import GENERATOR, GENERATOR_VERSION, generate_cohort, write_patient

__all__ = [
    "SyntheticPatient",
    "generate_patient",
    "write_patient",
    "generate_cohort",
    "MODALITIES",
    "CONTRASTS",
    "T1_BLACK_HOLE",
    "LABEL_NAMES",
    "BACKGROUND",
    "SCALP",
    "SKULL",
    "CSF",
    "GM",
    "WM",
    "VENTRICLE",
    "LESION",
    "DEEP_GM",
    "BLACK_HOLE_MIN_MM3",
    "GENERATOR",
    "GENERATOR_VERSION",
]
