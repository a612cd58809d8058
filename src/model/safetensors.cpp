// safetensors format: u64 LE header length, JSON header {name: {dtype, shape, data_offsets}},
// then the data region. Every structural problem throws dsv4::Error naming file and tensor.
#include "model/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/json_file.h"
#include "core/log.h"

namespace dsv4::model {

using nlohmann::json;
namespace fs = std::filesystem;

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  const size_t size = file_.size();
  if (size < 8) throw Error(path + ": truncated safetensors file (" + std::to_string(size) + " bytes, no header)");
  uint64_t hlen = 0;
  std::memcpy(&hlen, file_.data(), 8);
  if (hlen == 0 || hlen > size - 8 || hlen > (uint64_t(100) << 20))
    throw Error(path + ": bad safetensors header length " + std::to_string(hlen) + " (file has " +
                std::to_string(size) + " bytes)");
  json h;
  try {
    h = json::parse(reinterpret_cast<const char*>(file_.data()) + 8,
                    reinterpret_cast<const char*>(file_.data()) + 8 + hlen);
  } catch (const json::parse_error& e) {
    throw Error(path + ": bad safetensors JSON header: " + e.what());
  }
  if (!h.is_object()) throw Error(path + ": safetensors header is not a JSON object");
  const uint8_t* base = file_.data() + 8 + hlen;
  const uint64_t data_size = size - 8 - hlen;
  size_t misaligned_bytes = 0;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") continue;
    const json& t = it.value();
    auto bad = [&](const std::string& what) { throw Error(path + ": tensor '" + name + "': " + what); };
    if (!t.is_object() || !t.contains("dtype") || !t.contains("shape") || !t.contains("data_offsets"))
      bad("header entry needs dtype, shape and data_offsets");
    if (!t["dtype"].is_string()) bad("dtype is not a string");
    TensorView v;
    std::string ds = t["dtype"].get<std::string>();
    if (!dtype_from_safetensors(ds, &v.dtype)) bad("unknown dtype '" + ds + "'");
    const json& shp = t["shape"];
    if (!shp.is_array() || shp.size() > size_t(kMaxDims)) bad("shape must be an array of at most 4 dims");
    v.ndim = int(shp.size());
    for (int i = 0; i < v.ndim; ++i) {
      if (!shp[size_t(i)].is_number_unsigned() && !shp[size_t(i)].is_number_integer()) bad("bad shape entry");
      int64_t d = shp[size_t(i)].get<int64_t>();
      if (d < 0 || d > (int64_t(1) << 40)) bad("bad shape entry " + std::to_string(d));
      v.shape[size_t(i)] = d;
    }
    const json& off = t["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      bad("data_offsets must be two unsigned integers");
    uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e || e > data_size)
      bad("data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + ") outside the data region of " +
          std::to_string(data_size) + " bytes (truncated file?)");
    if (e - b != v.nbytes())
      bad("data size " + std::to_string(e - b) + " bytes does not match " + dtype_safetensors_name(v.dtype) + " " +
          v.shape_str() + " (" + std::to_string(v.nbytes()) + " bytes)");
    v.data = base + b;
    const size_t esz = dtype_size(v.dtype);
    if (esz > 1 && (reinterpret_cast<uintptr_t>(v.data) % esz) != 0 && v.nbytes() > 0) {
      copies_.push_back({std::unique_ptr<uint8_t[]>(new uint8_t[v.nbytes()]), uint64_t(8 + hlen + b)});
      std::memcpy(copies_.back().bytes.get(), v.data, v.nbytes());
      v.data = copies_.back().bytes.get();
      misaligned_bytes += v.nbytes();
    }
    tensors_[name] = v;
  }
  if (!copies_.empty())
    log::info("%s: %zu tensors (%.1f MiB) not aligned to their element size: using aligned copies", path.c_str(),
              copies_.size(), double(misaligned_bytes) / (1 << 20));
}

bool SafetensorsFile::file_offset(const void* p, uint64_t* off) const {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  if (b >= base() && b < base() + size()) {
    *off = uint64_t(b - base());
    return true;
  }
  for (const AlignedCopy& c : copies_)
    if (c.bytes.get() == b) {
      *off = c.file_offset;
      return true;
    }
  return false;
}

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
  fs::path d(dir);
  if (!fs::is_directory(d)) throw Error(dir + ": not a directory");
  std::vector<std::string> shards;
  fs::path index = d / "model.safetensors.index.json";
  std::map<std::string, std::string> weight_map;
  if (fs::exists(index)) {
    const json j = read_json_file(index.string(), "shard index");
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw Error(index.string() + ": missing 'weight_map' object");
    std::set<std::string> uniq;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) throw Error(index.string() + ": weight_map['" + it.key() + "'] is not a string");
      std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos)
        throw Error(index.string() + ": weight_map['" + it.key() + "'] names a file outside the checkpoint: " + shard);
      weight_map[it.key()] = shard;
      uniq.insert(shard);
    }
    for (const auto& s : uniq) {
      if (!fs::exists(d / s)) throw Error(index.string() + ": shard '" + s + "' listed in weight_map is missing");
      shards.push_back((d / s).string());
    }
  } else if (fs::exists(d / "model.safetensors")) {
    shards.push_back((d / "model.safetensors").string());
  } else {
    for (const auto& e : fs::directory_iterator(d))
      if (e.path().extension() == ".safetensors") shards.push_back(e.path().string());
    std::sort(shards.begin(), shards.end());
    if (shards.empty()) throw Error(dir + ": no model.safetensors.index.json and no *.safetensors files");
  }
  for (const auto& s : shards) {
    files_.push_back(std::make_unique<SafetensorsFile>(s));
    for (const auto& [name, view] : files_.back()->tensors()) {
      if (entries_.count(name)) throw Error(s + ": tensor '" + name + "' also appears in " + entries_[name].file);
      std::string fname = fs::path(s).filename().string();
      if (!weight_map.empty()) {
        auto it = weight_map.find(name);
        if (it == weight_map.end())
          throw Error(s + ": tensor '" + name + "' is not listed in model.safetensors.index.json");
        if (it->second != fname)
          throw Error(s + ": tensor '" + name + "' is in " + fname + " but the index says " + it->second);
      }
      entries_[name] = TensorEntry{view, s};
    }
  }
  for (const auto& [name, shard] : weight_map)
    if (!entries_.count(name))
      throw Error((d / shard).string() + ": tensor '" + name + "' listed in the index is not in the file");
}

const TensorEntry* Checkpoint::find(const std::string& name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second;
}

void write_safetensors(const std::string& path, const std::vector<const TensorToWrite*>& tensors_in) {
  std::vector<const TensorToWrite*> tensors(tensors_in);
  order_wider_dtypes_first(tensors);
  json h = json::object();
  uint64_t off = 0;
  for (const auto* t : tensors) {
    json e;
    e["dtype"] = dtype_safetensors_name(t->dtype);
    e["shape"] = t->shape;
    e["data_offsets"] = {off, off + t->bytes.size()};
    off += t->bytes.size();
    h[t->name] = e;
  }
  std::string hs = h.dump();
  while ((hs.size() + 8) % 8) hs.push_back(' ');
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw Error(path + ": cannot write");
    uint64_t n = hs.size();
    f.write(reinterpret_cast<const char*>(&n), 8);
    f.write(hs.data(), std::streamsize(hs.size()));
    for (const auto* t : tensors) f.write(reinterpret_cast<const char*>(t->bytes.data()), std::streamsize(t->bytes.size()));
    if (!f) throw Error(path + ": write failed");
  }
  fs::rename(tmp, path);
}

}  // namespace dsv4::model
