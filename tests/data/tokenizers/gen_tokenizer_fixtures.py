#!/usr/bin/env python3
# gen_tokenizer_fixtures.py — trains small tokenizer.json files with Hugging Face `tokenizers` and writes the ids
# and decodes `tokenizers` gives for a torture corpus; tst_tokenizer_json compares the engine with them.
#
# Run from this directory with the pyenv python3 that has tokenizers 0.23.3:
#     python3 gen_tokenizer_fixtures.py [SMOLLM2_TOKENIZER_DIR] [STORIES260K_DIR]
# Defaults: ../../../../shared/models/smollm2-135m-instruct/hf-tokenizer and ../../../../shared/models/stories260K.
# Writes: train_corpus.txt, corpus.json, <name>/tokenizer.json (+ tokenizer_config.json), expected.json,
# stories260k_vocab.json (the SentencePiece pieces of stories260K's tokenizer.model, as a GGUF file carries them).
import json
import os
import random
import struct
import sys

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import trainers

HERE = os.path.dirname(os.path.abspath(__file__))
SMOLLM2 = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../../../shared/models/smollm2-135m-instruct/hf-tokenizer")
STORIES = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "../../../../shared/models/stories260K")

# Pre-tokenizer regexes as the models' own tokenizer.json files carry them (llama.cpp src/llama-vocab.cpp comments).
LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
TEKKEN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?"
          r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")

assert tokenizers.__version__ == "0.23.3", "expected tokenizers 0.23.3, got " + tokenizers.__version__


def train_corpus():
    rnd = random.Random(1234)
    words = ("the quick brown fox jumps over lazy dog once upon a time there was little mouse named Pip who lived in "
             "lighthouse by sea she liked to read books about ships stars and storms tokenizer merges bytes unicode "
             "Hello World Python function return value number 1234 2025 3.14 don't can't I'm you're he's we'll "
             "they've she'd IT'S WON'T Straße café naïve résumé façade 你好 世界 日本語 テキスト 한국어 Привет мир "
             "Γειά σου κόσμε مرحبا שלום नमस्ते 😀 👍 🎉").split()
    lines = []
    for i in range(6000):
        n = rnd.randint(3, 14)
        w = [rnd.choice(words) for _ in range(n)]
        if rnd.random() < 0.3:
            w[0] = w[0].capitalize()
        line = " ".join(w)
        r = rnd.random()
        if r < 0.1:
            line += "."
        elif r < 0.15:
            line = "    " + line + ":"
        elif r < 0.2:
            line = "def f_%d(x):\n\treturn x * %d  # %s" % (i, rnd.randint(0, 99999), line)
        elif r < 0.25:
            line += "\r\n"
        lines.append(line)
    text = "\n".join(lines) + "\n"
    with open(os.path.join(HERE, "train_corpus.txt"), "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return text.splitlines(keepends=True)


CATEGORY_SAMPLES = [
    "A", "\u03a9", "a", "\u00df", "\u01c5", "\u02b0", "\u4e2d", "\u05d0", "e\u0301", "\u0915\u0903", "a\u20dd",
    "\u0663", "\u216b", "\u00bd", "_", "\u203f", "\u2014", "(", "\u300c", ")", "\u00ab", "\u00bb", "!", "\u3002",
    "+", "\u2211", "$", "\u20ac", "^", "\u02dc", "\u00a9", "\u2603", " ", "\u3000", "\u2028", "\u2029", "\x01",
    "\x7f", "\u200b", "\u00ad", "\ue000", "\u0378", "\U000f0000", "\U0001d400", "\u0130", "\u0131", "\u1e9e",
    "\ufb01", "\u2126", "\u212b", "\u00c5", "\uff21", "\u2460",
]
SPECIAL_WRITTEN = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>", "<s>",
                   "</s>", "<unk>", "[INST]", "[/INST]"]


