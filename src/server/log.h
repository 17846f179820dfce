// Structured JSON logging: one JSON object per line on stderr. Callers pass
// fields as JSON so values are always escaped; never pass secrets. Thread-safe.
#ifndef CONCIERGE_SERVER_LOG_H_
#define CONCIERGE_SERVER_LOG_H_

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace concierge::server {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

void SetLogLevel(std::string_view level);  // "debug", "info", ...
// Lets hot paths skip building fields for a line that would be dropped.
bool LogEnabled(LogLevel level);
void Log(LogLevel level, std::string_view event, nlohmann::json fields = nlohmann::json::object());

}  // namespace concierge::server

#endif  // CONCIERGE_SERVER_LOG_H_
