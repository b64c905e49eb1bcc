// Logging for crisd: spdlog, to journald when systemd started us (stderr is
// the journal stream), else to stderr. Structured journal fields for a line
// about one object come from a Fields guard on the logging thread:
//
//   log::Fields f{{"CONTAINER_ID", id}};
//   spdlog::info("container {} started", id);  // carries CONTAINER_ID=...
#pragma once

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace crisd::log {

enum class Target { Stderr, Journal };

// Journal when $JOURNAL_STREAM names the device:inode of our stderr.
Target detect_target();

// Installs the default logger. Throws crisd::Error for an unknown level.
void setup(const std::string& level, Target target);
void set_level(const std::string& level);

using FieldList = std::vector<std::pair<std::string, std::string>>;

// Journal fields added to every line this thread logs while the guard lives.
class Fields {
public:
    Fields(std::initializer_list<std::pair<std::string, std::string>> fields);
    ~Fields();
    Fields(const Fields&) = delete;
    Fields& operator=(const Fields&) = delete;

private:
    size_t added_;
};

// The fields in force on this thread (for sinks).
const FieldList& current_fields();

}  // namespace crisd::log
