"""Prompts as learning data: prompts files, embeddings files, prompt-indexed denoisers, encoding with the folder's
CLIP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from s4s_export.errors import S4SError
from s4s_export.prompts import Prompt, read_prompts, split_prompts

ROOT = Path(__file__).resolve().parents[2]


def test_prompts_files(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("# comment\na cat\n\n  a dog  \n")
    assert read_prompts(txt) == [Prompt("a cat"), Prompt("a dog")]
    jl = tmp_path / "p.jsonl"
    jl.write_text(json.dumps({"prompt": "a", "negative_prompt": "blurry"}) + "\n" + json.dumps({"prompt": "b"}) + "\n")
    assert read_prompts(jl) == [Prompt("a", "blurry"), Prompt("b")]
    jl.write_text('{"prompt": "a"}\nnot json\n')
    with pytest.raises(S4SError, match=r"p.jsonl:2 is not JSON"):
        read_prompts(jl)
    jl.write_text('{"text": "a"}\n')
    with pytest.raises(S4SError, match=r'p.jsonl:1 needs a string "prompt"'):
        read_prompts(jl)
    txt.write_text("only one\n")
    with pytest.raises(S4SError, match="has 1 prompt"):
        read_prompts(txt)


def test_split_holds_out_every_fifth():
    assert split_prompts(2) == ([0], [1])
    train, held = split_prompts(12)
    assert held == [4, 9] and sorted(train + held) == list(range(12)) and not set(train) & set(held)


pytest.importorskip("diffusers", reason="the diffusers extra is not installed")
pytest.importorskip("transformers", reason="the diffusers extra (transformers) is not installed")

from s4s_export.families.guidance import TextCond  # noqa: E402
from s4s_export.families.prompted import (  # noqa: E402
    PromptConditioned,
    PromptEmbeddings,
    load_embeddings,
    prompt_labels,
    save_embeddings,
)


def test_embeddings_file_roundtrip_and_errors(tmp_path):
    emb = PromptEmbeddings(torch.randn(3, 5, 8), torch.randn(3, 5, 8))
    back = load_embeddings(save_embeddings(tmp_path / "e.safetensors", emb))
    assert torch.equal(back.prompt_embeds, emb.prompt_embeds) and back.sha256() == emb.sha256()
    from safetensors.torch import save_file

    save_file({"embeds": torch.zeros(2, 3, 4)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(S4SError, match="it needs prompt_embeds"):
        load_embeddings(tmp_path / "bad.safetensors")
    save_file({"prompt_embeds": torch.zeros(2, 3, 4), "negative_prompt_embeds": torch.zeros(2, 3, 5)},
              str(tmp_path / "bad.safetensors"))
    with pytest.raises(S4SError, match="differs from prompt_embeds"):
        load_embeddings(tmp_path / "bad.safetensors")


def test_prompt_labels_come_from_their_split():
    labels = prompt_labels([4, 9], 50, seed=3)
    assert set(labels.tolist()) == {4, 9} and torch.equal(labels, prompt_labels([4, 9], 50, seed=3))


def test_encoding_matches_clip_and_indices_select_rows(sd):
    from transformers import CLIPTextModel, CLIPTokenizer

    from s4s_export.families.diffusers_folder import load_diffusers
    from s4s_export.families.text_encoder import encode_prompts

    prompts = [Prompt("a red cat", "blurry"), Prompt("a blue dog")]
    emb = encode_prompts(sd, prompts)
    tok = CLIPTokenizer.from_pretrained(sd / "tokenizer")
    enc = CLIPTextModel.from_pretrained(sd / "text_encoder")
    with torch.no_grad():  # SD's conditioning: the last hidden state over max-length padded ids (docs/models.md)
        ids = tok(["a red cat", "a blue dog"], padding="max_length", max_length=tok.model_max_length,
                  truncation=True, return_tensors="pt").input_ids
        ref = enc(ids).last_hidden_state
        neg = enc(tok(["blurry", ""], padding="max_length", max_length=tok.model_max_length, truncation=True,
                      return_tensors="pt").input_ids).last_hidden_state
    torch.testing.assert_close(emb.prompt_embeds, ref)
    torch.testing.assert_close(emb.negative_prompt_embeds, neg)

    class Ref:
        target, checkpoint, random_weights, config = str(sd), None, False, None

    model = load_diffusers(Ref(), guidance_scale=3.0)
    wrapped = PromptConditioned(model, emb)
    assert wrapped.identity() == model.identity() and wrapped.decoder is model.decoder
    x, sigma = torch.randn(2, 4, 16, 16), torch.tensor([1.5, 0.7])
    idx = torch.tensor([1, 0])
    with torch.no_grad():
        direct = model(x, sigma, TextCond(emb.prompt_embeds[idx], emb.negative_prompt_embeds[idx]))
        torch.testing.assert_close(wrapped(x, sigma, idx), direct)
    with pytest.raises(S4SError, match="int64 prompt indices"):
        wrapped(x, sigma, None)
