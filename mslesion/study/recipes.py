"""Named training recipes: the option sets compared on real data, and the one ``mslesion train`` starts from."""

from __future__ import annotations

__all__ = ["TRAINING_CONFIGS", "RECIPE_MODEL", "DEFAULT_RECIPE", "recipe", "recipe_options"]


#: Named training configurations compared on real data (issue 10): TrainConfig overrides. ``seed000`` is
#: the backbone report's own setting (BCE, lesion slices only, no augmentation); ``readme`` the README's example
#: (soft Dice, learning rate 3e-3); the others add what the related works use (README, References).
TRAINING_CONFIGS: dict[str, dict] = {
    "seed000": {"loss": "bce", "lesion_slices_only": True},
    "readme": {"loss": "dice", "learning_rate": 3e-3},
    "bce_dice": {"loss": "bce_dice"},
    # the default: beat the plain Keras loop on one MS patient on 5/5 seeds, and bce_dice_aug_balance on LGG
    "bce_dice_lr3e-3": {"loss": "bce_dice", "learning_rate": 3e-3},
    "bce_dice_aug": {"loss": "bce_dice", "augment": True},
    "bce_dice_aug_balance": {"loss": "bce_dice", "augment": True, "balance": True},
    # best on 22 LGG cases (15 min); learns nothing in 120 steps on one MS patient
    "bce_dice_aug_balance_lr3e-3": {"loss": "bce_dice", "augment": True, "balance": True, "learning_rate": 3e-3},
    "focal_tversky_aug": {"loss": "focal_tversky", "augment": True},
}


#: The model and batch every configuration was compared with (``benchmarks/compare_configs.py``'s defaults);
#: part of a recipe unless a model is given.
RECIPE_MODEL: dict = {"model": "sm.unet", "model_params": {"backbone": "mobilenetv2"}, "batch_size": 16}


#: The recipe ``mslesion train`` starts from: the configuration measured best over both real-data regimes
#: (README, "Which configuration: measured"): on one MS patient (~120 steps) the only one that learned on
#: every seed; on 22 LGG cases (15 min) within 0.07 mean Dice of the best, which adds augmentation and
#: balanced sampling and learns nothing on the MS patient.
DEFAULT_RECIPE = "bce_dice_lr3e-3"


def recipe(name: str | None, with_model: bool = True) -> dict:
    """The :class:`~mslesion.train.training.TrainConfig` options of recipe ``name`` (``None`` or "none": no options).

    A recipe is :data:`RECIPE_MODEL` plus ``TRAINING_CONFIGS[name]``; ``with_model=False`` leaves out the
    model, its parameters and the batch size (the caller chose another model).
    """
    if name in (None, "none"):
        return {}
    if name not in TRAINING_CONFIGS:
        raise KeyError(f"unknown recipe {name!r}; known: none, {', '.join(TRAINING_CONFIGS)}")
    options = dict(TRAINING_CONFIGS[name])
    if with_model:
        options = {**RECIPE_MODEL, "model_params": dict(RECIPE_MODEL["model_params"]), **options}
    return options


def recipe_options(name: str | None = None, **overrides) -> dict:
    """The training options of recipe ``name`` (default :data:`DEFAULT_RECIPE`) without its model, with the
    ``overrides`` that are not None (the notebooks' ``LOSS = None`` means "the recipe's")."""
    return {**recipe(name or DEFAULT_RECIPE, with_model=False), **{k: v for k, v in overrides.items() if v is not None}}
