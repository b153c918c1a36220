"""Item text as the papers embed it: field order, skipped fields, every dataset with text."""

import json
import os

import numpy as np
import pytest

from recsys_core import item_text
from recsys_core import readers
from recsys_core import synthetic
from recsys_core.dataset import Dataset


def _dataset(text):
  n = len(next(iter(text.values()))) if text else 2
  return Dataset(name="toy", user_ids=np.array(["u"]), item_ids=np.array([f"i{k}" for k in range(n)]),
                 indptr=np.array([0, 1]), items=np.array([0], np.int32), item_text=text)


def test_format_item_orders_fields_and_skips_missing():
  values = {"title": "OPI Nail  Lacquer", "brand": None, "categories": "Beauty, Nails",
            "price": "12", "salesrank": "3", "extra": "  "}
  assert (item_text.format_item(values, ("title", "brand", "categories", "price"))
          == "title: OPI Nail Lacquer; categories: Beauty, Nails; price: 12")
  assert item_text.format_item(values, ("price", "title"), sep=" | ") == "price: 12 | title: OPI Nail Lacquer"
  assert item_text.format_item(values, ("title",), lowercase=True) == "title: opi nail lacquer"
  assert item_text.format_item(values, ("brand", "extra")) == ""


def test_ace_official_template_is_the_ace_codes_string():
  # DCheol/ACE preprocess/utils/text.py: f"The {dataset} item has the following attributes: \n "
  # + "; ".join("name: value") + ";" over every non-empty field, in file order.
  ds = Dataset(name="amazon_beauty", user_ids=np.array(["u"]), item_ids=np.array(["a", "b", "c"]),
               indptr=np.array([0, 1]), items=np.array([0], np.int32),
               item_text={"title": ["OPI  Nail", "Balm", None], "brand": ["OPI", "", None],
                          "salesrank": ["3", "9", None]})
  texts = item_text.item_texts(ds, template="ace_official")
  assert texts == ["The beauty item has the following attributes: \n title: OPI Nail; brand: OPI; "
                   "salesrank: 3;",
                   "The beauty item has the following attributes: \n title: Balm; salesrank: 9;",
                   "The beauty item has no available attributes."]
  assert item_text.item_texts(ds, ("brand",), template="ace_official")[0] == (
      "The beauty item has the following attributes: \n brand: OPI;")
  with pytest.raises(ValueError, match="config.text_template='ace'"):
    item_text.item_texts(ds, template="ace")


def test_synthetic_items_have_title_brand_categories():
  ds = synthetic.make_synthetic()
  texts = item_text.item_texts(ds)
  assert len(texts) == ds.num_items
  t = ds.item_text
  assert texts[7] == (f"title: {t['title'][7]}; brand: {t['brand'][7]}; "
                      f"categories: {t['categories'][7]}")
  assert all(s.startswith("title: ") and "; categories: Synthetic, " in s for s in texts)


def test_configured_fields_and_errors():
  ds = _dataset({"title": ["a", None], "brand": ["b", "c"]})
  assert item_text.item_texts(ds, ("brand", "title")) == ["brand: b; title: a", "brand: c"]
  with pytest.raises(ValueError, match="no item field 'price'.*title, brand"):
    item_text.item_texts(ds, ("price",))
  with pytest.raises(ValueError, match="has no item text"):
    item_text.item_texts(_dataset({}))
  with pytest.raises(ValueError, match="none of the default"):
    item_text.item_texts(_dataset({"url": ["x", "y"]}))


def test_real_datasets(data_dir):
  beauty = readers.load_dataset("amazon_beauty", data_dir)
  texts = item_text.item_texts(beauty)
  with open(os.path.join(data_dir, "amazon_beauty", "items.jsonl")) as f:
    first = json.loads(f.readline())
  j = list(beauty.item_ids).index(first["asin"])
  expected = (f"title: {first['title']}; brand: {first['brand']}; "
              f"categories: {', '.join(first['categories'])}; price: {first['price']:g}")
  assert texts[j] == expected
  assert all(t.startswith("title: ") for t in texts)

  toys = item_text.item_texts(readers.load_dataset("amazon_toys", data_dir))
  assert all(t.startswith("title: ") and "; categories: " in t for t in toys)
  assert sum("; categories: Toys & Games" in t for t in toys) > 0.99 * len(toys)
  assert not any("brand:" in t for t in toys)

  ml = readers.load_dataset("ml-100k", data_dir)
  assert item_text.item_texts(ml)[0] == "title: Toy Story; year: 1995; genres: Animation, Children's, Comedy"
  lastfm = readers.load_dataset("lastfm", data_dir)
  names = item_text.item_texts(lastfm)
  assert names[list(lastfm.item_ids).index("2")] == "title: Diary of Dreams"
  assert all(n.startswith("title: ") and "http" not in n for n in names)
  with pytest.raises(ValueError, match="amazon_sports.*no item text"):
    item_text.item_texts(readers.load_dataset("amazon_sports", data_dir))


@pytest.mark.slow
def test_ml1m_titles_and_genres(data_dir):
  texts = item_text.item_texts(readers.load_dataset("ml-1m", data_dir))
  assert texts[0] == "title: Toy Story; year: 1995; genres: Animation, Children's, Comedy"
