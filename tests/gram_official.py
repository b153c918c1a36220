"""A transcription of the official GRAM data rules, the independent reference of test_gram_parity.py.

Written from the logic of the official code (github.com/skleee/GRAM; read as mirrored at the first
commit of its fork zhaodong-liu/GRAM, 4988014c, whose src/ matches the authors'), not imported from
it: plain Python over the released files, no torch, no T5. Line numbers refer to those files:
  src/data/multi_task_dataset_gram.py   training examples and the prompts' strings
  src/data/test_dataset_gram.py         validation / test examples
  src/utils/indexing.py                 IDs, neighbours, item prompts
  src/processor/Collator.py             CollatorGRAM: the "split" token filter, truncation, padding
  src/utils/utils.py                    file reading
  src/runner/distributed_runner_gram.py DistributedRunnerGRAM.test_dataset_task: the candidate trie
  src/arguments.py, command/train_gram_beauty.sh: the settings (BEAUTY_ARGS below).

The official item text comes from `item_plain_text.txt`, which the released data lacks (our data
folder has items.jsonl instead); callers pass the item text, so the parity test checks how the text
is assembled into prompts, not the text itself.

What the model sees: the official collator tokenises each prompt string with T5's SentencePiece and
drops the tokens 1820 "|" and 9175 "▁|" (Collator.py L366, L297), so an ID `|▁loss|ren` reaches the
model as the pieces `▁loss ren`. `model_view` gives that text: T5's normaliser (NFKC, whitespace runs
collapsed, ends stripped), each "|" dropped with the space before it (the "▁|" piece), "▁" read as a
space. It assumes, as the authors' filter does, that T5 never merges "|" with a neighbouring character.
"""

from __future__ import annotations

import os
import re
import unicodedata
from typing import Mapping, Sequence

# command/train_gram_beauty.sh L13-34 over the defaults of src/arguments.py.
BEAUTY_ARGS = dict(
    max_his=20,                # sh L23 (arguments.py L166-171)
    his_sep=" ; ",             # arguments.py L172-177
    skip_empty_his=1,          # arguments.py L178-183
    reverse_history=1,         # arguments.py L184-189
    item_prompt="all_text",    # sh L20
    cf_model="sasrec",         # sh L21: similar_item_sasrec.txt
    top_k_similar_item=10,     # sh L7, L31
    id_linking=1,              # sh L22
    item_prompt_max_len=128,   # sh L19
    target_max_len=32,         # arguments.py L299-304
    item_id_type="split",      # sh L5, L32
    # sh L6-10, L33; item_id_path "" (arguments.py L233-235), so indexing.py L158-172 reads
    # item_generative_indexing_{hierarchical_id_type}.txt
    hierarchical_id_type="hierarchy_v1_c128_l7_len32768_split",
    # training and decoding: sh L13-16 (2 GPUs), L24-29; arguments.py L243-247, L262-270
    rec_batch_size=32, gradient_accumulation_steps=2, num_gpus=2, rec_lr=1e-3, rec_epochs=30,
    test_epoch_rec=5, clip=1.0, warmup_prop=0.05, weight_decay=0.01, adam_eps=1e-6, beam_size=50,
    length_penalty=1.0,
)
EOS = "</s>"


# --- reading (utils.py L21-28, indexing.py L216-224) -------------------------------------------

def read_lines(path: str) -> list[str]:
  """utils.py L21-28 ReadLineFromFile: every line, "\\n" stripped (nothing else)."""
  with open(path, encoding="utf-8") as f:
    return [line.rstrip("\n") for line in f]


def dict_from_lines(lines: Sequence[str]) -> dict[str, str]:
  """indexing.py L216-224 get_dict_from_lines: key = text before the first space, value = the rest."""
  out = {}
  for line in lines:
    key, value = line.split(" ", 1)
    out[key] = value
  return out


def user_sequences(folder: str, num_users: int) -> dict[str, list[str]]:
  """indexing.py L153-155: user -> chronological items; here the first num_users lines only (the
  rules below treat each user on its own)."""
  lines = read_lines(os.path.join(folder, "user_sequence.txt"))[:num_users]
  return {k: v.split() for k, v in dict_from_lines(lines).items()}


def item_lexical_ids(folder: str, args: Mapping = BEAUTY_ARGS) -> dict[str, str]:
  """indexing.py L158-172, L182: item -> its ID string `|▁tok|tok|...` (every line of the file)."""
  name = f"item_generative_indexing_{args['hierarchical_id_type']}.txt"
  return dict_from_lines(read_lines(os.path.join(folder, name)))


def similar_items(folder: str, args: Mapping = BEAUTY_ARGS) -> dict[str, list[str]]:
  """indexing.py L236-244: item -> its first top_k_similar_item neighbours (lines starting with
  "anchor" skipped)."""
  out = {}
  with open(os.path.join(folder, f"similar_item_{args['cf_model']}.txt"), encoding="utf-8") as f:
    for line in f:
      if line.startswith("anchor"):
        continue
      item, rest = line.split(" ", 1)
      out[item] = rest.split()[:args["top_k_similar_item"]]
  return out


