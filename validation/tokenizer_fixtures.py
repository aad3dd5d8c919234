#!/usr/bin/env python3
"""Golden data for dsv3's tokenizer, made with Hugging Face `tokenizers` (pip install -r validation/requirements.txt).

Writes tests/fixtures/tokenizer/:
  corpus.txt              training text: English (fortune files when present) and multilingual text below
  deepseek_v3/            DeepSeek-V3's pre-tokenizer, vocabulary trained by `tokenizers`, extra added tokens
                          with every flag, tokenizer_config.json with BOS/EOS
  gpt2_prefix_space/      ByteLevel with GPT-2's regex and add_prefix_space, trained without the full byte
                          alphabet (so unseen bytes are dropped, as `tokenizers` drops them)
  llama3/                 Llama-3's Split regex, ignore_merges, and vocabulary entries no merge reaches
  dsv3_trained/           trained by dsv3's BpeTrainer (through dsv3_tokenizer_tool) on corpus.txt
  expected.json           the test texts and, per tokenizer, the ids `tokenizers` gives and its decodes
  split_behaviors.json    ids for Split steps with every behaviour, invert, literal and empty-matching patterns

  python3 validation/tokenizer_fixtures.py --tool build-tokenizer/tests/data/dsv3_tokenizer_tool

With --fuzz N it writes nothing and instead compares dsv3 with `tokenizers` on N random texts per fixture.

With --unicode-table it writes lib/dsv3/data/unicode_categories.cpp instead: the general category that
`tokenizers`' regex engine (Oniguruma) gives each code point whose category differs from Unicode 14.0, the
version of PCRE2 10.42's tables (and of Python 3.11's unicodedata, which this mode requires).
"""
import argparse
import glob
import json
import os
import random
import subprocess
import sys
import tempfile
import unicodedata

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "tokenizer")

BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"

# DeepSeek-V3's tokenizer.json pre_tokenizer (shared/REFERENCE.md §5).
DEEPSEEK_SPLITS = [
    r"\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
]
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")

MULTILINGUAL = """深度求索（DeepSeek）发布了新的大语言模型，参数规模达到六千七百亿。我们在数学、代码和推理任务上进行了评测。
人工智能正在改变世界，机器学习、深度学习和自然语言处理是其中最重要的方向。今天天气很好，我们去公园散步吧。
東京は日本の首都です。カタカナとひらがなを混ぜた文章：コンピューターはとても便利です！私は毎朝コーヒーを飲みます。
ソフトウェアエンジニアはプログラムを書きます。さくらの花がきれいに咲いています。ありがとうございました。
안녕하세요, 세계! 한국어 텍스트입니다. 오늘은 날씨가 좋습니다. 저는 학생입니다.
Привет, мир! Это пример текста на русском языке. Москва — столица России. Съешь же ещё этих мягких французских булок.
Γειά σου Κόσμε! Η γλώσσα είναι ελληνική. Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.
مرحبا بالعالم! هذه جملة باللغة العربية. الذكاء الاصطناعي يغير العالم.
שלום עולם! זהו משפט בעברית. नमस्ते दुनिया! यह हिंदी में एक वाक्य है। สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่างระหว่างคำ
Ça va ? Naïve café, résumé, crème brûlée, Æsir, Øresund, Straße, İstanbul, señor, São Paulo, Zürich, Łódź, Dvořák.
Emoji: 😀 😃 😄 👍 👍🏽 ❤️ 🎉 🚀 👩‍💻 👨‍👩‍👧 🇫🇷 🇯🇵 ✅ ☕ 🌍
Code: def fib(n):\n\treturn n if n < 2 else fib(n - 1) + fib(n - 2)\nfor (int i = 0; i < 10; ++i) { sum += a[i] * b[i]; }
Math: ∑_{i=1}^{n} x_i² ≤ ∞, α + β = γ, √2 ≈ 1.41421356, 3.14159265358979, 2024-06-01, 10:30:45, 1,234,567.89.
"""

