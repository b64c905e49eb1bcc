// The container's output to journald: one entry per line, with the fields of
// design.md (CONTAINER_ID, CONTAINER_ID_FULL, CONTAINER_NAME, POD_NAME,
// POD_NAMESPACE, SYSLOG_IDENTIFIER), PRIORITY 6 for stdout and 3 for stderr, and
// OBJECT_SYSTEMD_UNIT=crisd-<id>.scope, which `journalctl -u crisd-<id>.scope`
// matches for entries from root. A line is held until its newline arrives; one
// longer than line_max is sent in parts marked CONTAINER_PARTIAL_MESSAGE=true.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace crisd::conmon {

// One entry in journald's native protocol (what sd_journal_sendv speaks;
// crisd-conmon does without libsystemd): each "KEY=value" field becomes
// "KEY=value\n", or "KEY\n" + 64-bit little-endian length + value + "\n" when
// the value holds a newline. Values are bytes: invalid UTF-8 and NUL pass.
// Entries stay far below the datagram limit (lines are split at
// --log-line-max), so no memfd is needed.
std::string encode_journal_entry(const iovec* fields, size_t n);

struct JournalIdentity {
    std::string id;  // 64 hex
    std::string name;
    std::string pod_name;
    std::string pod_namespace;
};

class Journal {
public:
    // Where entries go: journald's socket unless a test says otherwise.
    using Sender = std::function<void(const iovec* fields, size_t n)>;

    Journal(const JournalIdentity& who, size_t line_max, Sender sender = {});

    void write(uint8_t stream, std::string_view data);
    // Sends what is held of an unterminated line (at the container's exit).
    void flush();

private:
    void send(uint8_t stream, std::string_view line, bool partial);

    std::string unit_;
    std::string id_short_, id_full_, name_, pod_name_, pod_namespace_, identifier_;
    size_t line_max_;
    Sender sender_;
    std::string pending_[2];
};

// conmon's own messages (not the container's): SYSLOG_IDENTIFIER=crisd-conmon,
// with the container's fields; also to stderr while conmon has not detached.
namespace diag {
void init(const JournalIdentity& who);
void set_stderr(bool on);
void info(const std::string& message);
void warning(const std::string& message);
void error(const std::string& message);
}  // namespace diag

}  // namespace crisd::conmon
