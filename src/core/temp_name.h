// dsv4 core: names for temporary siblings of files and directories that are written and then
// renamed into place (so a file or checkpoint only ever appears complete).
#pragma once
#include <string>

namespace dsv4 {

// ".tmp.<pid>.<n>": unique per process and call, so concurrent writers never share a temporary.
std::string tmp_suffix();

}  // namespace dsv4
