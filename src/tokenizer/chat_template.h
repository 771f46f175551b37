#pragma once
// Qwen3.5 ChatML chat template (spec §10), rendered natively, plus the per-token training mask.
//
//   <|im_start|>{role}\n{content}<|im_end|>\n                  system / user turns
//   <|im_start|>assistant\n<think>\n{reasoning}\n</think>\n\n{content}<|im_end|>\n
//                                            assistant turns after the last user query
//   <|im_start|>assistant\n{content}<|im_end|>\n                earlier assistant turns
//   <|im_start|>user\n<tool_response>\n{content}\n</tool_response><|im_end|>\n
//                                            consecutive tool messages, folded into one turn
//   generation prompt: <|im_start|>assistant\n<think>\n              (enable_thinking)
//                      <|im_start|>assistant\n<think>\n\n</think>\n\n  (thinking off)
//
// Reasoning comes from `reasoning_content` or, when absent, is split out of `content` at
// `</think>` (as the official template does). qwen_chat_template_jinja() is the same template in
// Jinja for tokenizer_config.json; tools in the system prompt and tool calls are not rendered.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace dt {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" or "tool"
  std::string content;
  std::optional<std::string> reasoning_content;  // assistant only
};

struct ChatOptions {
  bool add_generation_prompt = false;
  bool enable_thinking = true;
};

// One stretch of the rendered conversation and whether the model is trained to produce it.
struct ChatSegment {
  std::string text;
  bool trainable = false;
};

// Trainable segments (our SFT policy, not part of the template): each assistant turn's body from
// after "<|im_start|>assistant\n" up to and including its <|im_end|>, except an empty think block
// "<think>\n\n</think>\n\n", which is what the prompt holds when thinking is off. Everything else
// (system, user, tool turns, role headers, the "\n" after <|im_end|>, the generation prompt) is not.
std::vector<ChatSegment> render_chat_segments(std::span<const ChatMessage> messages, const ChatOptions& options);
std::string render_chat(std::span<const ChatMessage> messages, const ChatOptions& options);

struct MaskedTokens {
  std::vector<int32_t> ids;           // exactly tokenizer.encode(render_chat(...))
  std::vector<uint8_t> trainable;     // 1 where the token starts inside a trainable segment
};
// Tokenizes the whole rendered conversation at once (so ids match inference) and marks each token
// by where it starts. Message texts are NFC-normalized first so token offsets equal byte offsets of
// the rendered text (the tokenizer applies NFC anyway, so ids are unchanged).
MaskedTokens tokenize_chat_for_training(const Tokenizer& tokenizer, std::span<const ChatMessage> messages,
                                        const ChatOptions& options);

// The template above as Jinja, for tokenizer_config.json's "chat_template".
const std::string& qwen_chat_template_jinja();

}  // namespace dt
