#include "server/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <mutex>

#include "concierge/clock.h"

namespace concierge::server {
namespace {

std::shared_ptr<spdlog::logger> Logger() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto l = spdlog::stderr_logger_mt("keyctl");
    l->set_pattern("%v");  // we emit the whole JSON object ourselves
    l->set_level(spdlog::level::info);
    return l;
  }();
  return logger;
}

spdlog::level::level_enum ToSpd(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return spdlog::level::debug;
    case LogLevel::kInfo: return spdlog::level::info;
    case LogLevel::kWarn: return spdlog::level::warn;
    case LogLevel::kError: return spdlog::level::err;
  }
  return spdlog::level::info;
}

}  // namespace

void SetLogLevel(std::string_view level) {
  if (level == "trace" || level == "debug") Logger()->set_level(spdlog::level::debug);
  else if (level == "warn") Logger()->set_level(spdlog::level::warn);
  else if (level == "error") Logger()->set_level(spdlog::level::err);
  else Logger()->set_level(spdlog::level::info);
}

bool LogEnabled(LogLevel level) { return Logger()->should_log(ToSpd(level)); }

void Log(LogLevel level, std::string_view event, nlohmann::json fields) {
  auto logger = Logger();
  if (!logger->should_log(ToSpd(level))) return;
  nlohmann::json line = nlohmann::json::object();
  line["time"] = FormatRfc3339(RealClock().Now());
  line["level"] = spdlog::level::to_string_view(ToSpd(level)).data();
  line["event"] = std::string(event);
  if (fields.is_object()) {
    for (auto& [k, v] : fields.items()) line[k] = v;
  }
  logger->log(ToSpd(level), "{}", line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace concierge::server
