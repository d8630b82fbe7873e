"""The template cache: the loss from cached float16 rows equals the recomputed one within 1e-3 (relative),
and the cache is reused only for the same template and data."""

import json

import torch

from crossmodel.train.combined import combined_for_batch
from crossmodel.train.data import Example, collate, encode_examples
from crossmodel.train.facts import generate_facts
from crossmodel.train.losses import LOSSES, LossOptions
from crossmodel.train.template_cache import CACHE_JSON, TemplateCache
from crossmodel.models.prompt import PLAIN_CHAT_TEMPLATE


def encoded(tokenizer, n_authors=2):
    exs = [Example([{"role": "user", "content": r["question"]}], r["answer"]) for r in generate_facts(n_authors, 5)]
    return encode_examples(exs, tokenizer, PLAIN_CHAT_TEMPLATE, 96)


def test_cached_loss_equals_recomputed_loss(tokenizer, template, delta, tmp_path):
    enc = encoded(tokenizer)
    cache = TemplateCache.build(template, enc, tmp_path / "cache", pad_id=tokenizer.pad_token_id, batch_size=3)
    index = [7, 2, 9, 4]  # a shuffled batch spanning several shards
    batch = collate([enc[i] for i in index], index, tokenizer.pad_token_id)
    rows = cache.rows_for(batch.index)
    assert rows.dtype == torch.float16
    args = (delta, batch.input_ids, batch.attention_mask, batch.labels)
    for name in sorted(LOSSES):
        with torch.no_grad():
            live = LOSSES[name](combined_for_batch(*args, template=template),
                                combined_for_batch(*args, template=template), LossOptions(npo_beta=0.1))
            cached = LOSSES[name](combined_for_batch(*args, template_rows=lambda s, e: rows[s:e]),
                                  combined_for_batch(*args, template_rows=lambda s, e: rows[s:e]),
                                  LossOptions(npo_beta=0.1))
        assert abs(float(cached - live)) <= 1e-3 * abs(float(live)), name


def test_cache_is_reused_for_same_key_and_rebuilt_otherwise(tokenizer, template, tmp_path):
    enc = encoded(tokenizer, 1)
    path = tmp_path / "cache"
    first = TemplateCache.build(template, enc, path, pad_id=tokenizer.pad_token_id)
    stamp = (path / CACHE_JSON).stat().st_mtime_ns
    again = TemplateCache.build(template, enc, path, pad_id=tokenizer.pad_token_id)
    assert again.key == first.key and (path / CACHE_JSON).stat().st_mtime_ns == stamp
    with torch.no_grad():
        template.get_output_embeddings().weight.mul_(1.5)
    changed = TemplateCache.build(template, enc, path, pad_id=tokenizer.pad_token_id)
    assert changed.key != first.key
    assert not torch.equal(changed.rows_for([0]), first.rows_for([0]))
    other_data = TemplateCache.build(template, enc[:3], path, pad_id=tokenizer.pad_token_id)
    assert other_data.key != changed.key
    assert json.loads((path / CACHE_JSON).read_text())["dtype"] == "float16"
    assert not list(path.glob("*.pt")) and not list(path.glob("*.pkl"))