# Texts rich in what tokenizers get wrong: scripts, kana, accents (precomposed and combining), emoji with
# ZWJ sequences, skin tones and flags, digit runs, tabs, CR/LF, long whitespace runs, Unicode spaces, control
# characters, and added/special tokens inside text.
TEST_TEXTS = [
    "",
    " ",
    "\n",
    "Hello, world! It's 2024-06-01T12:34:56Z; pi is 3.14159265358979 and 1234567890123 has 13 digits.",
    "深度求索（DeepSeek）发布了新的大语言模型，参数规模达到6710亿。中文English混合123テスト",
    "東京は日本の首都です。カタカナとひらがな：コンピューターはとても便利です！ﾊﾝｶｸｶﾀｶﾅも。ゟ゠ヿ",
    "안녕하세요, 세계! Привет, мир! Γειά σου Κόσμε! مرحبا بالعالم! שלום עולם! नमस्ते दुनिया! สวัสดีชาวโลก",
    "Ça va? Naïve café, résumé, Æsir, Øresund, Straße, İstanbul, ǅemal, e\u0301 combining, n\u0303, a\u030a\u0301.",
    "👩‍👩‍👧‍👦 family, 👨🏽‍💻 coder, 🏳️‍🌈 flag, ❤️ heart, 👍🏿 thumbs, 🇯🇵🇫🇷 flags, 😀😃😄, 🫠 melting, \U0001F9D1\u200D\U0001F680",
    "line1\r\nline2\n\n\tindented\t\ttabs   \n    four spaces\r\r\n\n\n",
    " " * 40 + "x" + "\n" * 5 + "\t" * 7 + " \t \n " * 4 + "end" + " " * 17,
    "nbsp\u00a0here, ideographic\u3000space, line\u2028separator, para\u2029sep, mvs\u180emongolian, zw\u200bsp, "
    "nel\u0085next, thin\u2009space, ogham\u1680space, bom\ufeffmark",
    "controls: \x00\x01\x02\x07\x08\x0b\x0c\x1b\x1f\x7f\x80\x9f end",
    "digits: 1 12 123 1234 12345 123456 1234567 ١٢٣٤٥٦٧ ²³¹ ⅫⅣ ①②③ ０１２３４５ 𝟙𝟚𝟛 3.14 -42 1e10 0x1F",
    "I'm, you're, they've, she'll, he'd, it's, IT'S, WE'LL, O'Neil's, ſ 'ſ 'S 'K",
    "∑_{i=1}^{n} x_i² ≤ ∞ — “quotes” ‘single’ «guillemets» … ©®™ § ¶ † ‡ • ‰ ′ ″ ‹› ¿¡",
    "def f(x):\n    return x**2 + 3*x - 1  # comment\nif (a && b || !c) { printf(\"%d\\n\", a[i]); }\n",
    "<html><body class=\"main\">&amp; &lt;tag&gt;</body></html> https://example.com/path?q=1&r=2#frag user@mail.org",
    BOS + "Document with special tokens." + EOS + PAD + PAD,
    "<｜User｜>What is 2+2?<｜Assistant｜>4" + EOS + "<｜User｜>x<｜User｜><｜User｜>",
    "a <lstrip> b\u3000\u3000<lstrip>c   <rstrip>   d <rstrip>\t\ne",
    "word<word>word, word <word> word, <word>, _<word>_, é<word>, ²<word>², 1<word>",
    "say hello world and hello worldly and HELLO WORLD" + "hello world",
    "<｜fim▁begin｜>def main():<｜fim▁hole｜>\n    pass<｜fim▁end｜>",
    "text ending with a partial special <｜begin▁of▁sen and <｜User｜",
    "Ġ Ċ ĉ ā Ā ł Ń ð ÿ are byte-level characters written as text",
    "wonderfulness zzzyxq Ġwonderfulness ĠĠĠ",
    # Newer than PCRE2 10.42's Unicode 14 tables: Unicode 15 emoji and CJK Extension H, Unicode 16 arrows,
    # Egyptian hieroglyphs, Garay letters and digits.
    "new: 🫨 🩷 🪿 \U0001F8B2 x\U0001F8B2 \U00031350<word> \U000134D5<word> \U00010D50\U00010D70 \U00010D40\U00010D41 \u1C89\u1C8A",
]


