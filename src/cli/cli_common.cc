// Shared CLI helpers (declared in cli_internal.h).
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/cli_internal.h"

namespace concierge::cli {

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

std::string ReadFileOrFail(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) Fail("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void WriteFileOrFail(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f || !(f << data)) Fail("cannot write " + path);
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// Talks to the server; turns transport failures and API errors into CliErrors.
std::string Cell(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>().empty() ? "-" : v.get<std::string>();
  if (v.is_array()) {
    std::string out;
    for (const auto& e : v) out += (out.empty() ? "" : ",") + Cell(e);
    return out.empty() ? "-" : out;
  }
  return v.dump();
}

void PrintTable(const std::vector<std::string>& columns, const json& rows) {
  std::vector<std::vector<std::string>> cells;
  std::vector<size_t> width;
  for (const auto& c : columns) width.push_back(c.size());
  for (const auto& row : rows) {
    std::vector<std::string> line;
    for (size_t i = 0; i < columns.size(); ++i) {
      std::string v = row.contains(columns[i]) ? Cell(row[columns[i]]) : "-";
      width[i] = std::max(width[i], v.size());
      line.push_back(std::move(v));
    }
    cells.push_back(std::move(line));
  }
  auto print_line = [&](const std::vector<std::string>& line) {
    std::string out;
    for (size_t i = 0; i < line.size(); ++i) {
      out += line[i];
      if (i + 1 < line.size()) out += std::string(width[i] - line[i].size() + 2, ' ');
    }
    std::cout << out << "\n";
  };
  std::vector<std::string> header;
  for (const auto& c : columns) {
    std::string h = c;
    for (auto& ch : h) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    header.push_back(h);
  }
  print_line(header);
  for (const auto& line : cells) print_line(line);
}

void PrintObject(const json& obj) {
  size_t w = 0;
  for (const auto& [k, v] : obj.items()) w = std::max(w, k.size());
  for (const auto& [k, v] : obj.items()) {
    if (v.is_object()) continue;
    std::cout << k << std::string(w - k.size() + 2, ' ') << Cell(v) << "\n";
  }
}

void Print(const Globals& g, const json& value, const std::function<void()>& table) {
  if (g.output == "json") {
    std::cout << value.dump(2) << "\n";
  } else {
    table();
  }
}

std::string TenantPath(const std::string& tenant, const std::string& rest) {
  return "/api/v1/tenants/" + tenant + rest;
}

}  // namespace concierge::cli
