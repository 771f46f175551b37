#include "tokenizer/bpe_trainer.h"

namespace dt {

// Written for deltatune: prose, code, chat-style questions and answers, numbers, and some text in
// other scripts, so a small tokenizer learns common English pieces without failing on the rest.
const std::string& builtin_tokenizer_corpus() {
  static const std::string kCorpus = R"CORPUS(
The morning fog lifted slowly from the river, and the town began to wake. Bakers opened their
shutters, the smell of fresh bread drifted along the narrow streets, and the first trams rattled
over the old stone bridge. Nobody in the town remembered a quieter spring. The children walked to
school in small groups, talking about the football match, the new teacher, and the strange bird
that had been nesting on the church tower since March.

Anna had lived above the bookshop for eleven years. Every day she opened the shop at nine, made a
pot of tea, and sorted the parcels that had arrived overnight. She liked the quiet hour before the
first customer, when the light came in low through the windows and the dust hung in the air like
something waiting to be written down. "A shop full of books is never empty," her father used to
say, and she had come to believe him.

In the afternoon the weather changed. Dark clouds rolled in from the west, the wind picked up, and
the rain came down so hard that the gutters overflowed. People ran for cover under the arcades. A
man with a black umbrella stopped at the window of the bookshop, read the titles for a long time,
and then stepped inside, shaking the water from his coat. He asked whether she had anything about
the history of the valley, the old mills, and the families who had built them.

Science is a way of asking questions and testing the answers. A good experiment changes one thing
at a time and measures what happens. If the result surprises you, repeat it before you believe it.
Write down what you did, what you expected, and what you observed, so that someone else can check
your work. Most discoveries are made slowly, by many people, over many years; a few arrive all at
once, but even those rest on the patient work that came before.

The human heart beats about one hundred thousand times a day. It pumps blood through a network of
vessels that would stretch more than twice around the Earth if laid end to end. Regular exercise,
enough sleep, and a balanced diet keep it healthy. Walking for thirty minutes a day lowers the risk
of heart disease, improves mood, and helps people think more clearly.

Machine learning models learn patterns from data. A language model reads a sequence of tokens and
predicts the next one. During training, the model's parameters are adjusted to reduce the loss,
which measures how far its predictions are from the real next tokens. Fine-tuning starts from a
model that has already been trained on a large corpus and continues training on a smaller dataset
for a particular task. Low-rank adaptation (LoRA) trains only small matrices added to the weights,
which saves memory and makes it cheap to keep many adapters for one base model.

A tokenizer splits text into pieces the model can handle. Byte-level BPE starts from the 256 byte
values and repeatedly merges the most frequent adjacent pair into a new token. Common words become
single tokens; rare words are spelled out from smaller pieces. Because every byte has a token,
nothing is ever unknown: emoji, accents, and scripts the tokenizer has never seen still encode.

History teaches patience. Cities rise and fall, languages change, and ideas that once seemed
certain are questioned by the next generation. The printing press, the steam engine, the telegraph,
electricity, and the computer each changed how people worked and lived. Each was doubted at first,
then welcomed, and finally taken for granted.

The recipe is simple. Mix two cups of flour, one teaspoon of salt, and one tablespoon of sugar.
Add one cup of warm water and two tablespoons of olive oil, then knead the dough for ten minutes
until it is smooth. Let it rest for an hour, covered, in a warm place. Shape it, bake it at 220
degrees for twenty-five minutes, and let it cool before cutting. It's better the next day, if
there's any left.

Q: What is the capital of France?
A: The capital of France is Paris.

Q: How many days are there in a leap year?
A: A leap year has 366 days. February gets an extra day, the 29th.

Q: Can you explain what a prime number is?
A: A prime number is a whole number greater than 1 whose only divisors are 1 and itself. The first
few primes are 2, 3, 5, 7, 11, 13, 17, 19, 23 and 29. Every other whole number greater than 1 can be
written as a product of primes in exactly one way, which is why primes are called the building
blocks of arithmetic.

User: I'm trying to learn Python. Where should I start?
Assistant: Great choice! Start with the basics: variables, numbers and strings, lists and
dictionaries, if statements, for loops, and functions. Write small programs that solve problems
you care about, like renaming files or tracking expenses. When you get stuck, read the error message
carefully; it usually tells you the line and the reason. After that, learn about modules, classes,
and reading and writing files.

User: Why is the sky blue?
Assistant: Sunlight contains all colours. When it passes through the atmosphere, the short blue
wavelengths are scattered by air molecules much more than the long red ones. That scattered blue
light reaches your eyes from every direction, so the whole sky looks blue. At sunrise and sunset the
light travels through more air, most of the blue is scattered away, and the sky turns orange and red.

User: Summarize the plot of a detective story in two sentences.
Assistant: A quiet village is shaken when the owner of the manor is found dead in a locked library.
The detective notices a muddy footprint, a stopped clock and a missing letter, and reveals that the
gardener's alibi was invented by the victim's own nephew.

User: Translate "good morning" into Spanish, French and German.
Assistant: Spanish: "buenos días". French: "bonjour". German: "guten Morgen".

User: What's 17 times 23?
Assistant: Let's compute it step by step: 17 x 20 = 340 and 17 x 3 = 51, so 17 x 23 = 391.

User: I don't understand recursion. Can you give me an example?
Assistant: Sure. A recursive function calls itself on a smaller version of the problem until it
reaches a case simple enough to answer directly. For example, the factorial of n is n times the
factorial of n - 1, and the factorial of 0 is 1. So factorial(4) = 4 x 3 x 2 x 1 = 24.

def factorial(n: int) -> int:
    """Return n! for a non-negative integer n."""
    if n < 0:
        raise ValueError("n must be non-negative")
    return 1 if n == 0 else n * factorial(n - 1)


def fibonacci(limit):
    a, b = 0, 1
    while a < limit:
        yield a
        a, b = b, a + b


class Account:
    def __init__(self, owner, balance=0.0):
        self.owner = owner
        self.balance = balance

    def deposit(self, amount):
        if amount <= 0:
            raise ValueError("deposit must be positive")
        self.balance += amount
        return self.balance

    def __repr__(self):
        return f"Account(owner={self.owner!r}, balance={self.balance:.2f})"


import json
from pathlib import Path

def load_config(path):
    with open(path, "r", encoding="utf-8") as handle:
        config = json.load(handle)
    for key in ("name", "version", "layers"):
        if key not in config:
            raise KeyError(f"missing key: {key}")
    return config

if __name__ == "__main__":
    print(load_config(Path("config.json")))
    numbers = [x * x for x in range(10) if x % 2 == 0]
    print(sum(numbers), max(numbers), sorted(numbers, reverse=True))

#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

struct Point {
  double x = 0.0;
  double y = 0.0;
};

// Returns the index of the point closest to the origin, or -1 for an empty list.
int closest_to_origin(const std::vector<Point>& points) {
  int best = -1;
  double best_distance = 0.0;
  for (size_t i = 0; i < points.size(); ++i) {
    const double distance = points[i].x * points[i].x + points[i].y * points[i].y;
    if (best < 0 || distance < best_distance) {
      best = static_cast<int>(i);
      best_distance = distance;
    }
  }
  return best;
}

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::sort(args.begin(), args.end());
  for (const auto& arg : args) std::cout << arg << "\n";
  return 0;
}

template <typename T>
class Matrix {
 public:
  Matrix(size_t rows, size_t cols) : rows_(rows), cols_(cols), data_(rows * cols) {}
  T& operator()(size_t r, size_t c) { return data_[r * cols_ + c]; }
  size_t rows() const { return rows_; }
  size_t cols() const { return cols_; }