# --- prompts ------------------------------------------------------------------------------------

def item_inputs(item2lexid: Mapping[str, str], cf_items: Mapping[str, Sequence[str]],
                item_text: Mapping[str, str], args: Mapping = BEAUTY_ARGS) -> dict[str, str]:
  """item -> fine-grained item prompt string (item_prompt "all_text", top_k > 0: indexing.py
  L185-205 -> get_dict_with_similar_items, L227-322).

  item_text: item -> its text, the stand-in for item_plain_text.txt (L246-253 keep `text.strip()`).
  L314-320: `similar items: {ids joined ", "}; {text}`, stripped (so an item without text ends in
  ";"); L209-211 (id_linking): `item: {id}; ` in front.
  """
  out = {}
  for item, desc in item_text.items():
    cf_verb = [item2lexid[s] for s in cf_items[item]]
    text = f"similar items: {', '.join(cf_verb)}; {desc.strip()}".strip()
    out[item] = f"item: {item2lexid[item]}; {text}" if args["id_linking"] else text
  return out


def _sample(user: str, history: Sequence[str], target: str, item2lexid, item2input,
            args: Mapping) -> dict:
  """One example: the history cut to the last max_his items, then most recent first
  (multi_task_dataset_gram.py L172-195; test_dataset_gram.py L105-123, L154-170), and its prompts
  (construct_sentence, L241-280: the user prompt L265-267, then the item prompts L269-270)."""
  if args["max_his"] > 0:
    history = history[-args["max_his"]:]
  history_input = [item2input[h] for h in history]
  if args["reverse_history"]:
    history_input = history_input[::-1]
  # L189-195: the user prompt's IDs are reversed whatever reverse_history says
  history_lex_id = args["his_sep"].join(item2lexid[h] for h in history[::-1])
  return {"user": user, "target": target, "history": list(history[::-1]),
          "inputs": [f"What would user purchase after {history_lex_id} ?"] + history_input,
          "output": item2lexid[target]}


def train_samples(user_seqs: Mapping[str, Sequence[str]], item2lexid, item2input,
                  args: Mapping = BEAUTY_ARGS) -> dict[tuple[str, int], dict]:
  """(user, i) -> the example predicting items[i] (multi_task_dataset_gram.py L148-202 load_train):
  items = seq[:-2] (L159), every i with a non-empty history (L160-163, skip_empty_his)."""
  out = {}
  for user, seq in user_seqs.items():
    items = seq[:-2]
    for i in range(len(items)):
      if i == 0 and args["skip_empty_his"] > 0:
        continue
      out[(user, i)] = _sample(user, items[:i], items[i], item2lexid, item2input, args)
  return out


def eval_samples(user_seqs: Mapping[str, Sequence[str]], item2lexid, item2input, which: str,
                 args: Mapping = BEAUTY_ARGS) -> dict[str, dict]:
  """user -> the validation example (test_dataset_gram.py L132-177: target seq[-2], history
  seq[:-2]; the runner validates with TestDatasetGRAM(mode="validation"), get_validloader) or the
  test example (L83-130: target seq[-1], history seq[:-1]). Every user, in file order."""
  cut = {"valid": 2, "test": 1}[which]
  return {user: _sample(user, seq[:-cut], seq[-cut], item2lexid, item2input, args)
          for user, seq in user_seqs.items()}


# --- what the model sees (Collator.py) ----------------------------------------------------------

def model_view(prompt: str) -> str:
  """The text of `prompt`'s tokens after the "split" filter (module docstring)."""
  text = " ".join(unicodedata.normalize("NFKC", prompt).split())
  return re.sub(r" ?\|", "", text).replace("\u2581", " ").strip()


def id_words(lexical_id: str) -> list[str]:
  """The tokens of an ID string after the "split" filter: its words (Collator.py L281-340
  encode_target_split for targets, L297; the runner's candidate encoding for the trie)."""
  return lexical_id.split("|")[1:]


def truncate(token_ids: Sequence[int], max_len: int, eos_id: int = 1, pad_id: int = 0) -> list[int]:
  """Collator.py L352-390 (prompts; L297-315 targets): the tokenizer's ids + EOS (T5 appends it),
  the "|" tokens dropped, the first max_len kept; if EOS is not among them the last becomes EOS
  (L379-380); padded with 0 to max_len (L382-390)."""
  ids = (list(token_ids) + [eos_id])[:max_len]
  if eos_id not in ids:
    ids[-1] = eos_id
  return ids + [pad_id] * (max_len - len(ids))


def candidate_words(item2lexid: Mapping[str, str]) -> list[tuple[str, ...]]:
  """The trie's sequences (DistributedRunnerGRAM.test_dataset_task, item_id_type "split"): every
  item of the ID file (test_dataset_gram.py L64 all_items) encoded, "|" tokens dropped, T5's EOS
  kept, behind the decoder start 0 (generation_trie.py L6-12, L38-42: a prefix trie of them)."""
  return [tuple(id_words(v)) + (EOS,) for v in item2lexid.values()]
