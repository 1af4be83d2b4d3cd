"""The defaults are the recommended route; a recipe (recipes/*.toml or any TOML file) and --set change what differs,
the command's own flags win, config.json records the resolved values; a bad recipe is one line; run folders made
before the defaults changed still load as what they were."""
import json
from pathlib import Path

import numpy as np
import pytest

import builtin_images
import image_utilities as iu
import run_config
import stylizer as S
import stylizer_apply as A
import stylizer_run as R
import vae_keras as V
from conftest import gradient_image, save_as_run, styled_net
from run_config import RunError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def content(tmp_path_factory):
    d = tmp_path_factory.mktemp("recipe_content")
    for name, im in builtin_images.default_content(48).items():
        iu.save_image(d / f"{name}.png", im)
    return d


def saved_config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def test_a_vae_trained_with_no_recipe_flags_is_the_recommended_route(style_files, tmp_path):
    run = tmp_path / "vae"
    assert V.main(["train", "--style", style_files[0], "--style", style_files[1], "--run-dir", str(run),
                   "--size", "32", "--steps", "1"]) == 0
    config = saved_config(run)
    route = {"recon": "gram", "decoder": "texture", "feature_weight": 0.0, "noise_channels": 4, "path_weight": 1.0,
             "endpoint_weight": 1.0, "diversity_weight": 10.0, "lr_schedule": "cosine", "beta": 0.02,
             "latent_dim": 32, "lr": 1e-3, "precision": "mixed_bfloat16", "batch_size": 16}
    assert {k: config[k] for k in route} == route
    assert (run / "latents.npz").exists() and np.isfinite(
        json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["loss"])


def test_the_stylizer_resolves_what_does_not_apply_to_its_styles(style_files, content, tmp_path):
    single = tmp_path / "single"
    assert S.main(["train", "--style", style_files[0], "--content", str(content), "--run-dir", str(single),
                   "--size", "32", "--steps", "1", "--batch-size", "2"]) == 0
    config = saved_config(single)
    assert (config["conditioning"], config["end_share"], config["anchor_ends"]) == ("none", 0.0, False)
    mixed = tmp_path / "mixed"
    assert S.main(["train", "--style", style_files[0], "--style", style_files[1], "--content", str(content),
                   "--run-dir", str(mixed), "--size", "32", "--steps", "1", "--batch-size", "2"]) == 0
    config = saved_config(mixed)
    assert (config["conditioning"], config["end_share"], config["anchor_ends"], config["precision"]) == \
        ("cin", 0.5, False, "mixed_bfloat16")


def test_flags_win_over_set_which_wins_over_the_recipe(style_files, tmp_path):
    recipe = tmp_path / "mine.toml"
    recipe.write_text('[vae]\nsize = 32\nsteps = 50\nseed = 4\nlatent_dim = 8\nwidth = 8\n# a comment\n'
                      '[stylizer]\nsteps = 7\n')
    run = tmp_path / "vae"
    assert V.main(["train", "--recipe", str(recipe), "--style", style_files[0], "--run-dir", str(run),
                   "--steps", "1", "--set", "seed=9", "--set", "encode_crops=4", "--batch-size", "4"]) == 0
    config = saved_config(run)
    assert (config["size"], config["steps"], config["seed"], config["latent_dim"], config["encode_crops"]) == \
        (32, 1, 9, 8, 4)
    demo = run_config.recipe_values(V.VAEConfig, "vae", "cpu-demo", ["steps=2"])
    assert (demo["size"], demo["style_size"], demo["steps"], demo["seed"]) == (64, 128, 2, 1)


