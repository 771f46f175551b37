#!/usr/bin/env python3
"""Writes parity_strings.json: the texts the tokenizer parity tests encode with both deltatune and
Hugging Face tokenizers. Deterministic (fixed seed); rerun after editing and commit the output.

    python3 tests/tokenizer/data/make_parity_strings.py
"""
import json
import pathlib
import random

HAND_CASES = [
    "", "Hello world", "Hello, world!", "The quick brown fox jumps over the lazy dog.",
    "It was the best of times, it was the worst of times.",
    "  leading spaces", "trailing spaces   ", "multiple   spaces   inside",
    "Mr. O'Neil's dog's bone", "DON'T", "we'Ll", "I'M HERE", "they'RE", "it's", "'s'", "You'VE'D'LL",
    "don't stop", "'twas", "rock 'n' roll",
    # code
    "def add(a, b):\n    return a + b\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += x[i];\n}\n",
    '{"key": [1, 2, 3], "nested": {"a": null}}',
    "#include <vector>\nint main() { return 0; }",
    "if x == 1:\n\tpass\nelif y:\n        print('y')",
    "$ ls -la | grep '^d' && echo \"done\" > /tmp/out.txt 2>&1",
    "SELECT * FROM users WHERE id = 42;",
    "<div class=\"main\"><p>Hi &amp; bye</p></div>",
    "x = [i**2 for i in range(10) if i % 2 == 0]",
    "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
    # newlines
    "line1\r\nline2\r\n\r\nline4", "a \r\n b", "\r\r\n\n", "\n\n\n", "a\n\n\nb", "end\n", "\n start", " \n \n ",
    "tab\tseparated\tvalues\n1\t2\t3", "\t\t\tindent", "mixed \t \t whitespace",
    # CJK and other scripts
    "你好，世界！", "我爱自然语言处理。", "日本語のテキストです。カタカナとひらがな。", "한국어 텍스트입니다.",
    "中文English混合text测试", "Привет, мир!", "Γειά σου Κόσμε", "مرحبا بالعالم", "שלום עולם",
    "नमस्ते दुनिया", "สวัสดีชาวโลก", "Tiếng Việt có dấu", "Ça va? Où est l'hôtel?", "Zürich Straße",
    # emoji
    "👍", "👍🏽", "👨‍👩‍👧‍👦", "🇺🇸🇯🇵🇩🇪", "❤️", "1️⃣", "🏳️‍🌈", "I ❤️ 🍕 and 🍣!", "🧑🏿‍💻 codes",
    "emoji🙂inside", "😀😃😄😁😆😅🤣😂",
    # combining marks and NFC-sensitive text
    "e\u0301", "cafe\u0301", "caf\u00e9", "A\u030a", "\u212b", "a\u0308\u0304", "\u1100\u1161\u11a8",
    "\u1112\u1161\u11ab\u1100\u1173\u11af", "o\u0323\u0302", "n\u0303o\u0303", "\u0301leading mark",
    "x\u0300\u0301\u0302\u0303\u0304", "\u0915\u094d\u0937", "\u0627\u064e\u0644\u0652",
    "\ufb01 ligature", "\u00bd \u00b2 \u2460", "\u2126 ohm",
    # digits
    "1234567890123456789", "3.14159265358979", "1,000,000", "2024-01-15T12:30:00Z", "v1.2.3",
    "\u0663\u0664\u0665", "\uff11\uff12\uff13", "0x1F 0b1010", "12ab34cd", "$100.00 and 50%",
    # special tokens inside text
    "<|im_start|>user\nhi<|im_end|>", "<think>x</think>", "<|endoftext|>", "a<|im_end|>b",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<think>\n\n</think>\n\nAnswer", "<|im_start|><|im_start|>", "<|im_end", "|im_end|>", "<<|im_end|>>",
    "<tool_call>{\"a\":1}</tool_call>", "text <|endoftext|> more",
    # unusual whitespace and controls
    "a\u00a0b", "a\u3000b", "a\u2028b", "a\u0085b", "a\u180eb", "a\u200bb", "a\u2009b", "\u00a0\u00a0x",
    "nul\u0000byte", "bell\u0007", "del\u007f", "\u000b\u000cvt ff", "\ufeffbom",
    "x" * 300, " ".join(["word"] * 200), "ab" * 150,
]

POOLS = [
    "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " ", "  \t\n\r",
    ".,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`", "你好世界中文字", "ひらがなカタカナ", "한국어", "éèêëçàüöñß",
    "\u0301\u0308\u0323", "👍🏽🇺🇸❤️\u200d🙂", "\u00a0\u3000\u2028",
]


def whitespace_cases():
    out = []
    for n in range(1, 41):
        out.append(" " * n + "x")
        out.append("x" + "\t" * n + "y")
        out.append("a" + (" \t" * n)[:n] + "b")
        if n % 4 == 0:
            out.append("x" + " " * n)
            out.append("x" + " " * n + "\n" + " " * (n // 2) + "y")
    return out


def random_cases(rng, count):
    out = []
    for _ in range(count):
        length = rng.randint(1, 60)
        pools = rng.sample(POOLS, rng.randint(1, 4))
        out.append("".join(rng.choice(rng.choice(pools)) for _ in range(length)))
    return out


INVALID_UTF8_HEX = [
    "ff", "c0af", "e282", "eda080", "f4908080", "f09f98", "80", "41c3", "41c342", "e0808041", "f8888080",
    "fe", "c2", "48656c6c6fff776f726c64", "e4bda0e5a5bd" + "e5", "3c7c696d5f656e647c3eff", "2020ff2020",
    "efbbbf41", "f09f988041", "c0c1f5ff", "edbfbf", "f0908080",
]


def main():
    rng = random.Random(20240607)
    strings = HAND_CASES + whitespace_cases() + random_cases(rng, 120)
    long_text = " ".join(rng.choice(HAND_CASES[2:60]) for _ in range(120))
    strings.append(long_text)
    path = pathlib.Path(__file__).with_name("parity_strings.json")
    payload = {"strings": strings, "invalid_utf8_hex": INVALID_UTF8_HEX}
    path.write_text(json.dumps(payload, ensure_ascii=True, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {len(strings)} strings and {len(INVALID_UTF8_HEX)} invalid UTF-8 cases to {path}")


if __name__ == "__main__":
    main()
