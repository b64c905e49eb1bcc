#include "log/log.hpp"

#include <sys/stat.h>
#include <sys/uio.h>
#include <syslog.h>
#include <systemd/sd-journal.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include "common/error.hpp"

namespace crisd::log {
namespace {

thread_local FieldList tl_fields;

int syslog_priority(spdlog::level::level_enum level) {
    switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug: return LOG_DEBUG;
    case spdlog::level::info: return LOG_INFO;
    case spdlog::level::warn: return LOG_WARNING;
    case spdlog::level::err: return LOG_ERR;
    case spdlog::level::critical: return LOG_CRIT;
    default: return LOG_INFO;
    }
}

// Sends each line to journald with PRIORITY, SYSLOG_IDENTIFIER, CODE_* and the
// thread's structured fields.
class JournalSink final : public spdlog::sinks::base_sink<std::mutex> {
protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        std::vector<std::string> parts;
        parts.reserve(6 + tl_fields.size());
        parts.push_back("MESSAGE=" + std::string(msg.payload.data(), msg.payload.size()));
        parts.push_back("PRIORITY=" + std::to_string(syslog_priority(msg.level)));
        parts.push_back("SYSLOG_IDENTIFIER=crisd");
        if (msg.source.filename) {
            parts.push_back(std::string("CODE_FILE=") + msg.source.filename);
            parts.push_back("CODE_LINE=" + std::to_string(msg.source.line));
        }
        for (const auto& [k, v] : tl_fields) parts.push_back(k + "=" + v);
        std::vector<iovec> iov(parts.size());
        for (size_t i = 0; i < parts.size(); ++i)
            iov[i] = iovec{parts[i].data(), parts[i].size()};
        sd_journal_sendv(iov.data(), static_cast<int>(iov.size()));
    }
    void flush_() override {}
};

// stderr: the usual spdlog line, with the structured fields appended.
class StderrSink final : public spdlog::sinks::base_sink<std::mutex> {
protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        spdlog::memory_buf_t buf;
        formatter_->format(msg, buf);
        std::string line(buf.data(), buf.size());
        if (!tl_fields.empty()) {
            if (!line.empty() && line.back() == '\n') line.pop_back();
            for (const auto& [k, v] : tl_fields) line += " " + k + "=" + v;
            line += "\n";
        }
        std::fwrite(line.data(), 1, line.size(), stderr);
    }
    void flush_() override { std::fflush(stderr); }
};

spdlog::level::level_enum parse_level(const std::string& level) {
    auto l = spdlog::level::from_str(level);
    if (l == spdlog::level::off && level != "off")
        throw Error(Code::InvalidArgument, "unknown log level \"" + level +
                                               "\" (trace, debug, info, warn, error, critical, off)");
    return l;
}

}  // namespace

Target detect_target() {
    const char* js = std::getenv("JOURNAL_STREAM");
    if (!js) return Target::Stderr;
    unsigned long long dev = 0, ino = 0;
    if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return Target::Stderr;
    struct stat st {};
    if (fstat(STDERR_FILENO, &st) != 0) return Target::Stderr;
    return (st.st_dev == dev && st.st_ino == ino) ? Target::Journal : Target::Stderr;
}

void setup(const std::string& level, Target target) {
    const auto lvl = parse_level(level);
    spdlog::sink_ptr sink;
    if (target == Target::Journal) {
        sink = std::make_shared<JournalSink>();
    } else {
        sink = std::make_shared<StderrSink>();
        sink->set_formatter(std::make_unique<spdlog::pattern_formatter>(
            "%Y-%m-%dT%H:%M:%S.%fZ %l %v", spdlog::pattern_time_type::utc));
    }
    auto logger = std::make_shared<spdlog::logger>("crisd", sink);
    logger->set_level(lvl);
    logger->flush_on(spdlog::level::trace);
    spdlog::set_default_logger(logger);
}

void set_level(const std::string& level) { spdlog::set_level(parse_level(level)); }

Fields::Fields(std::initializer_list<std::pair<std::string, std::string>> fields)
    : added_(fields.size()) {
    tl_fields.insert(tl_fields.end(), fields.begin(), fields.end());
}

Fields::~Fields() { tl_fields.resize(tl_fields.size() - added_); }

const FieldList& current_fields() { return tl_fields; }

}  // namespace crisd::log
