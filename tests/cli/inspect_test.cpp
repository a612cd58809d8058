// `dsv4 inspect` black-box: on the real V4-Flash and V4-Pro configs it prints exactly the figures of
// testdata/configs/README.md (read from the README's table, compared as printed), in text and
// JSON; on a checkpoint it reports the tensors it found.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "test_util.h"
#include "tiny_fixture.h"

using namespace dsv4;

namespace {

// README table: row label -> {Flash cell, Pro cell}, e.g. "≈ 13.3 B".
std::map<std::string, std::pair<std::string, std::string>> readme_table() {
  std::map<std::string, std::pair<std::string, std::string>> t;
  std::istringstream in(test::read_file(test::testdata_path("configs/README.md")));
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() < 2 || line[0] != '|') continue;
    std::vector<std::string> cells;
    std::string cell;
    for (size_t i = 1; i < line.size(); ++i) {
      if (line[i] == '|') {
        cells.push_back(cell);
        cell.clear();
      } else {
        cell += line[i];
      }
    }
    auto trim = [](std::string s) {
      s.erase(0, s.find_first_not_of(' '));
      s.erase(s.find_last_not_of(' ') + 1);
      return s;
    };
    if (cells.size() == 3) t[trim(cells[0])] = {trim(cells[1]), trim(cells[2])};
  }
  return t;
}

// The first number in a README cell ("≈ 13.3 B" -> "13.3", "3.37 GiB" -> "3.37").
std::string number_in(const std::string& cell) {
  std::smatch m;
  if (std::regex_search(cell, m, std::regex("[0-9][0-9.,]*"))) return m.str();
  return "";
}

std::string find(const std::string& text, const std::string& re) {
  std::smatch m;
  if (std::regex_search(text, m, std::regex(re))) return m[1].str();
  return "<not found: " + re + ">";
}

std::string label_starting(const std::map<std::string, std::pair<std::string, std::string>>& t, const std::string& p) {
  for (const auto& [k, v] : t)
    if (k.rfind(p, 0) == 0) return k;
  return p;
}

void check_config(const char* file, bool flash) {
  const std::string cfg = test::testdata_path(std::string("configs/") + file);
  if (!std::filesystem::exists(cfg)) GTEST_SKIP() << cfg << " missing";
  const auto table = readme_table();
  auto want = [&](const std::string& label_prefix) {
    const std::string label = label_starting(table, label_prefix);
    auto it = table.find(label);
    EXPECT_NE(it, table.end()) << "README row '" << label_prefix << "' not found";
    if (it == table.end()) return std::string();
    return flash ? it->second.first : it->second.second;
  };

  std::string out;
  ASSERT_EQ(test::run_command(test::dsv4_binary() + " inspect --config " + cfg, &out), 0) << out;
  std::printf("%s", out.c_str());
  EXPECT_EQ(find(out, R"(total, main model \(excl\. drafter\)\s+([0-9.]+) B)"),
            number_in(want("parameters, main model")));
  EXPECT_EQ(find(out, R"(active per token\s+≈([0-9.]+) B)"), number_in(want("active parameters per token")));
  EXPECT_EQ(find(out, R"(SWA / CSA / HCA = (\d+ / \d+ / \d+))"), want("layer types (SWA / CSA / HCA)"));
  EXPECT_EQ(find(out, R"(growing KV bytes per token: ([0-9.]+) B)"), number_in(want("growing KV bytes per token")));
  EXPECT_EQ(find(out, R"(tokens incl\. windows: ([0-9.]+) GiB)"), number_in(want("KV state at 1,048,576 tokens")));

  // JSON: the same figures as numbers.
  ASSERT_EQ(test::run_command_stdout(test::dsv4_binary() + " inspect --json --config " + cfg, &out), 0);
  const auto j = nlohmann::json::parse(out);
  EXPECT_NEAR(j["params"]["total_main"].get<double>() / 1e9, std::stod(number_in(want("parameters, main model"))),
              flash ? 0.005 : 0.05);
  EXPECT_NEAR(j["params"]["active"].get<double>() / 1e9, std::stod(number_in(want("active parameters per token"))),
              0.05);
  EXPECT_DOUBLE_EQ(j["kv"]["formats"]["native"]["bytes_per_token"].get<double>(),
                   std::stod(number_in(want("growing KV bytes per token"))));
  EXPECT_NEAR(j["kv"]["formats"]["native"]["state_gib"].get<double>(),
              std::stod(number_in(want("KV state at 1,048,576 tokens"))), 0.005);
  EXPECT_EQ(j["layers"].size(), size_t(j["config"]["num_hidden_layers"].get<int>() + 1));  // + MTP
  EXPECT_EQ(j["drafter"]["kind"], "mtp");  // the April configs
  EXPECT_EQ(j["drafter"]["blocks"], 1);
  EXPECT_NEAR(j["drafter"]["params"].get<double>() / 1e9, flash ? 6.6 : 25.8, flash ? 0.05 : 0.1);
}

}  // namespace