def torture_corpus(added_contents):
    c = [
        "", " ", "   ", "\n", "\t", "\r\n", "a", "Hello, World!", "hello world", "HELLO WORLD",
        "Once upon a time, there was a little mouse named Pip.",
        "  leading spaces", "trailing spaces   ", "   both   ", " x", "x ", "\n\nnewlines first", "end\n\n",
        " ".join(CATEGORY_SAMPLES), "".join(CATEGORY_SAMPLES),
        "Emoji: 👍🏽 👍🏿 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇫🇷🇯🇵 😀😃😄 🧑🏾‍💻 ✌️",
        "你好，世界！日本語のテキスト。한국어 텍스트 中文字符串没有空格",
        "e\u0301 \u00e9 n\u0303 \u00f1 A\u030a \u212b \u00c5 \u1e31\u031f a\u0300\u0301\u0302\u0303\u0304 \u0915\u093f",
        "a\u00a0b\u2009c\u202fd\u3000e\u2002f\u205fg\u1680h\u200ai\u2007j\u2008k\u0085l\u000bm\u000cn",
        "\u00a0 leading nbsp", "trailing nbsp\u00a0", "\u3000\u3000ideographic",
        "\r\n\r\n\r\n", "line1\r\nline2\n\n\nline3\r\r\rline4", "\n \n  \n   \n", " \r\n x", "a\n\nb\r\n\r\nc",
        "\tindented\t\ttabs\t", "\t\t\t", "col1\tcol2\tcol3\n1\t2\t3",
        "12345678901234567890", "3.14159 1,000,000 -42 +7 1e-10", "\u0663\u0664\u0665 \uff10\uff11\uff12 \u2460\u2461 \u00bd\u00be",
        "year 2025, 99 bottles, 007", "0" * 40,
        "I'm you're he's she'd we'll they've don't", "I'M YOU'RE HE'S SHE'D WE'LL THEY'VE DON'T",
        "'S 'T 'RE 'VE 'M 'LL 'D", "'s 't 're 've 'm 'll 'd", "'Re 'rE 'Ll 'lL 'Ve", "'\u017f '\u017ft x'\u017f",
        "it's IT'S It'S iT's", "rock'n'roll ''quoted'' '",
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "a<|endoftext|>b", "<|im_start|><|im_end|>", "<|im_start", "im_start|>", "<|begin_of_text|>Hi there",
        "<s>[INST] hello [/INST] world</s>", "x <s> y </s> z", " <unk> ", "<<s>>",
        "def f(x):\n    return x**2  # square\n", "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
        "https://example.com/path?q=1&r=%20#frag", "C:\\Users\\pip\\file.txt", "a/b/c // comment /* x */",
        "Stra\u00dfe caf\u00e9 na\u00efve r\u00e9sum\u00e9 fa\u00e7ade \u0130stanbul \u0399\u03a3\u039f\u03a3",
        "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd \u0928\u092e\u0938\u094d\u0924\u0947",
        "supercalifragilisticexpialidocious" * 30, "\U0001f642" * 150, "x" * 3000, "ab" * 1500,
        "A" * 100 + " " + "1" * 100 + " " + "!" * 100, "\u00e9" * 500,
        "mixed\u200bzero\u200cwidth\u200djoiners\u2060", "\ufeffBOM at start", "soft\u00adhyphen",
        "    ", "\n\n\n\n\n", "!!!???...,,,", "....", "a.b.c", "x\u2028y\u2029z",
    ]
    for t in added_contents:
        c += ["a%sb" % t, " %s " % t, t, "%s%s" % (t, t), "x %s\ny" % t, "%s  z" % t.upper(), "_%s_" % t, "\u00e9%s\u00e9" % t]
    return c


INVALID_UTF8 = [b"abc\xffdef", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"a\x80\x80b", b"\xed\xa0\x80x",
                b"\xf4\x90\x80\x80", b"\xc0\xaf", b"ok \xe2\x82\xac \xe2\x82", b"\xf0\x9f\x91\x8d\xf0\x9f"]


def byte_level_bpe(regex, normalizer=None, ignore_merges=False, bos=None, specials=(), vocab_size=2000):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer is not None:
        tok.normalizer = normalizer
    if regex is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(LINES, trainer)
    if bos is not None:
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=bos + " $A", pair=bos + " $A " + bos + " $B",
                                          special_tokens=[(bos, tok.token_to_id(bos))])])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def with_json(tok, **changes):
    """The tokenizer with top-level parts of its tokenizer.json replaced."""
    d = json.loads(tok.to_str())
    d.update(changes)
    return Tokenizer.from_str(json.dumps(d))


def metaspace_split_bpe():
    """Metaspace splitting on the replacement (prepend_scheme always) with the Metaspace and ByteFallback decoders,
    as SentencePiece-converted files without a Fuse/Strip chain have it."""
    d = json.loads(metaspace_bpe(legacy=False).to_str())
    d["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    d["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "ByteFallback"}, {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                                   "split": True}]}
    d["post_processor"] = None
    return Tokenizer.from_str(json.dumps(d))


