#include "tokenizer/chat_template.h"

#include "core/error.h"
#include "tokenizer/unicode_text.h"

namespace dt {
namespace {

constexpr std::string_view kThinkOpen = "<think>", kThinkClose = "</think>";

std::string strip_newlines(std::string_view text, bool left, bool right) {
  size_t begin = 0, end = text.size();
  if (left)
    while (begin < end && text[begin] == '\n') ++begin;
  if (right)
    while (end > begin && text[end - 1] == '\n') --end;
  return std::string(text.substr(begin, end - begin));
}

bool is_tool_response(const std::string& content) {
  return content.starts_with("<tool_response>") && content.ends_with("</tool_response>");
}

struct AssistantParts {
  std::string reasoning, content;
};

// reasoning_content when given; otherwise the template's split of `content` at </think>.
AssistantParts split_reasoning(const ChatMessage& message) {
  if (message.reasoning_content) return {*message.reasoning_content, message.content};
  const size_t first_close = message.content.find(kThinkClose);
  if (first_close == std::string::npos) return {"", message.content};
  const size_t last_close = message.content.rfind(kThinkClose);
  const std::string before = strip_newlines(std::string_view(message.content).substr(0, first_close), false, true);
  const size_t open = before.rfind(kThinkOpen);
  const std::string reasoning = open == std::string::npos ? before : before.substr(open + kThinkOpen.size());
  return {strip_newlines(reasoning, true, false),
          strip_newlines(std::string_view(message.content).substr(last_close + kThinkClose.size()), true, false)};
}

class SegmentWriter {
 public:
  void add(const std::string& text, bool trainable) {
    if (text.empty()) return;
    if (!segments_.empty() && segments_.back().trainable == trainable) segments_.back().text += text;
    else segments_.push_back({text, trainable});
  }
  std::vector<ChatSegment> take() { return std::move(segments_); }

 private:
  std::vector<ChatSegment> segments_;
};

}  // namespace

std::vector<ChatSegment> render_chat_segments(std::span<const ChatMessage> messages, const ChatOptions& options) {
  // Assistant turns after the last real user query (not a folded tool response) show their thinking.
  std::ptrdiff_t last_query = static_cast<std::ptrdiff_t>(messages.size()) - 1;
  for (std::ptrdiff_t i = last_query; i >= 0; --i) {
    if (messages[i].role == "user" && !is_tool_response(messages[i].content)) {
      last_query = i;
      break;
    }
  }
  SegmentWriter out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& message = messages[i];
    if (message.role == "system" || message.role == "user") {
      out.add("<|im_start|>" + message.role + "\n" + message.content + "<|im_end|>\n", false);
    } else if (message.role == "assistant") {
      const AssistantParts parts = split_reasoning(message);
      out.add("<|im_start|>assistant\n", false);
      if (static_cast<std::ptrdiff_t>(i) > last_query) {
        const std::string reasoning = strip_newlines(parts.reasoning, true, true);
        out.add("<think>\n" + reasoning + "\n</think>\n\n", !reasoning.empty());
        out.add(strip_newlines(parts.content, true, false) + "<|im_end|>", true);
      } else {
        out.add(parts.content + "<|im_end|>", true);
      }
      out.add("\n", false);
    } else if (message.role == "tool") {
      if (i == 0 || messages[i - 1].role != "tool") out.add("<|im_start|>user", false);
      out.add("\n<tool_response>\n" + message.content + "\n</tool_response>", false);
      if (i + 1 == messages.size() || messages[i + 1].role != "tool") out.add("<|im_end|>\n", false);
    } else {
      fail("chat message {}: role \"{}\" is not one of system, user, assistant, tool", i, message.role);
    }
  }
  if (options.add_generation_prompt)
    out.add(std::string("<|im_start|>assistant\n") + (options.enable_thinking ? "<think>\n" : "<think>\n\n</think>\n\n"),
            false);
  return out.take();
}

std::string render_chat(std::span<const ChatMessage> messages, const ChatOptions& options) {
  std::string text;
  for (const auto& segment : render_chat_segments(messages, options)) text += segment.text;
  return text;
}

MaskedTokens tokenize_chat_for_training(const Tokenizer& tokenizer, std::span<const ChatMessage> messages,
                                        const ChatOptions& options) {
  std::vector<ChatMessage> normalized(messages.begin(), messages.end());
  for (auto& message : normalized) {
    message.content = nfc_normalize(replace_invalid_utf8(message.content));
    if (message.reasoning_content) message.reasoning_content = nfc_normalize(replace_invalid_utf8(*message.reasoning_content));
  }
  const auto segments = render_chat_segments(normalized, options);
  std::string text;
  std::vector<size_t> segment_end;
  for (const auto& segment : segments) {
    text += segment.text;
    segment_end.push_back(text.size());
  }
  const auto encoding = tokenizer.encode_with_offsets(text);
  // Template text is ASCII and joins messages at '\n' or '<', which NFC never composes with.
  if (encoding.text != text) fail("chat rendering changed under NFC, so the training mask would not align");
  MaskedTokens out{encoding.ids, std::vector<uint8_t>(encoding.ids.size(), 0)};
  size_t segment = 0;
  for (size_t i = 0; i < encoding.ids.size(); ++i) {
    while (encoding.token_begin[i] >= segment_end[segment]) ++segment;
    out.trainable[i] = segments[segment].trainable;
  }
  return out;
}

const std::string& qwen_chat_template_jinja() {
  static const std::string kTemplate = R"JINJA({%- if messages[0].role == 'system' %}
    {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set content = message.content %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is defined and message.reasoning_content is not none %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in message.content %}
                {%- set content = message.content.split('</think>')[-1].lstrip('\n') %}
                {%- set reasoning_content = message.content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- else %}
        {{- '<think>\n' }}
    {%- endif %}
{%- endif %})JINJA";
  return kTemplate;
}

}  // namespace dt