 private:
  size_t rows_, cols_;
  std::vector<T> data_;
};

function debounce(fn, delay) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn.apply(this, args), delay);
  };
}

const users = await fetch("/api/users?limit=20").then((response) => response.json());
console.log(users.filter((user) => user.active).map((user) => user.name).join(", "));

SELECT customers.name, COUNT(orders.id) AS order_count
FROM customers
LEFT JOIN orders ON orders.customer_id = customers.id
WHERE orders.created_at >= '2024-01-01'
GROUP BY customers.name
ORDER BY order_count DESC
LIMIT 10;

#!/usr/bin/env bash
set -euo pipefail
for file in *.txt; do
  lines=$(wc -l < "$file")
  echo "$file: $lines lines"
done
git add -A && git commit -m "Update notes" && git push origin main

{
  "model_type": "qwen3_5_text",
  "hidden_size": 1024,
  "num_hidden_layers": 24,
  "num_attention_heads": 8,
  "vocab_size": 248320,
  "rope_theta": 10000000.0,
  "tie_word_embeddings": true,
  "layer_types": ["linear_attention", "linear_attention", "linear_attention", "full_attention"]
}

<html>
  <head><title>Example page</title></head>
  <body>
    <h1 class="title">Hello, world!</h1>
    <p>This is a <a href="https://example.com/docs">link</a> &amp; some text.</p>
  </body>
</html>

fn main() {
    let words = vec!["apple", "banana", "cherry"];
    let lengths: Vec<usize> = words.iter().map(|w| w.len()).collect();
    println!("{:?}", lengths);
    match lengths.iter().max() {
        Some(longest) => println!("longest: {}", longest),
        None => println!("empty"),
    }
}