@pytest.mark.parametrize("text,says", [
    ("[vae]\nlatent = 3\n", "no setting 'latent'"),
    ("[vae]\nsize = 'big'\n", "size = 'big' is not a int"),
    ("[vae]\nsize = \n", "not TOML"),
])
def test_a_bad_recipe_is_one_line_naming_the_file(style_files, tmp_path, capsys, text, says):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(text)
    assert V.main(["train", "--recipe", str(recipe), "--style", style_files[0], "--run-dir", str(tmp_path / "r"),
                   "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(recipe) in err[0] and says in err[0], err
    assert not (tmp_path / "r").exists()


def test_every_recipe_of_the_project_reads_as_its_jobs_settings():
    from style_sampler import SamplerConfig
    from vae_model import VAEConfig

    jobs = {"vae": VAEConfig, "sampler": SamplerConfig, "stylizer": R.StylizerConfig}
    for path in sorted((ROOT / "recipes").glob("*.toml")):
        for section, cls in jobs.items():
            run_config.recipe_values(cls, section, str(path), [])  # raises on an unknown key or a wrong type
    assert run_config.recipe_values(R.StylizerConfig, "stylizer", "seed-original", [])["conditioning"] == "channels"


def test_a_stylizer_run_made_before_the_defaults_changed_loads_as_it_was(tmp_path):
    """config.json as the code wrote it before the recommended route became the default: no lr_schedule key, style
    planes, relu2_2 and each-sample targets spelled out. It loads as that net and stylizes as before; a run made
    with a setting since removed is refused in one line."""
    net = styled_net("channels")
    run = save_as_run(net, "channels", tmp_path / "old")
    config = saved_config(run)
    del config["lr_schedule"]
    config.update(style_targets="each", anchor_ends=False, end_share=0.0, precision="float32", size=224,
                  content_layer="relu2_2")
    (run / "config.json").write_text(json.dumps(config))
    loaded, read, names = R.load_stylizer(run)
    assert (read.conditioning, read.content_layer, read.lr_schedule) == ("channels", "relu2_2", "constant")
    photo = gradient_image(40, 56)
    np.testing.assert_allclose(A.stylize_array(loaded, photo, [0.3, 0.7]), A.stylize_array(net, photo, [0.3, 0.7]),
                               atol=1e-5)
    assert names == ["style_0", "style_1"]
    (run / "config.json").write_text(json.dumps({**config, "residual": True}))
    with pytest.raises(RunError, match="residual=True, a setting that was measured and removed"):
        R.load_stylizer(run)


def test_the_stylizers_cosine_learning_rate_decays_to_the_floor_in_the_optimizer(style_files, content, tmp_path):
    """What the recipe gained, as training runs it: the learning rate falls along a half cosine to 0.05x by the
    last step (logged, and the optimizer's own rate in the checkpoint), and the content loss is at relu3_3."""
    import tensorflow as tf

    run = tmp_path / "cos"
    assert S.main(["train", "--style", style_files[0], "--content", str(content), "--run-dir", str(run), "--size",
                   "32", "--steps", "5", "--batch-size", "2", "--lr", "2e-3", "--log-every", "1"]) == 0
    config = R.StylizerConfig(lr=2e-3, steps=5)
    logged = [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(logged, [run_config.lr_at(config, s) for s in range(5)], rtol=1e-6)
    assert logged[0] == pytest.approx(2e-3) and logged[-1] == pytest.approx(run_config.LR_FLOOR * 2e-3)
    saved = tf.train.load_checkpoint(str(run / "checkpoints"))
    assert saved.get_tensor("optimizer/_learning_rate/.ATTRIBUTES/VARIABLE_VALUE") == pytest.approx(logged[-1],
                                                                                                  rel=1e-5)
    assert saved_config(run)["content_layer"] == "relu3_3"


def test_a_recipe_sections_lists_and_typed_values(style_files, content, tmp_path, capsys):
    """A misspelled section is refused, not ignored; a list setting is typed element by element; a repeatable flag
    given on the command line replaces the recipe's list; the VAE takes its styles from a recipe too."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[stylzer]\nsteps = 3\n")
    assert S.main(["train", "--recipe", str(bad), "--style", style_files[0], "--content", str(content),
                   "--run-dir", str(tmp_path / "r0")]) == 2
    assert "[stylzer] is not a section of a recipe" in capsys.readouterr().err
    assert run_config.typed_value(V.VAEConfig, "crop_scale", "0.5,1.2", "--set") == (0.5, 1.2)
    with pytest.raises(RunError, match="is not a list of 2 float"):
        run_config.typed_value(V.VAEConfig, "crop_scale", "small,big", "--set")
    mine = tmp_path / "mine.toml"
    mine.write_text(f'[stylizer]\nstyle_images = ["{style_files[0]}"]\n[vae]\nstyles = ["{style_files[1]}"]\n'
                    'size = 32\nsteps = 1\nlatent_dim = 8\nwidth = 8\nencode_crops = 4\nbatch_size = 4\n')
    common = ["--content", str(content), "--size", "32", "--steps", "1", "--batch-size", "2"]
    assert S.main(["train", "--recipe", str(mine), "--run-dir", str(tmp_path / "from_recipe"), *common]) == 0
    assert saved_config(tmp_path / "from_recipe")["style_images"] == [str(Path(style_files[0]).resolve())]
    assert S.main(["train", "--recipe", str(mine), "--style", style_files[1], "--run-dir",
                   str(tmp_path / "flag_wins"), *common]) == 0
    assert saved_config(tmp_path / "flag_wins")["style_images"] == [str(Path(style_files[1]).resolve())]
    assert V.main(["train", "--recipe", str(mine), "--run-dir", str(tmp_path / "vae")]) == 0
    assert saved_config(tmp_path / "vae")["styles"] == [style_files[1]]


def test_a_start_that_failed_on_its_inputs_can_be_run_again_corrected(style_files, content, tmp_path, capsys):
    """Nothing was trained, so the folder's config.json does not hold the run to the mistyped setting."""
    run = tmp_path / "run"
    args = ["train", "--style", style_files[0], "--run-dir", str(run), "--size", "32", "--steps", "1",
            "--batch-size", "2"]
    assert S.main([*args, "--content", str(tmp_path / "phtos")]) == 2
    assert "phtos" in capsys.readouterr().err
    assert S.main([*args, "--content", str(content)]) == 0
    assert saved_config(run)["content"] == str(content)
    assert S.main([*args, "--content", str(tmp_path / "other"), "--steps", "2"]) == 2  # trained: now refused
    assert "this run was made with content=" in capsys.readouterr().err