TEST(InspectCli, FlashConfigMatchesReadme) { check_config("deepseek-v4-flash.config.json", true); }
TEST(InspectCli, ProConfigMatchesReadme) { check_config("deepseek-v4-pro.config.json", false); }

// The tensor table against a checkpoint written by another tool (the oracle's generator): every
// tensor the table expects is there with the table's bytes, and nothing else is.
TEST(InspectCli, TableMatchesAnIndependentCheckpoint) {
  const std::string dir = test::testdata_path("oracle/case-a/ckpt");
  if (!std::filesystem::exists(dir + "/config.json")) GTEST_SKIP();
  std::string out;
  ASSERT_EQ(test::run_command_stdout(test::dsv4_binary() + " inspect --json --model " + dir, &out), 0)
      << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["tensors"]["checkpoint"]["count"], j["tensors"]["expected"]["count"]);
  EXPECT_EQ(j["tensors"]["checkpoint"]["bytes"], j["tensors"]["expected"]["bytes"]);
  EXPECT_EQ(j["tensors"]["checkpoint"]["by_dtype"], j["tensors"]["expected"]["by_dtype"]);
  EXPECT_TRUE(j["tensors"]["unused"].empty());
  EXPECT_EQ(j["drafter"]["loaded"], "mtp");
}

TEST(InspectCli, TinyCheckpoint) {
  const std::string dir = test::tiny_checkpoint_dir();
  std::string out;
  ASSERT_EQ(test::run_command_stdout(test::dsv4_binary() + " inspect --json --model " + dir, &out), 0)
      << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["mode"], "model");
  EXPECT_EQ(j["tensors"]["checkpoint"]["count"], j["tensors"]["expected"]["count"]);
  EXPECT_EQ(j["tensors"]["checkpoint"]["bytes"], j["tensors"]["expected"]["bytes"]);
  EXPECT_TRUE(j["tensors"]["unused"].empty());
  EXPECT_EQ(j["drafter"]["kind"], "mtp");
  EXPECT_EQ(j["drafter"]["loaded"], "mtp");
  EXPECT_EQ(j["layers"][5]["layer"], "mtp.0");
  EXPECT_EQ(j["layers"][1]["kind"], "csa");
  EXPECT_EQ(j["layers"][2]["kind"], "hca");
  EXPECT_EQ(j["layers"][0]["hash"], true);
  ASSERT_EQ(test::run_command(test::dsv4_binary() + " inspect --model " + dir, &out), 0) << out;
  EXPECT_NE(out.find("layer schedule (SWA / CSA / HCA = 2 / 2 / 1)"), std::string::npos) << out;
  EXPECT_NE(out.find("F8_E4M3"), std::string::npos);
  EXPECT_NE(out.find("I8"), std::string::npos);
}

TEST(InspectCli, ArgumentErrors) {
  std::string out;
  int rc = test::run_command(test::dsv4_binary() + " inspect", &out);
  EXPECT_TRUE(rc > 0 && rc < 128) << rc << out;
  rc = test::run_command(test::dsv4_binary() + " inspect --config /nonexistent/config.json", &out);
  EXPECT_TRUE(rc > 0 && rc < 128) << rc << out;
  EXPECT_NE(out.find("/nonexistent/config.json"), std::string::npos) << out;
  const std::string dir = test::make_temp_dir("dsv4inspect");
  const std::string bad = dir + "/config.json";
  {
    std::ofstream(bad) << R"({"hidden_size": 64, "num_hidden_layers": 2, "compress_ratios": [0, 3, 0]})";
  }
  rc = test::run_command(test::dsv4_binary() + " inspect --config " + bad, &out);
  EXPECT_TRUE(rc > 0 && rc < 128) << rc << out;
  EXPECT_NE(out.find(bad), std::string::npos) << out;
  std::filesystem::remove_all(dir);
}
