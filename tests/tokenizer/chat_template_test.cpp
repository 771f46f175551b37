// The ChatML template: exact renderings, the Jinja twin in tokenizer_config.json, and the
// training mask.
#include <gtest/gtest.h>

#include <fstream>

#include "core/error.h"
#include "io/mapped_file.h"
#include "test_util.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/chat_template.h"

namespace dt {
namespace {

using nlohmann::json;

const Tokenizer& trained_tokenizer() {
  static const Tokenizer tokenizer =
      Tokenizer::from_json(train_bpe_tokenizer(builtin_tokenizer_corpus(), 1000).tokenizer_json, "trained");
  return tokenizer;
}

std::vector<ChatMessage> conversation() {
  return {{"system", "You are helpful.", std::nullopt},
          {"user", "What is 2+2?", std::nullopt},
          {"assistant", "It is 4.", std::string("Add them.")},
          {"user", "And 3+3?", std::nullopt},
          {"assistant", "It is 6.", std::string("\nAdd again.\n")}};
}

TEST(ChatTemplate, RendersSystemUserAssistantWithThinking) {
  const auto messages = conversation();
  EXPECT_EQ(render_chat(messages, {}),
            "<|im_start|>system\nYou are helpful.<|im_end|>\n"
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
            "<|im_start|>assistant\nIt is 4.<|im_end|>\n"  // before the last query: thinking dropped
            "<|im_start|>user\nAnd 3+3?<|im_end|>\n"
            "<|im_start|>assistant\n<think>\nAdd again.\n</think>\n\nIt is 6.<|im_end|>\n");
}

TEST(ChatTemplate, GenerationPromptWithAndWithoutThinking) {
  const std::vector<ChatMessage> messages = {{"user", "hi", std::nullopt}};
  EXPECT_EQ(render_chat(messages, {.add_generation_prompt = true, .enable_thinking = true}),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n");
  EXPECT_EQ(render_chat(messages, {.add_generation_prompt = true, .enable_thinking = false}),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  EXPECT_EQ(render_chat(messages, {.add_generation_prompt = false}), "<|im_start|>user\nhi<|im_end|>\n");
}

TEST(ChatTemplate, ReasoningSplitFromContentAndEmptyThinkBlock) {
  const std::vector<ChatMessage> messages = {{"user", "q", std::nullopt},
                                             {"assistant", "<think>\nstep one\n</think>\n\nanswer", std::nullopt}};
  EXPECT_EQ(render_chat(messages, {}),
            "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\nstep one\n</think>\n\nanswer<|im_end|>\n");
  const std::vector<ChatMessage> no_reasoning = {{"user", "q", std::nullopt}, {"assistant", "answer", std::nullopt}};
  EXPECT_EQ(render_chat(no_reasoning, {}),
            "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nanswer<|im_end|>\n");
}

TEST(ChatTemplate, ToolMessagesFoldIntoOneUserTurn) {
  const std::vector<ChatMessage> messages = {{"user", "weather?", std::nullopt},
                                             {"assistant", "checking", std::nullopt},
                                             {"tool", "sunny", std::nullopt},
                                             {"tool", "20C", std::nullopt},
                                             {"assistant", "Sunny, 20C.", std::nullopt}};
  EXPECT_EQ(render_chat(messages, {}),
            "<|im_start|>user\nweather?<|im_end|>\n"
            "<|im_start|>assistant\n<think>\n\n</think>\n\nchecking<|im_end|>\n"
            "<|im_start|>user\n<tool_response>\nsunny\n</tool_response>\n<tool_response>\n20C\n</tool_response><|im_end|>\n"
            "<|im_start|>assistant\n<think>\n\n</think>\n\nSunny, 20C.<|im_end|>\n");
}

TEST(ChatTemplate, UnknownRoleFails) {
  const std::vector<ChatMessage> messages = {{"robot", "beep", std::nullopt}};
  EXPECT_THROW(render_chat(messages, {}), Error);
}

// The Jinja template written to tokenizer_config.json renders exactly like render_chat (checked
// with Python's jinja2, which transformers uses).
TEST(ChatTemplate, JinjaTemplateMatchesNativeRendering) {
  ASSERT_EQ(test::run_command("/usr/bin/python3 -c 'import jinja2'").exit_code, 0)
      << "/usr/bin/python3 with jinja2 is needed; run scripts/install-deps.sh";
  const auto dir = test::temp_dir();
  json cases = json::array();
  std::vector<std::string> expected;
  const std::vector<std::vector<ChatMessage>> conversations = {
      conversation(),
      {{"user", "hi", std::nullopt}},
      {{"user", "q", std::nullopt}, {"assistant", "<think>\nr\n</think>\n\na", std::nullopt}},
      {{"user", "weather?", std::nullopt}, {"assistant", "checking", std::nullopt}, {"tool", "sunny", std::nullopt},
       {"tool", "20C", std::nullopt}, {"assistant", "Sunny.", std::nullopt}, {"user", "thanks", std::nullopt}}};
  for (const auto& messages : conversations) {
    for (const bool generation_prompt : {false, true}) {
      for (const bool thinking : {false, true}) {
        json rendered_messages = json::array();
        for (const auto& message : messages) {
          json entry = {{"role", message.role}, {"content", message.content}};
          if (message.reasoning_content) entry["reasoning_content"] = *message.reasoning_content;
          rendered_messages.push_back(entry);
        }
        cases.push_back({{"messages", rendered_messages}, {"add_generation_prompt", generation_prompt},
                         {"enable_thinking", thinking}});
        expected.push_back(render_chat(messages, {.add_generation_prompt = generation_prompt, .enable_thinking = thinking}));
      }
    }
  }
  std::ofstream(dir / "template.jinja") << qwen_chat_template_jinja();
  std::ofstream(dir / "cases.json") << cases.dump();
  const std::string script =
      "import json,sys,jinja2\n"
      "env=jinja2.Environment(trim_blocks=True,lstrip_blocks=True,extensions=['jinja2.ext.loopcontrols'])\n"
      "t=env.from_string(open(sys.argv[1]).read())\n"
      "cases=json.load(open(sys.argv[2]))\n"
      "json.dump([t.render(**c) for c in cases],open(sys.argv[3],'w'))\n";
  std::ofstream(dir / "render.py") << script;
  const auto result = test::run_command("/usr/bin/python3 " + (dir / "render.py").string() + " " + (dir / "template.jinja").string() +
                                        " " + (dir / "cases.json").string() + " " + (dir / "out.json").string());
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const auto rendered = json::parse(read_text_file(dir / "out.json")).get<std::vector<std::string>>();
  ASSERT_EQ(rendered.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(rendered[i], expected[i]) << cases[i].dump();
}

TEST(ChatMask, MarksAssistantOutputOnly) {
  const Tokenizer& tokenizer = trained_tokenizer();
  const auto messages = conversation();
  const auto masked = tokenize_chat_for_training(tokenizer, messages, {});
  EXPECT_EQ(masked.ids, tokenizer.encode(render_chat(messages, {})));
  ASSERT_EQ(masked.ids.size(), masked.trainable.size());
  // The trainable tokens, in order, spell exactly the assistant outputs.
  std::vector<int32_t> trainable_ids;
  for (size_t i = 0; i < masked.ids.size(); ++i)
    if (masked.trainable[i]) trainable_ids.push_back(masked.ids[i]);
  EXPECT_EQ(tokenizer.decode(trainable_ids), "It is 4.<|im_end|><think>\nAdd again.\n</think>\n\nIt is 6.<|im_end|>");
  // And they coincide with encoding each segment on its own.
  std::vector<uint8_t> segment_mask;
  for (const auto& segment : render_chat_segments(messages, {}))
    segment_mask.resize(segment_mask.size() + tokenizer.encode(segment.text).size(), segment.trainable);
  EXPECT_EQ(masked.trainable, segment_mask);
}

TEST(ChatMask, EmptyThinkBlockIsPromptAndDecomposedTextStillAligns) {
  const Tokenizer& tokenizer = trained_tokenizer();
  const std::vector<ChatMessage> messages = {{"user", "cafe\xCC\x81?", std::nullopt},
                                             {"assistant", "  \n e\xCC\x81t\xC3\xA9 \xF0\x9F\x91\x8D", std::nullopt}};
  const auto masked = tokenize_chat_for_training(tokenizer, messages, {});
  EXPECT_EQ(masked.ids, tokenizer.encode(render_chat(messages, {})));
  std::vector<int32_t> trainable_ids;
  for (size_t i = 0; i < masked.ids.size(); ++i)
    if (masked.trainable[i]) trainable_ids.push_back(masked.ids[i]);
  EXPECT_EQ(tokenizer.decode(trainable_ids), "  \n \xC3\xA9t\xC3\xA9 \xF0\x9F\x91\x8D<|im_end|>");
}

}  // namespace
}  // namespace dt
