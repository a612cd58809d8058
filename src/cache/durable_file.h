// dsv4 cache: whole-file writes that are atomic (a temporary sibling renamed over the target: a
// reader sees the old file or the new one, never a torn one) and, with `sync`, durable: the file
// is fsynced before the rename and the directory after it, so a power loss cannot leave a
// renamed-but-empty file behind. Temporary names contain ".tmp." (core/temp_name.h): a cache
// directory's start-up cleaning removes those a crash left.
#pragma once
#include <string>
#include <string_view>

namespace dsv4::cache {

// Throws dsv4::Error naming the path on failure (the temporary file is removed).
void write_file_atomic(const std::string& path, std::string_view data, bool sync);

// True for names of temporary siblings (write_file_atomic's, and older ".tmp<pid>" ones).
bool is_temp_name(std::string_view filename);

}  // namespace dsv4::cache