def deepseek_pre_tokenizer():
    steps = [pre_tokenizers.Split(Regex(p), behavior="isolated", invert=False) for p in DEEPSEEK_SPLITS]
    return pre_tokenizers.Sequence(steps + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


def read_corpus_documents(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in f.read().split("\0") if d]


def make_corpus(path):
    """English from the fortune files (first documents of each, deterministic) plus the multilingual text."""
    documents = []
    for name in sorted(glob.glob("/usr/share/games/fortunes/*.u8")):
        with open(name, encoding="utf-8", errors="replace") as f:
            entries = [e.strip("\n") for e in f.read().split("\n%\n") if e.strip()]
        documents.extend(entries[:40])
    if not documents:
        sys.exit("no /usr/share/games/fortunes/*.u8 (Debian: apt-get install fortunes) and no committed corpus.txt")
    documents.extend(MULTILINGUAL.split("\n") * 6)
    random.Random(0).shuffle(documents)
    text, size = [], 0
    for d in documents:
        if size > 150_000:
            break
        text.append(d)
        size += len(d.encode("utf-8"))
    with open(path, "w", encoding="utf-8") as f:
        f.write("\0".join(text))


def train_hf(pre_tokenizer, documents, vocab_size, full_alphabet, special_tokens):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=special_tokens,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if full_alphabet else [],
                                  show_progress=False)
    tokenizer.train_from_iterator(documents, trainer)
    return tokenizer


def save(tokenizer, name, config=None):
    directory = os.path.join(FIXTURES, name)
    os.makedirs(directory, exist_ok=True)
    tokenizer.save(os.path.join(directory, "tokenizer.json"), pretty=False)
    if config is not None:
        with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False, indent=1)
    return os.path.join(directory, "tokenizer.json")


def build_deepseek(documents):
    tokenizer = train_hf(deepseek_pre_tokenizer(), documents, 2048, True, [BOS, EOS, PAD])
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in
                                  ["<｜User｜>", "<｜Assistant｜>", "<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>"]])
    tokenizer.add_special_tokens([AddedToken("<lstrip>", lstrip=True, normalized=False, special=True)])
    tokenizer.add_tokens([AddedToken("<rstrip>", rstrip=True), AddedToken("<word>", single_word=True),
                          AddedToken("hello world"), AddedToken("<｜User｜>x")])
    # DeepSeek's tokenizer_config.json writes BOS/EOS as AddedToken objects.
    config = {"add_bos_token": True, "add_eos_token": False, "tokenizer_class": "LlamaTokenizerFast"}
    for key, content in [("bos_token", BOS), ("eos_token", EOS), ("pad_token", PAD)]:
        config[key] = {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True,
                       "rstrip": False, "single_word": False}
    return save(tokenizer, "deepseek_v3", config)


