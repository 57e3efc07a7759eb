"""SentencePiece's own encodings of a fixed, seeded set of texts, as lorad's GGUF SentencePiece
tokenizer test reads them (model/tests/spm.rs).

Usage: reference.py MODEL_FILE OUT_JSON

Writes the model's pieces (text, score, type in llama.cpp's numbering), its special ids, and
[text, ids] cases encoded by the `sentencepiece` library itself, the independent reference.
The texts hold no control-token strings (`<s>`, `[INST]`): SentencePiece spells those out, while
lorad, llama.cpp and transformers read them as the control tokens (tested on their own).
"""

import json
import random
import sys

import sentencepiece as spm

FIXED = [
    "Hello world",
    "The capital of France is Paris.",
    " leading space",
    "two  spaces and   three",
    "trailing space ",
    "line one\nline two\n\nparagraph",
    "tabs\tand\ttabs",
    "1234567890 and 3.14159",
    "naïve café déjà vu",
    "Здравствуй, мир",
    "日本語のテキスト",
    "emoji 🎉🚀 and a 👨‍👩‍👧 family",
    "def f(x):\n    return x ** 2  # square",
    '{"json": [1, 2, {"k": "v"}]}',
    "\u00a0non-breaking\u3000ideographic space",
    "a",
    " ",
    "",
]

POOL = (
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?'\"()[]{}<>-_/\\@#$%^&*+=~`|"
    "\n\t  éüñçßøåœ αβγδ абвгд 中文字符 ひらがな 한국어 🎉🙂🚀"
)


def piece_type(sp, i):
    if sp.is_unknown(i):
        return 2
    if sp.is_control(i):
        return 3
    if sp.is_unused(i):
        return 5
    if sp.is_byte(i):
        return 6
    return 1


def main():
    model, out = sys.argv[1], sys.argv[2]
    sp = spm.SentencePieceProcessor(model_file=model)
    rng = random.Random(20261205)
    texts = list(FIXED)
    for _ in range(400):
        texts.append("".join(rng.choice(POOL) for _ in range(rng.randint(1, 40))))
    fixture = {
        "pieces": [
            [sp.id_to_piece(i), sp.get_score(i), piece_type(sp, i)] for i in range(sp.get_piece_size())
        ],
        "bos": sp.bos_id(),
        "eos": sp.eos_id(),
        "unk": sp.unk_id(),
        "cases": [[t, sp.encode(t)] for t in texts],
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
