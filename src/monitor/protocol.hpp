// The wire formats between crisd and crisd-conmon, shared by both sides so
// they cannot drift apart: the sync pipe messages, the exit file, the control
// socket requests and replies, the attach socket framing, and unix sockets
// whose path may be longer than sun_path.
//
// Sync pipe (conmon -> crisd), one message each, "<kind> <pid> <len>\n<text>":
//   monitor   <conmon pid> 0     conmon detached; crisd moves this pid into
//                                crisd-conmon-<id>.scope, then writes the start pipe
//   container <pid> 0            `runtime create` succeeded; pid of the container init
//   error     -1 <len> <text>    `runtime create` failed; text is the runtime's own
//                                output, word for word
// Start pipe (crisd -> conmon): one byte releases conmon; EOF makes it exit.
//
// Exit file <exit-dir>/<id>, written atomically (tmp + rename), key=value lines:
//   exit_code=137  signal=9  oom_killed=1  exited_at=<ns since epoch>
//
// Control socket <socket-dir>/ctl (SOCK_SEQPACKET), one request per connection:
//   "start"                       -> "ok" | "error <runtime output>"
//   "resize <rows> <cols>"        -> "ok" | "error <text>"
//   "reopen"                      -> "ok" | "error <text>"
//   "exec\0<timeout_ms>\0<cap>\0<arg0>\0<arg1>..."
//                                 -> any number of "O<bytes>" (stdout) and "E<bytes>"
//                                    (stderr), then "X <exit_code> <timed_out 0|1>"
//                                    or "error <text>"
// Attach socket <socket-dir>/attach (SOCK_SEQPACKET): conmon sends "<1|2><bytes>"
// (1 stdout, 2 stderr; a terminal is all 1); whatever a client sends is the
// container's stdin (the first client to write owns stdin until it detaches);
// a client's shutdown(SHUT_WR) ends its input (with --stdin-once conmon then
// closes the container's stdin) and it keeps receiving output.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/fd.hpp"

namespace crisd::monitor {

inline constexpr const char* kAttachSocketName = "attach";
inline constexpr const char* kControlSocketName = "ctl";
inline constexpr uint8_t kStdout = 1;
inline constexpr uint8_t kStderr = 2;
// Largest message either side puts on a SOCK_SEQPACKET socket.
inline constexpr size_t kMaxPacket = 32 * 1024;

struct SyncMessage {
    enum class Kind { Monitor, Container, Error };
    Kind kind = Kind::Error;
    int64_t pid = -1;
    std::string text;
};

std::string encode_sync(const SyncMessage& msg);

// Feeds bytes as they come off the pipe; next() yields each whole message.
// Throws crisd::Error (DataLoss) on a malformed header.
class SyncDecoder {
public:
    void feed(std::string_view bytes) { buf_.append(bytes); }
    std::optional<SyncMessage> next();
    bool empty() const { return buf_.empty(); }

private:
    std::string buf_;
};

struct ExitStatus {
    int exit_code = -1;    // exit status, or 128+signal
    int signal = 0;        // the signal that ended the container, or 0
    bool oom_killed = false;
    int64_t exited_at_ns = 0;  // CLOCK_REALTIME
};

std::string encode_exit(const ExitStatus& status);
// Throws crisd::Error (DataLoss) naming the bad line.
ExitStatus parse_exit(std::string_view text);

// <dir>/<id> via <dir>/.<id>.tmp, fsync and rename.
void write_exit_file(const std::string& dir, const std::string& id, const ExitStatus& status);
// nullopt when there is no exit file (the container has not exited).
std::optional<ExitStatus> read_exit_file(const std::string& dir, const std::string& id);

// SOCK_SEQPACKET unix sockets; paths longer than sun_path are reached through
// /proc/self/fd/<dirfd>/<name>. Both throw crisd::Error naming the path.
UniqueFd listen_seqpacket(const std::string& path);
UniqueFd connect_seqpacket(const std::string& path);

}  // namespace crisd::monitor