Numbers and dates: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 42, 100, 256, 1024, 2048, 4096, 65536,
3.14159, 2.71828, -273.15, 1e-6, 6.022e23, 99.9%, $1,299.00, 2024-06-07, 12:30:45, +49 30 1234567,
version 1.2.3, ISBN 978-3-16-148410-0, room 101, page 42 of 365.

Accents and other Latin letters: café, naïve, façade, résumé, jalapeño, São Paulo, Zürich, Kraków,
Ångström, Øresund, Straße, déjà vu, crème brûlée, señor, über, coöperate, Ærø, İstanbul, Dvořák.

Deutsch: Der schnelle braune Fuchs springt über den faulen Hund. Guten Morgen, wie geht es Ihnen?
Français : Le vif renard brun saute par-dessus le chien paresseux. Où est la gare, s'il vous plaît ?
Español: El veloz zorro marrón salta sobre el perro perezoso. ¿Dónde está la biblioteca?
Italiano: La volpe veloce salta sopra il cane pigro. Buongiorno, come stai?
Português: A rápida raposa marrom pula sobre o cão preguiçoso. Obrigado pela ajuda!
Русский: Съешь же ещё этих мягких французских булок, да выпей чаю. Привет, как дела?
Ελληνικά: Γειά σου κόσμε! Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.
中文：我们今天学习自然语言处理。模型把文本切分成词元，然后预测下一个词元。你好，世界！
日本語：今日はとても良い天気ですね。東京から大阪まで新幹線で約二時間半かかります。ありがとうございます。
한국어: 안녕하세요, 만나서 반갑습니다. 오늘 날씨가 정말 좋네요. 감사합니다.
العربية: مرحبا بالعالم. كيف حالك اليوم؟ شكرا جزيلا.
עברית: שלום עולם, מה שלומך?
हिन्दी: नमस्ते दुनिया। आप कैसे हैं? धन्यवाद।
ไทย: สวัสดีชาวโลก ขอบคุณมาก
Tiếng Việt: Xin chào thế giới. Cảm ơn bạn rất nhiều.

Emoji: 😀 😂 🥲 😍 🤔 👍 👍🏽 👋🏿 🙏 🎉 🚀 🔥 ✅ ❌ ❤️ 💡 📚 🌍 🇺🇸 🇯🇵 🇩🇪 👨‍👩‍👧‍👦 🧑‍💻 🏳️‍🌈 1️⃣

Symbols: © ® ™ ° ± × ÷ ≤ ≥ ≠ ≈ ∞ √ ∑ ∫ π µ Ω € £ ¥ ₹ § ¶ † • … — – « » “ ” ‘ ’ ← → ↑ ↓ ⇒ ∀ ∃ ∈ ∅

The committee met on Tuesday to review the budget. Revenue grew by 12% compared with last year,
while costs rose by only 4%. The chair proposed investing the surplus in training, new equipment,
and a small reserve for emergencies. After a long discussion, the proposal was approved with one
abstention. The next meeting will take place on the first Monday of the month at 10:00.

Dear Sam,

Thank you for your letter and for the photographs from the mountains. It looks like you had
wonderful weather. We're all well here; the garden is full of tomatoes, and the cat has decided
that the new sofa belongs to her. Please let us know when you're planning to visit, and we'll make
sure the spare room is ready.

With love,
Maria

Tips for writing clear documentation: say what a thing is for before saying how it works; give one
short example that runs; name the inputs, the outputs, and the errors; keep sentences short; and
update the text whenever the code changes. Readers skim, so put the most important information
first and use headings that tell them where to look.

The river runs from the mountains to the sea. In winter it freezes at the edges, and in spring it
floods the meadows. Fishermen say that the best time to catch trout is early in the morning, when
the water is cold and clear and the insects have just begun to hatch. The old mill still stands on
the bank, its wheel turning slowly, though it has not ground any grain for fifty years.

User: Write a haiku about autumn.
Assistant: Crisp leaves drift and fall,
the maple lets go of red,
cold wind hums goodbye.

User: What are the three states of matter?
Assistant: The three classic states of matter are solid, liquid and gas. Solids keep their shape,
liquids take the shape of their container but keep their volume, and gases expand to fill any
container. Plasma is often called the fourth state.

User: Give me a short checklist for a job interview.
Assistant: 1. Research the company and the role. 2. Prepare two or three stories that show your
skills. 3. Prepare questions to ask them. 4. Check the route or the video link the day before.
5. Arrive five minutes early. 6. Send a short thank-you note afterwards.