def metaspace_bpe(legacy):
    """A Llama-2/Mistral-style tokenizer.json: BPE with byte_fallback, unk <unk>, fuse_unk, BOS <s>."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    byte_tokens = ["<0x%02X>" % b for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=["<unk>", "<s>", "</s>"] + byte_tokens,
                                  limit_alphabet=120, show_progress=False)
    tok.train_from_iterator(LINES, trainer)
    d = json.loads(tok.to_str())
    # As converted Llama-2 files are: only <unk>, <s>, </s> are added tokens; the byte pieces live in the vocab.
    d["added_tokens"] = [t for t in d["added_tokens"] if t["content"] in ("<unk>", "<s>", "</s>")]
    if legacy:
        d["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                               {"type": "Replace", "pattern": {"String": " "},
                                                                "content": "\u2581"}]}
        d["pre_tokenizer"] = None
    else:
        d["normalizer"] = None
        d["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}
    d["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"},
        {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    d["post_processor"] = {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                    {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "<s>", "type_id": 1}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    d["model"]["ignore_merges"] = False
    return Tokenizer.from_str(json.dumps(d))


ADDED = []  # (content, single_word, lstrip, rstrip, normalized, special), all 32 flag combinations
for i in range(32):
    f = [(i >> k) & 1 == 1 for k in range(5)]
    ADDED.append(("[Tk%02d]" % i, f[0], f[1], f[2], f[3], f[4]))


def added_tokens_bpe():
    """Every flag combination of added tokens, over a normalizer that changes the text (NFKC + Lowercase) and a
    pipeline of the other pre-tokenizer behaviours (Split behaviours, invert, Punctuation, Digits, WhitespaceSplit)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", continuing_subword_prefix="##", end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.StripAccents(), normalizers.NFC(),
                                           normalizers.Lowercase(), normalizers.Replace(Regex("[0-9]{4,}"), "<num>"),
                                           normalizers.Strip(left=False, right=True)])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\s+"), behavior="merged_with_next"),
        pre_tokenizers.Split(Regex(r"[,;]"), behavior="merged_with_previous"),
        pre_tokenizers.Split(Regex(r"x+"), behavior="contiguous"),
        pre_tokenizers.Split("--", behavior="removed"),
        pre_tokenizers.Split(Regex(r"[a-z]{1,6}"), behavior="isolated", invert=True),
        pre_tokenizers.Punctuation(),
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.WhitespaceSplit()])
    trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=["<unk>"], continuing_subword_prefix="##",
                                  end_of_word_suffix="</w>", limit_alphabet=150, show_progress=False)
    tok.train_from_iterator(LINES, trainer)
    tok.add_tokens([AddedToken(c, single_word=s, lstrip=l, rstrip=r, normalized=n, special=sp)
                    for (c, s, l, r, n, sp) in ADDED])
    return tok


