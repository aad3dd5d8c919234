#!/usr/bin/env python3
"""Single-core encoding throughput of dsv3's tokenizer against Hugging Face `tokenizers`, on the same
tokenizer.json and the same documents, and a check that both give the same ids on them.

  python3 validation/tokenizer_throughput.py --tool build/release/tests/data/dsv3_tokenizer_tool

Documents: every entry of /usr/share/games/fortunes/*.u8 (English, ~2.5 MB; Debian package `fortunes`) plus
the multilingual corpus of the test fixtures, or --corpus FILE (documents separated by NUL bytes).
Tokenizer: by default `tokenizers` trains one with DeepSeek-V3's pre-tokenizer and a 32000-token vocabulary on
those documents; --tokenizer PATH uses a given tokenizer.json instead.
`tokenizers` runs encode_batch with RAYON_NUM_THREADS=1 (one core); dsv3 encodes the documents one by one on
one thread. Each side reports its best of --repeats runs.
"""
import os

os.environ["RAYON_NUM_THREADS"] = "1"  # before `tokenizers` starts its thread pool
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse
import glob
import json
import subprocess
import sys
import tempfile
import time

from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_fixtures  # noqa: E402  (the DeepSeek-V3 pre-tokenizer and the fixture corpus)


def default_documents():
    documents = []
    for name in sorted(glob.glob("/usr/share/games/fortunes/*.u8")):
        with open(name, encoding="utf-8", errors="replace") as f:
            documents.extend(e.strip("\n") for e in f.read().split("\n%\n") if e.strip())
    return documents + tokenizer_fixtures.read_corpus_documents(os.path.join(tokenizer_fixtures.FIXTURES, "corpus.txt"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tool", required=True, help="path of the built dsv3_tokenizer_tool")
    parser.add_argument("--tokenizer", help="tokenizer.json to measure (default: train a DeepSeek-style 32k one)")
    parser.add_argument("--corpus", help="documents separated by NUL bytes (default: fortunes + fixture corpus)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    if args.corpus:
        documents = tokenizer_fixtures.read_corpus_documents(args.corpus)
    else:
        documents = default_documents()
    with tempfile.TemporaryDirectory() as scratch:
        corpus_path = os.path.join(scratch, "corpus.txt")
        with open(corpus_path, "w", encoding="utf-8") as f:
            f.write("\0".join(documents))
        tokenizer_path = args.tokenizer
        if tokenizer_path is None:
            trained = tokenizer_fixtures.train_hf(tokenizer_fixtures.deepseek_pre_tokenizer(), documents, 32000, True,
                                                  [tokenizer_fixtures.BOS, tokenizer_fixtures.EOS, tokenizer_fixtures.PAD])
            tokenizer_path = os.path.join(scratch, "tokenizer.json")
            trained.save(tokenizer_path)
        tokenizer = Tokenizer.from_file(tokenizer_path)
        total_bytes = sum(len(d.encode("utf-8")) for d in documents)

        best, hf_ids = float("inf"), None
        for _ in range(args.repeats):
            start = time.perf_counter()
            encodings = tokenizer.encode_batch(documents, add_special_tokens=False)
            best = min(best, time.perf_counter() - start)
            hf_ids = [e.ids for e in encodings]
        hf_tokens = sum(len(i) for i in hf_ids)
        hf = {"seconds": best, "mb_per_s": total_bytes / best / 1e6, "tokens_per_s": hf_tokens / best}

        dsv3 = json.loads(subprocess.run([args.tool, "bench", tokenizer_path, corpus_path, str(args.repeats)],
                                         check=True, capture_output=True, text=True).stdout)
        dsv3_ids, _ = tokenizer_fixtures.dsv3_encode(args.tool, tokenizer_path, documents)

    vocab = tokenizer.get_vocab_size()
    print(f"{len(documents)} documents, {total_bytes / 1e6:.2f} MB, {hf_tokens} tokens, vocabulary {vocab}")
    print(f"tokenizers (1 thread): {hf['mb_per_s']:6.2f} MB/s  {hf['tokens_per_s'] / 1e6:6.3f} M tokens/s")
    print(f"dsv3       (1 thread): {dsv3['mb_per_s']:6.2f} MB/s  {dsv3['tokens_per_s'] / 1e6:6.3f} M tokens/s")
    print(f"dsv3 / tokenizers: {dsv3['tokens_per_s'] / hf['tokens_per_s']:.2f}x")
    mismatched = sum(a != b for a, b in zip(dsv3_ids, hf_ids))
    print(f"ids identical on {len(documents) - mismatched}/{len(documents)} documents")
    sys.exit(1 if mismatched or dsv3["tokens"] != hf_tokens else 0)


if __name__ == "__main__":
    main()
