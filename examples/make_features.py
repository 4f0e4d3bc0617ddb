"""Input features per token for the clustering example: examples/features.npy (3, 20, 4).

Features (±1 flags, so their signs read well in the composite's feature strip):
0 special token ([CLS], [SEP], [PAD]), 1 punctuation, 2 short function word, 3 position in
the second half of the sentence. Run: python examples/make_features.py (numpy).
"""
import json
from pathlib import Path

import numpy as np

here = Path(__file__).parent
tokens = json.loads((here / "tokens.json").read_text())
mask = np.load(here / "attention_mask.npy")
function_words = {"a", "an", "the", "on", "in", "of", "to", "all", "every", "two", "except"}
features = np.empty((len(tokens), len(tokens[0]), 4))
for b, row in enumerate(tokens):
    n = int(mask[b].sum())
    for p, t in enumerate(row):
        flags = [t in ("[CLS]", "[SEP]", "[PAD]"), t in (".", ",", "!", "?", ";", ":"),
                 t in function_words, p >= n / 2]
        features[b, p] = [1.0 if f else -1.0 for f in flags]
np.save(here / "features.npy", features)
