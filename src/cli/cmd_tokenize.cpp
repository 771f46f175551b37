// `deltatune tokenize`: encode text to ids or decode ids to text with a model's tokenizer.json.
#include <fmt/core.h>

#include <memory>
#include <sstream>

#include "cli/cli.h"
#include "core/error.h"
#include "io/mapped_file.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace dt {
namespace {

struct TokenizeOptions {
  std::string model, text, file, decode;
  bool chat = false, no_thinking = false, no_special = false, skip_special = false;
};

std::vector<int32_t> parse_ids(const std::string& list) {
  std::string spaced = list;
  for (char& c : spaced)
    if (c == ',') c = ' ';
  std::istringstream stream(spaced);
  std::vector<int32_t> ids;
  std::string word;
  while (stream >> word) {
    size_t used = 0;
    long long id = -1;
    try {
      id = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != word.size() || id < 0 || id > INT32_MAX) fail("--decode: {:?} is not a token id", word);
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

void run_tokenize(const TokenizeOptions& options) {
  const int sources = !options.text.empty() + !options.file.empty() + !options.decode.empty();
  if (sources != 1) fail("tokenize: give exactly one of --text, --file or --decode");
  const Tokenizer tokenizer = Tokenizer::load(options.model);
  if (!options.decode.empty()) {
    if (options.chat) fail("tokenize: --chat applies to encoding, not to --decode");
    fmt::print("{}\n", tokenizer.decode(parse_ids(options.decode), options.skip_special));
    return;
  }
  std::string text = options.file.empty() ? options.text : read_text_file(options.file);
  if (options.chat) {
    const ChatMessage message{"user", text, std::nullopt};
    text = render_chat({&message, 1}, {.add_generation_prompt = true, .enable_thinking = !options.no_thinking});
  }
  fmt::print("{}\n", fmt::join(tokenizer.encode(text, !options.no_special), ","));
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto options = std::make_shared<TokenizeOptions>();
  CLI::App* command = app.add_subcommand(
      "tokenize", "Print the token ids of a text (comma-separated), or the text of token ids (--decode)");
  command->add_option("--model", options->model, "Model directory with tokenizer.json, or the tokenizer.json file")
      ->required();
  command->add_option("--text", options->text, "Text to encode");
  command->add_option("--file", options->file, "File whose contents to encode")->check(CLI::ExistingFile);
  command->add_option("--decode", options->decode, "Token ids to decode, separated by commas or spaces");
  command->add_flag("--chat", options->chat,
                    "Encode the text as one user message in the chat template, with the generation prompt");
  command->add_flag("--no-thinking", options->no_thinking,
                    "With --chat: end the prompt with an empty think block (enable_thinking false)");
  command->add_flag("--no-special", options->no_special,
                    "Treat special-token text such as <|im_end|> in the input as plain text");
  command->add_flag("--skip-special", options->skip_special, "With --decode: leave special tokens out");
  command->callback([options] { run_tokenize(*options); });
}

}  // namespace dt
