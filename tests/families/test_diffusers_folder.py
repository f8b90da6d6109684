"""diffusers:PATH references: bad folders get one-line errors; latent models record and run their decoder."""

from __future__ import annotations

import builtins
import json

import pytest
import torch

from s4s_export.errors import S4SError
from s4s_export.families.diffusers_folder import check_diffusers, load_diffusers

from .tiny import SD_SCHEDULER, diffusers, tiny_sd_pipeline, tiny_unet, tiny_vae


class Ref:
    def __init__(self, target, checkpoint=None, random_weights=False, config=None):
        self.target, self.checkpoint, self.random_weights, self.config = str(target), checkpoint, random_weights, config


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("sd")
    tiny_sd_pipeline(diffusers.EulerDiscreteScheduler(**SD_SCHEDULER)).save_pretrained(path)
    return path


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_check_describes_the_folder_without_loading(sd_folder):
    spec = check_diffusers(Ref(sd_folder))
    assert spec.name == f"diffusers:{sd_folder}" and spec.resolution == "4x16x16" and spec.conditioning == "text"
    assert "UNet2DConditionModel" in spec.description and "AutoencoderKL" in spec.description


def test_latent_model_records_and_runs_its_decoder(sd_folder):
    model = load_diffusers(Ref(sd_folder))
    assert model.info.latent and model.info.decodes_to == (3, 32, 32) and model.info.space == "vp"
    assert model.info.to_dict()["decodes_to"] == [3, 32, 32] and model.info.to_dict()["space"] == "vp"
    z = torch.randn(2, 4, 16, 16)
    vae = diffusers.AutoencoderKL.from_pretrained(sd_folder / "vae")
    assert torch.allclose(model.decoder(z), vae.decode(z / 0.18215).sample, atol=1e-6)


def test_vq_decoder_quantises(tmp_path):
    from s4s_export.families.latent import LatentDecoder

    torch.manual_seed(0)
    vq = diffusers.VQModel(block_out_channels=[8, 16], norm_num_groups=8, in_channels=3, out_channels=3,
                           down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                           latent_channels=3, scaling_factor=1.0)
    dec = LatentDecoder(vq)
    z = torch.randn(2, 3, 8, 8)
    assert torch.allclose(dec(z), vq.decode(z).sample) and not torch.allclose(dec(z), vq.decode(z, True).sample)
    assert dec.decoded_shape((3, 8, 8)) == (3, 16, 16)


def test_missing_folder(tmp_path):
    with pytest.raises(S4SError, match="diffusers folder not found") as e:
        check_diffusers(Ref(tmp_path / "nope"))
    assert "save_pretrained" in one_line(e)


def test_not_a_diffusers_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(S4SError, match="is not a diffusers model") as e:
        check_diffusers(Ref(tmp_path))
    one_line(e)


def test_unsupported_class(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel"}))
    with pytest.raises(S4SError, match="unsupported diffusers network class 'ControlNetModel'") as e:
        check_diffusers(Ref(tmp_path))
    assert "UNet2DConditionModel" in one_line(e)


def test_bare_unet_needs_a_scheduler_and_refuses_bin_weights(tmp_path):
    unet = tiny_unet()
    unet.save_pretrained(tmp_path / "unet", safe_serialization=False)
    with pytest.raises(S4SError, match="no scheduler config") as e:
        check_diffusers(Ref(tmp_path / "unet"))
    one_line(e)
    diffusers.DDPMScheduler(**SD_SCHEDULER).save_pretrained(tmp_path / "scheduler")
    with pytest.raises(S4SError, match="only pickled .bin weights") as e:
        load_diffusers(Ref(tmp_path / "unet"))
    one_line(e)
    model = load_diffusers(Ref(tmp_path / "unet", random_weights=True))  # architecture only: no weights read
    assert model.info.space == "vp" and not model.info.latent


def test_options_that_do_not_apply(sd_folder):
    with pytest.raises(S4SError, match="--checkpoint does not apply"):
        check_diffusers(Ref(sd_folder, checkpoint="x.ckpt"))
    with pytest.raises(S4SError, match="--config does not apply"):
        load_diffusers(Ref(sd_folder, config="c.yaml"))


def test_missing_extra(sd_folder, monkeypatch):
    real_import = builtins.__import__

    def no_diffusers(name, *args, **kwargs):
        if name == "diffusers" or name.startswith("diffusers."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_diffusers)
    with pytest.raises(S4SError, match=r"pip install 's4s-export\[diffusers\]'") as e:
        load_diffusers(Ref(sd_folder))
    one_line(e)


def test_pickled_vae_is_refused(tmp_path):
    pipe = tiny_sd_pipeline(diffusers.EulerDiscreteScheduler(**SD_SCHEDULER))
    pipe.save_pretrained(tmp_path)
    tiny_vae().save_pretrained(tmp_path / "vae", safe_serialization=False)
    (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(S4SError, match="vae has only pickled .bin weights"):
        check_diffusers(Ref(tmp_path))
