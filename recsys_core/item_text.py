"""The text of an item as the papers embed it: `title: ...; brand: ...; categories: a, b, c; price: ...`.

Templates (`item_texts(template=...)`):
  "fields"        `title: X; brand: Y; ...` over the chosen fields (GRAM's prompts, our ACE runs).
  "ace_official"  the ACE code's (DCheol/ACE preprocess/utils/text.py): "The beauty item has the
                  following attributes: \n title: X; brand: Y; ...;" over every field of the
                  item file (here: every field the reader has, in its order), empty fields skipped,
                  the dataset named by its lowercase folder name ("beauty", "toys", "ml-1m").

GRAM's fine prompts and ACE's embeddings both describe an item by its labelled metadata fields in a
fixed order. The readers (`recsys_core/readers.py`) expose every dataset's fields under standard names
(`title`, `brand`, `categories`, `price`, `year`, `genres`; lastfm's artist `name` is its `title`);
this module only chooses and formats them.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

from recsys_core.dataset import Dataset
from recsys_core.errors import ConfigError

# Default field order: the papers' Amazon order, then the MovieLens fields. A dataset uses the
# fields of this list it has (beauty: title, brand, categories, price; toys: title, categories;
# ml-1m / ml-100k: title, year, genres; lastfm: title = the artist name; synthetic: title, brand,
# categories). Other fields (salesrank, lastfm urls) are left out unless asked for.
DEFAULT_FIELDS = ("title", "brand", "categories", "price", "year", "genres")


def format_item(values: Mapping[str, Optional[str]], fields: Sequence[str], sep: str = "; ",
                lowercase: bool = False) -> str:
  """`"title: X; brand: Y"` from `values` (field -> text or None), in the order of `fields`.

  Missing, None or blank fields are skipped; an item without any is the empty string.
  """
  parts = []
  for field in fields:
    value = values.get(field)
    if value is not None and value.strip():
      parts.append(f"{field}: {' '.join(value.split())}")
  text = sep.join(parts)
  return text.lower() if lowercase else text


def dataset_fields(ds: Dataset, fields: Sequence[str] = ()) -> tuple[str, ...]:
  """The fields to embed: `fields` if given (each must exist in `ds`), else the DEFAULT_FIELDS
  that `ds` has. Raises a one-line ValueError when the dataset has no usable text."""
  available = tuple(ds.item_text)
  if not available:
    raise ConfigError(f"dataset {ds.name!r} has no item text (its folder lacks an item-metadata "
                     f"file); embeddings need one of: amazon_beauty, amazon_toys, ml-1m, ml-100k, "
                     f"lastfm, synthetic")
  if fields:
    unknown = [f for f in fields if f not in ds.item_text]
    if unknown:
      raise ConfigError(f"dataset {ds.name!r} has no item field {unknown[0]!r} (config "
                       f"text_fields); it has: {', '.join(available)}")
    return tuple(fields)
  chosen = tuple(f for f in DEFAULT_FIELDS if f in ds.item_text)
  if not chosen:
    raise ConfigError(f"dataset {ds.name!r} has none of the default text fields "
                     f"{DEFAULT_FIELDS}; set config text_fields from: {', '.join(available)}")
  return chosen


TEMPLATES = ("fields", "ace_official")


def ace_official_label(dataset_name: str) -> str:
  """The dataset's name in the ACE code's text: its folder name there ("amazon_beauty" -> "beauty")."""
  return dataset_name.removeprefix("amazon_")


def format_ace_official(values: Mapping[str, Optional[str]], fields: Sequence[str], label: str
                        ) -> str:
  """The ACE code's item text over `fields` (see the module docstring)."""
  parts = [f"{field}: {' '.join(values[field].split())}" for field in fields
           if values.get(field) is not None and values[field].strip()]
  if not parts:
    return f"The {label} item has no available attributes."
  return f"The {label} item has the following attributes: \n " + "; ".join(parts) + ";"


def item_texts(ds: Dataset, fields: Sequence[str] = (), sep: str = "; ",
               lowercase: bool = False, template: str = "fields") -> list[str]:
  """[num_items] text of every item of `ds`, index = dense item id (see `format_item`; template
  "ace_official": `format_ace_official` over `fields` or, when none are given, every field)."""
  if template not in TEMPLATES:
    raise ConfigError(f"config.text_template={template!r}: use one of {', '.join(TEMPLATES)}")
  if template == "ace_official":
    fields = dataset_fields(ds, fields or tuple(ds.item_text))
    label = ace_official_label(ds.name)
    return [format_ace_official({f: ds.item_text[f][i] for f in fields}, fields, label)
            for i in range(ds.num_items)]
  fields = dataset_fields(ds, fields)
  columns = {f: ds.item_text[f] for f in fields}
  return [format_item({f: col[i] for f, col in columns.items()}, fields, sep, lowercase)
          for i in range(ds.num_items)]