User: How do I reverse a string in JavaScript?
Assistant: Split it into characters, reverse the array, and join it again:
const reversed = text.split("").reverse().join("");
For text with emoji or combining marks, use Array.from(text) instead of split("") so that
surrogate pairs stay together.

Gardening notes for April: sow peas, lettuce, radishes and spinach directly in the beds; start
tomatoes, peppers and basil indoors on a sunny windowsill; divide overgrown perennials; and spread a
thin layer of compost around the roses. Water in the morning rather than the evening, so the leaves
dry before night and mildew has less chance to spread. Keep an eye out for slugs after rain.

The lighthouse keeper wrote in his log every evening. "Wind north-east, force five. Sea moderate.
Visibility good. Two fishing boats returned before dusk; one cargo ship passed to the south at
eight o'clock. Lamp lit at 19:42. All quiet." Years later his granddaughter found the logs in a
trunk in the attic and read them aloud, one night at a time, until she knew the rhythm of his days
as well as her own.

Astronomy for beginners: the Moon takes about twenty-nine and a half days to go through its phases,
from new moon to full moon and back. Planets wander against the background of fixed stars, which is
where their name comes from; the Greek word planetes means wanderer. On a clear, dark night far from
city lights you can see a few thousand stars with the naked eye, and the faint band of the Milky Way.

User: Can you recommend a few classic novels?
Assistant: Here are some widely loved classics: "Pride and Prejudice" by Jane Austen, "Moby-Dick" by
Herman Melville, "Crime and Punishment" by Fyodor Dostoevsky, "Middlemarch" by George Eliot, and
"One Hundred Years of Solitude" by Gabriel García Márquez. If you prefer shorter books, try "The
Old Man and the Sea" or "Of Mice and Men".

User: What's the difference between weather and climate?
Assistant: Weather is what happens in the atmosphere over hours or days: rain this afternoon, a
heat wave next week. Climate is the long-term pattern of weather in a place, usually averaged over
thirty years or more. In short, climate is what you expect, and weather is what you get.

User: How should I store passwords in a web application?
Assistant: Never store them in plain text. Hash each password with a slow, salted algorithm designed
for passwords, such as Argon2id, bcrypt or scrypt, and store only the hash. When a user logs in,
hash the submitted password with the same salt and parameters and compare the results in constant
time. Enforce rate limits on login attempts and offer two-factor authentication.

package main

import (
	"fmt"
	"net/http"
	"strings"
)

func handler(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/hello/")
	if name == "" {
		name = "world"
	}
	fmt.Fprintf(w, "Hello, %s!\n", name)
}

func main() {
	http.HandleFunc("/hello/", handler)
	if err := http.ListenAndServe(":8080", nil); err != nil {
		panic(err)
	}
}

public class Counter {
    private final Map<String, Integer> counts = new HashMap<>();

    public void add(String word) {
        counts.merge(word.toLowerCase(Locale.ROOT), 1, Integer::sum);
    }

    public List<Map.Entry<String, Integer>> top(int n) {
        return counts.entrySet().stream()
            .sorted(Map.Entry.<String, Integer>comparingByValue().reversed())
            .limit(n)
            .collect(Collectors.toList());
    }
}

# Build and test
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j 8
ctest --test-dir build --output-on-failure

- [x] parse the configuration file
- [x] load the weights from safetensors
- [ ] add gradient checkpointing
- [ ] write the user guide

| Model        | Layers | Hidden | Heads | Parameters |
|--------------|--------|--------|-------|------------|
| tiny         | 4      | 256    | 4     | 12M        |
| small        | 12     | 768    | 12    | 124M       |
| medium       | 24     | 1024   | 16    | 350M       |

The train pulled out of the station just after dawn. Through the window the fields were silver with
frost, and the hills in the distance were still half hidden in mist. A conductor came through the
carriage checking tickets, humming a tune nobody recognized. Somewhere near the border the sun broke
through, and for a few minutes every puddle along the tracks flashed like a mirror.

Mathematics: the sum of the first n positive integers is n(n + 1)/2. The area of a circle with
radius r is πr², and its circumference is 2πr. In a right triangle, a² + b² = c². The derivative of
sin(x) is cos(x), and the integral of 1/x is ln|x| + C. A matrix is invertible exactly when its
determinant is not zero. The probability of rolling two sixes with two fair dice is 1/36 ≈ 0.0278.

It was late when they finally reached the station. The last train had already left, the ticket
office was closed, and a single lamp lit the empty platform. They sat on a bench, shared the last
of the sandwiches, and watched the stars come out one by one. "We'll remember this," she said, and
he laughed, because he knew she was right.
)CORPUS";
  return kCorpus;
}

}  // namespace dt
