#include "tokenizer/bpe_model.h"

#include <algorithm>

#include "core/error.h"
#include "tokenizer/byte_level.h"

namespace dt {
namespace {

constexpr size_t kMaxCachedPieceBytes = 256;
constexpr size_t kMaxCacheEntries = 1 << 17;

}  // namespace

BpeModel::BpeModel(std::unordered_map<std::string, int32_t> vocab, const std::vector<BpeMerge>& merges,
                   bool ignore_merges, const std::string& where)
    : vocab_(std::move(vocab)), ignore_merges_(ignore_merges) {
  const auto& symbols = byte_level_symbols();
  for (int byte = 0; byte < 256; ++byte) {
    const auto found = vocab_.find(symbols[byte]);
    if (found == vocab_.end())
      fail("{}: model.vocab lacks the byte-level symbol {:?} for byte 0x{:02X}; a byte-level BPE vocab needs all 256",
           where, symbols[byte], byte);
    byte_ids_[byte] = found->second;
  }
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& merge = merges[rank];
    const auto left = vocab_.find(merge.left), right = vocab_.find(merge.right);
    const auto merged = vocab_.find(merge.left + merge.right);
    if (left == vocab_.end() || right == vocab_.end() || merged == vocab_.end())
      fail("{}: model.merges[{}] ({:?} {:?}) refers to a token missing from model.vocab ({:?})", where, rank,
           merge.left, merge.right,
           left == vocab_.end() ? merge.left : right == vocab_.end() ? merge.right : merge.left + merge.right);
    // The first occurrence of a pair keeps its (lowest) rank, as in Hugging Face tokenizers.
    merges_.try_emplace(pair_key(left->second, right->second),
                        MergeResult{static_cast<int32_t>(rank), merged->second});
  }
}

const BpeModel::MergeResult* BpeModel::find_merge(int32_t left, int32_t right) const {
  const auto found = merges_.find(pair_key(left, right));
  return found == merges_.end() ? nullptr : &found->second;
}

bool BpeModel::emit_whole_piece(std::string_view piece, std::vector<int32_t>& ids) const {
  if (!ignore_merges_) return false;
  const auto found = vocab_.find(bytes_to_byte_level(piece));
  if (found == vocab_.end()) return false;
  ids.push_back(found->second);
  return true;
}

void BpeModel::encode_piece(std::string_view piece, std::vector<int32_t>& ids) const {
  if (piece.size() == 1) {
    ids.push_back(byte_ids_[static_cast<unsigned char>(piece[0])]);
    return;
  }
  if (piece.size() > kMaxCachedPieceBytes) {
    const auto piece_ids = encode_piece_uncached(piece);
    ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
    return;
  }
  const std::string key(piece);
  {
    std::lock_guard lock(cache_->mutex);
    const auto found = cache_->ids_by_piece.find(key);
    if (found != cache_->ids_by_piece.end()) {
      ids.insert(ids.end(), found->second.begin(), found->second.end());
      return;
    }
  }
  auto piece_ids = encode_piece_uncached(piece);
  ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
  std::lock_guard lock(cache_->mutex);
  if (cache_->ids_by_piece.size() >= kMaxCacheEntries) cache_->ids_by_piece.clear();
  cache_->ids_by_piece.emplace(key, std::move(piece_ids));
}

std::vector<int32_t> BpeModel::encode_piece_uncached(std::string_view piece) const {
  std::vector<int32_t> ids;
  if (piece.empty() || emit_whole_piece(piece, ids)) return ids;

  struct Symbol {
    int32_t id, prev, next;
    bool alive;
  };
  struct Candidate {
    int32_t rank, position, merged_id;
  };
  // Heap order: lowest rank first, then leftmost position.
  const auto later = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.position > b.position;
  };
  const int32_t count = static_cast<int32_t>(piece.size());
  std::vector<Symbol> symbols(count);
  for (int32_t i = 0; i < count; ++i)
    symbols[i] = {byte_ids_[static_cast<unsigned char>(piece[i])], i - 1, i + 1 < count ? i + 1 : -1, true};

  std::vector<Candidate> heap;
  const auto push_candidate = [&](int32_t position) {
    if (position < 0 || symbols[position].next < 0) return;
    if (const auto* merge = find_merge(symbols[position].id, symbols[symbols[position].next].id)) {
      heap.push_back({merge->rank, position, merge->merged_id});
      std::push_heap(heap.begin(), heap.end(), later);
    }
  };
  for (int32_t i = 0; i + 1 < count; ++i) push_candidate(i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.position];
    if (!left.alive || left.next < 0) continue;
    // Stale when either side changed since the candidate was pushed.
    const auto* merge = find_merge(left.id, symbols[left.next].id);
    if (!merge || merge->merged_id != top.merged_id || merge->rank != top.rank) continue;
    Symbol& right = symbols[left.next];
    left.id = top.merged_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.position;
    push_candidate(left.prev);
    push_candidate(top.position);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
  return ids;
}

std::vector<int32_t> BpeModel::encode_piece_reference(std::string_view piece) const {
  std::vector<int32_t> ids;
  if (emit_whole_piece(piece, ids)) return ids;
  for (char byte : piece) ids.push_back(byte_ids_[static_cast<unsigned char>(byte)]);
  while (true) {
    const MergeResult* best = nullptr;
    size_t best_position = 0;
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
      const auto* merge = find_merge(ids[i], ids[i + 1]);
      if (merge && (!best || merge->rank < best->rank)) {
        best = merge;
        best_position = i;
      }
    }
    if (!best) return ids;
    ids[best_position] = best->merged_id;
    ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(best_position) + 1);
  }
}

}  // namespace dt
