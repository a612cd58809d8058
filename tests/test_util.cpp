#include "test_util.h"

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace dsv4::test {

static std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return (v && *v) ? std::string(v) : std::string(fallback);
}

std::string testdata_path(const std::string& rel) {
  std::string base = env_or("DSV4_TESTDATA", DSV4_TESTDATA_DIR);
  return rel.empty() ? base : base + "/" + rel;
}

std::string assets_path(const std::string& rel) {
  std::string base = env_or("DSV4_ASSETS", DSV4_ASSETS_DIR);
  return rel.empty() ? base : base + "/" + rel;
}

std::string dsv4_binary() { return env_or("DSV4_BINARY", DSV4_BINARY); }

int run_command_stdout(const std::string& cmd, std::string* out) {
  // run_command appends 2>&1 to the whole line: the inner group's stderr goes first to /dev/null
  return run_command("{ { " + cmd + " ; } 2>/dev/null ; }", out);
}

int run_command(const std::string& cmd, std::string* out) {
  std::string full = cmd + " 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  std::string acc;
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) acc.append(buf, n);
  int st = pclose(p);
  if (out) *out = acc;
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

std::string make_temp_dir(const std::string& prefix) {
  std::string tmpl = env_or("TMPDIR", "/tmp") + "/" + prefix + "XXXXXX";
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace dsv4::test