def build_gpt2_prefix_space(documents):
    pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tokenizer = train_hf(pre_tokenizer, documents, 1024, False, ["<|endoftext|>"])
    return save(tokenizer, "gpt2_prefix_space", {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"})


def build_llama3(documents):
    pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer = train_hf(pre_tokenizer, documents, 1536, True, ["<|begin_of_text|>", "<|end_of_text|>"])
    definition = json.loads(tokenizer.to_str())
    # Whole words in the vocabulary that no merge sequence builds: only ignore_merges finds them.
    vocab = definition["model"]["vocab"]
    for word in ["wonderfulness", "Ġwonderfulness", "zzzyxq", "ĠĠĠ"]:
        vocab.setdefault(word, max(vocab.values()) + 1)
    definition["model"]["ignore_merges"] = True
    return save(Tokenizer.from_str(json.dumps(definition)), "llama3")


def run_tool(tool, *args):
    return subprocess.run([tool, *args], check=True, capture_output=True, text=True).stdout


def build_dsv3_trained(tool, corpus_path):
    directory = os.path.join(FIXTURES, "dsv3_trained")
    print(run_tool(tool, "train", directory, "1024", "deepseek_v3", corpus_path), end="")
    path = os.path.join(directory, "tokenizer.json")
    Tokenizer.from_file(path)  # `tokenizers` must load what dsv3 writes
    return path


def expectations(path, texts):
    tokenizer = Tokenizer.from_file(path)
    ids = [tokenizer.encode(t, add_special_tokens=False).ids for t in texts]
    config = os.path.join(os.path.dirname(path), "tokenizer_config.json")
    bos = eos = None
    if os.path.exists(config):
        with open(config, encoding="utf-8") as f:
            c = json.load(f)
        content = lambda v: v["content"] if isinstance(v, dict) else v
        bos, eos = tokenizer.token_to_id(content(c["bos_token"])), tokenizer.token_to_id(content(c["eos_token"]))
    return {"ids": ids,
            "decoded": [tokenizer.decode(i, skip_special_tokens=False) for i in ids],
            "decoded_skip_special": [tokenizer.decode(i, skip_special_tokens=True) for i in ids],
            "vocab_size": max(tokenizer.get_vocab().values()) + 1,
            "bos_id": bos, "eos_id": eos}


def split_behaviors(base_path):
    """A tokenizer.json per Split configuration, on the deepseek_v3 vocabulary; ids for a few texts each."""
    with open(base_path, encoding="utf-8") as f:
        base = json.load(f)
    patterns = [{"Regex": r"\p{N}+"}, {"Regex": r"\s"}, {"Regex": "x*"}, {"Regex": r"(?=a)"},
                {"String": "ab"}, {"String": "."}, {"Regex": r"^|$"}]
    texts = ["", "a", "x", "abc 123 ab 45xx6", "  leading and trailing  ", "xxaxxbxx", "ab.ab..a.b", "line1\nline2\n",
             "12ab34ab", "aaa bbb aaa"]
    cases = []
    for pattern in patterns:
        for behavior in ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"]:
            for invert in [False, True]:
                definition = dict(base)
                definition["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
                    {"type": "Split", "pattern": pattern, "behavior": behavior, "invert": invert},
                    {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": False}]}
                tokenizer = Tokenizer.from_str(json.dumps(definition))
                cases.append({"pre_tokenizer": definition["pre_tokenizer"],
                              "ids": [tokenizer.encode(t, add_special_tokens=False).ids for t in texts]})
    return {"base": "deepseek_v3/tokenizer.json", "texts": texts, "cases": cases}


def random_text(rng, pool):
    """Pieces of the corpus and test texts, runs of (Unicode) whitespace, random code points and added tokens."""
    pieces = []
    for _ in range(rng.randint(1, 12)):
        kind = rng.random()
        if kind < 0.5:
            source = rng.choice(pool)
            start = rng.randrange(max(1, len(source)))
            pieces.append(source[start:start + rng.randint(1, 80)])
        elif kind < 0.7:
            pieces.append("".join(rng.choice(" \t\r\n\u00a0\u3000\u180e\u2028\x85") for _ in range(rng.randint(1, 6))))
        elif kind < 0.85:
            ranges = [(0x20, 0x7e), (0xa0, 0x2fff), (0x300, 0x36f), (0x3000, 0x9fff), (0xa000, 0xd7ff),
                      (0xe000, 0xffff), (0x10000, 0x3ffff), (0x1f300, 0x1faff), (0xe0000, 0x10ffff)]
            pieces.append("".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(rng.randint(1, 8))))
        else:
            pieces.append(rng.choice([BOS, EOS, "<｜User｜>", "<lstrip>", "<rstrip>", "<word>", "hello world", "'s", "'LL"]))
    return "".join(pieces)


def dsv3_encode(tool, path, texts):
    """dsv3's ids and decodes of `texts`, through dsv3_tokenizer_tool."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8", delete=False) as f:
        json.dump(texts, f, ensure_ascii=False)
    try:
        results = json.loads(run_tool(tool, "encode", path, f.name))
    finally:
        os.unlink(f.name)
    return [r["ids"] for r in results], [r["decoded"] for r in results]


def fuzz(tool, count):
    pool = read_corpus_documents(os.path.join(FIXTURES, "corpus.txt")) + TEST_TEXTS[3:]
    rng = random.Random(1234)
    texts = [random_text(rng, pool) for _ in range(count)]
    failures = 0
    for name in ["deepseek_v3", "gpt2_prefix_space", "llama3", "dsv3_trained"]:
        path = os.path.join(FIXTURES, name, "tokenizer.json")
        expected = expectations(path, texts)
        ids, decoded = dsv3_encode(tool, path, texts)
        bad = [i for i in range(len(texts)) if ids[i] != expected["ids"][i] or decoded[i] != expected["decoded"][i]]
        print(f"{name}: {len(texts) - len(bad)}/{len(texts)} identical (ids and decode)")
        for i in bad[:5]:
            print(f"  text {texts[i]!r}\n    tokenizers {expected['ids'][i]}\n    dsv3       {ids[i]}")
        failures += len(bad)
    return failures

GENERAL_CATEGORIES = ["Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi",
                      "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Co"]


def onig_categories():
    """The general category `tokenizers`' Oniguruma gives every code point (Cn when none matches)."""
    code_points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    text = "".join(map(chr, code_points))
    category = ["Cn"] * len(code_points)
    for name in GENERAL_CATEGORIES:
        matched = bytearray(b"\1") * len(text)
        for _, (start, end) in pre_tokenizers.Split(Regex(r"\p{%s}" % name), "removed").pre_tokenize_str(text):
            matched[start:end] = bytes(end - start)
        for i in range(len(text)):
            if matched[i]:
                category[i] = name
    return dict(zip(code_points, category))


def write_unicode_table():
    if unicodedata.unidata_version != "14.0.0":
        sys.exit(f"--unicode-table compares with Unicode 14.0.0 (PCRE2 10.42); this Python has "
                 f"{unicodedata.unidata_version}: run it with Python 3.11")
    ranges = []
    for code_point, category in sorted(onig_categories().items()):
        if category == unicodedata.category(chr(code_point)):
            continue
        if ranges and ranges[-1][1] == code_point - 1 and ranges[-1][2] == category:
            ranges[-1][1] = code_point
        else:
            ranges.append([code_point, code_point, category])
    rows = "\n".join(f"    {{0x{first:05X}, 0x{last:05X}, \"{category}\"}}," for first, last, category in ranges)
    path = os.path.join(ROOT, "lib", "dsv3", "data", "unicode_categories.cpp")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"""// Generated by validation/tokenizer_fixtures.py --unicode-table from `tokenizers` {tokenizers.__version__}: do not edit.
#include "dsv3/data/unicode_categories.hpp"

namespace dsv3::data::unicode {{

std::span<const CategoryRange> categories_newer_than_pcre2() {{
  static constexpr CategoryRange kRanges[] = {{
{rows}
  }};
  return kRanges;
}}

}}  // namespace dsv3::data::unicode
""")
    print(f"{path}: {len(ranges)} ranges")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tool", help="path of the built dsv3_tokenizer_tool")
    parser.add_argument("--fuzz", type=int, default=0, help="compare on this many random texts instead")
    parser.add_argument("--unicode-table", action="store_true", help="write lib/dsv3/data/unicode_categories.cpp")
    args = parser.parse_args()
    if args.unicode_table:
        write_unicode_table()
        return
    if not args.tool:
        parser.error("--tool is required")
    if args.fuzz:
        sys.exit(1 if fuzz(args.tool, args.fuzz) else 0)

    os.makedirs(FIXTURES, exist_ok=True)
    corpus_path = os.path.join(FIXTURES, "corpus.txt")
    if not os.path.exists(corpus_path):
        make_corpus(corpus_path)
    documents = read_corpus_documents(corpus_path)
    paths = {"deepseek_v3": build_deepseek(documents),
             "gpt2_prefix_space": build_gpt2_prefix_space(documents),
             "llama3": build_llama3(documents),
             "dsv3_trained": build_dsv3_trained(args.tool, corpus_path)}
    expected = {"texts": TEST_TEXTS, "tokenizers": {name: expectations(p, TEST_TEXTS) for name, p in paths.items()}}
    with open(os.path.join(FIXTURES, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False)
    with open(os.path.join(FIXTURES, "split_behaviors.json"), "w", encoding="utf-8") as f:
        json.dump(split_behaviors(paths["deepseek_v3"]), f, ensure_ascii=False)
    for name in sorted(os.listdir(FIXTURES)):
        path = os.path.join(FIXTURES, name)
        size = sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(path) for n in ns) \
            if os.path.isdir(path) else os.path.getsize(path)
        print(f"{name}: {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
