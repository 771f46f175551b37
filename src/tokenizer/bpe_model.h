#pragma once
// Byte-level BPE model: pieces of raw bytes -> token ids by repeatedly merging the adjacent pair
// with the lowest merge rank (ties: leftmost), as Hugging Face tokenizers' BPE does.
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace dt {

struct BpeMerge {
  std::string left, right;
};

class BpeModel {
 public:
  // `vocab` maps byte-level token strings to ids; `merges` are in rank order. `where` names the file
  // for errors: a merge whose parts or result are not in the vocab, or a missing byte symbol.
  BpeModel(std::unordered_map<std::string, int32_t> vocab, const std::vector<BpeMerge>& merges, bool ignore_merges,
           const std::string& where);

  // Appends the ids of one pre-tokenized piece given as raw bytes. Results are cached per piece.
  void encode_piece(std::string_view piece, std::vector<int32_t>& ids) const;
  // The same without the cache: a priority queue over a linked list of symbols, O(n log n).
  std::vector<int32_t> encode_piece_uncached(std::string_view piece) const;
  // Straightforward O(n^2) rescanning version, kept as the reference for tests.
  std::vector<int32_t> encode_piece_reference(std::string_view piece) const;

  const std::unordered_map<std::string, int32_t>& vocab() const { return vocab_; }
  size_t merge_count() const { return merges_.size(); }

 private:
  struct MergeResult {
    int32_t rank;
    int32_t merged_id;
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  const MergeResult* find_merge(int32_t left, int32_t right) const;
  // ignore_merges: a piece that is itself a vocab token is emitted whole.
  bool emit_whole_piece(std::string_view piece, std::vector<int32_t>& ids) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::unordered_map<uint64_t, MergeResult> merges_;
  std::array<int32_t, 256> byte_ids_{};
  bool ignore_merges_ = false;

  struct PieceCache {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<int32_t>> ids_by_piece;
  };
  std::unique_ptr<PieceCache> cache_ = std::make_unique<PieceCache>();  // a pointer keeps the model movable
};

}  // namespace dt
