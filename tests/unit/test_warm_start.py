"""Continuing across runs: which registered version a contender continues from, or why it starts fresh."""

from __future__ import annotations

from dataclasses import dataclass, field

from fercore.models import build_cnn
from fercore.training.warm_start import find_warm_start, network_of


@dataclass
class Version:
    version: str
    tags: dict[str, str] = field(default_factory=dict)


def _v(version: str, val: str = "V", network: str = "N", contender: str = "vgg7", **tags) -> Version:
    return Version(version, {"contender": contender, "val_images": val, "network": network, "architecture": "cnn",
                             **tags})


def test_the_latest_version_on_the_same_validation_images_and_network_is_continued():
    registered = [_v("3", total_training_minutes="14.5", total_epochs="17"), _v("5", network="other"),
                  _v("4", total_training_minutes="28.0", total_epochs="33", seed="43"),  # a spare seed, say
                  _v("7", architecture="ensemble"), _v("8", family="ensemble")]  # the old tag, and its new name
    found = find_warm_start(registered, "vgg7", "V", "N")
    assert found == {"version": "4", "reason": "continuing from v4 (same validation images and network)",
                     "total_training_minutes": 28.0, "total_epochs": 33, "seed": 43}  # its lineage's seed, kept on
    assert find_warm_start([_v("3")], "vgg7", "V", "N", base_seed=7)["seed"] == 7  # no tag: the config's seed


def test_no_version_other_data_or_another_network_start_fresh_and_say_why():
    assert find_warm_start([], "vgg7", "V", "N") == {
        "version": None, "reason": "no registered version of vgg7 yet: starting fresh"}
    other_data = find_warm_start([_v("2", val="W")], "vgg7", "V", "N")
    assert other_data["version"] is None and "v2, was trained on other validation images" in other_data["reason"]
    other_net = find_warm_start([_v("2", network="M")], "vgg7", "V", "N")
    assert other_net["version"] is None and "another network" in other_net["reason"]


def test_the_network_digest_follows_shapes_and_input_size_not_dropout():
    a, b = build_cnn("vgg7", width=8, dropout=0.1), build_cnn("vgg7", width=8, dropout=0.5)
    assert network_of(a, 44) == network_of(b, 44) != network_of(a, 40) != network_of(build_cnn("vgg7", width=16), 40)
    assert "input_size" not in a.fer_spec  # computing it leaves the model as it was


def test_a_converged_version_is_not_continued_again_a_new_seed_starts_fresh():
    """Converged: continued from another, it kept its start weights. The next night trains an independent model, from
    one seed above every seed the contender's versions used (42 where none was recorded)."""
    registered = [_v("3"), _v("6", continued_from="3", kept_weights="start", seed="43"), _v("5", seed="44")]
    found = find_warm_start(registered, "vgg7", "V", "N", base_seed=42)
    assert found == {"version": None, "seed": 45, "reason": "v6 converged (continued from v3, it kept its start "
                     "weights): starting fresh from seed 45, a new model for the ensemble library"}
    assert find_warm_start([_v("3"), _v("6", continued_from="3", kept_weights="start")], "vgg7", "V", "N",
                           base_seed=42)["seed"] == 43
    # a continuation that improved on its start (raw or ema weights kept), or a fresh model, is continued
    assert find_warm_start([_v("3"), _v("6", continued_from="3", kept_weights="ema")], "vgg7", "V", "N")["version"] == "6"
    assert find_warm_start([_v("6", kept_weights="start")], "vgg7", "V", "N")["version"] == "6"


def test_a_new_seed_draws_new_initial_weights_and_leaves_the_global_random_state_alone():
    import torch

    from fercore.training.warm_start import seeded

    def weights(entry):
        return seeded(lambda: build_cnn("v1"), entry).state_dict()["1.weight"]

    before = torch.random.get_rng_state()
    a, b, c = weights({"seed": 43}), weights({"seed": 43}), weights({"seed": 44})
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert weights(None).shape == a.shape  # no new seed: built as ever