def whitespace_bpe():
    """Whitespace and Digits pre-tokenizers, NFKC and Strip normalizers, RobertaProcessing, no decoder (decode
    joins the tokens with spaces, as tokenizers does without one)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Strip(left=True, right=False)])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                 pre_tokenizers.Digits(individual_digits=True)])
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=100,
                                  show_progress=False)
    tok.train_from_iterator(LINES, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 1))
    return tok


def write_tokenizer(name, tok, config=None):
    d = os.path.join(HERE, name)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"), pretty=False)
    if config is not None:
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=1)
    # reload from the file written, so the expectations come from exactly what the engine reads
    return Tokenizer.from_file(os.path.join(d, "tokenizer.json"))


def sentencepiece_pieces(path):
    """The pieces of a SentencePiece ModelProto (sentencepiece_model.proto: ModelProto.pieces = 1,
    SentencePiece.piece = 1 string, score = 2 float, type = 3 enum) read with a minimal protobuf decoder."""
    data = open(path, "rb").read()

    def varint(b, i):
        v = s = 0
        while True:
            c = b[i]
            i += 1
            v |= (c & 0x7F) << s
            s += 7
            if c < 0x80:
                return v, i

    def fields(b):
        i = 0
        while i < len(b):
            key, i = varint(b, i)
            num, wt = key >> 3, key & 7
            if wt == 0:
                v, i = varint(b, i)
            elif wt == 1:
                v = b[i:i + 8]
                i += 8
            elif wt == 2:
                n, i = varint(b, i)
                v = b[i:i + n]
                i += n
            elif wt == 5:
                v = b[i:i + 4]
                i += 4
            else:
                raise ValueError("wire type %d" % wt)
            yield num, wt, v

    tokens, scores, types = [], [], []
    for num, wt, v in fields(data):
        if num != 1:
            continue
        piece, score, typ = "", 0.0, 1
        for n2, w2, v2 in fields(v):
            if n2 == 1:
                piece = v2.decode("utf-8")
            elif n2 == 2:
                score = struct.unpack("<f", v2)[0]
            elif n2 == 3:
                typ = v2
        tokens.append(piece)
        scores.append(score)
        types.append(typ)
    return {"tokens": tokens, "scores": scores, "token_types": types}


def expectations(tok, corpus, config=None):
    # Without a post-processor, transformers' fast Llama tokenizer (LlamaTokenizerFast.update_post_processor) adds
    # BOS/EOS as tokenizer_config.json's add_bos_token/add_eos_token say; the engine follows that rule.
    d = json.loads(tok.to_str())
    bos, eos = [], []
    if d.get("post_processor") is None and config:
        if config.get("add_bos_token"):
            bos = [tok.token_to_id(config["bos_token"])]
        if config.get("add_eos_token"):
            eos = [tok.token_to_id(config["eos_token"])]

    def enc(text):
        return bos + tok.encode(text, add_special_tokens=True).ids + eos

    cases = []
    for text in corpus:
        ids = enc(text)
        cases.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=True)})
    invalid = []
    for raw in INVALID_UTF8:
        invalid.append({"hex": raw.hex(), "ids": enc(raw.decode("utf-8", errors="replace"))})
    return {"cases": cases, "invalid_utf8": invalid}


LINES = train_corpus()


def main():
    corpus = torture_corpus([a[0] for a in ADDED[::5]] + ["[tk03]", "[TK19]"])
    with open(os.path.join(HERE, "corpus.json"), "w", encoding="utf-8") as f:
        json.dump({"texts": corpus, "invalid_utf8_hex": [b.hex() for b in INVALID_UTF8]}, f, ensure_ascii=False,
                  indent=0)
    chatml = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    toks = {
        "llama3": (byte_level_bpe(LLAMA3, ignore_merges=True, bos="<|begin_of_text|>",
                                  specials=["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]),
                   {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}),
        "qwen2": (byte_level_bpe(QWEN2, normalizer=normalizers.NFC(), specials=chatml),
                  {"bos_token": None, "eos_token": "<|im_end|>", "add_bos_token": False}),
        "tekken": (byte_level_bpe(TEKKEN, ignore_merges=True, bos="<s>", specials=["<unk>", "<s>", "</s>"]),
                   {"bos_token": "<s>", "eos_token": "</s>"}),
        "gpt2": (byte_level_bpe(None, specials=["<|endoftext|>"]),
                 {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "add_bos_token": False}),
        "metaspace": (metaspace_bpe(legacy=False), {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True}),
        "metaspace_legacy": (metaspace_bpe(legacy=True), None),
        "metaspace_split": (metaspace_split_bpe(), {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True,
                                                    "add_eos_token": True}),
        "added": (added_tokens_bpe(), {"bos_token": None, "eos_token": None, "add_bos_token": False}),
        "whitespace": (whitespace_bpe(), {"bos_token": "<s>", "eos_token": "</s>"}),
    }
    # RoBERTa-style: ByteLevel with add_prefix_space (a space before every piece that lacks one), RobertaProcessing
    toks["gpt2_prefix"] = (with_json(toks["gpt2"][0], pre_tokenizer={"type": "ByteLevel", "add_prefix_space": True,
                                                                      "trim_offsets": True, "use_regex": True},
                                     post_processor={"type": "RobertaProcessing", "sep": ["<|endoftext|>", 0],
                                                     "cls": ["<|endoftext|>", 0], "trim_offsets": True,
                                                     "add_prefix_space": True}), None)
    expected = {}
    for name, (tok, config) in toks.items():
        tok = write_tokenizer(name, tok, config)
        expected[name] = expectations(tok, corpus, config)
    smollm = Tokenizer.from_file(os.path.join(SMOLLM2, "tokenizer.json"))
    expected["smollm2"] = expectations(smollm, corpus)
    with open(os.path.join(HERE, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(HERE, "stories260k_vocab.json"), "w", encoding="utf-8") as f:
        json.dump(sentencepiece_pieces(os.path.join(STORIES, "tokenizer.model")), f, ensure_ascii=False)
    print("wrote", ", ".join(sorted(expected)), "for", len(corpus), "texts")


if __name__ == "__main__":
    main()
